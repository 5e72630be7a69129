//! Dev-only test kit: a seeded, reproducible random number generator and seed plumbing.
//!
//! `http` is a tiny blocking HTTP client for end-to-end tests of the real server; `history` records
//! Jepsen-style histories of queue operations and checks them for anomalies; `target` is a
//! scripted HTTP target server for delivery tests.
//! Random tests take their seeds from here so a failure prints the seed that reproduces it
//! (`BUSBAR_SEED=<n>` re-runs one seed; `BUSBAR_SEEDS=<n>` changes how many seeds a test runs).

pub mod history;
pub mod http;
pub mod postgres;
pub mod s3;
pub mod target;
pub mod tmpfs;

/// SplitMix64: small, fast, and good enough for test schedules. Not for anything secret.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator that always yields the same sequence for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0) has no value");
        self.next_u64() % n
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    /// Text of `len` bytes drawn from JSON's and TOML's punctuation, digits and keywords, so a
    /// parser gets past its first byte more often than with uniform noise.
    pub fn json_ish(&mut self, len: usize) -> Vec<u8> {
        const POOL: &[&[u8]] = &[
            b"{",
            b"}",
            b"[",
            b"]",
            b":",
            b",",
            b"\"",
            b"\"a\"",
            b"\"data\"",
            b"0",
            b"-1",
            b"1e309",
            b"2.5",
            b"true",
            b"null",
            b"=",
            b"\n",
            b"[[x]]",
            b"\"numeric\"",
            b"\">\"",
            b"\"prefix\"",
            b"\"anything-but\"",
            b"\"$or\"",
            b"\"exists\"",
            b"\"wildcard\"",
            b"*",
            b"\\",
            b"\\u0000",
            b" ",
            b"\"cidr\"",
            b"\"10.0.0.0/8\"",
        ];
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            out.extend_from_slice(POOL[self.below(POOL.len() as u64) as usize]);
        }
        out
    }

    /// `input` with a few random byte flips, insertions and deletions.
    pub fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut v = input.to_vec();
        for _ in 0..1 + self.below(4) {
            let at = self.below(v.len() as u64 + 1) as usize;
            match self.below(3) {
                0 if at < v.len() => v[at] ^= 1 << self.below(8),
                1 => v.insert(at, self.next_u64() as u8),
                _ if at < v.len() => {
                    v.remove(at);
                }
                _ => {}
            }
        }
        v
    }
}

/// The seeds a randomized test should run: `BUSBAR_SEED` alone if set, else `default_count` seeds
/// (or `BUSBAR_SEEDS` of them) starting at 1.
pub fn seeds(default_count: u64) -> Vec<u64> {
    if let Some(one) = std::env::var("BUSBAR_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![one];
    }
    let n = std::env::var("BUSBAR_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_count);
    (1..=n).collect()
}

/// Runs `f` for every seed, printing the seed and how to re-run it when `f` panics.
pub fn for_each_seed(default_count: u64, mut f: impl FnMut(u64)) {
    for seed in seeds(default_count) {
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(seed)));
        if let Err(e) = res {
            eprintln!("failed with seed {seed}; reproduce with BUSBAR_SEED={seed}");
            std::panic::resume_unwind(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert_eq!((a.next_u64(), a.below(10)), (b.next_u64(), b.below(10)));
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }
}
