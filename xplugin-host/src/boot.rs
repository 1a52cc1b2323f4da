//! Loading an installed plugin set: the controller's boot and the pendant's
//! `run`. Verify every installed plugin again (files may have changed on disk
//! since install), read the configuration values of the generation booted
//! ([`crate::plugin_config::values_for`]), resolve the dependency graph, then
//! load, init (with those values) and start in order through [`Lifecycle`].
//!
//! This is a library so that the controller daemon embeds the same code the
//! command-line `boot` runs.

use crate::checks::{HostFacts, LicenseStatus, PluginCheck};
use crate::config::HostConfig;
use crate::cycle::{Cycle, CycleHooks, CycleNotice, CycleSettings, TimingReport};
use crate::lifecycle::{Lifecycle, PluginToLoad, Reconfigured};
use crate::services::Bus;
use crate::stage::Stage;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use xplugin_model::graph::{resolve, Node, ResolveInput};
use xplugin_model::manifest::Side;
use xplugin_model::{Problem, Problems, Version};
use xplugin_store::{Store, StoreError};

/// What a boot needs to know.
pub struct BootOptions<'a> {
    /// Client (pendant `run`) or controller (`boot`).
    pub side: Side,
    /// Install root.
    pub root: PathBuf,
    /// This host's version.
    pub host_version: Version,
    /// Host settings (trust store, device, development mode).
    pub config: &'a HostConfig,
    /// Client only: controller plugins known to run, with versions (for
    /// `ctrlDepend`). `None` = unknown.
    pub controller_running: Option<BTreeMap<String, Version>>,
    /// How long to wait for an import holding the lock.
    pub lock_timeout: Duration,
    /// Controller: the step budget of plugins whose manifest sets none
    /// (`None` = no budget).
    pub cycle_budget_us: Option<u64>,
    /// Controller: fault containment (journal, quarantine, supervisor);
    /// `None` runs without (tests that load plugins in-process).
    pub guard: Option<Guard>,
    /// How the installed files are verified ([`crate::digests`]).
    pub verify: crate::digests::VerifyMode,
    /// The caller stops the plugins right after starting them (`boot`
    /// without cycles, a pendant `run` without `--until-stopped`). Such a
    /// run starts no background verification, which would never begin (it
    /// waits [`BACKGROUND_DELAY`] after start), and its journal holds one
    /// phase from the first load to the clean end,
    /// [`crate::journal::Phase::StartingAndStopping`]: no plugin call runs
    /// between the last start and the first stop, so a "running" and a
    /// "stopping" phase would only cost a disk flush each, and a loss of
    /// the machine reads the same in both (nobody is blamed, the next run
    /// makes each call durable).
    pub stops_after_start: bool,
}

/// Fault containment settings of a boot.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// When crashes quarantine.
    pub policy: crate::quarantine::Policy,
    /// How long each call into a plugin may take.
    pub timeouts: crate::supervisor::Timeouts,
    /// `(priority, cpu)` of the cycle, to place the supervisor.
    pub rt: (u8, Option<usize>),
}

impl Guard {
    /// The guard the configuration asks for, for a cycle of `period_ns` at
    /// `(priority, cpu)`.
    pub fn from_config(
        f: &crate::config::FaultConfig,
        period_ns: u64,
        rt: (u8, Option<usize>),
    ) -> Guard {
        let d = crate::quarantine::Policy::default();
        let t = crate::supervisor::Timeouts::default();
        let secs = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_secs);
        let step_default =
            Duration::from_nanos(period_ns.saturating_mul(20)).max(Duration::from_millis(100));
        Guard {
            policy: crate::quarantine::Policy {
                step_crashes: f.step_crashes.unwrap_or(d.step_crashes).max(1),
                unattributed_crashes: f.crash_loop_limit.unwrap_or(d.unattributed_crashes).max(1),
                window: secs(f.window_s, d.window),
            },
            timeouts: crate::supervisor::Timeouts {
                init: secs(f.init_timeout_s, t.init),
                start: secs(f.start_timeout_s, t.start),
                stop: secs(f.stop_timeout_s, t.stop),
                destroy: secs(f.destroy_timeout_s, t.destroy),
                reconfigure: secs(f.reconfigure_timeout_s, t.reconfigure),
                message: t.message,
                step: f
                    .step_timeout_ms
                    .map_or(step_default, Duration::from_millis),
            },
            rt,
        }
    }
}

/// Why a boot could not even begin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootError {
    /// The install root is unusable or locked too long.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One plugin's line in the report.
#[derive(Debug, Clone, Serialize)]
pub struct PluginReport {
    /// Plugin name.
    pub name: String,
    /// Plugin version (from the manifest, if it parsed).
    pub version: Option<String>,
    /// Where it stands.
    pub state: BootState,
    /// Why it is not running, as a chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// License outcome.
    pub license: LicenseStatus,
    /// Its entry modules in start order (a library that lists them, ABI
    /// 1.1), each with its state.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<crate::lifecycle::ModuleOutcome>,
    /// The host's calls into it, stage by stage, in stage order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageReport>,
}

/// One stage of the calls into a plugin, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageReport {
    /// The host's stage.
    pub stage: Stage,
    /// The vendor's name of it on this side (client: `after-init` for
    /// `start`, `detach` for `stop` and `destroy`).
    pub vendor_stage: &'static str,
    /// Calls made (`idle`: rounds).
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
    /// False when the plugin has no such (optional) function.
    pub provided: bool,
    /// The last failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl StageReport {
    fn of(side: Side, s: &crate::lifecycle::StageOutcome) -> StageReport {
        let vendor_stage = match (side, s.stage) {
            (Side::Client, Stage::Start) => "after-init",
            (Side::Client, Stage::Stop | Stage::Destroy) => "detach",
            (_, stage) => stage.as_str(),
        };
        StageReport {
            stage: s.stage,
            vendor_stage,
            calls: s.calls,
            failures: s.failures,
            provided: s.provided,
            last_error: s.last_error.clone(),
        }
    }
}

impl std::fmt::Display for StageReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match (self.vendor_stage, self.stage) {
            ("detach", Stage::Stop) => "detach (stop)",
            ("detach", Stage::Destroy) => "detach (destroy)",
            (v, _) => v,
        };
        match (self.provided, self.failures, self.calls) {
            (false, _, _) => write!(f, "{name} not provided"),
            (true, 0, 1) => write!(f, "{name} ok"),
            (true, 0, n) => write!(f, "{name} ok x{n}"),
            (true, k, n) => write!(
                f,
                "{name} FAILED {k} of {n}: {}",
                self.last_error.as_deref().unwrap_or("?")
            ),
        }
    }
}

/// The order stages are reported in: the order they run.
const STAGE_ORDER: [Stage; 7] = [
    Stage::Init,
    Stage::Start,
    Stage::Render,
    Stage::Idle,
    Stage::Reconfigure,
    Stage::Stop,
    Stage::Destroy,
];

/// Where a plugin stands in a boot report. The names (`--json` and text)
/// are stable: scripts read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum BootState {
    /// Verified and resolved, not loaded yet.
    Pending,
    /// `init` done, not started yet.
    Initialized,
    /// Started and running.
    Running,
    /// Ran and was stopped.
    Stopped,
    /// Initialised and destroyed without having been started.
    Destroyed,
    /// A call failed (see the reason).
    Failed,
    /// Not loaded or started because a dependency failed.
    Skipped,
    /// Refused before loading (checks, graph), see the reason.
    Blocked,
    /// Disabled by the operator (controller: not loaded).
    Disabled,
    /// Client plugin with `enable: false`: initialised, not started.
    LoadedNotEnabled,
    /// No library for this platform in the plugin folder.
    NotForThisPlatform,
    /// Not loaded: it crashed or hung the controller (see the reason and
    /// `quarantine list`).
    Quarantined,
}

impl BootState {
    /// The stable name (`loaded-not-enabled`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            BootState::Pending => "pending",
            BootState::Initialized => "initialized",
            BootState::Running => "running",
            BootState::Stopped => "stopped",
            BootState::Destroyed => "destroyed",
            BootState::Failed => "failed",
            BootState::Skipped => "skipped",
            BootState::Blocked => "blocked",
            BootState::Disabled => "disabled",
            BootState::LoadedNotEnabled => "loaded-not-enabled",
            BootState::NotForThisPlatform => "not-for-this-platform",
            BootState::Quarantined => "quarantined",
        }
    }

    /// True for the states of a plugin that did what it should: running,
    /// ran, or was not supposed to run.
    pub fn is_ok(self) -> bool {
        matches!(
            self,
            BootState::Running
                | BootState::Stopped
                | BootState::Disabled
                | BootState::LoadedNotEnabled
                | BootState::NotForThisPlatform
        )
    }
}

impl std::fmt::Display for BootState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Everything a boot did, for people (`Display`) and machines (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct BootReport {
    /// Which side.
    pub side: Side,
    /// Install root.
    pub root: PathBuf,
    /// Installed generation booted, if any.
    pub generation: Option<u64>,
    /// Host version.
    pub host_version: String,
    /// This device's id.
    pub device_id: String,
    /// True when `allow_unlicensed` is on.
    pub development_mode: bool,
    /// Load order actually used (topological, ties by name).
    pub load_order: Vec<String>,
    /// Stop order (reverse of load order).
    pub stop_order: Vec<String>,
    /// Every installed plugin.
    pub plugins: Vec<PluginReport>,
    /// Problems found while verifying (errors and warnings).
    pub problems: Vec<Problem>,
    /// Where the time went, in microseconds.
    pub timings_us: BootTimings,
    /// The real-time cycle's timing, when a cycle ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timing: Option<TimingReport>,
    /// How the previous run ended, when it did not stop cleanly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_end: Option<String>,
    /// Quarantined plugins (not loaded), with the evidence.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub quarantine: BTreeMap<String, crate::quarantine::Entry>,
    /// Why no plugin is loaded, in safe mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safe_mode: Option<String>,
}

/// Time spent per boot stage, in microseconds (wall clock).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BootTimings {
    /// Verifying every installed plugin: manifests, licenses (signature and
    /// file hashes), compatibility, library headers.
    pub verify: u64,
    /// Resolving the dependency graph.
    pub resolve: u64,
    /// dlopen and `init` of every plugin.
    pub load_init: u64,
    /// `start` of every plugin.
    pub start: u64,
    /// `stop` and `destroy` of every plugin.
    pub stop: u64,
}

fn micros(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

impl BootReport {
    /// True if every installed, enabled plugin for this platform ran.
    pub fn all_ok(&self) -> bool {
        self.plugins.iter().all(|p| p.state.is_ok())
    }
}

/// One installed plugin folder of the generation booted.
type Folder<'a> = (&'a xplugin_store::InstalledPlugin, PathBuf);

/// What the checks of one boot found, once all have run.
struct Checked {
    /// Every folder's checks, in folder order.
    checks: Vec<(PluginCheck, bool)>,
    /// The configuration values each plugin runs with: the booted
    /// generation's own.
    values: BTreeMap<String, Result<String, Problems>>,
    /// Wall time from the start of the checks to the last one's end.
    verify_us: u64,
}

/// The resolver's node of a plugin with manifest `m`: refused for `failure`
/// (a check's first error, or its configuration values'), for the
/// quarantine or safe mode, or not loaded for the store's enabled flag.
fn node_of(
    m: &xplugin_model::manifest::Manifest,
    failure: Option<String>,
    enabled: bool,
    side: Side,
    quarantine: &crate::quarantine::Quarantine,
) -> Node {
    let mut node = Node::from_manifest(m);
    node.failure = failure;
    if let Some(why) = &quarantine.safe_mode {
        node.failure = Some(format!("safe mode: {why}"));
    } else if let Some(q) = quarantine.plugins.get(&m.name) {
        node.failure = Some(q.reason(&m.name));
    }
    // The store's enabled flag (set by import, enable, disable) decides.
    // Controller: disabled = not loaded. Client: loaded, not enabled.
    if side == Side::Controller {
        node.load = enabled;
    }
    node
}

/// Why plugin `name`'s configuration values refuse it (they do not fit
/// its manifest's schema), as the resolver's failure reason.
fn values_failure(
    values: &BTreeMap<String, Result<String, Problems>>,
    name: &str,
) -> Option<String> {
    match values.get(name) {
        Some(Err(problems)) => problems.errors().next().map(|p| p.message.clone()),
        _ => None,
    }
}

/// Why a plugin's checks refuse it, as the resolver's failure reason.
fn check_failure(c: &PluginCheck) -> Option<String> {
    if c.no_platform_library {
        return Some("no library for this platform".into());
    }
    c.failure()
}

/// Verifies, resolves, loads, inits and starts; the caller stops with
/// [`Booted::shutdown`].
///
/// Every plugin folder is read and checked first, on worker threads and
/// this one (an unchanged folder from its verdict in the digest record,
/// [`crate::verdicts`]); the dependency graph is resolved on the
/// manifests; then this thread loads and inits each plugin whose checks
/// passed, in load order (every dependency comes earlier and is loaded by
/// then). A plugin whose checks fail is not loaded, nor is anything that
/// depends on it; the resolver runs again on every check's outcome for the
/// report. No plugin code runs before every check is done.
///
/// The loads do not overlap the checks on purpose: while the loading
/// thread maps libraries, a checking thread running on another CPU of the
/// same address space makes every `mmap` and `mprotect` of `dlopen` flush
/// that CPU's TLB too (an inter-processor interrupt) and contends for the
/// address-space lock, which cost more than the overlap saved once checks
/// were cheap (BENCHMARKS.md, boot).
///
/// # Errors
/// [`BootError`] if the root cannot be read or stays locked.
pub fn boot(opts: &BootOptions<'_>) -> Result<Booted, BootError> {
    let store = Store::open(&opts.root)?;
    // Serialise with a running import: it holds the lock until its commit.
    // This boot holds it until the last check has read the installed files.
    let lock = store.lock_wait(opts.lock_timeout)?;
    let generation = store.current()?;
    let mut facts = HostFacts::gather(opts.config, &opts.root);
    if opts.config.allow_unlicensed {
        log::warn!(
            "DEVELOPMENT MODE: allow_unlicensed is on; plugins without a valid license will be loaded. Turn it off on production robots."
        );
    }
    let record = crate::digests::DigestRecord::load(&opts.root, opts.verify);
    let installed = generation.as_ref().map(|g| g.plugins()).unwrap_or_default();
    let folders: Vec<Folder<'_>> = installed
        .iter()
        .filter_map(|p| Some((p, generation.as_ref()?.plugin_dir(&p.name)?)))
        .collect();
    let (quarantine, previous_end, durable_calls) = settle_quarantine(opts, generation.as_ref());
    let cycle_stats = Arc::new(std::sync::OnceLock::new());
    let mut run = Pipeline {
        opts,
        store: &store,
        generation: generation.as_ref(),
        quarantine: &quarantine,
        durable_calls,
        cycle_stats: cycle_stats.clone(),
        lifecycle: Lifecycle::new(&opts.host_version.to_string(), Bus::new()),
        supervisor: None,
        loaded: Vec::new(),
        load_init_us: 0,
    };
    let checked = {
        let mut ctx = facts.context(&opts.host_version);
        ctx.digests = &record;
        ctx.verdicts = Some(&record);
        run.check_and_load(&folders, &ctx, lock, &record)?
    };
    let (answered, hashed) = record.counts();
    log::debug!(
        "verify: {} plugin folders checked from their verdicts, {answered} file digests from the record, {hashed} files hashed",
        record.verdicts_reused()
    );
    facts.record_clock();
    let Pipeline {
        mut lifecycle,
        supervisor,
        loaded,
        load_init_us,
        ..
    } = run;

    // The resolver again, on every check's outcome: the report's load
    // order and the reason each refused plugin is not running.
    let resolve_started = std::time::Instant::now();
    let nodes = checked
        .checks
        .iter()
        .filter_map(|(c, enabled)| {
            let m = c.manifest.as_ref()?;
            let failure = check_failure(c).or_else(|| values_failure(&checked.values, &c.name));
            Some(node_of(m, failure, *enabled, opts.side, &quarantine))
        })
        .collect();
    let resolution = resolve(&ResolveInput {
        plugins: nodes,
        running_controller: opts.controller_running.clone(),
    });
    let resolve_us = micros(resolve_started);
    if resolution.load_order != loaded {
        // The loads followed the resolution on the manifests, skipping what
        // its checks refused and its dependents: the same order. Should the
        // two ever differ, the report says what was loaded.
        log::error!(
            "boot: plugins loaded in the order {} but the resolver orders {}",
            join_or_none(&loaded),
            join_or_none(&resolution.load_order.to_vec())
        );
    }

    let mut problems = Vec::new();
    let mut plugins = Vec::new();
    let mut bridge_decls = Vec::new();
    let mut enabled_set = BTreeSet::new();
    // Sorted by path: a folder's files follow it, so each plugin's files
    // are one contiguous run found by binary search. None for a run that
    // starts no background verification.
    let mut from_record = if opts.stops_after_start {
        Vec::new()
    } else {
        record.from_record()
    };
    from_record.sort_by(|a, b| a.path.cmp(&b.path));
    let mut background = Vec::new();
    let by_name: BTreeMap<&str, &(PluginCheck, bool)> = checked
        .checks
        .iter()
        .map(|c| (c.0.name.as_str(), c))
        .collect();
    for (c, _) in &checked.checks {
        problems.extend(c.problems.0.iter().cloned());
        if let Some(Err(p)) = checked.values.get(&c.name) {
            problems.extend(p.0.iter().cloned());
        }
    }
    for name in &loaded {
        let Some((c, enabled)) = by_name.get(name.as_str()).copied() else {
            continue;
        };
        let Some(m) = &c.manifest else { continue };
        if *enabled {
            enabled_set.insert(name.to_owned());
        }
        if !m.bridge.send.is_empty() || !m.bridge.receive.is_empty() {
            bridge_decls.push(xplugin_link::bridge::BridgeDecl {
                plugin: name.to_owned(),
                ctrl_depend: m.ctrl_depend.iter().map(|d| d.name.clone()).collect(),
                send: m.bridge.send.clone(),
                receive: m.bridge.receive.clone(),
            });
        }
        let first = from_record.partition_point(|f| f.path.as_path() < c.dir.as_path());
        background.extend(
            from_record[first..]
                .iter()
                .take_while(|f| f.path.starts_with(&c.dir))
                .map(|f| (name.to_owned(), m.version.to_string(), f.clone())),
        );
    }
    let loaded_set: BTreeSet<&str> = loaded.iter().map(String::as_str).collect();
    for (c, _) in &checked.checks {
        let state;
        let mut reason = None;
        if loaded_set.contains(c.name.as_str()) {
            state = BootState::Pending;
        } else if let Some(b) = resolution.blocked.get(&c.name) {
            state = if c.no_platform_library {
                BootState::NotForThisPlatform
            } else if quarantine.plugins.contains_key(&c.name) && quarantine.safe_mode.is_none() {
                BootState::Quarantined
            } else if matches!(b.reason(), xplugin_model::graph::BlockReason::Disabled) {
                BootState::Disabled
            } else {
                BootState::Blocked
            };
            reason = Some(b.message());
        } else {
            state = BootState::Blocked;
            reason = c.failure();
        }
        plugins.push(PluginReport {
            name: c.name.clone(),
            version: c.manifest.as_ref().map(|m| m.version.to_string()),
            state,
            reason,
            license: c.license.clone(),
            modules: Vec::new(),
            stages: Vec::new(),
        });
    }
    let side = opts.side;
    let guarded = opts.guard.is_some();
    let start_started = std::time::Instant::now();
    lifecycle.start_all();
    if side == Side::Client {
        // The vendor's render stage, after every plugin's after-init. This
        // host has no UI toolkit: plugins get XPLUGIN_TOOLKIT_NONE.
        let ctx = xplugin_abi::RenderContext {
            struct_size: std::mem::size_of::<xplugin_abi::RenderContext>() as u32,
            toolkit: xplugin_abi::XPLUGIN_TOOLKIT_NONE,
            parent: std::ptr::null_mut(),
            width: 0,
            height: 0,
        };
        lifecycle.render_all(&ctx);
    }
    if let (true, false, Some(j)) = (guarded, opts.stops_after_start, crate::journal::get()) {
        j.phase_soon(crate::journal::Phase::Running);
    }
    let start_us = micros(start_started);
    let background_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if opts.stops_after_start {
        let (answered, _) = record.counts();
        if answered > 0 {
            log::debug!(
                "background verification: not started, this run stops right after start ({answered} files keep the digests of the record until a run that lasts)"
            );
        }
    } else {
        spawn_background_check(&opts.root, side, background, background_stop.clone());
    }
    let report = BootReport {
        side,
        root: opts.root.clone(),
        generation: generation.as_ref().map(|g| g.number),
        host_version: opts.host_version.to_string(),
        device_id: facts.device.unwrap_or_else(|e| format!("unknown ({e})")),
        development_mode: opts.config.allow_unlicensed,
        load_order: resolution.load_order.to_vec(),
        stop_order: resolution.stop_order.to_vec(),
        plugins,
        problems,
        timings_us: BootTimings {
            verify: checked.verify_us,
            resolve: resolve_us,
            load_init: load_init_us,
            start: start_us,
            stop: 0,
        },
        timing: None,
        previous_end,
        quarantine: quarantine.plugins.clone(),
        safe_mode: quarantine.safe_mode.clone(),
    };
    let mut booted = Booted {
        lifecycle,
        report,
        enabled: enabled_set,
        cycle: None,
        supervisor,
        cycle_stats,
        bridge_decls,
        background_stop,
    };
    booted.refresh();
    Ok(booted)
}

/// The checks-and-loads stage of [`boot`]: what it needs and what it made.
struct Pipeline<'o, 'b> {
    opts: &'b BootOptions<'o>,
    store: &'b Store,
    generation: Option<&'b xplugin_store::Generation>,
    quarantine: &'b crate::quarantine::Quarantine,
    durable_calls: bool,
    cycle_stats: Arc<std::sync::OnceLock<Arc<crate::cycle::CycleStats>>>,
    lifecycle: Lifecycle,
    supervisor: Option<crate::supervisor::Supervisor>,
    /// The plugins given to the lifecycle, in that order.
    loaded: Vec<String>,
    load_init_us: u64,
}

impl Pipeline<'_, '_> {
    /// Reads and checks every folder (on up to four threads, this one
    /// among them), resolves on the manifests, then loads and inits each
    /// plugin whose checks passed, in load order. `lock` (the store's) is
    /// released, and the digest `record` saved, once the last check is
    /// done: before the first load.
    fn check_and_load(
        &mut self,
        folders: &[Folder<'_>],
        ctx: &crate::checks::CheckContext<'_>,
        lock: xplugin_store::StoreLock,
        record: &crate::digests::DigestRecord,
    ) -> Result<Checked, BootError> {
        let side = self.opts.side;
        let opts = self.opts;
        let verify_started = std::time::Instant::now();
        let names: crate::supervisor::Names = Arc::default();
        std::thread::scope(|scope| -> Result<Checked, BootError> {
            // The guard (the journal and the disk flush that makes its
            // header durable, the fault handlers, the supervisor) comes up on
            // a thread of its own while the folders are checked: it is
            // joined before the first plugin loads, so nothing of a plugin
            // runs before the journal says this run is starting.
            let guard = opts.guard.as_ref().map(|g| {
                let (generation, durable_calls) =
                    (self.generation.map_or(0, |g| g.number), self.durable_calls);
                let (names, cycle_stats) = (names.clone(), self.cycle_stats.clone());
                std::thread::Builder::new()
                    .name("xplugin-guard".into())
                    .stack_size(GUARD_STACK)
                    .spawn_scoped(scope, move || {
                        guard_up(
                            &opts.root,
                            generation,
                            g,
                            durable_calls,
                            opts.stops_after_start,
                            names,
                            cycle_stats,
                        )
                    })
            });
            let dirs: Vec<(&Path, &str)> = folders
                .iter()
                .map(|(p, dir)| (dir.as_path(), p.name.as_str()))
                .collect();
            let checks = crate::checks::check_plugin_folders(&dirs, side, ctx, |_| {});
            // Every installed file has been read: the record of what was
            // verified is saved, and an import waiting for the lock goes on.
            record.save();
            drop(lock);
            let verify_us = micros(verify_started);
            let values = self.pipeline(folders, &checks, guard, names)?;
            let checks = checks
                .into_iter()
                .zip(folders)
                .map(|(c, (p, _))| (c, p.enabled))
                .collect();
            Ok(Checked {
                checks,
                values,
                verify_us,
            })
        })
    }

    /// The rest of [`Pipeline::check_and_load`], in its scope: the
    /// resolution on the manifests of `checks` (one per folder, in folder
    /// order), the data directories, the guard, and the loads on this
    /// thread. Returns the configuration values of each plugin.
    fn pipeline<'scope>(
        &mut self,
        folders: &[Folder<'_>],
        checks: &[PluginCheck],
        guard: Option<
            std::io::Result<
                std::thread::ScopedJoinHandle<'scope, Option<crate::supervisor::Supervisor>>,
            >,
        >,
        names: crate::supervisor::Names,
    ) -> Result<BTreeMap<String, Result<String, Problems>>, BootError> {
        let side = self.opts.side;
        let mut values: BTreeMap<String, Result<String, Problems>> = BTreeMap::new();
        if let Some(g) = self.generation {
            for ((p, _), c) in folders.iter().zip(checks) {
                if let Some(m) = &c.manifest {
                    let resolved = crate::plugin_config::values_for(self.store, g.number, m);
                    values.insert(p.name.clone(), resolved.map(|v| v.to_json().to_string()));
                }
            }
        }
        // The resolution on the manifests: what would load if every check
        // passed, and in which order.
        let nodes = folders
            .iter()
            .zip(checks)
            .filter_map(|((p, _), c)| {
                let m = c.manifest.as_ref()?;
                let failure = values_failure(&values, &p.name);
                Some(node_of(m, failure, p.enabled, side, self.quarantine))
            })
            .collect();
        let planned = resolve(&ResolveInput {
            plugins: nodes,
            running_controller: self.opts.controller_running.clone(),
        });
        let index: BTreeMap<&str, usize> = folders
            .iter()
            .enumerate()
            .map(|(i, (p, _))| (p.name.as_str(), i))
            .collect();
        let planned_indices: Vec<usize> = planned
            .load_order
            .iter()
            .filter_map(|n| index.get(n).copied())
            .collect();
        // The data directories: a failure refuses the boot before any
        // plugin code runs.
        let listed = self.store.listed_data_dirs();
        let data_dirs: Result<BTreeMap<usize, PathBuf>, _> = planned_indices
            .iter()
            .map(|&i| Ok((i, self.store.data_dir_in(&folders[i].0.name, &listed)?)))
            .collect();
        if let Some(spawned) = guard {
            self.supervisor = match spawned {
                Ok(h) => h.join().unwrap_or_else(|_| {
                    log::error!(
                        "the guard thread panicked: this run has no crash journal and no supervisor"
                    );
                    None
                }),
                // No thread for it: brought up here.
                Err(_) => self.opts.guard.as_ref().and_then(|g| {
                    guard_up(
                        &self.opts.root,
                        self.generation.map_or(0, |g| g.number),
                        g,
                        self.durable_calls,
                        self.opts.stops_after_start,
                        names.clone(),
                        self.cycle_stats.clone(),
                    )
                }),
            };
            // The lifecycle calls run on this thread: its slot in the
            // journal names the plugin should one of them crash.
            if let Some(j) = crate::journal::get() {
                j.register_thread(crate::journal::Role::Main);
            }
        }
        let mut data_dirs = match data_dirs {
            Ok(d) => d,
            Err(e) => {
                // Refused before any plugin ran: the journal, opened
                // meanwhile, records a clean end, so the next boot does not
                // look for someone to blame.
                if let Some(j) = crate::journal::get() {
                    j.clean_stop();
                }
                return Err(e);
            }
        };
        // Refused by its checks, or depending on one that was.
        let mut refused: BTreeSet<&str> = BTreeSet::new();
        let mut load_init = Duration::ZERO;
        for &i in &planned_indices {
            let ((p, _), c) = (&folders[i], &checks[i]);
            let (Some(m), Some(lib)) = (&c.manifest, &c.library) else {
                refused.insert(&p.name);
                continue;
            };
            if check_failure(c).is_some()
                || m.depend.iter().any(|d| refused.contains(d.name.as_str()))
            {
                refused.insert(&p.name);
                continue;
            }
            // A plugin whose values do not fit was left out of the
            // resolution on the manifests; never loaded.
            let (Some(Ok(config_json)), Some(data_dir)) =
                (values.get(&p.name), data_dirs.remove(&i))
            else {
                refused.insert(&p.name);
                continue;
            };
            let spec = PluginToLoad {
                name: p.name.clone(),
                version: m.version.to_string(),
                library: lib.clone(),
                config_json: config_json.clone(),
                depend: m.depend.iter().map(|d| d.name.clone()).collect(),
                data_dir,
                // The manifest's budget, else the host default, else none.
                cycle_budget_ns: m
                    .cycle_budget_us
                    .or(self.opts.cycle_budget_us)
                    .unwrap_or(0)
                    .saturating_mul(1000),
                // Client plugins with enable=false are loaded but not
                // started.
                enable: side == Side::Controller || p.enabled,
            };
            let began = std::time::Instant::now();
            if let Some(rt) = &c.runtime {
                // SAFETY: `rt` is the checked runtime (ABI tag of kind
                // runtime, architecture read from the file) of a client
                // plugin folder whose every check just passed (license
                // covering its code files, compatibility), which is what
                // `open_runtime` requires.
                if let Err(e) = unsafe { crate::loader::open_runtime(rt) } {
                    log::error!("{e}");
                }
            }
            names
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(p.name.clone());
            self.loaded.push(p.name.clone());
            // SAFETY: `spec` is a plugin whose own checks all passed
            // (`check_failure` is none: format, license unless the operator
            // turned on development mode, compatibility, and a library
            // `check_plugin_file` accepted for architecture, ABI tag and
            // kind), in the resolver's load order, none of whose
            // dependencies was refused: what `init_one` requires.
            unsafe { self.lifecycle.init_one(spec) };
            load_init += began.elapsed();
        }
        self.load_init_us = u64::try_from(load_init.as_micros()).unwrap_or(u64::MAX);
        Ok(values)
    }
}

/// The guard thread's stack: it opens a file, maps it and starts a thread.
/// Small, because under `mlockall` every byte of every stack stays resident.
const GUARD_STACK: usize = 256 * 1024;

/// Settles the previous run (controller boots with a guard): quarantines
/// who crashed it; returns the quarantine in force and how the previous run
/// ended. Without a guard, or when the file is unusable (logged), nothing is
/// quarantined.
fn settle_quarantine(
    opts: &BootOptions<'_>,
    generation: Option<&xplugin_store::Generation>,
) -> (crate::quarantine::Quarantine, Option<String>, bool) {
    let Some(guard) = &opts.guard else {
        return Default::default();
    };
    let installed = generation
        .map(xplugin_store::Generation::versions)
        .unwrap_or_default();
    match crate::quarantine::settle_previous_run(&opts.root, &installed, guard.policy) {
        Ok((q, settled)) => {
            if let Some(end) = &settled.previous_end {
                log::warn!("{end}");
            }
            for name in &settled.quarantined {
                if let Some(e) = q.plugins.get(name) {
                    log::error!("plugin \"{name}\" {}", e.reason(name));
                }
            }
            if let Some(why) = &q.safe_mode {
                log::error!("SAFE MODE: {why}");
            }
            (q, settled.previous_end, settled.durable_calls)
        }
        Err(e) => {
            log::error!("quarantine not applied: {e}");
            // Without the evidence, record every call: the next loss names it.
            (Default::default(), None, true)
        }
    }
}

/// What [`Booted::reconfigure`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveReconfigure {
    /// The plugin's answer.
    pub outcome: Reconfigured,
    /// Its steps skipped while `reconfigure` ran.
    pub paused_steps: u64,
    /// True when the host could not get between two steps (the plugin was
    /// not called; `outcome` says why).
    pub unreachable: bool,
}

/// A running plugin set and its report.
pub struct Booted {
    lifecycle: Lifecycle,
    /// The report, with states as of now.
    pub report: BootReport,
    enabled: BTreeSet<String>,
    /// The real-time cycle, while it runs. Owned here so that the plugins'
    /// instances it steps cannot be stopped or destroyed before it is
    /// joined ([`Booted::shutdown`] joins it first).
    cycle: Option<Cycle>,
    /// The supervisor, when the boot is guarded.
    supervisor: Option<crate::supervisor::Supervisor>,
    /// Where the supervisor finds the cycle's counter.
    cycle_stats: Arc<std::sync::OnceLock<Arc<crate::cycle::CycleStats>>>,
    bridge_decls: Vec<xplugin_link::bridge::BridgeDecl>,
    /// Tells the background verification to stop at the next file.
    background_stop: Arc<std::sync::atomic::AtomicBool>,
}

/// How long after start the background verification begins: the start
/// itself (plugins' first cycles, the link) goes first.
const BACKGROUND_DELAY: Duration = Duration::from_secs(5);

/// Starts the background verification of the files whose digest came from
/// the record ([`crate::digests::background_check`]): a file whose bytes on
/// the media differ is dropped from the record and, on the controller, its
/// plugin is quarantined for the next boot; every mismatch is logged as an
/// error.
fn spawn_background_check(
    root: &std::path::Path,
    side: Side,
    files: Vec<(String, String, crate::digests::Recorded)>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    if files.is_empty() {
        return;
    }
    let root = root.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("xplugin-verify".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let versions: BTreeMap<String, String> = files
                .iter()
                .map(|(p, v, _)| (p.clone(), v.clone()))
                .collect();
            let list: Vec<(String, crate::digests::Recorded)> =
                files.into_iter().map(|(p, _, f)| (p, f)).collect();
            let mut bad = 0;
            let checked = crate::digests::background_check(&list, BACKGROUND_DELAY, &stop, |m| {
                bad += 1;
                let found = match &m.found {
                    Ok(d) => format!("SHA-256 {d}"),
                    Err(e) => format!("an unreadable file ({e})"),
                };
                let how = format!(
                    "had its file {} changed on the media without a change through the file system: the license says SHA-256 {}, the media holds {found}",
                    m.path.display(),
                    m.expected
                );
                log::error!(
                    "background verification: plugin \"{}\" {how}; check the storage (it may be failing) and re-import the plugin",
                    m.plugin
                );
                if let Some(e) = list.iter().find(|(_, f)| f.path == m.path) {
                    crate::digests::forget(&root, &e.1.relative);
                }
                if side == Side::Controller {
                    let version = versions.get(&m.plugin).cloned().unwrap_or_default();
                    if let Err(e) =
                        crate::quarantine::quarantine_changed_file(&root, &m.plugin, &version, &how)
                    {
                        log::error!("cannot quarantine \"{}\": {e}", m.plugin);
                    }
                }
            });
            if bad == 0 && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                log::info!("background verification: {checked} files re-read from the media, all as licensed");
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start the background verification: {e}; `--verify full` checks every byte at boot");
    }
}

/// Opens this run's journal, installs the fault handlers and starts the
/// supervisor. Without a journal (it cannot be written) the host runs
/// unguarded and says so. Any thread may call it; the thread that runs the
/// lifecycle calls registers itself in the journal afterwards.
fn guard_up(
    root: &std::path::Path,
    generation: u64,
    guard: &Guard,
    durable_calls: bool,
    stops_after_start: bool,
    names: crate::supervisor::Names,
    cycle_stats: Arc<std::sync::OnceLock<Arc<crate::cycle::CycleStats>>>,
) -> Option<crate::supervisor::Supervisor> {
    let path = crate::quarantine::journal_path(root);
    let first = if stops_after_start {
        crate::journal::Phase::StartingAndStopping
    } else {
        crate::journal::Phase::Starting
    };
    match crate::journal::Journal::open(&path, generation, durable_calls, first) {
        Ok(_) => {
            if durable_calls {
                log::warn!(
                    "this run makes every plugin's load, init, start, stop and destroy durable in the journal before it runs (slower by one disk flush per call), so that another loss of the machine names the plugin"
                );
            }
        }
        Err(e) => {
            log::error!(
                "no crash journal ({}: {e}): a plugin that crashes the controller will not be quarantined",
                path.display()
            );
            return None;
        }
    }
    crate::fault::install();
    match crate::supervisor::Supervisor::start(guard.timeouts.clone(), names, cycle_stats, guard.rt)
    {
        Ok(s) => Some(s),
        Err(e) => {
            log::error!("cannot start the supervisor thread: {e}; hung plugins are not detected");
            None
        }
    }
}

impl Booted {
    /// Updates the report's plugin states from the lifecycle.
    pub fn refresh(&mut self) {
        let outcomes = self.lifecycle.outcome_views();
        for p in &mut self.report.plugins {
            let Some(o) = outcomes.get(p.name.as_str()) else {
                continue;
            };
            use crate::lifecycle::LifecycleState as S;
            let (enabled, started) = (self.enabled.contains(&p.name), o.started);
            let (state, reason) = match o.state() {
                S::Running => (BootState::Running, None),
                S::Initialized if !enabled => (BootState::LoadedNotEnabled, None),
                S::Initialized => (BootState::Initialized, None),
                S::Stopped | S::Destroyed if started => (BootState::Stopped, None),
                S::Stopped | S::Destroyed if !enabled => (BootState::LoadedNotEnabled, None),
                S::Stopped | S::Destroyed => (BootState::Destroyed, None),
                S::Failed { stage, reason } => {
                    (BootState::Failed, Some(format!("{stage} failed: {reason}")))
                }
                S::Skipped { reason } => (BootState::Skipped, Some(reason.clone())),
            };
            p.state = state;
            p.reason = reason.or(o.stop_error().map(|e| format!("stop failed: {e}")));
            p.modules = o.modules();
            let side = self.report.side;
            p.stages = STAGE_ORDER
                .iter()
                .filter_map(|st| o.stages().iter().find(|s| s.stage == *st))
                .map(|s| StageReport::of(side, s))
                .collect();
        }
    }

    /// The lifecycle, for reading outcomes.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// The plugin message bridge over this boot's bus, for the plugins
    /// running now that declare a `bridge`.
    pub fn bridge(&self, limits: xplugin_link::bridge::Limits) -> Arc<crate::bridge::Bridge> {
        let running = self.lifecycle.running();
        let decls = self
            .bridge_decls
            .iter()
            .filter(|d| running.contains(&d.plugin))
            .cloned()
            .collect();
        crate::bridge::Bridge::new(
            self.report.side,
            self.lifecycle.bus().clone(),
            decls,
            limits,
        )
    }

    /// Calls every running client plugin's `idle` once; returns the plugins
    /// whose `idle` failed, with the status.
    pub fn idle_all(&mut self) -> Vec<(String, xplugin_abi::Status)> {
        self.lifecycle.idle_all()
    }

    /// Starts the real-time cycle over the running plugins that have a
    /// `step`. A cycle already running is left alone.
    ///
    /// # Errors
    /// The operating system's error if its threads cannot be started.
    pub fn start_cycle(
        &mut self,
        settings: CycleSettings,
        hooks: CycleHooks,
    ) -> std::io::Result<()> {
        if self.cycle.is_some() {
            return Ok(());
        }
        // A run booted to stop right after start that runs a cycle after
        // all: from here on, plugins run between the start and the stop.
        if let Some(j) = crate::journal::get() {
            if j.current_phase() == crate::journal::Phase::StartingAndStopping {
                j.phase_soon(crate::journal::Phase::Running);
            }
        }
        let plugins = self.lifecycle.cycle_plugins();
        // SAFETY: the instances come from this lifecycle's running plugins;
        // they stay valid until `lifecycle.shutdown`, which `shutdown` calls
        // only after joining the cycle (`stop_cycle`); `take_out` (the only
        // other stop) is called from `poll_cycle` for plugins the cycle has
        // already taken out, so it never stops a plugin the cycle steps.
        let cycle =
            unsafe { Cycle::spawn(settings, plugins, self.lifecycle.bus().clone(), hooks)? };
        // The supervisor now watches the cycle's counter too.
        let _ = self.cycle_stats.set(cycle.stats().clone());
        self.cycle = Some(cycle);
        Ok(())
    }

    /// Running plugins that hold the host busy (`set_busy`).
    pub fn busy(&self) -> Vec<String> {
        self.lifecycle.busy()
    }

    /// The running cycle, if any.
    pub fn cycle(&self) -> Option<&Cycle> {
        self.cycle.as_ref()
    }

    /// Offers running plugin `name` its whole new configuration
    /// `config_json` through `reconfigure`, never while its `step` runs: the
    /// step gate gives a gap after its current step, and its turns in the
    /// cycle are skipped (counted) until `reconfigure` returns; the other
    /// plugins keep their cycle. Call on the thread that owns the boot (the
    /// daemon's main thread).
    pub fn reconfigure(&mut self, name: &str, config_json: &str) -> LiveReconfigure {
        let paused = |c: Option<&Cycle>| {
            c.and_then(|c| {
                c.stats()
                    .plugins
                    .iter()
                    .find(|p| p.name == name)
                    .map(|p| p.paused_steps.load(std::sync::atomic::Ordering::Relaxed))
            })
            .unwrap_or(0)
        };
        let before = paused(self.cycle.as_ref());
        let period_ns = self.cycle.as_ref().map_or(0, |c| c.stats().period_ns);
        // Time for the current step to return: two periods and a second.
        let timeout = std::time::Duration::from_nanos(period_ns.saturating_mul(2))
            + std::time::Duration::from_secs(1);
        let guard = match self.cycle.as_ref().map(|c| c.close_gate(name, timeout)) {
            Some(Err(_)) => {
                return LiveReconfigure {
                    outcome: Reconfigured::Refused(format!(
                        "its step did not return within {} ms, so the host could not call reconfigure between two steps",
                        timeout.as_millis()
                    )),
                    paused_steps: 0,
                    unreachable: true,
                }
            }
            Some(Ok(g)) => g,
            None => None,
        };
        let outcome = self.lifecycle.reconfigure(name, config_json);
        drop(guard);
        LiveReconfigure {
            outcome,
            paused_steps: paused(self.cycle.as_ref()).saturating_sub(before),
            unreachable: false,
        }
    }

    /// Acts on what the cycle reported since the last call: plugins taken
    /// out of the cycle (over budget) are stopped with their dependents and
    /// reported failed. Returns the notices.
    pub fn poll_cycle(&mut self) -> Vec<CycleNotice> {
        let Some(cycle) = &self.cycle else {
            return Vec::new();
        };
        let notices: Vec<CycleNotice> = cycle.notices().try_iter().collect();
        self.act_on(&notices);
        notices
    }

    /// Stops the plugins the cycle took out (with their dependents) and
    /// reports them failed in `step`.
    fn act_on(&mut self, notices: &[CycleNotice]) {
        for n in notices {
            let CycleNotice::TakenOut {
                plugin, dependents, ..
            } = n;
            let mut names = dependents.clone();
            names.push(plugin.clone());
            self.lifecycle.take_out(&names, Stage::Step, &n.to_string());
        }
        if !notices.is_empty() {
            self.refresh();
        }
    }

    /// Stops and joins the cycle (if it runs), acts on its last notices and
    /// records its timing in the report.
    pub fn stop_cycle(&mut self) -> Option<&TimingReport> {
        let cycle = self.cycle.take()?;
        let notices: Vec<CycleNotice> = cycle.notices().try_iter().collect();
        let timing = cycle.join();
        self.act_on(&notices);
        self.report.timing = Some(timing);
        self.refresh();
        self.report.timing.as_ref()
    }

    /// A hang the supervisor found, if any (the caller then makes the safe
    /// stop: [`Booted::safe_stop`]).
    pub fn hang(&self) -> Option<crate::supervisor::Hang> {
        self.supervisor.as_ref()?.hangs().try_recv().ok()
    }

    /// The safe stop after `hang`: stops the cycle from stepping anyone,
    /// stops every other running plugin in reverse order (not the hung one:
    /// its call cannot be cancelled) and ends the process with
    /// [`crate::supervisor::EXIT_HANG`]. Nothing is destroyed. The journal
    /// already holds the hang; the next boot quarantines the plugin.
    pub fn safe_stop(&mut self, hang: &crate::supervisor::Hang) -> ! {
        log::error!("safe stop: {hang}");
        if let Some(c) = &self.cycle {
            c.request_stop();
        }
        if let Some(j) = crate::journal::get() {
            j.stopping();
        }
        self.lifecycle.emergency_stop(&hang.plugin);
        log::error!(
            "safe stop done: exiting with status {} (the other plugins were stopped; \"{}\" is quarantined at the next boot)",
            crate::supervisor::EXIT_HANG,
            hang.plugin
        );
        if let Some(j) = crate::journal::get() {
            j.sync();
        }
        // Without destructors or atexit handlers that could call into the
        // hung plugin.
        crate::os::exit_now(crate::supervisor::EXIT_HANG)
    }

    /// Stops in reverse order, destroys, and returns the final report.
    pub fn shutdown(mut self) -> BootReport {
        self.background_stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.stop_cycle();
        let stop_started = std::time::Instant::now();
        if self.supervisor.is_some() {
            if let Some(j) = crate::journal::get() {
                j.stopping();
            }
        }
        self.lifecycle.shutdown();
        if let Some(mut s) = self.supervisor.take() {
            s.stop();
            // Every plugin is stopped and destroyed: a clean end.
            if let Some(j) = crate::journal::get() {
                j.clean_stop();
            }
        }
        self.report.timings_us.stop = micros(stop_started);
        self.refresh();
        self.report
    }
}

impl std::fmt::Display for BootReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = match self.side {
            Side::Client => "client",
            Side::Controller => "controller",
        };
        writeln!(
            f,
            "{side} root {} (generation {}), host version {}, device id {}",
            self.root.display(),
            self.generation
                .map_or("none".to_string(), |g| g.to_string()),
            self.host_version,
            self.device_id
        )?;
        if self.development_mode {
            writeln!(
                f,
                "DEVELOPMENT MODE: allow_unlicensed is on; licenses are not enforced"
            )?;
        }
        writeln!(f, "load order: {}", join_or_none(&self.load_order))?;
        writeln!(f, "stop order: {}", join_or_none(&self.stop_order))?;
        for p in &self.plugins {
            let lic = &p.license;
            write!(
                f,
                "  {:<20} {:<10} {:<20} {lic}",
                p.name,
                p.version.as_deref().unwrap_or("?"),
                p.state
            )?;
            if let Some(r) = &p.reason {
                write!(f, "\n      reason: {r}")?;
            }
            // Written piece by piece: a report of every plugin is printed
            // at the end of every boot.
            for (i, m) in p.modules.iter().enumerate() {
                let lead = if i == 0 { "\n      modules: " } else { ", " };
                write!(f, "{lead}{} (priority {}) {}", m.name, m.priority, m.state)?;
            }
            for (i, s) in p.stages.iter().enumerate() {
                let lead = if i == 0 { "\n      stages: " } else { ", " };
                write!(f, "{lead}{s}")?;
            }
            writeln!(f)?;
        }
        for p in &self.problems {
            writeln!(f, "{p}")?;
        }
        if let Some(timing) = &self.timing {
            write!(f, "{timing}")?;
        }
        let t = &self.timings_us;
        writeln!(
            f,
            "time: verify {:.1} ms, resolve {:.1} ms, load+init {:.1} ms, start {:.1} ms, stop {:.1} ms",
            t.verify as f64 / 1e3,
            t.resolve as f64 / 1e3,
            t.load_init as f64 / 1e3,
            t.start as f64 / 1e3,
            t.stop as f64 / 1e3
        )
    }
}

fn join_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".to_string()
    } else {
        v.join(" -> ")
    }
}
