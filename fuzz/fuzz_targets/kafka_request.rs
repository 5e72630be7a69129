//! Any bytes as a Kafka request frame (after the length prefix): decode must answer Ok or Err.
#![no_main]

// As in the binary: see busbar-kafka's alloc.rs (kafka-protocol pre-allocates from wire counts).
#[global_allocator]
static ALLOCATOR: busbar_kafka::alloc::Allocator = busbar_kafka::alloc::Allocator;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = busbar_kafka::decode_frame(bytes::Bytes::copy_from_slice(data));
});
