//! Any bytes as a produced record batch: the log's validation, then the broker's event decoding
//! (which decompresses, bounded) must answer Ok or Err.
#![no_main]

// As in the binary: see busbar-kafka's alloc.rs (kafka-protocol pre-allocates from wire counts).
#[global_allocator]
static ALLOCATOR: busbar_kafka::alloc::Allocator = busbar_kafka::alloc::Allocator;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if busbar_log::batch::BatchHeader::parse(data).is_ok() {
        let _ = busbar_broker::event::decode("t", 0, data, 0);
    }
});
