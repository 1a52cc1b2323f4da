//! `xplugin-controller`: the controller's plugin host.
//!
//! * `run` is the daemon (`xplugin-daemon`): boots the installed plugins,
//!   runs the real-time cycle, serves the admin socket until SIGTERM.
//! * `boot` verifies, loads, inits and starts the installed plugins, runs
//!   `--cycles N` cycles, stops them in reverse order and prints the report.
//! * `identity`, `pair`, `unpair`: the pendant link's key and the pendants
//!   it authorises ([`pairing`]).
//! * `status`, `list`, `enable`, `disable`, `remove`, `rollback`, `install`,
//!   `commit`, `abort`, `config show`, `config set` go through the daemon's
//!   admin socket when a daemon runs for the root, and act on the root
//!   directly otherwise ([`admin`]).
//!
//! The logic lives in the libraries; this is argument parsing and output.

mod admin;
mod cycle_args;
mod pairing;

use clap::{Parser, Subcommand};
use cycle_args::CycleArgs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use xplugin_cli::{fail, host_version, report_boot, AdminCommand, GlobalArgs};
use xplugin_host::boot::{boot, BootOptions, Guard};
use xplugin_host::config::{HostConfig, HostSide};
use xplugin_host::cycle::{CycleHooks, CycleSettings};
use xplugin_model::manifest::Side;

const PROGRAM: &str = "xplugin-controller";

#[derive(Parser)]
#[command(name = PROGRAM, version, about = "Robot controller plugin host: the daemon, boot, and the administration of controller plugins")]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(flatten)]
    daemon: admin::DaemonArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify, resolve, load, init and start the installed plugins, run
    /// --cycles N cycles, print the report, stop them in reverse order.
    Boot {
        /// This controller's version (overrides host_version in the configuration).
        #[arg(long)]
        controller_version: Option<String>,
        /// Run this many cycles between start and stop (the report then has
        /// a `timing` section).
        #[arg(long, default_value_t = 0)]
        cycles: u64,
        /// How the installed files are verified: `record` (unchanged files'
        /// digests from the digest record, re-read from the media in the
        /// background after start) or `full` (every byte at boot). Overrides
        /// `verify` in the configuration.
        #[arg(long, value_parser = ["record", "full"])]
        verify: Option<String>,
        #[command(flatten)]
        cycle: CycleArgs,
    },
    /// The daemon: boot, run the cycle and serve the admin socket until
    /// SIGTERM or SIGINT, then stop the plugins in reverse order (exit 0).
    Run {
        /// This controller's version.
        #[arg(long)]
        controller_version: Option<String>,
        /// Serve the pendant link on ADDR:PORT (config `listen`).
        #[arg(long)]
        listen: Option<String>,
        /// How the installed files are verified: `record` (unchanged files'
        /// digests from the digest record, re-read from the media in the
        /// background after start) or `full` (every byte at boot). Overrides
        /// `verify` in the configuration.
        #[arg(long, value_parser = ["record", "full"])]
        verify: Option<String>,
        #[command(flatten)]
        cycle: CycleArgs,
    },
    /// The running daemon's generation, plugins, quarantine and timing.
    Status,
    /// Install a package (plugindemo.zip or a bare controller.zip): the
    /// controller verifies everything itself, then commits (and applies by
    /// --apply), or with --prepare holds it for `commit ID` / `abort ID`.
    Install {
        /// The package.
        package: PathBuf,
        /// Only prepare: print the transaction id and hold the install.
        #[arg(long)]
        prepare: bool,
        /// Reinstall plugins whose version is already installed.
        #[arg(long)]
        force: bool,
        /// Accept versions older than the installed ones.
        #[arg(long)]
        allow_downgrade: bool,
        /// This controller's version (without a daemon; a daemon uses its own).
        #[arg(long)]
        controller_version: Option<String>,
    },
    /// Commit a prepared install transaction (and apply it by --apply).
    Commit {
        /// The transaction id `install --prepare` printed.
        id: String,
    },
    /// Abort an open install transaction.
    Abort {
        /// The transaction id.
        id: String,
    },
    /// Write one archive for a support engineer: versions, configuration
    /// (secrets redacted), status, the crash record and quarantine evidence,
    /// recent log lines, timing.
    Diagnostics {
        /// The archive to write (a zip file).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Plugins kept from loading because they crashed or hung the controller.
    Quarantine {
        #[command(subcommand)]
        action: QuarantineAction,
    },
    /// Print this controller's pendant-link public key (first line) and its
    /// fingerprint; made on first use.
    Identity {
        /// Replace the key pair (every paired pendant must pair again).
        #[arg(long)]
        rotate: bool,
    },
    /// Authorise a pendant on the pendant link by its public key.
    Pair {
        /// The key `xplugin-client identity` prints on the pendant.
        key: String,
        /// What it may do: `status` (only look) or `install`.
        #[arg(long, default_value = "install", value_parser = ["status", "install"])]
        role: String,
    },
    /// Withdraw a pendant's authorisation.
    Unpair {
        /// Its public key.
        key: String,
    },
    #[command(flatten)]
    Admin(AdminCommand),
}

#[derive(Subcommand)]
enum QuarantineAction {
    /// The quarantined plugins with the evidence, and safe mode.
    List,
    /// Lift a plugin's quarantine (it loads at the next start or apply).
    Clear {
        /// The plugin.
        #[arg(required_unless_present = "all")]
        name: Option<String>,
        /// Lift every quarantine and leave safe mode.
        #[arg(long, conflicts_with = "name")]
        all: bool,
    },
}

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn on_reload(_: nix::libc::c_int) {
    RELOAD.store(true, Ordering::SeqCst);
}

fn install_signal_handlers(with_reload: bool) {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let mut handlers: Vec<(Signal, extern "C" fn(nix::libc::c_int))> =
        vec![(Signal::SIGTERM, on_stop), (Signal::SIGINT, on_stop)];
    if with_reload {
        handlers.push((Signal::SIGHUP, on_reload));
    }
    for (s, handler) in handlers {
        let action = SigAction::new(
            SigHandler::Handler(handler),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        // SAFETY: the handlers only store to a lock-free `AtomicBool` (no
        // allocation, no lock, no errno), which is async-signal-safe, so they
        // may interrupt any code of this process; nothing else here installs
        // a handler for these signals, so replacing the previous disposition
        // (the default: terminate) breaks no one.
        if let Err(e) = unsafe { sigaction(s, &action) } {
            log::warn!("cannot install a handler for {s}: {e}");
        }
    }
}

fn main() -> ExitCode {
    let cli: Cli = xplugin_cli::parse_args();
    let g = &cli.global;
    // The daemon logs what it does (boot, applies, stops) by default.
    let verbose = match cli.command {
        Command::Run { .. } => g.verbose.max(1),
        _ => g.verbose,
    };
    xplugin_cli::logging::init(PROGRAM, verbose, g.syslog);
    let config = match g.config(HostSide::Controller) {
        Ok(c) => c,
        Err(e) => return fail(PROGRAM, &e, g.json),
    };
    let root = config.root_or(g.root.as_deref(), HostSide::Controller);
    let ctx = admin::Context {
        json: g.json,
        config: &config,
        root: &root,
        root_given: g.root.is_some() || config.root.is_some(),
        daemon: &cli.daemon,
    };
    match cli.command {
        Command::Boot {
            controller_version,
            cycles,
            verify,
            cycle,
        } => {
            if let Err(e) = admin::refuse_if_daemon(&root) {
                return fail(PROGRAM, &e, g.json);
            }
            let settings = cycle.settings(&config, Some(cycles));
            let config = with_verify(&config, verify.as_deref());
            run_boot(g.json, &config, root, controller_version, settings)
        }
        Command::Run {
            controller_version,
            listen,
            verify,
            cycle,
        } => {
            install_signal_handlers(true);
            // Recent lines survive a crash for `diagnostics`.
            let log = xplugin_host::diagnostics::log_path(&root);
            if let Err(e) = xplugin_cli::logging::log_to_file(&log, 512 * 1024) {
                log::warn!("cannot keep recent log lines in {}: {e}", log.display());
            }
            run_daemon(
                &cli.daemon,
                g,
                with_verify(&config, verify.as_deref()),
                root,
                controller_version,
                listen,
                &cycle,
            )
        }
        Command::Status => admin::status(&ctx),
        Command::Install {
            package,
            prepare,
            force,
            allow_downgrade,
            controller_version,
        } => admin::install(
            &ctx,
            &package,
            admin::InstallFlags {
                prepare,
                force,
                allow_downgrade,
                controller_version,
            },
        ),
        Command::Commit { id } => admin::commit(&ctx, &id),
        Command::Abort { id } => admin::abort(&ctx, &id),
        Command::Diagnostics { output } => admin::diagnostics(&ctx, &output),
        Command::Quarantine { action } => match action {
            QuarantineAction::List => admin::quarantine_list(&ctx),
            QuarantineAction::Clear { name, all } => {
                admin::quarantine_clear(&ctx, name.as_deref(), all)
            }
        },
        Command::Identity { rotate } => xplugin_cli::link::identity(
            PROGRAM,
            xplugin_cli::link::Host::Controller,
            &root,
            &config,
            rotate,
            g.json,
        ),
        Command::Pair { key, role } => pairing::pair(&root, &key, &role, g.json),
        Command::Unpair { key } => pairing::unpair(&root, &key, g.json),
        Command::Admin(command) => admin::admin(&ctx, command),
    }
}

/// The configuration with `--verify` applied.
fn with_verify(config: &HostConfig, verify: Option<&str>) -> HostConfig {
    let mut config = config.clone();
    if let Some(mode) = verify.and_then(xplugin_host::digests::VerifyMode::parse) {
        config.verify = Some(mode);
    }
    config
}

/// `boot`: runs `settings.cycles` cycles (none for 0), stops, prints the report.
fn run_boot(
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
        guard: Some(Guard::from_config(
            &config.faults,
            settings.period_ns,
            (settings.rt_priority, settings.cpu),
        )),
        verify: config.verify.unwrap_or_default(),
        stops_after_start: settings.cycles == Some(0),
    };
    let mut booted = match boot(&opts) {
        Ok(b) => b,
        Err(e) => return fail(PROGRAM, &e, json),
    };
    if !json {
        log::info!("booted:\n{}", booted.report);
    }
    if settings.cycles != Some(0) {
        if let Err(e) = booted.start_cycle(settings, CycleHooks::default()) {
            return fail(PROGRAM, &admin::cycle_failure(&e), json);
        }
        while booted.cycle().is_some_and(|c| !c.is_finished()) && !STOP.load(Ordering::SeqCst) {
            if let Some(hang) = booted.hang() {
                booted.safe_stop(&hang);
            }
            booted.poll_cycle();
            std::thread::sleep(Duration::from_millis(20));
        }
        booted.stop_cycle();
    }
    report_boot(&booted.shutdown(), json)
}

/// `run`: the daemon.
fn run_daemon(
    daemon: &admin::DaemonArgs,
    g: &GlobalArgs,
    mut config: HostConfig,
    root: PathBuf,
    version_flag: Option<String>,
    listen: Option<String>,
    cycle: &CycleArgs,
) -> ExitCode {
    let version = match host_version(version_flag.as_deref(), &config, HostSide::Controller) {
        Ok(v) => v,
        Err(e) => return fail(PROGRAM, &e, g.json),
    };
    // The daemon serves the pendant link only when `listen` is set.
    if let Some(addr) = listen {
        config.listen = Some(addr);
    }
    if let Some(addr) = &config.listen {
        if let Err(e) = xplugin_link::address::normalize(addr) {
            return fail(PROGRAM, &e, g.json);
        }
    }
    let admin_socket = daemon.socket(&config);
    let settings = cycle.settings(&config, None);
    let opts = xplugin_daemon::daemon::DaemonOptions {
        root,
        config_path: g.config.clone(),
        config,
        host_version: version,
        cycle: settings,
        admin_socket,
        argv: std::env::args_os().collect(),
    };
    let status = xplugin_daemon::daemon::run(
        opts,
        xplugin_daemon::daemon::Signals {
            stop: &STOP,
            reload: &RELOAD,
        },
    );
    ExitCode::from(status)
}
