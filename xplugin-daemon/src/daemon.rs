//! The daemon's life: take the root's daemon lock, boot the installed
//! plugins, start the real-time cycle and the admin socket, then serve until
//! SIGTERM (stop the plugins in reverse order, exit 0), re-reading the
//! configuration on SIGHUP, and applying committed generations by
//! re-executing itself (libraries are never unloaded, so a fresh process is
//! the clean way to load new versions).
//!
//! Threads: `main` (this loop: signals, the cycle's notices, applying),
//! `xplugin-cycle` and `xplugin-service` (see `xplugin_host::cycle`),
//! `xplugin-admin` and its connection threads (the socket). Admin requests
//! run on the connection threads; what needs the running plugins (apply)
//! goes to `main` through a channel. Nothing waits for the cycle thread.

use crate::access::{Access, Peer};
use crate::notify::Notifier;
use crate::presence::DaemonLock;
use crate::protocol::{Envelope, Request, Response};
use crate::server::{refusal, Handler, Server};
use crate::status::{ApplyStatus, Generations, PendingApply, PluginStatus, Status};
use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;
use std::ffi::OsString;
use std::fmt::Display;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use xplugin_host::boot::{boot, BootOptions, BootReport, Booted, Guard};
use xplugin_host::config::{ApplyPolicy, HostConfig, HostSide};
use xplugin_host::cycle::{CycleHooks, CycleSettings, CycleStats};
use xplugin_host::install::{InstallError, InstallHost, InstallReport, InstallRequest};
use xplugin_host::plugin_config::{ConfigError, ConfigSetReport};
use xplugin_host::verify::Policy;
use xplugin_model::manifest::Side;
use xplugin_model::{Failure, Problem, ProblemCode, Problems, Version};
use xplugin_store::{Store, TransactionState};

/// Exit status: stopped on SIGTERM/SIGINT after stopping the plugins.
pub const EXIT_OK: u8 = 0;
/// Exit status: the daemon could not start (root locked by another daemon,
/// socket in use, boot impossible).
pub const EXIT_FAILED: u8 = 1;
/// Exit status: applying a new generation failed to re-execute the daemon
/// (the plugins were already stopped); systemd restarts it.
pub const EXIT_REEXEC_FAILED: u8 = 3;

/// Default admin socket.
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/xplugin/controller.sock";
/// Default time `when-idle` waits for busy plugins.
pub const DEFAULT_APPLY_TIMEOUT: Duration = Duration::from_secs(300);

/// What the daemon needs.
pub struct DaemonOptions {
    /// The controller's install root.
    pub root: PathBuf,
    /// Its configuration.
    pub config: HostConfig,
    /// The configuration file (re-read on SIGHUP), if one was given.
    pub config_path: Option<PathBuf>,
    /// The controller's version.
    pub host_version: Version,
    /// The real-time cycle.
    pub cycle: CycleSettings,
    /// The admin socket.
    pub admin_socket: PathBuf,
    /// The command line, for re-executing on apply.
    pub argv: Vec<OsString>,
}

/// The signals the program's handlers set.
pub struct Signals {
    /// SIGTERM or SIGINT.
    pub stop: &'static AtomicBool,
    /// SIGHUP.
    pub reload: &'static AtomicBool,
}

enum MainRequest {
    Apply {
        generation: u64,
        policy: ApplyPolicy,
    },
    /// Offer a running plugin its new configuration (the main thread owns
    /// the boot, so it makes the call; see `Booted::reconfigure`).
    Reconfigure {
        name: String,
        config_json: String,
        reply: Sender<xplugin_host::boot::LiveReconfigure>,
    },
}

/// What the admin threads and the main loop share.
struct Shared {
    root: PathBuf,
    config: Mutex<HostConfig>,
    host_version: Version,
    started_unix: u64,
    live: Mutex<Live>,
    cycle: Option<Arc<CycleStats>>,
    main: Sender<MainRequest>,
    /// The plugin message bridge, when the pendant link serves (without
    /// `listen` no tap is put on the bus: nothing could cross).
    bridge: Option<Arc<xplugin_host::bridge::Bridge>>,
}

struct Live {
    running_generation: Option<u64>,
    report: BootReport,
    apply: ApplyStatus,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a plain assignment: a panic cannot
    // leave them half-written.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the daemon until SIGTERM; returns the exit status.
pub fn run(opts: DaemonOptions, signals: Signals) -> u8 {
    let access = match Access::configured(
        opts.config.admin_user.as_deref(),
        opts.config.admin_group.as_deref(),
    ) {
        Ok(a) => a,
        Err(e) => {
            log::error!("{e}; fix admin_user / admin_group in the configuration");
            return EXIT_FAILED;
        }
    };
    if let Err(e) = Store::open(&opts.root) {
        log::error!("{}", xplugin_model::error_chain(&e));
        return EXIT_FAILED;
    }
    let daemon_lock = match DaemonLock::acquire(&opts.root, &opts.admin_socket) {
        Ok(l) => l,
        Err(e) => {
            log::error!("{e}");
            return EXIT_FAILED;
        }
    };
    if std::env::var_os("XPLUGIN_REEXEC").is_some() {
        log::info!("re-executed to apply the committed generation");
    }
    let boot_opts = BootOptions {
        side: Side::Controller,
        root: opts.root.clone(),
        host_version: opts.host_version.clone(),
        config: &opts.config,
        controller_running: None,
        lock_timeout: Duration::from_secs(60),
        cycle_budget_us: opts.config.cycle_budget_us,
        guard: Some(Guard::from_config(
            &opts.config.faults,
            opts.cycle.period_ns,
            (opts.cycle.rt_priority, opts.cycle.cpu),
        )),
        verify: opts.config.verify.unwrap_or_default(),
        stops_after_start: false,
    };
    let mut booted = match boot(&boot_opts) {
        Ok(b) => b,
        Err(e) => {
            log::error!(
                "cannot boot the installed plugins: {}",
                xplugin_model::error_chain(&e)
            );
            return EXIT_FAILED;
        }
    };
    log::info!("booted:\n{}", booted.report);
    if let Err(e) = booted.start_cycle(opts.cycle.clone(), CycleHooks::default()) {
        log::error!("cannot start the cycle thread: {e}");
        booted.shutdown();
        return EXIT_FAILED;
    }
    let (main_tx, main_rx) = crossbeam_channel::bounded(16);
    let shared = Arc::new(Shared {
        root: Store::open(&opts.root)
            .map(|s| s.root().to_path_buf())
            .unwrap_or_else(|_| opts.root.clone()),
        config: Mutex::new(opts.config.clone()),
        host_version: opts.host_version.clone(),
        started_unix: now_unix(),
        live: Mutex::new(Live {
            running_generation: booted.report.generation,
            report: booted.report.clone(),
            apply: ApplyStatus {
                policy: opts.config.apply.unwrap_or_default(),
                ..ApplyStatus::default()
            },
        }),
        cycle: booted.cycle().map(|c| c.stats().clone()),
        main: main_tx,
        bridge: opts
            .config
            .listen
            .is_some()
            .then(|| booted.bridge(xplugin_link::bridge::Limits::default())),
    });
    let group = access.admin_gid;
    let handler = Arc::new(Admin {
        shared: shared.clone(),
    });
    let mut server = match Server::start(&opts.admin_socket, access, group, handler.clone()) {
        Ok(s) => s,
        Err(e) => {
            log::error!(
                "cannot serve the admin socket {}: {e}; pass --admin-socket PATH or set admin_socket",
                opts.admin_socket.display()
            );
            booted.shutdown();
            return EXIT_FAILED;
        }
    };
    log::info!("admin socket {} ready", server.path().display());
    let link = match crate::link::start(&opts, handler, shared.bridge.clone()) {
        Ok(l) => l,
        Err(e) => {
            log::error!("{e}");
            server.stop();
            booted.shutdown();
            return EXIT_FAILED;
        }
    };
    // Ready once both the admin socket and the pendant link serve.
    let mut notifier = Notifier::from_env();
    notifier.ready(&booted.report);
    let outcome = main_loop(
        &opts,
        &signals,
        &shared,
        &mut booted,
        &main_rx,
        &mut notifier,
    );
    drop(link);
    match outcome {
        Exit::Stop => {
            notifier.stopping();
            log::info!("stopping: plugins stop in reverse order");
            let report = booted.shutdown();
            server.stop();
            drop(daemon_lock);
            log::info!("stopped:\n{report}");
            EXIT_OK
        }
        Exit::Apply { generation } => {
            notifier.applying(generation);
            log::info!("applying generation {generation}: stopping the plugins, then re-executing");
            let report = booted.shutdown();
            log::info!("stopped for the apply:\n{report}");
            server.stop();
            drop(daemon_lock);
            let e = reexec(&opts.argv);
            log::error!("cannot re-execute the daemon to apply generation {generation}: {e}; the plugins are stopped, restart the service");
            EXIT_REEXEC_FAILED
        }
    }
}

enum Exit {
    Stop,
    Apply { generation: u64 },
}

fn main_loop(
    opts: &DaemonOptions,
    signals: &Signals,
    shared: &Shared,
    booted: &mut Booted,
    requests: &Receiver<MainRequest>,
    notifier: &mut Notifier,
) -> Exit {
    let mut pending: Option<(PendingApply, Instant, Duration)> = None;
    let mut last_housekeeping = Instant::now();
    loop {
        if signals.stop.load(Ordering::SeqCst) {
            return Exit::Stop;
        }
        if signals.reload.swap(false, Ordering::SeqCst) {
            notifier.reloading();
            reload(opts, shared);
            notifier.reloaded(&booted.report);
        }
        if let Some(hang) = booted.hang() {
            // Stops the others and exits with the hang status.
            booted.safe_stop(&hang);
        }
        if !booted.poll_cycle().is_empty() {
            lock(&shared.live).report = booted.report.clone();
        }
        match requests.recv_timeout(Duration::from_millis(20)) {
            Ok(MainRequest::Apply { generation, policy }) => match policy {
                ApplyPolicy::Now => return Exit::Apply { generation },
                ApplyPolicy::WhenIdle => {
                    let timeout = lock(&shared.config)
                        .apply_timeout_s
                        .map_or(DEFAULT_APPLY_TIMEOUT, Duration::from_secs);
                    let now = now_unix();
                    pending = Some((
                        PendingApply {
                            generation,
                            policy,
                            since_unix: now,
                            deadline_unix: now + timeout.as_secs(),
                            busy: Vec::new(),
                        },
                        Instant::now(),
                        timeout,
                    ));
                }
                ApplyPolicy::NextBoot => {}
            },
            Ok(MainRequest::Reconfigure {
                name,
                config_json,
                reply,
            }) => {
                let answer = booted.reconfigure(&name, &config_json);
                // The caller may have given up waiting: nothing to do then.
                let _ = reply.send(answer);
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Exit::Stop,
        }
        if let Some((p, since, timeout)) = pending.as_mut() {
            let busy = booted.busy();
            if busy.is_empty() {
                return Exit::Apply {
                    generation: p.generation,
                };
            }
            if since.elapsed() >= *timeout {
                let why = format!(
                    "generation {} was not applied: {} held the controller busy for {} s (apply_timeout_s); it boots at the next start, or apply it with --apply now",
                    p.generation,
                    busy.join(", "),
                    timeout.as_secs()
                );
                log::warn!("{why}");
                let mut live = lock(&shared.live);
                live.apply.pending = None;
                live.apply.last_failure = Some(why);
                pending = None;
            } else if p.busy != busy {
                p.busy = busy;
                lock(&shared.live).apply.pending = Some(p.clone());
            } else {
                lock(&shared.live).apply.pending = Some(p.clone());
            }
        }
        if last_housekeeping.elapsed() >= Duration::from_secs(1) {
            last_housekeeping = Instant::now();
            expire_transactions(&shared.root);
        }
        notifier.tick(shared.cycle.as_deref());
    }
}

/// Aborts prepared transactions whose deadline passed (when the root is
/// not busy; the next round tries again).
fn expire_transactions(root: &Path) {
    let Ok(store) = Store::open(root) else { return };
    let Ok(open) = store.open_transaction() else {
        return;
    };
    let due = store
        .transactions()
        .map(|all| all.iter().any(|t| t.expired(now_unix())))
        .unwrap_or(false);
    if open.is_none() && !due {
        return;
    }
    if !due {
        return;
    }
    if let Ok(lock) = store.lock() {
        match store.expire_transactions(&lock) {
            Ok(expired) => {
                for t in expired {
                    log::warn!(
                        "install transaction {} (held by {}) aborted: {}",
                        t.id,
                        t.holder,
                        t.reason.as_deref().unwrap_or("timed out")
                    );
                }
            }
            Err(e) => log::warn!("cannot expire install transactions: {e}"),
        }
    }
}

/// SIGHUP: re-read the configuration; say what changed and what needs a
/// restart.
fn reload(opts: &DaemonOptions, shared: &Shared) {
    let new = match HostConfig::load(opts.config_path.as_deref(), HostSide::Controller) {
        Ok(c) => c,
        Err(e) => {
            log::error!(
                "SIGHUP: configuration not reloaded: {}",
                xplugin_model::error_chain(&e)
            );
            return;
        }
    };
    let mut current = lock(&shared.config);
    let mut live_changes = Vec::new();
    let mut restart = Vec::new();
    let old = &*current;
    macro_rules! compare {
        ($list:ident, $($field:ident),*) => {
            $( if format!("{:?}", old.$field) != format!("{:?}", new.$field) {
                $list.push(stringify!($field));
            } )*
        };
    }
    compare!(
        live_changes,
        trusted_keys_dir,
        device,
        allow_unlicensed,
        limits,
        apply,
        apply_timeout_s,
        transaction_timeout_s
    );
    compare!(
        restart,
        host_version,
        root,
        cycle_us,
        rt_priority,
        cpu,
        overrun_policy,
        overrun_limit,
        cycle_budget_us,
        admin_socket,
        listen,
        admin_user,
        admin_group
    );
    if live_changes.is_empty() && restart.is_empty() {
        log::info!("SIGHUP: configuration re-read, nothing changed");
    } else {
        if !live_changes.is_empty() {
            log::info!(
                "SIGHUP: in effect now for new installs and applies: {}",
                live_changes.join(", ")
            );
        }
        if !restart.is_empty() {
            log::warn!(
                "SIGHUP: changed but in effect only after a restart of the daemon (systemctl restart xplugin-controller): {}",
                restart.join(", ")
            );
        }
    }
    // Keep what needs a restart as it runs, so status stays true.
    let mut merged = new.clone();
    merged.host_version = current.host_version.clone();
    merged.root = current.root.clone();
    merged.cycle_us = current.cycle_us;
    merged.rt_priority = current.rt_priority;
    merged.cpu = current.cpu;
    merged.overrun_policy = current.overrun_policy;
    merged.overrun_limit = current.overrun_limit;
    merged.cycle_budget_us = current.cycle_budget_us;
    merged.admin_socket = current.admin_socket.clone();
    merged.listen = current.listen.clone();
    merged.admin_user = current.admin_user.clone();
    merged.admin_group = current.admin_group.clone();
    *current = merged;
    lock(&shared.live).apply.policy = current.apply.unwrap_or_default();
}

fn reexec(argv: &[OsString]) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("/proc/self/exe");
    if let Some((first, rest)) = argv.split_first() {
        cmd.arg0(first).args(rest);
    }
    cmd.env("XPLUGIN_REEXEC", "1").exec()
}

/// The admin socket's handler (the pendant link's too: [`crate::link`]).
pub(crate) struct Admin {
    shared: Arc<Shared>,
}

/// What applying after a change said.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyOutcome {
    /// The policy used.
    pub policy: ApplyPolicy,
    /// `scheduled` (the daemon applies it), `next-boot`, `not-needed` (that
    /// generation runs already).
    pub state: &'static str,
    /// The generation concerned.
    pub generation: Option<u64>,
}

impl Display for ApplyOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.generation.map_or("none".into(), |g| g.to_string());
        match self.state {
            "scheduled" => writeln!(f, "applying generation {g} ({})", self.policy),
            "next-boot" => writeln!(
                f,
                "generation {g} is committed; it runs from the next start of the controller"
            ),
            _ => writeln!(f, "generation {g} runs already"),
        }
    }
}

fn respond<T: Serialize + Display>(value: &T, apply: Option<&ApplyOutcome>) -> Response {
    let mut json = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    if !json.is_object() {
        json = serde_json::json!({ "result": json });
    }
    let mut text = value.to_string();
    if let serde_json::Value::Object(m) = &mut json {
        m.insert("ok".into(), true.into());
        if let Some(a) = apply {
            m.insert("apply".into(), serde_json::to_value(a).unwrap_or_default());
            text.push_str(&a.to_string());
        }
    }
    Response {
        ok: true,
        exit: 0,
        text,
        json,
    }
}

/// The program whose words the daemon answers in.
const PROGRAM: &str = "xplugin-controller";

fn problems_response(problems: &Problems, extra: Option<serde_json::Value>) -> Response {
    let mut json = extra.unwrap_or_else(|| xplugin_model::failure_json(problems));
    if let serde_json::Value::Object(m) = &mut json {
        m.insert("ok".into(), false.into());
        m.insert(
            "problems".into(),
            serde_json::to_value(problems).unwrap_or_default(),
        );
    }
    Response {
        ok: false,
        exit: 1,
        text: format!("{}\n", xplugin_model::failure_text(PROGRAM, problems)),
        json,
    }
}

fn failure(e: &dyn Failure) -> Response {
    problems_response(&e.problems(), None)
}

fn install_failure(e: &InstallError) -> Response {
    match e {
        InstallError::Refused { report } => {
            let json = serde_json::to_value(&**report).ok();
            let mut r = problems_response(&Problems(report.problems.clone()), json);
            r.text = format!("{report}{PROGRAM}: error: {e}\n");
            r
        }
        InstallError::Store(s) => failure(s),
        other => problems_response(
            &Problems(vec![Problem::from_error(
                ProblemCode::PackageUnreadable,
                "package",
                other,
                "check that the package file is readable and the controller's disk has space",
            )]),
            None,
        ),
    }
}

impl Admin {
    pub(crate) fn root(&self) -> &Path {
        &self.shared.root
    }

    pub(crate) fn config(&self) -> HostConfig {
        lock(&self.shared.config).clone()
    }

    pub(crate) fn host_version(&self) -> &Version {
        &self.shared.host_version
    }

    pub(crate) fn apply(&self, requested: Option<ApplyPolicy>) -> ApplyOutcome {
        let policy =
            requested.unwrap_or_else(|| lock(&self.shared.config).apply.unwrap_or_default());
        let committed = Store::open(&self.shared.root)
            .ok()
            .and_then(|s| s.current().ok().flatten())
            .map(|g| g.number);
        let running = lock(&self.shared.live).running_generation;
        let state = if committed == running {
            "not-needed"
        } else if policy == ApplyPolicy::NextBoot {
            "next-boot"
        } else if let Some(generation) = committed {
            match self
                .shared
                .main
                .try_send(MainRequest::Apply { generation, policy })
            {
                Ok(()) => {
                    // Visible at once, so a caller polling status never sees
                    // an earlier apply's outcome as this one's.
                    let now = now_unix();
                    let mut live = lock(&self.shared.live);
                    live.apply.last_failure = None;
                    live.apply.pending = Some(PendingApply {
                        generation,
                        policy,
                        since_unix: now,
                        deadline_unix: now,
                        busy: Vec::new(),
                    });
                    "scheduled"
                }
                Err(_) => "next-boot",
            }
        } else {
            "next-boot"
        };
        ApplyOutcome {
            policy,
            state,
            generation: committed,
        }
    }

    fn set_enabled(
        &self,
        root: &Path,
        name: &str,
        enabled: bool,
        apply: Option<ApplyPolicy>,
    ) -> Response {
        match xplugin_host::admin::set_enabled(root, name, enabled) {
            Ok(g) => respond(
                &Done {
                    message: format!(
                        "{name} {} (generation {})",
                        if enabled { "enabled" } else { "disabled" },
                        g.number
                    ),
                },
                Some(&self.apply(apply)),
            ),
            Err(e) => failure(&e),
        }
    }

    pub(crate) fn status(&self) -> Status {
        let store = Store::open(&self.shared.root).ok();
        let committed = store
            .as_ref()
            .and_then(|s| s.current().ok().flatten())
            .map(|g| g.number);
        let prepared = store
            .as_ref()
            .and_then(|s| s.open_transaction().ok().flatten());
        let live = lock(&self.shared.live);
        let config = lock(&self.shared.config);
        Status {
            safe_mode: live.report.safe_mode.clone(),
            previous_end: live.report.previous_end.clone(),
            pid: std::process::id(),
            root: self.shared.root.clone(),
            started_unix: self.shared.started_unix,
            host_version: self.shared.host_version.to_string(),
            generation: Generations {
                running: live.running_generation,
                running_since_unix: self.shared.started_unix,
                committed,
                pending_apply: committed != live.running_generation,
                prepared,
            },
            plugins: live
                .report
                .plugins
                .iter()
                .map(|p| PluginStatus {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    state: p.state,
                    reason: p.reason.clone(),
                })
                .collect(),
            quarantine: live.report.quarantine.clone(),
            apply: live.apply.clone(),
            timing: self.shared.cycle.as_ref().map(|c| c.report()),
            development_mode: config.allow_unlicensed,
            bridge: self.shared.bridge.as_ref().map(|b| b.stats()),
        }
    }

    fn install(&self, fd: Option<OwnedFd>, peer: &Peer, req: InstallArgs) -> Response {
        let Some(fd) = fd else {
            return refusal(
                ProblemCode::UsageInvalidArgument,
                "install",
                "the request carries no package (no file descriptor was passed)",
                "use `xplugin-controller install PKG`",
            );
        };
        let mut file = std::fs::File::from(fd);
        let config = lock(&self.shared.config).clone();
        let host = InstallHost {
            root: self.shared.root.clone(),
            host_version: self.shared.host_version.clone(),
            config: &config,
        };
        let request = InstallRequest {
            holder: format!("admin {}", peer.describe()),
            policy: req.policy,
            timeout: config.transaction_timeout_s.map_or(
                xplugin_store::transaction::DEFAULT_TIMEOUT,
                Duration::from_secs,
            ),
            label: req.label,
        };
        match xplugin_host::install::install(&host, &mut file, &request, !req.prepare) {
            Ok(report) => {
                let apply =
                    (report.state == TransactionState::Committed).then(|| self.apply(req.apply));
                respond(&report, apply.as_ref())
            }
            Err(e) => install_failure(&e),
        }
    }

    fn decided(
        &self,
        result: Result<InstallReport, InstallError>,
        apply: Option<Option<ApplyPolicy>>,
    ) -> Response {
        match result {
            Ok(report) => {
                let outcome = apply
                    .filter(|_| report.state == TransactionState::Committed)
                    .map(|a| self.apply(a));
                respond(&report, outcome.as_ref())
            }
            Err(e) => install_failure(&e),
        }
    }
}

struct InstallArgs {
    prepare: bool,
    policy: Policy,
    label: String,
    apply: Option<ApplyPolicy>,
}

/// `list`, `enable`, ... answered in the same words as without a daemon.
#[derive(Serialize)]
struct Done {
    message: String,
}

impl Display for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.message)
    }
}

fn same_root(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// How long an admin thread waits for the main thread to answer a live
/// configuration change: the gap between two steps plus `reconfigure`,
/// which the supervisor bounds by `reconfigure_timeout_s`.
const RECONFIGURE_WAIT: Duration = Duration::from_secs(60);

impl Admin {
    /// `config set` through the daemon: validated here, offered to the
    /// running plugin by the main thread, stored when the plugin took it.
    fn config_set(&self, root: &Path, name: &str, assignments: &[String]) -> Response {
        match self.config_change(root, name, assignments) {
            Ok(r) => respond(&r, None),
            Err(e) => failure(&e),
        }
    }

    /// The change behind `config set`, for the admin socket and the
    /// pendant link.
    pub(crate) fn config_change(
        &self,
        root: &Path,
        name: &str,
        assignments: &[String],
    ) -> Result<ConfigSetReport, ConfigError> {
        let running = lock(&self.shared.live).running_generation;
        let Some(running) = running else {
            // Nothing runs: what is stored is what the next start gets.
            return xplugin_host::plugin_config::set_local(
                root,
                Side::Controller,
                name,
                assignments,
            );
        };
        let main = self.shared.main.clone();
        let mut offer = |config_json: &str| -> xplugin_host::plugin_config::LiveAnswer {
            let (tx, rx) = crossbeam_channel::bounded(1);
            main.send_timeout(
                MainRequest::Reconfigure {
                    name: name.to_string(),
                    config_json: config_json.to_string(),
                    reply: tx,
                },
                Duration::from_secs(5),
            )
            .map_err(|_| {
                "the daemon's main thread does not take requests (it is stopping)".to_string()
            })?;
            rx.recv_timeout(RECONFIGURE_WAIT).map_err(|_| {
                format!(
                    "no answer from the daemon's main thread within {} s",
                    RECONFIGURE_WAIT.as_secs()
                )
            })
        };
        let r =
            xplugin_host::plugin_config::set_live(root, name, assignments, running, &mut offer)?;
        log::info!("{}", r.to_string().trim_end());
        Ok(r)
    }
}

impl Handler for Admin {
    fn handle(&self, envelope: Envelope, fd: Option<OwnedFd>, peer: &Peer) -> Response {
        if let Some(root) = &envelope.root {
            if !same_root(root, &self.shared.root) {
                return refusal(
                    ProblemCode::DaemonWrongRoot,
                    "admin socket",
                    &format!(
                        "this daemon serves {}, not {}",
                        self.shared.root.display(),
                        root.display()
                    ),
                    "pass the --admin-socket of the daemon that serves that root",
                );
            }
        }
        let root = self.shared.root.clone();
        match envelope.request {
            Request::Status => respond(&self.status(), None),
            Request::List => match xplugin_host::admin::list(&root, Side::Controller) {
                Ok(l) => respond(&l, None),
                Err(e) => failure(&e),
            },
            Request::Enable { name, apply } => self.set_enabled(&root, &name, true, apply),
            Request::Disable { name, apply } => self.set_enabled(&root, &name, false, apply),
            Request::Remove {
                name,
                cascade,
                apply,
            } => match xplugin_host::admin::remove(&root, Side::Controller, &name, cascade) {
                Ok(removed) => respond(
                    &Done {
                        message: format!("removed: {}", removed.join(", ")),
                    },
                    Some(&self.apply(apply)),
                ),
                Err(e) => failure(&e),
            },
            Request::Rollback { apply } => {
                match xplugin_host::admin::rollback(&root, Side::Controller) {
                    Ok(g) => respond(
                        &Done {
                            message: format!("rolled back to generation {}", g.number),
                        },
                        Some(&self.apply(apply)),
                    ),
                    Err(e) => failure(&e),
                }
            }
            Request::Install {
                prepare,
                force,
                allow_downgrade,
                label,
                apply,
            } => self.install(
                fd,
                peer,
                InstallArgs {
                    prepare,
                    policy: Policy {
                        force,
                        allow_downgrade,
                    },
                    label,
                    apply,
                },
            ),
            Request::Commit { id, apply } => {
                self.decided(xplugin_host::install::commit(&root, &id), Some(apply))
            }
            Request::Abort { id } => self.decided(
                xplugin_host::install::abort(
                    &root,
                    &id,
                    &format!("aborted by {}", peer.describe()),
                ),
                None,
            ),
            Request::Outcome { id } => {
                self.decided(xplugin_host::install::outcome(&root, &id), None)
            }
            Request::ConfigShow { name } => {
                match xplugin_host::plugin_config::show(&root, Side::Controller, &name) {
                    Ok(shown) => respond(&shown, None),
                    Err(e) => failure(&e),
                }
            }
            Request::ConfigSet { name, assignments } => self.config_set(&root, &name, &assignments),
            Request::QuarantineList => match xplugin_host::quarantine::list(&root) {
                Ok(l) => respond(&l, None),
                Err(e) => failure(&e),
            },
            Request::QuarantineClear { name, all } => {
                match xplugin_host::quarantine::clear(&root, name.as_deref(), all) {
                    Ok(message) => respond(&Done { message }, None),
                    Err(e) => failure(&e),
                }
            }
        }
    }
}
