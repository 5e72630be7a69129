//! Compaction with bounded memory: more distinct keys than the key map holds are compacted in
//! several passes to exactly the latest record per key, the map never grows past its budget, a
//! rewrite is written in bounded pieces, and random logs compact to what a simple model says.

use crate::common::gate::{Gate, GatedStorage};
use crate::common::*;
use busbar_log::disk::{MemStorage, Storage};
use busbar_log::{batch, CleanupPolicy, Clock, Log, LogConfig, ManualClock, REWRITE_CHUNK_BYTES};
use busbar_testkit::{for_each_seed, Rng};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

fn compacting(map_bytes: u64, segment_bytes: u64) -> LogConfig {
    LogConfig {
        cleanup: CleanupPolicy::Compact,
        delete_retention_ms: 1_000_000,
        compaction_map_bytes: map_bytes,
        clock: ManualClock::new(1_000),
        ..small(segment_bytes)
    }
}

/// Appends keyless records until the log rolls once more, so every keyed record so far lies in a
/// sealed segment covered by a checkpoint (the part compaction works on).
fn settle(log: &Log) {
    let segments = log.stats().segments;
    while log.stats().segments == segments {
        log.append(&mut batch::build(&[rec(None, Some(b"filler"), 1_000)]))
            .unwrap();
    }
}

/// Key → (offset, value) of the latest keyed record in `evs`.
fn latest(evs: &[Event]) -> HashMap<Vec<u8>, (u64, Option<Vec<u8>>)> {
    let mut m = HashMap::new();
    for e in evs {
        if let Some(k) = &e.1 {
            m.insert(k.clone(), (e.0, e.2.clone()));
        }
    }
    m
}

#[test]
fn more_keys_than_the_map_holds_are_compacted_in_passes_to_the_latest_value_each() {
    let budget = 4096;
    let (_s, log) = mem_log(compacting(budget, 4096));
    for round in 0..3 {
        for k in 0..600 {
            let key = format!("key-{k:04}");
            let val = format!("v{round}-{k}");
            log.append(&mut batch::build(&[rec(
                Some(key.as_bytes()),
                Some(val.as_bytes()),
                1_000,
            )]))
            .unwrap();
        }
    }
    settle(&log);
    let before = read_all(&log);
    let want = latest(&before);
    let rep = log.compact().unwrap();
    assert!(rep.compaction_passes > 5, "{rep:?}");
    assert!(
        rep.map_bytes_peak > 0 && rep.map_bytes_peak <= budget,
        "{rep:?}"
    );
    let after = read_all(&log);
    let keyed: Vec<&Event> = after.iter().filter(|e| e.1.is_some()).collect();
    assert_eq!(keyed.len(), 600, "exactly one record per key is left");
    for e in keyed {
        let (offset, value) = &want[e.1.as_ref().unwrap()];
        assert_eq!((&e.0, &e.2), (offset, value), "the latest of each key");
    }
    assert!(after.iter().all(|e| before.contains(e)));
    // Nothing new settled: the next call runs no pass and reads nothing.
    let again = log.compact().unwrap();
    assert_eq!(again.compaction_passes, 0, "{again:?}");
}

#[test]
fn a_rewrite_is_written_in_bounded_pieces() {
    let gate = Gate::new();
    let mem = MemStorage::new();
    let storage = GatedStorage::new(mem.clone(), gate.clone());
    let cfg = compacting(1 << 20, 4 << 20);
    let log = Log::open(Arc::new(storage) as Arc<dyn Storage>, cfg).unwrap();
    let value = vec![b'x'; 1000];
    let batch_len = batch::build(&[rec(Some(b"key-0000"), Some(&value), 1_000)]).len();
    // ~3.5 MiB of distinct keys, then the first 100 written again: one segment whose rewrite keeps
    // almost everything.
    for k in (0..3500).chain(0..100) {
        let key = format!("key-{k:04}");
        log.append(&mut batch::build(&[rec(
            Some(key.as_bytes()),
            Some(&value),
            1_000,
        )]))
        .unwrap();
    }
    settle(&log);
    gate.take_max_append();
    let rep = log.compact().unwrap();
    assert_eq!(rep.segments_rewritten, 1, "{rep:?}");
    let rewritten = mem.open(&format!("{:020}.log", 0)).unwrap().len();
    assert!(rewritten > 8 * REWRITE_CHUNK_BYTES as u64, "{rewritten}");
    let max = gate.take_max_append();
    assert!(
        max <= REWRITE_CHUNK_BYTES + batch_len,
        "one append of {max} bytes (chunk {REWRITE_CHUNK_BYTES}, batch {batch_len})"
    );
    assert_eq!(
        read_all(&log).iter().filter(|e| e.1.is_some()).count(),
        3500
    );
}

/// Random keyed records (some tombstones, some batches of several records) stamped with a clock
/// that moves, so tombstones expire along the way; random small map budgets and segment sizes;
/// compaction called at random points. Then everything settled and compacted: a key whose latest
/// record holds a value keeps exactly that record; a key whose latest record is a tombstone keeps
/// at most that tombstone (never an older value); keyless records are all kept; every survivor is
/// an original record at its offset. Once every tombstone has expired, only live keys are left.
/// With `compress`, about half the batches are gzip-compressed (and the log has the codec).
fn random_log(seed: u64, compress: bool) {
    let mut rng = Rng::new(seed);
    let clock = ManualClock::new(1_000);
    let cfg = LogConfig {
        delete_retention_ms: 200 + rng.below(2000) as i64,
        clock: clock.clone(),
        codec: compress.then(|| Arc::new(Gzip) as Arc<dyn busbar_log::Codec>),
        // Compactions along the way start at any dirty ratio; the last runs at 0.
        min_cleanable_dirty_ratio: [0.0, 0.5, 0.9][rng.below(3) as usize],
        ..compacting(200 + rng.below(3000), 1024 + rng.below(4096))
    };
    let (_s, log) = mem_log(cfg.clone());
    let keys = 1 + rng.below(300);
    let mut all: BTreeMap<u64, Event> = BTreeMap::new();
    for _ in 0..rng.below(400) {
        let now = clock.now_ms();
        let n = 1 + rng.below(3) as usize;
        let recs: Vec<_> = (0..n)
            .map(|_| {
                let key = (!rng.chance(5)).then(|| format!("k{}", rng.below(keys)).into_bytes());
                let len = rng.below(40) as usize;
                let value = (!rng.chance(15)).then(|| rng.bytes(len));
                // Records of a batch a little apart: a rebuilt batch re-encodes their deltas.
                rec(key.as_deref(), value.as_deref(), now - rng.below(50) as i64)
            })
            .collect();
        let mut b = batch::build(&recs);
        if compress && rng.chance(2) {
            b = gzipped(&b);
        }
        let at = log.append(&mut b).unwrap();
        for (i, r) in recs.iter().enumerate() {
            let o = at.base_offset + i as u64;
            all.insert(o, (o, r.key.clone(), r.value.clone(), r.timestamp));
        }
        clock.advance(rng.below(40) as i64);
        if rng.chance(3) {
            log.compact().unwrap();
        }
    }
    settle(&log);
    log.set_config(LogConfig {
        min_cleanable_dirty_ratio: 0.0,
        ..cfg
    })
    .unwrap();
    log.compact().unwrap();
    let evs: Vec<Event> = all.values().cloned().collect();
    let want = latest(&evs);
    let after = read_all(&log);
    for e in after.iter().filter(|e| e.0 < all.len() as u64) {
        assert_eq!(Some(e), all.get(&e.0), "seed {seed}: an original record");
    }
    let mut seen = HashMap::new();
    for e in after.iter().filter(|e| e.1.is_some()) {
        assert!(
            seen.insert(e.1.clone().unwrap(), e.0).is_none(),
            "seed {seed}: one per key"
        );
    }
    for (k, (o, v)) in &want {
        match (v, seen.get(k)) {
            (Some(_), got) => assert_eq!(got, Some(o), "seed {seed}: latest of {k:?}"),
            (None, got) => assert!(got.is_none_or(|g| g == o), "seed {seed}: {k:?} came back"),
        }
    }
    assert!(seen.keys().all(|k| want.contains_key(k)));
    let keyless = evs.iter().filter(|e| e.1.is_none()).count();
    let keyless_after = after
        .iter()
        .filter(|e| e.1.is_none() && e.0 < all.len() as u64);
    assert_eq!(
        keyless_after.count(),
        keyless,
        "seed {seed}: keyless records kept"
    );
    clock.advance(1_000_000);
    log.compact().unwrap();
    let live = want.values().filter(|(_, v)| v.is_some()).count();
    let keyed_after = read_all(&log).into_iter().filter(|e| e.1.is_some()).count();
    assert_eq!(keyed_after, live, "seed {seed}: expired tombstones dropped");
}

#[test]
fn random_logs_compact_to_the_latest_record_per_key() {
    for_each_seed(60, |seed| random_log(seed, false));
}

#[test]
fn random_logs_of_compressed_and_plain_batches_compact_to_the_latest_record_per_key() {
    for_each_seed(60, |seed| random_log(seed, true));
}

/// A damaged segment is never rewritten, so an older value of a key can survive in it; a pass
/// that meets one must not drop an expired tombstone after it, or the deleted key comes back.
#[test]
fn an_expired_tombstone_is_kept_when_an_older_value_lies_in_a_damaged_segment() {
    let clock = ManualClock::new(1_000);
    let cfg = LogConfig {
        clock: clock.clone(),
        min_cleanable_dirty_ratio: 0.0,
        ..compacting(1 << 20, 4096)
    };
    let (s, log) = mem_log(cfg);
    let first = batch::build(&[rec(Some(b"gone"), Some(b"old value"), 1_000)]);
    log.append(&mut first.clone()).unwrap();
    for _ in 0..5 {
        log.append(&mut batch::build(&[rec(None, Some(b"filler"), 1_000)]))
            .unwrap();
    }
    settle(&log);
    let tomb = log
        .append(&mut batch::build(&[rec(Some(b"gone"), None, 1_000)]))
        .unwrap()
        .base_offset;
    settle(&log);
    // Damage the first segment just after the old value (inside the next batch's body).
    let segment_header = 16;
    s.corrupt(
        &format!("{:020}.log", 0),
        segment_header + first.len() as u64 + 30,
        &[0x55; 4],
    )
    .unwrap();
    log.compact().unwrap(); // sets the tombstone's delete horizon
    clock.advance(2_000_000);
    // New settled data: a pass runs past the horizon, meets the damaged segment (marked by
    // the first pass) and holds the tombstone.
    log.append(&mut batch::build(&[rec(Some(b"new"), Some(b"v"), 1_000)]))
        .unwrap();
    settle(&log);
    assert_eq!(log.compact().unwrap().compaction_passes, 1);
    let old = events(&log.read(0, 1).unwrap().data);
    assert_eq!(old[0].2.as_deref(), Some(&b"old value"[..]), "{old:?}");
    let at_tomb = events(&log.read(tomb, 1).unwrap().data);
    assert!(
        at_tomb
            .iter()
            .any(|e| e.0 == tomb && e.1.as_deref() == Some(b"gone") && e.2.is_none()),
        "the tombstone must stay while the older value cannot be removed: {at_tomb:?}"
    );
}

/// Kafka's `min.cleanable.dirty.ratio`: after the first compaction, new settled data starts one
/// only once it is at least that share of the settled bytes; an expiring tombstone starts one
/// whatever the share.
#[test]
fn new_data_starts_a_compaction_only_past_the_dirty_ratio() {
    let clock = ManualClock::new(1_000);
    let cfg = LogConfig {
        min_cleanable_dirty_ratio: 0.5,
        clock: clock.clone(),
        ..compacting(1 << 20, 4096)
    };
    let (_s, log) = mem_log(cfg);
    let put = |k: &str, v: Option<&[u8]>| {
        log.append(&mut batch::build(&[rec(Some(k.as_bytes()), v, 1_000)]))
            .unwrap()
    };
    for i in 0..400 {
        put(&format!("k{}", i % 50), Some(&[b'v'; 40]));
    }
    settle(&log);
    assert_eq!(
        log.compact().unwrap().compaction_passes,
        1,
        "the first runs"
    );
    let clean = log.stats().size_bytes;
    // A little new data (well below half of what is settled): no compaction.
    put("k1", None);
    settle(&log);
    let r = log.compact().unwrap();
    assert_eq!(r.compaction_passes, 0, "{r:?} with {clean} bytes clean");
    // As much new data again as is clean: it runs, and the tombstone is kept with a horizon.
    while log.stats().size_bytes < clean * 3 {
        put("k2", Some(&[b'w'; 40]));
    }
    settle(&log);
    assert_eq!(log.compact().unwrap().compaction_passes, 1);
    // Its horizon passing starts one with no new data at all.
    clock.advance(1_000_000);
    assert_eq!(log.compact().unwrap().compaction_passes, 1);
    assert!(
        read_all(&log).iter().all(|e| e.1.as_deref() != Some(b"k1")),
        "k1 deleted"
    );
}
