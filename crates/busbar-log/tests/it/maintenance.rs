//! Maintenance (retention, delete-records, compaction, tick) on logs that are offline or closed, and
//! cancelling a long pass by closing the log. Fault-injecting disk over the in-memory file system.

use crate::common::*;
use busbar_log::disk::{self, FaultStorage, MemStorage, Storage};
use busbar_log::{batch, CleanupPolicy, Log, LogConfig, LogError, ManualClock};
use std::sync::Arc;

/// Everything a maintenance pass could change on disk: file names and the checkpoint bytes.
fn disk_state(s: &MemStorage) -> (Vec<String>, Option<Vec<u8>>) {
    let mut names = s.list().unwrap();
    names.sort();
    (names, disk::read_all(s, "checkpoint").unwrap())
}

fn retaining(clock: Arc<ManualClock>) -> LogConfig {
    LogConfig {
        clock,
        retention_ms: Some(60_000),
        cleanup: CleanupPolicy::CompactDelete,
        delete_retention_ms: 0,
        ..small(1024)
    }
}

#[test]
fn an_offline_log_refuses_every_maintenance_pass_and_publishes_nothing() {
    let clock = ManualClock::new(1_000_000);
    let storage = FaultStorage::new(MemStorage::new());
    let plan = storage.plan();
    let inner = storage.inner().clone();
    let log = Log::open(Arc::new(storage), retaining(clock.clone())).unwrap();
    for i in 0..40 {
        log.append(&mut batch_of(2, "old", 2, 1_000 + i)).unwrap();
    }
    assert!(log.stats().segments > 3);
    plan.fail_nth(plan.ops() + 1); // the append's write succeeds, its fdatasync fails
    assert!(matches!(
        log.append(&mut batch_of(2, "lost", 2, 1_000)),
        Err(LogError::Failed(_))
    ));
    let before = log.stats();
    let on_disk = disk_state(&inner);
    let read_before = log.read(0, 1 << 20).unwrap();
    clock.advance(10_000_000); // every sealed segment is now past retention
    assert!(matches!(log.enforce_retention(), Err(LogError::Failed(_))));
    assert!(matches!(log.compact(), Err(LogError::Failed(_))));
    assert!(matches!(log.delete_records(2), Err(LogError::Failed(_))));
    assert!(matches!(log.tick(), Err(LogError::Failed(_))));
    assert!(matches!(log.sync(), Err(LogError::Failed(_))));
    let after = log.stats();
    assert_eq!(
        (after.high_watermark, after.log_start, after.segments),
        (before.high_watermark, before.log_start, before.segments),
        "nothing was published or deleted"
    );
    assert_eq!(disk_state(&inner), on_disk, "no checkpoint or file written");
    // The batch whose fsync failed never becomes visible.
    assert_eq!(log.read(0, 1 << 20).unwrap(), read_before);
    assert!(log
        .read(before.high_watermark, 1 << 20)
        .unwrap()
        .data
        .is_empty());
}

#[test]
fn the_interval_policy_tick_refuses_an_offline_log() {
    let clock = ManualClock::new(1_000_000);
    let storage = FaultStorage::new(MemStorage::new());
    let plan = storage.plan();
    let cfg = LogConfig {
        sync: busbar_log::SyncPolicy::Interval(100),
        ..retaining(clock.clone())
    };
    let log = Log::open(Arc::new(storage), cfg).unwrap();
    log.append(&mut batch_of(2, "a", 2, 1_000)).unwrap();
    clock.advance(1_000);
    plan.fail_nth(plan.ops()); // the tick's fdatasync fails
    assert!(log.tick().is_err());
    assert!(matches!(log.tick(), Err(LogError::Failed(_))));
    log.append(&mut batch_of(2, "b", 2, 1_000)).unwrap_err();
}

#[test]
fn a_closed_log_refuses_maintenance_and_writes_no_file() {
    let clock = ManualClock::new(1_000_000);
    let cfg = retaining(clock.clone());
    let (s, log) = mem_log(cfg.clone());
    for i in 0..40 {
        log.append(&mut batch_of(2, "old", 2, 1_000 + i)).unwrap();
    }
    log.close().unwrap();
    let on_disk = disk_state(&s);
    clock.advance(10_000_000);
    assert!(matches!(log.enforce_retention(), Err(LogError::Closed)));
    assert!(matches!(log.compact(), Err(LogError::Closed)));
    assert!(matches!(log.delete_records(2), Err(LogError::Closed)));
    assert!(matches!(log.tick(), Err(LogError::Closed)));
    assert_eq!(
        disk_state(&s),
        on_disk,
        "no checkpoint, .tmp or .cleaned file"
    );
    drop(log);
    let log = reopen(&s, cfg);
    assert!(
        log.recovery().clean,
        "the clean checkpoint was not overwritten"
    );
    assert_eq!(log.stats().log_start, 0);
}

#[test]
fn closing_cancels_a_long_compaction_between_segments_and_waits_for_it() {
    let clock = ManualClock::new(1_000);
    let storage = FaultStorage::new(MemStorage::new());
    let plan = storage.plan();
    let inner = storage.inner().clone();
    let cfg = LogConfig {
        clock,
        cleanup: CleanupPolicy::Compact,
        ..small(1024)
    };
    let log = Arc::new(Log::open(Arc::new(storage), cfg).unwrap());
    for i in 0..400u64 {
        let key = format!("k{}", i % 4);
        let value = format!("{i:0>40}");
        log.append(&mut batch::build(&[rec(
            Some(key.as_bytes()),
            Some(value.as_bytes()),
            1000,
        )]))
        .unwrap();
    }
    let sealed = log.stats().segments as u64 - 1;
    assert!(sealed >= 20, "{sealed}");
    // Every sealed segment holds superseded records: a full pass rewrites each one, syncing its
    // new file and its two index files.
    plan.set_sync_delay(std::time::Duration::from_millis(20));
    let start = plan.syncs();
    let pass = {
        let log = log.clone();
        let plan = plan.clone();
        std::thread::spawn(move || {
            let r = log.compact();
            (r, plan.syncs())
        })
    };
    while plan.syncs() == start {
        std::thread::yield_now();
    }
    log.close().unwrap();
    let (r, syncs_at_end) = pass.join().unwrap();
    assert!(matches!(r, Err(LogError::Closed)), "{r:?}");
    assert!(
        syncs_at_end - start < 3 * sealed / 2,
        "the pass stopped early: {} syncs of {}",
        syncs_at_end - start,
        3 * sealed
    );
    let leftovers: Vec<_> = inner
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".tmp") || n.ends_with(".cleaned"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn the_periodic_checkpoint_does_not_hold_the_state_lock_during_its_fsyncs() {
    let storage = FaultStorage::new(MemStorage::new());
    let plan = storage.plan();
    let cfg = LogConfig {
        checkpoint_interval_bytes: 1, // every sync is followed by a checkpoint
        ..small(1 << 20)
    };
    let log = Arc::new(Log::open(Arc::new(storage), cfg).unwrap());
    log.append(&mut batch_of(2, "a", 2, 1)).unwrap();
    let delay = std::time::Duration::from_millis(400);
    plan.set_sync_delay(delay);
    let start = plan.syncs();
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || log.append(&mut batch_of(2, "b", 2, 1)).unwrap())
    };
    // The group-commit sync is done: the writer is now in the checkpoint (four more fsyncs).
    while plan.syncs() == start {
        std::thread::yield_now();
    }
    let t = std::time::Instant::now();
    let stats = log.stats();
    let waited = t.elapsed();
    writer.join().unwrap();
    assert!(
        waited < delay * 3 / 4,
        "stats waited {waited:?} for the checkpoint's fsyncs"
    );
    assert_eq!(
        stats.high_watermark, 4,
        "the appended batch is visible once synced"
    );
}
