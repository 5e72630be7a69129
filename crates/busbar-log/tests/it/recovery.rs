//! Recovery after clean shutdown, crashes, torn tails and on-disk damage, through the public API.

use crate::common::*;
use busbar_log::disk::{MemStorage, Storage};
use busbar_log::{LogConfig, LogError};

fn names(s: &MemStorage, ext: &str) -> Vec<String> {
    let mut v: Vec<_> = s
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(ext))
        .collect();
    v.sort();
    v
}

fn fill(cfg: &LogConfig, batches: usize) -> MemStorage {
    let (s, log) = mem_log(cfg.clone());
    for i in 0..batches {
        log.append(&mut batch_of(3, &format!("b{i}"), 7, i as i64))
            .unwrap();
    }
    log.close().unwrap();
    s
}

#[test]
fn clean_restart_reads_no_segment_bytes() {
    let cfg = small(1024);
    let s = fill(&cfg, 200);
    let log = reopen(&s, cfg.clone());
    let rep = log.recovery().clone();
    assert!(
        rep.clean && rep.scanned_bytes == 0 && rep.rebuilt_indexes == 0,
        "{rep:?}"
    );
    assert_eq!(read_all(&log).len(), 600);
    assert_eq!(
        log.append(&mut batch_of(1, "n", 1, 1)).unwrap().base_offset,
        600
    );
}

#[test]
fn crash_recovery_scans_only_the_tail_and_keeps_every_synced_batch() {
    let cfg = small(1 << 20);
    let s = fill(&cfg, 400); // one large segment, checkpoint at close
    let log = reopen(&s, cfg.clone());
    for i in 0..5 {
        log.append(&mut batch_of(2, &format!("t{i}"), 2, 9))
            .unwrap();
    }
    drop(log);
    s.fs().crash(None);
    let log = reopen(&s, cfg.clone());
    let rep = log.recovery();
    assert!(!rep.clean);
    assert!(rep.scanned_bytes > 0 && rep.scanned_bytes < 2000, "{rep:?}");
    assert_eq!(read_all(&log).len(), 1210);
    assert_eq!(log.stats().epoch, 1, "an unclean recovery bumps the epoch");
}

#[test]
fn a_torn_tail_is_truncated_to_the_last_whole_batch() {
    let cfg = small(1 << 20);
    let s = fill(&cfg, 10);
    let log = reopen(&s, cfg.clone());
    log.append(&mut batch_of(2, "whole", 2, 1)).unwrap();
    drop(log);
    let seg = names(&s, ".log")[0].clone();
    let len = s.open(&seg).unwrap().len();
    // A half-written batch after the last synced one, as a crash mid-write leaves it.
    let partial = batch_of(3, "torn", 2, 1);
    s.corrupt(&seg, len, &partial[..partial.len() / 2]).unwrap();
    let log = reopen(&s, cfg.clone());
    assert_eq!(log.recovery().truncated_bytes, (partial.len() / 2) as u64);
    assert_eq!(read_all(&log).len(), 32);
    assert_eq!(s.open(&seg).unwrap().len(), len);
}

#[test]
fn garbage_and_zeroed_tails_are_truncated_too() {
    for junk in [
        vec![0u8; 4096],
        vec![0xAB; 100],
        vec![0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff],
    ] {
        let cfg = small(1 << 20);
        let s = fill(&cfg, 5);
        let log = reopen(&s, cfg.clone());
        drop(log);
        let seg = names(&s, ".log")[0].clone();
        let len = s.open(&seg).unwrap().len();
        s.corrupt(&seg, len, &junk).unwrap();
        let log = reopen(&s, cfg.clone());
        assert_eq!(log.recovery().truncated_bytes, junk.len() as u64);
        assert_eq!(read_all(&log).len(), 15);
    }
}

#[test]
fn a_bit_flip_in_a_sealed_segment_is_reported_and_never_served() {
    let cfg = small(1024);
    let s = fill(&cfg, 100);
    let segs = names(&s, ".log");
    let victim = &segs[2];
    s.corrupt(victim, 100, &[0x55]).unwrap();
    let log = reopen(&s, cfg.clone());
    let base: u64 = victim.trim_end_matches(".log").parse().unwrap();
    // Reading inside the damaged segment: batches before the damage are served, then an error.
    let mut offset = base;
    let err = loop {
        match log.read(offset, 1) {
            Ok(r) => {
                let bs = batches(&r.data);
                offset = bs.last().unwrap().0.last_offset() as u64 + 1;
            }
            Err(e) => break e,
        }
    };
    assert!(matches!(err, LogError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(victim.as_str()), "{err}");
    assert!(log.damage_count() >= 1);
    // Everything outside the damaged segment still reads.
    let next: u64 = segs[3].trim_end_matches(".log").parse().unwrap();
    assert!(!log.read(next, 1 << 20).unwrap().data.is_empty());
    assert!(!log.read(0, 1 << 20).unwrap().data.is_empty());
}

#[test]
fn damaged_or_missing_indexes_are_rebuilt() {
    let cfg = small(1024);
    let s = fill(&cfg, 100);
    let idx = names(&s, ".index");
    s.corrupt(&idx[1], 40, &[0xff, 0xff]).unwrap();
    s.remove(&idx[2]).unwrap();
    s.corrupt(&names(&s, ".timeindex")[3], 0, b"garbage!")
        .unwrap();
    let log = reopen(&s, cfg.clone());
    assert_eq!(read_all(&log).len(), 300);
    assert_eq!(log.offset_for_timestamp(50).unwrap(), Some(146)); // batch 48 holds ts 48, 49, 50
                                                                  // The rebuilt indexes were written back.
    assert!(names(&s, ".index").len() >= idx.len());
}

#[test]
fn a_damaged_checkpoint_means_a_full_scan_not_data_loss() {
    let cfg = small(1024);
    let s = fill(&cfg, 50);
    s.corrupt("checkpoint", 20, &[1, 2, 3]).unwrap();
    let log = reopen(&s, cfg.clone());
    let rep = log.recovery();
    assert!(rep.checkpoint_problem.is_some(), "{rep:?}");
    assert!(rep.scanned_bytes > 4000, "{rep:?}");
    assert_eq!(read_all(&log).len(), 150);
}

#[test]
fn leftovers_are_removed_and_unknown_versions_refused() {
    let cfg = small(1024);
    let s = fill(&cfg, 10);
    s.create("checkpoint.tmp").unwrap().append(b"half").unwrap();
    s.create("00000000000000000000.log.cleaned").unwrap();
    s.sync_dir().unwrap();
    let log = reopen(&s, cfg.clone());
    assert_eq!(log.recovery().removed_leftovers, 2);
    drop(log);
    let seg = names(&s, ".log")[0].clone();
    // A damaged header is damage, contained to its segment; a newer version is refused.
    s.corrupt(&seg, 0, b"NOTALOG!").unwrap();
    let log = reopen(&s, cfg.clone());
    assert_eq!(log.recovery().damaged_segments[0].0, 0);
    drop(log);
    let mut v2 = b"BBSEGLOG\x00\x02\x00\x00".to_vec();
    v2.extend_from_slice(&crc32c::crc32c(&v2).to_be_bytes());
    s.corrupt(&seg, 0, &v2).unwrap();
    let err = busbar_log::Log::open(std::sync::Arc::new(s.clone()), cfg)
        .err()
        .unwrap();
    assert!(matches!(err, LogError::UnsupportedFormat { .. }), "{err}");
}

#[test]
fn missing_segments_with_a_checkpoint_refuse_to_open() {
    let cfg = small(1024);
    let s = fill(&cfg, 10);
    for n in names(&s, ".log") {
        s.remove(&n).unwrap();
    }
    let err = busbar_log::Log::open(std::sync::Arc::new(s.clone()), cfg)
        .err()
        .unwrap();
    assert!(err.to_string().contains("no segment file"), "{err}");
}

#[test]
fn a_zeroed_block_inside_the_verified_active_segment_is_never_served_and_new_appends_still_read() {
    let cfg = small(1 << 20);
    let s = fill(&cfg, 100); // one segment, clean checkpoint at its end
    let seg = names(&s, ".log")[0].clone();
    s.corrupt(&seg, 2048, &[0u8; 512]).unwrap();
    let log = reopen(&s, cfg.clone());
    assert_eq!(
        log.recovery().truncated_bytes,
        0,
        "acknowledged data is never truncated"
    );
    let mut saw_error = false;
    let mut offset = 0;
    while offset < 300 {
        match log.read(offset, 1) {
            Ok(r) => offset = batches(&r.data)[0].0.last_offset() as u64 + 1,
            Err(LogError::Corrupt { .. }) => {
                saw_error = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(saw_error && offset > 0);
    let at = log.append(&mut batch_of(1, "fresh", 1, 1)).unwrap();
    assert_eq!(at.base_offset, 300);
    assert_eq!(
        events(&log.read(300, 100).unwrap().data)[0].2.as_deref(),
        Some(&b"fresh-0"[..])
    );
}

#[test]
fn a_truncated_sealed_segment_is_reported_on_read() {
    let cfg = small(1024);
    let s = fill(&cfg, 60);
    let segs = names(&s, ".log");
    let f = s.open(&segs[1]).unwrap();
    f.truncate(f.len() - 30).unwrap();
    f.sync().unwrap();
    let log = reopen(&s, cfg.clone());
    let base: u64 = segs[1].trim_end_matches(".log").parse().unwrap();
    let mut offset = base;
    let err = loop {
        match log.read(offset, 1) {
            Ok(r) if r.data.is_empty() => panic!("ran past the damage"),
            Ok(r) => offset = batches(&r.data)[0].0.last_offset() as u64 + 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, LogError::Corrupt { .. }), "{err}");
    let next: u64 = segs[2].trim_end_matches(".log").parse().unwrap();
    assert!(!log.read(next, 10).unwrap().data.is_empty());
}

/// A log with a few segments left by a crash (no clean shutdown), then the file a roll was creating
/// when the power went: its directory entry reached the disk, its header bytes did not.
fn crash_during_roll(cfg: &LogConfig, torn_header: &[u8]) -> (MemStorage, u64, Vec<Event>) {
    let (s, log) = mem_log(cfg.clone());
    for i in 0..30 {
        log.append(&mut batch_of(3, &format!("b{i}"), 7, i as i64))
            .unwrap();
    }
    let next = log.stats().next_offset;
    let before = read_all(&log);
    drop(log);
    s.fs().crash(None);
    let name = format!("{next:020}.log");
    let f = s.create(&name).unwrap();
    f.append(torn_header).unwrap();
    f.sync().unwrap();
    s.sync_dir().unwrap();
    (s, next, before)
}

#[test]
fn a_new_segment_whose_zero_filled_header_was_cut_by_a_crash_is_removed_at_open() {
    let cfg = small(1024);
    for torn in [&[0u8; 16][..], &[0u8; 5][..], &[][..]] {
        let (s, next, before) = crash_during_roll(&cfg, torn);
        let segs_before = names(&s, ".log").len();
        let log = reopen(&s, cfg.clone());
        let torn_name = format!("{next:020}.log");
        assert!(!names(&s, ".log").contains(&torn_name), "{torn:?}");
        assert_eq!(names(&s, ".log").len(), segs_before - 1);
        assert_eq!(log.recovery().removed_torn_segments, vec![next]);
        assert!(log.recovery().damaged_segments.is_empty());
        assert_eq!(log.stats().next_offset, next);
        assert_eq!(read_all(&log), before, "earlier data reads fine");
        // The next roll creates the segment again; appends carry on at the same offset.
        let at = log.append(&mut batch_of(1, "after", 1, 1)).unwrap();
        assert_eq!(at.base_offset, next);
        for i in 0..20 {
            log.append(&mut batch_of(3, &format!("c{i}"), 7, 1))
                .unwrap();
        }
        drop(log);
        let log = reopen(&s, cfg.clone());
        assert_eq!(read_all(&log).len(), before.len() + 61);
    }
}

#[test]
fn the_only_segment_torn_at_creation_is_written_again_empty() {
    let cfg = small(1024);
    let s = MemStorage::new();
    let f = s.create(&format!("{:020}.log", 0)).unwrap();
    f.append(&[0u8; 16]).unwrap();
    f.sync().unwrap();
    s.sync_dir().unwrap();
    let log = reopen(&s, cfg);
    assert_eq!(log.stats().next_offset, 0);
    assert_eq!(
        log.append(&mut batch_of(1, "a", 1, 1)).unwrap().base_offset,
        0
    );
}

#[test]
fn a_damaged_header_of_a_sealed_segment_is_reported_and_contained_to_that_segment() {
    let cfg = small(1024);
    let s = fill(&cfg, 60);
    let segs = names(&s, ".log");
    let victim = &segs[1];
    s.corrupt(victim, 0, &[0u8; 16]).unwrap();
    let log = reopen(&s, cfg.clone());
    let base: u64 = victim.trim_end_matches(".log").parse().unwrap();
    let damaged = &log.recovery().damaged_segments;
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert_eq!((damaged[0].0, damaged[0].1), (base, 0));
    assert!(log.damage_count() >= 1);
    let err = log.read(base, 100).unwrap_err();
    assert!(matches!(err, LogError::Corrupt { .. }), "{err}");
    assert!(!log.read(0, 100).unwrap().data.is_empty());
    let next: u64 = segs[2].trim_end_matches(".log").parse().unwrap();
    assert_eq!(log.next_segment_base(base), Some(next));
    assert!(!log.read(next, 100).unwrap().data.is_empty());
    let end = log.stats().next_offset;
    assert_eq!(
        log.append(&mut batch_of(1, "x", 1, 1)).unwrap().base_offset,
        end
    );
}
