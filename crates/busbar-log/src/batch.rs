//! Kafka RecordBatch v2: header parsing, validation, offset patching, record iteration and building.
//!
//! The log stores batches as received; this module is the only place that knows the byte layout
//! (see `docs/log-format.md`). Parsing never trusts a length it has not bounded by the buffer, and
//! never panics on any input.

use crate::error::BatchError;

/// Bytes of a RecordBatch v2 header, up to and including the record count.
pub const HEADER_BYTES: usize = 61;
/// Bytes before the `batchLength` field's coverage starts (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
/// First byte covered by the batch CRC (the attributes field).
const CRC_START: usize = 21;
/// Compression codec bits of the attributes field.
pub const COMPRESSION_MASK: i16 = 0x07;
/// Control-batch bit of the attributes field.
const CONTROL_FLAG: i16 = 0x20;
/// Transactional bit of the attributes field.
const TRANSACTIONAL_FLAG: i16 = 0x10;
/// Delete-horizon bit of the attributes field (Kafka's KIP-534): compaction sets it on a batch
/// whose tombstones it kept for the first time, and the base timestamp then holds the time they
/// may go (the records' timestamps stay what they were: their deltas are re-encoded against it).
pub const DELETE_HORIZON_FLAG: i16 = 0x40;

/// The fixed header of a RecordBatch v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn be<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

impl BatchHeader {
    /// Parses the header from the first [`HEADER_BYTES`] of `b`. Checks nothing but the length.
    pub fn parse(b: &[u8]) -> Result<Self, BatchError> {
        if b.len() < HEADER_BYTES {
            return Err(BatchError::Length(format!(
                "{} bytes is shorter than the {HEADER_BYTES}-byte batch header",
                b.len()
            )));
        }
        Ok(Self {
            base_offset: i64::from_be_bytes(be(b, 0)),
            batch_length: i32::from_be_bytes(be(b, 8)),
            leader_epoch: i32::from_be_bytes(be(b, 12)),
            magic: b[16] as i8,
            crc: u32::from_be_bytes(be(b, 17)),
            attributes: i16::from_be_bytes(be(b, 21)),
            last_offset_delta: i32::from_be_bytes(be(b, 23)),
            base_timestamp: i64::from_be_bytes(be(b, 27)),
            max_timestamp: i64::from_be_bytes(be(b, 35)),
            producer_id: i64::from_be_bytes(be(b, 43)),
            producer_epoch: i16::from_be_bytes(be(b, 51)),
            base_sequence: i32::from_be_bytes(be(b, 53)),
            record_count: i32::from_be_bytes(be(b, 57)),
        })
    }

    /// Total bytes of the batch as declared by `batchLength`, or `None` if the field is impossible.
    pub fn total_len(&self) -> Option<usize> {
        let len = usize::try_from(self.batch_length).ok()? + LOG_OVERHEAD;
        (len >= HEADER_BYTES).then_some(len)
    }

    /// Offset of the last record in the batch (base offset + last offset delta).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(self.last_offset_delta as i64)
    }

    /// Offset after the batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> u8 {
        (self.attributes & COMPRESSION_MASK) as u8
    }

    /// True for a control batch (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_FLAG != 0
    }

    /// True for a batch written inside a transaction (attribute bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_FLAG != 0
    }

    /// When compaction may remove this batch's tombstones (ms): its base timestamp, once
    /// compaction set the delete-horizon bit (6); `None` before.
    pub fn delete_horizon(&self) -> Option<i64> {
        (self.attributes & DELETE_HORIZON_FLAG != 0).then_some(self.base_timestamp)
    }

    /// The batch's first timestamp as its header tells it: the base timestamp, or the max
    /// timestamp once the base holds a delete horizon.
    pub fn first_timestamp(&self) -> i64 {
        match self.delete_horizon() {
            Some(_) => self.max_timestamp,
            None => self.base_timestamp,
        }
    }

    /// True when the batch's timestamps are the broker's append time (attribute bit 3): then
    /// `max_timestamp` is that time, whatever the records say.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }
}

/// The CRC-32C a batch's `crc` field must hold.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START.min(batch.len())..])
}

/// Checks a batch sent by a producer (all rules of `docs/log-format.md`, "Validation on append").
pub fn validate_new(batch: &[u8], limit: usize) -> Result<BatchHeader, BatchError> {
    if batch.len() > limit {
        return Err(BatchError::TooLarge {
            size: batch.len(),
            limit,
        });
    }
    let h = check_common(batch)?;
    if h.delete_horizon().is_some() {
        return Err(BatchError::Header(
            "attribute bit 6 (delete horizon) is set only by the broker's compaction".into(),
        ));
    }
    if h.record_count != h.last_offset_delta.wrapping_add(1) {
        return Err(BatchError::Header(format!(
            "record count {} is not last offset delta {} + 1",
            h.record_count, h.last_offset_delta
        )));
    }
    if h.compression() == 0 {
        check_records(batch, &h)?;
    }
    Ok(h)
}

/// Checks a batch read back from disk (compaction may have removed records).
pub fn validate_stored(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = check_common(batch)?;
    if h.record_count > h.last_offset_delta.saturating_add(1) {
        return Err(BatchError::Header(format!(
            "record count {} exceeds last offset delta {} + 1",
            h.record_count, h.last_offset_delta
        )));
    }
    Ok(h)
}

fn check_common(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(batch)?;
    if h.total_len() != Some(batch.len()) {
        return Err(BatchError::Length(format!(
            "batchLength {} does not match the {} bytes of the batch",
            h.batch_length,
            batch.len()
        )));
    }
    if h.magic != 2 {
        return Err(BatchError::Magic(h.magic));
    }
    let computed = compute_crc(batch);
    if computed != h.crc {
        return Err(BatchError::Crc {
            stored: h.crc,
            computed,
        });
    }
    if h.last_offset_delta < 0 || h.record_count < 1 {
        return Err(BatchError::Header(format!(
            "last offset delta {} / record count {} must be >= 0 / >= 1",
            h.last_offset_delta, h.record_count
        )));
    }
    if h.base_timestamp != -1 && h.delete_horizon().is_none() && h.max_timestamp < h.base_timestamp
    {
        return Err(BatchError::Header(format!(
            "max timestamp {} is below base timestamp {}",
            h.max_timestamp, h.base_timestamp
        )));
    }
    Ok(h)
}

fn check_records(batch: &[u8], h: &BatchHeader) -> Result<(), BatchError> {
    let mut count = 0i32;
    for record in Records::new(&batch[HEADER_BYTES..]) {
        let record = record?;
        if record.offset_delta != count {
            return Err(BatchError::Record(format!(
                "record {count} has offset delta {} (must be sequential)",
                record.offset_delta
            )));
        }
        count += 1;
    }
    if count != h.record_count {
        return Err(BatchError::Record(format!(
            "batch declares {} records but holds {count}",
            h.record_count
        )));
    }
    Ok(())
}

/// Writes the log-assigned base offset and epoch into a batch (fields outside the CRC).
pub fn patch(batch: &mut [u8], base_offset: u64, epoch: u32) {
    batch[0..8].copy_from_slice(&(base_offset as i64).to_be_bytes());
    batch[12..16].copy_from_slice(&(epoch as i32).to_be_bytes());
}

/// One record of an uncompressed batch, borrowed from the batch bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
    /// The record's bytes including its length prefix, for copying it unchanged.
    pub raw: &'a [u8],
}

/// Iterator over the records section of an uncompressed batch. Yields an error once and stops.
pub struct Records<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Records<'a> {
    /// Iterates the records in `section` (the bytes after the batch header).
    pub fn new(section: &'a [u8]) -> Self {
        Self {
            buf: section,
            pos: 0,
            failed: false,
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let out = parse_record(self.buf, &mut self.pos);
        self.failed = out.is_err();
        Some(out)
    }
}

fn parse_record<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Record<'a>, BatchError> {
    let start = *pos;
    let len = read_varint(buf, pos)?;
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *pos + l <= buf.len())
        .ok_or_else(|| BatchError::Record(format!("record length {len} overruns the batch")))?;
    let end = *pos + len;
    let body = &buf[..end];
    let mut p = *pos;
    if p >= end {
        return Err(BatchError::Record("empty record".into()));
    }
    p += 1; // attributes
    let timestamp_delta = read_varlong(body, &mut p)?;
    let offset_delta = read_varint(body, &mut p)?;
    let key = read_bytes(body, &mut p)?;
    let value = read_bytes(body, &mut p)?;
    let count = read_varint(body, &mut p)?;
    if count < 0 || count as usize > len {
        return Err(BatchError::Record(format!(
            "header count {count} is impossible"
        )));
    }
    let mut headers = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let k = read_bytes(body, &mut p)?
            .ok_or_else(|| BatchError::Record("null header key".into()))?;
        headers.push((k, read_bytes(body, &mut p)?));
    }
    if p != end {
        return Err(BatchError::Record(format!(
            "record has {} trailing bytes",
            end - p
        )));
    }
    *pos = end;
    Ok(Record {
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
        raw: &buf[start..end],
    })
}

fn read_bytes<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, BatchError> {
    let len = read_varint(buf, pos)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if *pos + len > buf.len() {
        return Err(BatchError::Record(format!(
            "field length {len} overruns the record"
        )));
    }
    let out = &buf[*pos..*pos + len];
    *pos += len;
    Ok(Some(out))
}

fn read_uvarint(buf: &[u8], pos: &mut usize, max_bytes: usize) -> Result<u64, BatchError> {
    let mut value = 0u64;
    for i in 0..max_bytes {
        let byte = *buf
            .get(*pos)
            .ok_or_else(|| BatchError::Record("varint overruns the record".into()))?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(BatchError::Record("varint is too long".into()))
}

/// The timestamp delta of each record of an uncompressed records section, reading only each
/// record's length, attributes and delta and skipping the rest: a cheap pass for callers that check
/// timestamps (the full framing is checked by [`validate_new`]). Yields an error once and stops.
pub fn timestamp_deltas(section: &[u8]) -> impl Iterator<Item = Result<i64, BatchError>> + '_ {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= section.len() {
            return None;
        }
        let one = (|| {
            let len = read_varint(section, &mut pos)?;
            let body = usize::try_from(len)
                .ok()
                .filter(|l| *l >= 1 && pos + *l <= section.len())
                .ok_or_else(|| BatchError::Record(format!("record length {len} is invalid")))?;
            let end = pos + body;
            let mut at = pos + 1; // attributes
            let delta = read_varlong(&section[..end], &mut at)?;
            pos = end;
            Ok(delta)
        })();
        failed = one.is_err();
        Some(one)
    })
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32, BatchError> {
    let v = read_uvarint(buf, pos, 5)? as u32;
    Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
}

fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, BatchError> {
    let v = read_uvarint(buf, pos, 10)?;
    Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
}

fn write_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn write_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => write_varlong(out, -1),
        Some(b) => {
            write_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// `r` encoded again (length prefix included) with another timestamp delta: for a batch rebuilt
/// with a new base timestamp. Offset delta, key, value and headers stay as they are.
pub fn encode_record(r: &Record<'_>, timestamp_delta: i64) -> Vec<u8> {
    let mut rec = vec![0u8]; // attributes (unused in v2)
    write_varlong(&mut rec, timestamp_delta);
    write_varlong(&mut rec, i64::from(r.offset_delta));
    write_bytes(&mut rec, r.key);
    write_bytes(&mut rec, r.value);
    write_varlong(&mut rec, r.headers.len() as i64);
    for (k, v) in &r.headers {
        write_bytes(&mut rec, Some(k));
        write_bytes(&mut rec, *v);
    }
    let mut out = Vec::with_capacity(rec.len() + 5);
    write_varlong(&mut out, rec.len() as i64);
    out.extend_from_slice(&rec);
    out
}

/// One event to put in a batch with [`build`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub timestamp: i64,
}

/// Builds an uncompressed RecordBatch v2 (base offset 0, no producer id) from events.
/// Panics only on an empty slice, a programmer error.
pub fn build(records: &[NewRecord]) -> Vec<u8> {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let base_ts = records[0].timestamp;
    let max_ts = records.iter().map(|r| r.timestamp).max().unwrap_or(base_ts);
    let mut body = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let mut rec = vec![0u8]; // attributes
        write_varlong(&mut rec, r.timestamp - base_ts);
        write_varlong(&mut rec, i as i64);
        write_bytes(&mut rec, r.key.as_deref());
        write_bytes(&mut rec, r.value.as_deref());
        write_varlong(&mut rec, r.headers.len() as i64);
        for (k, v) in &r.headers {
            write_bytes(&mut rec, Some(k));
            write_bytes(&mut rec, v.as_deref());
        }
        write_varlong(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let header = BatchHeader {
        base_offset: 0,
        batch_length: 0,
        leader_epoch: -1,
        magic: 2,
        crc: 0,
        attributes: 0,
        last_offset_delta: records.len() as i32 - 1,
        base_timestamp: base_ts,
        max_timestamp: max_ts,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: records.len() as i32,
    };
    assemble(&header, &body)
}

/// Encodes `header` followed by `records_section`, setting the length, count-independent fields as
/// given and computing the CRC.
pub fn assemble(header: &BatchHeader, records_section: &[u8]) -> Vec<u8> {
    let total = HEADER_BYTES + records_section.len();
    let mut b = Vec::with_capacity(total);
    b.extend_from_slice(&header.base_offset.to_be_bytes());
    b.extend_from_slice(&((total - LOG_OVERHEAD) as i32).to_be_bytes());
    b.extend_from_slice(&header.leader_epoch.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&header.attributes.to_be_bytes());
    b.extend_from_slice(&header.last_offset_delta.to_be_bytes());
    b.extend_from_slice(&header.base_timestamp.to_be_bytes());
    b.extend_from_slice(&header.max_timestamp.to_be_bytes());
    b.extend_from_slice(&header.producer_id.to_be_bytes());
    b.extend_from_slice(&header.producer_epoch.to_be_bytes());
    b.extend_from_slice(&header.base_sequence.to_be_bytes());
    b.extend_from_slice(&header.record_count.to_be_bytes());
    b.extend_from_slice(records_section);
    let crc = compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, value: &str, ts: i64) -> NewRecord {
        NewRecord {
            key: Some(key.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![(b"h".to_vec(), None)],
            timestamp: ts,
        }
    }

    #[test]
    fn built_batches_validate_and_round_trip() {
        let b = build(&[rec("a", "1", 100), rec("b", "2", 105)]);
        let h = validate_new(&b, 1 << 20).unwrap();
        assert_eq!((h.record_count, h.max_timestamp), (2, 105));
        let recs: Vec<_> = Records::new(&b[HEADER_BYTES..])
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(recs[1].key, Some(&b"b"[..]));
        assert_eq!(recs[1].timestamp_delta, 5);
        assert_eq!(recs[0].headers, vec![(&b"h"[..], None)]);
    }

    #[test]
    fn every_single_bit_flip_in_the_covered_part_is_caught() {
        let b = build(&[rec("k", "v", 1)]);
        for byte in CRC_START..b.len() {
            for bit in 0..8 {
                let mut c = b.clone();
                c[byte] ^= 1 << bit;
                assert!(validate_new(&c, 1 << 20).is_err(), "byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn refuses_bad_headers_precisely() {
        let b = build(&[rec("k", "v", 1)]);
        assert!(matches!(
            validate_new(&b[..40], 1 << 20),
            Err(BatchError::Length(_))
        ));
        assert!(matches!(
            validate_new(&b, 10),
            Err(BatchError::TooLarge { .. })
        ));
        let mut m = b.clone();
        m[16] = 1;
        assert_eq!(validate_new(&m, 1 << 20), Err(BatchError::Magic(1)));
        let mut extra = b.clone();
        extra.push(0);
        assert!(matches!(
            validate_new(&extra, 1 << 20),
            Err(BatchError::Length(_))
        ));
        let h = BatchHeader::parse(&b).unwrap();
        let lie = assemble(
            &BatchHeader {
                record_count: 2,
                last_offset_delta: 1,
                ..h
            },
            &b[HEADER_BYTES..],
        );
        assert!(matches!(
            validate_new(&lie, 1 << 20),
            Err(BatchError::Record(_))
        ));
    }

    #[test]
    fn hostile_record_lengths_do_not_panic() {
        let b = build(&[rec("k", "v", 1)]);
        let h = BatchHeader::parse(&b).unwrap();
        for junk in [
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0x0f][..],
            &[0x01],
            &[0x7f, 0],
        ] {
            let bad = assemble(&h, junk);
            assert!(validate_new(&bad, 1 << 20).is_err());
        }
    }
}
