//! A copied log (cluster mode's local copies, `LogConfig::copied`): batches appended at their
//! source's offsets, with the gaps and the partly emptied batches a compacted source has, read
//! back and kept across a power cut; the end moved past a gap without a write; and what is
//! refused (a batch below the end, a damaged one, either call on a log that is not a copy).

use crate::common::*;
use busbar_log::batch;
use busbar_log::{CompactionFilter, HeldKeys, Kept, KeyMap, Log, LogConfig, LogError};

/// `b` with its base offset written in.
fn at(mut b: Vec<u8>, base: u64) -> Vec<u8> {
    batch::patch(&mut b, base, 0);
    b
}

/// A batch of 4 records at `base` (keys k0, k1, k0, k1) as compaction leaves it: the two
/// later records only, its offset span still 4.
fn compacted(base: u64, tag: &str) -> Vec<u8> {
    let whole = at(batch_of(4, tag, 2, 1000), base);
    let mut map = KeyMap::new(1 << 20);
    map.put(b"k0", base + 2);
    map.put(b"k1", base + 3);
    let filter = CompactionFilter {
        map: &map,
        now: 0,
        delete_retention_ms: 0,
        log_start: 0,
        upto: u64::MAX,
        codec: None,
    };
    match filter.batch(&whole, &mut HeldKeys::new(1 << 20)) {
        (Kept::Rebuilt(b), 2, _) => b,
        _ => panic!("the filter keeps two records"),
    }
}

fn copied(segment_bytes: u64) -> LogConfig {
    LogConfig {
        copied: true,
        ..small(segment_bytes)
    }
}

/// Appends through `append_copied` and waits until it is durable; answers (base, last).
fn append(log: &Log, b: &[u8]) -> Result<(u64, u64), LogError> {
    let (a, ticket) = log.append_copied(&mut b.to_vec())?;
    if let Some(t) = ticket {
        log.wait_durable(t)?;
    }
    Ok((a.base_offset, a.last_offset))
}

#[test]
fn gapped_and_compacted_batches_are_kept_at_their_offsets_across_a_power_cut() {
    let cfg = copied(1024);
    let (mem, log) = mem_log(cfg.clone());
    let mut base = 0;
    let mut want = Vec::new();
    for i in 0..40u64 {
        let tag = format!("b{i}");
        let b = if i % 3 == 1 {
            compacted(base, &tag)
        } else {
            at(batch_of(3, &tag, 3, 1000), base)
        };
        let (first, last) = append(&log, &b).unwrap();
        assert_eq!(first, base, "the batch keeps its offsets");
        want.extend(events(&b));
        // The next batch starts past a gap (a whole batch the source's compaction removed).
        base = last + 1 + i % 5;
    }
    let end = want.last().unwrap().0 + 1;
    assert!(log.stats().segments > 3, "{:?}", log.stats());
    assert_eq!(read_all(&log), want);
    // A power cut after the last sync: recovery keeps every synced batch, gaps and all.
    drop(log);
    mem.fs().crash(None);
    let log = reopen(&mem, cfg.clone());
    assert_eq!(read_all(&log), want);
    assert_eq!(log.stats().next_offset, end);
    // Reading inside a gap answers the next batch.
    let gap = want.windows(2).find(|w| w[1].0 > w[0].0 + 1).unwrap()[0].0 + 1;
    let r = log.read(gap, 1 << 20).unwrap();
    assert!(events(&r.data)[0].0 > gap);
    // Appends go on after the recovered end, past another gap.
    assert_eq!(
        append(&log, &at(batch_of(1, "n", 1, 1), end + 3)).unwrap(),
        (end + 3, end + 3)
    );
}

#[test]
fn a_power_cut_leaves_a_copied_log_a_prefix_of_what_was_appended_never_a_hole() {
    // Copies never sync for an ack (sync `never`): a roll's sync is all there is, so a power
    // cut can tear any unsynced tail, a whole segment's included. Whatever is left must be a
    // prefix: a later segment kept after a torn one would hide a hole the copy never re-reads.
    let cfg = LogConfig {
        sync: busbar_log::SyncPolicy::Never,
        ..copied(1024)
    };
    for seed in 1..=60u64 {
        let (mem, log) = mem_log(cfg.clone());
        let (mut base, mut want) = (0, Vec::new());
        for i in 0..(seed % 23 + 5) {
            let b = at(batch_of(2, &format!("s{seed}-{i}"), 2, 1), base);
            let (_, last) = append(&log, &b).unwrap();
            want.extend(events(&b));
            base = last + 1 + (i + seed) % 3;
        }
        drop(log);
        mem.fs().crash(Some(seed));
        let got = read_all(&reopen(&mem, cfg.clone()));
        assert_eq!(got[..], want[..got.len()], "seed {seed}: not a prefix");
    }
}

#[test]
fn a_log_that_is_not_a_copy_cuts_a_gap_after_its_checkpoint_as_a_torn_write() {
    // Why the setting exists: without it, recovery ends the log at the first gap after the
    // checkpoint (there, a gap means bytes that never became durable).
    let (mem, log) = mem_log(copied(1 << 20));
    append(&log, &at(batch_of(2, "a", 2, 1), 0)).unwrap();
    append(&log, &at(batch_of(2, "b", 2, 1), 5)).unwrap();
    drop(log);
    mem.fs().crash(None);
    let plain = reopen(&mem, small(1 << 20));
    assert_eq!(plain.stats().next_offset, 2);
    drop(plain);
    let (mem, log) = mem_log(copied(1 << 20));
    append(&log, &at(batch_of(2, "a", 2, 1), 0)).unwrap();
    append(&log, &at(batch_of(2, "b", 2, 1), 5)).unwrap();
    drop(log);
    mem.fs().crash(None);
    assert_eq!(reopen(&mem, copied(1 << 20)).stats().next_offset, 7);
}

#[test]
fn the_end_moves_past_a_gap_without_a_write_and_bad_appends_change_nothing() {
    let (mem, log) = mem_log(copied(1 << 20));
    append(&log, &at(batch_of(3, "a", 3, 1), 0)).unwrap();
    log.skip_to(10).unwrap();
    log.skip_to(7).unwrap(); // never back
    let s = log.stats();
    assert_eq!((s.next_offset, s.high_watermark), (10, 10));
    assert!(log.read(5, 1 << 20).unwrap().data.is_empty());
    // Below the end: refused, nothing written.
    let before = log.stats().size_bytes;
    match append(&log, &at(batch_of(1, "x", 1, 1), 9)) {
        Err(LogError::OffsetOutOfRange {
            offset: 9, end: 10, ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // Damaged: a flipped byte, a record count of zero, a negative base offset.
    let mut flipped = at(batch_of(1, "x", 1, 1), 10);
    let n = flipped.len();
    flipped[n - 1] ^= 1;
    assert!(matches!(append(&log, &flipped), Err(LogError::Batch(_))));
    let h = batch::BatchHeader::parse(&flipped).unwrap();
    let empty = batch::assemble(
        &batch::BatchHeader {
            record_count: 0,
            ..h
        },
        &[],
    );
    assert!(matches!(append(&log, &empty), Err(LogError::Batch(_))));
    let negative = at(batch_of(1, "x", 1, 1), u64::MAX);
    assert!(matches!(append(&log, &negative), Err(LogError::Batch(_))));
    assert_eq!(log.stats().size_bytes, before);
    assert_eq!(log.stats().next_offset, 10);
    // At the end: taken there; the gap reads as the next batch.
    append(&log, &at(batch_of(1, "y", 1, 1), 10)).unwrap();
    assert_eq!(events(&log.read(5, 1 << 20).unwrap().data)[0].0, 10);
    // A skip alone is not durable: after a power cut before the append's sync... here the
    // append was synced, so the log ends after it.
    drop(log);
    mem.fs().crash(None);
    assert_eq!(reopen(&mem, copied(1 << 20)).stats().next_offset, 11);
    // A log that is not a copy refuses both calls.
    let (_, plain) = mem_log(small(1 << 20));
    let b = at(batch_of(1, "x", 1, 1), 0);
    assert!(matches!(
        plain.append_copied(&mut b.clone()),
        Err(LogError::Config(_))
    ));
    assert!(matches!(plain.skip_to(5), Err(LogError::Config(_))));
    assert_eq!(plain.stats().next_offset, 0);
}
