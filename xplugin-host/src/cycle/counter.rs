//! A cheap timestamp for per-plugin step durations: the CPU's own counter
//! where Linux lets user space read it and it ticks at a constant rate (x86
//! TSC with `constant_tsc` and `nonstop_tsc`; the Arm generic timer's
//! `cntvct_el0` on aarch64), calibrated once against `CLOCK_MONOTONIC`;
//! otherwise `CLOCK_MONOTONIC` itself.
//!
//! The cycle path takes one counter reading per plugin per cycle (the end of
//! one step is the start of the next), so its cost is what the statistics
//! cost; [`Counter::read_cost_ns`] reports it.

use super::clock::monotonic_ns;
use serde::Serialize;

/// Where timestamps come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CounterSource {
    /// x86 time-stamp counter (`rdtsc`).
    Tsc,
    /// Arm generic timer, virtual count (`cntvct_el0`).
    Cntvct,
    /// `clock_gettime(CLOCK_MONOTONIC)`.
    Monotonic,
}

/// A calibrated tick counter.
#[derive(Debug, Clone, Copy)]
pub struct Counter {
    source: CounterSource,
    /// Nanoseconds per tick as a 32.32 fixed-point number.
    ns_per_tick_q32: u64,
    read_cost_ns: u64,
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn raw_ticks() -> u64 {
    // SAFETY: rdtsc has no preconditions; it is available on every x86-64
    // CPU and Linux lets user space execute it (we only use it after
    // checking that the kernel reports a constant, non-stop TSC).
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

#[cfg(target_arch = "aarch64")]
#[inline]
fn raw_ticks() -> u64 {
    let v: u64;
    // SAFETY: Linux enables EL0 access to the virtual counter (CNTKCTL_EL1.
    // EL0VCTEN) on every aarch64 system it supports; the read has no side
    // effects.
    unsafe { core::arch::asm!("mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
#[inline]
fn raw_ticks() -> u64 {
    monotonic_ns()
}

#[cfg(target_arch = "x86_64")]
fn native_source() -> Option<CounterSource> {
    // Only a TSC that ticks at a constant rate in every C-state is a clock.
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let flags = cpuinfo.lines().find(|l| l.starts_with("flags"))?;
    let has = |f: &str| flags.split_whitespace().any(|w| w == f);
    (has("constant_tsc") && has("nonstop_tsc")).then_some(CounterSource::Tsc)
}

#[cfg(target_arch = "aarch64")]
fn native_source() -> Option<CounterSource> {
    Some(CounterSource::Cntvct)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn native_source() -> Option<CounterSource> {
    None
}

impl Counter {
    /// Picks and calibrates the counter. Takes about 20 ms (measuring the
    /// tick rate against `CLOCK_MONOTONIC`); call it before the first cycle.
    /// A counter that does not advance plausibly is not used.
    pub fn calibrate() -> Counter {
        let fallback = Counter {
            source: CounterSource::Monotonic,
            ns_per_tick_q32: 1 << 32,
            read_cost_ns: 0,
        };
        let mut counter = native_source()
            .and_then(|source| {
                let (t0, c0) = (monotonic_ns(), raw_ticks());
                std::thread::sleep(std::time::Duration::from_millis(20));
                let (t1, c1) = (monotonic_ns(), raw_ticks());
                let (dt, dc) = (t1.checked_sub(t0)?, c1.checked_sub(c0)?);
                // Between 1 MHz and 10 GHz, or it is not a usable clock.
                if dc == 0 || dt == 0 || dc < dt / 1000 || dc > dt * 10 {
                    return None;
                }
                let ns_per_tick_q32 = ((u128::from(dt) << 32) / u128::from(dc)) as u64;
                Some(Counter {
                    source,
                    ns_per_tick_q32,
                    read_cost_ns: 0,
                })
            })
            .unwrap_or(fallback);
        counter.read_cost_ns = counter.measure_read_cost();
        counter
    }

    fn measure_read_cost(&self) -> u64 {
        const N: u64 = 10_000;
        let start = monotonic_ns();
        let mut sink = 0u64;
        for _ in 0..N {
            sink = sink.wrapping_add(self.read());
        }
        std::hint::black_box(sink);
        (monotonic_ns() - start) / N
    }

    /// The current tick count.
    #[inline]
    pub fn read(&self) -> u64 {
        match self.source {
            CounterSource::Monotonic => monotonic_ns(),
            _ => raw_ticks(),
        }
    }

    /// Ticks to nanoseconds.
    #[inline]
    pub fn to_ns(&self, ticks: u64) -> u64 {
        ((u128::from(ticks) * u128::from(self.ns_per_tick_q32)) >> 32) as u64
    }

    /// Nanoseconds to ticks (for budgets compared on the cycle path).
    pub fn from_ns(&self, ns: u64) -> u64 {
        if self.ns_per_tick_q32 == 0 {
            return ns;
        }
        ((u128::from(ns) << 32) / u128::from(self.ns_per_tick_q32)).min(u128::from(u64::MAX)) as u64
    }

    /// Where the ticks come from.
    pub fn source(&self) -> CounterSource {
        self.source
    }

    /// What one reading costs, in nanoseconds (measured at calibration).
    pub fn read_cost_ns(&self) -> u64 {
        self.read_cost_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_measures_a_sleep_in_nanoseconds() {
        let c = Counter::calibrate();
        let t0 = c.read();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let ns = c.to_ns(c.read() - t0);
        // Generous bounds: a loaded machine may oversleep a lot.
        assert!(
            (4_000_000..2_000_000_000).contains(&ns),
            "{ns} ns for a 5 ms sleep ({:?})",
            c.source()
        );
    }
}
