//! Per-subscription counters (since the process started) for `GET /subscriptions/{name}` and the
//! metrics endpoint: events matched, delivered, retried, dead-lettered, dropped (exhausted with no
//! dead-letter topic), expired (gone from the log before a retry), undecodable (stored batches
//! whose records cannot be read, set aside), dead-letter failures (letters the dead-letter topic
//! refused; written again later), and the delivery latency (event
//! time to successful delivery) as a histogram.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds of the latency histogram buckets, in milliseconds (the last bucket is +Inf).
pub const LATENCY_BOUNDS_MS: [u64; 10] = [1, 5, 10, 25, 50, 100, 250, 1000, 5000, 30000];

/// Live counters of one subscription.
#[derive(Default)]
pub struct Counters {
    pub matched: AtomicU64,
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub dropped: AtomicU64,
    pub expired: AtomicU64,
    pub undecodable: AtomicU64,
    pub dead_letter_failures: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BOUNDS_MS.len() + 1],
    latency_sum_ms: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CounterSnapshot {
    pub matched: u64,
    pub delivered: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub dropped: u64,
    pub expired: u64,
    pub undecodable: u64,
    pub dead_letter_failures: u64,
    /// Cumulative counts per bucket of `LATENCY_BOUNDS_MS` and +Inf (Prometheus style).
    pub latency_buckets: Vec<u64>,
    pub latency_sum_ms: u64,
}

impl Counters {
    /// Counts one successful delivery that took `latency_ms` from the event's time.
    pub fn delivered(&self, latency_ms: i64) {
        let ms = latency_ms.max(0) as u64;
        self.delivered.fetch_add(1, Relaxed);
        self.latency_sum_ms.fetch_add(ms, Relaxed);
        let i = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.latency_buckets[i].fetch_add(1, Relaxed);
    }

    /// A snapshot.
    pub fn snapshot(&self) -> CounterSnapshot {
        let mut acc = 0;
        let latency_buckets = self
            .latency_buckets
            .iter()
            .map(|b| {
                acc += b.load(Relaxed);
                acc
            })
            .collect();
        CounterSnapshot {
            matched: self.matched.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            retried: self.retried.load(Relaxed),
            dead_lettered: self.dead_lettered.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            expired: self.expired.load(Relaxed),
            undecodable: self.undecodable.load(Relaxed),
            dead_letter_failures: self.dead_letter_failures.load(Relaxed),
            latency_buckets,
            latency_sum_ms: self.latency_sum_ms.load(Relaxed),
        }
    }
}
