//! Helpers shared by the busbar-log crate tests: building batches and decoding what a read returns.
#![allow(dead_code)]

pub mod gate;

use busbar_log::batch::{self, BatchHeader, NewRecord, Records, HEADER_BYTES};
use busbar_log::disk::{MemStorage, Storage};
use busbar_log::{Log, LogConfig};
use std::sync::Arc;

/// One decoded record: (offset, key, value, timestamp).
pub type Event = (u64, Option<Vec<u8>>, Option<Vec<u8>>, i64);

pub fn rec(key: Option<&[u8]>, value: Option<&[u8]>, ts: i64) -> NewRecord {
    NewRecord {
        key: key.map(|k| k.to_vec()),
        value: value.map(|v| v.to_vec()),
        headers: vec![],
        timestamp: ts,
    }
}

/// A batch of `n` records with values `tag-i` and keys `k<i % keys>`.
pub fn batch_of(n: usize, tag: &str, keys: usize, ts: i64) -> Vec<u8> {
    let recs: Vec<_> = (0..n)
        .map(|i| {
            let k = format!("k{}", i % keys.max(1));
            let v = format!("{tag}-{i}");
            rec(Some(k.as_bytes()), Some(v.as_bytes()), ts + i as i64)
        })
        .collect();
    batch::build(&recs)
}

/// Splits read data into batches, checking each one is whole and valid.
pub fn batches(data: &[u8]) -> Vec<(BatchHeader, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let h = BatchHeader::parse(&data[pos..]).expect("whole header");
        let len = h.total_len().expect("sane length");
        let b = &data[pos..pos + len];
        batch::validate_stored(b).expect("served batches are valid");
        out.push((h, b.to_vec()));
        pos += len;
    }
    out
}

/// gzip, Kafka's codec 1 (the only codec the tests compress with).
pub struct Gzip;

impl busbar_log::Codec for Gzip {
    fn decompress(&self, codec: u8, data: &[u8]) -> Result<Vec<u8>, String> {
        use std::io::Read;
        assert_eq!(codec, 1);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .take((1 << 20) + 1)
            .read_to_end(&mut out)
            .map_err(|e| e.to_string())?;
        if out.len() > 1 << 20 {
            return Err("inflates past 1 MiB".into());
        }
        Ok(out)
    }

    fn compress(&self, codec: u8, data: &[u8]) -> Result<Vec<u8>, String> {
        use std::io::Write;
        assert_eq!(codec, 1);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).map_err(|e| e.to_string())?;
        gz.finish().map_err(|e| e.to_string())
    }
}

/// `plain` (uncompressed, as `batch::build` makes it) with its records gzip-compressed.
pub fn gzipped(plain: &[u8]) -> Vec<u8> {
    use busbar_log::Codec;
    let h = BatchHeader::parse(plain).unwrap();
    let packed = Gzip.compress(1, &plain[HEADER_BYTES..]).unwrap();
    batch::assemble(
        &BatchHeader {
            attributes: h.attributes | 1,
            ..h
        },
        &packed,
    )
}

/// Every record in read data (gzip-compressed batches inflated).
pub fn events(data: &[u8]) -> Vec<Event> {
    use busbar_log::Codec;
    let mut out = Vec::new();
    for (h, b) in batches(data) {
        let section = match h.compression() {
            0 => b[HEADER_BYTES..].to_vec(),
            c => Gzip.decompress(c, &b[HEADER_BYTES..]).expect("gzip"),
        };
        for r in Records::new(&section) {
            let r = r.expect("valid record");
            out.push((
                h.base_offset as u64 + r.offset_delta as u64,
                r.key.map(|k| k.to_vec()),
                r.value.map(|v| v.to_vec()),
                h.base_timestamp.wrapping_add(r.timestamp_delta),
            ));
        }
    }
    out
}

/// Every record from the log start to the high watermark, reading in small steps.
pub fn read_all(log: &Log) -> Vec<Event> {
    let stats = log.stats();
    let mut offset = stats.log_start;
    let mut out = Vec::new();
    while offset < stats.high_watermark {
        let r = log.read(offset, 3000).expect("read");
        let evs = events(&r.data);
        if evs.is_empty() {
            let last = batches(&r.data)
                .last()
                .map(|(h, _)| h.last_offset() as u64 + 1);
            match last {
                Some(next) => {
                    offset = next;
                    continue;
                }
                None => break,
            }
        }
        let hs = batches(&r.data);
        offset = hs.last().map(|(h, _)| h.last_offset() as u64 + 1).unwrap();
        out.extend(evs.into_iter().filter(|e| e.0 >= stats.log_start));
    }
    out
}

/// A small-segment config for tests that want rolls.
pub fn small(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 256,
        checkpoint_interval_bytes: 4096,
        retention_ms: None,
        ..LogConfig::default()
    }
}

pub fn mem_log(config: LogConfig) -> (MemStorage, Log) {
    let storage = MemStorage::new();
    let log = Log::open(Arc::new(storage.clone()) as Arc<dyn Storage>, config).expect("open");
    (storage, log)
}

pub fn reopen(storage: &MemStorage, config: LogConfig) -> Log {
    Log::open(Arc::new(storage.clone()) as Arc<dyn Storage>, config).expect("reopen")
}
