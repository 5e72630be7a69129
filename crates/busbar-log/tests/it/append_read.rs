//! Append, read, roll and time look-up through the public API, on memory and on the real disk.

use crate::common::*;
use busbar_log::batch;
use busbar_log::disk::{FaultStorage, FileStorage, MemStorage, Storage};
use busbar_log::{BatchError, Log, LogConfig, LogError, SyncPolicy};
use std::sync::Arc;

#[test]
fn offsets_are_assigned_in_order_and_reads_return_whole_batches() {
    let (_s, log) = mem_log(LogConfig::default());
    let mut a = batch_of(3, "a", 3, 1000);
    let mut b = batch_of(2, "b", 3, 2000);
    assert_eq!(log.append(&mut a).unwrap().base_offset, 0);
    let at = log.append(&mut b).unwrap();
    assert_eq!((at.base_offset, at.last_offset), (3, 4));
    // Reading offset 4 returns the whole batch that contains it (3..=4).
    let r = log.read(4, 1 << 20).unwrap();
    assert_eq!(r.data, b);
    assert_eq!(r.high_watermark, 5);
    // max_bytes smaller than a batch still returns one whole batch.
    assert_eq!(log.read(0, 1).unwrap().data, a);
    assert_eq!(log.read(0, 1 << 20).unwrap().data.len(), a.len() + b.len());
    assert!(log.read(5, 100).unwrap().data.is_empty());
    assert!(matches!(
        log.read(6, 100),
        Err(LogError::OffsetOutOfRange { offset: 6, .. })
    ));
    let evs = read_all(&log);
    assert_eq!(
        evs.iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(evs[3].2.as_deref(), Some(&b"b-0"[..]));
}

#[test]
fn stored_batches_carry_the_assigned_offset_and_epoch_with_a_valid_crc() {
    let (_s, log) = mem_log(LogConfig::default());
    for _ in 0..3 {
        log.append(&mut batch_of(2, "x", 1, 5)).unwrap();
    }
    let bs = batches(&log.read(0, 1 << 20).unwrap().data);
    let bases: Vec<_> = bs.iter().map(|(h, _)| h.base_offset).collect();
    assert_eq!(bases, vec![0, 2, 4]);
    assert!(bs
        .iter()
        .all(|(h, _)| h.leader_epoch == log.stats().epoch as i32));
}

/// Says whether an error is the one a case expects.
type Expect = fn(&LogError) -> bool;

#[test]
fn a_bad_batch_is_refused_and_nothing_is_written() {
    let (s, log) = mem_log(LogConfig {
        batch_bytes_max: 500,
        ..LogConfig::default()
    });
    log.append(&mut batch_of(1, "ok", 1, 1)).unwrap();
    let before = s.fs().total_bytes();
    let good = batch_of(1, "v", 1, 1);
    let mut crc = good.clone();
    *crc.last_mut().unwrap() ^= 0xff;
    let mut magic = good.clone();
    magic[16] = 1;
    let mut big = batch_of(40, "big", 1, 1);
    let mut short = good[..30].to_vec();
    let cases: Vec<(&mut Vec<u8>, Expect)> = vec![
        (&mut crc, |e| {
            matches!(e, LogError::Batch(BatchError::Crc { .. }))
        }),
        (&mut magic, |e| {
            matches!(e, LogError::Batch(BatchError::Magic(1)))
        }),
        (&mut big, |e| {
            matches!(e, LogError::Batch(BatchError::TooLarge { limit: 500, .. }))
        }),
        (&mut short, |e| {
            matches!(e, LogError::Batch(BatchError::Length(_)))
        }),
    ];
    for (b, want) in cases {
        let err = log.append(b).unwrap_err();
        assert!(want(&err), "unexpected error {err}");
    }
    assert_eq!(s.fs().total_bytes(), before);
    assert_eq!(log.stats().high_watermark, 1);
    assert_eq!(log.append(&mut good.clone()).unwrap().base_offset, 1);
}

#[test]
fn segments_roll_by_size_and_age_and_reads_cross_them() {
    let clock = busbar_log::ManualClock::new(1_000_000);
    let cfg = LogConfig {
        clock: clock.clone(),
        segment_ms: 60_000,
        ..small(1024)
    };
    let (_s, log) = mem_log(cfg);
    for i in 0..60 {
        log.append(&mut batch_of(2, &format!("v{i}"), 5, i))
            .unwrap();
    }
    let segs = log.stats().segments;
    assert!(segs > 4, "{segs} segments");
    let evs = read_all(&log);
    assert_eq!(evs.len(), 120);
    assert!(evs.windows(2).all(|w| w[1].0 == w[0].0 + 1));
    clock.advance(60_000);
    log.append(&mut batch_of(1, "late", 1, 1)).unwrap();
    assert_eq!(
        log.stats().segments,
        segs + 1,
        "an old segment rolls at the next append"
    );
    for probe in [0u64, 17, 64, 119, 120] {
        let r = log.read(probe, 1).unwrap();
        let (h, _) = &batches(&r.data)[0];
        assert!(h.base_offset as u64 <= probe && probe <= h.last_offset() as u64);
    }
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let (_s, log) = mem_log(small(2048));
    for i in 0..50i64 {
        // records at 1000*i, 1000*i + 1, 1000*i + 2
        log.append(&mut batch_of(3, "t", 3, 1000 * i)).unwrap();
    }
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(1).unwrap(), Some(1));
    assert_eq!(log.offset_for_timestamp(3).unwrap(), Some(3));
    assert_eq!(log.offset_for_timestamp(25_002).unwrap(), Some(77));
    assert_eq!(log.offset_for_timestamp(25_003).unwrap(), Some(78));
    assert_eq!(log.offset_for_timestamp(49_002).unwrap(), Some(149));
    assert_eq!(log.offset_for_timestamp(49_003).unwrap(), None);
}

#[test]
fn group_commit_shares_syncs_between_concurrent_appends() {
    let storage = FaultStorage::new(MemStorage::new());
    let plan = storage.plan();
    let log = Arc::new(Log::open(Arc::new(storage), LogConfig::default()).unwrap());
    plan.set_sync_delay(std::time::Duration::from_millis(1));
    let syncs_before = plan.syncs();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    log.append(&mut batch_of(1, &format!("{t}-{i}"), 1, 1))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(log.stats().high_watermark, 1600);
    // With a 1 ms sync and 8 writers, appends that arrive during a sync share the next one.
    let syncs = plan.syncs() - syncs_before;
    assert!(
        syncs <= 800,
        "{syncs} syncs for 1600 appends: no group commit"
    );
    let evs = read_all(&log);
    assert_eq!(evs.len(), 1600);
}

#[test]
fn a_failed_fsync_takes_the_log_offline() {
    let storage = FaultStorage::new(MemStorage::new());
    let plan = storage.plan();
    let log = Log::open(Arc::new(storage), LogConfig::default()).unwrap();
    log.append(&mut batch_of(1, "a", 1, 1)).unwrap();
    plan.fail_nth(plan.ops() + 1); // the append succeeds, its sync fails
    assert!(matches!(
        log.append(&mut batch_of(1, "b", 1, 1)),
        Err(LogError::Failed(_))
    ));
    assert!(matches!(
        log.append(&mut batch_of(1, "c", 1, 1)),
        Err(LogError::Failed(_))
    ));
    // Nothing unsynced became visible; earlier data still reads.
    assert_eq!(log.stats().high_watermark, 1);
    assert_eq!(events(&log.read(0, 1000).unwrap().data).len(), 1);
}

#[test]
fn a_failed_write_is_undone_and_a_full_disk_recovers_when_space_returns() {
    let storage = FaultStorage::new(MemStorage::new());
    let plan = storage.plan();
    let inner = storage.inner().clone();
    let log = Log::open(Arc::new(storage), LogConfig::default()).unwrap();
    log.append(&mut batch_of(1, "a", 1, 1)).unwrap();
    let len = inner.fs().total_bytes();
    plan.fail_nth(plan.ops()); // the next append's write fails half-way
    assert!(matches!(
        log.append(&mut batch_of(1, "b", 1, 1)),
        Err(LogError::Io { .. })
    ));
    assert_eq!(
        inner.fs().total_bytes(),
        len,
        "the half-written batch was cut off"
    );
    plan.set_disk_full(true);
    let err = log.append(&mut batch_of(1, "c", 1, 1)).unwrap_err();
    assert!(err.to_string().contains("No space left"), "{err}");
    plan.set_disk_full(false);
    assert_eq!(
        log.append(&mut batch_of(1, "d", 1, 1)).unwrap().base_offset,
        1
    );
    let vals: Vec<_> = read_all(&log).into_iter().map(|e| e.2.unwrap()).collect();
    assert_eq!(vals, vec![b"a-0".to_vec(), b"d-0".to_vec()]);
}

#[test]
fn works_on_the_real_file_system_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let s = FileStorage::open(dir.path().join("p0")).unwrap();
        Log::open(Arc::new(s) as Arc<dyn Storage>, small(4096)).unwrap()
    };
    let log = open();
    for i in 0..100 {
        log.append(&mut batch_of(2, &format!("{i}"), 4, i)).unwrap();
    }
    log.close().unwrap();
    let log = open();
    assert!(log.recovery().clean);
    assert_eq!(log.recovery().scanned_bytes, 0);
    log.append(&mut batch_of(1, "after", 1, 1)).unwrap();
    drop(log); // no close: recovery must scan only the tail
    let log = open();
    assert!(!log.recovery().clean);
    assert!(log.recovery().scanned_bytes < 4096, "{:?}", log.recovery());
    assert_eq!(read_all(&log).len(), 201);
}

#[test]
fn interval_and_never_make_writes_visible_at_once() {
    for sync in [SyncPolicy::Never, SyncPolicy::Interval(50)] {
        let (_s, log) = mem_log(LogConfig {
            sync,
            ..LogConfig::default()
        });
        log.append(&mut batch::build(&[rec(None, Some(b"v"), 1)]))
            .unwrap();
        assert_eq!(log.stats().high_watermark, 1);
        log.tick().unwrap();
    }
}

#[test]
fn invalid_config_is_refused() {
    let bad = [
        LogConfig {
            segment_bytes: 10,
            ..LogConfig::default()
        },
        LogConfig {
            segment_ms: 0,
            ..LogConfig::default()
        },
        LogConfig {
            retention_ms: Some(-1),
            ..LogConfig::default()
        },
        LogConfig {
            index_interval_bytes: 0,
            ..LogConfig::default()
        },
    ];
    for cfg in bad {
        let r = Log::open(Arc::new(MemStorage::new()), cfg);
        assert!(matches!(r, Err(LogError::Config(_))));
    }
}

#[test]
fn closed_log_refuses_work() {
    let (_s, log) = mem_log(LogConfig::default());
    log.close().unwrap();
    assert!(matches!(
        log.append(&mut batch_of(1, "x", 1, 1)),
        Err(LogError::Closed)
    ));
    assert!(matches!(log.read(0, 10), Err(LogError::Closed)));
}

#[test]
fn huge_offset_deltas_roll_the_segment_instead_of_overflowing_its_index() {
    use busbar_log::batch::{assemble, BatchHeader};
    let (_s, log) = mem_log(LogConfig::default());
    let template = BatchHeader::parse(&batch_of(1, "x", 1, 1)).unwrap();
    // A compressed batch: the log does not decompress, so it trusts the declared count.
    let delta = i32::MAX - 1;
    let header = BatchHeader {
        attributes: 1,
        last_offset_delta: delta,
        record_count: delta + 1,
        ..template
    };
    for i in 0..3u64 {
        let mut b = assemble(&header, b"opaque compressed bytes");
        let at = log.append(&mut b).unwrap();
        assert_eq!(at.base_offset, i * (delta as u64 + 1));
    }
    assert_eq!(
        log.stats().segments,
        2,
        "the third batch would overflow 32-bit relative offsets"
    );
    let far = 2 * (delta as u64 + 1) + 5;
    let r = log.read(far, 1 << 20).unwrap();
    assert_eq!(
        batches(&r.data)[0].0.base_offset as u64,
        2 * (delta as u64 + 1)
    );
}
