//! Retention by time and size, delete-records and key compaction, through the public API, with a
//! manual clock.

use crate::common::*;
use busbar_log::batch;
use busbar_log::{CleanupPolicy, LogConfig, LogError, ManualClock};
use std::collections::HashMap;
use std::sync::Arc;

#[test]
fn time_retention_deletes_whole_old_segments_only() {
    let clock = ManualClock::new(10_000_000);
    let cfg = LogConfig {
        clock: clock.clone(),
        retention_ms: Some(60_000),
        ..small(1024)
    };
    let (_s, log) = mem_log(cfg);
    for i in 0..40 {
        log.append(&mut batch_of(2, "old", 2, 1_000_000 + i))
            .unwrap();
    }
    let old_end = log.stats().next_offset;
    for i in 0..40 {
        log.append(&mut batch_of(2, "new", 2, 10_000_000 + i))
            .unwrap();
    }
    let before = log.stats();
    let rep = log.enforce_retention().unwrap();
    let after = log.stats();
    assert!(rep.segments_deleted > 0, "{rep:?}");
    assert!(
        after.log_start > 0 && after.log_start <= old_end,
        "{after:?}"
    );
    assert_eq!(
        after.segments as u64,
        before.segments as u64 - rep.segments_deleted
    );
    // Every new record is still there; nothing below the log start is served.
    let evs = read_all(&log);
    assert_eq!(
        evs.iter()
            .filter(|e| e.2.as_ref().unwrap().starts_with(b"new"))
            .count(),
        80
    );
    assert!(matches!(
        log.read(0, 100),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    // A second pass with nothing expired deletes nothing.
    assert_eq!(log.enforce_retention().unwrap().segments_deleted, 0);
}

#[test]
fn size_retention_keeps_the_log_under_the_limit_but_never_the_active_segment() {
    let cfg = LogConfig {
        retention_bytes: Some(3000),
        ..small(1024)
    };
    let (_s, log) = mem_log(cfg);
    for i in 0..100 {
        log.append(&mut batch_of(2, &format!("{i}"), 2, i)).unwrap();
    }
    log.enforce_retention().unwrap();
    let st = log.stats();
    assert!(st.size_bytes <= 3000 + 1024, "{st:?}");
    assert!(st.size_bytes >= 3000 - 1024, "{st:?}");
    assert_eq!(read_all(&log).last().unwrap().0, 199);
    let tiny = LogConfig {
        retention_bytes: Some(0),
        ..small(1024)
    };
    let (_s, log) = mem_log(tiny);
    log.append(&mut batch_of(2, "only", 2, 1)).unwrap();
    log.enforce_retention().unwrap();
    assert_eq!(
        read_all(&log).len(),
        2,
        "the active segment is never deleted"
    );
}

#[test]
fn delete_records_moves_the_log_start_durably() {
    let cfg = small(1024);
    let (s, log) = mem_log(cfg.clone());
    for i in 0..50 {
        log.append(&mut batch_of(2, &format!("{i}"), 2, i)).unwrap();
    }
    let segs = log.stats().segments;
    assert_eq!(log.delete_records(61).unwrap(), 61);
    assert!(log.stats().segments < segs);
    assert!(matches!(
        log.read(60, 10),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(read_all(&log).first().unwrap().0, 61);
    assert_eq!(
        log.delete_records(10).unwrap(),
        61,
        "the log start never moves back"
    );
    assert!(matches!(
        log.delete_records(101),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    drop(log);
    s.fs().crash(None);
    let log = reopen(&s, cfg);
    assert_eq!(log.stats().log_start, 61);
    assert_eq!(read_all(&log).len(), 39);
}

fn compacting(clock: Arc<ManualClock>) -> LogConfig {
    LogConfig {
        cleanup: CleanupPolicy::Compact,
        delete_retention_ms: 1000,
        clock,
        ..small(1024)
    }
}

#[test]
fn compaction_keeps_the_latest_record_per_key_at_its_original_offset() {
    let clock = ManualClock::new(1_000);
    let (_s, log) = mem_log(compacting(clock.clone()));
    let mut latest: HashMap<Vec<u8>, (u64, Vec<u8>)> = HashMap::new();
    for i in 0..150u64 {
        let key = format!("key{}", i % 10).into_bytes();
        let val = format!("val{i}").into_bytes();
        let at = log
            .append(&mut batch::build(&[rec(Some(&key), Some(&val), 1000)]))
            .unwrap();
        latest.insert(key, (at.base_offset, val));
    }
    // One keyless record survives compaction.
    log.append(&mut batch::build(&[rec(None, Some(b"nokey"), 1000)]))
        .unwrap();
    let before = read_all(&log);
    let rep = log.compact().unwrap();
    assert!(
        rep.records_removed > 0 && rep.segments_rewritten > 0,
        "{rep:?}"
    );
    let after = read_all(&log);
    assert!(after.len() < before.len());
    for (key, (offset, val)) in &latest {
        let e = after
            .iter()
            .find(|e| e.1.as_ref() == Some(key) && e.0 == *offset);
        assert_eq!(
            e.map(|e| e.2.clone().unwrap()),
            Some(val.clone()),
            "latest of {key:?}"
        );
    }
    for e in &after {
        // Every survivor is an original record at its original offset.
        assert!(before.contains(e), "{e:?} was not in the log before");
    }
    assert!(after.iter().any(|e| e.1.is_none()));
    assert!(after.windows(2).all(|w| w[0].0 < w[1].0));
    // Reading from a compacted-away offset returns the next surviving batch.
    let r = log.read(1, 1).unwrap();
    assert!(batches(&r.data)[0].0.last_offset() >= 1);
}

#[test]
fn tombstones_are_kept_until_delete_retention_passes() {
    let clock = ManualClock::new(5_000);
    let (_s, log) = mem_log(compacting(clock.clone()));
    log.append(&mut batch::build(&[rec(Some(b"gone"), Some(b"v1"), 5_000)]))
        .unwrap();
    log.append(&mut batch::build(&[rec(Some(b"gone"), None, 5_000)]))
        .unwrap();
    for i in 0..60 {
        log.append(&mut batch_of(1, &format!("f{i}"), 1, 5_000))
            .unwrap();
    }
    log.compact().unwrap();
    let tomb = |log: &busbar_log::Log| {
        read_all(log)
            .into_iter()
            .filter(|e| e.1.as_deref() == Some(b"gone"))
            .collect::<Vec<_>>()
    };
    assert_eq!(tomb(&log).len(), 1, "the value is gone, the tombstone kept");
    assert!(tomb(&log)[0].2.is_none());
    clock.advance(2_000);
    log.compact().unwrap();
    assert!(
        tomb(&log).is_empty(),
        "the tombstone is dropped after delete_retention_ms"
    );
}

#[test]
fn compaction_survives_a_crash_and_reopen() {
    let clock = ManualClock::new(1_000);
    let cfg = compacting(clock);
    let (s, log) = mem_log(cfg.clone());
    for i in 0..120u64 {
        let key = format!("k{}", i % 4);
        log.append(&mut batch::build(&[rec(
            Some(key.as_bytes()),
            Some(format!("{i}").as_bytes()),
            1000,
        )]))
        .unwrap();
    }
    log.compact().unwrap();
    let after = read_all(&log);
    drop(log);
    s.fs().crash(Some(3));
    let log = reopen(&s, cfg);
    assert_eq!(read_all(&log), after);
}

#[test]
fn appends_and_reads_go_on_while_cleaning_runs() {
    let clock = ManualClock::new(1_000);
    let cfg = LogConfig {
        cleanup: CleanupPolicy::CompactDelete,
        retention_bytes: Some(20_000),
        ..compacting(clock)
    };
    let (_s, log) = mem_log(cfg);
    let log = Arc::new(log);
    let cleaner = {
        let log = log.clone();
        std::thread::spawn(move || {
            for _ in 0..50 {
                log.compact().unwrap();
                log.enforce_retention().unwrap();
            }
        })
    };
    for i in 0..2000u64 {
        let key = format!("k{}", i % 50);
        let at = log
            .append(&mut batch::build(&[rec(
                Some(key.as_bytes()),
                Some(b"v"),
                1000,
            )]))
            .unwrap();
        assert_eq!(at.base_offset, i);
        if i % 100 == 0 {
            let start = log.stats().log_start;
            let _ = log.read(start, 4096);
        }
    }
    cleaner.join().unwrap();
    log.compact().unwrap();
    let evs = read_all(&log);
    let keys: std::collections::HashSet<_> = evs.iter().map(|e| e.1.clone()).collect();
    assert_eq!(keys.len(), 50, "every key still has its latest value");
}

#[test]
fn config_changes_apply_to_the_next_pass_and_bad_ones_are_refused() {
    let (_s, log) = mem_log(small(1024));
    for i in 0..60 {
        log.append(&mut batch_of(2, &format!("{i}"), 2, i)).unwrap();
    }
    assert_eq!(log.enforce_retention().unwrap().segments_deleted, 0);
    let mut cfg = (*log.config()).clone();
    cfg.retention_bytes = Some(2000);
    log.set_config(cfg.clone()).unwrap();
    assert!(log.enforce_retention().unwrap().segments_deleted > 0);
    cfg.segment_bytes = 1;
    assert!(matches!(log.set_config(cfg), Err(LogError::Config(_))));
    assert_eq!(log.config().retention_bytes, Some(2000));
}

/// A log on an in-memory disk whose file modification times follow `clock` (or are unknown).
fn bad_timestamp_log(clock: Arc<ManualClock>, mtimes: bool) -> busbar_log::Log {
    let fs = busbar_log::disk::MemFs::new();
    if mtimes {
        fs.set_clock(clock.clone());
    }
    let cfg = LogConfig {
        clock,
        retention_ms: Some(60_000),
        ..small(1024)
    };
    busbar_log::Log::open(Arc::new(fs.dir("p")), cfg).unwrap()
}

fn one(log: &busbar_log::Log, ts: i64) -> u64 {
    let mut b = batch::build(&[rec(Some(b"k"), Some(b"bad"), ts)]);
    log.append(&mut b).unwrap().base_offset
}

#[test]
fn a_future_or_negative_timestamp_does_not_stop_time_retention() {
    for mtimes in [true, false] {
        let clock = ManualClock::new(10_000_000);
        let log = bad_timestamp_log(clock.clone(), mtimes);
        for i in 0..20 {
            log.append(&mut batch_of(2, "old", 2, 1_000_000 + i))
                .unwrap();
        }
        let future = one(&log, i64::MAX);
        for i in 0..20 {
            log.append(&mut batch_of(2, "old", 2, 1_000_000 + i))
                .unwrap();
        }
        let negative = one(&log, -5);
        for i in 0..20 {
            log.append(&mut batch_of(2, "old", 2, 1_000_000 + i))
                .unwrap();
        }
        clock.advance(1_000_000);
        let new_from = log.stats().next_offset;
        for i in 0..20 {
            log.append(&mut batch_of(2, "new", 2, 11_000_000 + i))
                .unwrap();
        }
        let rep = log.enforce_retention().unwrap();
        let start = log.stats().log_start;
        assert!(
            start > negative && start <= new_from,
            "mtimes {mtimes}: log start {start}, bad records at {future} and {negative}, {rep:?}"
        );
        let news = read_all(&log)
            .into_iter()
            .filter(|e| e.2.as_deref().is_some_and(|v| v.starts_with(b"new")))
            .count();
        assert_eq!(news, 40);
    }
}

#[test]
fn a_future_timestamp_holds_retention_only_until_its_segment_file_ages_out() {
    let clock = ManualClock::new(10_000_000);
    let log = bad_timestamp_log(clock.clone(), true);
    for i in 0..20 {
        log.append(&mut batch_of(2, "old", 2, 1_000_000 + i))
            .unwrap();
    }
    clock.advance(1_000_000);
    let future = one(&log, i64::MAX); // written now: its segment's file is recent
    for i in 0..20 {
        log.append(&mut batch_of(2, "old", 2, 1_000_000 + i))
            .unwrap();
    }
    log.enforce_retention().unwrap();
    let start = log.stats().log_start;
    assert!(start > 0 && start <= future, "{start} {future}");
    clock.advance(120_000);
    log.enforce_retention().unwrap();
    assert!(log.stats().log_start > future);
}

/// A transactional record (of a transaction that may abort) neither supersedes an earlier value
/// of its key nor is compacted away; plain records after it still supersede both.
#[test]
fn transactional_records_never_make_a_value_obsolete_and_are_kept_whole() {
    let clock = ManualClock::new(1_000);
    let (_s, log) = mem_log(compacting(clock.clone()));
    let committed = log
        .append(&mut batch::build(&[rec(Some(b"k"), Some(b"v1"), 1000)]))
        .unwrap();
    for i in 0..60u64 {
        // Fills segments: the transactional batch below lands in a sealed one.
        let val = format!("f{i}").into_bytes();
        log.append(&mut batch::build(&[rec(Some(b"filler"), Some(&val), 1000)]))
            .unwrap();
    }
    let plain = batch::build(&[rec(Some(b"k"), Some(b"v2-aborted"), 1000)]);
    let h = batch::BatchHeader::parse(&plain).unwrap();
    let mut txn = batch::assemble(
        &batch::BatchHeader {
            attributes: 0x10,
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: 0,
            ..h
        },
        &plain[batch::HEADER_BYTES..],
    );
    let aborted = log.append(&mut txn).unwrap();
    for i in 0..60u64 {
        let val = format!("g{i}").into_bytes();
        log.append(&mut batch::build(&[rec(Some(b"filler"), Some(&val), 1000)]))
            .unwrap();
    }
    log.compact().unwrap();
    let after = read_all(&log);
    let at = |o: u64| {
        after
            .iter()
            .find(|e| e.0 == o)
            .map(|e| e.2.clone().unwrap())
    };
    assert_eq!(
        at(committed.base_offset),
        Some(b"v1".to_vec()),
        "still the committed value"
    );
    assert_eq!(
        at(aborted.base_offset),
        Some(b"v2-aborted".to_vec()),
        "kept whole"
    );
}

#[test]
fn start_over_at_empties_the_log_and_continues_at_the_offset_durably() {
    let cfg = small(1024);
    let (s, log) = mem_log(cfg.clone());
    for i in 0..30 {
        log.append(&mut batch_of(2, &format!("{i}"), 2, i)).unwrap();
    }
    assert!(matches!(
        log.start_over_at(59),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.start_over_at(500).unwrap(), 500);
    let st = log.stats();
    assert_eq!(
        (st.log_start, st.high_watermark, st.next_offset),
        (500, 500, 500)
    );
    assert_eq!(st.segments, 1, "the old segments are gone");
    assert!(matches!(
        log.read(10, 100),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        log.append(&mut batch_of(2, "new", 2, 1))
            .unwrap()
            .base_offset,
        500
    );
    drop(log);
    s.fs().crash(None);
    let log = reopen(&s, cfg);
    let events = read_all(&log);
    assert_eq!(log.stats().log_start, 500);
    assert_eq!(events.first().unwrap().0, 500);
    assert_eq!(events.len(), 2);
}

/// A power cut at every step of `start_over_at` (each write, sync and rename failing in turn,
/// then the unsynced bytes lost): the log reopens either as it was or started over, never in
/// between (no gap served, no old data above the new start).
#[test]
fn start_over_at_survives_a_crash_at_every_step() {
    use busbar_log::disk::{FaultStorage, MemStorage, Storage};
    let cfg = small(1024);
    let (mut old_kept, mut started_over) = (0, 0);
    for step in 0.. {
        let storage = FaultStorage::new(MemStorage::new());
        let (plan, inner) = (storage.plan(), storage.inner().clone());
        let log =
            busbar_log::Log::open(Arc::new(storage) as Arc<dyn Storage>, cfg.clone()).unwrap();
        for i in 0..30 {
            log.append(&mut batch_of(2, &format!("{i}"), 2, i)).unwrap();
        }
        let old = read_all(&log);
        plan.fail_nth(plan.ops() + step);
        let done = log.start_over_at(500).is_ok();
        let untouched = plan.failures() == 0;
        drop(log);
        inner.fs().crash(None);
        let log = reopen(&inner, cfg.clone());
        let st = log.stats();
        if st.log_start == 500 {
            assert_eq!(
                (st.high_watermark, st.next_offset),
                (500, 500),
                "step {step}"
            );
            assert!(read_all(&log).is_empty(), "step {step}");
            started_over += 1;
        } else {
            old_kept += 1;
            assert!(!done, "step {step}: it answered done but did not last");
            assert_eq!(st.log_start, 0, "step {step}");
            assert_eq!(read_all(&log), old, "step {step}: the old log, whole");
        }
        assert_eq!(
            log.append(&mut batch_of(1, "x", 1, 1)).unwrap().base_offset,
            st.high_watermark,
            "step {step}"
        );
        if untouched {
            assert!(done && step > 0, "step {step}");
            break;
        }
    }
    // Both outcomes happen: a failure early keeps the old log, one late the new start.
    assert!(
        old_kept > 1 && started_over > 1,
        "{old_kept} {started_over}"
    );
}

/// Readers never see a log start past the end while `start_over_at` runs.
#[test]
fn start_over_at_never_shows_a_start_past_the_end() {
    let (_s, log) = mem_log(small(1024));
    let log = Arc::new(log);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let looks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let watcher = {
        let (log, done, looks) = (log.clone(), done.clone(), looks.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let st = log.stats();
                assert!(st.log_start <= st.high_watermark, "{st:?}");
                looks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    // The watcher looks from the first step on.
    while looks.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        std::thread::yield_now();
    }
    for i in 0..200 {
        log.append(&mut batch_of(2, "a", 2, i)).unwrap();
        let at = log.stats().next_offset + 10;
        assert_eq!(log.start_over_at(at).unwrap(), at);
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.join().unwrap();
}
