//! The administrative commands: through the daemon's admin socket when a
//! daemon holds the root, on the root directly when none does, and refused
//! when a daemon holds the root but does not answer (nothing may write the
//! root behind a running daemon).

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use xplugin_cli::{emit, fail, host_version, run_admin, AdminCommand, ConfigCommand, EXIT_PARTIAL};
use xplugin_daemon::client::{self, Route};
use xplugin_daemon::daemon::DEFAULT_ADMIN_SOCKET;
use xplugin_daemon::protocol::{Request, Response};
use xplugin_host::config::{ApplyPolicy, HostConfig, HostSide};
use xplugin_host::install::{InstallHost, InstallRequest};
use xplugin_host::verify::Policy;
use xplugin_model::manifest::Side;
use xplugin_model::{Problem, ProblemCode, Problems};

use crate::PROGRAM;

/// Flags about the daemon, accepted by every subcommand.
#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// The daemon's admin socket (config `admin_socket`; default
    /// /run/xplugin/controller.sock; commands find a running daemon's socket
    /// through the root anyway).
    #[arg(long, global = true)]
    pub admin_socket: Option<PathBuf>,
    /// How a committed change reaches the running plugins: now, when-idle
    /// (when no plugin holds the controller busy) or next-boot (config
    /// `apply`; default when-idle).
    #[arg(long, global = true, value_parser = ["now", "when-idle", "next-boot"])]
    pub apply: Option<String>,
    /// Seconds an applying command waits for the daemon to report the new
    /// generation running (default: the apply timeout plus 60).
    #[arg(long, global = true)]
    pub wait: Option<u64>,
}

impl DaemonArgs {
    /// The admin socket: the flag, the configuration, the default.
    pub fn socket(&self, config: &HostConfig) -> PathBuf {
        self.admin_socket
            .clone()
            .or_else(|| config.admin_socket.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ADMIN_SOCKET))
    }

    fn apply(&self) -> Option<ApplyPolicy> {
        self.apply.as_deref().and_then(ApplyPolicy::parse)
    }
}

/// What every administrative command needs.
pub struct Context<'a> {
    /// `--json`.
    pub json: bool,
    /// The controller's configuration.
    pub config: &'a HostConfig,
    /// The install root.
    pub root: &'a Path,
    /// True when the root was named (flag or configuration), so the daemon
    /// can check it serves that root.
    pub root_given: bool,
    /// The daemon flags.
    pub daemon: &'a DaemonArgs,
}

impl Context<'_> {
    fn route(&self) -> Result<Route, client::Unreachable> {
        // An explicit or configured socket is tried even when the root's
        // lock is not readable here; the daemon checks the root.
        let socket = self
            .daemon
            .admin_socket
            .clone()
            .or_else(|| self.config.admin_socket.clone());
        client::route(self.root, socket.as_deref())
    }

    fn send(
        &self,
        socket: &Path,
        request: Request,
        fd: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Result<Response, client::ClientError> {
        let root = self.root_given.then_some(self.root);
        client::request(socket, root, request, fd, client::DEFAULT_TIMEOUT)
    }

    fn wait_timeout(&self) -> Duration {
        let apply = self.config.apply_timeout_s.unwrap_or(300);
        Duration::from_secs(self.daemon.wait.unwrap_or(apply + 60))
    }
}

/// The cycle could not start.
pub fn cycle_failure(e: &std::io::Error) -> Problems {
    Problems(vec![Problem::from_error(
        ProblemCode::HostCycleStartFailed,
        "cycle thread",
        e,
        "check the service's thread and memory limits (LimitNPROC, LimitMEMLOCK) and the --cpu given",
    )])
}

/// Refuses a command that writes or loads the root directly while a daemon
/// holds it.
///
/// # Errors
/// Problems naming the daemon.
pub fn refuse_if_daemon(root: &Path) -> Result<(), Problems> {
    match xplugin_daemon::presence::running(root) {
        None => Ok(()),
        Some(p) => Err(Problems(vec![Problem::new(
            ProblemCode::DaemonRunning,
            root.display().to_string(),
            format!(
                "a daemon (pid {}, admin socket {}) runs for this root",
                p.pid,
                p.admin_socket.display()
            ),
            "use the daemon (`xplugin-controller status`, `install`, ...), or stop it first (systemctl stop xplugin-controller)",
        )])),
    }
}

fn not_running(socket: &Path, e: &dyn std::error::Error) -> Problems {
    Problems(vec![Problem::from_error(
        ProblemCode::DaemonNotRunning,
        socket.display().to_string(),
        e,
        "start the daemon (systemctl start xplugin-controller, or xplugin-controller run), or pass the --admin-socket it serves",
    )])
}

/// Prints a daemon's response and returns its exit status.
fn print(response: &Response, json: bool) -> ExitCode {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&response.json).unwrap_or_default()
        );
        if !response.ok {
            eprint!("{}", response.text);
        }
    } else if response.ok {
        print!("{}", response.text);
    } else {
        eprint!("{}", response.text);
    }
    ExitCode::from(response.exit)
}

/// After a command that committed a change: waits, when the daemon
/// scheduled an apply, until it reports the new generation running, and
/// prints what runs (or why it did not apply).
fn finish(ctx: &Context<'_>, socket: &Path, response: Response) -> ExitCode {
    let scheduled = response.json["apply"]["state"].as_str() == Some("scheduled");
    let generation = response.json["apply"]["generation"].as_u64();
    let (true, Some(generation)) = (scheduled && response.ok, generation) else {
        return print(&response, ctx.json);
    };
    if !ctx.json {
        print!("{}", response.text);
    }
    match client::wait_for_generation(socket, generation, ctx.wait_timeout()) {
        Ok(status) => {
            let all_ok = status.json["plugins"].as_array().is_some_and(|ps| {
                ps.iter()
                    .all(|p| plugin_ok(p["state"].as_str().unwrap_or("")))
            });
            if ctx.json {
                let mut out = response.json.clone();
                out["applied"] = status.json.clone();
                out["ok"] = all_ok.into();
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            } else {
                print!("{}", status.text);
            }
            if all_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_PARTIAL)
            }
        }
        Err(why) => {
            let problems = Problems(vec![Problem::new(
                ProblemCode::DaemonApplyTimeout,
                format!("generation {generation}"),
                why,
                "see `xplugin-controller status`; apply with --apply now, or it runs from the next start",
            )]);
            fail(PROGRAM, &problems, ctx.json)
        }
    }
}

fn plugin_ok(state: &str) -> bool {
    matches!(
        state,
        "running" | "stopped" | "disabled" | "loaded-not-enabled" | "not-for-this-platform"
    )
}

/// `status`: only a daemon has one.
pub fn status(ctx: &Context<'_>) -> ExitCode {
    let socket = match ctx.route() {
        Ok(Route::Daemon(s)) => s,
        Ok(Route::Local) => {
            let socket = ctx.daemon.socket(ctx.config);
            let e = std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no daemon holds this root and nothing answers on the socket",
            );
            return fail(PROGRAM, &not_running(&socket, &e), ctx.json);
        }
        Err(e) => return fail(PROGRAM, &e, ctx.json),
    };
    match ctx.send(&socket, Request::Status, None) {
        Ok(r) => print(&r, ctx.json),
        Err(e) => fail(PROGRAM, &not_running(&socket, &e), ctx.json),
    }
}

/// Flags of `install`.
pub struct InstallFlags {
    /// `--prepare`.
    pub prepare: bool,
    /// `--force`.
    pub force: bool,
    /// `--allow-downgrade`.
    pub allow_downgrade: bool,
    /// `--controller-version`.
    pub controller_version: Option<String>,
}

/// `install PKG`.
pub fn install(ctx: &Context<'_>, package: &Path, flags: InstallFlags) -> ExitCode {
    let label = xplugin_host::import::package_label(package);
    // Opened here, with the caller's permissions; the daemon reads this
    // descriptor, not the path.
    let file = match std::fs::File::open(package) {
        Ok(f) => f,
        Err(e) => {
            let p = Problems(vec![Problem::from_error(
                ProblemCode::PackageUnreadable,
                package.display().to_string(),
                &e,
                "check the path and that this user may read the file",
            )]);
            return fail(PROGRAM, &p, ctx.json);
        }
    };
    match ctx.route() {
        Err(e) => fail(PROGRAM, &e, ctx.json),
        Ok(Route::Daemon(socket)) => {
            let request = Request::Install {
                prepare: flags.prepare,
                force: flags.force,
                allow_downgrade: flags.allow_downgrade,
                label,
                apply: ctx.daemon.apply(),
            };
            match ctx.send(&socket, request, Some(file.as_fd())) {
                Ok(r) => finish(ctx, &socket, r),
                Err(e) => fail(PROGRAM, &not_running(&socket, &e), ctx.json),
            }
        }
        Ok(Route::Local) => {
            let version = match host_version(
                flags.controller_version.as_deref(),
                ctx.config,
                HostSide::Controller,
            ) {
                Ok(v) => v,
                Err(e) => return fail(PROGRAM, &e, ctx.json),
            };
            let host = InstallHost {
                root: ctx.root.to_path_buf(),
                host_version: version,
                config: ctx.config,
            };
            let request = InstallRequest {
                holder: holder(),
                policy: Policy {
                    force: flags.force,
                    allow_downgrade: flags.allow_downgrade,
                },
                timeout: ctx.config.transaction_timeout_s.map_or(
                    xplugin_store::transaction::DEFAULT_TIMEOUT,
                    Duration::from_secs,
                ),
                label,
            };
            let mut file = file;
            match xplugin_host::install::install(&host, &mut file, &request, !flags.prepare) {
                Ok(report) => local_done(ctx, &report),
                Err(xplugin_host::install::InstallError::Refused { report }) => {
                    emit(&*report, ctx.json, false);
                    ExitCode::FAILURE
                }
                Err(e) => fail(PROGRAM, &e, ctx.json),
            }
        }
    }
}

/// Who prepares a local install: the user running the command.
fn holder() -> String {
    let uid = nix::unistd::geteuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| format!("{} ", u.name))
        .unwrap_or_default();
    format!(
        "{PROGRAM} {name}uid {} (pid {})",
        uid.as_raw(),
        std::process::id()
    )
}

/// Prints a local result; without a daemon a commit runs from the next start.
fn local_done<T: serde::Serialize + std::fmt::Display>(ctx: &Context<'_>, value: &T) -> ExitCode {
    emit(value, ctx.json, true);
    if !ctx.json {
        println!(
            "no daemon runs for {}: what was committed boots at its next start",
            ctx.root.display()
        );
    }
    ExitCode::SUCCESS
}

/// `commit ID`.
pub fn commit(ctx: &Context<'_>, id: &str) -> ExitCode {
    match ctx.route() {
        Err(e) => fail(PROGRAM, &e, ctx.json),
        Ok(Route::Daemon(socket)) => {
            let request = Request::Commit {
                id: id.to_string(),
                apply: ctx.daemon.apply(),
            };
            match ctx.send(&socket, request, None) {
                Ok(r) => finish(ctx, &socket, r),
                Err(e) => fail(PROGRAM, &not_running(&socket, &e), ctx.json),
            }
        }
        Ok(Route::Local) => match xplugin_host::install::commit(ctx.root, id) {
            Ok(r) => local_done(ctx, &r),
            Err(e) => fail(PROGRAM, &e, ctx.json),
        },
    }
}

/// `abort ID`.
pub fn abort(ctx: &Context<'_>, id: &str) -> ExitCode {
    match ctx.route() {
        Err(e) => fail(PROGRAM, &e, ctx.json),
        Ok(Route::Daemon(socket)) => {
            match ctx.send(&socket, Request::Abort { id: id.to_string() }, None) {
                Ok(r) => print(&r, ctx.json),
                Err(e) => fail(PROGRAM, &not_running(&socket, &e), ctx.json),
            }
        }
        Ok(Route::Local) => {
            match xplugin_host::install::abort(ctx.root, id, &format!("aborted by {}", holder())) {
                Ok(r) => {
                    emit(&r, ctx.json, true);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(PROGRAM, &e, ctx.json),
            }
        }
    }
}

/// `list`, `device-id`, `enable`, `disable`, `remove`, `rollback`,
/// `config show`, `config set`.
pub fn admin(ctx: &Context<'_>, command: AdminCommand) -> ExitCode {
    let apply = ctx.daemon.apply();
    let request = match &command {
        // This device's id is this computer's, daemon or not.
        AdminCommand::DeviceId => None,
        AdminCommand::List => Some(Request::List),
        AdminCommand::Enable { name } => Some(Request::Enable {
            name: name.clone(),
            apply,
        }),
        AdminCommand::Disable { name } => Some(Request::Disable {
            name: name.clone(),
            apply,
        }),
        AdminCommand::Remove { name, cascade } => Some(Request::Remove {
            name: name.clone(),
            cascade: *cascade,
            apply,
        }),
        AdminCommand::Rollback => Some(Request::Rollback { apply }),
        // --controller is the pendant's: refused by run_admin below.
        AdminCommand::Config(
            ConfigCommand::Show {
                controller: Some(_),
                ..
            }
            | ConfigCommand::Set {
                controller: Some(_),
                ..
            },
        ) => None,
        AdminCommand::Config(ConfigCommand::Show { name, .. }) => {
            Some(Request::ConfigShow { name: name.clone() })
        }
        AdminCommand::Config(ConfigCommand::Set {
            name, assignments, ..
        }) => Some(Request::ConfigSet {
            name: name.clone(),
            assignments: assignments.clone(),
        }),
    };
    let Some(request) = request else {
        return run_admin(
            PROGRAM,
            command,
            ctx.config,
            ctx.root,
            Side::Controller,
            ctx.json,
        );
    };
    match ctx.route() {
        Err(e) => fail(PROGRAM, &e, ctx.json),
        Ok(Route::Local) => run_admin(
            PROGRAM,
            command,
            ctx.config,
            ctx.root,
            Side::Controller,
            ctx.json,
        ),
        Ok(Route::Daemon(socket)) => {
            // Answered as they are: nothing to apply afterwards.
            let reads = matches!(
                request,
                Request::List | Request::ConfigShow { .. } | Request::ConfigSet { .. }
            );
            match ctx.send(&socket, request, None) {
                Ok(r) if reads => print(&r, ctx.json),
                Ok(r) => finish(ctx, &socket, r),
                Err(e) => fail(PROGRAM, &not_running(&socket, &e), ctx.json),
            }
        }
    }
}

/// `quarantine list`.
pub fn quarantine_list(ctx: &Context<'_>) -> ExitCode {
    match ctx.route() {
        Err(e) => fail(PROGRAM, &e, ctx.json),
        Ok(Route::Daemon(socket)) => match ctx.send(&socket, Request::QuarantineList, None) {
            Ok(r) => print(&r, ctx.json),
            Err(e) => fail(PROGRAM, &not_running(&socket, &e), ctx.json),
        },
        Ok(Route::Local) => match xplugin_host::quarantine::list(ctx.root) {
            Ok(l) => {
                emit(&l, ctx.json, true);
                ExitCode::SUCCESS
            }
            Err(e) => fail(PROGRAM, &e, ctx.json),
        },
    }
}

/// `quarantine clear NAME` / `--all`.
pub fn quarantine_clear(ctx: &Context<'_>, name: Option<&str>, all: bool) -> ExitCode {
    match ctx.route() {
        Err(e) => fail(PROGRAM, &e, ctx.json),
        Ok(Route::Daemon(socket)) => {
            let request = Request::QuarantineClear {
                name: name.map(str::to_string),
                all,
            };
            match ctx.send(&socket, request, None) {
                Ok(r) => print(&r, ctx.json),
                Err(e) => fail(PROGRAM, &not_running(&socket, &e), ctx.json),
            }
        }
        Ok(Route::Local) => match xplugin_host::quarantine::clear(ctx.root, name, all) {
            Ok(message) => {
                emit(&xplugin_cli::Message { message }, ctx.json, true);
                ExitCode::SUCCESS
            }
            Err(e) => fail(PROGRAM, &e, ctx.json),
        },
    }
}

/// `diagnostics -o FILE`.
pub fn diagnostics(ctx: &Context<'_>, output: &Path) -> ExitCode {
    use xplugin_host::diagnostics::{local_parts, write, Part};
    let mut parts = local_parts(ctx.root, ctx.config, PROGRAM);
    let status = match ctx.route() {
        Ok(Route::Daemon(socket)) => match ctx.send(&socket, Request::Status, None) {
            Ok(r) => r.json,
            Err(e) => serde_json::json!({ "error": xplugin_model::error_chain(&e) }),
        },
        Ok(Route::Local) => serde_json::json!({ "daemon": "not running" }),
        Err(e) => serde_json::json!({ "error": xplugin_model::error_chain(&e) }),
    };
    parts.push(Part::json("status.json", &status));
    if let Some(t) = status.get("timing") {
        parts.push(Part::json("timing.json", t));
    }
    match write(output, &parts) {
        Ok(()) => {
            let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
            emit(
                &xplugin_cli::Message {
                    message: format!("wrote {} ({})", output.display(), names.join(", ")),
                },
                ctx.json,
                true,
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let p = Problems(vec![Problem::from_error(
                ProblemCode::UsageInvalidArgument,
                output.display().to_string(),
                &e,
                "give a writable path for the archive",
            )]);
            fail(PROGRAM, &p, ctx.json)
        }
    }
}
