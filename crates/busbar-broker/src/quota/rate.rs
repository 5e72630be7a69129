//! Sliding-window rates as Kafka measures quotas (`org.apache.kafka.common.metrics.stats.Rate`
//! over `SampledStat`): `window_num` samples of `window` each; a sample opens at the first record
//! after the previous one is complete, samples older than the whole span are dropped, and the rate
//! is the sum of the live samples over the elapsed span, counted as at least `window_num - 1` full
//! windows (so a new client is not judged on its first millisecond). The throttle time is Kafka's:
//! `(rate - quota) / quota × span`, the time until the rate falls back to the quota if nothing
//! more is recorded, bounded by the whole span.
//!
//! [`Trackers`] holds one rate per tracked key, at most `trackers_max`. An index by last record
//! time drops idle ones (nothing recorded for a whole span) as time passes, a few per call
//! (amortised, O(log n) each, never a scan of the map), and at once when room is needed; keys
//! beyond the limit share one overflow rate, so many client ids can neither grow memory nor
//! escape a quota.

use std::collections::{BTreeSet, HashMap, VecDeque};

/// Most idle trackers one call drops beyond the one it may need room for: bounds the time a
/// call holds the lock, yet outpaces growth (each call adds at most one tracker).
const SWEEP_PER_CALL: usize = 64;

/// The window shape (Kafka's `quota.window.num` and `quota.window.size.seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub window_num: u32,
    pub window_ms: u64,
}

impl Shape {
    /// The whole span the samples cover, milliseconds.
    pub fn span_ms(&self) -> u64 {
        self.window_ms * u64::from(self.window_num)
    }
}

/// One sliding-window rate: (sample start, sum) pairs, oldest first.
#[derive(Debug, Default, Clone)]
pub struct Rate {
    samples: VecDeque<(u64, f64)>,
}

impl Rate {
    fn purge(&mut self, shape: Shape, now: u64) {
        let span = shape.span_ms();
        while self
            .samples
            .front()
            .is_some_and(|(start, _)| now.saturating_sub(*start) >= span)
        {
            self.samples.pop_front();
        }
    }

    /// Adds `value` at `now` (ms).
    pub fn record(&mut self, shape: Shape, now: u64, value: f64) {
        self.purge(shape, now);
        match self.samples.back_mut() {
            Some((start, sum)) if now.saturating_sub(*start) < shape.window_ms => *sum += value,
            _ => {
                self.samples.push_back((now, value));
                if self.samples.len() > shape.window_num as usize {
                    self.samples.pop_front();
                }
            }
        }
    }

    /// The elapsed span the rate divides by, milliseconds (Kafka's `Rate.windowSize`).
    pub fn span(&self, shape: Shape, now: u64) -> u64 {
        let oldest = self.samples.front().map_or(now, |(start, _)| *start);
        let mut elapsed = now.saturating_sub(oldest);
        let full = elapsed / shape.window_ms;
        let min_full = u64::from(shape.window_num.saturating_sub(1));
        if full < min_full {
            elapsed += (min_full - full) * shape.window_ms;
        }
        elapsed.max(1)
    }

    /// The rate at `now`, per second.
    pub fn per_second(&mut self, shape: Shape, now: u64) -> f64 {
        self.purge(shape, now);
        let total: f64 = self.samples.iter().map(|(_, v)| v).sum();
        total * 1000.0 / self.span(shape, now) as f64
    }

    /// How long to throttle at `now` against `quota` (per second): zero within it.
    pub fn throttle_ms(&mut self, shape: Shape, now: u64, quota: f64) -> u64 {
        let rate = self.per_second(shape, now);
        if rate <= quota || quota <= 0.0 {
            return 0;
        }
        let ms = (rate - quota) / quota * self.span(shape, now) as f64;
        (ms.round() as u64).min(shape.span_ms())
    }
}

/// A tracked rate and when it was last recorded to (its place in the idle index).
#[derive(Debug, Default)]
struct Tracked {
    rate: Rate,
    last: u64,
}

/// Rates by key, bounded in number; keys should be small and fixed-size (the quota store keys
/// them by a digest of the names).
pub struct Trackers<K> {
    shape: Shape,
    max: usize,
    rates: HashMap<K, Tracked>,
    /// (last record time, key) of every tracked key, oldest first.
    by_last: BTreeSet<(u64, K)>,
    overflow: Rate,
}

impl<K: std::hash::Hash + Eq + Ord + Clone> Trackers<K> {
    pub fn new(shape: Shape, max: usize) -> Self {
        Self {
            shape,
            max,
            rates: HashMap::new(),
            by_last: BTreeSet::new(),
            overflow: Rate::default(),
        }
    }

    /// How many keys are tracked (the overflow rate not counted).
    pub fn len(&self) -> usize {
        self.rates.len()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }

    /// Drops the oldest tracker if nothing was recorded to it for a whole span (then all its
    /// samples are gone). True when one was dropped.
    fn drop_oldest_idle(&mut self, now: u64) -> bool {
        let span = self.shape.span_ms();
        match self.by_last.first() {
            Some((last, _)) if now.saturating_sub(*last) >= span => {
                let (_, key) = self.by_last.pop_first().expect("first exists");
                self.rates.remove(&key);
                true
            }
            _ => false,
        }
    }

    fn sweep(&mut self, now: u64) {
        for _ in 0..SWEEP_PER_CALL {
            if !self.drop_oldest_idle(now) {
                break;
            }
        }
    }

    /// The rate to record `key`'s values to at `now`, made when missing (after dropping an idle
    /// one when full); the shared overflow rate when still full.
    fn rate_for_record(&mut self, key: &K, now: u64) -> &mut Rate {
        self.sweep(now);
        if let Some(t) = self.rates.get_mut(key) {
            if t.last != now {
                self.by_last.remove(&(t.last, key.clone()));
                t.last = now;
                self.by_last.insert((now, key.clone()));
            }
            return &mut self.rates.get_mut(key).expect("tracked").rate;
        }
        if self.rates.len() >= self.max && !self.drop_oldest_idle(now) {
            return &mut self.overflow;
        }
        self.by_last.insert((now, key.clone()));
        let t = self.rates.entry(key.clone()).or_default();
        t.last = now;
        &mut t.rate
    }

    /// Records `value` for `key` at `now` and answers the throttle time against `quota`. With
    /// `keep_over` false, a value that puts the rate over the quota is taken back (Kafka's
    /// "unrecord" of a throttled fetch, whose answer carries no data).
    pub fn record(&mut self, key: &K, now: u64, value: f64, quota: f64, keep_over: bool) -> u64 {
        let shape = self.shape;
        let rate = self.rate_for_record(key, now);
        rate.record(shape, now, value);
        let ms = rate.throttle_ms(shape, now, quota);
        if ms > 0 && !keep_over {
            rate.record(shape, now, -value);
        }
        ms
    }

    /// Admits a request of `value` for `key` at `now`: refused with the throttle time while the
    /// rate is over `quota`, else `value` is recorded at once (a reservation concurrent requests
    /// see), even when it puts the rate over the quota (the next ones wait, as Kafka throttles
    /// after the request that went over).
    pub fn admit(&mut self, key: &K, now: u64, value: f64, quota: f64) -> Result<(), u64> {
        let ms = self.throttle_now(key, now, quota);
        if ms > 0 {
            return Err(ms);
        }
        if value != 0.0 {
            self.record(key, now, value, quota, true);
        }
        Ok(())
    }

    /// The throttle time of `key` at `now` without recording anything (nor tracking the key: an
    /// untracked key has nothing recorded, unless the map is full and it shares the overflow).
    pub fn throttle_now(&mut self, key: &K, now: u64, quota: f64) -> u64 {
        let shape = self.shape;
        self.sweep(now);
        if let Some(t) = self.rates.get_mut(key) {
            return t.rate.throttle_ms(shape, now, quota);
        }
        if self.rates.len() >= self.max {
            return self.overflow.throttle_ms(shape, now, quota);
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape {
        window_num: 11,
        window_ms: 1000,
    };

    #[test]
    fn a_new_rate_divides_by_at_least_ten_windows() {
        let mut r = Rate::default();
        r.record(SHAPE, 0, 10_000.0);
        // 10,000 in the first millisecond: over 10 s, not 1 ms.
        assert_eq!(r.span(SHAPE, 0), 10_000);
        assert!((r.per_second(SHAPE, 0) - 1000.0).abs() < 1e-9);
        // 5.5 s later: 5.5 s elapsed, 5 full windows, so 5 more are added.
        assert_eq!(r.span(SHAPE, 5_500), 10_500);
    }

    #[test]
    fn throttle_is_the_time_until_the_rate_is_back_at_the_quota() {
        let mut r = Rate::default();
        r.record(SHAPE, 0, 20_000.0);
        // 2,000/s over a 10 s span against 1,000/s: (2000-1000)/1000 × 10 s = 10 s.
        assert_eq!(r.throttle_ms(SHAPE, 0, 1000.0), 10_000);
        // Within the quota: none.
        assert_eq!(r.throttle_ms(SHAPE, 0, 2000.0), 0);
        // Bounded by the whole span.
        r.record(SHAPE, 0, 1e9);
        assert_eq!(r.throttle_ms(SHAPE, 0, 1.0), SHAPE.span_ms());
    }

    #[test]
    fn samples_older_than_the_span_are_forgotten() {
        let mut r = Rate::default();
        r.record(SHAPE, 0, 5_000.0);
        r.record(SHAPE, 500, 5_000.0); // same sample
        r.record(SHAPE, 1_200, 1_000.0); // a new one
        assert_eq!(r.samples.len(), 2);
        // 11,000 over 1.2 s elapsed, raised to 10.2 s (1 full window, 9 added).
        assert!((r.per_second(SHAPE, 1_200) - 11_000.0 / 10.2).abs() < 1e-9);
        // 11 s after the first sample opened it is gone; the second one (at 1.2 s) is not, and
        // its 9.8 s count as 10.8 (9 full windows, raised to 10).
        assert!((r.per_second(SHAPE, 11_000) - 1000.0 / 10.8).abs() < 1e-9);
        assert_eq!(r.samples.len(), 1);
        r.purge(SHAPE, 12_200);
        assert!(r.samples.is_empty());
    }

    #[test]
    fn a_steady_sender_below_the_quota_is_never_throttled_and_one_above_is() {
        let mut t: Trackers<&str> = Trackers::new(SHAPE, 10);
        // 900/s in 10 ms steps for 30 s against 1,000/s.
        for ms in (0..30_000u64).step_by(10) {
            assert_eq!(t.record(&"a", ms, 9.0, 1000.0, true), 0, "at {ms} ms");
        }
        // Then 1,500/s: throttled within the span, each time by about the excess.
        let mut last = 0;
        for ms in (30_000..45_000u64).step_by(10) {
            last = t.record(&"a", ms, 15.0, 1000.0, true);
        }
        // 15 s at 1,500/s fills the 11 s span: (1500 - 1000) / 1000 × ~11 s.
        assert!((5_000..6_000).contains(&last), "{last}");
    }

    #[test]
    fn an_unkept_record_over_the_quota_is_taken_back() {
        let mut t: Trackers<&str> = Trackers::new(SHAPE, 10);
        assert!(t.record(&"a", 0, 50_000.0, 1000.0, false) > 0);
        assert_eq!(t.throttle_now(&"a", 0, 1000.0), 0, "nothing left recorded");
        assert!(t.record(&"a", 0, 50_000.0, 1000.0, true) > 0);
        assert!(t.throttle_now(&"a", 0, 1000.0) > 0);
    }

    #[test]
    fn idle_trackers_are_dropped_as_time_passes_not_only_when_full() {
        let mut t: Trackers<u32> = Trackers::new(SHAPE, 1_000);
        for k in 0..100 {
            t.record(&k, 0, 1.0, 1e9, true);
        }
        // A whole span later nothing is left in their samples: records sweep them, a bounded
        // number per call (SWEEP_PER_CALL), so two calls drop all 100.
        t.record(&1_000, SHAPE.span_ms() + 1, 1.0, 1e9, true);
        t.record(&1_000, SHAPE.span_ms() + 2, 1.0, 1e9, true);
        assert_eq!(t.len(), 1);
        // A key recorded again stays while live, and its older index entry is not a leak.
        t.record(&1_000, 2 * SHAPE.span_ms(), 1.0, 1e9, true);
        t.record(&7, 2 * SHAPE.span_ms() + 2, 1.0, 1e9, true);
        assert_eq!(t.len(), 2);
        assert_eq!(t.throttle_now(&99, 2 * SHAPE.span_ms() + 3, 1e9), 0);
        assert_eq!(t.len(), 2, "asking about a key does not track it");
    }

    #[test]
    fn trackers_are_bounded_idle_ones_dropped_and_the_rest_share_the_overflow() {
        let mut t: Trackers<u32> = Trackers::new(SHAPE, 2);
        t.record(&1, 0, 1.0, 1e9, true);
        t.record(&2, 0, 1.0, 1e9, true);
        // Full with live keys: key 3 and key 4 share the overflow rate.
        t.record(&3, 100, 20_000.0, 1e9, true);
        assert_eq!(t.len(), 2);
        assert!(t.throttle_now(&4, 100, 1000.0) > 0, "4 shares 3's overflow");
        // Once 1 and 2 are idle (a whole span later), a new key takes a slot of its own.
        assert_eq!(t.record(&5, 11_000, 1.0, 1000.0, true), 0);
        assert_eq!(t.len(), 1);
    }
}
