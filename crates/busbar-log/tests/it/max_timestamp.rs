//! `Log::max_timestamp` (Kafka's ListOffsets -3): the same batch a full scan finds (largest max
//! timestamp at or after the log start, the first of equals), through rolls, restarts (clean and
//! crashed), delete-records inside a segment, retention, compaction and unsynced appends; and it
//! reads no segment file but the one holding the maximum.

use crate::common::gate::{Gate, GatedStorage};
use crate::common::*;
use busbar_log::batch::{self, BatchHeader};
use busbar_log::disk::{MemStorage, Storage};
use busbar_log::{CleanupPolicy, Log, LogConfig, ManualClock, SyncPolicy};
use busbar_testkit::{for_each_seed, Rng};
use std::sync::Arc;

/// What a scan of every batch readers may see finds: the largest max timestamp of a batch
/// holding offsets at or after the log start, and the first such batch.
fn full_scan(log: &Log) -> Option<(i64, Vec<u8>)> {
    let s = log.stats();
    let mut best: Option<(i64, Vec<u8>)> = None;
    let mut offset = s.log_start;
    while offset < s.high_watermark {
        let found = batches(&log.read(offset, 4096).unwrap().data);
        let Some((last, _)) = found.last() else { break };
        offset = last.last_offset() as u64 + 1;
        for (h, b) in found {
            if best.as_ref().is_none_or(|(m, _)| h.max_timestamp > *m) {
                best = Some((h.max_timestamp, b));
            }
        }
    }
    best
}

fn check(log: &Log, when: &str) {
    let got = log.max_timestamp().unwrap().map(|m| (m.timestamp, m.batch));
    let want = full_scan(log);
    let name = |x: &Option<(i64, Vec<u8>)>| {
        x.as_ref().map(|(ts, b)| {
            let h = BatchHeader::parse(b).unwrap();
            (*ts, h.base_offset)
        })
    };
    assert_eq!(name(&got), name(&want), "{when}");
    assert_eq!(got, want, "{when}: the same batch bytes");
}

/// A batch of 1 to 3 records with timestamps drawn from a small range (many ties), now and then
/// none at all (-1).
fn random_batch(rng: &mut Rng, key_space: u64) -> Vec<u8> {
    let n = 1 + rng.below(3) as usize;
    let recs: Vec<_> = (0..n)
        .map(|_| {
            let key = format!("k{}", rng.below(key_space));
            let ts = if rng.chance(3) {
                -1
            } else {
                1_000 + rng.below(400) as i64
            };
            rec(Some(key.as_bytes()), Some(&rng.bytes(40)), ts)
        })
        .collect();
    batch::build(&recs)
}

fn config() -> LogConfig {
    LogConfig {
        retention_bytes: None,
        ..small(1200)
    }
}

fn a_random_history(seed: u64) {
    let mut rng = Rng::new(seed);
    let storage = MemStorage::new();
    let mut log = reopen(&storage, config());
    check(&log, "empty");
    for round in 0..4 {
        for _ in 0..rng.below(40) {
            log.append(&mut random_batch(&mut rng, 1_000)).unwrap();
            if rng.chance(10) {
                check(&log, "while appending");
            }
        }
        check(&log, &format!("round {round}"));
        let s = log.stats();
        if rng.chance(40) && s.high_watermark > s.log_start {
            // Anywhere, inside a segment and inside a batch included.
            let to = s.log_start + rng.below(s.high_watermark - s.log_start + 1);
            log.delete_records(to).unwrap();
            check(&log, &format!("after delete-records to {to}"));
        }
        if rng.chance(30) {
            let keep = 1_000 + rng.below(4_000);
            log.set_config(LogConfig {
                retention_bytes: Some(keep),
                ..config()
            })
            .unwrap();
            log.enforce_retention().unwrap();
            log.set_config(config()).unwrap();
            check(&log, &format!("after retention to {keep} bytes"));
        }
        if rng.chance(50) {
            log.close().unwrap();
        } // else a crash: dropped without close
        drop(log);
        log = reopen(&storage, config());
        check(&log, "after a restart");
    }
}

#[test]
fn the_answer_is_the_full_scans_through_restarts_retention_and_delete_records() {
    for_each_seed(40, a_random_history);
}

#[test]
fn compaction_and_a_restart_after_it_keep_the_answer_right() {
    let cfg = LogConfig {
        cleanup: CleanupPolicy::Compact,
        delete_retention_ms: 0,
        clock: ManualClock::new(10_000),
        ..config()
    };
    let storage = MemStorage::new();
    let log = reopen(&storage, cfg.clone());
    let mut rng = Rng::new(7);
    // Few keys: compaction removes most batches, the early maximum among them.
    log.append(&mut batch::build(&[rec(Some(b"k0"), Some(b"x"), 5_000)]))
        .unwrap();
    for _ in 0..200 {
        log.append(&mut random_batch(&mut rng, 8)).unwrap();
    }
    check(&log, "before compaction");
    log.compact().unwrap();
    assert!(
        read_all(&log).iter().all(|e| e.3 != 5_000),
        "the maximum was compacted away"
    );
    check(&log, "after compaction");
    log.close().unwrap();
    let log = reopen(&storage, cfg);
    check(&log, "after a restart");
}

/// An append not yet synced under the `batch` policy is not visible: it is not the answer
/// until it is durable.
#[test]
fn an_unsynced_batch_is_not_answered() {
    let (_s, log) = mem_log(LogConfig {
        sync: SyncPolicy::Batch,
        ..config()
    });
    for i in 0..50 {
        log.append(&mut batch::build(&[rec(None, Some(b"v"), 1_000 + i)]))
            .unwrap();
    }
    check(&log, "all synced");
    let before = log.max_timestamp().unwrap().unwrap().timestamp;
    let (_, ticket) = log
        .append_start(&mut batch::build(&[rec(None, Some(b"v"), 9_999)]))
        .unwrap();
    assert_eq!(log.max_timestamp().unwrap().unwrap().timestamp, before);
    check(&log, "one batch written, not synced");
    log.wait_durable(ticket.unwrap()).unwrap();
    assert_eq!(log.max_timestamp().unwrap().unwrap().timestamp, 9_999);
}

/// Twenty segments, the maximum in the fourth: the look-up reads that segment's file and no
/// other (the time index files of segments whose maximum is not known yet, after a restart).
#[test]
fn only_the_segment_holding_the_maximum_is_read() {
    let gate = Gate::new();
    let mem = MemStorage::new();
    let open = || {
        let storage = GatedStorage::new(mem.clone(), gate.clone());
        Log::open(Arc::new(storage) as Arc<dyn Storage>, config()).unwrap()
    };
    let log = open();
    let mut n = 0;
    while log.stats().segments < 20 {
        let ts = if log.stats().segments == 4 && n % 5 == 3 {
            50_000
        } else {
            1_000 + n
        };
        log.append(&mut batch::build(&[rec(None, Some(&[b'v'; 100]), ts)]))
            .unwrap();
        n += 1;
    }
    let holder = |log: &Log| {
        let m = log.max_timestamp().unwrap().unwrap();
        assert_eq!(m.timestamp, 50_000);
        BatchHeader::parse(&m.batch).unwrap().base_offset
    };
    gate.take_reads();
    let at = holder(&log);
    let reads = gate.take_reads();
    let logs: Vec<&String> = reads.keys().filter(|f| f.ends_with(".log")).collect();
    assert_eq!(logs.len(), 1, "one segment file read: {reads:?}");
    let winner = logs[0].clone();
    assert!(reads[&winner] <= 300 * 1024, "{reads:?}");
    log.close().unwrap();
    drop(log);
    let log = open();
    gate.take_reads();
    assert_eq!(holder(&log), at, "the same answer after a restart");
    let reads = gate.take_reads();
    let logs: Vec<&String> = reads.keys().filter(|f| f.ends_with(".log")).collect();
    assert_eq!(logs, vec![&winner], "after a restart too: {reads:?}");
    gate.take_reads();
    holder(&log);
    let again = gate.take_reads();
    assert!(
        again.keys().all(|f| *f == winner),
        "maxima are kept: no index is read twice: {again:?}"
    );
}

/// The batch holding the maximum turns out damaged when it is read (the index, written before the
/// damage, still names it): the answer is the largest of what readers may still see, nothing after
/// the damage in that segment (a 40,000 just after it), and no error.
#[test]
fn a_damaged_maximum_is_passed_over() {
    let storage = MemStorage::new();
    let log = reopen(&storage, config());
    let mut n = 0;
    let mut marked = Vec::new();
    while log.stats().segments < 8 {
        let seg = log.stats().segments;
        let ts = match marked.len() {
            0 if seg == 4 && n % 7 == 6 => 50_000,
            1 => 40_000,
            _ => 1_000 + n,
        };
        let mut b = batch::build(&[rec(None, Some(&[b'v'; 100]), ts)]);
        let at = log.append(&mut b).unwrap();
        if ts > 30_000 {
            marked.push((at.base_offset, b));
        }
        n += 1;
    }
    let last = log.stats().high_watermark - 1;
    log.close().unwrap();
    drop(log);
    let (_, max_batch) = &marked[0];
    let holder = storage
        .list()
        .unwrap()
        .into_iter()
        .filter(|f| f.ends_with(".log"))
        .find(|f| {
            let file = storage.open(f).unwrap();
            let mut bytes = vec![0; file.len() as usize];
            busbar_log::disk::read_exact_at(file.as_ref(), 0, &mut bytes).unwrap();
            bytes
                .windows(max_batch.len())
                .any(|w| w == max_batch.as_slice())
        })
        .unwrap();
    let file = storage.open(&holder).unwrap();
    let mut bytes = vec![0; file.len() as usize];
    busbar_log::disk::read_exact_at(file.as_ref(), 0, &mut bytes).unwrap();
    let pos = bytes
        .windows(max_batch.len())
        .position(|w| w == max_batch.as_slice())
        .unwrap();
    storage
        .corrupt(&holder, (pos + max_batch.len() - 5) as u64, &[0xAA])
        .unwrap();
    let log = reopen(&storage, config());
    let m = log.max_timestamp().unwrap().unwrap();
    let h = BatchHeader::parse(&m.batch).unwrap();
    assert_eq!((m.timestamp, h.base_offset as u64), (h.max_timestamp, last));
    assert!(m.timestamp < 40_000, "{}", m.timestamp);
    assert_eq!(
        log.max_timestamp().unwrap(),
        Some(m),
        "the same once the damage is known"
    );
}

/// Compaction rebuilds a batch with the header of the records it kept (as Kafka's cleaner builds
/// a new batch): batch [k1@1000, k2@10] loses k1 to a later k1@500, and the rebuilt batch says
/// base and max timestamp 10, so the log's maximum is 500. Before, the rebuilt batch kept max
/// 1000 in its header and the log answered it.
#[test]
fn a_batch_compaction_rebuilds_carries_its_kept_records_timestamps() {
    let cfg = LogConfig {
        cleanup: CleanupPolicy::Compact,
        delete_retention_ms: 0,
        clock: ManualClock::new(10_000),
        ..config()
    };
    let (_storage, log) = mem_log(cfg);
    log.append(&mut batch::build(&[
        rec(Some(b"k1"), Some(b"a"), 1_000),
        rec(Some(b"k2"), Some(b"b"), 10),
    ]))
    .unwrap();
    log.append(&mut batch::build(&[rec(Some(b"k1"), Some(b"c"), 500)]))
        .unwrap();
    for i in 0..40 {
        let key = format!("f{i}");
        log.append(&mut batch::build(&[rec(
            Some(key.as_bytes()),
            Some(&[b'v'; 200]),
            1,
        )]))
        .unwrap();
    }
    log.compact().unwrap();
    let first = batches(&log.read(0, 1).unwrap().data).remove(0).0;
    assert_eq!(
        (
            first.record_count,
            first.base_timestamp,
            first.max_timestamp
        ),
        (1, 10, 10)
    );
    assert_eq!(read_all(&log)[0].3, 10, "the kept record's own timestamp");
    assert_eq!(log.max_timestamp().unwrap().unwrap().timestamp, 500);
}
