//! The real-time cycle: controller plugins' `step`, called on a dedicated
//! thread at a fixed period against absolute deadlines, with nothing on the
//! cycle path that allocates, locks or blocks.
//!
//! # Threads
//!
//! * **cycle** — `SCHED_FIFO` at the configured priority (normal scheduling
//!   when the priority is 0 or the privilege is missing), optionally pinned,
//!   its stack pre-faulted, memory locked. Each cycle: sleep until the
//!   absolute deadline (`clock_nanosleep(TIMER_ABSTIME)`), read the clock,
//!   step every active plugin in load order, timestamp each step with the CPU
//!   counter, record histograms (relaxed stores), check budgets. Everything
//!   it touches was allocated before the first cycle.
//! * **service** — normal priority. Drains the cycle's rings: log lines and
//!   messages published from `step` (delivered to subscribers here, so
//!   message callbacks for them run on this thread), and events (failed
//!   steps, budget warnings, missed deadlines, plugins taken out), which it
//!   logs and forwards as [`CycleNotice`]s.
//!
//! Between the two only fixed-capacity wait-free SPSC rings (`rtrb`) and
//! single-writer atomics ([`stats`]); a full ring drops and counts.
//!
//! # Budgets
//!
//! A plugin may have a step budget (manifest `cycle_budget_us`, or the host
//! default). A step using at least `budget_warn_percent` of it logs a
//! (throttled) warning; `overrun_limit` consecutive steps over budget take
//! the plugin out of the cycle, and with it every plugin in the cycle that
//! depends on it; unrelated plugins keep their cycle. The owner of the
//! [`Cycle`] receives a [`CycleNotice::TakenOut`] and stops those plugins
//! (their `step` is never called again, so stopping them on another thread
//! cannot race with it).
//!
//! # Reconfiguring a stepping plugin
//!
//! [`gate`]: another thread asks for a gap after the plugin's current step;
//! the cycle acknowledges after that step and skips the plugin's turns until
//! the gap is over. The cycle itself never waits.

pub mod clock;
pub mod counter;
pub mod gate;
pub mod histogram;
pub mod outbox;
pub mod rt;
pub mod stats;

mod executor;
mod service;

pub use executor::{
    Cycle, CycleHooks, CycleNotice, CyclePlugin, CycleSettings, OverrunPolicy, StepFn,
};
pub use stats::{CycleStats, TimingReport};
