//! Subscription specs from random and mutated JSON: each is rejected with a clear error or
//! accepted, never a panic.

/// Reliability I1 in CI: random JSON-ish subscription bodies are refused with a field path or
/// accepted, never a panic; the same entry point `fuzz/fuzz_targets/subscription.rs` fuzzes.
#[test]
fn random_subscription_bodies_are_validated_without_panics() {
    busbar_testkit::for_each_seed(20, |seed| {
        let mut rng = busbar_testkit::Rng::new(seed);
        let valid = br#"{"name":"s","sources":["a"],"pattern":{"data":{"n":[{"numeric":[">",1]}]}},"target":{"url":"http://h:1/"},"delivery":{"max_attempts":3}}"#;
        for _ in 0..200 {
            let body = if rng.chance(50) {
                let n = rng.below(120) as usize;
                rng.json_ish(n)
            } else {
                rng.mutate(valid)
            };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
                continue;
            };
            match busbar_bus::spec::from_json(&v).and_then(|s| s.compile()) {
                Ok(_) => {}
                Err(e) => assert!(e.to_string().contains("invalid subscription"), "{e}"),
            }
        }
    });
}
