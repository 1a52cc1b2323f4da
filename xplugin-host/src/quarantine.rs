//! Quarantine: a plugin that crashed or hung the controller is not loaded
//! again until someone decides so, instead of crashing every boot.
//!
//! At each boot the previous run's journal ([`crate::journal`]) is settled:
//!
//! * it stopped cleanly: nothing to do;
//! * it ended inside a plugin call (a fatal signal blamed by program
//!   counter, an `exit` from inside a call, a hang the supervisor caught,
//!   or no record at all while a lifecycle call was running): a crash in
//!   `load`, `init`, `start`, `stop`, `destroy` or `reconfigure`, and any
//!   hang, quarantine that plugin at once; a crash in `step` (or a message
//!   callback) counts, and quarantines after [`Policy::step_crashes`]
//!   within [`Policy::window`];
//! * it ended with nothing to blame: counted; after
//!   [`Policy::unattributed_crashes`] within the window the controller boots
//!   in safe mode (no plugins) until `quarantine clear --all`.
//!
//! Crash counts use the kernel's boot id and CLOCK_MONOTONIC, never the
//! wall clock (which a controller without RTC may not have): crashes of an
//! earlier boot of the kernel are outside every window.
//!
//! `ROOT/state/quarantine.json` holds the evidence. A quarantine names the
//! plugin's version: installing another version clears it.

use crate::journal::{self, FaultKind, LastRun};
use crate::stage::Stage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// File name under `ROOT/state/`.
pub const QUARANTINE_FILE: &str = "quarantine.json";
/// File name of the journal under `ROOT/state/`.
pub const JOURNAL_FILE: &str = "journal";

/// Why the quarantine could not be read, written or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuarantineError {
    /// The file cannot be read or parsed.
    #[error("the quarantine file {} is unusable: {detail}", path.display())]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The file cannot be written.
    #[error("cannot write the quarantine file {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The plugin is not quarantined.
    #[error("plugin \"{name}\" is not quarantined")]
    NotQuarantined {
        /// The plugin.
        name: String,
    },
}

impl xplugin_model::Failure for QuarantineError {
    fn problems(&self) -> xplugin_model::Problems {
        use xplugin_model::{Problem, ProblemCode};
        let (code, subject, hint) = match self {
            QuarantineError::Unusable { path, .. } | QuarantineError::Write { path, .. } => (
                ProblemCode::QuarantineUnusable,
                path.display().to_string(),
                "check the disk and the file's permissions; if it is damaged, remove it (the evidence in it is lost)",
            ),
            QuarantineError::NotQuarantined { name } => (
                ProblemCode::QuarantineNotQuarantined,
                format!("plugin \"{name}\""),
                "`xplugin-controller quarantine list` shows what is quarantined",
            ),
        };
        xplugin_model::Problems(vec![Problem::from_error(code, subject, self, hint)])
    }
}

/// When a crash quarantines.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Crashes in `step` within `window` that quarantine the plugin.
    pub step_crashes: usize,
    /// Crashes without a plugin to blame within `window` that start safe mode.
    pub unattributed_crashes: usize,
    /// The window.
    pub window: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            step_crashes: 3,
            unattributed_crashes: 5,
            window: Duration::from_secs(600),
        }
    }
}

/// One crash, for counting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crash {
    /// The kernel's boot id (hex).
    pub boot_id: String,
    /// CLOCK_MONOTONIC of that boot, in nanoseconds.
    pub mono_ns: u64,
    /// The cycle number, for crashes in `step`.
    #[serde(default)]
    pub cycle: u64,
}

/// A quarantined plugin and the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The version that crashed (another version clears the quarantine).
    pub version: String,
    /// The call it crashed or hung in.
    pub stage: String,
    /// `signal SIGSEGV (11)`, `exit() inside the call`, `hung for 3.2 s`,
    /// `the process ended during the call`.
    pub how: String,
    /// The signal number, when a signal ended the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// The cycle number, for `step`.
    #[serde(default)]
    pub cycle: u64,
    /// The faulting instruction and address, for signals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pc: Option<String>,
    /// When (unix seconds; informational, from the wall clock at the boot
    /// that found it).
    pub found_unix: u64,
    /// The crashes counted, for `step`.
    #[serde(default)]
    pub crashes: Vec<Crash>,
}

impl Entry {
    /// One line: why it is quarantined.
    pub fn reason(&self, name: &str) -> String {
        let at = if self.stage == "step" {
            format!(" at cycle {}", self.cycle)
        } else {
            String::new()
        };
        format!(
            "quarantined: {name} {} {} in {}{at}; `xplugin-controller quarantine clear {name}` loads it again",
            self.version, self.how, self.stage
        )
    }
}

/// Whom a run's end is blamed on, and the evidence.
struct Culprit {
    plugin: String,
    stage: Option<Stage>,
    how: String,
    signal: Option<i32>,
    cycle: u64,
    pc: Option<String>,
    mono_ns: u64,
}

/// `ROOT/state/quarantine.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    /// Quarantined plugins.
    #[serde(default)]
    pub plugins: BTreeMap<String, Entry>,
    /// Crashes in `step` not (yet) enough to quarantine, by plugin.
    #[serde(default)]
    pub step_crashes: BTreeMap<String, (String, Vec<Crash>)>,
    /// Crashes with nothing to blame.
    #[serde(default)]
    pub unattributed: Vec<Crash>,
    /// Why the controller boots without plugins, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safe_mode: Option<String>,
}

/// What settling the last run found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Settled {
    /// Plugins quarantined now.
    pub quarantined: Vec<String>,
    /// A crash counted (plugin, or `None` when nothing was to blame).
    pub counted: Option<Option<String>>,
    /// The previous run's end, in words, when it did not stop cleanly.
    pub previous_end: Option<String>,
    /// The previous run was lost with the machine (power cut, reset, kernel
    /// crash) during a lifecycle phase, and its journal cannot say which
    /// call ran: this run should make every lifecycle call durable
    /// ([`journal::Journal::open`]), so that a repeat names the plugin.
    pub durable_calls: bool,
}

fn path(root: &Path) -> PathBuf {
    root.join(xplugin_store::STATE_DIR).join(QUARANTINE_FILE)
}

/// The journal's path in `root`.
pub fn journal_path(root: &Path) -> PathBuf {
    root.join(xplugin_store::STATE_DIR).join(JOURNAL_FILE)
}

fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn signal_name(sig: i32) -> String {
    let name = match sig {
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        11 => "SIGSEGV",
        _ => "signal",
    };
    format!("{name} ({sig})")
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Quarantine {
    /// Reads the file (missing: empty).
    ///
    /// # Errors
    /// [`QuarantineError::Unusable`] for an unreadable or malformed file.
    pub fn load(root: &Path) -> Result<Quarantine, QuarantineError> {
        let p = path(root);
        let unusable = |detail: String| QuarantineError::Unusable {
            path: p.clone(),
            detail,
        };
        match std::fs::read(&p) {
            Ok(b) if b.len() > 1 << 20 => Err(unusable("larger than 1 MiB".into())),
            Ok(b) => serde_json::from_slice(&b).map_err(|e| unusable(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Quarantine::default()),
            Err(e) => Err(unusable(e.to_string())),
        }
    }

    /// Writes the file atomically and durably.
    ///
    /// # Errors
    /// [`QuarantineError::Write`].
    pub fn save(&self, root: &Path) -> Result<(), QuarantineError> {
        let write = |source| QuarantineError::Write {
            path: path(root),
            source,
        };
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| write(std::io::Error::other(e)))?;
        xplugin_store::replace_file(&path(root), &bytes).map_err(write)
    }

    /// Removes the quarantine of `name`; returns whether it was there.
    pub fn clear(&mut self, name: &str) -> bool {
        self.step_crashes.remove(name);
        self.plugins.remove(name).is_some()
    }

    /// Removes every quarantine and leaves safe mode.
    pub fn clear_all(&mut self) {
        *self = Quarantine::default();
    }

    /// Drops quarantines of versions that are not installed any more
    /// (`installed`: name -> version). Returns the names dropped.
    pub fn forget_replaced(&mut self, installed: &BTreeMap<String, String>) -> Vec<String> {
        let gone: Vec<String> = self
            .plugins
            .iter()
            .filter(|(n, e)| installed.get(*n) != Some(&e.version))
            .map(|(n, _)| n.clone())
            .collect();
        for n in &gone {
            self.plugins.remove(n);
            self.step_crashes.remove(n);
        }
        gone
    }

    /// Settles what the previous run left in `last` (see the module
    /// documentation); `installed` gives the versions.
    pub fn settle(
        &mut self,
        last: &LastRun,
        installed: &BTreeMap<String, String>,
        policy: Policy,
    ) -> Settled {
        let mut settled = Settled::default();
        if last.state == journal::RunState::Clean {
            return settled;
        }
        let boot = hex(&last.boot_id);
        let this_boot = hex(&journal::boot_id());
        let same_kernel = boot == this_boot;
        let machine_lost = !same_kernel && last.fault.is_none() && !last.durable_calls;
        // What to blame.
        let culprit: Option<Culprit> = match &last.fault {
            Some(f) => {
                let plugin = match f.kind {
                    FaultKind::Signal => f.blamed.clone().or_else(|| f.plugin.clone()),
                    _ => f.plugin.clone(),
                };
                let how = match f.kind {
                    FaultKind::Signal => format!("crashed with {}", signal_name(f.signal)),
                    FaultKind::Exit => "called exit() inside the call".to_string(),
                    FaultKind::Hang => format!(
                        "hung (did not return for {:.1} s)",
                        f.elapsed_ns as f64 / 1e9
                    ),
                };
                plugin.map(|plugin| Culprit {
                    plugin,
                    stage: f.stage,
                    how,
                    signal: (f.kind == FaultKind::Signal).then_some(f.signal),
                    cycle: f.cycle,
                    pc: (f.kind == FaultKind::Signal)
                        .then(|| format!("pc {:#x}, address {:#x}", f.pc, f.addr)),
                    mono_ns: f.mono_ns,
                })
            }
            // No record: a lifecycle call (not step) in progress is blamed,
            // if the slots can be believed: the process died under this
            // kernel (the page cache kept them) or they were durable.
            None if !same_kernel && !last.durable_calls => None,
            None => last
                .inside
                .iter()
                .find(|i| {
                    !matches!(
                        i.stage,
                        Some(Stage::Step) | Some(Stage::Message) | Some(Stage::Idle)
                    )
                })
                .map(|i| Culprit {
                    plugin: i.plugin.clone(),
                    stage: i.stage,
                    how: "the process ended during the call (killed or lost power)".to_string(),
                    signal: None,
                    cycle: i.cycle,
                    pc: None,
                    mono_ns: i.since_ns,
                }),
        };
        let previous_end = match &culprit {
            Some(c) => format!(
                "the previous run (pid {}) ended in plugin \"{}\" {}: {}",
                last.pid,
                c.plugin,
                c.stage.map_or("(unknown call)".to_string(), |s| s.to_string()),
                c.how
            ),
            None if machine_lost => format!(
                "the previous run (pid {}) was lost with the machine (power cut, reset or kernel crash) while {}; which plugin call was running is not known, because lifecycle calls are made durable only after such a loss{}",
                last.pid,
                last.phase.describe(),
                if last.phase.is_lifecycle() {
                    ": this run makes each one durable, so that a repeat names the plugin"
                } else {
                    ""
                }
            ),
            None => format!(
                "the previous run (pid {}) ended without stopping cleanly and without a plugin to blame",
                last.pid
            ),
        };
        settled.durable_calls = machine_lost && last.phase.is_lifecycle();
        settled.previous_end = Some(previous_end);
        let in_window = |c: &Crash| c.boot_id == this_boot;
        let window_ns = policy.window.as_nanos() as u64;
        let now_mono = crate::cycle::clock::monotonic_ns();
        match culprit {
            Some(Culprit {
                plugin,
                stage,
                how,
                signal,
                cycle,
                pc,
                mono_ns: mono,
            }) => {
                let version = installed.get(&plugin).cloned().unwrap_or_default();
                let immediate = !matches!(
                    stage,
                    Some(Stage::Step) | Some(Stage::Message) | Some(Stage::Idle)
                ) || how.starts_with("hung");
                let crash = Crash {
                    boot_id: boot.clone(),
                    mono_ns: mono,
                    cycle,
                };
                let mut crashes = vec![crash.clone()];
                if !immediate {
                    let (v, list) = self
                        .step_crashes
                        .entry(plugin.clone())
                        .or_insert_with(|| (version.clone(), Vec::new()));
                    if *v != version {
                        list.clear();
                        *v = version.clone();
                    }
                    list.push(crash);
                    list.retain(|c| {
                        in_window(c) && now_mono.saturating_sub(c.mono_ns) <= window_ns
                    });
                    crashes = list.clone();
                    settled.counted = Some(Some(plugin.clone()));
                }
                if immediate || crashes.len() >= policy.step_crashes {
                    self.step_crashes.remove(&plugin);
                    self.plugins.insert(
                        plugin.clone(),
                        Entry {
                            version,
                            stage: stage.map_or("unknown".to_string(), |s| s.to_string()),
                            how: if immediate {
                                how
                            } else {
                                format!(
                                    "{how} ({} crashes in step within {} s)",
                                    crashes.len(),
                                    policy.window.as_secs()
                                )
                            },
                            signal,
                            cycle,
                            pc,
                            found_unix: now_unix(),
                            crashes,
                        },
                    );
                    settled.quarantined.push(plugin);
                }
            }
            None => {
                self.unattributed.push(Crash {
                    boot_id: boot,
                    mono_ns: now_mono,
                    cycle: 0,
                });
                self.unattributed
                    .retain(|c| in_window(c) && now_mono.saturating_sub(c.mono_ns) <= window_ns);
                settled.counted = Some(None);
                if self.unattributed.len() >= policy.unattributed_crashes {
                    self.safe_mode = Some(format!(
                        "the controller stopped {} times within {} s without a plugin to blame; it runs no plugins until `xplugin-controller quarantine clear --all`",
                        self.unattributed.len(),
                        policy.window.as_secs()
                    ));
                }
            }
        }
        settled
    }
}

/// Quarantines `plugin` (of `version`) of `root` for the next boot because
/// a file of it changed on the media (`how`, found by the background
/// verification of [`crate::digests`]).
///
/// # Errors
/// [`QuarantineError`] when the file cannot be read or written.
pub fn quarantine_changed_file(
    root: &Path,
    plugin: &str,
    version: &str,
    how: &str,
) -> Result<(), QuarantineError> {
    let mut q = Quarantine::load(root)?;
    q.plugins.insert(
        plugin.to_string(),
        Entry {
            version: version.to_string(),
            stage: "background verification".to_string(),
            how: how.to_string(),
            signal: None,
            cycle: 0,
            pc: None,
            found_unix: now_unix(),
            crashes: Vec::new(),
        },
    );
    q.save(root)
}

/// Settles the previous run of `root` and returns the quarantine in force
/// (with replaced versions forgotten), saving it when it changed.
///
/// # Errors
/// [`QuarantineError`] when the quarantine file cannot be read or written.
pub fn settle_previous_run(
    root: &Path,
    installed: &BTreeMap<String, String>,
    policy: Policy,
) -> Result<(Quarantine, Settled), QuarantineError> {
    let mut q = Quarantine::load(root)?;
    let before = q.clone();
    let settled = match journal::read_last(&journal_path(root)) {
        Some(last) => q.settle(&last, installed, policy),
        None => Settled::default(),
    };
    q.forget_replaced(installed);
    if q != before {
        q.save(root)?;
    }
    Ok((q, settled))
}

/// What `quarantine list` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// The root.
    pub root: PathBuf,
    /// Quarantined plugins with the evidence.
    pub quarantine: BTreeMap<String, Entry>,
    /// Crashes in `step` counted so far (not yet quarantining).
    pub step_crashes: BTreeMap<String, usize>,
    /// Why no plugin is loaded, in safe mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safe_mode: Option<String>,
}

impl std::fmt::Display for Listing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(why) = &self.safe_mode {
            writeln!(f, "SAFE MODE: {why}")?;
        }
        if self.quarantine.is_empty() {
            writeln!(f, "{}: no plugin is quarantined", self.root.display())?;
        }
        for (name, e) in &self.quarantine {
            writeln!(f, "  {name:<20} {:<10} {} in {}", e.version, e.how, e.stage)?;
            if let Some(pc) = &e.pc {
                writeln!(f, "      {pc}")?;
            }
        }
        for (name, n) in &self.step_crashes {
            writeln!(f, "  {name:<20} {n} crash(es) in step counted")?;
        }
        Ok(())
    }
}

/// The quarantine of `root`, for `quarantine list`.
///
/// # Errors
/// [`QuarantineError::Unusable`].
pub fn list(root: &Path) -> Result<Listing, QuarantineError> {
    let q = Quarantine::load(root)?;
    Ok(Listing {
        root: root.to_path_buf(),
        step_crashes: q
            .step_crashes
            .iter()
            .map(|(n, (_, c))| (n.clone(), c.len()))
            .collect(),
        quarantine: q.plugins,
        safe_mode: q.safe_mode,
    })
}

/// Lifts the quarantine of `name` (or all of it and safe mode); returns a
/// sentence saying what was done.
///
/// # Errors
/// [`QuarantineError::NotQuarantined`], or the file's error.
pub fn clear(root: &Path, name: Option<&str>, all: bool) -> Result<String, QuarantineError> {
    let mut q = Quarantine::load(root)?;
    let message = match (all, name) {
        (false, Some(name)) => {
            if !q.clear(name) {
                return Err(QuarantineError::NotQuarantined {
                    name: name.to_string(),
                });
            }
            format!("quarantine of {name} lifted; it loads at the next start (or the next apply)")
        }
        _ => {
            q.clear_all();
            "every quarantine is lifted and safe mode is off; the plugins load at the next start"
                .to_string()
        }
    };
    q.save(root)?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Inside, Phase, RunState};

    /// A run that died inside `crashy`'s init, under this kernel or another.
    fn died_in_init(same_kernel: bool, durable_calls: bool, phase: Phase) -> LastRun {
        let boot_id = if same_kernel {
            journal::boot_id()
        } else {
            let mut other = journal::boot_id();
            other[0] ^= 0xff;
            other
        };
        LastRun {
            state: RunState::Running,
            pid: 42,
            boot_id,
            generation: 1,
            durable_calls,
            phase,
            names: vec!["crashy".into()],
            inside: vec![Inside {
                role: "main",
                plugin: "crashy".into(),
                stage: Some(Stage::Init),
                since_ns: 1,
                cycle: 0,
            }],
            fault: None,
        }
    }

    fn settle(last: &LastRun) -> (Quarantine, Settled) {
        let mut q = Quarantine::default();
        let installed = [("crashy".to_string(), "1.0.0".to_string())].into();
        let settled = q.settle(last, &installed, Policy::default());
        (q, settled)
    }

    #[test]
    fn a_process_that_died_under_this_kernel_is_blamed_from_its_lazy_record() {
        let (q, settled) = settle(&died_in_init(true, false, Phase::Starting));
        assert_eq!(settled.quarantined, ["crashy"]);
        assert!(q.plugins.contains_key("crashy"));
        assert!(!settled.durable_calls);
    }

    #[test]
    fn a_lost_machine_with_a_lazy_record_blames_nobody_and_asks_for_durable_calls() {
        let (q, settled) = settle(&died_in_init(false, false, Phase::Starting));
        assert!(settled.quarantined.is_empty(), "{settled:?}");
        assert!(q.plugins.is_empty());
        assert!(settled.durable_calls);
        let end = settled.previous_end.unwrap_or_default();
        assert!(end.contains("lost with the machine"), "{end}");
        assert!(end.contains("loading and starting plugins"), "{end}");
        // Not a crash loop of this kernel: outside every window.
        assert!(q.safe_mode.is_none());
    }

    #[test]
    fn a_lost_machine_in_a_run_that_stops_right_after_start_reads_as_a_lifecycle_phase() {
        // Its one phase spans the start and the stop: lost in either, the
        // same reading as a loss while starting, and the words say both.
        for stage in [Stage::Init, Stage::Stop] {
            let mut last = died_in_init(false, false, Phase::StartingAndStopping);
            last.inside[0].stage = Some(stage);
            let (q, settled) = settle(&last);
            assert!(settled.quarantined.is_empty(), "{settled:?}");
            assert!(q.plugins.is_empty());
            assert!(settled.durable_calls, "{settled:?}");
            let end = settled.previous_end.unwrap_or_default();
            assert!(end.contains("or stopping them right after"), "{end}");
        }
        // With durable calls, the call in progress is blamed as in any
        // lifecycle phase.
        let (q, settled) = settle(&died_in_init(false, true, Phase::StartingAndStopping));
        assert_eq!(settled.quarantined, ["crashy"]);
        assert_eq!(q.plugins["crashy"].stage, "init");
    }

    #[test]
    fn a_lost_machine_while_running_needs_no_durable_calls() {
        let mut last = died_in_init(false, false, Phase::Running);
        last.inside.clear();
        let (_, settled) = settle(&last);
        assert!(settled.quarantined.is_empty());
        assert!(!settled.durable_calls, "{settled:?}");
    }

    #[test]
    fn a_lost_machine_with_durable_calls_blames_the_call_in_progress() {
        let (q, settled) = settle(&died_in_init(false, true, Phase::Starting));
        assert_eq!(settled.quarantined, ["crashy"]);
        assert_eq!(q.plugins["crashy"].stage, "init");
        assert!(!settled.durable_calls);
    }
}
