//! What the broker reports to `/metrics` from its state (`broker/observe.rs`, `lag.rs`,
//! `metrics.rs`), through its public API with a manual clock: consumer-group lag in offsets and
//! seconds with Burrow's status as commits arrive, duplicates answered from producer state,
//! produce counters, and a partition offline after a failed fsync.

mod common;

use busbar_broker::datadir::FaultDataDir;
use busbar_broker::lag::Status;
use busbar_broker::{Broker, BrokerConfig, Event, ManualClock, OffsetCommit};
use busbar_log::batch::{self, NewRecord};
use busbar_log::disk::MemFs;
use std::collections::BTreeMap;
use std::sync::Arc;

const T0: i64 = 1_800_000_000_000;

async fn broker(clock: Arc<ManualClock>) -> (Broker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(BrokerConfig {
        data_dir: dir.path().into(),
        clock,
        ..Default::default()
    })
    .unwrap();
    b.create_topic("t", Some(1), BTreeMap::new()).await.unwrap();
    (b, dir)
}

async fn commit(b: &Broker, offset: u64) {
    let c = OffsetCommit {
        topic: "t".into(),
        partition: 0,
        offset,
        metadata: String::new(),
    };
    b.commit_offsets("g", "", -1, vec![c]).await.unwrap();
}

async fn publish(b: &Broker, n: usize) {
    let events = (0..n).map(|i| Event::keyed("k", format!("{i}"))).collect();
    b.publish("t", events).await.unwrap();
}

async fn status(b: &Broker) -> (u64, f64, Status) {
    tokio::task::yield_now().await;
    let lags = b.group_lag();
    assert_eq!(lags.len(), 1, "{lags:?}");
    (lags[0].lag, lags[0].lag_seconds, lags[0].status)
}

#[tokio::test]
async fn group_lag_follows_burrows_rules_as_commits_arrive() {
    let clock = ManualClock::new(T0);
    let (b, _dir) = broker(clock.clone()).await;
    publish(&b, 10).await;
    clock.advance(5_000);
    commit(&b, 4).await;
    let (lag, secs, st) = status(&b).await;
    assert_eq!((lag, st), (6, Status::Ok), "one fresh commit");
    assert!(
        (secs - 5.0).abs() < 0.01,
        "the first unconsumed event is 5 s old: {secs}"
    );

    // The consumer stops moving while events keep coming: STALL, then STOP once its silence
    // outlasts the window.
    for _ in 0..3 {
        clock.advance(60_000);
        publish(&b, 5).await;
        commit(&b, 4).await;
    }
    assert_eq!(status(&b).await.2, Status::Stall);
    clock.advance(200_000);
    assert_eq!(status(&b).await.2, Status::Stop);

    // It moves, but slower than the producers: WARN.
    for offset in [10, 14, 18] {
        clock.advance(60_000);
        publish(&b, 10).await;
        commit(&b, offset).await;
    }
    assert_eq!(status(&b).await.2, Status::Warn);

    // It goes back: REWIND. Then it catches up: OK with no lag and no age.
    clock.advance(60_000);
    commit(&b, 2).await;
    assert_eq!(status(&b).await.2, Status::Rewind);
    let (_, hw) = b.offsets_of("t", 0).unwrap();
    commit(&b, hw).await;
    assert_eq!(status(&b).await, (0, 0.0, Status::Ok));

    // Its offsets deleted: no longer reported, and its window forgotten at once (a group of the
    // same name committing a lower offset is not a rewind).
    commit(&b, 30).await;
    b.delete_group("g").await.unwrap();
    assert!(b.group_lag().is_empty());
    commit(&b, 2).await;
    assert_eq!(status(&b).await.2, Status::Ok);
}

#[tokio::test]
async fn time_lag_comes_from_the_first_event_left_when_retention_removed_the_committed_one() {
    let clock = ManualClock::new(T0);
    let (b, _dir) = broker(clock.clone()).await;
    publish(&b, 5).await;
    clock.advance(10_000);
    publish(&b, 5).await;
    commit(&b, 0).await;
    b.delete_records("t", 0, Some(5)).await.unwrap();
    clock.advance(1_000);
    let (lag, secs, _) = status(&b).await;
    assert_eq!(lag, 10);
    assert!(
        (secs - 1.0).abs() < 0.01,
        "the first event left is 1 s old: {secs}"
    );
}

#[tokio::test]
async fn a_deleted_topics_series_go_with_it() {
    let (b, _dir) = broker(ManualClock::new(T0)).await;
    b.metrics().produced("t", "http", "ok", 3, 30);
    b.delete_topic("t").await.unwrap();
    assert_eq!(b.metrics().produce_events.get(&["t"]), 0);
    let mut out = String::new();
    b.metrics().encode(&mut out);
    assert!(!out.contains("topic=\"t\""), "{out}");
}

#[tokio::test]
async fn a_retry_answered_from_producer_state_counts_as_a_duplicate() {
    let (b, _dir) = broker(ManualClock::new(T0)).await;
    let (pid, _) = b.init_producer_id(None).unwrap();
    b.produce("t", 0, common::idempotent(pid, 0, 0))
        .await
        .unwrap();
    assert_eq!(b.metrics().producer_duplicates.get(&["t"]), 0);
    let again = b
        .produce_start("t", 0, common::idempotent(pid, 0, 0))
        .await
        .unwrap();
    assert!(again.is_duplicate(), "front ends count no events for it");
    assert_eq!(
        again.durable().await.unwrap().base_offset,
        0,
        "answered as the original"
    );
    assert_eq!(b.metrics().producer_duplicates.get(&["t"]), 1);
    assert_eq!(b.offsets_of("t", 0).unwrap().1, 1, "stored once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_is_reported_offline_after_a_failed_fsync() {
    let dir = Arc::new(FaultDataDir::new(MemFs::new(), &["topics/"]));
    let b = Broker::open(BrokerConfig {
        data: Some(dir.clone()),
        ..Default::default()
    })
    .unwrap();
    b.create_topic("t", Some(2), BTreeMap::new()).await.unwrap();
    let offline = |b: &Broker| -> Vec<bool> {
        let d = b.describe_topic("t").unwrap();
        d.partitions.iter().map(|p| p.offline).collect()
    };
    assert_eq!(offline(&b), [false, false]);
    let plan = dir.plan("topics/t/0").expect("opened");
    plan.fail_nth(plan.ops() + 1);
    let record = batch::build(&[NewRecord {
        value: Some(b"v".to_vec()),
        ..NewRecord::default()
    }]);
    assert!(b.produce("t", 0, record).await.is_err());
    assert_eq!(offline(&b), [true, false], "only the failed partition");
    assert!(
        b.disk_space().is_none(),
        "no real file system under a fault disk"
    );
}
