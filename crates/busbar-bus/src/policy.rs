//! The retry policy of deliveries and replays, in one place: when an attempt that failed is tried
//! again (exponential backoff with equal jitter, or the target's `Retry-After` when longer, capped
//! and jittered) and when the event is given up (the dead-letter reason).

use crate::spec::Delivery;

/// The jitter source: SplitMix64 from a seed, so a test that fixes the seed sees the same waits
/// every run (STYLE rule 7). Workers and replay runs seed theirs from the process's entropy.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Seeded from the standard library's per-process random keys.
    pub fn from_entropy() -> Self {
        use std::hash::BuildHasher;
        Self(std::collections::hash_map::RandomState::new().hash_one(0u64))
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n.max(1)
    }
}

/// What to do after failed attempt number `attempts` of an event first tried at `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try again after this many milliseconds.
    RetryIn(i64),
    /// Give up; the dead-letter reason.
    Exhausted(&'static str),
}

/// The retry policy, evaluated in one place for deliveries and replays: a negative `Retry-After`
/// ends retrying, then `max_attempts`, then `max_age_s` (measured to when the next attempt would
/// run). The wait is the backoff, or the target's `Retry-After` when longer, capped at
/// `retry_after_max_ms` plus up to 10% jitter; all arithmetic saturates.
pub fn verdict(
    d: &Delivery,
    attempts: u32,
    first: i64,
    now: i64,
    retry_after: Option<i64>,
    jitter: &mut Jitter,
) -> Verdict {
    if retry_after.is_some_and(|ms| ms < 0) {
        return Verdict::Exhausted("retry_after_negative");
    }
    if attempts >= d.max_attempts {
        return Verdict::Exhausted("max_attempts");
    }
    let asked = retry_after.map_or(0, |ms| {
        let capped = ms.min(d.retry_after_max_ms as i64) as u64;
        (capped + jitter.below(capped / 10 + 1)) as i64
    });
    let delay = backoff(d, attempts, jitter).max(asked);
    let age = now.saturating_add(delay).saturating_sub(first);
    if age > (d.max_age_s as i64).saturating_mul(1000) {
        return Verdict::Exhausted("max_age");
    }
    Verdict::RetryIn(delay)
}

/// The wait before retry number `attempts` (1 = after the first attempt): exponential from
/// `backoff_initial_ms`, capped at `backoff_max_ms`, with equal jitter.
pub fn backoff(d: &Delivery, attempts: u32, jitter: &mut Jitter) -> i64 {
    let exp = attempts.saturating_sub(1).min(40);
    let nominal = d
        .backoff_initial_ms
        .saturating_mul(1u64 << exp)
        .min(d.backoff_max_ms);
    (nominal / 2 + jitter.below(nominal / 2 + 1)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j() -> Jitter {
        Jitter::new(7)
    }

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let d = Delivery {
            backoff_initial_ms: 100,
            backoff_max_ms: 1000,
            ..Delivery::default()
        };
        let mut r = j();
        for _ in 0..200 {
            let b1 = backoff(&d, 1, &mut r);
            assert!((50..=100).contains(&b1), "{b1}");
            let b3 = backoff(&d, 3, &mut r);
            assert!((200..=400).contains(&b3), "{b3}");
            let b9 = backoff(&d, 9, &mut r);
            assert!((500..=1000).contains(&b9), "{b9}");
            assert!((500..=1000).contains(&backoff(&d, 1000, &mut r)));
        }
    }

    #[test]
    fn retry_after_is_capped_jittered_and_never_overflows() {
        let d = Delivery {
            backoff_initial_ms: 100,
            backoff_max_ms: 1000,
            retry_after_max_ms: 60_000,
            max_age_s: 604_800,
            ..Delivery::default()
        };
        let now = 1_000_000;
        let mut r = j();
        let huge = crate::deliver::parse_retry_after("99999999999999999999");
        for asked in [Some(i64::MAX), huge, Some(10_000_000_000)] {
            match verdict(&d, 1, now, now, asked, &mut r) {
                Verdict::RetryIn(ms) => assert!((60_000..=66_000).contains(&ms), "{ms}"),
                v => panic!("{asked:?}: {v:?}"),
            }
        }
        let waits: std::collections::HashSet<i64> = (0..50)
            .filter_map(|_| match verdict(&d, 1, now, now, Some(30_000), &mut r) {
                Verdict::RetryIn(ms) => Some(ms),
                _ => None,
            })
            .collect();
        assert!(
            waits.iter().all(|w| (30_000..=33_000).contains(w)),
            "{waits:?}"
        );
        assert!(waits.len() > 1, "jittered: {waits:?}");
        let far = verdict(&d, 1, i64::MIN, i64::MAX, Some(i64::MAX), &mut r);
        assert_eq!(far, Verdict::Exhausted("max_age"));
        assert_eq!(
            verdict(&d, 1, now, now, Some(-1), &mut r),
            Verdict::Exhausted("retry_after_negative")
        );
        assert_eq!(
            verdict(&d, d.max_attempts, now, now, None, &mut r),
            Verdict::Exhausted("max_attempts")
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_waits() {
        let d = Delivery::default();
        let waits = |seed| {
            let mut r = Jitter::new(seed);
            (1..20).map(|a| backoff(&d, a, &mut r)).collect::<Vec<_>>()
        };
        assert_eq!(waits(1), waits(1));
        assert_ne!(waits(1), waits(2));
    }
}
