//! `xplugin-client`: the teach pendant's plugin loader. `import` installs a
//! vendor package: with `--controller ADDR:PORT` as one transaction over
//! both computers through the pendant link ([`link`]), with
//! `--controller-root DIR` offline into a local controller root; `run`
//! loads the installed client plugins; `list`, `enable`, `disable`,
//! `remove`, `rollback`, `config show`, `config set` manage the install
//! root; `identity`, `pair`, `unpair`, `controller-status` are the link's.
//! The logic lives in `xplugin-host` and `xplugin-link`.

mod bridge;
mod link;
mod runner;

use clap::{Parser, Subcommand};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use xplugin_cli::{
    emit, fail, host_version, report_boot, run_admin, AdminCommand, ConfigCommand, GlobalArgs,
};
use xplugin_host::boot::{boot, BootOptions};
use xplugin_host::config::{HostConfig, HostSide};
use xplugin_host::import::{import, ImportError, ImportOptions, SideHost};
use xplugin_host::progress::{ImportProgress, NoProgress};
use xplugin_host::verify::Policy;
use xplugin_model::manifest::Side;
use xplugin_model::Version;

const PROGRAM: &str = "xplugin-client";

#[derive(Parser)]
#[command(name = PROGRAM, version, about = "Teach pendant plugin loader: import packages, run and manage client plugins")]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import a vendor package (plugindemo.zip): check everything, then install
    /// atomically. A refused package changes nothing.
    Import {
        /// The package.
        package: PathBuf,
        /// The controller's pendant link: the package is installed on both
        /// computers as one transaction.
        #[arg(long, conflicts_with = "controller_root")]
        controller: Option<String>,
        /// Offline mode: where the controller part is installed (a local
        /// controller root; its CPU is `controller_arch` in the configuration).
        #[arg(long)]
        controller_root: Option<PathBuf>,
        /// How the controller (and a running `xplugin-client run`) apply the
        /// new plugins: now, when-idle or next-boot (config `apply`).
        #[arg(long, value_parser = ["now", "when-idle", "next-boot"])]
        apply: Option<String>,
        /// Do not ask for a confirmation on the terminal.
        #[arg(long)]
        yes: bool,
        /// The controller's configuration (trust store, device id, version)
        /// used to verify the controller part (default /etc/xplugin/controller.json).
        #[arg(long)]
        controller_config: Option<PathBuf>,
        /// This pendant's HMI version.
        #[arg(long)]
        hmi_version: Option<String>,
        /// The controller's version.
        #[arg(long)]
        controller_version: Option<String>,
        /// Reinstall plugins whose version is already installed.
        #[arg(long)]
        force: bool,
        /// Accept versions older than the installed ones.
        #[arg(long)]
        allow_downgrade: bool,
    },
    /// Load the installed client plugins: verify, resolve (ctrlDepend against
    /// the controller), init, start (enabled ones), idle, stop, exit.
    Run {
        /// This pendant's HMI version.
        #[arg(long)]
        hmi_version: Option<String>,
        /// The controller's pendant link: ctrlDepend is checked against the
        /// plugins it runs; with --until-stopped, plugin messages cross to
        /// and from its plugins (the manifests' `bridge`).
        #[arg(long, conflicts_with = "controller_root")]
        controller: Option<String>,
        /// Controller root whose enabled plugins count as running (for ctrlDepend).
        #[arg(long)]
        controller_root: Option<PathBuf>,
        /// Controller plugins known to run, as NAME=VERSION,... (overrides --controller-root).
        #[arg(long)]
        controller_running: Option<String>,
        /// Number of idle rounds between start and stop.
        #[arg(long, default_value_t = 1)]
        idle: u64,
        /// Run idle rounds until SIGTERM/SIGINT, and restart the plugins
        /// when an import commits a new client generation (by its policy).
        #[arg(long)]
        until_stopped: bool,
    },
    /// Print this pendant's pendant-link public key (first line) and its
    /// fingerprint; made on first use.
    Identity {
        /// Replace the key pair (the controller must pair it again).
        #[arg(long)]
        rotate: bool,
    },
    /// Pin the controller at ADDR:PORT by its public key.
    Pair {
        /// The controller's pendant link address.
        address: String,
        /// The key `xplugin-controller identity` prints on the controller.
        key: String,
    },
    /// Forget the controller paired at ADDR:PORT.
    Unpair {
        /// Its address.
        address: String,
    },
    /// The controller's status over the pendant link.
    ControllerStatus {
        /// The controller's pendant link address.
        #[arg(long)]
        controller: String,
    },
    #[command(flatten)]
    Admin(AdminCommand),
}

fn main() -> ExitCode {
    let cli: Cli = xplugin_cli::parse_args();
    let g = &cli.global;
    // A long-running pendant host logs like a service: info by default.
    let verbose = match cli.command {
        Command::Run {
            until_stopped: true,
            ..
        } => g.verbose.max(1),
        _ => g.verbose,
    };
    xplugin_cli::logging::init(PROGRAM, verbose, g.syslog);
    let config = match g.config(HostSide::Client) {
        Ok(c) => c,
        Err(e) => return fail(PROGRAM, &e, g.json),
    };
    let root = config.root_or(g.root.as_deref(), HostSide::Client);
    let json = g.json;
    match cli.command {
        Command::Import {
            package,
            controller: Some(address),
            apply,
            yes,
            hmi_version,
            force,
            allow_downgrade,
            ..
        } => {
            let apply = match link::apply_flag(apply.as_deref()) {
                Ok(a) => a,
                Err(e) => return fail(PROGRAM, &e, json),
            };
            let hmi = match optional_version(hmi_version.as_deref(), &config, HostSide::Client) {
                Ok(v) => v,
                Err(e) => return fail(PROGRAM, &e, json),
            };
            let flags = link::OnlineFlags {
                address,
                apply,
                yes,
                policy: Policy {
                    force,
                    allow_downgrade,
                },
            };
            link::import(&config, root, package, hmi, flags, json)
        }
        Command::Import {
            package,
            controller: None,
            controller_root,
            controller_config,
            hmi_version,
            controller_version,
            force,
            allow_downgrade,
            ..
        } => {
            if let Err(e) = link::refuse_if_undecided(&root) {
                return fail(PROGRAM, &e, json);
            }
            run_import(
                &config,
                g,
                root,
                package,
                controller_root,
                controller_config,
                hmi_version,
                controller_version,
                force,
                allow_downgrade,
            )
        }
        Command::Run {
            hmi_version,
            controller,
            controller_root,
            controller_running,
            idle,
            until_stopped,
        } => run_plugins(
            &config,
            root,
            hmi_version,
            ControllerSource {
                address: controller,
                root: controller_root,
                running: controller_running,
            },
            idle,
            until_stopped,
            json,
        ),
        Command::Identity { rotate } => xplugin_cli::link::identity(
            PROGRAM,
            xplugin_cli::link::Host::Pendant,
            &root,
            &config,
            rotate,
            json,
        ),
        Command::Pair { address, key } => link::pair(&root, &config, &address, &key, json),
        Command::Unpair { address } => link::unpair(&root, &address, json),
        Command::ControllerStatus { controller } => {
            link::controller_status(&root, &config, &controller, json)
        }
        Command::Admin(AdminCommand::Config(ConfigCommand::Show {
            name,
            controller: Some(address),
        })) => link::controller_config(&root, &config, &address, &name, None, json),
        Command::Admin(AdminCommand::Config(ConfigCommand::Set {
            name,
            assignments,
            controller: Some(address),
        })) => link::controller_config(&root, &config, &address, &name, Some(&assignments), json),
        Command::Admin(admin) => {
            let writes = !matches!(admin, AdminCommand::List | AdminCommand::DeviceId);
            if writes {
                if let Err(e) = link::refuse_if_undecided(&root) {
                    return fail(PROGRAM, &e, json);
                }
            }
            run_admin(PROGRAM, admin, &config, &root, Side::Client, json)
        }
    }
}

/// The host version from the flag or the configuration, if either gives one.
fn optional_version(
    flag: Option<&str>,
    config: &HostConfig,
    side: HostSide,
) -> Result<Option<Version>, xplugin_cli::HostVersionError> {
    match (flag, &config.host_version) {
        (None, None) => Ok(None),
        _ => host_version(flag, config, side).map(Some),
    }
}

#[allow(clippy::too_many_arguments)]
fn run_import(
    config: &HostConfig,
    global: &GlobalArgs,
    root: PathBuf,
    package: PathBuf,
    controller_root: Option<PathBuf>,
    controller_config: Option<PathBuf>,
    hmi_version: Option<String>,
    controller_version: Option<String>,
    force: bool,
    allow_downgrade: bool,
) -> ExitCode {
    let json = global.json;
    // The controller's own facts (trust store, device id, version) come from
    // the controller's configuration: its licenses are bound to it.
    let mut controller_config =
        match HostConfig::load(controller_config.as_deref(), HostSide::Controller) {
            Ok(c) => c,
            Err(e) => return fail(PROGRAM, &e, json),
        };
    // Flags given to this command apply to both sides of the import.
    controller_config.apply_flags(global.trusted_keys.as_deref(), global.allow_unlicensed);
    let hmi = match optional_version(hmi_version.as_deref(), config, HostSide::Client) {
        Ok(v) => v,
        Err(e) => return fail(PROGRAM, &e, json),
    };
    let ctrl = match optional_version(
        controller_version.as_deref(),
        &controller_config,
        HostSide::Controller,
    ) {
        Ok(v) => v,
        Err(e) => return fail(PROGRAM, &e, json),
    };
    let controller_root = controller_root
        .or_else(|| config.controller_root.clone())
        .or_else(|| controller_config.root.clone());
    // Drawn only on a terminal and never with --json: piped and JSON
    // output stay exactly as they were.
    let bar = xplugin_cli::progress::ImportBar::for_terminal(json);
    let opts = ImportOptions {
        package,
        client: SideHost {
            root,
            host_version: hmi,
            config,
            arch: None,
        },
        // Offline, the controller part is checked for the controller's CPU
        // as configured, not for this pendant's.
        controller: controller_root.map(|root| SideHost {
            root,
            host_version: ctrl,
            config: &controller_config,
            arch: config
                .controller_arch
                .as_deref()
                .map(xplugin_package::binary::Arch::parse),
        }),
        force,
        allow_downgrade,
        progress: bar
            .as_ref()
            .map_or(&NoProgress as &dyn ImportProgress, |b| {
                b as &dyn ImportProgress
            }),
    };
    let result = import(&opts);
    if let Some(b) = &bar {
        b.finish();
    }
    match result {
        Ok(report) => {
            emit(&report, json, true);
            ExitCode::SUCCESS
        }
        Err(ImportError::Refused { report }) => xplugin_cli::refused(
            PROGRAM,
            &*report,
            &report.package,
            report.error_count(),
            "",
            json,
        ),
        Err(e) => fail(PROGRAM, &e, json),
    }
}

fn parse_running(text: &str) -> Result<BTreeMap<String, Version>, String> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let (name, version) = item.split_once('=').ok_or_else(|| {
                format!("--controller-running item \"{item}\" is not NAME=VERSION")
            })?;
            let v = version
                .trim()
                .parse::<Version>()
                .map_err(|e| format!("--controller-running item \"{item}\": {e}"))?;
            Ok((name.trim().to_string(), v))
        })
        .collect()
}

/// Where `run` learns which controller plugins run.
struct ControllerSource {
    /// `--controller ADDR:PORT`: asked over the link.
    address: Option<String>,
    /// `--controller-root DIR`: its enabled plugins.
    root: Option<PathBuf>,
    /// `--controller-running NAME=VERSION,...`.
    running: Option<String>,
}

fn run_plugins(
    config: &HostConfig,
    root: PathBuf,
    hmi_version: Option<String>,
    controller: ControllerSource,
    idle: u64,
    until_stopped: bool,
    json: bool,
) -> ExitCode {
    let version = match host_version(hmi_version.as_deref(), config, HostSide::Client) {
        Ok(v) => v,
        Err(e) => return fail(PROGRAM, &e, json),
    };
    // `run --until-stopped --controller ADDR` also bridges plugin messages.
    let bridge_target = match (&controller.address, until_stopped) {
        (Some(address), true) => match link::target(&root, config, address, Some(&version)) {
            Ok(t) => Some(t),
            Err(e) => return fail(PROGRAM, &e, json),
        },
        _ => None,
    };
    let running = match (
        controller.running,
        controller.address,
        controller.root.or_else(|| config.controller_root.clone()),
    ) {
        (Some(list), _, _) => match parse_running(&list) {
            Ok(m) => Some(m),
            Err(e) => return fail(PROGRAM, &xplugin_cli::UsageError::new(e), json),
        },
        (None, Some(address), _) => match link::controller_running(&root, config, &address) {
            Ok(m) => Some(m),
            Err(e) => return fail(PROGRAM, &*e, json),
        },
        (None, None, Some(croot)) => match xplugin_store::Store::open(&croot) {
            Ok(s) => Some(xplugin_host::admin::enabled_versions(&s)),
            Err(e) => return fail(PROGRAM, &e, json),
        },
        (None, None, None) => None,
    };
    let opts = BootOptions {
        side: Side::Client,
        root,
        host_version: version,
        config,
        controller_running: running,
        lock_timeout: Duration::from_secs(60),
        cycle_budget_us: None,
        guard: None,
        verify: config.verify.unwrap_or_default(),
        stops_after_start: !until_stopped,
    };
    let mut booted = match boot(&opts) {
        Ok(b) => b,
        Err(e) => return fail(PROGRAM, &e, json),
    };
    if until_stopped {
        return runner::serve(booted, &opts, bridge_target, json);
    }
    for _ in 0..idle {
        for (name, status) in booted.idle_all() {
            log::warn!(
                "plugin \"{name}\" idle returned {}",
                xplugin_abi::status_name(status)
            );
        }
    }
    report_boot(&booted.shutdown(), json)
}
