//! The Kafka produce path's group commit (`busbar-broker/src/sync.rs`) on a fault-injecting disk:
//! concurrent produces share fsyncs and every acknowledged batch was synced before its answer;
//! a failed fsync fails the waiting produces and every later one, and nothing is acknowledged
//! that was not synced.

use busbar_broker::datadir::FaultDataDir;
use busbar_broker::{Broker, BrokerConfig, OffsetCommit};
use busbar_log::batch::{self, NewRecord};
use busbar_log::disk::{FaultPlan, MemFs};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

fn record(i: u32) -> Vec<u8> {
    batch::build(&[NewRecord {
        value: Some(format!("event {i}").into_bytes()),
        ..NewRecord::default()
    }])
}

async fn setup() -> (Arc<Broker>, Arc<FaultDataDir>, Arc<FaultPlan>) {
    let faulted = ["topics/", "internal/offsets"];
    let dir = Arc::new(FaultDataDir::new(MemFs::new(), &faulted));
    let b = Broker::open(BrokerConfig {
        data: Some(dir.clone()),
        ..Default::default()
    })
    .unwrap();
    b.create_topic("t", Some(1), BTreeMap::new()).await.unwrap();
    let plan = dir.plan("topics/t/0").expect("opened");
    (Arc::new(b), dir, plan)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_produces_share_fsyncs_and_are_acked_only_after_one() {
    let (b, _dir, plan) = setup().await;
    plan.set_sync_delay(Duration::from_millis(5));
    let before = plan.syncs();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let b = b.clone();
            let plan = plan.clone();
            tokio::spawn(async move {
                let at = b.produce("t", 0, record(i)).await.unwrap();
                // Acknowledged: at least one fsync finished since this batch was written.
                (at.base_offset, plan.syncs())
            })
        })
        .collect();
    let mut offsets = Vec::new();
    for t in tasks {
        let (offset, syncs_seen) = t.await.unwrap();
        assert!(
            syncs_seen > before,
            "offset {offset} acked before any fsync"
        );
        offsets.push(offset);
    }
    offsets.sort();
    assert_eq!(
        offsets,
        (0..200).collect::<Vec<u64>>(),
        "every batch got its own offset"
    );
    let syncs = plan.syncs() - before;
    assert!(
        syncs < 100,
        "200 concurrent produces took {syncs} fsyncs: no group commit"
    );
    let (_, high) = b.offsets_of("t", 0).unwrap();
    assert_eq!(high, 200, "all 200 durable and visible");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_fails_waiting_and_later_produces() {
    let (b, _dir, plan) = setup().await;
    b.produce("t", 0, record(0)).await.unwrap();
    // The next mutating operation is the next batch's append; the one after, its fsync.
    plan.fail_nth(plan.ops() + 1);
    let failed = b.produce("t", 0, record(1)).await;
    let err = failed
        .expect_err("a batch whose fsync failed was acknowledged")
        .to_string();
    assert!(err.contains("fdatasync"), "not the fsync failing: {err}");
    let later = b.produce("t", 0, record(2)).await;
    assert!(
        later.is_err(),
        "the partition must stay offline after a failed fsync: {later:?}"
    );
    let (_, high) = b.offsets_of("t", 0).unwrap();
    assert_eq!(high, 1, "only the synced batch is visible");
}

/// An idempotent producer's batch: producer `pid`, epoch 0, sequence `seq`, one 700-byte event
/// (two do not fit in a 1 KiB segment).
fn idempotent(pid: i64, seq: i32, i: u32) -> Vec<u8> {
    let plain = batch::build(&[NewRecord {
        value: Some(format!("event {i:0>694}").into_bytes()),
        ..NewRecord::default()
    }]);
    let h = batch::BatchHeader::parse(&plain).unwrap();
    batch::assemble(
        &batch::BatchHeader {
            producer_id: pid,
            producer_epoch: 0,
            base_sequence: seq,
            ..h
        },
        &plain[batch::HEADER_BYTES..],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_a_batch_whose_fsync_failed_is_not_acknowledged() {
    let (b, _dir, plan) = setup().await;
    let (pid, _) = b.init_producer_id(None).unwrap();
    b.produce("t", 0, idempotent(pid, 0, 0)).await.unwrap();
    plan.set_sync_delay(Duration::from_millis(100));
    // The batch's append is the next mutating operation; its fsync, the one after.
    plan.fail_nth(plan.ops() + 1);
    let original = tokio::spawn({
        let b = b.clone();
        async move { b.produce("t", 0, idempotent(pid, 1, 1)).await }
    });
    // A retry while the original's fsync runs (a second connection), and one after it failed
    // (the client retrying error 56 on its connection): neither may be acknowledged.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let during = b.produce("t", 0, idempotent(pid, 1, 1)).await;
    let failed = original.await.unwrap();
    assert!(failed.is_err(), "the original was acked: {failed:?}");
    assert!(
        during.is_err(),
        "a retry racing a failing fsync was acked: {during:?}"
    );
    let after = b.produce("t", 0, idempotent(pid, 1, 1)).await;
    assert!(
        after.is_err(),
        "a retry after the failed fsync was acked with the original offset: {after:?}"
    );
    let (_, high) = b.offsets_of("t", 0).unwrap();
    assert_eq!(high, 1, "nothing past the synced batch is visible");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_waits_for_the_original_fsync_and_gets_its_offsets() {
    let (b, _dir, plan) = setup().await;
    let (pid, _) = b.init_producer_id(None).unwrap();
    plan.set_sync_delay(Duration::from_millis(100));
    let before = plan.syncs();
    let original = tokio::spawn({
        let b = b.clone();
        async move { b.produce("t", 0, idempotent(pid, 0, 0)).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let retry = b.produce("t", 0, idempotent(pid, 0, 0)).await.unwrap();
    assert!(
        plan.syncs() > before,
        "the retry was acknowledged before the original's fsync finished"
    );
    assert_eq!(retry, original.await.unwrap().unwrap(), "same offsets");
    let (_, high) = b.offsets_of("t", 0).unwrap();
    assert_eq!(high, 1, "stored once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_of_one_idempotent_batch_are_stored_once() {
    let (b, _dir, plan) = setup().await;
    // Each batch rolls the segment, and a roll syncs under the log's lock: the first copy is in
    // the middle of its write for 50 ms while the others arrive.
    b.alter_configs(
        "t",
        [("segment.bytes".to_string(), Some("1024".to_string()))].into(),
    )
    .await
    .unwrap();
    let (pid, _) = b.init_producer_id(None).unwrap();
    b.produce("t", 0, idempotent(pid, 0, 0)).await.unwrap();
    plan.set_sync_delay(Duration::from_millis(50));
    let copies: Vec<_> = (0..4)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move { b.produce("t", 0, idempotent(pid, 1, 1)).await })
        })
        .collect();
    let mut answers = Vec::new();
    for c in copies {
        answers.push(c.await.unwrap().unwrap());
    }
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "copies answered different offsets: {answers:?}"
    );
    let (_, high) = b.offsets_of("t", 0).unwrap();
    assert_eq!(high, 2, "a copy was stored twice");
    b.produce("t", 0, idempotent(pid, 2, 2))
        .await
        .expect("the next sequence is accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offset_commit_larger_than_one_internal_batch_is_stored_whole() {
    let (b, dir, _) = setup().await;
    b.create_topic("wide", Some(300), BTreeMap::new())
        .await
        .unwrap();
    // 300 commits with 4,000-byte metadata: about 1.2 MB, past the 1 MiB batch limit.
    let commits: Vec<OffsetCommit> = (0..300)
        .map(|p| OffsetCommit {
            topic: "wide".into(),
            partition: p,
            offset: 0,
            metadata: format!("{p:0>4000}"),
        })
        .collect();
    b.commit_offsets("g", "", -1, commits).await.unwrap();
    let too_long = OffsetCommit {
        topic: "wide".into(),
        partition: 0,
        offset: 1,
        metadata: "m".repeat(4097),
    };
    assert!(
        matches!(
            b.commit_offsets("g", "", -1, vec![too_long]).await,
            Err(busbar_broker::BrokerError::OffsetMetadataTooLarge { size: 4097, .. })
        ),
        "commit metadata is bounded (offset.metadata.max.bytes)"
    );
    drop(b);
    let b = Broker::open(BrokerConfig {
        data: Some(dir.clone()),
        ..Default::default()
    })
    .unwrap();
    for p in 0..300 {
        let c = b.committed("g", "wide", p).expect("kept across a restart");
        assert_eq!(c.metadata, format!("{p:0>4000}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_that_fails_part_way_leaves_no_offsets_to_a_new_topic_of_the_name() {
    let (b, dir, _) = setup().await;
    let commit = OffsetCommit {
        topic: "t".into(),
        partition: 0,
        offset: 0,
        metadata: String::new(),
    };
    b.produce("t", 0, record(0)).await.unwrap();
    b.commit_offsets("g", "", -1, vec![commit]).await.unwrap();
    let offsets = dir.plan("internal/offsets").expect("opened");
    offsets.fail_nth(offsets.ops());
    let deleted = b.delete_topic("t").await;
    assert!(deleted.is_err(), "the offsets write was to fail");
    assert!(b.list_topics().is_empty(), "the topic is gone all the same");
    b.create_topic("t", Some(1), BTreeMap::new()).await.unwrap();
    assert_eq!(
        b.committed("g", "t", 0),
        None,
        "the new topic inherited the deleted one's committed offset"
    );
}
