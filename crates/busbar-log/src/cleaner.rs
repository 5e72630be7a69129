//! Background cleaning: retention by time and size, delete-records (key compaction is in
//! `compact.rs`).
//!
//! Each pass works on sealed segments through shared handles, taking the state lock only to read a
//! snapshot and to swap or drop segments, so appends and reads never wait for a pass. Passes are
//! serialised by the `clean` mutex (taken before `state`). The caller (the broker) decides when to
//! run them; nothing here spawns threads.
//!
//! A pass refuses to start on a log that is offline (a failed fdatasync) or closed, checks again
//! between segments and before it publishes or swaps anything, and so stops at the next segment
//! once `close` has been called (`close` then waits for it on `clean`).

use crate::disk::Storage;
use crate::error::{LogError, Result};
use crate::log::Log;
use crate::segment::{self, Segment};
use std::sync::Arc;

/// What a cleaning pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanReport {
    pub segments_deleted: u64,
    pub segments_rewritten: u64,
    pub records_removed: u64,
    pub bytes_freed: u64,
    /// Compaction passes run (each maps keys into a map bounded by `compaction_map_bytes`).
    pub compaction_passes: u64,
    /// The largest a pass's key map grew, in bytes as counted against `compaction_map_bytes`.
    pub map_bytes_peak: u64,
}

fn remove_segment_files(storage: &dyn Storage, base: u64) -> Result<()> {
    for name in [
        segment::log_name(base),
        segment::index_name(base),
        segment::time_name(base),
    ] {
        match storage.remove(&name) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(LogError::io(
                    format!("remove {}", storage.describe(&name)),
                    e,
                ))
            }
        }
    }
    Ok(())
}

impl Log {
    /// Raises the log start offset to `offset` (Kafka's DeleteRecords): records below it are no
    /// longer served, and segments wholly below it are deleted. Returns the new log start offset.
    pub fn delete_records(&self, offset: u64) -> Result<u64> {
        let _clean = self.clean.lock().unwrap_or_else(|e| e.into_inner());
        {
            let st = self.lock();
            self.check_maintenance(&st)?;
            if offset > st.high_watermark {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    start: st.log_start,
                    end: st.high_watermark,
                });
            }
        }
        // The checkpoint recording it is written outside `state`; the start moves once durable.
        self.move_log_start(offset)?;
        let start = self.lock().log_start;
        self.drop_segments_below(start)?;
        Ok(start)
    }

    /// Empties the log and makes `offset`, past its end, both its start and its next offset: a
    /// copy that fell behind what its source still holds starts over where the source now begins
    /// (cluster mode: retention deleted the objects holding the offsets this copy lacks).
    /// Returns the new log start; `offset` below the end is `OffsetOutOfRange`, at the end it
    /// moves the start only (a try cut short after its roll is finished so).
    ///
    /// Crash-safe in three steps: a new empty segment is rolled at `offset` (a crash now leaves
    /// a segment that does not follow on from the checkpointed one, which recovery removes: the
    /// log is as it was), a checkpoint records the new start and end (a crash now leaves the old
    /// segments below the start, deleted by the next cleaning pass), and the old segments go.
    /// Nothing moves in memory before that checkpoint is durable, and no periodic checkpoint
    /// runs in between. A `close` in between (its clean checkpoint records the new segment with
    /// the old start) leaves the old segments, a gap no read is answered from, and the new end:
    /// nothing lost, and the next call moves the start.
    pub fn start_over_at(&self, offset: u64) -> Result<u64> {
        let _clean = self.clean.lock().unwrap_or_else(|e| e.into_inner());
        {
            let mut st = self.lock();
            self.check_maintenance(&st)?;
            if offset < st.next_offset {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    start: st.log_start,
                    end: st.next_offset,
                });
            }
            // At the end already (or rolled there by a try that failed later): no roll.
            if offset > st.next_offset {
                let was = st.next_offset;
                st.next_offset = offset;
                if let Err(e) = self.roll_locked(&mut st) {
                    st.next_offset = was;
                    return Err(e);
                }
                // No periodic checkpoint may record the new segment with the old start.
                st.moving_start = true;
            }
        }
        let moved = self.move_log_start_and_end(offset, true);
        self.lock().moving_start = false;
        moved?;
        self.drop_segments_below(offset)?;
        Ok(self.lock().log_start)
    }

    /// Deletes sealed segments whose every offset is below `start`, up to the first segment rolled
    /// since the last checkpoint (its index files are still to be written).
    fn drop_segments_below(&self, start: u64) -> Result<CleanReport> {
        let mut st = self.lock();
        let mut n = 0;
        while n < st.sealed.len() && !st.is_pending(st.sealed[n].base) {
            let end = st.sealed.get(n + 1).map_or(st.active.base, |s| s.base);
            if end > start {
                break;
            }
            n += 1;
        }
        let gone: Vec<Arc<Segment>> = st.sealed.drain(..n).collect();
        drop(st);
        let mut report = CleanReport::default();
        for seg in &gone {
            seg.retire(|| remove_segment_files(self.storage.as_ref(), seg.base))?;
            report.segments_deleted += 1;
            report.bytes_freed += seg.len();
        }
        if !gone.is_empty() {
            self.storage
                .sync_dir()
                .map_err(|e| LogError::io("sync dir", e))?;
        }
        Ok(report)
    }

    /// Retention by time and size (when the cleanup policy deletes): drops the oldest sealed
    /// segments that are past `retention_ms` or keep the log above `retention_bytes`. A segment's
    /// age is measured from [`retention_anchor`]; one whose age is unknown is passed over, not a
    /// stop, so one bad timestamp cannot hold time retention forever.
    pub fn enforce_retention(&self) -> Result<CleanReport> {
        let _clean = self.clean.lock().unwrap_or_else(|e| e.into_inner());
        let (sealed, next_base, active_len, log_start) = {
            let st = self.lock();
            self.check_maintenance(&st)?;
            // Segments rolled since the last checkpoint are left to a later pass.
            let settled = st.sealed.len().saturating_sub(st.pending.len());
            let next_base = st.sealed.get(settled).map_or(st.active.base, |s| s.base);
            let pending_len: u64 = st.pending.iter().map(|p| p.seg.len()).sum();
            let sealed = st.sealed[..settled].to_vec();
            (
                sealed,
                next_base,
                st.active_file.len() + pending_len,
                st.log_start,
            )
        };
        if !self.config().deletes() {
            return Ok(CleanReport::default());
        }
        let cfg = self.config();
        let now = cfg.clock.now_ms();
        let mut size: u64 = sealed.iter().map(|s| s.len()).sum::<u64>() + active_len;
        let mut new_start = log_start;
        // Bytes of segments of unknown age passed over: deleted only with a later segment.
        let mut skipped: u64 = 0;
        for (i, seg) in sealed.iter().enumerate() {
            self.check_maintenance_now()?;
            let len = seg.len();
            let max_ts = seg.max_timestamp(cfg.index_interval_bytes)?;
            let anchor = retention_anchor(max_ts, now, seg);
            let by_time = cfg
                .retention_ms
                .is_some_and(|ms| anchor.is_some_and(|t| t < now.saturating_sub(ms)));
            let by_size = cfg
                .retention_bytes
                .is_some_and(|b| size - skipped - len >= b);
            if by_time || by_size {
                size -= skipped + len;
                skipped = 0;
                new_start = sealed.get(i + 1).map_or(next_base, |s| s.base);
            } else if cfg.retention_ms.is_some() && anchor.is_none() {
                skipped += len;
            } else {
                break;
            }
        }
        if new_start > log_start {
            self.move_log_start(new_start)?;
        }
        let start = self.lock().log_start;
        self.drop_segments_below(start)
    }
}

/// The time from which time retention measures a sealed segment's age: its max timestamp when
/// that lies between 0 and now; otherwise (a producer's clock in the future, or no or negative
/// timestamps) the time its file was last written, which for a sealed segment is about when it
/// rolled (as Kafka falls back on a segment's last-modified time). `None` when that is unknown
/// too: retention then passes over the segment and deletes it only together with a later one.
fn retention_anchor(max_ts: i64, now: i64, seg: &Segment) -> Option<i64> {
    if (0..=now).contains(&max_ts) {
        return Some(max_ts);
    }
    seg.file().ok()?.modified_ms().ok().flatten()
}
