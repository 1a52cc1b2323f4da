//! The cycle's statistics: written by the cycle thread only (relaxed stores,
//! no locked instructions), read at any time by other threads (`status`,
//! the end-of-run report). See [`super::histogram`] for the concurrency rule.

use super::counter::{Counter, CounterSource};
use super::histogram::{Histogram, Summary};
use super::rt::RtStatus;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8};
use std::sync::OnceLock;

/// How many recent missed deadlines are remembered with their cycle number.
pub const RECENT_OVERRUNS: usize = 16;

/// A plugin's place in the cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SlotState {
    /// Stepped every cycle.
    Active,
    /// Taken out after consecutive budget overruns.
    TakenOutOverrun,
    /// Taken out because a plugin it depends on was taken out.
    TakenOutDependency,
}

impl SlotState {
    fn from_u8(v: u8) -> SlotState {
        match v {
            1 => SlotState::TakenOutOverrun,
            2 => SlotState::TakenOutDependency,
            _ => SlotState::Active,
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            SlotState::Active => 0,
            SlotState::TakenOutOverrun => 1,
            SlotState::TakenOutDependency => 2,
        }
    }
}

/// Per-plugin figures.
pub struct PluginStats {
    /// Plugin name.
    pub name: String,
    /// The step budget in nanoseconds (0 = none).
    pub budget_ns: u64,
    /// Step durations, in counter ticks (see [`CycleStats::report`]).
    pub step: Histogram,
    /// Steps over budget.
    pub overruns: AtomicU64,
    /// Steps that returned an error.
    pub failures: AtomicU64,
    /// Steps not called because the plugin was reconfiguring (its
    /// `reconfigure` ran on another thread across its turn).
    pub paused_steps: AtomicU64,
    pub(crate) state: AtomicU8,
    /// The step gate (see [`super::gate`]): written by the thread that
    /// reconfigures and, to acknowledge, by the cycle thread.
    pub(crate) gate: AtomicU8,
}

impl PluginStats {
    pub(crate) fn new(name: &str, budget_ns: u64) -> PluginStats {
        PluginStats {
            name: name.to_string(),
            budget_ns,
            step: Histogram::new(),
            overruns: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            paused_steps: AtomicU64::new(0),
            state: AtomicU8::new(0),
            gate: AtomicU8::new(super::gate::OPEN),
        }
    }

    /// Where the plugin stands in the cycle.
    pub fn state(&self) -> SlotState {
        SlotState::from_u8(self.state.load(Relaxed))
    }
}

/// Everything the cycle measures.
pub struct CycleStats {
    /// The period, in nanoseconds.
    pub period_ns: u64,
    /// Cycles run.
    pub cycles: AtomicU64,
    /// Deadlines missed (a cycle that did not finish before the next one
    /// was due; with the `skip` policy each skipped period counts).
    pub overruns: AtomicU64,
    /// Wake-up latency: actual wake-up minus deadline.
    pub wakeup: Histogram,
    /// Duration of a whole cycle (all steps), in counter ticks.
    pub cycle: Histogram,
    /// Per plugin, in cycle order.
    pub plugins: Vec<PluginStats>,
    /// Log lines from `step` dropped because the ring was full.
    pub log_drops: AtomicU64,
    /// Messages from `step` dropped because the ring was full.
    pub message_drops: AtomicU64,
    /// Events (failures, warnings, overruns) dropped because the ring was full.
    pub event_drops: AtomicU64,
    recent: [AtomicU64; RECENT_OVERRUNS],
    recent_next: AtomicU64,
    /// What the real-time setup achieved (set by the cycle thread once).
    pub rt: OnceLock<RtStatus>,
    /// The timestamp counter (step and cycle durations are recorded in its
    /// ticks and converted when reported).
    pub counter: OnceLock<Counter>,
    /// True once the cycle thread has left its loop.
    pub finished: AtomicBool,
}

impl CycleStats {
    pub(crate) fn new(period_ns: u64, plugins: Vec<PluginStats>) -> CycleStats {
        CycleStats {
            period_ns,
            cycles: AtomicU64::new(0),
            overruns: AtomicU64::new(0),
            wakeup: Histogram::new(),
            cycle: Histogram::new(),
            plugins,
            log_drops: AtomicU64::new(0),
            message_drops: AtomicU64::new(0),
            event_drops: AtomicU64::new(0),
            recent: std::array::from_fn(|_| AtomicU64::new(0)),
            recent_next: AtomicU64::new(0),
            rt: OnceLock::new(),
            counter: OnceLock::new(),
            finished: AtomicBool::new(false),
        }
    }

    /// Remembers that cycle `cycle` missed its deadline (cycle thread only).
    #[inline]
    pub(crate) fn remember_overrun(&self, cycle: u64) {
        let i = self.recent_next.load(Relaxed);
        self.recent[(i % RECENT_OVERRUNS as u64) as usize].store(cycle, Relaxed);
        self.recent_next.store(i + 1, Relaxed);
    }

    /// The cycle numbers of the most recent missed deadlines, oldest first.
    pub fn recent_overruns(&self) -> Vec<u64> {
        let n = self.recent_next.load(Relaxed);
        let first = n.saturating_sub(RECENT_OVERRUNS as u64);
        (first..n)
            .map(|i| self.recent[(i % RECENT_OVERRUNS as u64) as usize].load(Relaxed))
            .collect()
    }

    /// A snapshot for `status` and `--json` (`timing`).
    pub fn report(&self) -> TimingReport {
        let counter = self.counter.get().copied();
        let (source, cost) = counter.map_or((CounterSource::Monotonic, 0), |c| {
            (c.source(), c.read_cost_ns())
        });
        let to_ns = |ticks: u64| counter.map_or(ticks, |c| c.to_ns(ticks));
        TimingReport {
            cycles: self.cycles.load(Relaxed),
            period_ns: self.period_ns,
            overruns: self.overruns.load(Relaxed),
            recent_overruns: self.recent_overruns(),
            wakeup_latency_ns: self.wakeup.summary(),
            cycle_ns: self.cycle.summary_scaled(to_ns),
            plugins: self
                .plugins
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        PluginTiming {
                            step_ns: p.step.summary_scaled(to_ns),
                            overruns: p.overruns.load(Relaxed),
                            failures: p.failures.load(Relaxed),
                            paused_steps: p.paused_steps.load(Relaxed),
                            budget_ns: (p.budget_ns > 0).then_some(p.budget_ns),
                            state: p.state(),
                        },
                    )
                })
                .collect(),
            drops: Drops {
                log: self.log_drops.load(Relaxed),
                message: self.message_drops.load(Relaxed),
                event: self.event_drops.load(Relaxed),
            },
            rt: self.rt.get().cloned().unwrap_or_default(),
            timestamps: Timestamps {
                source,
                read_cost_ns: cost,
            },
        }
    }
}

/// The `timing` object of `status` and `boot --cycles N --json`.
#[derive(Debug, Clone, Serialize)]
pub struct TimingReport {
    /// Cycles run.
    pub cycles: u64,
    /// Period in nanoseconds.
    pub period_ns: u64,
    /// Missed deadlines.
    pub overruns: u64,
    /// Cycle numbers of the most recent missed deadlines.
    pub recent_overruns: Vec<u64>,
    /// Actual wake-up minus deadline.
    pub wakeup_latency_ns: Summary,
    /// Whole-cycle duration.
    pub cycle_ns: Summary,
    /// Per plugin.
    pub plugins: BTreeMap<String, PluginTiming>,
    /// Records dropped because a ring was full.
    pub drops: Drops,
    /// Real-time settings in force.
    pub rt: RtStatus,
    /// How step durations are timestamped.
    pub timestamps: Timestamps,
}

/// One plugin's timing.
#[derive(Debug, Clone, Serialize)]
pub struct PluginTiming {
    /// Step durations.
    pub step_ns: Summary,
    /// Steps over budget.
    pub overruns: u64,
    /// Steps that returned an error.
    pub failures: u64,
    /// Steps not called while the plugin reconfigured.
    pub paused_steps: u64,
    /// The budget, if one is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_ns: Option<u64>,
    /// Active or taken out.
    pub state: SlotState,
}

/// Dropped records.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Drops {
    /// Log lines.
    pub log: u64,
    /// Messages.
    pub message: u64,
    /// Events.
    pub event: u64,
}

/// The timestamp source.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Timestamps {
    /// `tsc`, `cntvct` or `monotonic`.
    pub source: CounterSource,
    /// Cost of one reading in nanoseconds.
    pub read_cost_ns: u64,
}

impl std::fmt::Display for TimingReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "cycle: {} cycles of {}, {} missed deadline(s){}; {}",
            self.cycles,
            super::histogram::ns(self.period_ns),
            self.overruns,
            if self.recent_overruns.is_empty() {
                String::new()
            } else {
                format!(" (recent: cycles {:?})", self.recent_overruns)
            },
            self.rt
        )?;
        writeln!(f, "  wake-up latency: {}", self.wakeup_latency_ns)?;
        writeln!(f, "  cycle duration:  {}", self.cycle_ns)?;
        for (name, p) in &self.plugins {
            write!(f, "  {name:<20} step {}", p.step_ns)?;
            if let Some(b) = p.budget_ns {
                write!(
                    f,
                    ", budget {}, {} over",
                    super::histogram::ns(b),
                    p.overruns
                )?;
            }
            if p.failures > 0 {
                write!(f, ", {} failed step(s)", p.failures)?;
            }
            if p.state != SlotState::Active {
                write!(
                    f,
                    ", {}",
                    serde_json::to_string(&p.state)
                        .unwrap_or_default()
                        .trim_matches('"')
                )?;
            }
            writeln!(f)?;
        }
        let d = &self.drops;
        if d.log + d.message + d.event > 0 {
            writeln!(
                f,
                "  dropped from step: {} log line(s), {} message(s), {} event(s)",
                d.log, d.message, d.event
            )?;
        }
        Ok(())
    }
}
