//! Driving a resolved plugin set through its lifecycle: load and `init` every
//! plugin in load order, then `start` every plugin, then (on shutdown) `stop`
//! in reverse order and `destroy` in reverse order.
//!
//! Failure is isolated: a plugin that fails to load, fails `init`/`start` or
//! panics is marked failed with the reason, its dependents are skipped with the
//! reason chain (`b: depends on a, which failed: init returned ...`), and every
//! unrelated plugin goes on. Init of every plugin finishes before any plugin
//! starts (the vendor's stage order).
//!
//! A plugin is one or more entry modules (ABI 1.1, `xplugin_modules`): each
//! stage runs module by module, init and start in the loader's order (higher
//! priority first, then name), stop in exactly the reverse of start and
//! destroy in exactly the reverse of init. A failing module fails its plugin
//! with the module named in the reason.

use crate::cycle::CyclePlugin;
use crate::loader::{open_plugin, CheckedLibrary, LoadedModule, LoadedPlugin};
use crate::services::{Bus, PluginHost};
use crate::stage::Stage;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{c_char, c_void};
use std::path::PathBuf;
use std::sync::Arc;
use xplugin_abi::{status_name, RenderContext, Status, StepFn, XPLUGIN_OK};

/// Size of the error-text buffer handed to every lifecycle call.
const ERR_BUF: usize = 1024;

/// One plugin ready to be loaded: every check already passed.
#[derive(Debug, Clone)]
pub struct PluginToLoad {
    /// Manifest name.
    pub name: String,
    /// Manifest version.
    pub version: String,
    /// The checked library file.
    pub library: CheckedLibrary,
    /// Resolved configuration JSON passed to `init`.
    pub config_json: String,
    /// Direct `depend` names (all of them load before this plugin).
    pub depend: Vec<String>,
    /// The plugin's writable data directory.
    pub data_dir: PathBuf,
    /// Step budget in nanoseconds (0 = none): manifest `cycle_budget_us` or
    /// the host default.
    pub cycle_budget_ns: u64,
    /// Start it after init. False for a client plugin with `enable: false`
    /// ("loaded but not enabled"): it is initialised, so its services exist
    /// for dependents, but not started.
    pub enable: bool,
}

/// Where a plugin ended up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LifecycleState {
    /// `init` succeeded; not started yet.
    Initialized,
    /// `start` succeeded.
    Running,
    /// `stop` was called (its result is in `stop_error` if it failed).
    Stopped,
    /// `destroy` was called.
    Destroyed,
    /// A call failed (load, `init`, `start`) or the plugin was taken out
    /// (`step` over budget); it does not run (any more).
    Failed {
        /// The call that failed.
        stage: Stage,
        /// Status code name and the plugin's error text.
        reason: String,
    },
    /// Not loaded because a dependency failed or was skipped.
    Skipped {
        /// The reason chain.
        reason: String,
    },
}

impl LifecycleState {
    /// One-line reason a plugin is not running, for chains.
    fn why(&self) -> Option<String> {
        match self {
            LifecycleState::Failed { stage, reason } => Some(format!("{stage} failed: {reason}")),
            LifecycleState::Skipped { reason } => Some(reason.clone()),
            _ => None,
        }
    }
}

/// What happened to one plugin, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct PluginOutcome {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// Final (or current) state.
    #[serde(flatten)]
    pub state: LifecycleState,
    /// Text of a failed `stop`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_error: Option<String>,
    /// Its entry modules in start order, when the library lists them
    /// (`xplugin_modules`); empty for a library that is one module.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<ModuleOutcome>,
    /// The calls made into it, stage by stage (only stages it was called
    /// in, or that it does not provide: `render`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageOutcome>,
}

/// One entry module of a plugin, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleOutcome {
    /// Module name.
    pub name: String,
    /// Its priority (higher runs first).
    pub priority: i32,
    /// How far it got: `initialized`, `running`, `stopped`, `destroyed`,
    /// `failed` or `not-initialized`.
    pub state: &'static str,
}

/// The calls of one stage into one plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageOutcome {
    /// The host's name of the stage.
    pub stage: Stage,
    /// Calls made (per plugin, all its modules together; `idle`: rounds).
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
    /// False when the plugin has no such function (optional `render`, `idle`,
    /// `reconfigure`): not called.
    pub provided: bool,
    /// The last failure's text (module named).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What the host knows about one module of a loaded plugin while it runs.
struct ModuleRun {
    /// What `init` wrote; NULL before `init` succeeded and after `destroy`.
    instance: *mut c_void,
    started: bool,
}

/// The steps of a plugin with several stepping modules, called by one
/// cycle slot through [`step_modules`]. Boxed in its entry, so its address
/// stays put while the cycle uses it.
struct ModuleSteps(Vec<(StepFn, *mut c_void)>);

struct Entry {
    spec: PluginToLoad,
    state: LifecycleState,
    loaded: Option<LoadedPlugin>,
    /// One per module of `loaded`, same order.
    runs: Vec<ModuleRun>,
    host: Option<Box<PluginHost>>,
    stop_error: Option<String>,
    was_started: bool,
    steps: Option<Box<ModuleSteps>>,
    stages: Vec<StageOutcome>,
}

impl Entry {
    fn modules(&self) -> &[LoadedModule] {
        self.loaded.as_ref().map_or(&[], |l| l.modules())
    }

    /// "module \"NAME\": " for a plugin that lists modules, else nothing:
    /// reasons name the module that failed.
    fn label(&self, k: usize) -> String {
        match (&self.loaded, self.modules().get(k)) {
            (Some(l), Some(m)) if l.has_module_list() => format!("module \"{}\": ", m.name),
            _ => String::new(),
        }
    }

    /// Whether any module has this optional function.
    fn provides(&self, f: impl Fn(&xplugin_abi::Descriptor) -> bool) -> bool {
        self.modules().iter().any(|m| f(&m.descriptor))
    }

    fn any_initialized(&self) -> bool {
        self.runs.iter().any(|r| !r.instance.is_null())
    }

    /// Counts one call of `stage` (`Err`: it failed, with this text).
    fn note(&mut self, stage: Stage, result: Result<(), String>) {
        let i = match self.stages.iter().position(|s| s.stage == stage) {
            Some(i) => i,
            None => {
                self.stages.push(StageOutcome {
                    stage,
                    calls: 0,
                    failures: 0,
                    provided: true,
                    last_error: None,
                });
                self.stages.len() - 1
            }
        };
        let s = &mut self.stages[i];
        s.calls += 1;
        if let Err(e) = result {
            s.failures += 1;
            s.last_error = Some(e);
        }
    }

    /// Records that the plugin has no function for `stage` (once).
    fn note_absent(&mut self, stage: Stage) {
        if !self.stages.iter().any(|s| s.stage == stage) {
            self.stages.push(StageOutcome {
                stage,
                calls: 0,
                failures: 0,
                provided: false,
                last_error: None,
            });
        }
    }
}

/// The cycle's step for a plugin with several stepping modules: every
/// module's `step` in start order; the first failing status is returned
/// (the others still step). Allocates nothing.
///
/// # Safety
/// `instance` is the entry's boxed [`ModuleSteps`], alive while the cycle
/// steps it, whose instances are live and only stepped from this thread
/// (the contract of [`Lifecycle::cycle_plugins`]).
unsafe extern "C" fn step_modules(instance: *mut c_void, cycle: u64, now_ns: u64) -> Status {
    // SAFETY: this function's contract.
    let steps = unsafe { &*instance.cast::<ModuleSteps>() };
    let mut first = XPLUGIN_OK;
    for (step, module) in &steps.0 {
        // SAFETY: a live module instance, stepped only from this thread.
        let s = unsafe { step(*module, cycle, now_ns) };
        if s != XPLUGIN_OK && first == XPLUGIN_OK {
            first = s;
        }
    }
    first
}

/// What [`Lifecycle::reconfigure`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconfigured {
    /// The plugin took the new configuration.
    Applied,
    /// The plugin has no `reconfigure` (or it said
    /// `XPLUGIN_ERR_NOT_IMPLEMENTED`): it gets the values at its next start.
    NotSupported,
    /// The plugin is not running: it gets the values at its next start.
    NotRunning,
    /// The plugin refused; its status and text. It keeps its old
    /// configuration.
    Refused(String),
}

/// A plugin set going through its lifecycle. Dropping it without
/// [`Lifecycle::shutdown`] still stops and destroys what runs.
pub struct Lifecycle {
    bus: Arc<Bus>,
    host_version: String,
    entries: Vec<Entry>,
    /// Direct dependencies of every entry, for service visibility (the
    /// transitive closure of a plugin's `depend`).
    direct: BTreeMap<String, Vec<String>>,
}

fn error_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let s = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    if s.is_empty() {
        "(no error text)".to_string()
    } else {
        s
    }
}

fn status_text(status: Status, buf: &[u8]) -> String {
    format!("{} ({status}): {}", status_name(status), error_text(buf))
}

impl Lifecycle {
    /// A lifecycle for a host reporting `host_version` to its plugins.
    pub fn new(host_version: &str, bus: Arc<Bus>) -> Lifecycle {
        Lifecycle {
            bus,
            host_version: host_version.to_string(),
            entries: Vec::new(),
            direct: BTreeMap::new(),
        }
    }

    /// The shared bus (for publishing from the host and for tests).
    pub fn bus(&self) -> &Arc<Bus> {
        &self.bus
    }

    /// Loads and initialises `plugins`, which must be in load order (every
    /// dependency before its dependents). Plugins whose dependency is not
    /// initialised are skipped with the reason chain.
    ///
    /// # Safety
    /// Loads native code: every plugin must have passed the package checks
    /// (format, license, compatibility; architecture and ABI are guaranteed by
    /// [`CheckedLibrary`]).
    pub unsafe fn init_all(&mut self, plugins: Vec<PluginToLoad>) {
        for spec in plugins {
            // SAFETY: each of `plugins` passed every package check, as our
            // caller guarantees (this function's `# Safety`), and they come
            // in load order.
            unsafe { self.init_one(spec) };
        }
    }

    /// Loads and initialises one plugin after those before it: its
    /// dependencies must already have been given to this lifecycle (load
    /// order). A plugin whose dependency is not initialised is skipped with
    /// the reason chain. Its journal index is its position in the entries.
    ///
    /// # Safety
    /// As [`Lifecycle::init_all`]: `spec` passed every package check.
    pub unsafe fn init_one(&mut self, spec: PluginToLoad) {
        // Transitive dependency closure, for service visibility: every
        // dependency is an earlier entry, so the map knows them all.
        self.direct.insert(spec.name.clone(), spec.depend.clone());
        let mut entry = Entry {
            state: LifecycleState::Initialized,
            loaded: None,
            runs: Vec::new(),
            host: None,
            stop_error: None,
            was_started: false,
            steps: None,
            stages: Vec::new(),
            spec,
        };
        if let Some(reason) = self.blocked_by_dependency(&entry.spec.depend) {
            entry.state = LifecycleState::Skipped { reason };
        } else {
            let visible = closure(&self.direct, &entry.spec.name);
            let index = self.entries.len();
            if let Some(j) = crate::journal::get() {
                j.name(index, &entry.spec.name);
            }
            // SAFETY: `entry.spec` passed every package check, as our caller
            // vouched (this function's `# Safety`).
            entry.state = unsafe { self.load_and_init(index, &mut entry, visible) };
        }
        if let Some(why) = entry.state.why() {
            log::error!(
                "plugin \"{}\" {}: {why}",
                entry.spec.name,
                short(&entry.state)
            );
        }
        self.entries.push(entry);
    }

    fn blocked_by_dependency(&self, depend: &[String]) -> Option<String> {
        for dep in depend {
            match self.entries.iter().find(|e| &e.spec.name == dep) {
                None => {
                    return Some(format!(
                        "depends on {dep}, which is not part of this load (not installed, disabled or refused)"
                    ))
                }
                Some(e) => {
                    if let Some(why) = e.state.why() {
                        let verb = match e.state {
                            LifecycleState::Skipped { .. } => "was skipped",
                            _ => "failed",
                        };
                        return Some(format!("depends on {dep}, which {verb}: {why}"));
                    }
                }
            }
        }
        None
    }

    /// Opens `entry`'s library, validates its descriptors and calls every
    /// module's `init` in start order. On success the instances are stored
    /// in `entry`; when a module's `init` fails, the modules initialised
    /// before it are destroyed (in reverse) and nothing is stored, so
    /// `destroy` is never called for a failed `init`.
    ///
    /// # Safety
    /// As [`Lifecycle::init_all`]: `entry.spec` passed every package check.
    unsafe fn load_and_init(
        &mut self,
        index: usize,
        entry: &mut Entry,
        visible: BTreeSet<String>,
    ) -> LifecycleState {
        let spec = &entry.spec;
        // SAFETY: `spec.library` is a `CheckedLibrary` (architecture, ABI tag
        // and kind read from the file) and our caller guarantees the rest of
        // the package checks (format, license, compatibility), which is what
        // `open_plugin` requires before it runs the library's constructors.
        let opened = crate::journal::around(index, Stage::Load, || unsafe {
            open_plugin(&spec.library, &spec.name, &spec.version)
        });
        if let (Ok(l), Some(_)) = (&opened, crate::journal::get()) {
            // Before any call into it: a crash in its code is blamed on it.
            crate::fault::register_library(index, spec.library.path(), l.load_bias());
        }
        let loaded = match opened {
            Ok(l) => l,
            Err(e) => {
                return LifecycleState::Failed {
                    stage: Stage::Load,
                    reason: e.to_string(),
                }
            }
        };
        let host = PluginHost::new(
            &spec.name,
            &self.host_version,
            &spec.data_dir,
            visible,
            self.bus.clone(),
        );
        host.set_journal_index(index);
        let config = format!("{}\0", spec.config_json);
        let config_len = spec.config_json.len();
        entry.runs = loaded
            .modules()
            .iter()
            .map(|_| ModuleRun {
                instance: std::ptr::null_mut(),
                started: false,
            })
            .collect();
        entry.loaded = Some(loaded);
        entry.host = Some(host);
        for k in 0..entry.runs.len() {
            let mut err = [0u8; ERR_BUF];
            let mut instance: *mut c_void = std::ptr::null_mut();
            let Some(host) = entry.host.as_ref() else {
                break;
            };
            let status = match entry.modules()[k].descriptor.init {
                // SAFETY: `init` comes from a descriptor `open_plugin`
                // validated (magic, ABI major, a struct_size covering every
                // 1.0 field, kind, name, version), so it has the `InitFn`
                // signature. Its arguments meet the ABI contract:
                // `host.api()` points into the boxed `PluginHost`, which is
                // kept in `entry.host` and dropped only with the `Lifecycle`,
                // after `destroy`; `config` is NUL-terminated, `config_len`
                // bytes before the NUL, and outlives the call; `instance`
                // and `err` are locals valid for writes of one pointer and
                // `err.len()` bytes.
                Some(init) => crate::journal::around(index, Stage::Init, || unsafe {
                    init(
                        host.api(),
                        config.as_ptr().cast::<c_char>(),
                        config_len,
                        &mut instance,
                        err.as_mut_ptr().cast::<c_char>(),
                        err.len(),
                    )
                }),
                None => xplugin_abi::XPLUGIN_ERR_FAILED,
            };
            if status != XPLUGIN_OK {
                let reason = format!("{}{}", entry.label(k), status_text(status, &err));
                entry.note(Stage::Init, Err(reason.clone()));
                // The modules already initialised go (in reverse), and
                // whatever the plugin registered must not be found.
                self.bus.remove_owner(&entry.spec.name);
                destroy_modules(index, entry);
                return LifecycleState::Failed {
                    stage: Stage::Init,
                    reason,
                };
            }
            entry.runs[k].instance = instance;
        }
        entry.note(Stage::Init, Ok(()));
        log::info!(
            "plugin \"{}\" {} initialised",
            entry.spec.name,
            entry.spec.version
        );
        LifecycleState::Initialized
    }

    /// Starts every initialised plugin in load order, module by module. A
    /// plugin whose dependency did not start is skipped (it stays
    /// initialised and is destroyed at shutdown). When a module's `start`
    /// fails, the plugin's modules started before it are stopped (in
    /// reverse) and the plugin fails.
    pub fn start_all(&mut self) {
        for i in 0..self.entries.len() {
            if self.entries[i].state != LifecycleState::Initialized || !self.entries[i].spec.enable
            {
                continue;
            }
            let depend = self.entries[i].spec.depend.clone();
            let blocked = depend.iter().find_map(|dep| {
                let e = self.entries.iter().find(|e| &e.spec.name == dep)?;
                match &e.state {
                    LifecycleState::Running => None,
                    LifecycleState::Initialized if !e.spec.enable => None,
                    s => Some(format!(
                        "depends on {dep}, which did not start: {}",
                        s.why().unwrap_or_else(|| "not running".into())
                    )),
                }
            });
            let e = &mut self.entries[i];
            if let Some(reason) = blocked {
                log::error!("plugin \"{}\" not started: {reason}", e.spec.name);
                e.state = LifecycleState::Skipped { reason };
                continue;
            }
            let mut failed = None;
            for k in 0..e.runs.len() {
                let mut err = [0u8; ERR_BUF];
                let instance = e.runs[k].instance;
                let status = match e.modules()[k].descriptor.start {
                    // SAFETY: the state is `Initialized`, which
                    // `load_and_init` sets only after every module's `init`
                    // returned OK and stored its instance; nothing has
                    // destroyed them (only `shutdown` does, and it moves
                    // every initialised entry out of `Initialized`). `&mut
                    // self` serialises lifecycle calls, so no other host call
                    // into this instance runs now; `err` is a local buffer of
                    // `err.len()` bytes.
                    Some(start) => crate::journal::around(i, Stage::Start, || unsafe {
                        start(instance, err.as_mut_ptr().cast(), err.len())
                    }),
                    None => xplugin_abi::XPLUGIN_ERR_FAILED,
                };
                if status != XPLUGIN_OK {
                    failed = Some(format!("{}{}", e.label(k), status_text(status, &err)));
                    break;
                }
                e.runs[k].started = true;
            }
            match failed {
                None => {
                    e.note(Stage::Start, Ok(()));
                    e.state = LifecycleState::Running;
                    e.was_started = true;
                    e.steps = module_steps(e);
                    log::info!("plugin \"{}\" started", e.spec.name);
                }
                Some(reason) => {
                    e.note(Stage::Start, Err(reason.clone()));
                    log::error!("plugin \"{}\" failed to start: {reason}", e.spec.name);
                    // No `stop` for the failed module; those started before
                    // it are stopped, in reverse.
                    stop_modules(i, e);
                    e.state = LifecycleState::Failed {
                        stage: Stage::Start,
                        reason,
                    };
                    self.bus.remove_owner(&self.entries[i].spec.name);
                }
            }
        }
    }

    /// The client render stage: calls `render` of every running plugin's
    /// modules (in load order, then start order) with `ctx`, once; call it
    /// after [`Lifecycle::start_all`]. A failure is reported and returned
    /// (plugin, text); the plugin keeps running.
    pub fn render_all(&mut self, ctx: &RenderContext) -> Vec<(String, String)> {
        let mut failures = Vec::new();
        for (i, e) in self.entries.iter_mut().enumerate() {
            if e.state != LifecycleState::Running {
                continue;
            }
            if !e.provides(|d| d.render.is_some()) {
                e.note_absent(Stage::Render);
                continue;
            }
            let mut failed = None;
            for k in 0..e.runs.len() {
                let Some(render) = e.modules()[k].descriptor.render else {
                    continue;
                };
                let instance = e.runs[k].instance;
                let mut err = [0u8; ERR_BUF];
                // SAFETY: a `Running` entry's modules are all started and
                // live; `&mut self` rules out a concurrent host call; `ctx`
                // and `err` are valid for the call (`err.len()` bytes).
                let s = crate::journal::around(i, Stage::Render, || unsafe {
                    render(instance, ctx, err.as_mut_ptr().cast(), err.len())
                });
                if s != XPLUGIN_OK && failed.is_none() {
                    failed = Some(format!("{}{}", e.label(k), status_text(s, &err)));
                }
            }
            match failed {
                None => e.note(Stage::Render, Ok(())),
                Some(why) => {
                    log::warn!(
                        "plugin \"{}\" render failed (it runs without UI): {why}",
                        e.spec.name
                    );
                    e.note(Stage::Render, Err(why.clone()));
                    failures.push((e.spec.name.clone(), why));
                }
            }
        }
        failures
    }

    /// The running plugins that have a `step`, in load order, for the
    /// real-time cycle ([`crate::cycle::Cycle::spawn`]). A plugin with
    /// several stepping modules is one slot that steps them in start order.
    ///
    /// The instances stay valid while this lifecycle lives and the plugins
    /// are not stopped; the caller must join the cycle before
    /// [`Lifecycle::shutdown`] and may stop a plugin with
    /// [`Lifecycle::take_out`] only once the cycle no longer steps it.
    pub fn cycle_plugins(&self) -> Vec<CyclePlugin> {
        let stepping: Vec<(usize, &Entry, StepFn, *mut c_void)> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.state == LifecycleState::Running)
            .filter_map(|(index, e)| {
                let (step, instance) = match &e.steps {
                    Some(boxed) => {
                        let p: *const ModuleSteps = &**boxed;
                        (step_modules as StepFn, p.cast_mut().cast::<c_void>())
                    }
                    None => {
                        let k = e
                            .modules()
                            .iter()
                            .position(|m| m.descriptor.step.is_some())?;
                        (e.modules()[k].descriptor.step?, e.runs[k].instance)
                    }
                };
                Some((index, e, step, instance))
            })
            .collect();
        stepping
            .iter()
            .map(|(index, e, step, instance)| CyclePlugin {
                journal_index: *index as u32,
                name: e.spec.name.clone(),
                step: *step,
                instance: *instance,
                budget_ns: e.spec.cycle_budget_ns,
                depends_on: e
                    .spec
                    .depend
                    .iter()
                    .filter_map(|d| stepping.iter().position(|(_, o, _, _)| &o.spec.name == d))
                    .collect(),
            })
            .collect()
    }

    /// Stops plugins that were taken out of the cycle (`names`, in any
    /// order; stopped in reverse load order) and marks them failed in
    /// `stage` with `reason`. Plugins that are not running are left alone.
    /// They are destroyed at [`Lifecycle::shutdown`] like every other.
    ///
    /// Call only when the cycle no longer steps them.
    pub fn take_out(&mut self, names: &[String], stage: Stage, reason: &str) {
        for i in (0..self.entries.len()).rev() {
            if !names.contains(&self.entries[i].spec.name)
                || self.entries[i].state != LifecycleState::Running
            {
                continue;
            }
            self.stop_entry(i);
            let e = &mut self.entries[i];
            e.state = LifecycleState::Failed {
                stage,
                reason: reason.to_string(),
            };
            log::error!("plugin \"{}\" stopped: {reason}", e.spec.name);
        }
    }

    /// Calls every running plugin's `idle` once (client periodic hook), its
    /// modules in start order.
    pub fn idle_all(&mut self) -> Vec<(String, Status)> {
        let mut failures = Vec::new();
        for (i, e) in self.entries.iter_mut().enumerate() {
            if e.state != LifecycleState::Running {
                continue;
            }
            if !e.provides(|d| d.idle.is_some()) {
                e.note_absent(Stage::Idle);
                continue;
            }
            let mut failed = None;
            for k in 0..e.runs.len() {
                let Some(idle) = e.modules()[k].descriptor.idle else {
                    continue;
                };
                let instance = e.runs[k].instance;
                // SAFETY: a `Running` entry's modules are live, and `&mut
                // self` rules out a concurrent host call.
                let s = crate::journal::around(i, Stage::Idle, || unsafe { idle(instance) });
                if s != XPLUGIN_OK && failed.is_none() {
                    failed = Some((s, format!("{}{}", e.label(k), status_name(s))));
                }
            }
            match failed {
                None => e.note(Stage::Idle, Ok(())),
                Some((s, why)) => {
                    e.note(Stage::Idle, Err(why));
                    failures.push((e.spec.name.clone(), s));
                }
            }
        }
        failures
    }

    /// Calls `stop` of running entry `i`'s modules (reverse start order) and
    /// marks it stopped.
    fn stop_entry(&mut self, i: usize) {
        let e = &mut self.entries[i];
        let failures = stop_modules(i, e);
        if failures.is_empty() {
            e.note(Stage::Stop, Ok(()));
        } else {
            let t = failures.join("; ");
            log::warn!("plugin \"{}\" stop failed: {t}", e.spec.name);
            e.note(Stage::Stop, Err(t.clone()));
            e.stop_error = Some(t);
        }
        e.state = LifecycleState::Stopped;
        e.steps = None;
        // A stopped plugin holds nothing busy any more.
        if let Some(h) = &e.host {
            h.clear_busy();
        }
        log::info!("plugin \"{}\" stopped", e.spec.name);
    }

    /// The safe stop after a hang: stops every running plugin except `hung`
    /// in reverse load order, and destroys nothing (the process exits next;
    /// `hung`'s call cannot be cancelled, and what it holds must not be
    /// freed under it).
    pub fn emergency_stop(&mut self, hung: &str) {
        for i in (0..self.entries.len()).rev() {
            if self.entries[i].spec.name != hung && self.entries[i].state == LifecycleState::Running
            {
                self.stop_entry(i);
            }
        }
    }

    /// Stops every started plugin in reverse load order, then destroys every
    /// initialised plugin in reverse load order (modules in reverse init
    /// order). Idempotent.
    pub fn shutdown(&mut self) {
        for i in (0..self.entries.len()).rev() {
            if self.entries[i].state == LifecycleState::Running {
                self.stop_entry(i);
            }
        }
        for i in (0..self.entries.len()).rev() {
            let e = &mut self.entries[i];
            if !e.any_initialized() {
                continue;
            }
            // Nobody may call into the instances once they are gone.
            self.bus.remove_owner(&e.spec.name);
            destroy_modules(i, e);
            e.note(Stage::Destroy, Ok(()));
            if matches!(
                e.state,
                LifecycleState::Stopped | LifecycleState::Initialized
            ) {
                e.state = LifecycleState::Destroyed;
            }
        }
    }

    /// The outcome of every plugin, in load order.
    pub fn outcomes(&self) -> Vec<PluginOutcome> {
        self.entries.iter().map(outcome).collect()
    }

    /// Each plugin's outcome, borrowed (as [`Lifecycle::outcomes`] without
    /// copying it), by name: for a report that looks each of its plugins
    /// up once, at every refresh.
    pub fn outcome_views(&self) -> BTreeMap<&str, OutcomeView<'_>> {
        self.entries
            .iter()
            .map(|e| {
                let view = OutcomeView {
                    entry: e,
                    started: e.was_started,
                };
                (e.spec.name.as_str(), view)
            })
            .collect()
    }

    /// Calls running plugin `name`'s `reconfigure` with the whole new
    /// configuration `config_json` (an object, as `init` got) and, when it
    /// accepts, makes that its configuration for a later restart too.
    ///
    /// A plugin of several modules takes it module by module in start order;
    /// when one refuses (or cannot reconfigure), those that accepted get the
    /// previous configuration back, and the change is refused (or left for
    /// the next start) as a whole.
    ///
    /// The caller must make sure the plugin's `step` cannot run meanwhile
    /// (the cycle's step gate, [`crate::cycle::Cycle::close_gate`]); `&mut
    /// self` keeps every other lifecycle call out.
    pub fn reconfigure(&mut self, name: &str, config_json: &str) -> Reconfigured {
        let Some(i) = self.entries.iter().position(|e| e.spec.name == name) else {
            return Reconfigured::NotRunning;
        };
        let e = &mut self.entries[i];
        if e.state != LifecycleState::Running {
            return Reconfigured::NotRunning;
        }
        if !e.provides(|d| d.reconfigure.is_some()) {
            return Reconfigured::NotSupported;
        }
        let mut applied = Vec::new();
        let mut outcome = Reconfigured::Applied;
        for k in 0..e.runs.len() {
            match reconfigure_module(i, e, k, config_json) {
                Ok(()) => applied.push(k),
                Err(Some(why)) => {
                    outcome = Reconfigured::Refused(format!("{}{why}", e.label(k)));
                    break;
                }
                Err(None) => {
                    outcome = Reconfigured::NotSupported;
                    break;
                }
            }
        }
        if outcome != Reconfigured::Applied {
            // All or nothing: the modules that took it get the old one back.
            let old = e.spec.config_json.clone();
            for k in applied.into_iter().rev() {
                if let Err(Some(why)) = reconfigure_module(i, e, k, &old) {
                    log::error!(
                        "plugin \"{name}\": {}refused its previous configuration back: {why}",
                        e.label(k)
                    );
                }
            }
        }
        match &outcome {
            Reconfigured::Applied => {
                e.spec.config_json = config_json.to_string();
                e.note(Stage::Reconfigure, Ok(()));
                log::info!("plugin \"{name}\" reconfigured");
            }
            Reconfigured::Refused(why) => {
                e.note(Stage::Reconfigure, Err(why.clone()));
                log::warn!("plugin \"{name}\" refused its new configuration: {why}");
            }
            _ => {}
        }
        outcome
    }

    /// Running plugins that hold the host busy (`set_busy`), in load order.
    pub fn busy(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.state == LifecycleState::Running)
            .filter(|e| e.host.as_ref().is_some_and(|h| h.is_busy()))
            .map(|e| e.spec.name.clone())
            .collect()
    }

    /// Names of the plugins that are running now, in load order.
    pub fn running(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.state == LifecycleState::Running)
            .map(|e| e.spec.name.clone())
            .collect()
    }
}

/// One plugin's outcome, borrowed from the lifecycle
/// ([`Lifecycle::outcome_views`]).
pub struct OutcomeView<'a> {
    entry: &'a Entry,
    /// Whether its `start` was called and succeeded at some point.
    pub started: bool,
}

impl OutcomeView<'_> {
    /// Final (or current) state.
    pub fn state(&self) -> &LifecycleState {
        &self.entry.state
    }

    /// Text of a failed `stop`, if any.
    pub fn stop_error(&self) -> Option<&str> {
        self.entry.stop_error.as_deref()
    }

    /// The calls made into it, stage by stage ([`PluginOutcome::stages`]).
    pub fn stages(&self) -> &[StageOutcome] {
        &self.entry.stages
    }

    /// Its entry modules in start order ([`PluginOutcome::modules`]).
    pub fn modules(&self) -> Vec<ModuleOutcome> {
        outcome_modules(self.entry)
    }
}

fn outcome_modules(e: &Entry) -> Vec<ModuleOutcome> {
    match &e.loaded {
        Some(l) if l.has_module_list() => l
            .modules()
            .iter()
            .zip(&e.runs)
            .map(|(m, r)| ModuleOutcome {
                name: m.name.clone(),
                priority: m.priority,
                state: module_state(&e.state, r),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// What happened to entry `e`, for the report.
fn outcome(e: &Entry) -> PluginOutcome {
    PluginOutcome {
        name: e.spec.name.clone(),
        version: e.spec.version.clone(),
        state: e.state.clone(),
        stop_error: e.stop_error.clone(),
        modules: outcome_modules(e),
        stages: e.stages.clone(),
    }
}

/// Calls `stop` of every started module of entry `i` in reverse start order;
/// returns the failures' texts (module named).
fn stop_modules(i: usize, e: &mut Entry) -> Vec<String> {
    let mut failures = Vec::new();
    for k in (0..e.runs.len()).rev() {
        if !e.runs[k].started {
            continue;
        }
        e.runs[k].started = false;
        let Some(stop) = e.modules()[k].descriptor.stop else {
            continue;
        };
        let instance = e.runs[k].instance;
        let mut err = [0u8; ERR_BUF];
        // SAFETY: a started module: its instance is live (init and start
        // succeeded, not stopped or destroyed yet: `started` is cleared
        // above, so this runs once); `err` is a local buffer of `err.len()`
        // bytes; the caller holds `&mut Lifecycle`, which serialises
        // lifecycle calls, and the cycle no longer steps it (the contract of
        // `cycle_plugins` / `take_out`).
        let s = crate::journal::around(i, Stage::Stop, || unsafe {
            stop(instance, err.as_mut_ptr().cast(), err.len())
        });
        if s != XPLUGIN_OK {
            failures.push(format!("{}{}", e.label(k), status_text(s, &err)));
        }
    }
    failures
}

/// Calls `destroy` of every initialised module of entry `i` in reverse init
/// order and forgets the instances.
fn destroy_modules(i: usize, e: &mut Entry) {
    for k in (0..e.runs.len()).rev() {
        let instance = std::mem::replace(&mut e.runs[k].instance, std::ptr::null_mut());
        if instance.is_null() {
            continue;
        }
        if let Some(destroy) = e.modules()[k].descriptor.destroy {
            // SAFETY: `instance` is non-null only after a successful `init`
            // and is nulled above, so `destroy` runs exactly once per
            // instance and nothing of ours calls into it after. Entries are
            // destroyed in reverse load order, so every dependent that could
            // hold this plugin's service tables is already gone, and the
            // caller's `remove_owner` waited for in-flight deliveries to its
            // subscriptions and removed them.
            crate::journal::around(i, Stage::Destroy, || unsafe { destroy(instance) });
        }
    }
}

/// `reconfigure` of module `k` of running entry `i`: `Ok` when it took
/// `config_json`, `Err(Some(text))` when it refused, `Err(None)` when it
/// cannot (NULL or `XPLUGIN_ERR_NOT_IMPLEMENTED`).
fn reconfigure_module(
    i: usize,
    e: &Entry,
    k: usize,
    config_json: &str,
) -> Result<(), Option<String>> {
    let Some(reconfigure) = e.modules()[k].descriptor.reconfigure else {
        return Err(None);
    };
    let instance = e.runs[k].instance;
    let config = format!("{config_json}\0");
    let mut err = [0u8; ERR_BUF];
    // SAFETY: the entry is `Running`, so every module's `init` returned OK
    // with this instance and nothing destroyed it; the caller holds `&mut
    // Lifecycle`, which serialises lifecycle calls, and keeps the plugin's
    // `step` from running, so no other call into the instance runs now.
    // `config` is NUL-terminated with `config_json.len()` bytes before the
    // NUL and outlives the call; `err` is a local buffer of `err.len()`
    // bytes.
    let status = crate::journal::around(i, Stage::Reconfigure, || unsafe {
        reconfigure(
            instance,
            config.as_ptr().cast::<c_char>(),
            config_json.len(),
            err.as_mut_ptr().cast::<c_char>(),
            err.len(),
        )
    });
    match status {
        XPLUGIN_OK => Ok(()),
        xplugin_abi::XPLUGIN_ERR_NOT_IMPLEMENTED => Err(None),
        other => Err(Some(status_text(other, &err))),
    }
}

/// The boxed step list of a just-started entry with several stepping
/// modules (one stepping module is called directly).
fn module_steps(e: &Entry) -> Option<Box<ModuleSteps>> {
    let steps: Vec<(StepFn, *mut c_void)> = e
        .modules()
        .iter()
        .zip(&e.runs)
        .filter_map(|(m, r)| Some((m.descriptor.step?, r.instance)))
        .collect();
    (steps.len() > 1).then(|| Box::new(ModuleSteps(steps)))
}

fn module_state(plugin: &LifecycleState, run: &ModuleRun) -> &'static str {
    match (plugin, run.instance.is_null(), run.started) {
        (LifecycleState::Failed { .. }, true, _) => "failed",
        (_, false, true) => "running",
        (LifecycleState::Stopped, false, false) => "stopped",
        (LifecycleState::Initialized, false, false) => "initialized",
        (LifecycleState::Failed { .. }, false, false) => "initialized",
        (LifecycleState::Destroyed, true, _) => "destroyed",
        (_, true, _) => "not-initialized",
        _ => "initialized",
    }
}

impl Drop for Lifecycle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn short(state: &LifecycleState) -> &'static str {
    match state {
        LifecycleState::Failed { .. } => "failed",
        LifecycleState::Skipped { .. } => "skipped",
        _ => "ok",
    }
}

fn closure(direct: &BTreeMap<String, Vec<String>>, name: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&str> = direct
        .get(name)
        .map(|d| d.iter().map(String::as_str).collect())
        .unwrap_or_default();
    while let Some(n) = stack.pop() {
        if seen.insert(n.to_string()) {
            if let Some(d) = direct.get(n) {
                stack.extend(d.iter().map(String::as_str));
            }
        }
    }
    seen
}
