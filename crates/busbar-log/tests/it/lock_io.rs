//! No fsync under the partition lock: while a roll's, a delete-records' or a retention pass's
//! fsync is stuck, reads, stats and appends on other threads still complete; and rolls that leave
//! unsynced bytes behind (synced later, outside the lock) lose no acknowledged record in a crash.

use crate::common::gate::{within, Gate, GatedStorage};
use crate::common::*;
use busbar_log::disk::{FaultStorage, MemFs, MemStorage, Storage};
use busbar_log::{batch, CleanupPolicy, Log, LogConfig, LogError, ManualClock};
use busbar_testkit::{for_each_seed, Rng};
use std::sync::Arc;
use std::time::Duration;

const QUICK: Duration = Duration::from_secs(2);

fn gated(cfg: LogConfig) -> (Arc<Gate>, MemStorage, Arc<Log>) {
    let gate = Gate::new();
    let mem = MemStorage::new();
    let storage = GatedStorage::new(mem.clone(), gate.clone());
    let log = Log::open(Arc::new(storage) as Arc<dyn Storage>, cfg).unwrap();
    (gate, mem, Arc::new(log))
}

/// While something holds a sync at the gate: stats, a read and an append (its write, not its
/// wait) on other threads each finish quickly. Answers what failed to, for the message.
fn others_proceed(log: &Arc<Log>) -> Vec<&'static str> {
    let mut stuck = vec![];
    let l = log.clone();
    if within(QUICK, move || l.stats()).is_none() {
        stuck.push("stats");
    }
    let l = log.clone();
    if within(QUICK, move || l.read(0, 1 << 20).map(|r| r.data.len())).is_none() {
        stuck.push("read");
    }
    let l = log.clone();
    let wrote = within(QUICK, move || {
        l.append_start(&mut batch_of(2, "side", 2, 5)).is_ok()
    });
    if wrote != Some(true) {
        stuck.push("append_start");
    }
    stuck
}

#[test]
fn a_roll_does_not_fsync_under_the_lock() {
    let clock = ManualClock::new(1_000_000);
    let (gate, _mem, log) = gated(LogConfig {
        clock: clock.clone(),
        segment_ms: 1_000,
        ..small(1 << 20)
    });
    for i in 0..5 {
        log.append(&mut batch_of(2, "a", 2, i)).unwrap();
    }
    clock.advance(2_000); // the next append rolls the (old, non-empty) segment
    gate.close();
    let roller = {
        let log = log.clone();
        std::thread::spawn(move || log.append(&mut batch_of(2, "roll", 2, 9)))
    };
    gate.wait_blocked(1);
    let stuck = others_proceed(&log);
    gate.open();
    let at = roller.join().unwrap().unwrap();
    assert!(stuck.is_empty(), "{stuck:?} waited for a roll's fsync");
    assert_eq!(at.base_offset, 10);
    assert_eq!(log.stats().segments, 2);
    log.sync().unwrap();
    let st = log.stats();
    assert_eq!(st.high_watermark, st.next_offset);
    assert_eq!(read_all(&log).len() as u64, st.next_offset);
}

fn several_segments(cfg: LogConfig) -> (Arc<Gate>, MemStorage, Arc<Log>) {
    let (gate, mem, log) = gated(cfg);
    for i in 0..40 {
        log.append(&mut batch_of(2, "old", 2, 1_000 + i)).unwrap();
    }
    assert!(log.stats().segments > 3);
    (gate, mem, log)
}

#[test]
fn delete_records_does_not_fsync_under_the_lock_and_moves_the_start_once_durable() {
    let (gate, mem, log) = several_segments(small(1024));
    gate.close();
    let deleter = {
        let log = log.clone();
        std::thread::spawn(move || log.delete_records(30))
    };
    gate.wait_blocked(1);
    let l = log.clone();
    let start_meanwhile = within(QUICK, move || l.stats().log_start);
    let stuck = others_proceed(&log);
    gate.open();
    assert_eq!(deleter.join().unwrap().unwrap(), 30);
    assert!(
        stuck.is_empty(),
        "{stuck:?} waited for delete-records' fsync"
    );
    assert_eq!(
        start_meanwhile,
        Some(0),
        "not moved before its checkpoint is durable"
    );
    assert_eq!(log.stats().log_start, 30);
    log.sync().unwrap();
    drop(log);
    mem.fs().crash(None);
    assert_eq!(reopen(&mem, small(1024)).stats().log_start, 30);
}

#[test]
fn retention_does_not_fsync_under_the_lock() {
    let cfg = LogConfig {
        retention_bytes: Some(2048),
        cleanup: CleanupPolicy::Delete,
        ..small(1024)
    };
    let (gate, _mem, log) = several_segments(cfg);
    gate.close();
    let pass = {
        let log = log.clone();
        std::thread::spawn(move || log.enforce_retention())
    };
    gate.wait_blocked(1);
    let stuck = others_proceed(&log);
    gate.open();
    let report = pass.join().unwrap().unwrap();
    assert!(stuck.is_empty(), "{stuck:?} waited for retention's fsync");
    assert!(report.segments_deleted > 0);
    assert!(log.stats().log_start > 0);
}

#[test]
fn a_failed_directory_sync_after_a_roll_acknowledges_nothing() {
    let clock = ManualClock::new(1_000_000);
    let storage = FaultStorage::new(MemStorage::new());
    let plan = storage.plan();
    let mem = storage.inner().clone();
    let cfg = LogConfig {
        clock: clock.clone(),
        segment_ms: 1_000,
        ..small(1 << 20)
    };
    let log = Log::open(Arc::new(storage), cfg.clone()).unwrap();
    log.append(&mut batch_of(2, "a", 2, 1)).unwrap();
    clock.advance(2_000);
    let (_, ticket) = log.append_start(&mut batch_of(2, "b", 2, 1)).unwrap();
    // The syncer's operations: the old segment's fdatasync, the directory sync, the new one's.
    plan.fail_nth(plan.ops() + 1);
    let err = log.wait_durable(ticket.unwrap()).unwrap_err();
    assert!(matches!(err, LogError::Failed(_)), "{err}");
    assert_eq!(
        log.stats().high_watermark,
        2,
        "nothing in the new segment published"
    );
    assert!(matches!(
        log.append(&mut batch_of(1, "c", 1, 1)),
        Err(LogError::Failed(_))
    ));
    drop(log);
    mem.fs().crash(None);
    let log = reopen(&mem, cfg);
    assert!(log.stats().high_watermark >= 2);
    assert!(log.recovery().damaged_segments.is_empty());
}

/// Appends many batches without waiting (several rolls with no sync between them), acknowledges
/// some by waiting on their tickets, sometimes syncs the directory as an unrelated atomic write
/// would, then crashes (half the seeds keep a torn part of the unsynced bytes).
/// Answers how many recoveries removed segments past the log's torn end.
fn rolls_then_crash(seed: u64) -> u64 {
    let mut cuts = 0;
    let mut rng = Rng::new(seed);
    let cfg = LogConfig {
        checkpoint_interval_bytes: 1 << 20,
        ..small(1024 + rng.below(1024))
    };
    let mem = MemFs::new().dir("p");
    let mut acked = 0u64;
    let mut values: Vec<Vec<u8>> = vec![];
    for round in 0..3 {
        let log = reopen(&mem, cfg.clone());
        cuts += u64::from(!log.recovery().removed_torn_segments.is_empty());
        let stats = log.stats();
        let evs = read_all(&log);
        assert!(
            stats.high_watermark >= acked,
            "seed {seed} round {round}: lost acked records"
        );
        assert!(
            log.recovery().damaged_segments.is_empty(),
            "seed {seed}: {:?}",
            log.recovery()
        );
        for (i, e) in evs.iter().enumerate() {
            assert_eq!(e.0, i as u64, "seed {seed}: offsets contiguous");
            if let Some(v) = values.get(i) {
                assert_eq!(e.2.as_ref(), Some(v), "seed {seed}: offset {i} changed");
            }
        }
        values.truncate(evs.len());
        values.extend(evs[values.len()..].iter().map(|e| e.2.clone().unwrap()));
        acked = stats.high_watermark;
        let mut tickets = vec![];
        for _ in 0..rng.below(80) {
            let v = format!("s{seed}-{}", values.len()).into_bytes();
            let mut b = batch::build(&[rec(Some(b"k"), Some(&v), 1)]);
            let (at, t) = log.append_start(&mut b).unwrap();
            assert_eq!(at.base_offset, values.len() as u64);
            values.push(v);
            tickets.push((at.last_offset + 1, t.unwrap()));
            if rng.chance(10) {
                mem.sync_dir().unwrap();
            }
            if rng.chance(5) {
                let (upto, t) = tickets[rng.below(tickets.len() as u64) as usize];
                log.wait_durable(t).unwrap();
                acked = acked.max(upto);
            }
        }
        drop(log);
        mem.fs().crash(rng.chance(50).then(|| rng.next_u64()));
    }
    cuts
}

#[test]
fn rolls_without_syncs_then_power_loss_keep_every_acknowledged_record() {
    let mut cuts = 0;
    for_each_seed(300, |seed| cuts += rolls_then_crash(seed));
    assert!(cuts > 0, "no crash left segments past the torn end");
}
