//! Idempotent producers' state across restarts through the broker's API: the per-partition
//! snapshot keeps a producer whose last batch is far behind the end of the log (past the
//! `REBUILD_RECORDS` a start-up without snapshot scans), start-up reads only the log's tail after
//! the snapshot, and an unusable snapshot (damaged, truncated, another version, covering offsets
//! the log no longer has) never stops start-up nor gives wrong answers: the state is rebuilt from
//! the newest records instead.

mod common;

use busbar_broker::datadir::MemDataDir;
use busbar_broker::{Broker, BrokerConfig, BrokerError};
use busbar_log::batch::{self, NewRecord};
use busbar_log::disk::MemFs;
use common::{idempotent, Instrumented};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Records a start-up without snapshot scans (busbar-broker's `REBUILD_RECORDS`).
const REBUILD_RECORDS: u64 = 100_000;

fn open(dir: &Path) -> Broker {
    Broker::open(BrokerConfig {
        data_dir: dir.into(),
        ..Default::default()
    })
    .expect("the broker opens")
}

fn snapshot_file(dir: &Path) -> PathBuf {
    dir.join("topics/t/0/producers.snapshot")
}

/// Stores `n` events without a producer id, in batches of 10,000.
async fn filler(b: &Broker, n: u64) {
    let mut left = n;
    while left > 0 {
        let k = left.min(10_000);
        let records: Vec<NewRecord> = (0..k)
            .map(|_| NewRecord {
                value: Some(b"f".to_vec()),
                ..NewRecord::default()
            })
            .collect();
        b.produce("t", 0, batch::build(&records)).await.unwrap();
        left -= k;
    }
}

/// A topic where producer 0 stored sequences 0..3 at offsets 0..3, followed by more than
/// `REBUILD_RECORDS` events without a producer id. Answers the high watermark.
async fn far_behind(b: &Broker) -> u64 {
    b.create_topic("t", Some(1), Default::default())
        .await
        .unwrap();
    assert_eq!(b.init_producer_id(None).unwrap(), (0, 0));
    for seq in 0..3 {
        let at = b.produce("t", 0, idempotent(0, 0, seq)).await.unwrap();
        assert_eq!(at.base_offset, seq as u64);
    }
    filler(b, REBUILD_RECORDS + 10).await;
    b.offsets_of("t", 0).unwrap().1
}

/// Producer 0's state is there: a retry of its last batch is answered with the original offset
/// and stores nothing, a gap is refused, and the next sequence goes at the end.
async fn producer_zero_is_remembered(b: &Broker, hw: u64) {
    let retry = b.produce("t", 0, idempotent(0, 0, 2)).await.unwrap();
    assert_eq!(retry.base_offset, 2, "a retry is answered as a duplicate");
    assert_eq!(b.offsets_of("t", 0).unwrap().1, hw, "nothing stored twice");
    assert!(
        matches!(
            b.produce("t", 0, idempotent(0, 0, 7)).await,
            Err(BrokerError::OutOfOrderSequence(_))
        ),
        "a gap is refused"
    );
    let next = b.produce("t", 0, idempotent(0, 0, 3)).await.unwrap();
    assert_eq!(next.base_offset, hw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_far_behind_the_end_keeps_its_state_across_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let hw = far_behind(&b).await;
    b.close().unwrap();
    drop(b);
    let b = open(dir.path());
    let s = b.recovery_summary();
    producer_zero_is_remembered(&b, hw).await;
    assert_eq!(s.producer_snapshots, 1);
    assert_eq!(
        s.producer_scanned, 0,
        "the snapshot is at the end of the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_far_behind_the_end_keeps_its_state_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let hw = far_behind(&b).await;
    assert!(b.maintain().is_empty());
    // More after the snapshot: replayed from the log at start-up.
    filler(&b, 5).await;
    let hw = hw + 5;
    drop(b); // no close: as after kill -9
    let b = open(dir.path());
    let s = b.recovery_summary();
    producer_zero_is_remembered(&b, hw).await;
    assert_eq!(s.producer_snapshots, 1);
    assert_eq!(s.producer_scanned, 5, "only the tail after the snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_reads_no_segment_bytes_after_a_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    far_behind(&b).await;
    b.close().unwrap();
    drop(b);
    let data = Instrumented::new(dir.path());
    let b = Broker::open(BrokerConfig {
        data: Some(data.clone()),
        ..Default::default()
    })
    .unwrap();
    // Segment headers only (the log checks them at open), never the batches.
    let read = data.probe.log_bytes_read();
    assert!(read < 4096, "{read} bytes of segments read at start-up");
    assert_eq!(b.recovery_summary().producer_scanned, 0);
}

/// Rewrites the snapshot's C (bytes 8..16) and fixes its checksum.
fn with_upto(bytes: &[u8], upto: u64) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[8..16].copy_from_slice(&upto.to_be_bytes());
    let n = b.len() - 4;
    let crc = crc32c::crc32c(&b[..n]);
    b[n..].copy_from_slice(&crc.to_be_bytes());
    b
}

#[tokio::test]
async fn an_unusable_snapshot_falls_back_to_the_newest_records() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic("t", Some(1), Default::default())
        .await
        .unwrap();
    b.init_producer_id(None).unwrap();
    for seq in 0..3 {
        b.produce("t", 0, idempotent(0, 0, seq)).await.unwrap();
    }
    b.close().unwrap();
    drop(b);
    let good = std::fs::read(snapshot_file(dir.path())).unwrap();
    let mut flipped = good.clone();
    flipped[30] ^= 1;
    let mut future_version = good.clone();
    future_version[5] = 9;
    let future_version = with_upto(&future_version, 3);
    let damaged: [(&str, Vec<u8>, &str); 6] = [
        ("flipped", flipped, "checksum"),
        ("truncated", good[..good.len() / 2].to_vec(), "checksum"),
        ("empty", Vec::new(), "shorter than a header"),
        ("future version", future_version, "version 9"),
        ("beyond the end", with_upto(&good, 1_000), "ends at 3"),
        ("garbage", vec![0xAB; 1000], "magic"),
    ];
    for (what, bytes, why) in damaged {
        std::fs::write(snapshot_file(dir.path()), &bytes).unwrap();
        let b = open(dir.path());
        let s = b.recovery_summary();
        assert_eq!(s.producer_snapshots, 0, "{what}");
        assert_eq!(
            s.producer_scanned, 3,
            "{what}: rebuilt from the newest records"
        );
        let damage = b.internal_damage();
        assert!(
            damage.len() == 1 && damage[0].contains("snapshot") && damage[0].contains(why),
            "{what}: {damage:?}"
        );
        assert!(!snapshot_file(dir.path()).exists(), "{what}: removed");
        let retry = b.produce("t", 0, idempotent(0, 0, 2)).await.unwrap();
        assert_eq!(retry.base_offset, 2, "{what}: still deduplicated");
        assert_eq!(b.offsets_of("t", 0).unwrap().1, 3, "{what}");
        b.close().unwrap();
        assert!(
            snapshot_file(dir.path()).exists(),
            "{what}: written again at close"
        );
    }
}

fn open_mem(fs: &MemFs) -> Broker {
    Broker::open(BrokerConfig {
        data: Some(Arc::new(MemDataDir::new(fs.clone()))),
        ..Default::default()
    })
    .expect("the broker opens after a power cut")
}

fn sync_policy(p: &str) -> BTreeMap<String, Option<String>> {
    BTreeMap::from([("sync.policy".to_string(), Some(p.to_string()))])
}

#[tokio::test]
async fn a_snapshot_past_a_lost_tail_never_answers_for_later_data() {
    let fs = MemFs::new();
    let b = open_mem(&fs);
    b.create_topic("t", Some(1), Default::default())
        .await
        .unwrap();
    b.init_producer_id(None).unwrap();
    b.init_producer_id(None).unwrap();
    b.produce("t", 0, idempotent(0, 0, 0)).await.unwrap();
    // Producer 1's batch at offset 1 is never synced, but a snapshot taken now holds it.
    b.alter_configs("t", sync_policy("never")).await.unwrap();
    assert_eq!(
        b.produce("t", 0, idempotent(1, 0, 0))
            .await
            .unwrap()
            .base_offset,
        1
    );
    assert!(b.maintain().is_empty());
    drop(b);
    fs.crash(None);

    let b = open_mem(&fs);
    assert_eq!(
        b.offsets_of("t", 0).unwrap().1,
        1,
        "the unsynced batch is lost"
    );
    assert_eq!(b.recovery_summary().producer_snapshots, 0);
    assert!(
        b.internal_damage()[0].contains("ends at 1"),
        "{:?}",
        b.internal_damage()
    );
    // Offset 1 is written again, durably, by producer 0; then a crash before any new snapshot.
    b.alter_configs("t", sync_policy("batch")).await.unwrap();
    assert_eq!(
        b.produce("t", 0, idempotent(0, 0, 1))
            .await
            .unwrap()
            .base_offset,
        1
    );
    drop(b);
    fs.crash(None);

    // The old snapshot would now look usable (C = 2 = high watermark) and answer producer 1's
    // retry with offset 1, which holds producer 0's event: it was removed at the last start.
    let b = open_mem(&fs);
    assert_eq!(b.recovery_summary().producer_snapshots, 0);
    assert_eq!(
        b.produce("t", 0, idempotent(1, 0, 0))
            .await
            .unwrap()
            .base_offset,
        2,
        "stored: the batch the crash took is not in the log"
    );
}
