//! `xplugin-controller`: the controller's plugin host. `boot` verifies,
//! resolves, loads, inits and starts the installed controller plugins, prints
//! the report and stops them in reverse order; `run` does the same as a daemon
//! (cyclic `step` until SIGTERM/SIGINT). The logic lives in `xplugin-host`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use xplugin_cli::{fail, host_version, report_boot, run_admin, AdminCommand, GlobalArgs};
use xplugin_host::boot::{boot, BootOptions};
use xplugin_host::config::{HostConfig, HostSide};
use xplugin_model::manifest::Side;

const PROGRAM: &str = "xplugin-controller";

#[derive(Parser)]
#[command(name = PROGRAM, version, about = "Robot controller plugin host: boot, list and manage controller plugins")]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify, resolve, load, init and start the installed plugins, print the
    /// report, stop them in reverse order and exit.
    Boot {
        /// This controller's version (overrides host_version in the configuration).
        #[arg(long)]
        controller_version: Option<String>,
        /// Run this many cyclic steps between start and stop.
        #[arg(long, default_value_t = 0)]
        cycles: u64,
        /// Cycle period in milliseconds for --cycles and `run`.
        #[arg(long, default_value_t = 4)]
        cycle_ms: u64,
    },
    /// Boot and keep running (cyclic step) until SIGTERM or SIGINT, then stop
    /// in reverse order: the daemon mode for systemd.
    Run {
        /// This controller's version.
        #[arg(long)]
        controller_version: Option<String>,
        /// Cycle period in milliseconds.
        #[arg(long, default_value_t = 4)]
        cycle_ms: u64,
    },
    #[command(flatten)]
    Admin(AdminCommand),
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for s in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: `on_signal` only does a store to a lock-free `AtomicBool`
        // (no allocation, no lock, no errno), which is async-signal-safe, so
        // it may interrupt any code of this process; nothing else here
        // installs a SIGTERM/SIGINT handler, so replacing the previous
        // disposition (the default: terminate) breaks no one.
        if let Err(e) = unsafe { sigaction(s, &action) } {
            log::warn!("cannot install a handler for {s}: {e}");
        }
    }
}

fn now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let g = &cli.global;
    xplugin_cli::logging::init(PROGRAM, g.verbose, g.syslog);
    let config = match g.config(HostSide::Controller) {
        Ok(c) => c,
        Err(e) => return fail(PROGRAM, &e, g.json),
    };
    let root = config.root_or(g.root.as_deref(), HostSide::Controller);
    match cli.command {
        Command::Boot {
            controller_version,
            cycles,
            cycle_ms,
        } => run_host(
            g.json,
            &config,
            root,
            controller_version,
            Some(cycles),
            cycle_ms,
        ),
        Command::Run {
            controller_version,
            cycle_ms,
        } => {
            install_signal_handlers();
            run_host(g.json, &config, root, controller_version, None, cycle_ms)
        }
        Command::Admin(admin) => {
            run_admin(PROGRAM, admin, &config, &root, Side::Controller, g.json)
        }
    }
}

/// Boots; then runs `cycles` steps (`Some`) or until a signal (`None`); then
/// stops and prints the report.
fn run_host(
    json: bool,
    config: &HostConfig,
    root: PathBuf,
    version_flag: Option<String>,
    cycles: Option<u64>,
    cycle_ms: u64,
) -> ExitCode {
    let version = match host_version(version_flag.as_deref(), config, HostSide::Controller) {
        Ok(v) => v,
        Err(e) => return fail(PROGRAM, &e, json),
    };
    let opts = BootOptions {
        side: Side::Controller,
        root,
        host_version: version,
        config,
        controller_running: None,
        lock_timeout: Duration::from_secs(60),
    };
    let mut booted = match boot(&opts) {
        Ok(b) => b,
        Err(e) => return fail(PROGRAM, &e, json),
    };
    if !json {
        // Show what started before running, so a daemon's log has it.
        log::info!("booted:\n{}", booted.report);
    }
    let period = Duration::from_millis(cycle_ms.max(1));
    let mut cycle = 0u64;
    let mut next = Instant::now();
    loop {
        match cycles {
            Some(n) if cycle >= n => break,
            None if STOP.load(Ordering::SeqCst) => break,
            _ => {}
        }
        for (name, status) in booted.lifecycle.step_all(cycle, now_ns()) {
            log::warn!(
                "plugin \"{name}\" step {cycle} returned {}",
                xplugin_abi::status_name(status)
            );
        }
        cycle += 1;
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    report_boot(&booted.shutdown(), json)
}
