//! The cycle thread and the handle that owns it.

use super::clock::{self, monotonic_ns};
use super::counter::Counter;
use super::gate;
use super::outbox::{self, LogRecord, MessageRecord, LOG_RING, MESSAGE_RING};
use super::service::{self, ServiceContext};
use super::stats::{CycleStats, PluginStats, SlotState, TimingReport};
use crate::services::Bus;
use serde::Serialize;
use std::ffi::c_void;
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use xplugin_abi::{Status, XPLUGIN_OK};

/// A plugin's cyclic hook (`xplugin_descriptor.step`).
pub type StepFn = unsafe extern "C" fn(*mut c_void, u64, u64) -> Status;

/// What to do when a cycle ends after the next deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverrunPolicy {
    /// Jump to the next whole period; every skipped period counts as missed.
    #[default]
    Skip,
    /// Run the next cycle at once, keeping the original deadlines, until the
    /// cycle has caught up.
    CatchUp,
}

/// How the cycle runs.
#[derive(Debug, Clone)]
pub struct CycleSettings {
    /// Period in nanoseconds.
    pub period_ns: u64,
    /// SCHED_FIFO priority (1..=99); 0 = normal scheduling.
    pub rt_priority: u8,
    /// Pin the cycle thread to this CPU.
    pub cpu: Option<usize>,
    /// Missed-deadline policy.
    pub policy: OverrunPolicy,
    /// Stop after this many cycles (`boot --cycles N`); `None` = until
    /// [`Cycle::request_stop`].
    pub cycles: Option<u64>,
    /// Stack size of the cycle thread in bytes (pre-faulted, minus a margin).
    pub stack_size: usize,
    /// Consecutive steps over budget that take a plugin out of the cycle.
    pub overrun_limit: u32,
    /// Percentage of the budget at which a step logs a warning.
    pub budget_warn_percent: u64,
    /// Outcome of the process-wide memory lock ([`super::rt::lock_memory`]),
    /// reported with the real-time status.
    pub memory_locked: Result<(), String>,
}

impl Default for CycleSettings {
    fn default() -> Self {
        CycleSettings {
            period_ns: 1_000_000,
            rt_priority: 0,
            cpu: None,
            policy: OverrunPolicy::Skip,
            cycles: None,
            stack_size: 512 * 1024,
            overrun_limit: 3,
            budget_warn_percent: 80,
            memory_locked: Err("memory locking was not requested".into()),
        }
    }
}

/// One plugin in the cycle.
pub struct CyclePlugin {
    /// Its index in the journal (the lifecycle's load order).
    pub journal_index: u32,
    /// Plugin name.
    pub name: String,
    /// Its step function.
    pub step: StepFn,
    /// Its instance, as `init` returned it.
    pub instance: *mut c_void,
    /// Step budget in nanoseconds (0 = none).
    pub budget_ns: u64,
    /// Positions (in the list given to [`Cycle::spawn`]) of the plugins it
    /// depends on directly.
    pub depends_on: Vec<usize>,
}

/// Test and tooling hooks, run on the cycle thread outside the measured
/// path: `on_start` after the real-time setup, just before the first cycle;
/// `on_exit` after the last cycle. They are called through `&mut` (not
/// consumed), so calling one frees nothing on the cycle thread: a hook that
/// arms an allocation counter sees only the cycle's own allocations.
#[derive(Default)]
pub struct CycleHooks {
    /// Runs before the first cycle.
    pub on_start: Option<Box<dyn FnMut() + Send>>,
    /// Runs after the last cycle.
    pub on_exit: Option<Box<dyn FnMut() + Send>>,
}

/// What the cycle tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CycleNotice {
    /// A plugin exceeded its budget `consecutive` times in a row and was
    /// taken out of the cycle with its dependents. The owner stops them.
    TakenOut {
        /// The plugin.
        plugin: String,
        /// Plugins taken out with it because they depend on it.
        dependents: Vec<String>,
        /// Cycle in which it happened.
        cycle: u64,
        /// Its budget, ns.
        budget_ns: u64,
        /// Its last step, ns.
        last_ns: u64,
        /// Its longest step, ns.
        max_ns: u64,
        /// Consecutive steps over budget.
        consecutive: u32,
    },
}

impl std::fmt::Display for CycleNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use super::histogram::ns;
        match self {
            CycleNotice::TakenOut {
                plugin,
                dependents,
                cycle,
                budget_ns,
                last_ns,
                max_ns,
                consecutive,
            } => {
                write!(
                    f,
                    "plugin \"{plugin}\" taken out of the cycle at cycle {cycle}: {consecutive} consecutive steps over its budget of {} (last {}, longest {})",
                    ns(*budget_ns),
                    ns(*last_ns),
                    ns(*max_ns)
                )?;
                if !dependents.is_empty() {
                    write!(f, "; taken out with it: {}", dependents.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

/// An event from the cycle thread to the service thread. Fixed size, `Copy`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CycleEvent {
    StepFailed {
        slot: u16,
        status: Status,
        cycle: u64,
        suppressed: u64,
    },
    BudgetWarning {
        slot: u16,
        step_ns: u64,
        cycle: u64,
        suppressed: u64,
    },
    Overrun {
        cycle: u64,
        missed: u64,
        late_ns: u64,
        suppressed: u64,
    },
    TakenOut {
        slot: u16,
        cycle: u64,
        last_ns: u64,
        consecutive: u32,
    },
}

/// Capacity of the event ring.
const EVENT_RING: usize = 256;
/// Throttle interval for repeated events of one kind per plugin.
const REPORT_INTERVAL_NS: u64 = 1_000_000_000;

/// The running cycle. Dropping it stops and joins the threads.
pub struct Cycle {
    cycle_thread: Option<JoinHandle<()>>,
    service_thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    stats: Arc<CycleStats>,
    notices: crossbeam_channel::Receiver<CycleNotice>,
}

/// A step function and instance moved to the cycle thread.
struct Slot {
    journal_index: u32,
    step: StepFn,
    instance: *mut c_void,
    /// The budget in counter ticks (0 = none), so the cycle compares ticks.
    budget_ticks: u64,
    /// The warning threshold (a share of the budget), in ticks.
    warn_ticks: u64,
    dependents: Box<[u16]>,
    active: bool,
    consecutive: u32,
    last_fail_report: u64,
    fail_suppressed: u64,
    last_warn_report: u64,
    warn_suppressed: u64,
}

struct CycleThread {
    settings: CycleSettings,
    slots: Vec<Slot>,
    stats: Arc<CycleStats>,
    stop: Arc<AtomicBool>,
    counter: Counter,
    /// The producers the host's `log`/`publish` use from `step`; moved into
    /// the thread-local outbox when the thread starts.
    outbox: Option<(rtrb::Producer<LogRecord>, rtrb::Producer<MessageRecord>)>,
    events: rtrb::Producer<CycleEvent>,
    hooks: CycleHooks,
}

// SAFETY: the raw instance pointers are only used on the cycle thread, and
// `Cycle::spawn`'s contract makes them valid and exclusively the cycle's
// (for `step`) until the thread is joined.
unsafe impl Send for CycleThread {}

/// Transitive dependents of each position.
fn dependents(plugins: &[CyclePlugin]) -> Vec<Box<[u16]>> {
    (0..plugins.len())
        .map(|i| {
            let mut out: Vec<u16> = Vec::new();
            let mut changed = true;
            let mut set = vec![false; plugins.len()];
            set[i] = true;
            // Fixed point: a plugin depends on i if any of its deps is in the set.
            while changed {
                changed = false;
                for (j, p) in plugins.iter().enumerate() {
                    if !set[j] && p.depends_on.iter().any(|&d| d < set.len() && set[d]) {
                        set[j] = true;
                        changed = true;
                        out.push(j as u16);
                    }
                }
            }
            out.sort_unstable();
            out.into_boxed_slice()
        })
        .collect()
}

impl Cycle {
    /// Starts the cycle and service threads.
    ///
    /// # Safety
    /// Every `instance` must be a live instance of the plugin whose `step` it
    /// is given with, and must stay valid until [`Cycle::join`] returns (or
    /// the `Cycle` is dropped). Nothing else may call that plugin's `step`
    /// meanwhile; its `stop`/`destroy` may be called only after it was taken
    /// out ([`CycleNotice::TakenOut`]) or after the join.
    ///
    /// # Errors
    /// The operating system's error if a thread cannot be started.
    pub unsafe fn spawn(
        settings: CycleSettings,
        plugins: Vec<CyclePlugin>,
        bus: Arc<Bus>,
        hooks: CycleHooks,
    ) -> std::io::Result<Cycle> {
        let deps = dependents(&plugins);
        let stats = Arc::new(CycleStats::new(
            settings.period_ns,
            plugins
                .iter()
                .map(|p| PluginStats::new(&p.name, p.budget_ns))
                .collect(),
        ));
        let names: Vec<String> = plugins.iter().map(|p| p.name.clone()).collect();
        let counter = Counter::calibrate();
        let slots: Vec<Slot> = plugins
            .into_iter()
            .zip(deps)
            .map(|(p, dependents)| Slot {
                journal_index: p.journal_index,
                step: p.step,
                instance: p.instance,
                budget_ticks: counter.from_ns(p.budget_ns),
                warn_ticks: counter
                    .from_ns(p.budget_ns.saturating_mul(settings.budget_warn_percent) / 100),
                dependents,
                active: true,
                consecutive: 0,
                last_fail_report: 0,
                fail_suppressed: 0,
                last_warn_report: 0,
                warn_suppressed: 0,
            })
            .collect();
        let (logs, log_rx) = rtrb::RingBuffer::new(LOG_RING);
        let (messages, msg_rx) = rtrb::RingBuffer::new(MESSAGE_RING);
        let (events, event_rx) = rtrb::RingBuffer::new(EVENT_RING);
        let (notice_tx, notices) = crossbeam_channel::bounded(64);
        let stop = Arc::new(AtomicBool::new(false));
        let _ = stats.counter.set(counter);
        let stack_size = settings.stack_size;
        let ctx = CycleThread {
            settings,
            slots,
            stats: stats.clone(),
            stop: stop.clone(),
            counter,
            outbox: Some((logs, messages)),
            events,
            hooks,
        };
        let cycle_thread = std::thread::Builder::new()
            .name("xplugin-cycle".into())
            .stack_size(stack_size)
            .spawn(move || ctx.run())?;
        let service = ServiceContext {
            stats: stats.clone(),
            names,
            logs: log_rx,
            messages: msg_rx,
            events: event_rx,
            notices: notice_tx,
            bus,
        };
        let service_thread = std::thread::Builder::new()
            .name("xplugin-service".into())
            .stack_size(service::STACK_SIZE)
            .spawn(move || service.run());
        let service_thread = match service_thread {
            Ok(t) => t,
            Err(e) => {
                stop.store(true, Ordering::SeqCst);
                let _ = cycle_thread.join();
                return Err(e);
            }
        };
        Ok(Cycle {
            cycle_thread: Some(cycle_thread),
            service_thread: Some(service_thread),
            stop,
            stats,
            notices,
        })
    }

    /// The live statistics.
    pub fn stats(&self) -> &Arc<CycleStats> {
        &self.stats
    }

    /// Notices from the cycle (plugins taken out). Poll it; the channel is
    /// bounded and a full channel drops notices (they are also logged).
    pub fn notices(&self) -> &crossbeam_channel::Receiver<CycleNotice> {
        &self.notices
    }

    /// Closes the step gate of `plugin` ([`super::gate`]): returns once its
    /// step is not running and will not run until the guard is dropped;
    /// `Ok(None)` when the plugin is not in this cycle (nothing steps it).
    ///
    /// # Errors
    /// [`gate::StepDidNotReturn`] when the cycle did not acknowledge within
    /// `timeout`; the gate is open again.
    pub fn close_gate(
        &self,
        plugin: &str,
        timeout: std::time::Duration,
    ) -> Result<Option<gate::GateGuard<'_>>, gate::StepDidNotReturn> {
        let Some(p) = self.stats.plugins.iter().find(|p| p.name == plugin) else {
            return Ok(None);
        };
        gate::close(&p.gate, &self.stats.finished, self.stats.period_ns, timeout)
            .map(Some)
            .ok_or(gate::StepDidNotReturn)
    }

    /// Asks the cycle to stop after the current cycle.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// True once the cycle thread left its loop (cycle limit reached or
    /// stop requested).
    pub fn is_finished(&self) -> bool {
        self.stats.finished.load(Ordering::Acquire)
    }

    /// Stops the cycle (if it has not finished), waits for both threads and
    /// returns the final timing.
    pub fn join(mut self) -> TimingReport {
        self.shutdown();
        self.stats.report()
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.cycle_thread.take() {
            if t.join().is_err() {
                log::error!("the cycle thread panicked");
                // The service thread waits for `finished`: set it.
                self.stats.finished.store(true, Release);
            }
        }
        if let Some(t) = self.service_thread.take() {
            if t.join().is_err() {
                log::error!("the cycle's service thread panicked");
            }
        }
    }
}

impl Drop for Cycle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl CycleThread {
    fn run(mut self) {
        let s = &self.settings;
        // Leave some stack for the frames above the pre-faulted region.
        let prefault = s.stack_size.saturating_sub(64 * 1024);
        let rt = super::rt::setup_cycle_thread(s.rt_priority, s.cpu, prefault, &s.memory_locked);
        if !rt.degraded.is_empty() {
            // Once, before the first cycle (not on the cycle path).
            log::warn!("cycle thread: {rt}");
        } else {
            log::info!("cycle thread: {rt}");
        }
        let _ = self.stats.rt.set(rt);
        if let Some((logs, messages)) = self.outbox.take() {
            outbox::install(outbox::Outbox {
                logs,
                messages,
                stats: self.stats.clone(),
            });
        }
        if let Some(f) = self.hooks.on_start.as_mut() {
            f();
        }
        self.cycles();
        if let Some(f) = self.hooks.on_exit.as_mut() {
            f();
        }
        outbox::uninstall();
        self.stats.finished.store(true, Release);
    }

    /// The cycle path: from here to the end of the loop nothing allocates,
    /// locks or makes a system call other than reading the clock and
    /// sleeping.
    fn cycles(&mut self) {
        let period = self.settings.period_ns.max(1);
        let limit = self.settings.cycles.unwrap_or(u64::MAX);
        // A clone of the Arc, so `self` stays free for the helpers below.
        let stats_arc = self.stats.clone();
        let stats = &*stats_arc;
        let counter = self.counter;
        // Which plugin the cycle thread is in, for the supervisor and the
        // crash record: three relaxed stores per step into the journal's
        // mapped page, no system call.
        let journal = crate::journal::get();
        if let Some(j) = journal {
            j.register_thread(crate::journal::Role::Cycle);
        }
        let mut deadline = monotonic_ns() + period;
        let mut cycle = 0u64;
        let mut last_overrun_report = 0u64;
        let mut overrun_suppressed = 0u64;
        while cycle < limit && !self.stop.load(Relaxed) {
            clock::sleep_until(deadline);
            let now = monotonic_ns();
            stats.wakeup.record(now.saturating_sub(deadline));
            let start = counter.read();
            let mut t = start;
            for i in 0..self.slots.len() {
                // A stop requested mid-cycle (a safe stop after a hang) steps
                // nobody any more: the others may be stopped at once.
                let gate = &stats.plugins[i].gate;
                if !self.slots[i].active || self.stop.load(Relaxed) {
                    gate::after_turn(gate);
                    continue;
                }
                if !gate::may_step(gate) {
                    // Another thread is in this instance (`reconfigure`).
                    let p = &stats.plugins[i].paused_steps;
                    p.store(p.load(Relaxed) + 1, Relaxed);
                    continue;
                }
                outbox::set_current(i as u16);
                let slot = &self.slots[i];
                if let Some(j) = journal {
                    j.enter(
                        crate::journal::Role::Cycle,
                        slot.journal_index,
                        crate::stage::Stage::Step,
                        cycle,
                    );
                }
                // SAFETY: the instance is live and only this thread calls its
                // step (the contract of `Cycle::spawn`).
                let status = unsafe { (slot.step)(slot.instance, cycle, now) };
                if let Some(j) = journal {
                    j.leave(crate::journal::Role::Cycle);
                }
                // Durations stay in counter ticks on the cycle path (the
                // report converts); budgets were converted to ticks.
                let t2 = counter.read();
                let step_ticks = t2.wrapping_sub(t);
                t = t2;
                stats.plugins[i].step.record(step_ticks);
                if status != XPLUGIN_OK {
                    self.step_failed(i, status, cycle, now);
                }
                if self.slots[i].budget_ticks != 0 {
                    self.check_budget(i, step_ticks, cycle, now);
                }
                gate::after_turn(&stats.plugins[i].gate);
            }
            let busy_ticks = t.wrapping_sub(start);
            stats.cycle.record(busy_ticks);
            let busy_ns = counter.to_ns(busy_ticks);
            cycle += 1;
            stats.cycles.store(cycle, Relaxed);
            deadline += period;
            let end = now + busy_ns;
            if end > deadline {
                let missed = match self.settings.policy {
                    OverrunPolicy::Skip => {
                        let missed = (end - deadline) / period + 1;
                        deadline += missed * period;
                        missed
                    }
                    OverrunPolicy::CatchUp => 1,
                };
                stats
                    .overruns
                    .store(stats.overruns.load(Relaxed) + missed, Relaxed);
                stats.remember_overrun(cycle - 1);
                if now.saturating_sub(last_overrun_report) >= REPORT_INTERVAL_NS {
                    self.event(CycleEvent::Overrun {
                        cycle: cycle - 1,
                        missed,
                        late_ns: end - (deadline - missed * period),
                        suppressed: overrun_suppressed,
                    });
                    last_overrun_report = now;
                    overrun_suppressed = 0;
                } else {
                    overrun_suppressed += 1;
                }
            }
        }
    }

    #[inline]
    fn event(&mut self, e: CycleEvent) {
        if self.events.push(e).is_err() {
            let d = &self.stats.event_drops;
            d.store(d.load(Relaxed) + 1, Relaxed);
        }
    }

    fn step_failed(&mut self, i: usize, status: Status, cycle: u64, now: u64) {
        let f = &self.stats.plugins[i].failures;
        f.store(f.load(Relaxed) + 1, Relaxed);
        let slot = &mut self.slots[i];
        if now.saturating_sub(slot.last_fail_report) >= REPORT_INTERVAL_NS {
            let suppressed = slot.fail_suppressed;
            slot.last_fail_report = now;
            slot.fail_suppressed = 0;
            self.event(CycleEvent::StepFailed {
                slot: i as u16,
                status,
                cycle,
                suppressed,
            });
        } else {
            slot.fail_suppressed += 1;
        }
    }

    #[inline]
    fn check_budget(&mut self, i: usize, step_ticks: u64, cycle: u64, now: u64) {
        let (budget, warn) = (self.slots[i].budget_ticks, self.slots[i].warn_ticks);
        if step_ticks > budget {
            let o = &self.stats.plugins[i].overruns;
            o.store(o.load(Relaxed) + 1, Relaxed);
            self.slots[i].consecutive += 1;
            if self.slots[i].consecutive >= self.settings.overrun_limit.max(1) {
                let last_ns = self.counter.to_ns(step_ticks);
                self.take_out(i, cycle, last_ns);
            }
            return;
        }
        self.slots[i].consecutive = 0;
        if step_ticks >= warn {
            let step_ns = self.counter.to_ns(step_ticks);
            let slot = &mut self.slots[i];
            if now.saturating_sub(slot.last_warn_report) >= REPORT_INTERVAL_NS {
                let suppressed = slot.warn_suppressed;
                slot.last_warn_report = now;
                slot.warn_suppressed = 0;
                self.event(CycleEvent::BudgetWarning {
                    slot: i as u16,
                    step_ns,
                    cycle,
                    suppressed,
                });
            } else {
                slot.warn_suppressed += 1;
            }
        }
    }

    fn take_out(&mut self, i: usize, cycle: u64, last_ns: u64) {
        let consecutive = self.slots[i].consecutive;
        self.slots[i].active = false;
        self.stats.plugins[i]
            .state
            .store(SlotState::TakenOutOverrun.to_u8(), Relaxed);
        for k in 0..self.slots[i].dependents.len() {
            let d = self.slots[i].dependents[k] as usize;
            if self.slots[d].active {
                self.slots[d].active = false;
                self.stats.plugins[d]
                    .state
                    .store(SlotState::TakenOutDependency.to_u8(), Relaxed);
            }
        }
        self.event(CycleEvent::TakenOut {
            slot: i as u16,
            cycle,
            last_ns,
            consecutive,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" fn noop(_: *mut c_void, _: u64, _: u64) -> Status {
        XPLUGIN_OK
    }

    fn plugin(name: &str, deps: &[usize]) -> CyclePlugin {
        CyclePlugin {
            journal_index: 0,
            name: name.into(),
            step: noop,
            instance: std::ptr::null_mut(),
            budget_ns: 0,
            depends_on: deps.to_vec(),
        }
    }

    #[test]
    fn dependents_are_transitive() {
        // c depends on b, b on a; d alone.
        let p = vec![
            plugin("a", &[]),
            plugin("b", &[0]),
            plugin("c", &[1]),
            plugin("d", &[]),
        ];
        let d = dependents(&p);
        assert_eq!(&*d[0], &[1, 2]);
        assert_eq!(&*d[1], &[2]);
        assert!(d[2].is_empty() && d[3].is_empty());
    }
}
