//! The subscriptions of a topic share its reading (issue 14 item 21): N subscriptions on one
//! topic cost one decode and one JSON parse per event, not N, and match through one indexed rule
//! set; a subscription updated with a new pattern never uses a match result of its old one.

use busbar_broker::datadir::MemDataDir;
use busbar_broker::{Broker, BrokerConfig, Event};
use busbar_bus::spec::from_json;
use busbar_bus::{Bus, BusConfig, ResetTo};
use busbar_log::disk::MemFs;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SUBS: usize = 20;
const EVENTS: usize = 200;

async fn bus_with(topics: &[&str], read_cache_bytes: usize) -> Bus {
    let b = Arc::new(
        Broker::open(BrokerConfig {
            data: Some(Arc::new(MemDataDir::new(MemFs::new()))),
            ..Default::default()
        })
        .unwrap(),
    );
    for t in topics {
        b.create_topic(t, Some(1), BTreeMap::new()).await.unwrap();
    }
    let config = BusConfig {
        read_cache_bytes,
        ..Default::default()
    };
    let bus = Bus::open_with(b, config).unwrap();
    bus.start().await;
    bus
}

/// The JSON values in `topic` (partition 0), once it holds `n` events.
async fn values(broker: &Broker, topic: &str, n: u64) -> Vec<Value> {
    // Committed events only: a topic target's deliveries are visible once their transaction
    // commits (its markers count in the high watermark, not as events).
    let end = Instant::now() + Duration::from_secs(20);
    let read = || broker.read_events(topic, 0, 0, 100_000, Duration::ZERO);
    let mut events = read().await.unwrap();
    while (events.len() as u64) < n {
        assert!(
            Instant::now() < end,
            "{topic} holds {} of {n} events",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        events = read().await.unwrap();
    }
    let value = |v: &Option<Vec<u8>>| serde_json::from_slice(v.as_deref().unwrap()).unwrap();
    events.iter().map(|e| value(&e.value)).collect()
}

/// `SUBS` subscriptions on `src`, subscription `i` taking the events addressed to `s{i}` to
/// `out`; then `EVENTS` events, addressed round robin. Answers the bus once all are delivered.
async fn fan_out(read_cache_bytes: usize) -> Bus {
    let bus = bus_with(&["src", "out"], read_cache_bytes).await;
    for i in 0..SUBS {
        let spec = json!({"name": format!("s{i}"), "sources": ["src"],
            "pattern": {"data": {"to": [format!("s{i}")]}}, "target": {"topic": "out"}});
        bus.create(from_json(&spec).unwrap()).await.unwrap();
    }
    let events = (0..EVENTS)
        .map(|n| Event::value(json!({"to": format!("s{}", n % SUBS), "n": n}).to_string()))
        .collect();
    bus.broker().publish("src", events).await.unwrap();
    let got = values(bus.broker(), "out", EVENTS as u64).await;
    let mut ns: Vec<u64> = got.iter().map(|v| v["n"].as_u64().unwrap()).collect();
    ns.sort_unstable();
    assert_eq!(
        ns,
        (0..EVENTS as u64).collect::<Vec<_>>(),
        "each event once"
    );
    bus
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_subscriptions_on_one_topic_decode_and_parse_each_event_once() {
    let bus = fan_out(64 << 20).await;
    let stats = bus.read_stats();
    assert_eq!(stats.events_decoded, EVENTS as u64, "{stats:?}");
    assert_eq!(stats.documents_parsed, EVENTS as u64, "{stats:?}");
    assert!(stats.cache_hits >= SUBS as u64 - 1, "{stats:?}");
    bus.close().await.unwrap();
}

/// The counters are real: with sharing turned off (`read_cache_bytes = 0`, how every
/// subscription read before) each subscription decodes and parses every event itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_sharing_each_subscription_decodes_and_parses_every_event() {
    let bus = fan_out(0).await;
    let stats = bus.read_stats();
    assert_eq!(stats.events_decoded, (SUBS * EVENTS) as u64, "{stats:?}");
    assert_eq!(stats.documents_parsed, (SUBS * EVENTS) as u64, "{stats:?}");
    assert_eq!(stats.cache_hits, 0, "{stats:?}");
    bus.close().await.unwrap();
}

/// A cache smaller than one chunk keeps nothing: every worker reads for itself, and each event is
/// still delivered once by the one subscription it is addressed to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_smaller_than_a_chunk_still_delivers_each_event_once() {
    let bus = fan_out(1).await;
    let stats = bus.read_stats();
    assert!(stats.events_decoded >= EVENTS as u64, "{stats:?}");
    bus.close().await.unwrap();
}

/// A source topic deleted and created again is read from its own beginning: the cached chunks of
/// the old topic (same offsets) are never served for the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_topic_is_not_served_from_the_old_topics_chunks() {
    let bus = bus_with(&["src", "out"], 64 << 20).await;
    let spec = json!({"name": "a", "sources": ["src"], "start": "earliest",
        "target": {"topic": "out"}});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    let publish = |incarnation: u64| {
        (0..5)
            .map(|n| Event::value(json!({"incarnation": incarnation, "n": n}).to_string()))
            .collect::<Vec<_>>()
    };
    let b = bus.broker().clone();
    b.publish("src", publish(1)).await.unwrap();
    values(&b, "out", 5).await;
    b.delete_topic("src").await.unwrap();
    b.create_topic("src", Some(1), BTreeMap::new())
        .await
        .unwrap();
    b.publish("src", publish(2)).await.unwrap();
    let got = values(&b, "out", 10).await;
    let seen: Vec<u64> = got
        .iter()
        .map(|v| v["incarnation"].as_u64().unwrap())
        .collect();
    assert_eq!(seen, [1, 1, 1, 1, 1, 2, 2, 2, 2, 2], "{got:?}");
    bus.close().await.unwrap();
}

/// A subscription updated with a new pattern and moved back reads the cached events again and
/// matches them with its new pattern: the result cached for its old pattern is not used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_updated_subscription_never_uses_its_old_match_result() {
    let bus = bus_with(&["src", "out", "other"], 64 << 20).await;
    let spec = |to: &str| {
        json!({"name": "a", "sources": ["src"], "start": "earliest",
            "pattern": {"data": {"to": [to]}}, "target": {"topic": "out"}})
    };
    bus.create(from_json(&spec("x")).unwrap()).await.unwrap();
    // Another subscription on the topic keeps its rules (and so the cached result) alive.
    let other = json!({"name": "b", "sources": ["src"], "start": "earliest",
        "pattern": {"data": {"to": ["z"]}}, "target": {"topic": "other"}});
    bus.create(from_json(&other).unwrap()).await.unwrap();
    let events = (0..10)
        .map(|n| {
            Event::value(json!({"to": if n % 2 == 0 { "x" } else { "y" }, "n": n}).to_string())
        })
        .collect();
    bus.broker().publish("src", events).await.unwrap();
    let got = values(bus.broker(), "out", 5).await;
    assert!(got.iter().all(|v| v["to"] == "x"), "{got:?}");
    let before = bus.read_stats();

    bus.update("a", from_json(&spec("y")).unwrap())
        .await
        .unwrap();
    bus.reset("a", ResetTo::Earliest {}).await.unwrap();
    let got = values(bus.broker(), "out", 10).await;
    let to: Vec<&str> = got.iter().map(|v| v["to"].as_str().unwrap()).collect();
    assert_eq!(to, ["x", "x", "x", "x", "x", "y", "y", "y", "y", "y"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(values(bus.broker(), "out", 10).await.len(), 10, "no more");
    let after = bus.read_stats();
    assert_eq!(
        after.events_decoded, before.events_decoded,
        "read from the cache"
    );
    assert_eq!(
        after.documents_parsed,
        before.documents_parsed + 10,
        "matched again"
    );
    bus.close().await.unwrap();
}
