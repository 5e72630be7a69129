//! Arbitrary bytes and mutated real batches into the batch validator and the log: never a panic,
//! and a refused batch writes nothing.

use crate::common::*;
use busbar_log::batch;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2000), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_refused_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = batch::validate_new(&bytes, 1 << 20);
        let _ = batch::validate_stored(&bytes);
        let _ = batch::Records::new(&bytes).take(100).count();
    }

    #[test]
    fn mutated_batches_either_append_whole_or_change_nothing(flips in proptest::collection::vec((0usize..200, any::<u8>()), 1..6)) {
        let (s, log) = mem_log(small(4096));
        let mut b = batch_of(3, "m", 2, 1);
        for (at, x) in flips {
            let i = at % b.len();
            b[i] ^= x | 1;
        }
        let before = s.fs().total_bytes();
        match log.append(&mut b) {
            Ok(_) => prop_assert_eq!(read_all(&log).len(), 3),
            Err(_) => prop_assert_eq!(s.fs().total_bytes(), before),
        }
    }
}

/// `PROPTEST_CASES` when set (the reliability battery's long tier raises it), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
