//! The batch holding the log's largest record timestamp (Kafka's ListOffsets `-3`), found from
//! each segment's kept maximum so that only the segment holding it is read.
//!
//! Every segment knows its largest batch max timestamp and the first batch reaching it (the
//! time index's last entry, kept once known; the active segment's in-memory index). The answer
//! comes from those alone, plus one read of the winning batch, unless the winner cannot be served
//! as it is: its batch lies before the log start (delete-records inside the segment), at or past
//! the high watermark (not synced yet) or the segment is damaged. Then that one segment is
//! scanned, from the log start or from the last index entry below the high watermark, never past
//! what readers may see. Ties go to the earlier batch, as Kafka answers the first of equals.

use crate::batch::BatchHeader;
use crate::error::{LogError, Result};
use crate::index::Indexes;
use crate::log::{Log, State};
use crate::segment::{Cursor, Expect, Segment, HEADER_BYTES};
use std::sync::Arc;

/// The batch with the largest max timestamp at or after the log start, and that timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxTimestamp {
    pub timestamp: i64,
    /// The whole stored batch (it may begin before the log start, when it holds it).
    pub batch: Vec<u8>,
}

/// How many times a look-up is tried when the batch it chose was removed or rewritten
/// (retention, compaction) before it was read, or turned out damaged.
const ATTEMPTS: usize = 3;

/// What the active segment's index answers, taken under the state lock (it changes with appends).
struct ActiveView {
    max: Option<(i64, u32)>,
    resume: Option<(u64, (i64, u32))>,
    start_pos: u64,
}

/// One segment as a look-up sees it.
struct Part {
    seg: Arc<Segment>,
    /// Bytes readers may see, cut at the first damaged byte.
    end: u64,
    active: Option<ActiveView>,
}

/// Log start and high watermark: the offsets a look-up may answer lie in `[lo, hi)`.
#[derive(Clone, Copy)]
struct Bounds {
    lo: u64,
    hi: u64,
}

impl Log {
    /// The batch holding the largest record timestamp among the offsets readers may see (the
    /// first such batch when several share it); `None` when there is none. Reads the time
    /// indexes of segments whose maximum is not known yet and, in the common case, nothing of a
    /// segment file but the winning batch (see the module doc for when one segment is scanned).
    pub fn max_timestamp(&self) -> Result<Option<MaxTimestamp>> {
        self.max_timestamp_skipping(&[])
    }

    /// [`Log::max_timestamp`] among the batches whose base offset is not in `skip`. A caller that
    /// finds the answer's maximum among none of the batch's visible records (the record that set
    /// it lies below the log start, or was compacted away before compaction rewrote headers)
    /// skips that batch and asks again.
    pub fn max_timestamp_skipping(&self, skip: &[u64]) -> Result<Option<MaxTimestamp>> {
        for attempt in 1..=ATTEMPTS {
            let (parts, bounds) = self.max_parts()?;
            let interval = self.config().index_interval_bytes;
            let mut best: Option<(i64, u64)> = None;
            // Newest first, so that an older segment reaching the same maximum takes its place.
            for part in parts.iter().rev() {
                let beat = best.map(|(ts, _)| ts);
                if let Some(found) = segment_max(part, bounds, beat, interval, skip)? {
                    best = Some(found);
                }
            }
            let Some((ts, base)) = best else {
                return Ok(None);
            };
            let read = match self.read(base.max(bounds.lo), 1) {
                Ok(r) => r,
                // Gone meanwhile, or damage found by this read (the segment is marked now, so
                // the next attempt answers from what is left before the damage).
                Err(LogError::OffsetOutOfRange { .. } | LogError::Corrupt { .. })
                    if attempt < ATTEMPTS =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            let Some(h) = BatchHeader::parse(&read.data).ok() else {
                continue;
            };
            let len = h.total_len().unwrap_or(read.data.len());
            let same = h.base_offset as u64 == base && h.max_timestamp == ts;
            if same || attempt == ATTEMPTS {
                let mut batch = read.data;
                batch.truncate(len);
                return Ok(Some(MaxTimestamp {
                    timestamp: h.max_timestamp,
                    batch,
                }));
            }
        }
        Ok(None)
    }

    /// Every segment that holds offsets at or after the log start, oldest first, with what the
    /// active one's index answers now.
    fn max_parts(&self) -> Result<(Vec<Part>, Bounds)> {
        let st = self.lock();
        if st.closed {
            return Err(LogError::Closed);
        }
        let bounds = Bounds {
            lo: st.log_start,
            hi: st.high_watermark,
        };
        let mut parts = Vec::with_capacity(st.sealed.len() + 1);
        for (i, seg) in st.sealed.iter().enumerate() {
            let next = st.sealed.get(i + 1).unwrap_or(&st.active).base;
            if next > bounds.lo {
                parts.push(Part {
                    end: cut_at_damage(seg, st.read_end(seg)),
                    seg: seg.clone(),
                    active: None,
                });
            }
        }
        parts.push(Part {
            seg: st.active.clone(),
            end: cut_at_damage(&st.active, st.visible),
            active: Some(active_view(&st, bounds)),
        });
        Ok((parts, bounds))
    }
}

fn cut_at_damage(seg: &Segment, end: u64) -> u64 {
    seg.damaged_from().map_or(end, |d| d.min(end))
}

fn active_view(st: &State, b: Bounds) -> ActiveView {
    let idx = &st.active_index;
    ActiveView {
        max: idx.max_timestamp,
        resume: idx.running_max_before(rel(&st.active, b.hi)),
        start_pos: start_position(idx, &st.active, b.lo),
    }
}

/// `offset` relative to the segment's base, clamped to the index's 32 bits.
fn rel(seg: &Segment, offset: u64) -> u32 {
    offset.saturating_sub(seg.base).min(u64::from(u32::MAX)) as u32
}

/// Where a scan for batches holding `lo` or later starts in the segment.
fn start_position(idx: &Indexes, seg: &Segment, lo: u64) -> u64 {
    if lo <= seg.base {
        return HEADER_BYTES;
    }
    idx.position_for(rel(seg, lo))
        .map_or(HEADER_BYTES, |(_, p)| u64::from(p))
}

/// The segment's largest max timestamp among batches readers may see, and its first batch's base
/// offset; `None` when it has none or cannot reach `beat` (a later segment's maximum: equal is
/// enough, since the earlier batch wins ties).
fn segment_max(
    part: &Part,
    b: Bounds,
    beat: Option<i64>,
    interval: u64,
    skip: &[u64],
) -> Result<Option<(i64, u64)>> {
    let seg = &part.seg;
    let max = match &part.active {
        Some(a) => a.max,
        None => seg.max_record(interval)?,
    };
    let Some((ts, r)) = max.filter(|(ts, _)| beat.is_none_or(|m| *ts >= m)) else {
        return Ok(None);
    };
    let base = seg.base + u64::from(r);
    if base >= b.lo && base < b.hi && seg.damaged_from().is_none() && !skip.contains(&base) {
        return Ok(Some((ts, base)));
    }
    if b.hi <= seg.base {
        return Ok(None);
    }
    let (resume, start_pos) = match &part.active {
        Some(a) => (a.resume, a.start_pos),
        None => {
            let idx = seg.sealed_indexes(interval)?;
            (
                idx.running_max_before(rel(seg, b.hi)),
                start_position(&idx, seg, b.lo),
            )
        }
    };
    // The index's running maximum stands for every batch up to its last entry below the high
    // watermark when the batch reaching it is at or after the log start and before the damage.
    let (from, init) = match resume {
        Some((pos, (ts, r)))
            if seg.base + u64::from(r) >= b.lo
                && pos < part.end
                && !skip.contains(&(seg.base + u64::from(r))) =>
        {
            (pos, Some((ts, seg.base + u64::from(r))))
        }
        _ => (start_pos, None),
    };
    let found = scan_max(seg, from, part.end, init, b.lo, skip)?;
    Ok(found.filter(|(ts, _)| beat.is_none_or(|m| *ts >= m)))
}

/// The largest batch max timestamp (first reaching it) of the valid batches between `from` and
/// `end` that hold offsets at or after `lo` and are not in `skip`, starting from `init`.
fn scan_max(
    seg: &Segment,
    from: u64,
    end: u64,
    init: Option<(i64, u64)>,
    lo: u64,
    skip: &[u64],
) -> Result<Option<(i64, u64)>> {
    let file = seg.file()?;
    let mut best = init;
    let mut cursor = Cursor::new(file.as_ref(), from, end, Expect::AtLeast(seg.base));
    while let Ok(Some((_, bytes))) = cursor.next_batch() {
        let h = BatchHeader::parse(bytes).expect("verified batch");
        if (h.last_offset() as u64) < lo || skip.contains(&(h.base_offset as u64)) {
            continue;
        }
        if best.is_none_or(|(ts, _)| h.max_timestamp > ts) {
            best = Some((h.max_timestamp, h.base_offset as u64));
        }
    }
    Ok(best)
}
