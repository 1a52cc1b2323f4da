//! `xplugin-controller`: the controller's plugin host. `boot` verifies,
//! resolves, loads, inits and starts the installed controller plugins, prints
//! the report and stops them in reverse order; `run` does the same as a daemon
//! (cyclic `step` until SIGTERM/SIGINT). The logic lives in `xplugin-host`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use xplugin_cli::{fail, host_version, report_boot, run_admin, AdminCommand, GlobalArgs};
use xplugin_host::boot::{boot, BootOptions};
use xplugin_host::config::{HostConfig, HostSide};
use xplugin_host::cycle::{CycleHooks, CycleSettings, OverrunPolicy};
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
        /// Run this many cycles between start and stop (the report then has
        /// a `timing` section).
        #[arg(long, default_value_t = 0)]
        cycles: u64,
        #[command(flatten)]
        cycle: CycleArgs,
    },
    /// Boot and keep running (cyclic step) until SIGTERM or SIGINT, then stop
    /// in reverse order: the daemon mode for systemd.
    Run {
        /// This controller's version.
        #[arg(long)]
        controller_version: Option<String>,
        #[command(flatten)]
        cycle: CycleArgs,
    },
    #[command(flatten)]
    Admin(AdminCommand),
}

/// How the real-time cycle runs; each flag overrides its configuration key.
#[derive(Debug, clap::Args)]
struct CycleArgs {
    /// Cycle period in microseconds (config `cycle_us`; default 1000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    cycle_us: Option<u64>,
    /// Cycle period in milliseconds (older spelling of --cycle-us).
    #[arg(long, conflicts_with = "cycle_us", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    cycle_ms: Option<u64>,
    /// SCHED_FIFO priority of the cycle thread, 1-99; 0 = normal scheduling
    /// (config `rt_priority`).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=99))]
    rt_priority: Option<u8>,
    /// Pin the cycle thread to this CPU (config `cpu`).
    #[arg(long)]
    cpu: Option<usize>,
    /// What a cycle that ends after the next deadline does: skip (jump to
    /// the next whole period) or catch-up (config `overrun_policy`).
    #[arg(long, value_parser = ["skip", "catch-up"])]
    overrun_policy: Option<String>,
}

impl CycleArgs {
    /// The cycle settings: flags, then configuration, then defaults.
    fn settings(&self, config: &HostConfig, cycles: Option<u64>) -> CycleSettings {
        let period_us = self
            .cycle_us
            .or(self.cycle_ms.map(|ms| ms * 1000))
            .or(config.cycle_us)
            .unwrap_or(1000);
        let rt_priority = self.rt_priority.or(config.rt_priority).unwrap_or(0);
        let policy = match self.overrun_policy.as_deref() {
            Some("catch-up") => OverrunPolicy::CatchUp,
            Some(_) => OverrunPolicy::Skip,
            None => config.overrun_policy.unwrap_or_default(),
        };
        // Memory is locked once per process, before the cycle's threads start.
        let memory_locked = if rt_priority > 0 {
            xplugin_host::cycle::rt::lock_memory()
        } else {
            Err("memory not locked (normal scheduling requested)".into())
        };
        CycleSettings {
            period_ns: period_us.saturating_mul(1000),
            rt_priority,
            cpu: self.cpu.or(config.cpu),
            policy,
            cycles,
            overrun_limit: config.overrun_limit.unwrap_or(3),
            memory_locked,
            ..CycleSettings::default()
        }
    }
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
            cycle,
        } => {
            let settings = cycle.settings(&config, Some(cycles));
            run_host(g.json, &config, root, controller_version, settings)
        }
        Command::Run {
            controller_version,
            cycle,
        } => {
            install_signal_handlers();
            let settings = cycle.settings(&config, None);
            run_host(g.json, &config, root, controller_version, settings)
        }
        Command::Admin(admin) => {
            run_admin(PROGRAM, admin, &config, &root, Side::Controller, g.json)
        }
    }
}

/// Boots; then runs the cycle for `settings.cycles` cycles (`Some(0)`: no
/// cycle) or until a signal (`None`); then stops and prints the report.
fn run_host(
    json: bool,
    config: &HostConfig,
    root: PathBuf,
    version_flag: Option<String>,
    settings: CycleSettings,
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
        cycle_budget_us: config.cycle_budget_us,
    };
    let mut booted = match boot(&opts) {
        Ok(b) => b,
        Err(e) => return fail(PROGRAM, &e, json),
    };
    if !json {
        // Show what started before running, so a daemon's log has it.
        log::info!("booted:\n{}", booted.report);
    }
    if settings.cycles != Some(0) {
        if let Err(e) = booted.start_cycle(settings, CycleHooks::default()) {
            return fail(
                PROGRAM,
                &format!("cannot start the cycle thread: {e}"),
                json,
            );
        }
        while booted.cycle().is_some_and(|c| !c.is_finished()) && !STOP.load(Ordering::SeqCst) {
            booted.poll_cycle();
            std::thread::sleep(Duration::from_millis(20));
        }
        booted.stop_cycle();
    }
    report_boot(&booted.shutdown(), json)
}
