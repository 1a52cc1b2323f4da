//! The supervisor: a thread that times every call into a plugin, from the
//! journal's slots. A lifecycle call (init, start, stop, destroy,
//! reconfigure) running longer than its timeout, or a cycle thread that has
//! not finished a cycle for `step_timeout` while inside a plugin's `step`,
//! is a hang: the supervisor records it in the journal (the next boot
//! quarantines that plugin), logs it naming the plugin and the stage, and
//! asks its owner for a safe stop. A hung call cannot be cancelled; the
//! safe stop stops the other plugins and exits with [`EXIT_HANG`]. If the
//! owner cannot act (the hang is on the main thread itself) or does not
//! finish within [`SAFE_STOP_GRACE`], the supervisor ends the process with
//! that status.
//!
//! The supervisor runs above the cycle's priority when the cycle is
//! real-time, and off the cycle's CPU when the cycle is pinned, so a
//! runaway step cannot starve it.

use crate::cycle::CycleStats;
use crate::journal::{self, FaultKind, Role};
use crate::stage::Stage;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Exit status of a safe stop after a hang (for systemd: `Restart=on-failure`
/// restarts, and the next boot quarantines the plugin).
pub const EXIT_HANG: i32 = 4;
/// How long the owner may take for the safe stop before the supervisor ends
/// the process itself.
pub const SAFE_STOP_GRACE: Duration = Duration::from_secs(10);
/// Stack of the supervisor thread.
pub const STACK_SIZE: usize = 128 * 1024;

/// The timeouts.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// `init` (and loading the library).
    pub init: Duration,
    /// `start`.
    pub start: Duration,
    /// `stop`.
    pub stop: Duration,
    /// `destroy`.
    pub destroy: Duration,
    /// `reconfigure`.
    pub reconfigure: Duration,
    /// A message callback on a host thread.
    pub message: Duration,
    /// The cycle not advancing while inside `step`.
    pub step: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            init: Duration::from_secs(30),
            start: Duration::from_secs(30),
            stop: Duration::from_secs(10),
            destroy: Duration::from_secs(10),
            reconfigure: Duration::from_secs(10),
            message: Duration::from_secs(10),
            step: Duration::from_millis(500),
        }
    }
}

impl Timeouts {
    fn of(&self, stage: Stage) -> Duration {
        match stage {
            Stage::Load | Stage::Init => self.init,
            Stage::Start | Stage::Render => self.start,
            Stage::Stop => self.stop,
            Stage::Destroy => self.destroy,
            Stage::Reconfigure => self.reconfigure,
            Stage::Message => self.message,
            Stage::Step | Stage::Idle => self.step,
        }
    }
}

/// A hang found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hang {
    /// The plugin.
    pub plugin: String,
    /// The call that did not return.
    pub stage: Stage,
    /// How long it had run when found.
    pub elapsed: Duration,
    /// Which host thread is stuck.
    pub thread: &'static str,
}

impl std::fmt::Display for Hang {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "plugin \"{}\" did not return from {} for {:.1} s (on the {} thread): hung; the controller stops safely and quarantines it at the next boot",
            self.plugin,
            self.stage,
            self.elapsed.as_secs_f64(),
            self.thread
        )
    }
}

/// The running supervisor.
pub struct Supervisor {
    /// Dropped to stop: the watcher's wait ends at once (a flag it looked
    /// at between sleeps made every stop wait up to a poll interval).
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    hangs: crossbeam_channel::Receiver<Hang>,
}

/// Who the plugins are, by journal index: the boot appends each plugin
/// before it is loaded (checks and loads overlap, so the list grows while
/// the supervisor runs). Read only when a call has overrun.
pub type Names = Arc<std::sync::Mutex<Vec<String>>>;

impl Supervisor {
    /// Starts watching the journal's slots. `cycle` is the cycle's
    /// statistics (its cycle counter), when a cycle runs; `rt` is
    /// `(priority, pinned cpu)` of the cycle, to place the supervisor above
    /// and beside it.
    ///
    /// # Errors
    /// The system's error if the thread cannot start.
    pub fn start(
        timeouts: Timeouts,
        names: Names,
        cycle: Arc<std::sync::OnceLock<Arc<CycleStats>>>,
        rt: (u8, Option<usize>),
    ) -> std::io::Result<Supervisor> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let (tx, hangs) = crossbeam_channel::bounded(4);
        let thread = std::thread::Builder::new()
            .name("xplugin-supervisor".into())
            .stack_size(STACK_SIZE)
            .spawn(move || {
                place(rt);
                watch(&timeouts, &names, &cycle, &stopped, &tx);
            })?;
        Ok(Supervisor {
            stop: Some(stop),
            thread: Some(thread),
            hangs,
        })
    }

    /// Hangs found (at most one is reported per call; the owner stops).
    pub fn hangs(&self) -> &crossbeam_channel::Receiver<Hang> {
        &self.hangs
    }

    /// Stops watching.
    pub fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Above the cycle's priority, off its CPU.
fn place(rt: (u8, Option<usize>)) {
    let (priority, cpu) = rt;
    if priority > 0 {
        if let Err(e) = crate::cycle::rt::set_fifo(priority.saturating_add(1).min(99)) {
            // The cycle thread says once what is missing; this is the same.
            log::debug!("supervisor: {e}");
        }
    }
    #[cfg(not(unix))]
    if let Some(cpu) = cpu {
        log::debug!("supervisor: not kept off CPU {cpu} (no CPU affinity on this platform)");
    }
    #[cfg(unix)]
    if let Some(cpu) = cpu {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        if n > 1 {
            // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET stays in
            // range (i < n <= CPU_SETSIZE for any machine we run on).
            unsafe {
                let mut set: nix::libc::cpu_set_t = std::mem::zeroed();
                for i in (0..n.min(nix::libc::CPU_SETSIZE as usize)).filter(|&i| i != cpu) {
                    nix::libc::CPU_SET(i, &mut set);
                }
                nix::libc::sched_setaffinity(0, std::mem::size_of::<nix::libc::cpu_set_t>(), &set);
            }
        }
    }
}

fn watch(
    timeouts: &Timeouts,
    names: &std::sync::Mutex<Vec<String>>,
    cycle_slot: &std::sync::OnceLock<Arc<CycleStats>>,
    stop: &crossbeam_channel::Receiver<()>,
    hangs: &crossbeam_channel::Sender<Hang>,
) {
    let poll = (timeouts.step / 5).clamp(Duration::from_millis(5), Duration::from_millis(100));
    let mut last_cycles: Option<u64> = None;
    let mut cycles_changed = Instant::now();
    // Nothing is ever sent: the wait ends by timeout (look again) or by
    // the sender's drop (stop).
    while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = stop.recv_timeout(poll) {
        let cycle = cycle_slot.get().map(|c| &**c);
        let Some(j) = journal::get() else { continue };
        let now = crate::cycle::clock::monotonic_ns();
        let name = |i: u32| {
            names
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(i as usize)
                .cloned()
                .unwrap_or_else(|| format!("#{i}"))
        };
        let mut found: Option<(Role, Hang)> = None;
        for role in [Role::Main, Role::Service, Role::Admin] {
            let (active, plugin, stage, since, _, _) = j.read_slot(role);
            let Some(stage) = stage.filter(|_| active) else {
                continue;
            };
            let elapsed = Duration::from_nanos(now.saturating_sub(since));
            if since > 0 && elapsed > timeouts.of(stage) {
                found = Some((
                    role,
                    Hang {
                        plugin: name(plugin),
                        stage,
                        elapsed,
                        thread: thread_name(role),
                    },
                ));
                break;
            }
        }
        if let (None, Some(stats)) = (&found, cycle) {
            let n = stats.cycles.load(Ordering::Relaxed);
            if Some(n) != last_cycles || stats.finished.load(Ordering::Acquire) {
                last_cycles = Some(n);
                cycles_changed = Instant::now();
            } else if cycles_changed.elapsed() > timeouts.step {
                let (active, plugin, stage, ..) = j.read_slot(Role::Cycle);
                if active && stage == Some(Stage::Step) {
                    found = Some((
                        Role::Cycle,
                        Hang {
                            plugin: name(plugin),
                            stage: Stage::Step,
                            elapsed: cycles_changed.elapsed(),
                            thread: "cycle",
                        },
                    ));
                }
            }
        }
        let Some((role, hang)) = found else { continue };
        j.record_fault(
            FaultKind::Hang,
            0,
            Some(role),
            None,
            0,
            0,
            hang.elapsed.as_nanos() as u64,
        );
        j.sync();
        log::error!("{hang}");
        if role == Role::Main {
            // The owner is the hung thread: nobody else can stop safely.
            log::error!("safe stop: the main thread is hung, exiting with status {EXIT_HANG}");
            // At once, running nothing that could call into the hung plugin.
            crate::os::exit_now(EXIT_HANG);
        }
        let _ = hangs.try_send(hang);
        // The owner stops the others and exits; if it cannot, we do.
        let deadline = Instant::now() + SAFE_STOP_GRACE;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        log::error!(
            "safe stop did not finish within {} s: exiting with status {EXIT_HANG}",
            SAFE_STOP_GRACE.as_secs()
        );
        // At once (no destructors, no atexit that could call into the hung
        // plugin).
        crate::os::exit_now(EXIT_HANG);
    }
}

fn thread_name(role: Role) -> &'static str {
    match role {
        Role::Main => "main",
        Role::Cycle => "cycle",
        Role::Service => "service",
        Role::Admin => "admin",
    }
}
