//! `xplugin-client`: the teach pendant's plugin loader. `import` installs a
//! vendor package (client part here, controller part into the controller
//! root); `run` loads the installed client plugins; `list`, `enable`,
//! `disable`, `remove`, `rollback` manage the install root. The logic lives in
//! `xplugin-host`.

use clap::{Parser, Subcommand};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use xplugin_cli::{emit, fail, host_version, report_boot, run_admin, AdminCommand, GlobalArgs};
use xplugin_host::boot::{boot, BootOptions};
use xplugin_host::config::{HostConfig, HostSide};
use xplugin_host::import::{import, ImportError, ImportOptions, SideHost};
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
        /// Where the controller part is installed (until the network link).
        #[arg(long)]
        controller_root: Option<PathBuf>,
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
        /// Controller root whose enabled plugins count as running (for ctrlDepend).
        #[arg(long)]
        controller_root: Option<PathBuf>,
        /// Controller plugins known to run, as NAME=VERSION,... (overrides --controller-root).
        #[arg(long)]
        controller_running: Option<String>,
        /// Number of idle rounds between start and stop.
        #[arg(long, default_value_t = 1)]
        idle: u64,
    },
    #[command(flatten)]
    Admin(AdminCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let g = &cli.global;
    xplugin_cli::logging::init(PROGRAM, g.verbose, g.syslog);
    let config = match g.config(HostSide::Client) {
        Ok(c) => c,
        Err(e) => return fail(PROGRAM, &e, g.json),
    };
    let root = config.root_or(g.root.as_deref(), HostSide::Client);
    let json = g.json;
    match cli.command {
        Command::Import {
            package,
            controller_root,
            controller_config,
            hmi_version,
            controller_version,
            force,
            allow_downgrade,
        } => run_import(
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
        ),
        Command::Run {
            hmi_version,
            controller_root,
            controller_running,
            idle,
        } => run_plugins(
            &config,
            root,
            hmi_version,
            controller_root,
            controller_running,
            idle,
            json,
        ),
        Command::Admin(admin) => run_admin(PROGRAM, admin, &config, &root, Side::Client, json),
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
    let parse = |flag: Option<&str>, cfg: &HostConfig, side| match (flag, &cfg.host_version) {
        (None, None) => Ok(None),
        _ => host_version(flag, cfg, side).map(Some),
    };
    let hmi = match parse(hmi_version.as_deref(), config, HostSide::Client) {
        Ok(v) => v,
        Err(e) => return fail(PROGRAM, &e, json),
    };
    let ctrl = match parse(
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
    };
    match import(&opts) {
        Ok(report) => {
            emit(&report, json, true);
            ExitCode::SUCCESS
        }
        Err(ImportError::Refused { report }) => {
            emit(&*report, json, false);
            eprintln!(
                "{PROGRAM}: error: package {} refused, nothing was installed ({} error(s) above)",
                report.package.display(),
                report.error_count()
            );
            ExitCode::FAILURE
        }
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

fn run_plugins(
    config: &HostConfig,
    root: PathBuf,
    hmi_version: Option<String>,
    controller_root: Option<PathBuf>,
    controller_running: Option<String>,
    idle: u64,
    json: bool,
) -> ExitCode {
    let version = match host_version(hmi_version.as_deref(), config, HostSide::Client) {
        Ok(v) => v,
        Err(e) => return fail(PROGRAM, &e, json),
    };
    let running = match (
        controller_running,
        controller_root.or_else(|| config.controller_root.clone()),
    ) {
        (Some(list), _) => match parse_running(&list) {
            Ok(m) => Some(m),
            Err(e) => return fail(PROGRAM, &xplugin_cli::UsageError::new(e), json),
        },
        (None, Some(croot)) => match xplugin_store::Store::open(&croot) {
            Ok(s) => Some(xplugin_host::admin::enabled_versions(&s)),
            Err(e) => return fail(PROGRAM, &e, json),
        },
        (None, None) => None,
    };
    let opts = BootOptions {
        side: Side::Client,
        root,
        host_version: version,
        config,
        controller_running: running,
        lock_timeout: Duration::from_secs(60),
        cycle_budget_us: None,
    };
    let mut booted = match boot(&opts) {
        Ok(b) => b,
        Err(e) => return fail(PROGRAM, &e, json),
    };
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
