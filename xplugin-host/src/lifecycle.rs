//! Driving a resolved plugin set through its lifecycle: load and `init` every
//! plugin in load order, then `start` every plugin, then (on shutdown) `stop`
//! in reverse order and `destroy` in reverse order.
//!
//! Failure is isolated: a plugin that fails to load, fails `init`/`start` or
//! panics is marked failed with the reason, its dependents are skipped with the
//! reason chain (`b: depends on a, which failed: init returned ...`), and every
//! unrelated plugin goes on. Init of every plugin finishes before any plugin
//! starts (the vendor's stage order).

use crate::cycle::CyclePlugin;
use crate::loader::{open_plugin, CheckedLibrary, LoadedPlugin};
use crate::services::{Bus, PluginHost};
use crate::stage::Stage;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{c_char, c_void};
use std::path::PathBuf;
use std::sync::Arc;
use xplugin_abi::{status_name, Status, XPLUGIN_OK};

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
}

struct Entry {
    spec: PluginToLoad,
    state: LifecycleState,
    loaded: Option<LoadedPlugin>,
    instance: *mut c_void,
    host: Option<Box<PluginHost>>,
    stop_error: Option<String>,
    was_started: bool,
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
        // Transitive dependency closure, for service visibility.
        let direct: BTreeMap<String, Vec<String>> = plugins
            .iter()
            .map(|p| (p.name.clone(), p.depend.clone()))
            .collect();
        for spec in plugins {
            let mut entry = Entry {
                state: LifecycleState::Initialized,
                loaded: None,
                instance: std::ptr::null_mut(),
                host: None,
                stop_error: None,
                was_started: false,
                spec,
            };
            if let Some(reason) = self.blocked_by_dependency(&entry.spec.depend) {
                entry.state = LifecycleState::Skipped { reason };
            } else {
                let visible = closure(&direct, &entry.spec.name);
                let index = self.entries.len();
                if let Some(j) = crate::journal::get() {
                    j.name(index, &entry.spec.name);
                }
                // SAFETY: `entry.spec` is one of `plugins`, each of which our
                // caller vouched for (this function's `# Safety`): it passed
                // every package check before it was put in the load list.
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

    /// Opens `entry`'s library, validates its descriptor and calls `init`.
    /// On success the instance is stored in `entry`; on failure nothing is
    /// stored, so `destroy` is never called for a plugin whose `init` failed.
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
        if opened.is_ok() && crate::journal::get().is_some() {
            // Before any call into it: a crash in its code is blamed on it.
            crate::fault::register_library(index, spec.library.path());
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
        let d = loaded.descriptor();
        let host = PluginHost::new(
            &spec.name,
            &self.host_version,
            &spec.data_dir,
            visible,
            self.bus.clone(),
        );
        host.set_journal_index(index);
        let mut err = [0u8; ERR_BUF];
        let mut instance: *mut c_void = std::ptr::null_mut();
        let config = format!("{}\0", spec.config_json);
        let status = match d.init {
            // SAFETY: `init` comes from the descriptor `open_plugin` validated
            // (magic, ABI major, a struct_size covering every 1.0 field, kind,
            // name, version), so it has the `InitFn` signature. Its arguments
            // meet the ABI contract: `host.api()` points into the boxed
            // `PluginHost`, which is kept in `entry.host` below and dropped
            // only with the `Lifecycle`, after `destroy`; `config` is
            // NUL-terminated, `config_json.len()` bytes before the NUL, and
            // outlives the call; `instance` and `err` are locals valid for
            // writes of one pointer and `err.len()` bytes.
            Some(init) => crate::journal::around(index, Stage::Init, || unsafe {
                init(
                    host.api(),
                    config.as_ptr().cast::<c_char>(),
                    spec.config_json.len(),
                    &mut instance,
                    err.as_mut_ptr().cast::<c_char>(),
                    err.len(),
                )
            }),
            None => xplugin_abi::XPLUGIN_ERR_FAILED,
        };
        entry.loaded = Some(loaded);
        entry.host = Some(host);
        if status != XPLUGIN_OK {
            // Whatever it registered before failing must not be found.
            self.bus.remove_owner(&spec.name);
            return LifecycleState::Failed {
                stage: Stage::Init,
                reason: status_text(status, &err),
            };
        }
        entry.instance = instance;
        log::info!("plugin \"{}\" {} initialised", spec.name, spec.version);
        LifecycleState::Initialized
    }

    /// Starts every initialised plugin in load order. A plugin whose
    /// dependency did not start is skipped (it stays initialised and is
    /// destroyed at shutdown).
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
            let mut err = [0u8; ERR_BUF];
            let status = match e.loaded.as_ref().and_then(|l| l.descriptor().start) {
                // SAFETY: the state is `Initialized`, which `load_and_init`
                // sets only after `init` returned OK and stored the instance;
                // nothing has destroyed it (only `shutdown` does, and it
                // moves every initialised entry out of `Initialized`).
                // `&mut self` serialises lifecycle calls, so no other host
                // call into this instance runs now; `err` is a local buffer
                // of `err.len()` bytes.
                Some(start) => crate::journal::around(i, Stage::Start, || unsafe {
                    start(e.instance, err.as_mut_ptr().cast(), err.len())
                }),
                None => xplugin_abi::XPLUGIN_ERR_FAILED,
            };
            if status == XPLUGIN_OK {
                e.state = LifecycleState::Running;
                e.was_started = true;
                log::info!("plugin \"{}\" started", e.spec.name);
            } else {
                e.state = LifecycleState::Failed {
                    stage: Stage::Start,
                    reason: status_text(status, &err),
                };
                log::error!(
                    "plugin \"{}\" failed to start: {}",
                    e.spec.name,
                    status_text(status, &err)
                );
                self.bus.remove_owner(&self.entries[i].spec.name);
            }
        }
    }

    /// The running plugins that have a `step`, in load order, for the
    /// real-time cycle ([`crate::cycle::Cycle::spawn`]).
    ///
    /// The instances stay valid while this lifecycle lives and the plugins
    /// are not stopped; the caller must join the cycle before
    /// [`Lifecycle::shutdown`] and may stop a plugin with
    /// [`Lifecycle::take_out`] only once the cycle no longer steps it.
    pub fn cycle_plugins(&self) -> Vec<CyclePlugin> {
        let stepping: Vec<(usize, &Entry)> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                e.state == LifecycleState::Running
                    && e.loaded
                        .as_ref()
                        .is_some_and(|l| l.descriptor().step.is_some())
            })
            .collect();
        stepping
            .iter()
            .filter_map(|(index, e)| {
                let step = e.loaded.as_ref()?.descriptor().step?;
                Some(CyclePlugin {
                    journal_index: *index as u32,
                    name: e.spec.name.clone(),
                    step,
                    instance: e.instance,
                    budget_ns: e.spec.cycle_budget_ns,
                    depends_on: e
                        .spec
                        .depend
                        .iter()
                        .filter_map(|d| stepping.iter().position(|(_, o)| &o.spec.name == d))
                        .collect(),
                })
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

    /// Calls every running plugin's `idle` once (client periodic hook).
    pub fn idle_all(&mut self) -> Vec<(String, Status)> {
        let mut failures = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            if e.state != LifecycleState::Running {
                continue;
            }
            if let Some(idle) = e.loaded.as_ref().and_then(|l| l.descriptor().idle) {
                // SAFETY: a `Running` instance is live, and `&mut self` rules
                // out a concurrent host call.
                let s = crate::journal::around(i, Stage::Idle, || unsafe { idle(e.instance) });
                if s != XPLUGIN_OK {
                    failures.push((e.spec.name.clone(), s));
                }
            }
        }
        failures
    }

    /// Calls `stop` of running entry `i` and marks it stopped.
    fn stop_entry(&mut self, i: usize) {
        let e = &mut self.entries[i];
        let mut err = [0u8; ERR_BUF];
        if let Some(stop) = e.loaded.as_ref().and_then(|l| l.descriptor().stop) {
            // SAFETY: callers pass a `Running` entry: the instance is live
            // (init and start succeeded, not stopped or destroyed yet); `err`
            // is a local buffer of `err.len()` bytes; `&mut self` serialises
            // lifecycle calls, and the cycle no longer steps it (the
            // contract of `cycle_plugins` / `take_out`).
            let s = crate::journal::around(i, Stage::Stop, || unsafe {
                stop(e.instance, err.as_mut_ptr().cast(), err.len())
            });
            if s != XPLUGIN_OK {
                let t = status_text(s, &err);
                log::warn!("plugin \"{}\" stop failed: {t}", e.spec.name);
                e.stop_error = Some(t);
            }
        }
        e.state = LifecycleState::Stopped;
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
    /// initialised plugin in reverse load order. Idempotent.
    pub fn shutdown(&mut self) {
        for i in (0..self.entries.len()).rev() {
            if self.entries[i].state == LifecycleState::Running {
                self.stop_entry(i);
            }
        }
        for (i, e) in self.entries.iter_mut().enumerate().rev() {
            if e.instance.is_null() {
                continue;
            }
            // Nobody may call into the instance once it is gone.
            self.bus.remove_owner(&e.spec.name);
            if let Some(destroy) = e.loaded.as_ref().and_then(|l| l.descriptor().destroy) {
                // SAFETY: `e.instance` is non-null only after a successful
                // `init` and is nulled right below, so `destroy` runs exactly
                // once per instance and nothing of ours calls into it after.
                // Entries are destroyed in reverse load order, so every
                // dependent that could hold this plugin's service tables is
                // already gone, and `remove_owner` above waited for in-flight
                // deliveries to its subscriptions and removed them.
                crate::journal::around(i, Stage::Destroy, || unsafe { destroy(e.instance) });
            }
            e.instance = std::ptr::null_mut();
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
        self.entries
            .iter()
            .map(|e| PluginOutcome {
                name: e.spec.name.clone(),
                version: e.spec.version.clone(),
                state: e.state.clone(),
                stop_error: e.stop_error.clone(),
            })
            .collect()
    }

    /// Calls running plugin `name`'s `reconfigure` with the whole new
    /// configuration `config_json` (an object, as `init` got) and, when it
    /// accepts, makes that its configuration for a later restart too.
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
        let Some(reconfigure) = e.loaded.as_ref().and_then(|l| l.descriptor().reconfigure) else {
            return Reconfigured::NotSupported;
        };
        let config = format!("{config_json}\0");
        let mut err = [0u8; ERR_BUF];
        // SAFETY: the state is `Running`, so `init` returned OK with this
        // instance and nothing destroyed it; `&mut self` serialises lifecycle
        // calls and our caller keeps the plugin's `step` from running, so no
        // other call into the instance runs now. `config` is NUL-terminated
        // with `config_json.len()` bytes before the NUL and outlives the call;
        // `err` is a local buffer of `err.len()` bytes.
        let status = crate::journal::around(i, Stage::Reconfigure, || unsafe {
            reconfigure(
                e.instance,
                config.as_ptr().cast::<c_char>(),
                config_json.len(),
                err.as_mut_ptr().cast::<c_char>(),
                err.len(),
            )
        });
        match status {
            XPLUGIN_OK => {
                e.spec.config_json = config_json.to_string();
                log::info!("plugin \"{name}\" reconfigured");
                Reconfigured::Applied
            }
            xplugin_abi::XPLUGIN_ERR_NOT_IMPLEMENTED => Reconfigured::NotSupported,
            other => {
                let why = status_text(other, &err);
                log::warn!("plugin \"{name}\" refused its new configuration: {why}");
                Reconfigured::Refused(why)
            }
        }
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

    /// Whether a plugin was started at some point (for reports after shutdown).
    pub fn was_started(&self, name: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.spec.name == name && e.was_started)
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
