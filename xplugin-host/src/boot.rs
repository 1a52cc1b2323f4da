//! Loading an installed plugin set: the controller's boot and the pendant's
//! `run`. Verify every installed plugin again (files may have changed on disk
//! since install), read the configuration values of the generation booted
//! ([`crate::plugin_config::values_for`]), resolve the dependency graph, then
//! load, init (with those values) and start in order through [`Lifecycle`].
//!
//! This is a library so that the controller daemon embeds the same code the
//! command-line `boot` runs.

use crate::checks::{check_plugin_folder, HostFacts, LicenseStatus, PluginCheck};
use crate::config::HostConfig;
use crate::cycle::{Cycle, CycleHooks, CycleNotice, CycleSettings, TimingReport};
use crate::lifecycle::{Lifecycle, PluginOutcome, PluginToLoad, Reconfigured};
use crate::services::Bus;
use crate::stage::Stage;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
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
            ("detach", Stage::Stop) => "detach (stop)".to_string(),
            ("detach", Stage::Destroy) => "detach (destroy)".to_string(),
            (v, _) => v.to_string(),
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

/// A verified, resolved plugin set ready to be started.
pub struct PreparedBoot {
    /// The report so far (states are filled in by [`start`]).
    pub report: BootReport,
    to_load: Vec<PluginToLoad>,
    /// The `bridge` declarations of the plugins to load (with their
    /// `ctrlDepend` names on the client side).
    bridge_decls: Vec<xplugin_link::bridge::BridgeDecl>,
    enabled: BTreeSet<String>,
    runtimes: Vec<crate::loader::CheckedLibrary>,
    guard: Option<Guard>,
    /// The previous run was lost with the machine during a lifecycle phase
    /// without saying which call ran: this run makes each one durable.
    durable_calls: bool,
    /// Files of the plugins to load whose digest came from the record, to
    /// re-read from the media after start: (plugin, version, file).
    background: Vec<(String, String, crate::digests::Recorded)>,
}

/// Verifies and resolves the installed set. Loads nothing.
///
/// # Errors
/// [`BootError`] if the root cannot be read or stays locked.
pub fn prepare(opts: &BootOptions<'_>) -> Result<PreparedBoot, BootError> {
    let store = Store::open(&opts.root)?;
    // Serialise with a running import: it holds the lock until its commit.
    let lock = store.lock_wait(opts.lock_timeout)?;
    let generation = store.current()?;
    let mut facts = HostFacts::gather(opts.config, &opts.root);
    if opts.config.allow_unlicensed {
        log::warn!(
            "DEVELOPMENT MODE: allow_unlicensed is on; plugins without a valid license will be loaded. Turn it off on production robots."
        );
    }
    let record = crate::digests::DigestRecord::load(&opts.root, opts.verify);
    let mut ctx = facts.context(&opts.host_version);
    ctx.digests = &record;

    let verify_started = std::time::Instant::now();
    let installed = generation.as_ref().map(|g| g.plugins()).unwrap_or_default();
    let mut checks: Vec<(PluginCheck, bool)> = Vec::new();
    // The values each plugin runs with: the booted generation's own.
    let mut values: BTreeMap<String, Result<String, Problems>> = BTreeMap::new();
    let folders: Vec<(&xplugin_store::InstalledPlugin, PathBuf)> = installed
        .iter()
        .filter_map(|p| Some((p, generation.as_ref()?.plugin_dir(&p.name)?)))
        .collect();
    let checked = check_folders(&folders, opts.side, &ctx);
    for ((p, _), check) in folders.iter().zip(checked) {
        if let (Some(m), Some(g)) = (&check.manifest, generation.as_ref()) {
            let resolved = crate::plugin_config::values_for(&store, g.number, m);
            values.insert(p.name.clone(), resolved.map(|v| v.to_json().to_string()));
        }
        checks.push((check, p.enabled));
    }
    record.save();
    drop(lock);
    let (answered, hashed) = record.counts();
    log::debug!("verify: {answered} file digests from the record, {hashed} files hashed");
    facts.record_clock();
    let (quarantine, previous_end, durable_calls) = settle_quarantine(opts, generation.as_ref());

    let verify_us = micros(verify_started);
    let resolve_started = std::time::Instant::now();
    // The resolver sees every installed plugin; checks that failed become
    // failures that block the plugin and its dependents.
    let mut nodes = Vec::new();
    for (c, enabled) in &checks {
        let Some(m) = &c.manifest else { continue };
        let mut node = Node::from_manifest(m);
        node.failure = c.failure();
        if let Some(Err(problems)) = values.get(&c.name) {
            if node.failure.is_none() {
                node.failure = problems.errors().next().map(|p| p.message.clone());
            }
        }
        if c.no_platform_library {
            node.failure = Some("no library for this platform".into());
        }
        if let Some(why) = &quarantine.safe_mode {
            node.failure = Some(format!("safe mode: {why}"));
        } else if let Some(q) = quarantine.plugins.get(&c.name) {
            node.failure = Some(q.reason(&c.name));
        }
        // The store's enabled flag (set by import, enable, disable) decides.
        // Controller: disabled = not loaded. Client: loaded, not enabled.
        if opts.side == Side::Controller {
            node.load = *enabled;
        }
        nodes.push(node);
    }
    let resolution = resolve(&ResolveInput {
        plugins: nodes,
        running_controller: opts.controller_running.clone(),
    });
    let resolve_us = micros(resolve_started);

    let mut problems = Vec::new();
    let mut plugins = Vec::new();
    let mut to_load = Vec::new();
    let mut bridge_decls = Vec::new();
    let mut runtimes = Vec::new();
    let mut enabled_set = BTreeSet::new();
    // Sorted by path: a folder's files follow it, so each plugin's files
    // are one contiguous run found by binary search.
    let mut from_record = record.from_record();
    from_record.sort_by(|a, b| a.path.cmp(&b.path));
    let mut background = Vec::new();
    let by_name: BTreeMap<&str, &(PluginCheck, bool)> =
        checks.iter().map(|c| (c.0.name.as_str(), c)).collect();
    for (c, _) in &checks {
        problems.extend(c.problems.0.iter().cloned());
        if let Some(Err(p)) = values.get(&c.name) {
            problems.extend(p.0.iter().cloned());
        }
    }
    for name in &resolution.load_order {
        let Some((c, enabled)) = by_name.get(name).copied() else {
            continue;
        };
        let (Some(m), Some(lib)) = (&c.manifest, &c.library) else {
            continue;
        };
        // A plugin whose values do not fit was refused by the resolver
        // above (its failure); never loaded.
        let Some(Ok(config_json)) = values.get(name) else {
            continue;
        };
        if *enabled {
            enabled_set.insert(name.to_owned());
        }
        if let Some(rt) = &c.runtime {
            runtimes.push(rt.clone());
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
        to_load.push(PluginToLoad {
            name: name.to_owned(),
            version: m.version.to_string(),
            library: lib.clone(),
            config_json: config_json.clone(),
            depend: m.depend.iter().map(|d| d.name.clone()).collect(),
            data_dir: store.data_dir(name)?,
            // The manifest's budget, else the host default, else none.
            cycle_budget_ns: m
                .cycle_budget_us
                .or(opts.cycle_budget_us)
                .unwrap_or(0)
                .saturating_mul(1000),
            enable: true,
        });
    }
    for (c, _) in &checks {
        let state;
        let mut reason = None;
        if let Some(b) = resolution.blocked.get(&c.name) {
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
        } else if c.manifest.is_none() {
            state = BootState::Blocked;
            reason = c.failure();
        } else {
            state = BootState::Pending;
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
    Ok(PreparedBoot {
        report: BootReport {
            side: opts.side,
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
                verify: verify_us,
                resolve: resolve_us,
                ..BootTimings::default()
            },
            timing: None,
            previous_end,
            quarantine: quarantine.plugins.clone(),
            safe_mode: quarantine.safe_mode.clone(),
        },
        to_load,
        bridge_decls,
        enabled: enabled_set,
        runtimes,
        guard: opts.guard.clone(),
        durable_calls,
        background,
    })
}

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

/// Loads, initialises and starts a prepared set.
///
/// # Safety
/// Runs plugin code. `prepared` comes from [`prepare`], which checked every
/// plugin before putting it into the load list.
pub unsafe fn start(prepared: PreparedBoot) -> Booted {
    let side = prepared.report.side;
    for rt in &prepared.runtimes {
        // SAFETY: `prepare` put a runtime in `runtimes` only from a client
        // plugin it also put in the load list, i.e. one whose folder passed
        // every check (license covering its code files, ABI tag of kind
        // runtime read from the file), which `open_runtime` requires; our
        // caller guarantees `prepared` comes from `prepare`.
        if let Err(e) = unsafe { crate::loader::open_runtime(rt) } {
            log::error!("{e}");
        }
    }
    // Fault containment, before the first call into a plugin: the journal
    // records who is running, fatal signals are blamed, the supervisor
    // times every call.
    let names: Arc<Vec<String>> =
        Arc::new(prepared.to_load.iter().map(|p| p.name.clone()).collect());
    let cycle_stats = Arc::new(std::sync::OnceLock::new());
    let guarded = prepared.guard.is_some();
    let supervisor = prepared.guard.as_ref().and_then(|g| {
        guard_up(
            &prepared.report,
            g,
            prepared.durable_calls,
            names.clone(),
            cycle_stats.clone(),
        )
    });
    let mut lifecycle = Lifecycle::new(&prepared.report.host_version, Bus::new());
    let mut to_load = prepared.to_load;
    for p in &mut to_load {
        // Client plugins with enable=false are loaded but not started.
        p.enable = side == Side::Controller || prepared.enabled.contains(&p.name);
    }
    let init_started = std::time::Instant::now();
    // SAFETY: `to_load` is the load list `prepare` built: only plugins in the
    // resolver's `load_order`, which excludes every node carrying a check
    // failure (any error of `check_plugin_folder`: format, license unless the
    // operator turned on development mode, compatibility) and every dependent
    // of one, and only those whose library `check_plugin_file` accepted
    // (architecture, ABI tag, kind). That is what `init_all` requires.
    unsafe { lifecycle.init_all(to_load) };
    let load_init = micros(init_started);
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
    if let (true, Some(j)) = (guarded, crate::journal::get()) {
        j.phase_soon(crate::journal::Phase::Running);
    }
    let start_us = micros(start_started);
    let background_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    spawn_background_check(
        &prepared.report.root,
        side,
        prepared.background,
        background_stop.clone(),
    );
    let mut report = prepared.report;
    report.timings_us.load_init = load_init;
    report.timings_us.start = start_us;
    let mut booted = Booted {
        lifecycle,
        report,
        enabled: prepared.enabled,
        cycle: None,
        supervisor,
        cycle_stats,
        bridge_decls: prepared.bridge_decls,
        background_stop,
    };
    booted.refresh();
    booted
}

/// Checks the plugin `folders` (in order), spread over the CPUs: each
/// check reads and hashes files and verifies a signature, independent of
/// the others.
fn check_folders(
    folders: &[(&xplugin_store::InstalledPlugin, PathBuf)],
    side: Side,
    ctx: &crate::checks::CheckContext<'_>,
) -> Vec<PluginCheck> {
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, 4)
        .min(folders.len().div_ceil(8).max(1));
    let check = |(p, dir): &(&xplugin_store::InstalledPlugin, PathBuf)| {
        check_plugin_folder(dir, &p.name, side, ctx)
    };
    if workers == 1 {
        return folders.iter().map(check).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, PluginCheck)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .filter_map(|_| {
                // A small stack: under mlockall (the daemon's real-time
                // settings) glibc keeps exited threads' stacks mapped for
                // reuse, and every byte of them stays resident.
                std::thread::Builder::new()
                    .name("xplugin-check".into())
                    .stack_size(512 * 1024)
                    .spawn_scoped(scope, || {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(folder) = folders.get(i) else { break };
                            mine.push((i, check(folder)));
                        }
                        mine
                    })
                    .ok()
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(mine) => mine,
                // A check does not panic on input; should one, the panic
                // goes on in this thread, as it would without workers.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    // Folders no worker took (none could be started): checked here.
    let taken: BTreeSet<usize> = done.iter().map(|(i, _)| *i).collect();
    for (i, folder) in folders.iter().enumerate() {
        if !taken.contains(&i) {
            done.push((i, check(folder)));
        }
    }
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, c)| c).collect()
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
/// unguarded and says so.
fn guard_up(
    report: &BootReport,
    guard: &Guard,
    durable_calls: bool,
    names: Arc<Vec<String>>,
    cycle_stats: Arc<std::sync::OnceLock<Arc<crate::cycle::CycleStats>>>,
) -> Option<crate::supervisor::Supervisor> {
    let path = crate::quarantine::journal_path(&report.root);
    match crate::journal::Journal::open(&path, report.generation.unwrap_or(0), durable_calls) {
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
    if let Some(j) = crate::journal::get() {
        j.register_thread(crate::journal::Role::Main);
    }
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
        let outcomes: BTreeMap<String, PluginOutcome> = self
            .lifecycle
            .outcomes()
            .into_iter()
            .map(|o| (o.name.clone(), o))
            .collect();
        for p in &mut self.report.plugins {
            let Some(o) = outcomes.get(&p.name) else {
                continue;
            };
            use crate::lifecycle::LifecycleState as S;
            let started = self.lifecycle.was_started(&p.name);
            let enabled = self.enabled.contains(&p.name);
            let (state, reason) = match &o.state {
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
            p.reason = reason.or(o.stop_error.clone().map(|e| format!("stop failed: {e}")));
            p.modules = o.modules.clone();
            let side = self.report.side;
            p.stages = STAGE_ORDER
                .iter()
                .filter_map(|st| o.stages.iter().find(|s| s.stage == *st))
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
            j.phase(crate::journal::Phase::Stopping);
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
                j.phase(crate::journal::Phase::Stopping);
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

/// Verifies, resolves, loads, inits and starts; the caller stops with
/// [`Booted::shutdown`].
///
/// # Errors
/// As [`prepare`].
pub fn boot(opts: &BootOptions<'_>) -> Result<Booted, BootError> {
    let prepared = prepare(opts)?;
    // SAFETY: `prepared` comes straight from `prepare`, which is what
    // `start` requires.
    Ok(unsafe { start(prepared) })
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
            if !p.modules.is_empty() {
                let modules: Vec<String> = p
                    .modules
                    .iter()
                    .map(|m| format!("{} (priority {}) {}", m.name, m.priority, m.state))
                    .collect();
                write!(f, "\n      modules: {}", modules.join(", "))?;
            }
            if !p.stages.is_empty() {
                let stages: Vec<String> = p.stages.iter().map(|s| s.to_string()).collect();
                write!(f, "\n      stages: {}", stages.join(", "))?;
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
