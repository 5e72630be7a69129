//! Any bytes as a `POST /topics/{t}/events` body, under each media type the route accepts (the
//! first byte picks one; binary CloudEvents get their `ce-*` headers): decoding answers events or
//! an error, never a panic.
#![no_main]

#[global_allocator]
static ALLOCATOR: busbar_kafka::alloc::Allocator = busbar_kafka::alloc::Allocator;

use axum::http::{HeaderMap, HeaderValue};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let mut h = HeaderMap::new();
    let ct = match pick % 5 {
        0 => "application/json",
        1 => "application/cloudevents+json",
        2 => "application/cloudevents-batch+json",
        3 => "text/plain",
        _ => "",
    };
    if !ct.is_empty() {
        h.insert("content-type", HeaderValue::from_static(ct));
    }
    if pick % 5 == 3 {
        for (k, v) in [("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "/s"), ("ce-type", "t")] {
            h.insert(k, HeaderValue::from_static(v));
        }
    }
    let _ = busbar_http::decode_publish(&h, body);
});
