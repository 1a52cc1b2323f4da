//! What the command-line programs share: the global flags, the
//! administrative subcommands both hosts have, output in text or `--json`,
//! exit codes, and resolving the host version from flags and configuration.

#![deny(missing_docs)]

pub mod link;
pub mod logging;
pub mod progress;

use serde::Serialize;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use xplugin_host::config::{ConfigError, HostConfig, HostSide};
use xplugin_model::manifest::Side;
use xplugin_model::{
    failure_json, failure_text, Failure, Problem, ProblemCode, Problems, Version, VersionError,
};

/// The command line of this process, parsed as `T` (as `T::parse()` does:
/// on an error or `--help`, clap's message and exit code).
///
/// The command's definition (every subcommand and flag, built to parse
/// once) is left for the process's exit to reclaim instead of being freed
/// here: freeing it cost about as much as parsing (callgrind: 0.29 M of
/// 0.8 M instructions), on the path of every boot.
pub fn parse_args<T: clap::Parser>() -> T {
    let mut command = T::command();
    let parsed = command
        .try_get_matches_from_mut(std::env::args_os())
        .and_then(|mut m| T::from_arg_matches_mut(&mut m).map_err(|e| e.format(&mut command)));
    match parsed {
        Ok(args) => {
            std::mem::forget(command);
            args
        }
        Err(e) => e.exit(),
    }
}

/// Flags every subcommand of both hosts accepts.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Install root (default: `root` in the configuration, else /var/lib/xplugin/<side>).
    #[arg(long, global = true)]
    pub root: Option<PathBuf>,
    /// Host configuration file (default /etc/xplugin/<side>.json).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Machine output: one JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Also log to syslog.
    #[arg(long, global = true)]
    pub syslog: bool,
    /// Directory of trusted vendor public keys (overrides trusted_keys_dir
    /// in the configuration).
    #[arg(long, global = true, visible_alias = "trust")]
    pub trusted_keys: Option<PathBuf>,
    /// Development mode: load plugins without a valid license (overrides
    /// allow_unlicensed in the configuration; logged loudly).
    #[arg(long, global = true)]
    pub allow_unlicensed: bool,
}

impl GlobalArgs {
    /// Loads the configuration of `side` and applies the overriding flags.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file.
    pub fn config(&self, side: HostSide) -> Result<HostConfig, ConfigError> {
        let mut config = HostConfig::load(self.config.as_deref(), side)?;
        config.apply_flags(self.trusted_keys.as_deref(), self.allow_unlicensed);
        Ok(config)
    }
}

/// Subcommands both hosts have, on their own install root.
#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// List installed plugins.
    List,
    /// Print this device's id (what licenses are bound to).
    DeviceId,
    /// Enable an installed plugin.
    Enable {
        /// Plugin name.
        name: String,
    },
    /// Disable an installed plugin.
    Disable {
        /// Plugin name.
        name: String,
    },
    /// Remove an installed plugin; refused if others depend on it unless --cascade.
    Remove {
        /// Plugin name.
        name: String,
        /// Also remove the plugins that depend on it.
        #[arg(long)]
        cascade: bool,
    },
    /// Restore the previous generation (plugins and their enabled state).
    Rollback,
    /// Show or change an installed plugin's configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `config show` / `config set`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ConfigCommand {
    /// Show an installed plugin's configuration items and their values
    /// (passwords as ********).
    Show {
        /// Plugin name.
        name: String,
        /// Pendant only: a plugin of the paired controller at ADDR:PORT,
        /// over the pendant link.
        #[arg(long, value_name = "ADDR:PORT")]
        controller: Option<String>,
    },
    /// Change configuration items of an installed plugin: every KEY=VALUE is
    /// checked against the plugin's items first (type, range, step, options,
    /// read-only, length); all of them apply or none does. Lists and JSON
    /// values are given as JSON text.
    Set {
        /// Plugin name.
        name: String,
        /// The changes, KEY=VALUE each.
        #[arg(required = true, value_name = "KEY=VALUE")]
        assignments: Vec<String>,
        /// Pendant only: a plugin of the paired controller at ADDR:PORT,
        /// over the pendant link (the controller validates the change and
        /// offers it to the running plugin, as its own `config set` does).
        #[arg(long, value_name = "ADDR:PORT")]
        controller: Option<String>,
    },
}

/// Runs an administrative subcommand and prints its outcome.
pub fn run_admin(
    program: &str,
    command: AdminCommand,
    config: &HostConfig,
    root: &Path,
    side: Side,
    json: bool,
) -> ExitCode {
    use xplugin_host::admin;
    let done = |message: String| {
        emit(&Message { message }, json, true);
        ExitCode::SUCCESS
    };
    match command {
        AdminCommand::List => match admin::list(root, side) {
            Ok(listing) => {
                emit(&listing, json, true);
                ExitCode::SUCCESS
            }
            Err(e) => fail(program, &e, json),
        },
        AdminCommand::DeviceId => match xplugin_host::device::device_identity(config) {
            Ok(id) => done(id),
            Err(e) => fail(program, &e, json),
        },
        AdminCommand::Enable { name } => match admin::set_enabled(root, &name, true) {
            Ok(g) => done(format!("{name} enabled (generation {})", g.number)),
            Err(e) => fail(program, &e, json),
        },
        AdminCommand::Disable { name } => match admin::set_enabled(root, &name, false) {
            Ok(g) => done(format!("{name} disabled (generation {})", g.number)),
            Err(e) => fail(program, &e, json),
        },
        AdminCommand::Remove { name, cascade } => match admin::remove(root, side, &name, cascade) {
            Ok(removed) => done(format!("removed: {}", removed.join(", "))),
            Err(e) => fail(program, &e, json),
        },
        AdminCommand::Rollback => match admin::rollback(root, side) {
            Ok(g) => done(format!("rolled back to generation {}", g.number)),
            Err(e) => fail(program, &e, json),
        },
        AdminCommand::Config(command) => run_config(program, command, root, side, json),
    }
}

/// `config show` / `config set` on the install root (no daemon: a change is
/// stored for the plugin's next start).
fn run_config(
    program: &str,
    command: ConfigCommand,
    root: &Path,
    side: Side,
    json: bool,
) -> ExitCode {
    use xplugin_host::plugin_config;
    if let ConfigCommand::Show {
        controller: Some(a),
        ..
    }
    | ConfigCommand::Set {
        controller: Some(a),
        ..
    } = &command
    {
        let e = UsageError {
            message: format!("--controller {a} is for the pendant (xplugin-client)"),
            hint: "on the controller, drop --controller: config show/set act on its own plugins"
                .into(),
        };
        return fail(program, &e, json);
    }
    let outcome = match command {
        ConfigCommand::Show { name, .. } => {
            plugin_config::show(root, side, &name).map(|s| emit(&s, json, true))
        }
        ConfigCommand::Set {
            name, assignments, ..
        } => {
            plugin_config::set_local(root, side, &name, &assignments).map(|r| emit(&r, json, true))
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(program, &e, json),
    }
}

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: the request was refused or failed (bad package, locked root...).
pub const EXIT_REFUSED: u8 = 1;
/// Exit status: boot/run went on, but some plugins did not load.
pub const EXIT_PARTIAL: u8 = 2;

/// Prints `value` as one JSON document (with `"ok"`) or as text.
pub fn emit<T: Serialize + Display>(value: &T, json: bool, ok: bool) {
    if json {
        let mut v = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        if let serde_json::Value::Object(m) = &mut v {
            m.insert("ok".into(), serde_json::Value::Bool(ok));
        } else {
            v = serde_json::json!({ "ok": ok, "result": v });
        }
        print_stdout(&format!(
            "{}\n",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        ));
    } else if ok {
        print_stdout(&value.to_string());
    } else {
        eprint!("{value}");
    }
}

/// Writes `text` to stdout. A reader that went away (`identity | head -n 1`
/// takes the first line and closes the pipe) ends the output quietly: the
/// rest is not wanted, and `print!` would panic with a backtrace instead
/// (Rust ignores SIGPIPE, so the write fails with EPIPE). Any other write
/// error (a full disk behind `> FILE`) is reported on stderr and ends the
/// program with [`EXIT_REFUSED`]: the output it was asked for is lost.
pub fn print_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: cannot write the output to stdout: {e}");
            std::process::exit(i32::from(EXIT_REFUSED));
        }
    }
}

/// Prints a refused package's report (every problem) and the one line
/// that says nothing was installed `where_` ("", " on either computer");
/// returns the refusal's exit code.
pub fn refused<T: Serialize + Display>(
    program: &str,
    report: &T,
    package: &Path,
    errors: usize,
    where_: &str,
    json: bool,
) -> ExitCode {
    emit(report, json, false);
    eprintln!(
        "{program}: error: package {} refused, nothing was installed{where_} ({errors} error(s) above)",
        package.display(),
    );
    ExitCode::from(EXIT_REFUSED)
}

/// Prints the final report of a `boot`/`run` and returns its exit code:
/// 0 if every plugin that should run did, [`EXIT_PARTIAL`] otherwise.
pub fn report_boot(report: &xplugin_host::boot::BootReport, json: bool) -> ExitCode {
    emit(report, json, true);
    if report.all_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PARTIAL)
    }
}

/// Reports a failure and returns the exit code: on stderr in the convention
/// of problems (each with its `what to do:` line, the cause chain shown
/// once), and with `json` also as one JSON document on stdout,
/// `{"ok": false, "error", "problems": [{code, subject, field, message, hint}]}`.
pub fn fail(program: &str, error: &dyn Failure, json: bool) -> ExitCode {
    if json {
        print_stdout(&format!(
            "{}\n",
            serde_json::to_string_pretty(&failure_json(error)).unwrap_or_default()
        ));
    }
    eprintln!("{}", failure_text(program, error));
    ExitCode::from(EXIT_REFUSED)
}

/// Why this host's version is not known.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostVersionError {
    /// Neither the flag nor the configuration gives it.
    #[error("this host's {} is unknown", side.version_name())]
    Unknown {
        /// Which host.
        side: HostSide,
    },
    /// The version given is not a version.
    #[error("{} from {from} is not a valid version", side.version_name())]
    Invalid {
        /// Which host.
        side: HostSide,
        /// Where it came from (the flag, or the configuration key).
        from: String,
        /// Why.
        #[source]
        source: VersionError,
    },
}

impl Failure for HostVersionError {
    fn problems(&self) -> Problems {
        let (code, side) = match self {
            HostVersionError::Unknown { side } => (ProblemCode::HostVersionUnknown, side),
            HostVersionError::Invalid { side, .. } => (ProblemCode::HostVersionInvalid, side),
        };
        let hint = format!(
            "pass {} V or set \"host_version\" in {}",
            side.version_flag(),
            side.default_config_path().display()
        );
        Problems(vec![Problem::from_error(
            code,
            side.version_name(),
            self,
            hint,
        )])
    }
}

/// The host version: the flag wins over `host_version` in the configuration.
///
/// # Errors
/// [`HostVersionError`] when the version is missing or malformed.
pub fn host_version(
    flag: Option<&str>,
    config: &HostConfig,
    side: HostSide,
) -> Result<Version, HostVersionError> {
    let (text, from) = match (flag, &config.host_version) {
        (Some(v), _) => (v.to_string(), side.version_flag().to_string()),
        (None, Some(v)) => (v.clone(), "host_version in the configuration".to_string()),
        (None, None) => return Err(HostVersionError::Unknown { side }),
    };
    text.parse::<Version>()
        .map_err(|source| HostVersionError::Invalid { side, from, source })
}

/// An unusable command-line value (`usage.invalid_argument`).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UsageError {
    /// What is wrong with the value.
    pub message: String,
    /// What to do.
    pub hint: String,
}

impl UsageError {
    /// A usage error saying `message`, with the generic hint.
    pub fn new(message: impl Into<String>) -> UsageError {
        UsageError {
            message: message.into(),
            hint: "fix the value; --help lists the options".into(),
        }
    }
}

impl Failure for UsageError {
    fn problems(&self) -> Problems {
        Problems(vec![Problem::new(
            ProblemCode::UsageInvalidArgument,
            "command line",
            self.message.clone(),
            self.hint.clone(),
        )])
    }
}

/// A plain message that implements Display + Serialize for [`emit`].
#[derive(Serialize)]
pub struct Message {
    /// The text.
    pub message: String,
}

impl Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.message)
    }
}
