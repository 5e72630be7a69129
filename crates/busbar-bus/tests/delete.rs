//! Deleting a subscription is all or nothing, at any size (issue 14 item 9): a subscription with
//! more retry entries than one internal batch holds is deleted and created again; a delete whose
//! save fails changes nothing; a delete whose clean-up fails (or the process dies during it) is
//! done, and what it left neither resurfaces nor blocks the name.

use busbar_broker::datadir::FaultDataDir;
use busbar_broker::{Broker, BrokerConfig, Event};
use busbar_bus::spec::from_json;
use busbar_bus::{Bus, BusError};
use busbar_log::disk::MemFs;
use busbar_testkit::target::{Reply, Target};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn open(dir: Arc<FaultDataDir>) -> (Arc<Broker>, Bus) {
    let b = Arc::new(
        Broker::open(BrokerConfig {
            data: Some(dir),
            ..Default::default()
        })
        .unwrap(),
    );
    if b.describe_topic("src").is_err() {
        b.create_topic("src", Some(1), BTreeMap::new())
            .await
            .unwrap();
    }
    let bus = Bus::open(b.clone()).unwrap();
    bus.start().await;
    (b, bus)
}

/// A subscription whose deliveries all fail and wait an hour for their next attempt.
fn failing(url: &str, waiting_max: u32) -> Value {
    json!({"name": "s", "sources": ["src"], "start": "earliest", "target": {"url": url},
        "delivery": {"backoff_initial_ms": 3_600_000, "backoff_max_ms": 3_600_000,
                     "concurrency": 64, "waiting_max": waiting_max}})
}

async fn publish(b: &Broker, n: u64) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let events = chunk
            .iter()
            .map(|i| Event::value(json!({ "n": i }).to_string()))
            .collect();
        b.publish("src", events).await.unwrap();
    }
}

async fn wait_retrying(bus: &Bus, n: usize) {
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let v = bus.get("s").await.unwrap();
        if v.retrying >= n {
            return;
        }
        assert!(
            Instant::now() < end,
            "{} of {n} waiting: {}",
            v.retrying,
            v.state
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 20,000 retry entries: their tombstones alone pass the 1 MiB batch limit of the retry-state
/// log. The delete succeeds, the name can be created again and starts empty, also after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_with_twenty_thousand_retry_entries_is_deleted_and_created_again() {
    const N: u64 = 20_000;
    let fs = MemFs::new();
    let dir = Arc::new(FaultDataDir::new(fs.clone(), &[]));
    let (b, bus) = open(dir.clone()).await;
    let t = Target::start(|_, _| Reply::Status(503));
    publish(&b, N).await;
    let spec = failing(&t.url("/"), 30_000);
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    wait_retrying(&bus, N as usize).await;
    bus.delete("s").await.unwrap();
    assert!(matches!(
        bus.get("s").await,
        Err(BusError::UnknownSubscription(_))
    ));
    let latest = json!({"name": "s", "sources": ["src"], "start": "latest",
        "target": {"url": t.url("/")}});
    bus.create(from_json(&latest).unwrap()).await.unwrap();
    assert_eq!(bus.get("s").await.unwrap().retrying, 0);
    bus.close().await.unwrap();
    let (_b, bus) = open(Arc::new(FaultDataDir::new(fs, &[]))).await;
    assert_eq!(bus.get("s").await.unwrap().retrying, 0, "after a restart");
    bus.close().await.unwrap();
}

/// The subscriptions document cannot be saved: the delete fails and the subscription is as it
/// was, still delivering; deleting again once the disk is back works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_whose_save_fails_changes_nothing() {
    let dir = Arc::new(FaultDataDir::new(MemFs::new(), &["meta"]));
    let (b, bus) = open(dir.clone()).await;
    let t = Target::ok();
    let spec = json!({"name": "s", "sources": ["src"], "target": {"url": t.url("/")}});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    let plan = dir.plan("meta").expect("faulted");
    plan.set_disk_full(true);
    assert!(bus.delete("s").await.is_err());
    plan.set_disk_full(false);
    bus.get("s").await.expect("still there");
    publish(&b, 1).await;
    t.wait(Duration::from_secs(20), |r| r.len() == 1);
    bus.delete("s").await.unwrap();
    bus.close().await.unwrap();
}

/// The retry-state log fails while a delete removes the subscription's entries: the delete is
/// done (the subscriptions document is the commit point), not an error that leaves the
/// subscription half gone. After a power cut there, the name is free and starts empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_whose_clean_up_fails_is_done_and_leaves_nothing_in_the_way() {
    let fs = MemFs::new();
    let dir = Arc::new(FaultDataDir::new(fs.clone(), &["internal/retries"]));
    let (b, bus) = open(dir.clone()).await;
    let t = Target::start(|_, _| Reply::Status(503));
    publish(&b, 50).await;
    bus.create(from_json(&failing(&t.url("/"), 100)).unwrap())
        .await
        .unwrap();
    wait_retrying(&bus, 50).await;
    let plan = dir.plan("internal/retries").expect("faulted");
    plan.set_disk_full(true);
    let deleted = bus.delete("s").await;
    let after = bus.get("s").await;
    assert!(
        deleted.is_ok() || after.is_ok(),
        "the delete failed ({deleted:?}) and the subscription is gone ({after:?})"
    );
    assert!(after.is_err(), "the delete is done");

    // Power cut with the entries still stored; the disk works again after it.
    fs.crash(None);
    std::mem::forget(bus);
    std::mem::forget(b);
    let (b, bus) = open(Arc::new(FaultDataDir::new(fs, &[]))).await;
    assert!(bus.get("s").await.is_err(), "deleted for good");
    assert!(bus.list().await.is_empty());
    let ok = Target::ok();
    let spec = json!({"name": "s", "sources": ["src"], "start": "latest",
        "target": {"url": ok.url("/")}});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    assert_eq!(bus.get("s").await.unwrap().retrying, 0);
    b.publish("src", vec![Event::value(json!({"n": 999}).to_string())])
        .await
        .unwrap();
    let got = ok.wait(Duration::from_secs(20), |r| !r.is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(got[0].json()["n"], 999, "no old entry came back");
    assert_eq!(ok.received().len(), 1);
    bus.close().await.unwrap();
}

/// A delete whose position clean-up fails (disk full), then a power cut: the subscription is
/// gone, and the next start-up removes its positions and counters (before, only names with
/// retry entries or replay runs were visited: the rows stayed on disk for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_left_by_an_interrupted_delete_are_removed_at_start_up() {
    use busbar_broker::datadir::DataDir;
    let fs = MemFs::new();
    let dir = Arc::new(FaultDataDir::new(fs.clone(), &["internal/positions"]));
    let (b, bus) = open(dir.clone()).await;
    let ok = Target::ok();
    let spec = json!({"name": "s", "sources": ["src"], "start": "earliest",
        "target": {"url": ok.url("/")}});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    publish(&b, 5).await;
    ok.wait(Duration::from_secs(20), |r| r.len() >= 5);
    let end = Instant::now() + Duration::from_secs(20);
    while bus.get("s").await.unwrap().lag != 0 {
        assert!(Instant::now() < end, "positions never committed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    dir.plan("internal/positions")
        .expect("faulted")
        .set_disk_full(true);
    let _ = bus.delete("s").await;
    assert!(bus.get("s").await.is_err(), "the delete is done");
    fs.crash(None);
    std::mem::forget(bus);
    std::mem::forget(b);

    let dir = Arc::new(FaultDataDir::new(fs.clone(), &[]));
    let (b, bus) = open(dir.clone()).await;
    bus.close().await.unwrap();
    drop(bus);
    drop(b);
    let storage = dir.storage("internal/positions").unwrap();
    let store =
        busbar_bus::positions::PositionStore::open(storage, Arc::new(busbar_log::SystemClock))
            .unwrap();
    assert!(
        store.of("s").is_empty(),
        "positions left: {:?}",
        store.of("s")
    );
    assert!(store.counters("s").is_none(), "counters left");
}
