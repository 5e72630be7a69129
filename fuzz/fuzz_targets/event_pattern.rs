//! Any text as an event pattern (and as an event): parse and match must answer, never panic.
#![no_main]

// As in the binary: see busbar-kafka's alloc.rs (kafka-protocol pre-allocates from wire counts).
#[global_allocator]
static ALLOCATOR: busbar_kafka::alloc::Allocator = busbar_kafka::alloc::Allocator;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(p) = busbar_rules::Pattern::parse_str(text) {
        let event = serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
        let _ = p.matches(&event);
    }
});
