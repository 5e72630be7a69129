//! Reliability I1 in CI: the request decoder the server uses, on random frames and on valid frames
//! with random damage, with the binary's allocator. It must answer Ok or Err for every input (the
//! same entry point `fuzz/fuzz_targets/kafka_request.rs` fuzzes with libFuzzer).

use busbar_testkit::{for_each_seed, Rng};
use bytes::Bytes;

#[global_allocator]
static ALLOCATOR: busbar_kafka::alloc::Allocator = busbar_kafka::alloc::Allocator;

/// Every served (key, version) as a minimal valid-looking header with a few body bytes.
fn seeds_of(rng: &mut Rng) -> Vec<Vec<u8>> {
    busbar_kafka::ADVERTISED
        .iter()
        .flat_map(|(key, lo, hi)| (*lo..=*hi).map(move |v| (*key, v)))
        .map(|(key, v)| {
            let mut f = Vec::new();
            f.extend_from_slice(&(key as i16).to_be_bytes());
            f.extend_from_slice(&v.to_be_bytes());
            f.extend_from_slice(&7i32.to_be_bytes());
            f.extend_from_slice(&[0, 1, b'c', 0]);
            let n = rng.below(64) as usize;
            f.extend(rng.bytes(n));
            f
        })
        .collect()
}

#[test]
fn random_and_damaged_frames_decode_to_ok_or_err() {
    for_each_seed(20, |seed| {
        let mut rng = Rng::new(seed);
        let frames = seeds_of(&mut rng);
        for f in &frames {
            for _ in 0..20 {
                let damaged = rng.mutate(f);
                let _ = busbar_kafka::decode_frame(Bytes::from(damaged));
            }
        }
        for _ in 0..500 {
            let n = rng.below(200) as usize;
            let _ = busbar_kafka::decode_frame(Bytes::from(rng.bytes(n)));
        }
    });
}
