//! The bus on a disk that fails: a subscription's internal writes (retry state, positions) fail
//! for a while and no event is lost or reordered (issue 14: no position passes an event that is
//! not durably parked, delivered or dead-lettered).

use busbar_broker::datadir::FaultDataDir;
use busbar_broker::{Broker, BrokerConfig, Event};
use busbar_bus::spec::from_json;
use busbar_bus::Bus;
use busbar_log::disk::MemFs;
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

fn ns(got: &[Received]) -> Vec<i64> {
    got.iter()
        .map(|r| r.json()["n"].as_i64().unwrap())
        .collect()
}

/// Events of one key arrive while the retry-state log cannot be written: they cannot be parked
/// behind the one in flight. Once the disk is back they are parked and delivered, in key order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_could_not_be_parked_are_read_again_not_skipped() {
    let dir = Arc::new(FaultDataDir::new(MemFs::new(), &["internal/retries"]));
    let b = Arc::new(
        Broker::open(BrokerConfig {
            data: Some(dir.clone()),
            ..Default::default()
        })
        .unwrap(),
    );
    b.create_topic("src", Some(1), BTreeMap::new())
        .await
        .unwrap();
    let bus = Bus::open(b.clone()).unwrap();
    bus.start().await;
    // The first delivery takes a while: the key's lane is busy while the disk is full.
    let t = Target::start(|_, n| match n {
        0 => Reply::After(Duration::from_millis(1500), 200),
        _ => Reply::Status(200),
    });
    let spec = json!({"name": "s", "sources": ["src"], "start": "earliest",
        "target": {"url": t.url("/")}, "delivery": {"ordering": "key"}});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    let event = |n: i64| Event::keyed("k", json!({ "n": n }).to_string());
    b.publish("src", vec![event(0)]).await.unwrap();
    wait_for(&t, 1).await;
    let plan = dir.plan("internal/retries").expect("faulted");
    plan.set_disk_full(true);
    b.publish("src", vec![event(1), event(2)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    plan.set_disk_full(false);
    let got = wait_for(&t, 3).await;
    assert_eq!(ns(&got), [0, 1, 2]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.received().len(), 3, "each delivered once");
    bus.close().await.unwrap();
}
