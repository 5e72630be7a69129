//! Sparse offset index and time index of one segment, in memory and in their files.
//!
//! Indexes are derived data: a damaged or missing one is rebuilt from its segment, and every
//! look-up result is only a starting point that the reader checks against the batch it finds.
//! File layout in `docs/log-format.md`, "Index files".

use crate::error::{LogError, Result};

const OFFSET_MAGIC: &[u8; 8] = b"BBOFFIDX";
const TIME_MAGIC: &[u8; 8] = b"BBTIMIDX";
const VERSION: u16 = 1;
const FILE_HEADER_BYTES: usize = 32;

/// Both indexes of a segment, plus what the segment's max timestamp is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Indexes {
    /// (batch base offset − segment base, byte position of the batch).
    pub offsets: Vec<(u32, u32)>,
    /// (running max timestamp, relative base offset of the batch that reached it).
    pub times: Vec<(i64, u32)>,
    /// Largest max timestamp of any batch so far, and the relative offset of its batch.
    pub max_timestamp: Option<(i64, u32)>,
    /// Segment bytes described by these indexes.
    pub covered: u64,
    last_entry_pos: Option<u64>,
}

impl Indexes {
    /// Empty indexes covering a segment of `covered` bytes (its header).
    pub fn new(covered: u64) -> Self {
        Self {
            covered,
            ..Self::default()
        }
    }

    /// Records the batch at `pos` (`len` bytes) starting at relative offset `rel`.
    pub fn add(&mut self, rel: u32, pos: u64, len: u64, max_ts: i64, interval: u64) {
        let due = self
            .last_entry_pos
            .is_none_or(|last| pos >= last + interval);
        if self.max_timestamp.is_none_or(|(ts, _)| max_ts > ts) {
            self.max_timestamp = Some((max_ts, rel));
        }
        if due {
            self.offsets.push((rel, pos as u32));
            self.last_entry_pos = Some(pos);
            self.push_time_entry();
        }
        self.covered = pos + len;
    }

    fn push_time_entry(&mut self) {
        if let Some(max) = self.max_timestamp {
            if self.times.last().is_none_or(|(ts, _)| max.0 > *ts) {
                self.times.push(max);
            }
        }
    }

    /// Byte position of the last indexed batch whose base is at or below `rel`, if any.
    pub fn position_for(&self, rel: u32) -> Option<(u32, u32)> {
        let i = self.offsets.partition_point(|(r, _)| *r <= rel);
        i.checked_sub(1).map(|i| self.offsets[i])
    }

    /// A relative offset from which a scan finds the first batch with max timestamp >= `ts`.
    pub fn scan_start_for_time(&self, ts: i64) -> u32 {
        let i = self.times.partition_point(|(t, _)| *t < ts);
        i.checked_sub(1).map_or(0, |i| self.times[i].1)
    }

    /// The segment's max timestamp (-1 when it holds no batch).
    pub fn segment_max_timestamp(&self) -> i64 {
        self.max_timestamp.map_or(-1, |(ts, _)| ts)
    }

    /// Where a max-timestamp scan of the batches below relative offset `hi` may resume: the
    /// position of the last indexed batch starting below `hi`, and the running maximum
    /// (timestamp, relative offset of the first batch reaching it) of every batch up to and
    /// including that one. `None` when no indexed batch starts below `hi`.
    ///
    /// A time entry is pushed with each offset entry whenever the maximum grew, so the last time
    /// entry whose batch is at or before the indexed batch is the maximum up to it.
    pub fn running_max_before(&self, hi: u32) -> Option<(u64, (i64, u32))> {
        let i = self
            .offsets
            .partition_point(|(r, _)| *r < hi)
            .checked_sub(1)?;
        let (rel, pos) = self.offsets[i];
        let j = self
            .times
            .partition_point(|(_, r)| *r <= rel)
            .checked_sub(1)?;
        Some((u64::from(pos), self.times[j]))
    }

    /// Encodes the offset index file.
    pub fn encode_offsets(&self, base: u64) -> Vec<u8> {
        let mut b = header(OFFSET_MAGIC, self.offsets.len(), base, self.covered);
        for (rel, pos) in &self.offsets {
            b.extend_from_slice(&rel.to_be_bytes());
            b.extend_from_slice(&pos.to_be_bytes());
        }
        seal(b)
    }

    /// Encodes the time index file, ending with the segment's max timestamp.
    pub fn encode_times(&self, base: u64) -> Vec<u8> {
        let mut times = self.times.clone();
        if let Some(max) = self.max_timestamp {
            if times.last().is_none_or(|(ts, _)| max.0 > *ts) {
                times.push(max);
            }
        }
        let mut b = header(TIME_MAGIC, times.len(), base, self.covered);
        for (ts, rel) in &times {
            b.extend_from_slice(&ts.to_be_bytes());
            b.extend_from_slice(&rel.to_be_bytes());
        }
        seal(b)
    }

    /// Decodes both files. Any damage is an error naming the file; the caller rebuilds.
    pub fn decode(base: u64, offsets: &[u8], times: &[u8], name: &str) -> Result<Self> {
        let (n, covered, body) = open(offsets, OFFSET_MAGIC, base, 8, name)?;
        let mut idx = Indexes::new(covered);
        for e in body.chunks_exact(8).take(n) {
            let rel = u32::from_be_bytes(e[0..4].try_into().unwrap_or_default());
            let pos = u32::from_be_bytes(e[4..8].try_into().unwrap_or_default());
            if idx
                .offsets
                .last()
                .is_some_and(|(r, p)| rel <= *r || pos <= *p)
                || pos as u64 >= covered
            {
                return Err(damaged(name, "offset index entries are not increasing"));
            }
            idx.offsets.push((rel, pos));
        }
        let (n, tcovered, body) = open(times, TIME_MAGIC, base, 12, name)?;
        if tcovered != covered {
            return Err(damaged(
                name,
                "offset and time index cover different lengths",
            ));
        }
        for e in body.chunks_exact(12).take(n) {
            let ts = i64::from_be_bytes(e[0..8].try_into().unwrap_or_default());
            let rel = u32::from_be_bytes(e[8..12].try_into().unwrap_or_default());
            if idx.times.last().is_some_and(|(t, _)| ts <= *t) {
                return Err(damaged(name, "time index entries are not increasing"));
            }
            idx.times.push((ts, rel));
        }
        idx.max_timestamp = idx.times.last().copied();
        idx.last_entry_pos = idx.offsets.last().map(|(_, p)| *p as u64);
        Ok(idx)
    }
}

impl Indexes {
    /// The segment's max timestamp and the relative offset of the first batch reaching it, from
    /// a time index file alone (its last entry; `None` when it has none), after the same checks
    /// as [`Indexes::decode`] and that it covers `covered` bytes.
    pub fn decode_max_timestamp(
        base: u64,
        times: &[u8],
        covered: u64,
        name: &str,
    ) -> Result<Option<(i64, u32)>> {
        let (n, tcovered, body) = open(times, TIME_MAGIC, base, 12, name)?;
        if tcovered != covered {
            return Err(damaged(name, "time index covers another length"));
        }
        Ok(body.chunks_exact(12).take(n).next_back().map(|e| {
            (
                i64::from_be_bytes(e[0..8].try_into().unwrap_or_default()),
                u32::from_be_bytes(e[8..12].try_into().unwrap_or_default()),
            )
        }))
    }
}

fn header(magic: &[u8; 8], n: usize, base: u64, covered: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(FILE_HEADER_BYTES + n * 12 + 4);
    b.extend_from_slice(magic);
    b.extend_from_slice(&VERSION.to_be_bytes());
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&(n as u32).to_be_bytes());
    b.extend_from_slice(&base.to_be_bytes());
    b.extend_from_slice(&covered.to_be_bytes());
    b
}

fn seal(mut b: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    b
}

fn damaged(name: &str, reason: &str) -> LogError {
    LogError::Corrupt {
        file: name.to_string(),
        position: 0,
        reason: reason.to_string(),
    }
}

fn open<'a>(
    b: &'a [u8],
    magic: &[u8; 8],
    base: u64,
    entry: usize,
    name: &str,
) -> Result<(usize, u64, &'a [u8])> {
    if b.len() < FILE_HEADER_BYTES + 4 || &b[0..8] != magic {
        return Err(damaged(name, "bad magic or too short"));
    }
    let version = u16::from_be_bytes([b[8], b[9]]);
    if version != VERSION {
        return Err(LogError::UnsupportedFormat {
            file: name.to_string(),
            reason: format!("index version {version}, this build reads {VERSION}"),
        });
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().unwrap_or_default()) {
        return Err(damaged(name, "CRC mismatch"));
    }
    let n = u32::from_be_bytes(b[12..16].try_into().unwrap_or_default()) as usize;
    let file_base = u64::from_be_bytes(b[16..24].try_into().unwrap_or_default());
    let covered = u64::from_be_bytes(b[24..32].try_into().unwrap_or_default());
    let entries = &body[FILE_HEADER_BYTES..];
    if file_base != base || entries.len() != n.saturating_mul(entry) {
        return Err(damaged(name, "base offset or entry count does not match"));
    }
    Ok((n, covered, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_entries_and_lookups() {
        let mut idx = Indexes::new(16);
        let mut pos = 16;
        for i in 0..100u32 {
            idx.add(i * 2, pos, 100, 1000 + i as i64, 1000);
            pos += 100;
        }
        assert_eq!(idx.offsets.len(), 10);
        assert_eq!(idx.position_for(0), Some((0, 16)));
        assert_eq!(idx.position_for(41), Some((40, 2016)));
        assert_eq!(idx.segment_max_timestamp(), 1099);
        assert!(idx.scan_start_for_time(1050) <= 100);
        let again = Indexes::decode(7, &idx.encode_offsets(7), &idx.encode_times(7), "x").unwrap();
        assert_eq!(again.offsets, idx.offsets);
        assert_eq!(again.segment_max_timestamp(), 1099);
        let file_max = Indexes::decode_max_timestamp(7, &idx.encode_times(7), idx.covered, "x");
        assert_eq!(file_max.unwrap(), Some((1099, 198)));
    }

    #[test]
    fn running_max_before_is_the_maximum_up_to_the_last_indexed_batch() {
        // Batches of 100 bytes at relative offsets 0, 1, 2...; an entry every 300 bytes (every
        // third batch); timestamps rise to 50 at rel 4, fall, then reach 60 at rel 10.
        let ts = [10, 20, 5, 30, 50, 40, 45, 50, 1, 2, 60, 3];
        let mut idx = Indexes::new(16);
        for (i, t) in ts.iter().enumerate() {
            idx.add(i as u32, 16 + 100 * i as u64, 100, *t, 300);
        }
        assert_eq!(idx.running_max_before(0), None);
        assert_eq!(idx.running_max_before(1), Some((16, (10, 0))));
        assert_eq!(idx.running_max_before(4), Some((316, (30, 3))));
        // The last entry below 10 is rel 9 (its batch at 916); the maximum up to it: 50 at 4.
        assert_eq!(idx.running_max_before(10), Some((916, (50, 4))));
        assert_eq!(idx.running_max_before(u32::MAX), Some((916, (50, 4))));
        for hi in 1..ts.len() as u32 {
            let (pos, (max, rel)) = idx.running_max_before(hi).unwrap();
            let upto = ((pos - 16) / 100) as usize;
            let want = *ts[..=upto].iter().max().unwrap();
            let first = ts.iter().position(|t| *t == want).unwrap();
            assert_eq!((max, rel as usize), (want, first), "hi {hi}");
        }
    }

    #[test]
    fn damage_is_detected() {
        let mut idx = Indexes::new(16);
        idx.add(0, 16, 80, 5, 10);
        let mut off = idx.encode_offsets(0);
        let times = idx.encode_times(0);
        assert!(Indexes::decode(1, &off, &times, "x").is_err());
        off[33] ^= 1;
        assert!(Indexes::decode(0, &off, &times, "x").is_err());
        assert!(Indexes::decode(0, &off[..10], &times, "x").is_err());
    }
}
