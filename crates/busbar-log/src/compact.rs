//! Key compaction in bounded passes (Kafka's log cleaner, with exact keys instead of digests).
//!
//! A pass maps key → latest offset over the dirty range (from where the previous pass stopped
//! mapping to the end of the settled segments: sealed and covered by a checkpoint) into a map of
//! at most `compaction_map_bytes` (each distinct key costs its length plus [`ENTRY_OVERHEAD_BYTES`];
//! a pass always takes one key, so progress never stalls on a huge key). Mapping stops where the
//! map is full, at offset `upto`. The pass then rewrites the settled segments that start below
//! `upto`: a record below `upto` is dropped when the map holds a later offset for its key, when it
//! is a tombstone whose batch's delete horizon has passed (set by the first pass that kept it,
//! `delete_retention_ms` ahead: Kafka's KIP-534) or when it lies below the log start; records at
//! or after `upto` are kept for a later pass. [`Log::compact`] runs passes until the dirty range
//! is mapped, so memory is bounded whatever the number of keys, and runs none when nothing new was
//! settled and no kept tombstone's horizon has passed. Exact keys mean no digest collision can
//! ever drop the newest value of a key.
//!
//! Rewrites stream: a segment is copied into `<segment>.cleaned` only from its first removed
//! record on (its unchanged prefix copied in chunks), kept batches are written in chunks of at
//! most [`REWRITE_CHUNK_BYTES`] plus one batch, and its indexes are built as it goes. Passes run
//! under `clean` and take `state` only for snapshots and the swap; they never touch the segments
//! rolled since the last checkpoint, nor damaged ones. A damaged segment keeps every record,
//! older values included, so once a pass meets one (marked before, or found while rewriting) no
//! tombstone after it expires in that pass: removing the tombstone would bring the key back.
//!
//! Compressed batches are inflated with the broker's [`Codec`] and filtered like the others;
//! their kept records are compressed again with the batch's codec. Transactional batches are kept
//! whole, and their keys held ([`HeldKeys`]): no later tombstone of such a key expires while an
//! older value of it may sit in one.

use crate::batch::{self, BatchHeader, Record, Records, HEADER_BYTES as BATCH_HEADER_BYTES};
use crate::cleaner::CleanReport;
use crate::config::SEGMENT_BYTES_MAX;
use crate::disk::{self, File, Storage};
use crate::error::{LogError, Result};
use crate::index::Indexes;
use crate::log::Log;
use crate::segment::{self, Cursor, Expect, Segment, HEADER_BYTES};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Bytes a key-map entry is counted as on top of its key: the key's `Vec` header, the offset and
/// the hash table's slot and spare capacity (an estimate, on the safe side).
pub const ENTRY_OVERHEAD_BYTES: u64 = 64;
/// Kept bytes buffered before a rewrite writes them (and the piece size of a prefix copy).
pub const REWRITE_CHUNK_BYTES: usize = 256 * 1024;

/// What compaction remembers between passes (guarded by the `clean` mutex; reset at open, so the
/// first pass after a restart maps from the log start again).
#[derive(Debug, Default)]
pub(crate) struct CleanState {
    /// Where the next pass starts mapping.
    pub dirty_from: u64,
    /// The earliest delete horizon of the tombstones the last full pass kept: a pass is due
    /// then.
    pub tombstones_due_at: Option<i64>,
}

/// Key → latest offset, bounded in bytes (a pass's map; the cluster's compaction of its objects
/// uses it too).
pub struct KeyMap {
    map: HashMap<Vec<u8>, u64>,
    bytes: u64,
    budget: u64,
}

impl KeyMap {
    /// An empty map of at most `budget` bytes (see [`KeyMap::put`]).
    pub fn new(budget: u64) -> Self {
        Self {
            map: HashMap::new(),
            bytes: 0,
            budget,
        }
    }

    /// Records `offset` as the latest of `key`. False (nothing recorded) when a new key would take
    /// the map past its budget; an empty map takes any key.
    pub fn put(&mut self, key: &[u8], offset: u64) -> bool {
        if let Some(o) = self.map.get_mut(key) {
            *o = offset;
            return true;
        }
        let cost = key.len() as u64 + ENTRY_OVERHEAD_BYTES;
        if !self.map.is_empty() && self.bytes + cost > self.budget {
            return false;
        }
        self.map.insert(key.to_vec(), offset);
        self.bytes += cost;
        true
    }

    /// The latest offset recorded for `key`.
    pub fn get(&self, key: &[u8]) -> Option<u64> {
        self.map.get(key).copied()
    }

    /// Bytes the map is counted as.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// The settled segments a pass works on.
struct Snapshot {
    settled: Vec<Arc<Segment>>,
    /// Base offset of the first segment that is not settled: where the dirty range ends.
    settled_end: u64,
    log_start: u64,
}

/// Record codecs for compaction. busbar-log has none of its own: the broker supplies Kafka's
/// (gzip, snappy, lz4, zstd), so that a compressed batch is compacted like any other (inflated,
/// filtered, and its kept records compressed again with the batch's codec, as Kafka's cleaner
/// does).
pub trait Codec: Send + Sync {
    /// The records section `data` of a batch compressed with `codec` (the attributes' low three
    /// bits), inflated within the implementation's own bound.
    fn decompress(&self, codec: u8, data: &[u8]) -> std::result::Result<Vec<u8>, String>;
    /// The records section `data` compressed with `codec`.
    fn compress(&self, codec: u8, data: &[u8]) -> std::result::Result<Vec<u8>, String>;
}

/// Keys of the records a pass keeps whole without judging them: those of transactional batches
/// (their transaction may have aborted, so they neither lose records nor supersede any). An
/// older value of such a key stays, so no later tombstone of the key may expire in the pass, or
/// the value would show again. Bounded: past its budget, or after a batch whose keys cannot be
/// read (compressed with no codec, or damaged), every later tombstone is held.
pub struct HeldKeys {
    keys: std::collections::HashSet<Vec<u8>>,
    bytes: u64,
    budget: u64,
    all: bool,
}

impl HeldKeys {
    /// None held yet; at most `budget` bytes of keys (each counted as a [`KeyMap`] entry).
    pub fn new(budget: u64) -> Self {
        Self {
            keys: Default::default(),
            bytes: 0,
            budget,
            all: false,
        }
    }

    /// Holds `key`'s tombstones from here on (all of them once past the budget).
    pub fn hold(&mut self, key: &[u8]) {
        if self.all || self.keys.contains(key) {
            return;
        }
        let cost = key.len() as u64 + ENTRY_OVERHEAD_BYTES;
        if self.bytes + cost > self.budget {
            self.hold_all();
            return;
        }
        self.keys.insert(key.to_vec());
        self.bytes += cost;
    }

    /// Holds every tombstone from here on.
    pub fn hold_all(&mut self) {
        self.all = true;
        self.keys = Default::default();
        self.bytes = 0;
    }

    /// Whether `key`'s tombstones are held.
    pub fn holds(&self, key: &[u8]) -> bool {
        self.all || self.keys.contains(key)
    }
}

/// Which records of a batch a pass keeps.
pub struct Filter<'a> {
    /// Each mapped key's latest offset: an earlier record of the key goes.
    pub map: &'a KeyMap,
    /// The time now (ms): the tombstones of a batch whose delete horizon is past go.
    pub now: i64,
    /// How long a tombstone is kept once a pass first kept it: the delete horizon a pass sets.
    pub delete_retention_ms: i64,
    /// Records below it go.
    pub log_start: u64,
    /// Where mapping stopped: records at or after it stay (a later pass looks at them).
    pub upto: u64,
    /// Inflates compressed batches; without it they are kept whole.
    pub codec: Option<&'a dyn Codec>,
}

/// What [`Filter::batch`] kept of a batch.
pub enum Kept {
    /// Every record: the batch as it was.
    Whole,
    /// Some records: the batch rebuilt of them (offsets and last offset delta kept).
    Rebuilt(Vec<u8>),
    /// No record: the batch goes.
    Nothing,
}

/// The records section of the batch `bytes` (header `h`), inflated when compressed; `None` when
/// it cannot be read (no codec, or the codec failed).
fn records_section<'b>(
    h: &BatchHeader,
    bytes: &'b [u8],
    codec: Option<&dyn Codec>,
) -> Option<std::borrow::Cow<'b, [u8]>> {
    let raw = bytes.get(BATCH_HEADER_BYTES..)?;
    match h.compression() {
        0 => Some(std::borrow::Cow::Borrowed(raw)),
        c => codec?.decompress(c, raw).ok().map(std::borrow::Cow::Owned),
    }
}

/// Whether every record of `section` (of the batch `h`) parses and they are as many as the
/// header says (a batch that cannot be read whole is kept whole, never cut short).
fn readable(h: &BatchHeader, section: &[u8]) -> bool {
    let mut n = 0usize;
    for r in Records::new(section) {
        if r.is_err() {
            return false;
        }
        n += 1;
    }
    usize::try_from(h.record_count).is_ok_and(|c| c == n)
}

impl Filter<'_> {
    /// The batch with superseded records, expired tombstones and records below the log start
    /// removed, how many were removed, and when the earliest tombstone it keeps may go.
    /// Control and transactional batches are kept whole (a transactional record may belong to
    /// a transaction that aborted, or that is still open: it neither loses records nor
    /// supersedes any); their keys go into `held`, and so does everything when a batch cannot
    /// be read. A tombstone of a held key is kept whatever its age.
    ///
    /// Tombstones expire as Kafka's (KIP-534): the first pass that keeps a batch's tombstones
    /// (below `upto`) sets its delete horizon, `now + delete_retention_ms`, in the rebuilt
    /// batch; they go in a pass after that time. So a tombstone stays at least
    /// `delete_retention_ms` after compaction first saw it, whatever its record's timestamp
    /// says (a producer's clock, or an old event replayed).
    ///
    /// A compressed batch is compressed again with its codec, or stored uncompressed when that
    /// would take more than its kept records (never kept whole: that would keep values a later
    /// pass no longer knows are superseded). Memory: the batch inflated and its rebuild.
    pub fn batch(&self, bytes: &[u8], held: &mut HeldKeys) -> (Kept, u64, Option<i64>) {
        const WHOLE: (Kept, u64, Option<i64>) = (Kept::Whole, 0, None);
        let Ok(h) = BatchHeader::parse(bytes) else {
            held.hold_all();
            return WHOLE;
        };
        if h.is_control() {
            return WHOLE;
        }
        let section = records_section(&h, bytes, self.codec);
        let Some(section) = section.filter(|s| readable(&h, s)) else {
            held.hold_all();
            return WHOLE;
        };
        if h.is_transactional() {
            for k in Records::new(&section).flatten().filter_map(|r| r.key) {
                held.hold(k);
            }
            return WHOLE;
        }
        let expiring = h.delete_horizon().is_some_and(|t| t <= self.now);
        // The batch's horizon: as set by an earlier pass, else the one this pass sets.
        let horizon =
            (h.delete_horizon()).unwrap_or(self.now.saturating_add(self.delete_retention_ms));
        let (mut removed, mut kept, mut tomb, mut stamp) = (0u64, 0usize, None::<i64>, false);
        for r in Records::new(&section).flatten() {
            if !self.keeps(&h, &r, expiring, held) {
                removed += 1;
                continue;
            }
            kept += 1;
            if let (true, Some(k), None) = (self.judges(&h, &r), r.key, r.value) {
                stamp |= h.delete_horizon().is_none();
                if !held.holds(k) {
                    tomb = Some(tomb.map_or(horizon, |t| t.min(horizon)));
                }
            }
        }
        if removed == 0 && !stamp {
            return (Kept::Whole, 0, tomb);
        }
        if kept == 0 {
            return (Kept::Nothing, removed, tomb);
        }
        let horizon = (h.delete_horizon().is_some() || stamp).then_some(horizon);
        let rebuilt = self.rebuild(&h, &section, horizon, (expiring, held));
        (Kept::Rebuilt(rebuilt), removed, tomb)
    }

    /// Whether the pass judges record `r` of batch `h` (records at or after `upto` wait).
    fn judges(&self, h: &BatchHeader, r: &Record<'_>) -> bool {
        (h.base_offset as u64 + r.offset_delta as u64) < self.upto
    }

    /// Whether record `r` of the data batch `h` stays (`expiring`: the batch's delete horizon
    /// has passed).
    fn keeps(&self, h: &BatchHeader, r: &Record<'_>, expiring: bool, held: &HeldKeys) -> bool {
        let offset = h.base_offset as u64 + r.offset_delta as u64;
        offset >= self.log_start
            && (!self.judges(h, r)
                || r.key.is_none_or(|k| {
                    let superseded = self.map.get(k).is_some_and(|o| o > offset);
                    let expired = r.value.is_none() && expiring && !held.holds(k);
                    !(superseded || expired)
                }))
    }

    /// The batch `h` (its inflated records `section`) of the records it keeps, compressed
    /// again with its codec. As Kafka's cleaner builds a new batch from the kept records, its
    /// header is theirs: base timestamp the first kept record's, max timestamp their largest (a
    /// batch stamped with the broker's append time keeps both). With a delete `horizon`, the
    /// base timestamp holds it instead (and the delete-horizon bit is set); the records'
    /// timestamps are re-encoded against it, so they stay what they were. Offsets, producer
    /// fields, the other attributes and the last offset delta stay.
    fn rebuild(
        &self,
        h: &BatchHeader,
        section: &[u8],
        horizon: Option<i64>,
        (expiring, held): (bool, &HeldKeys),
    ) -> Vec<u8> {
        let lat = h.is_log_append_time();
        let (mut out, mut count, mut base, mut max) = (Vec::new(), 0i32, None, i64::MIN);
        for r in Records::new(section).flatten() {
            if !self.keeps(h, &r, expiring, held) {
                continue;
            }
            let ts = h.base_timestamp.wrapping_add(r.timestamp_delta);
            let first = if lat { h.base_timestamp } else { ts };
            let base_ts = *base.get_or_insert(horizon.unwrap_or(first));
            if base_ts == h.base_timestamp {
                out.extend_from_slice(r.raw);
            } else {
                out.extend_from_slice(&batch::encode_record(&r, ts.wrapping_sub(base_ts)));
            }
            max = max.max(ts);
            count += 1;
        }
        let mut attributes = match horizon {
            Some(_) => h.attributes | batch::DELETE_HORIZON_FLAG,
            None => h.attributes,
        };
        if h.compression() != 0 {
            // Compressed again with the batch's codec unless that takes more than the records
            // themselves (a weaker encoder than the producer's: ruzstd's window is 128 KiB):
            // then stored uncompressed, so a rebuild is never larger than its kept records.
            match self
                .codec
                .and_then(|c| c.compress(h.compression(), &out).ok())
            {
                Some(packed) if packed.len() < out.len() => out = packed,
                _ => attributes &= !batch::COMPRESSION_MASK,
            }
        }
        batch::assemble(
            &BatchHeader {
                record_count: count,
                base_timestamp: base.unwrap_or(h.base_timestamp),
                max_timestamp: if lat { h.max_timestamp } else { max },
                attributes,
                ..*h
            },
            &out,
        )
    }
}

impl Log {
    /// Key compaction of the settled segments (when the cleanup policy compacts), in passes of
    /// bounded memory until the dirty range is done. See `docs/log-format.md` for what is kept.
    pub fn compact(&self) -> Result<CleanReport> {
        let mut cs = self.clean.lock().unwrap_or_else(|e| e.into_inner());
        self.check_maintenance_now()?;
        let mut report = CleanReport::default();
        if !self.config().compacts() {
            return Ok(report);
        }
        let mut first = true;
        loop {
            let cfg = self.config();
            let snap = self.compaction_snapshot()?;
            let from = cs.dirty_from.max(snap.log_start);
            let now = cfg.clock.now_ms();
            let expiring = cs.tombstones_due_at.is_some_and(|t| t <= now);
            if snap.settled.is_empty() || (from >= snap.settled_end && !expiring) {
                return Ok(report);
            }
            // The ratio gates starting a compaction, not the passes that finish one.
            let ratio = cfg.min_cleanable_dirty_ratio;
            if first && !expiring && cs.dirty_from > 0 && dirty_ratio(&snap, from) < ratio {
                return Ok(report);
            }
            first = false;
            let (map, upto) = self.map_keys(&snap, from)?;
            report.compaction_passes += 1;
            report.map_bytes_peak = report.map_bytes_peak.max(map.bytes);
            let filter = Filter {
                map: &map,
                now,
                delete_retention_ms: cfg.delete_retention_ms,
                log_start: snap.log_start,
                upto,
                codec: cfg.codec.as_deref(),
            };
            let mut held = HeldKeys::new(cfg.compaction_map_bytes);
            let mut tomb = None;
            for seg in snap.settled.iter().filter(|s| s.base < upto) {
                self.check_maintenance_now()?;
                if seg.damaged_from().is_none() {
                    self.compact_segment(seg, &filter, (&mut held, &mut tomb), &mut report)?;
                }
                if seg.damaged_from().is_some() {
                    // Its records stay as they are (older values of any key included): no
                    // tombstone after it may expire in this pass.
                    held.hold_all();
                }
            }
            cs.dirty_from = upto;
            if upto >= snap.settled_end {
                // Held tombstones are not counted: no pass is due for them alone.
                cs.tombstones_due_at = tomb;
                return Ok(report);
            }
        }
    }

    fn compaction_snapshot(&self) -> Result<Snapshot> {
        let st = self.lock();
        self.check_maintenance(&st)?;
        let n = st.sealed.len().saturating_sub(st.pending.len());
        Ok(Snapshot {
            settled: st.sealed[..n].to_vec(),
            settled_end: st.sealed.get(n).map_or(st.active.base, |s| s.base),
            log_start: st.log_start,
        })
    }

    /// Maps keys from offset `from` on until the map is full or the settled segments end; answers
    /// the map and the offset where mapping stopped.
    fn map_keys(&self, snap: &Snapshot, from: u64) -> Result<(KeyMap, u64)> {
        let cfg = self.config();
        let mut map = KeyMap::new(cfg.compaction_map_bytes);
        for (i, seg) in snap.settled.iter().enumerate() {
            let next_base = snap.settled.get(i + 1).map_or(snap.settled_end, |s| s.base);
            if next_base <= from {
                continue;
            }
            self.check_maintenance_now()?;
            let start = if from > seg.base {
                let idx = seg.sealed_indexes(cfg.index_interval_bytes)?;
                let rel = u32::try_from(from - seg.base).unwrap_or(u32::MAX);
                idx.position_for(rel)
                    .map_or(HEADER_BYTES, |(_, p)| p as u64)
            } else {
                HEADER_BYTES
            };
            let end = seg.damaged_from().map_or(seg.len(), |d| d.min(seg.len()));
            let file = seg.file()?;
            let mut cursor = Cursor::new(file.as_ref(), start, end, Expect::AtLeast(seg.base));
            while let Ok(Some((_, bytes))) = cursor.next_batch() {
                let mut full_at = None;
                for_each_keyed(bytes, cfg.codec.as_deref(), |key, offset| {
                    if full_at.is_none()
                        && offset >= from.max(snap.log_start)
                        && !map.put(key, offset)
                    {
                        full_at = Some(offset);
                    }
                });
                if let Some(upto) = full_at {
                    return Ok((map, upto));
                }
            }
        }
        Ok((map, snap.settled_end))
    }

    /// Rewrites one settled segment through `filter` (when it removes anything) and swaps it in.
    fn compact_segment(
        &self,
        seg: &Arc<Segment>,
        filter: &Filter<'_>,
        (held, tomb): (&mut HeldKeys, &mut Option<i64>),
        report: &mut CleanReport,
    ) -> Result<()> {
        let storage = self.storage.as_ref();
        let old_len = seg.len();
        let old = seg.file()?;
        let mut w = Rewrite::new(self, seg.base, old.clone());
        let res = self.filter_segment(seg, old.as_ref(), filter, &mut w, (held, tomb));
        let (removed, done) = match res.and_then(|removed| Ok((removed, w.finish()?))) {
            Ok(r) => r,
            Err(e) => {
                let _ = storage.remove(&w.tmp); // best effort; open deletes leftovers too
                return Err(e);
            }
        };
        let Some((file, idx, new_len)) = done else {
            return Ok(()); // nothing removed (or damage found): the segment stays as it is
        };
        if let Err(e) = self.check_maintenance_now() {
            // Closed (or failed) while the rewrite was written: it is not swapped in.
            let _ = storage.remove(&w.tmp);
            return Err(e);
        }
        let name = segment::log_name(seg.base);
        let io = |e| LogError::io(format!("write {}", storage.describe(&w.tmp)), e);
        // From the rename on, the name holds the new file: the old segment is retired so that no
        // reader reopens it by name (readers still holding it keep the old file open).
        seg.retire(|| storage.rename(&w.tmp, &name).map_err(io))?;
        storage.sync_dir().map_err(io)?;
        segment::write_indexes(storage, seg.base, &idx)?;
        let new = Arc::new(Segment::new(
            seg.base,
            file,
            self.storage.clone(),
            self.cache.clone(),
        ));
        new.seal(Some(idx));
        let mut st = self.lock();
        self.check_maintenance(&st)?;
        if let Some(slot) = st.sealed.iter_mut().find(|s| s.base == seg.base) {
            *slot = new;
        }
        report.segments_rewritten += 1;
        report.records_removed += removed;
        report.bytes_freed += old_len.saturating_sub(new_len);
        Ok(())
    }

    /// Feeds every batch of `seg` through `filter` into `w`; answers the records removed. Damage
    /// found on the way marks the segment (from there) and abandons its rewrite.
    fn filter_segment(
        &self,
        seg: &Segment,
        old: &dyn File,
        filter: &Filter<'_>,
        w: &mut Rewrite<'_>,
        (held, tomb): (&mut HeldKeys, &mut Option<i64>),
    ) -> Result<u64> {
        let mut cursor = Cursor::new(old, HEADER_BYTES, seg.len(), Expect::AtLeast(seg.base));
        let mut removed = 0;
        loop {
            match cursor.next_batch() {
                Ok(Some((pos, bytes))) => {
                    let (kept, n, t) = filter.batch(bytes, held);
                    removed += n;
                    *tomb = match (*tomb, t) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    w.push(pos, bytes, kept)?;
                }
                Ok(None) => return Ok(removed),
                Err((pos, _)) => {
                    seg.mark_damaged(pos);
                    self.damage.fetch_add(1, Ordering::SeqCst);
                    w.abandon();
                    return Ok(0);
                }
            }
        }
    }
}

/// The share of the settled bytes not compacted yet: in the segments from the one holding
/// `from` on (that one counted whole).
fn dirty_ratio(snap: &Snapshot, from: u64) -> f64 {
    let total: u64 = snap.settled.iter().map(|s| s.len()).sum();
    let dirty: u64 = snap
        .settled
        .iter()
        .enumerate()
        .filter(|(i, _)| snap.settled.get(i + 1).map_or(snap.settled_end, |n| n.base) > from)
        .map(|(_, s)| s.len())
        .sum();
    dirty as f64 / total.max(1) as f64
}

/// A finished rewrite: the synced new file, its indexes and its length.
type Rewritten = (Arc<dyn File>, Indexes, u64);

/// A segment's rewrite into `<segment>.cleaned`, started at its first removed record.
struct Rewrite<'a> {
    log: &'a Log,
    base: u64,
    old: Arc<dyn File>,
    tmp: String,
    file: Option<Arc<dyn File>>,
    abandoned: bool,
    buf: Vec<u8>,
    /// Length of the new segment so far: written, buffered, or (before it starts) the unchanged
    /// prefix it will copy.
    len: u64,
    idx: Indexes,
}

impl<'a> Rewrite<'a> {
    fn new(log: &'a Log, base: u64, old: Arc<dyn File>) -> Self {
        Self {
            log,
            base,
            old,
            tmp: format!("{}.cleaned", segment::log_name(base)),
            file: None,
            abandoned: false,
            buf: Vec::new(),
            len: HEADER_BYTES,
            idx: Indexes::new(HEADER_BYTES),
        }
    }

    fn io(&self) -> impl Fn(std::io::Error) -> LogError + '_ {
        move |e| LogError::io(format!("write {}", self.log.storage.describe(&self.tmp)), e)
    }

    /// Takes the batch at `pos` of the old segment, of which `kept` is kept.
    fn push(&mut self, pos: u64, bytes: &[u8], kept: Kept) -> Result<()> {
        debug_assert!(self.file.is_some() || pos == self.len);
        if self.file.is_none() {
            if let Kept::Whole = kept {
                return self.add(bytes, false);
            }
            self.start(pos)?;
        }
        match kept {
            Kept::Whole => self.add(bytes, true),
            Kept::Rebuilt(b) => self.add(&b, true),
            Kept::Nothing => Ok(()),
        }
    }

    /// Indexes `b` at the current end and (once started) buffers it, writing full chunks.
    fn add(&mut self, b: &[u8], write: bool) -> Result<()> {
        if self.len + b.len() as u64 > SEGMENT_BYTES_MAX {
            // Rebuilt batches stored uncompressed can outgrow the segment they were in.
            return Err(LogError::Compaction {
                offset: self.base,
                reason: format!(
                    "its rewrite would pass {SEGMENT_BYTES_MAX} bytes (index positions are 32-bit)"
                ),
            });
        }
        if let Ok(h) = BatchHeader::parse(b) {
            let rel = u32::try_from(h.base_offset as u64 - self.base).unwrap_or(u32::MAX);
            let interval = self.log.config().index_interval_bytes;
            self.idx
                .add(rel, self.len, b.len() as u64, h.max_timestamp, interval);
        }
        self.len += b.len() as u64;
        if write {
            self.buf.extend_from_slice(b);
            if self.buf.len() >= REWRITE_CHUNK_BYTES {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Creates the new file and copies the old segment's unchanged bytes before `pos` into it.
    fn start(&mut self, pos: u64) -> Result<()> {
        let storage: &dyn Storage = self.log.storage.as_ref();
        let file = storage.create(&self.tmp).map_err(self.io())?;
        file.append(&segment::header_bytes()).map_err(self.io())?;
        let mut chunk = vec![0u8; REWRITE_CHUNK_BYTES];
        let mut at = HEADER_BYTES;
        while at < pos {
            let n = REWRITE_CHUNK_BYTES.min((pos - at) as usize);
            disk::read_exact_at(self.old.as_ref(), at, &mut chunk[..n])
                .map_err(|e| LogError::io(format!("read {}", segment::log_name(self.base)), e))?;
            file.append(&chunk[..n]).map_err(self.io())?;
            at += n as u64;
        }
        self.file = Some(file);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if let Some(f) = &self.file {
            f.append(&self.buf).map_err(self.io())?;
        }
        self.buf.clear();
        Ok(())
    }

    fn abandon(&mut self) {
        self.abandoned = true;
    }

    /// The synced new file, its indexes and length; `None` when nothing was removed or the rewrite
    /// was abandoned (its file, if any, removed).
    fn finish(&mut self) -> Result<Option<Rewritten>> {
        if self.abandoned {
            if self.file.take().is_some() {
                let _ = self.log.storage.remove(&self.tmp);
            }
            return Ok(None);
        }
        if self.file.is_none() {
            return Ok(None);
        }
        self.flush()?;
        let Some(file) = self.file.take() else {
            return Ok(None);
        };
        file.sync().map_err(self.io())?;
        let idx = std::mem::replace(&mut self.idx, Indexes::new(HEADER_BYTES));
        Ok(Some((file, idx, self.len)))
    }
}

/// Calls `f(key, offset)` for every keyed record of a non-transactional data batch (a record of
/// a transaction that may abort must not make an earlier committed value obsolete), inflating a
/// compressed one with `codec` (a batch that cannot be read whole maps nothing: older values of
/// its keys stay).
pub fn for_each_keyed(bytes: &[u8], codec: Option<&dyn Codec>, mut f: impl FnMut(&[u8], u64)) {
    let Ok(h) = BatchHeader::parse(bytes) else {
        return;
    };
    if h.is_control() || h.is_transactional() {
        return;
    }
    let section = records_section(&h, bytes, codec);
    let Some(section) = section.filter(|s| readable(&h, s)) else {
        return;
    };
    for r in Records::new(&section).flatten() {
        if let Some(key) = r.key {
            f(key, h.base_offset as u64 + r.offset_delta as u64);
        }
    }
}
