//! Data the bus cannot decode (issue 14 item 3): a stored batch with a valid CRC whose compressed
//! payload does not inflate (written by an older busbar, or by a tool writing the log directly)
//! is set aside as one dead letter with reason `undecodable`, and the subscription goes on with
//! the events after it; it is never redriven.

use busbar_broker::datadir::{DataDir, MemDataDir};
use busbar_broker::{Broker, BrokerConfig, Event};
use busbar_bus::spec::from_json;
use busbar_bus::{Bus, Filter};
use busbar_log::batch::{assemble, BatchHeader};
use busbar_log::disk::MemFs;
use busbar_log::{Log, LogConfig};
use busbar_testkit::target::{Received, Reply, Target};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn wait_for(t: &Target, n: usize) -> Vec<Received> {
    let end = Instant::now() + Duration::from_secs(20);
    while t.received().len() < n {
        assert!(Instant::now() < end, "only {} of {n}", t.received().len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.received()
}

fn open(dir: &Arc<MemDataDir>) -> Arc<Broker> {
    Arc::new(
        Broker::open(BrokerConfig {
            data: Some(dir.clone()),
            ..Default::default()
        })
        .unwrap(),
    )
}

/// Appends, straight to the partition's log, a gzip batch of one record whose payload is not
/// gzip (its CRC is right, so the log takes it).
fn append_garbage(dir: &MemDataDir) {
    append_garbage_to(dir, "topics/src/0");
}

fn append_garbage_to(dir: &MemDataDir, partition: &str) {
    let log = Log::open(dir.storage(partition).unwrap(), LogConfig::default()).unwrap();
    let h = BatchHeader {
        base_offset: 0,
        batch_length: 0,
        leader_epoch: 0,
        magic: 2,
        crc: 0,
        attributes: 1,
        last_offset_delta: 0,
        base_timestamp: 1_700_000_000_000,
        max_timestamp: 1_700_000_000_000,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: 1,
    };
    log.append(&mut assemble(&h, b"this is not a gzip stream"))
        .unwrap();
    log.close().unwrap();
}

/// A bus over `src` holding {"n":0} at offset 0, an undecodable batch at 1 and {"n":2} at 2,
/// and a `dlq` topic.
async fn src_with_a_bad_batch() -> Bus {
    let dir = Arc::new(MemDataDir::new(MemFs::new()));
    let b = open(&dir);
    for t in ["src", "dlq"] {
        b.create_topic(t, Some(1), BTreeMap::new()).await.unwrap();
    }
    let event = |n: i64| Event::value(json!({ "n": n }).to_string());
    b.publish("src", vec![event(0)]).await.unwrap();
    b.close().unwrap();
    drop(b);
    append_garbage(&dir);
    let b = open(&dir);
    b.publish("src", vec![event(2)]).await.unwrap();
    let bus = Bus::open(b.clone()).unwrap();
    bus.start().await;
    bus
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_batch_is_dead_lettered_and_the_partition_goes_on() {
    let bus = src_with_a_bad_batch().await;
    let t = Target::start(|_, _| Reply::Status(200));
    let spec = json!({"name": "s", "sources": ["src"], "start": "earliest",
        "target": {"url": t.url("/")}, "dead_letter_topic": "dlq"});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    let got = wait_for(&t, 2).await;
    let ns: Vec<i64> = got
        .iter()
        .map(|r| r.json()["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, [0, 2]);
    let letters = bus
        .dead_letters("dlq", &Filter::default(), 10)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let (d, ev) = &letters[0];
    assert_eq!((d.reason.as_str(), d.source_offset), ("undecodable", 1));
    assert_eq!((ev.key.as_ref(), ev.value.as_ref()), (None, None));
    let view = bus.get("s").await.unwrap();
    assert_eq!(view.counters.undecodable, 1);
    assert_eq!(view.counters.dead_lettered, 1);
    // Nothing to deliver again: a redrive leaves it alone.
    let done = bus
        .redrive("dlq", &Filter::default(), 10, false)
        .await
        .unwrap();
    assert_eq!((done.redriven, done.skipped), (0, 0), "{done:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.received().len(), 2);
    bus.close().await.unwrap();
}

/// Event 0 fails once; the batch after it is undecodable. Its retry reads from offset 0 and must
/// not fail on the batch after it (it retried as `storage` forever before, holding the key's
/// events behind it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_next_to_an_undecodable_batch_is_delivered() {
    let bus = src_with_a_bad_batch().await;
    let t = Target::start(|_, n| Reply::Status(if n == 0 { 503 } else { 200 }));
    let spec = json!({"name": "s", "sources": ["src"], "start": "earliest",
        "target": {"url": t.url("/")}, "dead_letter_topic": "dlq",
        "delivery": {"backoff_initial_ms": 100, "backoff_max_ms": 200}});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    let got = wait_for(&t, 3).await;
    let mut ns: Vec<i64> = got
        .iter()
        .map(|r| r.json()["n"].as_i64().unwrap())
        .collect();
    ns.sort();
    assert_eq!(ns, [0, 0, 2]);
    let v = bus.get("s").await.unwrap();
    assert_eq!(
        (v.counters.delivered, v.counters.undecodable),
        (2, 1),
        "{v:?}"
    );
    bus.close().await.unwrap();
}

/// An undecodable batch in the dead-letter topic itself does not break listing the letters
/// around it (the whole listing failed before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_batch_in_the_dead_letter_topic_is_skipped_when_listing() {
    let dir = Arc::new(MemDataDir::new(MemFs::new()));
    let b = open(&dir);
    for t in ["src", "dlq"] {
        b.create_topic(t, Some(1), BTreeMap::new()).await.unwrap();
    }
    b.close().unwrap();
    drop(b);
    append_garbage_to(&dir, "topics/dlq/0");
    let b = open(&dir);
    let bus = Bus::open(b.clone()).unwrap();
    bus.start().await;
    let t = Target::start(|_, _| Reply::Status(400));
    let spec = json!({"name": "s", "sources": ["src"], "start": "earliest",
        "target": {"url": t.url("/")}, "dead_letter_topic": "dlq"});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    b.publish("src", vec![Event::value(json!({"n": 0}).to_string())])
        .await
        .unwrap();
    wait_for(&t, 1).await;
    let end = Instant::now() + Duration::from_secs(10);
    while bus.get("s").await.unwrap().counters.dead_lettered == 0 {
        assert!(Instant::now() < end, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let letters = bus
        .dead_letters("dlq", &Filter::default(), 10)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].0.offset, 1);
    bus.close().await.unwrap();
}
