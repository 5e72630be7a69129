//! Tombstones expire by delete horizon (Kafka's KIP-534): the first pass that keeps a batch's
//! tombstones stamps the batch with the time they may go, `delete_retention_ms` ahead, and only
//! a pass after that removes them, whatever the tombstone's own timestamp. The stamped batch
//! keeps every record's timestamp, survives a reopen, and a producer cannot send one.

use crate::common::*;
use busbar_log::batch::{self, BatchHeader, DELETE_HORIZON_FLAG};
use busbar_log::{CleanupPolicy, Log, LogConfig, LogError, ManualClock};

const RETENTION: i64 = 1_000_000;

fn config(clock: &std::sync::Arc<ManualClock>) -> LogConfig {
    LogConfig {
        cleanup: CleanupPolicy::Compact,
        delete_retention_ms: RETENTION,
        clock: clock.clone(),
        ..small(4096)
    }
}

fn settle(log: &Log) {
    let segments = log.stats().segments;
    while log.stats().segments == segments {
        log.append(&mut batch::build(&[rec(None, Some(b"filler"), 5)]))
            .unwrap();
    }
}

/// The header of the batch holding `offset` and its records.
fn at(log: &Log, offset: u64) -> Option<(BatchHeader, Vec<Event>)> {
    let data = log.read(offset, 1 << 20).ok()?.data;
    let (h, b) = batches(&data).into_iter().next()?;
    (h.base_offset as u64 == offset).then(|| (h, events(&b)))
}

#[test]
fn a_tombstone_stays_delete_retention_after_compaction_first_kept_it_whatever_its_timestamp() {
    let clock = ManualClock::new(10_000_000);
    let (s, log) = mem_log(config(&clock));
    log.append(&mut batch::build(&[rec(Some(b"k"), Some(b"v"), 7)]))
        .unwrap();
    // A tombstone stamped long ago (an old event replayed, a producer's wrong clock): by its
    // own timestamp it expired 9 seconds before it was written.
    let tomb = log
        .append(&mut batch::build(&[
            rec(Some(b"k"), None, 9),
            rec(Some(b"other"), Some(b"x"), 11),
        ]))
        .unwrap()
        .base_offset;
    settle(&log);
    log.compact().unwrap();
    let (h, evs) = at(&log, tomb).expect("the tombstone is kept by the first pass");
    assert_eq!(h.attributes & DELETE_HORIZON_FLAG, DELETE_HORIZON_FLAG);
    assert_eq!(h.delete_horizon(), Some(10_000_000 + RETENTION));
    assert_eq!(h.max_timestamp, 11, "unchanged");
    assert_eq!(h.first_timestamp(), 11);
    let stamps: Vec<i64> = evs.iter().map(|e| e.3).collect();
    assert_eq!(stamps, [9, 11], "every record keeps its own timestamp");
    assert!(at(&log, 0).is_none(), "the older value went at once");
    // Not yet: one millisecond before the horizon.
    clock.advance(RETENTION - 1);
    log.compact().unwrap();
    assert_eq!(at(&log, tomb).unwrap().1.len(), 2);
    // The stamped batch survives a reopen (its max timestamp is below its base now).
    drop(log);
    let log = reopen(&s, config(&clock));
    assert_eq!(
        at(&log, tomb).unwrap().0.delete_horizon(),
        h.delete_horizon()
    );
    clock.advance(1);
    log.compact().unwrap();
    let (h2, evs) = at(&log, tomb).expect("the batch keeps its other record");
    assert_eq!(evs.len(), 1, "the tombstone went at its horizon: {evs:?}");
    assert_eq!((evs[0].1.as_deref(), evs[0].3), (Some(&b"other"[..]), 11));
    assert_eq!(h2.delete_horizon(), h.delete_horizon(), "the horizon stays");
}

#[test]
fn a_pass_is_due_when_a_kept_tombstones_horizon_passes_and_not_before() {
    let clock = ManualClock::new(1_000);
    let (_s, log) = mem_log(config(&clock));
    let tomb = log
        .append(&mut batch::build(&[rec(Some(b"gone"), None, 1_000)]))
        .unwrap()
        .base_offset;
    settle(&log);
    assert_eq!(log.compact().unwrap().compaction_passes, 1);
    clock.advance(RETENTION / 2);
    assert_eq!(log.compact().unwrap().compaction_passes, 0, "nothing due");
    clock.advance(RETENTION / 2);
    assert_eq!(
        log.compact().unwrap().compaction_passes,
        1,
        "the horizon passed"
    );
    assert!(at(&log, tomb).is_none(), "the tombstone went");
}

#[test]
fn a_producers_batch_with_the_delete_horizon_bit_is_refused_and_nothing_is_written() {
    let clock = ManualClock::new(1_000);
    let (_s, log) = mem_log(config(&clock));
    let plain = batch::build(&[rec(Some(b"k"), None, 1_000)]);
    let h = BatchHeader::parse(&plain).unwrap();
    let mut stamped = batch::assemble(
        &BatchHeader {
            attributes: h.attributes | DELETE_HORIZON_FLAG,
            base_timestamp: 0,
            ..h
        },
        &plain[batch::HEADER_BYTES..],
    );
    match log.append(&mut stamped) {
        Err(LogError::Batch(e)) => assert!(e.to_string().contains("delete horizon"), "{e}"),
        other => panic!("refused, not {other:?}"),
    }
    assert_eq!(log.stats().high_watermark, 0);
}
