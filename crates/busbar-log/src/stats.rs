//! Fixed-bucket latency histograms made of atomics (no lock on the recording path), and the one
//! the log records itself: [`FSYNC_LATENCY`], the time of each sync of a log's files (exported as
//! `busbar_fsync_latency_seconds`, `docs/metrics.md`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (the last bucket, +Inf, is implied). The same for
/// every latency busbar exports, so dashboards can add them up.
pub const BOUNDS_S: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// A histogram of durations over [`BOUNDS_S`].
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS_S.len() + 1],
    sum_bits: AtomicU64,
}

/// A histogram's counts as read: per bucket (not cumulative), the sum and the count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    pub buckets: Vec<u64>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl HistogramSnapshot {
    /// Counts per bucket, each including the lower ones (Prometheus' `le` buckets).
    pub fn cumulative(&self) -> Vec<u64> {
        let mut total = 0;
        (self.buckets.iter())
            .map(|n| {
                total += n;
                total
            })
            .collect()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub const fn new() -> Histogram {
        #[allow(clippy::declare_interior_mutable_const)]
        const ZERO: AtomicU64 = AtomicU64::new(0);
        Histogram {
            buckets: [ZERO; BOUNDS_S.len() + 1],
            sum_bits: AtomicU64::new(0),
        }
    }

    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        self.observe_seconds(d.as_secs_f64());
    }

    /// Records one value in seconds (negative values and NaN count as 0, infinities as the
    /// largest finite value).
    pub fn observe_seconds(&self, s: f64) {
        let s = if s.is_nan() {
            0.0
        } else {
            s.clamp(0.0, f64::MAX)
        };
        let i = BOUNDS_S
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(BOUNDS_S.len());
        self.buckets[i].fetch_add(1, Relaxed);
        // The sum is an f64 kept as its bits: it cannot wrap, whatever the values.
        let _ = (self.sum_bits).fetch_update(Relaxed, Relaxed, |bits| {
            Some((f64::from_bits(bits) + s).to_bits())
        });
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        HistogramSnapshot {
            count: buckets.iter().sum(),
            buckets,
            sum_seconds: f64::from_bits(self.sum_bits.load(Relaxed)),
        }
    }
}

/// Every sync of a log's files (the segment, sealed segments and the directory a roll changed)
/// since the process started, failed ones included.
pub static FSYNC_LATENCY: Histogram = Histogram::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::new();
        h.observe_seconds(0.0005);
        h.observe_seconds(0.0006);
        h.observe(Duration::from_secs(61));
        h.observe_seconds(-1.0);
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets[0], 2, "0.0005 itself and the negative one");
        assert_eq!(s.buckets[1], 1);
        assert_eq!(s.buckets[BOUNDS_S.len()], 1, "+Inf");
        assert_eq!(*s.cumulative().last().unwrap(), 4);
        assert!((s.sum_seconds - 61.0011).abs() < 1e-9, "{}", s.sum_seconds);
        h.observe_seconds(f64::NAN);
        h.observe_seconds(1e300);
        h.observe_seconds(1e300);
        assert!(h.snapshot().sum_seconds.is_finite() && h.snapshot().sum_seconds >= 2e300);
    }
}
