//! `GET /metrics` through a real server: the bus's shared read counters (reads, decoded events,
//! parsed documents) are exposed and grow as subscriptions read a topic.

mod common;

use common::Server;
use serde_json::json;
use std::time::{Duration, Instant};

/// The value of the unlabelled series `name` in a scrape (`None` when absent).
fn metric(s: &Server, name: &str) -> Option<u64> {
    let r = s.call("GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(
        text.contains(&format!("# TYPE {name} counter")),
        "{name} is not a counter"
    );
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn shared_read_counters_grow_as_two_subscriptions_read_a_topic() {
    let s = Server::start();
    for (name, partitions) in [("src", 1), ("a_out", 1), ("b_out", 1)] {
        let body = json!({"name": name, "partitions": partitions});
        assert_eq!(s.json("POST", "/topics", Some(body)).0, 201);
    }
    for (sub, out) in [("a", "a_out"), ("b", "b_out")] {
        let spec = json!({"name": sub, "sources": ["src"], "pattern": {"data": {"n": [{"exists": true}]}},
                          "target": {"topic": out}});
        let (st, v) = s.json("POST", "/subscriptions", Some(spec));
        assert_eq!(st, 201, "{v}");
    }
    let names = [
        "busbar_bus_reads_total",
        "busbar_bus_events_decoded_total",
        "busbar_bus_documents_parsed_total",
    ];
    let before: Vec<u64> = names.iter().map(|n| metric(&s, n).unwrap()).collect();
    let events: Vec<_> = (0..10).map(|n| json!({"value": {"n": n}})).collect();
    let (st, r) = s.json("POST", "/topics/src/events", Some(json!(events)));
    assert_eq!(st, 200, "{r}");
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let delivered: u64 = ["a", "b"]
            .iter()
            .map(|n| s.json("GET", &format!("/subscriptions/{n}"), None).1)
            .map(|v| v["counters"]["delivered"].as_u64().unwrap())
            .sum();
        if delivered == 20 {
            break;
        }
        assert!(Instant::now() < end, "{delivered} of 20 delivered");
        std::thread::sleep(Duration::from_millis(20));
    }
    let after: Vec<u64> = names.iter().map(|n| metric(&s, n).unwrap()).collect();
    assert!(after[0] > before[0], "reads: {before:?} -> {after:?}");
    // Shared: each event is decoded and parsed once for both subscriptions.
    assert_eq!(after[1] - before[1], 10, "decoded: {before:?} -> {after:?}");
    assert_eq!(after[2] - before[2], 10, "parsed: {before:?} -> {after:?}");
    let text = s.call("GET", "/metrics", &[], b"").text();
    for (state, v) in [("running", 1), ("error", 0), ("paused", 0)] {
        let line = format!("busbar_subscription_state{{subscription=\"a\",state=\"{state}\"}} {v}");
        assert!(text.lines().any(|l| l == line), "{line} not in {text}");
    }
}
