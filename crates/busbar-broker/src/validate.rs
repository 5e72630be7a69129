//! What the broker checks in a produced batch beyond the log's structural checks (header, CRC,
//! uncompressed record framing, `docs/log-format.md` "Validation on append"), as Kafka's
//! LogValidator does: a compressed batch is decompressed (within [`DECOMPRESSED_BYTES_MAX`]) and its
//! records must parse (decompressed size bounded by [`DECOMPRESSION_RATIO_MAX`] times the
//! compressed size) and number `lastOffsetDelta + 1` with sequential offset deltas; the header's
//! `maxTimestamp` and every record's timestamp must lie within
//! the topic's `message.timestamp.before.max.ms` / `message.timestamp.after.max.ms` of now.
//! A batch that fails answers `InvalidRecord` (Kafka 87) or `InvalidTimestamp` (Kafka 32) and is
//! not stored. Nothing here writes.

use crate::config::TopicConfig;
use crate::error::{BrokerError, Result};
use crate::event::DECOMPRESSED_BYTES_MAX;
use busbar_log::batch::{compute_crc, timestamp_deltas, BatchHeader, Records, HEADER_BYTES};

/// How much larger than its compressed bytes a batch may decompress to. Kafka sets no bound;
/// real event data compresses 3-20x (highly repetitive data some 100x), while a decompression
/// bomb reaches 30,000x: the ratio bounds the CPU and memory one byte of request can cost
/// (validation runs on the blocking pool, so it never holds an async worker).
pub const DECOMPRESSION_RATIO_MAX: usize = 1024;

/// The most a compressed batch of `len` bytes may decompress to.
pub fn decompressed_max(len: usize) -> usize {
    len.saturating_mul(DECOMPRESSION_RATIO_MAX)
        .saturating_add(64 << 10)
        .min(DECOMPRESSED_BYTES_MAX)
}

/// A record without a timestamp (Kafka's NO_TIMESTAMP): not checked against the bounds.
const NO_TIMESTAMP: i64 = -1;

/// What [`produced`] read of a batch: its records section when it checked the batch.
pub enum Checked {
    /// A batch the log refuses anyway (bad length or CRC) or a control batch: not read.
    Unchecked,
    /// An uncompressed batch: its records are the bytes after the header.
    Plain,
    /// A compressed batch's records, decompressed.
    Decompressed(Vec<u8>),
}

impl Checked {
    /// The records section of `batch`, when it was checked.
    pub fn records<'a>(&'a self, batch: &'a [u8]) -> Option<&'a [u8]> {
        match self {
            Checked::Unchecked => None,
            Checked::Plain => Some(&batch[HEADER_BYTES..]),
            Checked::Decompressed(section) => Some(section),
        }
    }
}

/// Checks a produced batch (see the module docs). A batch the log would refuse anyway (bad length
/// or CRC) passes through here unchecked, so the client gets the log's precise error.
pub fn produced(
    batch: &[u8],
    h: &BatchHeader,
    topic: &TopicConfig,
    now_ms: i64,
) -> Result<Checked> {
    if h.total_len() != Some(batch.len()) || compute_crc(batch) != h.crc || h.is_control() {
        return Ok(Checked::Unchecked);
    }
    let bounds = Bounds::of(topic, now_ms);
    bounds.check(h.max_timestamp, || "the batch's max timestamp".into())?;
    let record_ts = |count: i64, delta: i64| {
        let ts = h.base_timestamp.checked_add(delta).ok_or_else(|| {
            BrokerError::InvalidRecord(format!("record {count}: timestamp overflows"))
        })?;
        // A record may be later than the header's maxTimestamp (kafkajs leaves messages without
        // an explicit timestamp out of it; Kafka recomputes the maximum rather than refusing):
        // each record is held to the topic's window itself.
        bounds.check(ts, || format!("record {count}'s timestamp"))
    };
    if h.compression() == 0 {
        // The log checks the framing, count and offset deltas of an uncompressed batch; only the
        // timestamps are read here, skipping each record's body.
        for (count, delta) in timestamp_deltas(&batch[HEADER_BYTES..]).enumerate() {
            let delta = delta.map_err(|e| BrokerError::InvalidRecord(e.to_string()))?;
            record_ts(count as i64, delta)?;
        }
        return Ok(Checked::Plain);
    }
    let section = crate::codec::decompress(
        h.compression(),
        &batch[HEADER_BYTES..],
        decompressed_max(batch.len()),
    )
    .map_err(|e| BrokerError::InvalidRecord(format!("compressed batch: {e}")))?;
    let mut count: i64 = 0;
    for r in Records::new(&section) {
        let r = r.map_err(|e| BrokerError::InvalidRecord(format!("record {count}: {e}")))?;
        if i64::from(r.offset_delta) != count {
            return Err(BrokerError::InvalidRecord(format!(
                "record {count} has offset delta {} (must be sequential)",
                r.offset_delta
            )));
        }
        record_ts(count, r.timestamp_delta)?;
        count += 1;
    }
    if count != i64::from(h.last_offset_delta) + 1 || count != i64::from(h.record_count) {
        return Err(BrokerError::InvalidRecord(format!(
            "batch declares {} records (last offset delta {}) but holds {count}",
            h.record_count, h.last_offset_delta
        )));
    }
    Ok(Checked::Decompressed(section))
}

/// Checks one published event's timestamp against the topic's window (HTTP publish and the bus).
pub fn timestamp(ts: i64, topic: &TopicConfig, now_ms: i64) -> Result<()> {
    Bounds::of(topic, now_ms).check(ts, || "the event's timestamp".into())
}

/// The accepted timestamp window of a topic at one instant.
struct Bounds {
    now_ms: i64,
    before_max_ms: i64,
    after_max_ms: i64,
}

impl Bounds {
    fn of(topic: &TopicConfig, now_ms: i64) -> Self {
        Bounds {
            now_ms,
            before_max_ms: topic.timestamp_before_max_ms,
            after_max_ms: topic.timestamp_after_max_ms,
        }
    }

    /// `what` names the timestamp in the error (built only on error: this runs per record).
    fn check(&self, ts: i64, what: impl Fn() -> String) -> Result<()> {
        if ts == NO_TIMESTAMP {
            return Ok(());
        }
        // i128: `now - ts` overflows i64 for timestamps near i64::MIN / MAX.
        let behind = i128::from(self.now_ms) - i128::from(ts);
        // i64::MAX is "unlimited" (the default), whatever the timestamp.
        if self.before_max_ms != i64::MAX && behind > i128::from(self.before_max_ms) {
            return Err(BrokerError::InvalidTimestamp(format!(
                "{} {ts} is more than message.timestamp.before.max.ms ({}) before now ({})",
                what(),
                self.before_max_ms,
                self.now_ms
            )));
        }
        if self.after_max_ms != i64::MAX && -behind > i128::from(self.after_max_ms) {
            return Err(BrokerError::InvalidTimestamp(format!(
                "{} {ts} is more than message.timestamp.after.max.ms ({}) after now ({})",
                what(),
                self.after_max_ms,
                self.now_ms
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use busbar_log::batch::{assemble, build, NewRecord};

    fn topic() -> TopicConfig {
        TopicConfig::default()
    }

    fn at(ts: &[i64]) -> Vec<u8> {
        let recs: Vec<NewRecord> = ts
            .iter()
            .map(|t| NewRecord {
                value: Some(b"v".to_vec()),
                timestamp: *t,
                ..NewRecord::default()
            })
            .collect();
        build(&recs)
    }

    fn check(b: &[u8], now: i64, t: &TopicConfig) -> Result<()> {
        produced(b, &BatchHeader::parse(b).unwrap(), t, now).map(|_| ())
    }

    /// `b` with its records section compressed by `codec` and the header kept (CRC recomputed).
    fn compressed(b: &[u8], codec: u8, section: Option<Vec<u8>>, lod: Option<i32>) -> Vec<u8> {
        let h = BatchHeader::parse(b).unwrap();
        let packed =
            section.unwrap_or_else(|| crate::codec::compress(codec, &b[HEADER_BYTES..]).unwrap());
        let lod = lod.unwrap_or(h.last_offset_delta);
        assemble(
            &BatchHeader {
                attributes: i16::from(codec),
                last_offset_delta: lod,
                record_count: lod + 1,
                ..h
            },
            &packed,
        )
    }

    #[test]
    fn valid_batches_pass_in_every_codec() {
        let now = 1_000_000;
        let b = at(&[now - 5, now, now - 2]);
        check(&b, now, &topic()).unwrap();
        for codec in 1..=4 {
            check(&compressed(&b, codec, None, None), now, &topic()).unwrap();
        }
    }

    #[test]
    fn compressed_garbage_and_lying_counts_are_invalid_records() {
        let now = 1_000_000;
        let b = at(&[now, now]);
        let garbage = compressed(&b, 1, Some(b"not gzip at all".to_vec()), None);
        let e = check(&garbage, now, &topic()).unwrap_err();
        assert!(matches!(e, BrokerError::InvalidRecord(_)), "{e}");
        let burner = compressed(&b, 4, None, Some(i32::MAX - 2));
        let e = check(&burner, now, &topic()).unwrap_err();
        assert!(
            matches!(&e, BrokerError::InvalidRecord(m) if m.contains("holds 2")),
            "{e}"
        );
    }

    #[test]
    fn timestamps_outside_the_topic_window_are_refused() {
        let now = 10_000_000;
        let mut t = topic();
        assert_eq!(t.timestamp_after_max_ms, 3_600_000, "Kafka 4's default");
        let e = check(&at(&[i64::MAX]), now, &t).unwrap_err();
        assert!(matches!(e, BrokerError::InvalidTimestamp(_)), "{e}");
        check(&at(&[now + 3_600_000]), now, &t).unwrap();
        assert!(check(&at(&[now + 3_600_001]), now, &t).is_err());
        // Negative timestamps pass by default (before.max.ms is unlimited, as in Kafka)...
        check(&at(&[-5]), now, &t).unwrap();
        check(&at(&[i64::MIN + 1]), now, &t).unwrap();
        t.timestamp_before_max_ms = i64::MAX - 1;
        assert!(check(&at(&[i64::MIN + 1]), now, &t).is_err());
        // ...and are refused once it is set.
        t.timestamp_before_max_ms = 1000;
        let e = check(&at(&[-5]), now, &t).unwrap_err();
        assert!(matches!(e, BrokerError::InvalidTimestamp(_)), "{e}");
        check(&at(&[now - 1000, -1]), now, &t).unwrap();
    }

    #[test]
    fn a_record_after_the_declared_max_timestamp_is_held_to_the_window_not_refused() {
        // kafkajs: maxTimestamp covers only messages with an explicit timestamp.
        let now = 10_000_000;
        let b = at(&[now - 60_000, now]);
        let h = BatchHeader::parse(&b).unwrap();
        let js = assemble(
            &BatchHeader {
                max_timestamp: now - 60_000,
                ..h
            },
            &b[HEADER_BYTES..],
        );
        check(&js, now, &topic()).unwrap();
        let far = at(&[now - 60_000, now + 7_200_000]);
        let h = BatchHeader::parse(&far).unwrap();
        let hidden = assemble(
            &BatchHeader {
                max_timestamp: now - 60_000,
                ..h
            },
            &far[HEADER_BYTES..],
        );
        let e = check(&hidden, now, &topic()).unwrap_err();
        assert!(matches!(e, BrokerError::InvalidTimestamp(_)), "{e}");
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_ratio_bound() {
        let now = 1_000_000;
        let b = at(&[now]);
        let packed = crate::codec::compress(4, &vec![0u8; 64 << 20]).unwrap();
        let bomb = compressed(&b, 4, Some(packed), None);
        let e = check(&bomb, now, &topic()).unwrap_err();
        assert!(
            matches!(&e, BrokerError::InvalidRecord(m) if m.contains("limit")),
            "{e}"
        );
        assert!(decompressed_max(bomb.len()) < 4 << 20);
    }
}
