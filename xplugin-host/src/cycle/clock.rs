//! The two clock operations the cycle thread may make: reading
//! `CLOCK_MONOTONIC` (through the vDSO, usually no system call at all) and
//! sleeping until an absolute `CLOCK_MONOTONIC` deadline with
//! `clock_nanosleep(TIMER_ABSTIME)`, so that sleeping never drifts the way a
//! relative sleep does.
//!
//! On Windows (the pendant build, which runs no cycle): the performance
//! counter, and a relative sleep to the deadline (to the scheduler's tick,
//! about 1 to 16 ms late; nothing real-time).

#[cfg(unix)]
use nix::libc;

/// Nanoseconds in a second.
pub const NS_PER_SEC: u64 = 1_000_000_000;

/// `CLOCK_MONOTONIC` now, in nanoseconds.
#[cfg(unix)]
#[inline]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always
    // exists on Linux, so the call cannot fail and leaves `ts` set.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(NS_PER_SEC)
        .wrapping_add(ts.tv_nsec as u64)
}

/// The performance counter now, in nanoseconds (monotonic, counted from
/// the machine's start, like `CLOCK_MONOTONIC`).
#[cfg(windows)]
pub fn monotonic_ns() -> u64 {
    use windows_sys::Win32::System::Performance::{
        QueryPerformanceCounter, QueryPerformanceFrequency,
    };
    let (mut count, mut frequency) = (0i64, 0i64);
    // SAFETY: both pointers are to writable i64s; the calls cannot fail on
    // Windows XP and later.
    unsafe {
        QueryPerformanceCounter(&mut count);
        QueryPerformanceFrequency(&mut frequency);
    }
    let frequency = frequency.max(1) as u128;
    (count.max(0) as u128 * u128::from(NS_PER_SEC) / frequency) as u64
}

/// Sleeps until [`monotonic_ns`] reaches `deadline_ns` (returns at once if
/// it has passed).
#[cfg(windows)]
pub fn sleep_until(deadline_ns: u64) {
    loop {
        let now = monotonic_ns();
        if now >= deadline_ns {
            return;
        }
        std::thread::sleep(std::time::Duration::from_nanos(deadline_ns - now));
    }
}

/// Sleeps until `CLOCK_MONOTONIC` reaches `deadline_ns` (returns at once if
/// it has passed). A signal that interrupts the sleep restarts it against
/// the same absolute deadline.
#[cfg(unix)]
#[inline]
pub fn sleep_until(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / NS_PER_SEC) as libc::time_t,
        tv_nsec: (deadline_ns % NS_PER_SEC) as libc::c_long,
    };
    loop {
        // SAFETY: `ts` is a valid timespec and the remaining-time pointer may
        // be NULL with TIMER_ABSTIME.
        let r = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        // clock_nanosleep returns the error number instead of setting errno.
        if r != libc::EINTR {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_until_an_absolute_deadline() {
        let start = monotonic_ns();
        sleep_until(start + 2_000_000);
        assert!(monotonic_ns() >= start + 2_000_000);
        // A deadline in the past returns at once.
        sleep_until(start);
    }
}
