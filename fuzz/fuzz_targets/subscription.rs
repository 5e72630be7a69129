//! Any bytes as a `POST /subscriptions` body: parsing and validation answer Ok or Err.
#![no_main]

// As in the binary: see busbar-kafka's alloc.rs (kafka-protocol pre-allocates from wire counts).
#[global_allocator]
static ALLOCATOR: busbar_kafka::alloc::Allocator = busbar_kafka::alloc::Allocator;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(spec) = busbar_bus::spec::from_json(&v) {
            let _ = spec.compile();
        }
    }
});
