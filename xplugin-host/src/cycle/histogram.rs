//! A fixed-size, log-linear histogram of nanosecond durations that one thread
//! records into without allocating, locking or making a system call, while
//! other threads read it.
//!
//! Values are bucketed by their power of two and then by the next
//! [`SUB_BITS`] bits below the leading one, so every bucket is at most 1/8
//! (12.5 %) wide relative to its value, as HdrHistogram does with two
//! significant digits. Values from 0 to 2^40 ns (about 18 minutes) have their
//! own buckets; larger ones land in the last bucket. The exact minimum and
//! maximum are kept beside the buckets.
//!
//! Concurrency: there is exactly one writer (the cycle thread). It updates
//! each counter with a relaxed load and store, which compiles to plain moves
//! (no locked read-modify-write on the cycle path); readers load relaxed and
//! may see a snapshot that is a few samples behind or between two counters,
//! which is fine for statistics.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Bits of a value below its leading one that select the sub-bucket.
pub const SUB_BITS: u32 = 3;
const SUB_BUCKETS: usize = 1 << SUB_BITS;
/// Largest exponent with its own buckets (values up to 2^MAX_EXP ns).
const MAX_EXP: usize = 40;
/// Number of buckets: values below 2^SUB_BITS are exact, then SUB_BUCKETS
/// per power of two.
pub const BUCKETS: usize = SUB_BUCKETS + (MAX_EXP - SUB_BITS as usize) * SUB_BUCKETS;

/// The histogram. Create it before the first cycle (it is about 2.4 KiB).
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
    sum: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

/// Bucket of value `v`.
#[inline]
fn bucket_of(v: u64) -> usize {
    if v < SUB_BUCKETS as u64 {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros() as usize; // >= SUB_BITS
    if exp >= MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = ((v >> (exp - SUB_BITS as usize)) as usize) & (SUB_BUCKETS - 1);
    SUB_BUCKETS + (exp - SUB_BITS as usize) * SUB_BUCKETS + sub
}

/// Smallest value of bucket `b`.
fn bucket_low(b: usize) -> u64 {
    if b < SUB_BUCKETS {
        return b as u64;
    }
    let exp = (b - SUB_BUCKETS) / SUB_BUCKETS + SUB_BITS as usize;
    let sub = ((b - SUB_BUCKETS) % SUB_BUCKETS) as u64;
    (1u64 << exp) | (sub << (exp - SUB_BITS as usize))
}

/// Largest value of bucket `b`.
fn bucket_high(b: usize) -> u64 {
    if b + 1 >= BUCKETS {
        u64::MAX
    } else {
        bucket_low(b + 1) - 1
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    /// Records one value. Single writer only (see the module documentation):
    /// the updates are plain relaxed loads and stores.
    #[inline]
    pub fn record(&self, v: u64) {
        let b = &self.buckets[bucket_of(v)];
        b.store(b.load(Relaxed).wrapping_add(1), Relaxed);
        self.count
            .store(self.count.load(Relaxed).wrapping_add(1), Relaxed);
        self.sum
            .store(self.sum.load(Relaxed).wrapping_add(v), Relaxed);
        if v < self.min.load(Relaxed) {
            self.min.store(v, Relaxed);
        }
        if v > self.max.load(Relaxed) {
            self.max.store(v, Relaxed);
        }
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Min, percentiles and max of what was recorded so far. A percentile is
    /// reported as the upper bound of its bucket, clamped to the exact
    /// maximum (so it never understates a latency).
    pub fn summary(&self) -> Summary {
        self.summary_scaled(|v| v)
    }

    /// As [`Histogram::summary`] for values recorded in another unit (CPU
    /// counter ticks): every reported figure goes through `to_ns`, which
    /// must be monotonic. Recording ticks keeps the conversion off the
    /// cycle path.
    pub fn summary_scaled(&self, to_ns: impl Fn(u64) -> u64) -> Summary {
        let s = self.summary_raw();
        Summary {
            count: s.count,
            min: to_ns(s.min),
            p50: to_ns(s.p50),
            p99: to_ns(s.p99),
            p999: to_ns(s.p999),
            max: to_ns(s.max),
            mean: to_ns(s.mean),
        }
    }

    fn summary_raw(&self) -> Summary {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let max = self.max.load(Relaxed);
        let min = self.min.load(Relaxed);
        if total == 0 {
            return Summary::default();
        }
        let pct = |q: f64| -> u64 {
            // The rank of the q-quantile, 1-based: the smallest value with at
            // least q of the samples at or below it.
            let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
            let mut seen = 0u64;
            for (b, &c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return bucket_high(b).min(max).max(min);
                }
            }
            max
        };
        Summary {
            count: total,
            min,
            p50: pct(0.50),
            p99: pct(0.99),
            p999: pct(0.999),
            max,
            mean: self.sum.load(Relaxed) / total.max(1),
        }
    }
}

/// What a histogram says, in nanoseconds (`--json`: `min`, `p50`, `p99`,
/// `p999`, `max`; also `count` and `mean`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub count: u64,
    /// Smallest sample (exact).
    pub min: u64,
    /// Median (upper bound of its bucket).
    pub p50: u64,
    /// 99th percentile (upper bound of its bucket).
    pub p99: u64,
    /// 99.9th percentile (upper bound of its bucket).
    pub p999: u64,
    /// Largest sample (exact).
    pub max: u64,
    /// Arithmetic mean.
    pub mean: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.count == 0 {
            return f.write_str("no samples");
        }
        write!(
            f,
            "min {} / p50 {} / p99 {} / p99.9 {} / max {}",
            ns(self.min),
            ns(self.p50),
            ns(self.p99),
            ns(self.p999),
            ns(self.max)
        )
    }
}

/// `850 ns`, `12.3 us`, `4.56 ms`.
pub fn ns(v: u64) -> String {
    if v < 10_000 {
        format!("{v} ns")
    } else if v < 10_000_000 {
        format!("{:.1} us", v as f64 / 1e3)
    } else {
        format!("{:.2} ms", v as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0;
        for v in (0..5000u64).chain([1 << 20, (1 << 40) - 1, 1 << 40, u64::MAX]) {
            let b = bucket_of(v);
            assert!(b >= last || v < 5000, "bucket order at {v}");
            assert!(
                bucket_low(b) <= v && v <= bucket_high(b),
                "{v} in bucket {b}"
            );
            if v < 5000 {
                last = b;
            }
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn buckets_are_at_most_an_eighth_wide() {
        for b in SUB_BUCKETS..BUCKETS - 1 {
            let (lo, hi) = (bucket_low(b), bucket_high(b));
            assert!(
                (hi - lo + 1) as f64 <= lo as f64 / 8.0 + 1.0,
                "bucket {b}: {lo}..{hi}"
            );
        }
    }

    #[test]
    fn summary_of_known_distribution() {
        let h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let s = h.summary();
        assert_eq!((s.count, s.min, s.max), (1000, 1000, 1_000_000));
        // Within one bucket (12.5 %) above the exact quantile.
        for (got, exact) in [(s.p50, 500_000u64), (s.p99, 990_000), (s.p999, 999_000)] {
            assert!(
                got >= exact && got as f64 <= exact as f64 * 1.125 + 1.0,
                "{got} vs {exact}"
            );
        }
        assert_eq!(Histogram::new().summary(), Summary::default());
    }
}
