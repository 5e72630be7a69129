//! Per-subscription counters for `GET /subscriptions/{name}` and the metrics endpoint: events matched, delivered, retried, dead-lettered, dropped (exhausted with no
//! dead-letter topic), expired (gone from the log before a retry), undecodable (stored batches
//! whose records cannot be read, set aside), dead-letter failures (letters the dead-letter topic
//! refused; written again later), and the delivery latency (event
//! time to successful delivery) as a histogram.
//!
//! They survive restarts: the worker writes a snapshot with its positions, in the same durable
//! write (`positions.rs`), and the bus restores it when it opens. So after a clean stop they are
//! exact, and after a crash they are those of the last position commit: they count what the
//! worker did before the positions it resumes from were written, and what it does again after the
//! restart (an event delivered again, at-least-once) is counted again. Deleting a subscription (or
//! creating one of the same name) starts them from zero.
//!
//! `/metrics` reads counters of its own, counted since start only and never set back ([`Live`]):
//! settled events by outcome, the latency histogram, failed attempts by kind and dead letters by
//! reason. A stored counter goes back when a restart restores an older snapshot or an
//! exactly-once rollback restores the last committed one, and Prometheus would read that as a
//! reset and count everything again; a counter that restarts from zero with the process is the
//! reset it expects. (After a rollback the since-start counters count the redone deliveries
//! again: they count work done, the stored ones what is committed.)

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

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
    /// Since start, never set back (`/metrics`).
    live: Live,
}

/// Counters since start for `/metrics` (see the module docs).
#[derive(Default)]
struct Live {
    /// delivered, retried, dead_lettered, dropped, expired.
    outcomes: [AtomicU64; 5],
    latency_buckets: [AtomicU64; LATENCY_BOUNDS_MS.len() + 1],
    latency_sum_ms: AtomicU64,
    /// Failed attempts by kind (`Failure::kind`).
    errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Dead letters written by reason (the failure that ended the event).
    letters: Mutex<BTreeMap<&'static str, u64>>,
}

/// A snapshot of [`Live`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveSnapshot {
    /// delivered, retried, dead_lettered, dropped, expired (`OUTCOMES`).
    pub outcomes: [u64; 5],
    /// Cumulative, as `CounterSnapshot::latency_buckets`.
    pub latency_buckets: Vec<u64>,
    pub latency_sum_ms: u64,
    pub errors: BTreeMap<&'static str, u64>,
    pub letters: BTreeMap<&'static str, u64>,
}

/// The outcomes of [`LiveSnapshot::outcomes`], in order.
pub const OUTCOMES: [&str; 5] = [
    "delivered",
    "retried",
    "dead_lettered",
    "dropped",
    "expired",
];

/// A snapshot of [`Counters`] (also their stored form: fields a newer busbar adds read as 0).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
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
    /// The since-start counters `/metrics` reads (not stored, not in the API's counters).
    #[serde(skip)]
    pub live: LiveSnapshot,
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
        self.live.outcomes[0].fetch_add(1, Relaxed);
        self.live.latency_sum_ms.fetch_add(ms, Relaxed);
        self.live.latency_buckets[i].fetch_add(1, Relaxed);
    }

    /// Counts a failed attempt scheduled for another one.
    pub fn retried(&self) {
        self.retried.fetch_add(1, Relaxed);
        self.live.outcomes[1].fetch_add(1, Relaxed);
    }

    /// Counts an exhausted event dropped (no dead-letter topic).
    pub fn dropped(&self) {
        self.dropped.fetch_add(1, Relaxed);
        self.live.outcomes[3].fetch_add(1, Relaxed);
    }

    /// Counts an event gone from its topic before a retry.
    pub fn expired(&self) {
        self.expired.fetch_add(1, Relaxed);
        self.live.outcomes[4].fetch_add(1, Relaxed);
    }

    /// Counts one failed attempt of kind `kind`.
    pub fn failed_attempt(&self, kind: &'static str) {
        let mut m = self.live.errors.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(kind).or_default() += 1;
    }

    /// Counts one dead letter written for `reason`.
    pub fn lettered(&self, reason: &'static str) {
        self.dead_lettered.fetch_add(1, Relaxed);
        self.live.outcomes[2].fetch_add(1, Relaxed);
        let mut m = self.live.letters.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(reason).or_default() += 1;
    }

    /// The since-start counters.
    fn live(&self) -> LiveSnapshot {
        let l = &self.live;
        let mut acc = 0;
        LiveSnapshot {
            outcomes: std::array::from_fn(|i| l.outcomes[i].load(Relaxed)),
            latency_buckets: (l.latency_buckets.iter())
                .map(|b| {
                    acc += b.load(Relaxed);
                    acc
                })
                .collect(),
            latency_sum_ms: l.latency_sum_ms.load(Relaxed),
            errors: l.errors.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            letters: l.letters.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// Counters that go on from `s` (a stored snapshot).
    pub fn restore(s: &CounterSnapshot) -> Counters {
        let c = Counters::default();
        c.set(s);
        c
    }

    /// Sets every counter to `s` (an exactly-once subscription going back to its stored
    /// position goes back to the counters stored with it).
    pub fn set(&self, s: &CounterSnapshot) {
        let c = self;
        let set = |a: &AtomicU64, v: u64| a.store(v, Relaxed);
        set(&c.matched, s.matched);
        set(&c.delivered, s.delivered);
        set(&c.retried, s.retried);
        set(&c.dead_lettered, s.dead_lettered);
        set(&c.dropped, s.dropped);
        set(&c.expired, s.expired);
        set(&c.undecodable, s.undecodable);
        set(&c.dead_letter_failures, s.dead_letter_failures);
        set(&c.latency_sum_ms, s.latency_sum_ms);
        // Stored cumulative (Prometheus style); kept per bucket. A snapshot with another bucket
        // count (other bounds) restores none of them rather than misplacing counts.
        if s.latency_buckets.len() == c.latency_buckets.len() {
            let mut below = 0;
            for (b, &cum) in c.latency_buckets.iter().zip(&s.latency_buckets) {
                set(b, cum.saturating_sub(below));
                below = below.max(cum);
            }
        }
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
            live: self.live(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_snapshot_reads_the_same_and_counts_on() {
        let c = Counters::default();
        c.matched.store(3, Relaxed);
        c.dead_lettered.store(1, Relaxed);
        for ms in [0, 7, 7, 40_000] {
            c.delivered(ms);
        }
        let s = c.snapshot();
        assert_eq!(s.live.outcomes, [4, 0, 0, 0, 0]);
        let r = Counters::restore(&s);
        let stored = |s: CounterSnapshot| CounterSnapshot {
            live: LiveSnapshot::default(),
            ..s
        };
        assert_eq!(stored(r.snapshot()), stored(s.clone()));
        r.delivered(7);
        assert_eq!(r.snapshot().delivered, 5);
        assert_eq!(r.snapshot().latency_buckets[2], 4);
        // /metrics' counters start from zero and are never set back, not even by `set`.
        assert_eq!(r.snapshot().live.outcomes, [1, 0, 0, 0, 0]);
        r.set(&CounterSnapshot::default());
        assert_eq!(r.snapshot().delivered, 0);
        assert_eq!(r.snapshot().live.outcomes, [1, 0, 0, 0, 0]);
        assert_eq!(r.snapshot().live.latency_buckets.last(), Some(&1));
        let stored: CounterSnapshot = serde_json::from_str(r#"{"delivered": 2}"#).unwrap();
        assert_eq!(Counters::restore(&stored).snapshot().delivered, 2);
    }
}
