//! Exactly-once topic targets (issue 18) where the disk fails: events delivered while an earlier
//! one still waits are not delivered again after a power cut, and a transaction record whose
//! write failed is overwritten before any later transaction starts.

use busbar_broker::datadir::{FaultDataDir, MemDataDir};
use busbar_broker::{Broker, BrokerConfig, Event};
use busbar_bus::spec::from_json;
use busbar_bus::Bus;
use busbar_log::disk::MemFs;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn open(data: Arc<dyn busbar_broker::datadir::DataDir>) -> Arc<Broker> {
    Arc::new(
        Broker::open(BrokerConfig {
            data: Some(data),
            ..Default::default()
        })
        .unwrap(),
    )
}

/// The committed (read_committed) values of `topic`'s partition 0.
async fn committed(b: &Broker, topic: &str) -> Vec<String> {
    let events = (b.read_events(topic, 0, 0, 100_000, Duration::ZERO).await).unwrap();
    let value = |e: &busbar_broker::event::StoredEvent| {
        String::from_utf8_lossy(e.value.as_deref().unwrap_or_default()).into_owned()
    };
    events.iter().map(value).collect()
}

async fn wait_committed(b: &Broker, topic: &str, n: usize) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let got = committed(b, topic).await;
        if got.len() >= n {
            return got;
        }
        assert!(Instant::now() < end, "{topic}: only {got:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn topic(b: &Broker, name: &str, configs: &[(&str, &str)]) {
    let configs: BTreeMap<String, String> = (configs.iter())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    b.create_topic(name, Some(1), configs).await.unwrap();
}

/// `e0` cannot be delivered (too large for the target) nor dead-lettered (the dead-letter topic
/// and the retry-state log are full), so it holds the partition's position at 0 while 256 later
/// events are delivered and committed (then reading pauses: a position holds no more). After a
/// power cut the worker reads from 0 again: it must not deliver them a second time, nor stall on
/// the restored list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_delivered_past_one_still_waiting_are_not_delivered_again_after_a_power_cut() {
    let fs = MemFs::new();
    let dir = Arc::new(FaultDataDir::new(
        fs.clone(),
        &["topics/dlq", "internal/retries"],
    ));
    let b = open(dir.clone());
    topic(&b, "src", &[]).await;
    topic(&b, "dst", &[("max.message.bytes", "400")]).await;
    topic(&b, "dlq", &[]).await;
    let bus = Bus::open(b.clone()).unwrap();
    bus.start().await;
    let spec = json!({"name": "s", "sources": ["src"], "start": "earliest",
        "target": {"topic": "dst"}, "dead_letter_topic": "dlq"});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    dir.plan("topics/dlq/0")
        .expect("faulted")
        .set_disk_full(true);
    let retries = dir.plan("internal/retries").expect("faulted");
    retries.set_disk_full(true);
    b.publish("src", vec![Event::keyed("a", "x".repeat(1000))])
        .await
        .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    while retries.failures() == 0 {
        assert!(Instant::now() < end, "e0 was never set aside");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // More than a position holds past a waiting event (256): reading pauses at the limit.
    let events: Vec<Event> = (1..=300)
        .map(|i| Event::keyed(format!("k{i}"), format!("e{i:03}")))
        .collect();
    b.publish("src", events).await.unwrap();
    let got = wait_committed(&b, "dst", 256).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        committed(&b, "dst").await.len(),
        got.len(),
        "reading paused"
    );
    // Power cut: the old broker never runs again.
    fs.crash(None);
    std::mem::forget(bus);
    std::mem::forget(b);
    let b = open(Arc::new(MemDataDir::new(fs.clone())));
    let bus = Bus::open(b.clone()).unwrap();
    bus.start().await;
    // The restored position holds 256 events past e0: the restart must not stall on them.
    wait_committed(&b, "dlq", 1).await;
    wait_committed(&b, "dst", 300).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut got = committed(&b, "dst").await;
    got.sort();
    let want: Vec<String> = (1..=300).map(|i| format!("e{i:03}")).collect();
    assert_eq!(got, want, "delivered once each");
    bus.close().await.unwrap();
}

/// The write that records a transaction fails (the positions log is full): until a roll-back
/// write succeeds no later transaction may start, else settling a record that did reach the
/// disk would take that later transaction's number for its commit. Then the event is
/// delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_transaction_starts_while_a_failed_record_is_not_overwritten() {
    let dir = Arc::new(FaultDataDir::new(MemFs::new(), &["internal/positions"]));
    let b = open(dir.clone());
    topic(&b, "src", &[]).await;
    topic(&b, "dst", &[]).await;
    let bus = Bus::open(b.clone()).unwrap();
    bus.start().await;
    let spec = json!({"name": "s", "sources": ["src"], "start": "earliest",
        "target": {"topic": "dst"}});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    b.publish("src", vec![Event::keyed("a", "e0")])
        .await
        .unwrap();
    wait_committed(&b, "dst", 1).await;
    // A fresh start settles and closes the record: none is left in memory.
    bus.close().await.unwrap();
    let bus = Bus::open(b.clone()).unwrap();
    bus.start().await;
    let plan = dir.plan("internal/positions").expect("faulted");
    plan.set_disk_full(true);
    b.publish("src", vec![Event::keyed("a", "e1")])
        .await
        .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    while plan.failures() == 0 {
        assert!(Instant::now() < end, "the record was never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, appended) = b.offsets_of("dst", 0).unwrap();
    // Worker restarts come every 200 ms: a dozen chances to start another transaction.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        b.offsets_of("dst", 0).unwrap().1,
        appended,
        "a transaction was started (and aborted) while the failed record stood"
    );
    // Nor after its worker stops and starts again: the pending record outlives the worker.
    bus.set_paused("s", true).await.unwrap();
    bus.set_paused("s", false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        b.offsets_of("dst", 0).unwrap().1,
        appended,
        "a transaction was started after the worker's restart"
    );
    plan.set_disk_full(false);
    wait_committed(&b, "dst", 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(committed(&b, "dst").await, ["e0", "e1"]);
    bus.close().await.unwrap();
}
