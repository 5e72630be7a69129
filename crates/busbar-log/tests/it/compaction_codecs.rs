//! Compaction of compressed and transactional batches: a compressed batch is inflated with the
//! log's codec, filtered like any other and compressed again with its own codec; a transactional
//! batch (or a compressed one no codec can read) is kept whole, and no tombstone of a key it may
//! hold an older value of expires, or the deleted key would come back.

use crate::common::*;
use busbar_log::batch::{self, BatchHeader, Records, HEADER_BYTES};
use busbar_log::{CleanupPolicy, Codec, Log, LogConfig, ManualClock};
use std::sync::Arc;

fn config(clock: &Arc<ManualClock>, codec: Option<Arc<dyn Codec>>) -> LogConfig {
    LogConfig {
        cleanup: CleanupPolicy::Compact,
        delete_retention_ms: 1_000_000,
        clock: clock.clone(),
        codec,
        ..small(4096)
    }
}

/// `b` (built by `batch::build`) with its attributes or'ed with `attrs` and its records section
/// replaced by `section`.
fn reassemble(b: &[u8], attrs: i16, section: &[u8]) -> Vec<u8> {
    let h = BatchHeader::parse(b).unwrap();
    let producer = if attrs & 0x10 != 0 { 7 } else { -1 };
    batch::assemble(
        &BatchHeader {
            attributes: h.attributes | attrs,
            producer_id: producer,
            producer_epoch: if producer < 0 { -1 } else { 0 },
            base_sequence: if producer < 0 { -1 } else { 0 },
            ..h
        },
        section,
    )
}

/// A gzip-compressed batch of `records` (key, value).
fn gzip_batch(records: &[(&str, Option<&str>)]) -> Vec<u8> {
    let recs: Vec<_> = records
        .iter()
        .map(|(k, v)| rec(Some(k.as_bytes()), v.map(str::as_bytes), 1_000))
        .collect();
    gzipped(&batch::build(&recs))
}

/// A transactional (uncompressed) batch of one record.
fn transactional(key: &str, value: &str) -> Vec<u8> {
    let plain = batch::build(&[rec(Some(key.as_bytes()), Some(value.as_bytes()), 1_000)]);
    reassemble(&plain, 0x10, &plain[HEADER_BYTES..])
}

/// A compaction (which sets the tombstones' delete horizons), then one past them.
fn expire(log: &Log, clock: &ManualClock) {
    log.compact().unwrap();
    clock.advance(2_000_000);
    log.compact().unwrap();
}

fn append(log: &Log, b: Vec<u8>) -> u64 {
    log.append(&mut b.clone()).unwrap().base_offset
}

fn put(log: &Log, key: &str, value: Option<&str>) -> u64 {
    append(
        log,
        batch::build(&[rec(Some(key.as_bytes()), value.map(str::as_bytes), 1_000)]),
    )
}

/// Rolls the log (keyless filler) until everything so far is settled.
fn settle(log: &Log) {
    let segments = log.stats().segments;
    while log.stats().segments == segments {
        append(log, batch::build(&[rec(None, Some(b"filler"), 1_000)]));
    }
}

/// Every keyed record left, compressed batches inflated: (offset, key, value, codec).
fn keyed(log: &Log) -> Vec<(u64, String, Option<String>, u8)> {
    let stats = log.stats();
    let (mut offset, mut out) = (stats.log_start, Vec::new());
    while offset < stats.high_watermark {
        let data = log.read(offset, 1 << 20).unwrap().data;
        for (h, b) in batches(&data) {
            let section = match h.compression() {
                0 => b[HEADER_BYTES..].to_vec(),
                c => Gzip.decompress(c, &b[HEADER_BYTES..]).unwrap(),
            };
            for r in Records::new(&section) {
                let r = r.unwrap();
                if let Some(k) = r.key {
                    out.push((
                        h.base_offset as u64 + r.offset_delta as u64,
                        String::from_utf8(k.to_vec()).unwrap(),
                        r.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                        h.compression(),
                    ));
                }
            }
            offset = h.last_offset() as u64 + 1;
        }
    }
    out
}

#[test]
fn compressed_batches_are_compacted_and_stay_compressed() {
    let clock = ManualClock::new(1_000);
    let log = mem_log(config(&clock, Some(Arc::new(Gzip)))).1;
    // Values long enough that gzip shrinks even a rebuild of one record (else it is stored
    // uncompressed: see the next test but one).
    let long = |s: &str| format!("{s}-{}", "x".repeat(300));
    for round in 0..3 {
        let vals: Vec<String> = (0..4).map(|k| long(&format!("r{round}-k{k}"))).collect();
        let recs: Vec<_> = (0..4)
            .map(|k| (["a", "b", "c", "d"][k], Some(vals[k].as_str())))
            .collect();
        append(&log, gzip_batch(&recs));
    }
    // A plain value superseded by a compressed one, and a compressed value deleted by a plain
    // tombstone (which expires below).
    put(&log, "e", Some("plain"));
    append(
        &log,
        gzip_batch(&[("e", Some(&long("packed"))), ("d", None)]),
    );
    settle(&log);
    let before = log.stats().size_bytes;
    log.compact().unwrap();
    let left = keyed(&log);
    let want = |k: &str, v: Option<&str>, codec: u8| {
        assert!(
            left.iter()
                .any(|e| e.1 == k && e.2.as_deref() == v && e.3 == codec),
            "{k}={v:?} (codec {codec}) kept: {left:?}"
        );
    };
    want("a", Some(&long("r2-k0")), 1);
    want("c", Some(&long("r2-k2")), 1);
    want("e", Some(&long("packed")), 1);
    want("d", None, 1);
    assert_eq!(left.len(), 5, "one record per key: {left:?}");
    assert!(log.stats().size_bytes < before, "compaction freed nothing");
    // Once the tombstone expires, the key is gone from the compressed batches too.
    clock.advance(2_000_000);
    append(&log, batch::build(&[rec(None, Some(b"x"), 2_001_000)]));
    settle(&log);
    log.compact().unwrap();
    let left = keyed(&log);
    assert!(left.iter().all(|e| e.1 != "d"), "{left:?}");
    assert_eq!(left.len(), 4, "{left:?}");
}

#[test]
fn an_expired_tombstone_is_kept_while_an_older_value_lies_in_a_transactional_batch() {
    let clock = ManualClock::new(1_000);
    let log = mem_log(config(&clock, Some(Arc::new(Gzip)))).1;
    let old = append(&log, transactional("gone", "committed value"));
    // A compressed transactional batch holds its keys as well.
    let plain = batch::build(&[rec(Some(b"packed"), Some(b"committed"), 1_000)]);
    let packed_txn = gzipped(&plain);
    let packed_old = append(
        &log,
        reassemble(&packed_txn, 0x10, &packed_txn[HEADER_BYTES..]),
    );
    put(&log, "other", Some("old"));
    settle(&log);
    let tomb = put(&log, "gone", None);
    let packed_tomb = put(&log, "packed", None);
    let other_tomb = put(&log, "other", None);
    settle(&log);
    expire(&log, &clock);
    let left = keyed(&log);
    assert!(left.iter().any(|e| e.0 == old), "kept whole: {left:?}");
    assert!(
        left.iter().any(|e| e.0 == packed_old) && left.iter().any(|e| e.0 == packed_tomb),
        "{left:?}"
    );
    assert!(
        left.iter().any(|e| e.0 == tomb && e.2.is_none()),
        "the tombstone must stay while the transactional value does: {left:?}"
    );
    assert!(
        left.iter().all(|e| e.0 != other_tomb && e.1 != "other"),
        "a key no transaction wrote is deleted for good: {left:?}"
    );
}

#[test]
fn without_a_codec_a_compressed_batch_is_kept_whole_and_holds_the_tombstones_after_it() {
    let clock = ManualClock::new(1_000);
    let cfg = config(&clock, None);
    let log = mem_log(cfg).1;
    let old = append(&log, gzip_batch(&[("gone", Some("packed value"))]));
    // A compressed batch whose data is not gzip at all: kept as it is, never a panic.
    let plain = batch::build(&[rec(Some(b"junk"), Some(b"v"), 1_000)]);
    let junk = append(&log, reassemble(&plain, 1, b"not gzip"));
    settle(&log);
    let tomb = put(&log, "gone", None);
    settle(&log);
    expire(&log, &clock);
    let data = log.read(0, 1 << 20).unwrap().data;
    let bases: Vec<u64> = batches(&data)
        .iter()
        .map(|(h, _)| h.base_offset as u64)
        .collect();
    assert!(bases.contains(&old) && bases.contains(&junk), "{bases:?}");
    let at = batches(&log.read(tomb, 1 << 20).unwrap().data);
    assert_eq!(at[0].0.base_offset as u64, tomb, "the tombstone stays");
}

#[test]
fn a_compressed_batch_no_codec_can_read_holds_the_tombstones_after_it() {
    let clock = ManualClock::new(1_000);
    let log = mem_log(config(&clock, Some(Arc::new(Gzip)))).1;
    put(&log, "gone", Some("old"));
    let plain = batch::build(&[rec(Some(b"gone"), Some(b"hidden"), 1_000)]);
    let junk = append(&log, reassemble(&plain, 1, b"not gzip"));
    settle(&log);
    let tomb = put(&log, "gone", None);
    settle(&log);
    expire(&log, &clock);
    let left = keyed_plain(&log);
    assert!(left.contains(&tomb), "the tombstone stays: {left:?}");
    let data = log.read(junk, 1 << 20).unwrap().data;
    assert_eq!(
        batches(&data)[0].0.base_offset as u64,
        junk,
        "kept as it was"
    );
}

/// Offsets of the keyed records of uncompressed batches.
fn keyed_plain(log: &Log) -> Vec<u64> {
    read_all_batches(log)
        .iter()
        .filter(|(h, _)| h.compression() == 0)
        .flat_map(|(h, b)| {
            Records::new(&b[HEADER_BYTES..])
                .map(|r| r.unwrap())
                .filter(|r| r.key.is_some())
                .map(|r| h.base_offset as u64 + r.offset_delta as u64)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn read_all_batches(log: &Log) -> Vec<(BatchHeader, Vec<u8>)> {
    let stats = log.stats();
    let (mut offset, mut out) = (stats.log_start, Vec::new());
    while offset < stats.high_watermark {
        let got = batches(&log.read(offset, 1 << 20).unwrap().data);
        offset = got.last().unwrap().0.last_offset() as u64 + 1;
        out.extend(got);
    }
    out
}

/// gzip inflating as usual but compressing to far more than the records take (as a weaker
/// encoder than the producer's can): the rebuild is stored uncompressed instead.
struct Bloating;

impl Codec for Bloating {
    fn decompress(&self, codec: u8, data: &[u8]) -> Result<Vec<u8>, String> {
        Gzip.decompress(codec, data)
    }

    fn compress(&self, codec: u8, data: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Gzip.compress(codec, data)?;
        out.resize(out.len() + 64 * 1024, 0);
        Ok(out)
    }
}

#[test]
fn a_rebuild_compression_would_grow_is_stored_uncompressed_and_compaction_goes_on() {
    let clock = ManualClock::new(1_000);
    let log = mem_log(config(&clock, Some(Arc::new(Bloating)))).1;
    let first = append(&log, gzip_batch(&[("a", Some("1")), ("b", Some("1"))]));
    put(&log, "a", Some("2"));
    settle(&log);
    log.compact().unwrap();
    let rebuilt = &batches(&log.read(first, 1 << 20).unwrap().data)[0];
    assert_eq!(rebuilt.0.base_offset as u64, first);
    assert_eq!(rebuilt.0.compression(), 0, "stored uncompressed");
    let left = keyed(&log);
    assert_eq!(
        left.iter()
            .map(|e| (e.1.as_str(), e.2.as_deref()))
            .collect::<Vec<_>>(),
        [("b", Some("1")), ("a", Some("2"))]
    );
}
