//! The step gate: how another thread gets a gap in one plugin's steps to
//! call into the same instance (`reconfigure`) without ever running at the
//! same time as its `step`, and without the cycle waiting for it.
//!
//! One `AtomicU8` per plugin, three states:
//!
//! * [`OPEN`]: the cycle steps the plugin.
//! * [`REQUESTED`]: the reconfiguring thread wants a gap. The cycle keeps
//!   stepping; right after the plugin's next step returns (or at its next
//!   turn if the cycle does not step it: taken out, stopping) it moves the
//!   gate to [`CLOSED`] with a release store — its step's writes
//!   happen-before the other thread's acquire load of `CLOSED`.
//! * [`CLOSED`]: the cycle skips the plugin's turn (and counts it in
//!   `paused_steps`) until the other thread stores [`OPEN`] (release), which
//!   the cycle's acquire load at the next turn sees with everything the
//!   reconfiguring call wrote.
//!
//! The cycle side is two loads and at most one compare-exchange per plugin
//! per cycle: no lock, no wait. A `reconfigure` quicker than the time to the
//! plugin's next turn costs it no step at all.

use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::time::{Duration, Instant};

/// The cycle steps the plugin.
pub(crate) const OPEN: u8 = 0;
/// A gap is wanted after the running or next step.
pub(crate) const REQUESTED: u8 = 1;
/// The plugin's turns are skipped.
pub(crate) const CLOSED: u8 = 2;

/// Cycle thread, before a plugin's turn: false while the gate is closed.
#[inline]
pub(crate) fn may_step(gate: &AtomicU8) -> bool {
    gate.load(Acquire) != CLOSED
}

/// Cycle thread, after a plugin's turn (stepped or not): closes a requested
/// gate.
#[inline]
pub(crate) fn after_turn(gate: &AtomicU8) {
    if gate.load(Relaxed) == REQUESTED {
        let _ = gate.compare_exchange(REQUESTED, CLOSED, Release, Relaxed);
    }
}

/// The cycle did not acknowledge a gate in time: the plugin's step did not
/// return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepDidNotReturn;

impl std::fmt::Display for StepDidNotReturn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the plugin's step did not return in time")
    }
}

impl std::error::Error for StepDidNotReturn {}

/// The closed gate of one plugin: its step does not run while this lives;
/// dropping it opens the gate again.
#[must_use = "the gate opens again when the guard is dropped"]
pub struct GateGuard<'a> {
    gate: &'a AtomicU8,
}

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        self.gate.store(OPEN, Release);
    }
}

/// Closes `gate`: returns once the cycle acknowledged (the plugin's step is
/// not running and will not run until the guard is dropped), or once the
/// cycle thread has finished (`finished`), or `None` after `timeout` (the
/// step did not return: a hang, which the supervisor handles).
///
/// One closer per gate at a time (the host reconfigures from one thread).
pub(crate) fn close<'a>(
    gate: &'a AtomicU8,
    finished: &std::sync::atomic::AtomicBool,
    period_ns: u64,
    timeout: Duration,
) -> Option<GateGuard<'a>> {
    gate.store(REQUESTED, SeqCst);
    let start = Instant::now();
    // A quarter period between looks, at least 50 µs and at most 5 ms.
    let nap = Duration::from_nanos((period_ns / 4).clamp(50_000, 5_000_000));
    loop {
        if gate.load(Acquire) == CLOSED || finished.load(Acquire) {
            return Some(GateGuard { gate });
        }
        if start.elapsed() >= timeout {
            return match gate.compare_exchange(REQUESTED, OPEN, SeqCst, Acquire) {
                Ok(_) => None,
                // The cycle closed it just now.
                Err(_) => Some(GateGuard { gate }),
            };
        }
        std::thread::sleep(nap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn a_requested_gate_closes_after_the_turn_and_skips_until_opened() {
        let gate = Arc::new(AtomicU8::new(OPEN));
        let finished = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        // A stand-in cycle: a turn every 100 µs, counting steps and skips.
        let (g, s) = (gate.clone(), stop.clone());
        let cycle = std::thread::spawn(move || {
            let (mut steps, mut skips) = (0u64, 0u64);
            while !s.load(Relaxed) {
                if may_step(&g) {
                    steps += 1;
                } else {
                    skips += 1;
                }
                after_turn(&g);
                std::thread::sleep(Duration::from_micros(100));
            }
            (steps, skips)
        });
        {
            let guard = close(&gate, &finished, 100_000, Duration::from_secs(5));
            assert!(guard.is_some());
            assert_eq!(gate.load(SeqCst), CLOSED);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(gate.load(SeqCst), OPEN);
        std::thread::sleep(Duration::from_millis(5));
        stop.store(true, SeqCst);
        let (steps, skips) = cycle.join().unwrap();
        assert!(skips > 0 && steps > 0, "steps {steps}, skips {skips}");
    }

    #[test]
    fn without_a_cycle_turn_closing_times_out_and_leaves_the_gate_open() {
        let gate = AtomicU8::new(OPEN);
        let finished = AtomicBool::new(false);
        assert!(close(&gate, &finished, 1_000_000, Duration::from_millis(20)).is_none());
        assert_eq!(gate.load(SeqCst), OPEN);
        finished.store(true, SeqCst);
        let guard = close(&gate, &finished, 1_000_000, Duration::from_millis(20));
        assert!(guard.is_some(), "a finished cycle steps nobody");
    }
}
