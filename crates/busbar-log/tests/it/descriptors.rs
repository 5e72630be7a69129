//! File descriptors and sealed-segment caches: the bound on open segment files and loaded indexes,
//! running out of descriptors (EMFILE) without taking the log offline, and time look-ups beyond the
//! log's max timestamp that load no sealed index.

use crate::common::*;
use busbar_log::disk::{FaultStorage, MemStorage, Storage};
use busbar_log::{Log, LogConfig, LogError, SegmentCache};
use std::sync::Arc;

fn cached(cache: &Arc<SegmentCache>) -> LogConfig {
    LogConfig {
        segment_cache: cache.clone(),
        ..small(1024)
    }
}

#[test]
fn sealed_segment_files_and_indexes_stay_within_their_bounds() {
    let cache = SegmentCache::new(4, 3);
    let storage = FaultStorage::new(MemStorage::new());
    let plan = storage.plan();
    let inner = storage.inner().clone();
    let log = Log::open(Arc::new(storage.clone()), cached(&cache)).unwrap();
    for i in 0..300 {
        log.append(&mut batch_of(2, &format!("{i}"), 2, i)).unwrap();
    }
    assert!(log.stats().segments > 20, "{:?}", log.stats());
    // Reading everything touches every sealed segment's file and indexes.
    assert_eq!(read_all(&log).len(), 600);
    assert!(log.offset_for_timestamp(150).unwrap().is_some());
    // The cache holds at most 4 sealed files; the log holds its active one.
    assert!(plan.open_files() <= 4 + 1, "{} open", plan.open_files());
    assert!(
        cache.open_files() <= 4 && cache.loaded_indexes() <= 3,
        "{cache:?}"
    );
    assert!(cache.file_reopens() > 0, "evicted files were reopened");
    log.close().unwrap();
    drop(log);
    let log = Log::open(Arc::new(storage), cached(&cache)).unwrap();
    assert!(
        plan.open_files() <= 4 + 1,
        "{} open after open",
        plan.open_files()
    );
    assert_eq!(read_all(&log).len(), 600);
    drop(log);
    assert_eq!(plan.open_files(), 0, "dropping the log closes its files");
    let _ = inner;
}

#[test]
fn running_out_of_descriptors_answers_an_error_and_keeps_the_log_online() {
    let cache = SegmentCache::new(0, 0); // every sealed read reopens its file
    let storage = FaultStorage::new(MemStorage::new());
    let plan = storage.plan();
    let log = Log::open(Arc::new(storage.clone()), cached(&cache)).unwrap();
    for n in 0..30 {
        log.append(&mut batch_of(2, &format!("{n}"), 2, n)).unwrap();
    }
    assert!(log.stats().segments >= 3);
    let before = log.stats();
    plan.set_descriptors_exhausted(true);
    let mut errors = 0;
    for _ in 0..20 {
        match log.append(&mut batch_of(2, "x", 2, 1)) {
            Ok(_) => {}
            Err(LogError::Io { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(24), "{source}");
                errors += 1;
                break;
            }
            Err(e) => panic!("the log must stay online: {e}"),
        }
    }
    assert_eq!(errors, 1, "a roll needed a descriptor");
    // A read of a sealed segment needs one too: an error for the reader, nothing more.
    let err = log.read(0, 100).unwrap_err();
    assert!(matches!(err, LogError::Io { .. }), "{err}");
    let stuck = log.stats();
    assert!(stuck.next_offset >= before.next_offset);
    assert_eq!(stuck.high_watermark, stuck.next_offset);
    plan.set_descriptors_exhausted(false);
    let at = log.append(&mut batch_of(2, "after", 2, 1)).unwrap();
    assert_eq!(at.base_offset, stuck.next_offset, "the roll was retried");
    assert_eq!(log.stats().segments, stuck.segments + 1);
    let evs = read_all(&log);
    assert_eq!(evs.len() as u64, at.last_offset + 1);
    drop(log);
    storage.inner().fs().crash(None);
    let log = Log::open(Arc::new(storage), cached(&cache)).unwrap();
    assert_eq!(read_all(&log), evs);
}

#[test]
fn a_time_look_up_beyond_the_logs_max_timestamp_loads_no_sealed_index() {
    let cache = SegmentCache::new(8, 8);
    let (s, log) = mem_log(cached(&cache));
    for i in 0..200 {
        log.append(&mut batch_of(2, &format!("{i}"), 2, 1_000 + i))
            .unwrap();
    }
    let segments = log.stats().segments;
    assert!(segments > 10);
    log.close().unwrap();
    drop(log);
    // Offset indexes gone: loading a sealed segment's indexes would rebuild and rewrite them.
    let offset_indexes: Vec<String> = s
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".index"))
        .collect();
    for n in &offset_indexes {
        s.remove(n).unwrap();
    }
    let log = reopen(&s, cached(&cache));
    let loads = cache.index_loads();
    assert_eq!(log.offset_for_timestamp(1_000_000).unwrap(), None);
    assert_eq!(log.offset_for_timestamp(i64::MAX).unwrap(), None);
    let rebuilt = s
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".index"))
        .count();
    assert!(
        rebuilt <= 1,
        "{rebuilt} offset indexes rebuilt by a look-up past the end"
    );
    assert_eq!(cache.index_loads(), loads, "no sealed index loaded");
    // Look-ups inside the log still answer, loading only the segment they need.
    // Batch 99 holds records with timestamps 1099 (offset 198) and 1100 (offset 199).
    assert_eq!(log.offset_for_timestamp(1_100).unwrap(), Some(199));
    assert_eq!(cache.index_loads(), loads + 1);
}
