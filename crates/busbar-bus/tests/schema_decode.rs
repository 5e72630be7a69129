//! Issue 17, the bus part: with a decode hook installed (`Bus::set_decoder`), patterns match
//! schema-framed events (magic byte 0, schema id, body) by their decoded content; the hook runs
//! once per event for all the subscriptions of a topic; an event that does not decode is matched
//! as before and delivered like any other; what a target gets is the stored bytes.

use busbar_broker::datadir::MemDataDir;
use busbar_broker::{Broker, BrokerConfig, Event};
use busbar_bus::decode::Decoder;
use busbar_bus::spec::from_json;
use busbar_bus::Bus;
use busbar_log::disk::MemFs;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A value framed with schema `id` whose body is one byte, `qty`.
fn framed(id: u8, qty: u8) -> Vec<u8> {
    vec![0, 0, 0, 0, id, qty]
}

/// Knows schema id 7 only (`{"qty": <byte>}`); counts its calls.
fn decoder(calls: Arc<AtomicUsize>) -> Decoder {
    Decoder::new("urn:test:schema:", move |v: &[u8]| {
        calls.fetch_add(1, Relaxed);
        match v {
            [0, 0, 0, 0, 7, q] => Some(json!({"qty": q})),
            _ => None,
        }
    })
}

async fn bus(topics: &[&str]) -> Bus {
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
    Bus::open(b).unwrap()
}

/// The values in `topic` once it holds `n` events (and a moment more for any extra).
async fn values(broker: &Broker, topic: &str, n: u64) -> Vec<Vec<u8>> {
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
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = read().await.unwrap();
    events.into_iter().map(|e| e.value.unwrap()).collect()
}

async fn subscribe(bus: &Bus, name: &str, pattern: serde_json::Value, target: &str) {
    let spec = json!({"name": name, "sources": ["src"], "pattern": pattern,
        "target": {"topic": target}});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patterns_match_framed_events_by_their_decoded_content() {
    let bus = bus(&["src", "big", "small", "seven"]).await;
    let calls = Arc::new(AtomicUsize::new(0));
    bus.set_decoder(Some(decoder(calls.clone())));
    bus.start().await;
    let gt5 = json!({"data": {"qty": [{"numeric": [">", 5]}]}});
    subscribe(&bus, "big", gt5, "big").await;
    let le5 = json!({"data": {"qty": [{"numeric": ["<=", 5]}]}});
    subscribe(&bus, "small", le5, "small").await;
    let seven = json!({"dataschema": ["urn:test:schema:7"],
        "datacontenttype": ["application/json"]});
    subscribe(&bus, "seven", seven, "seven").await;
    let mut events: Vec<Event> = (1..=10).map(|q| Event::value(framed(7, q))).collect();
    // Not framed: matched as JSON, as before. Unknown id 9: no `data`, skipped, not stuck.
    events.push(Event::value(r#"{"qty": 8}"#));
    events.push(Event::value(framed(9, 50)));
    events.push(Event::value(framed(7, 6)));
    bus.broker().publish("src", events).await.unwrap();
    let big = values(bus.broker(), "big", 7).await;
    let mut want: Vec<Vec<u8>> = (6..=10).map(|q| framed(7, q)).collect();
    want.push(br#"{"qty": 8}"#.to_vec());
    want.push(framed(7, 6));
    assert_eq!(big, want, "stored bytes, the matching ones only");
    let small = values(bus.broker(), "small", 5).await;
    assert_eq!(small, (1..=5).map(|q| framed(7, q)).collect::<Vec<_>>());
    assert_eq!(values(bus.broker(), "seven", 11).await.len(), 11);
    assert_eq!(
        calls.load(Relaxed),
        12,
        "each framed event decoded once for the three subscriptions"
    );
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_decoder_framed_events_have_no_data() {
    let bus = bus(&["src", "big", "any"]).await;
    bus.start().await;
    let gt5 = json!({"data": {"qty": [{"numeric": [">", 5]}]}});
    subscribe(&bus, "big", gt5, "big").await;
    subscribe(&bus, "any", json!(null), "any").await;
    let events = vec![Event::value(framed(7, 9)), Event::value(r#"{"qty": 8}"#)];
    bus.broker().publish("src", events).await.unwrap();
    assert_eq!(values(bus.broker(), "any", 2).await.len(), 2);
    assert_eq!(
        values(bus.broker(), "big", 1).await,
        [br#"{"qty": 8}"#.to_vec()]
    );
    bus.close().await.unwrap();
}
