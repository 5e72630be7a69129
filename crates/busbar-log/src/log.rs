//! A partition log: append with group commit, read, time look-up, roll, checkpoint, close.
//!
//! Locking: one `Mutex<State>` guards the segment list and all positions; appends write under it
//! (so offsets and bytes are in the same order), readers take it only to snapshot what to read.
//! Nothing fsyncs while holding it but `close`: a roll only creates the new file and switches to
//! it, leaving the old segment's bytes and the new directory entry to the next sync, and every
//! sync and checkpoint runs outside the lock (`sync.rs`). Lock order: `clean` → `state` → `ckpt`
//! (the checkpoint writer's mutex, taken alone by checkpoints and under `state` only by `close`).
//! Details and the list of what holds which lock during I/O: `docs/ARCHITECTURE.md`.

use crate::batch::{self, BatchHeader, Records, HEADER_BYTES as BATCH_HEADER_BYTES};
use crate::cache::SegmentCache;
use crate::compact::CleanState;
use crate::config::{LogConfig, SyncPolicy};
use crate::disk::{File, Storage};
use crate::error::{BatchError, LogError, Result};
use crate::index::Indexes;
use crate::recovery::{self, RecoveryReport};
use crate::segment::{self, Cursor, Expect, Segment, HEADER_BYTES};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};

/// Where an appended batch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: u64,
    pub last_offset: u64,
}

/// Batches answered by [`Log::read`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole stored batches, back to back.
    pub data: Vec<u8>,
    /// Next offset to be written that readers may see.
    pub high_watermark: u64,
    pub log_start: u64,
}

/// A snapshot of the log's positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    pub log_start: u64,
    pub high_watermark: u64,
    /// Next offset the log will assign (may exceed the high watermark while a sync runs).
    pub next_offset: u64,
    pub segments: usize,
    pub size_bytes: u64,
    pub epoch: u32,
    /// A failed write or fsync took the log offline: it refuses writes until reopened.
    pub offline: bool,
}

pub(crate) struct State {
    pub sealed: Vec<Arc<Segment>>,
    pub active: Arc<Segment>,
    /// The active segment's file (also held by `active`): appends use it without a lock of its own.
    pub active_file: Arc<dyn File>,
    pub active_index: Indexes,
    pub active_created_ms: i64,
    pub next_offset: u64,
    pub log_start: u64,
    pub epoch: u32,
    /// Bytes written since open (a sync ticket) and bytes known synced.
    pub written: u64,
    pub synced: u64,
    pub high_watermark: u64,
    /// Bytes of the active segment readers may see.
    pub visible: u64,
    pub syncing: bool,
    pub last_sync_ms: i64,
    pub since_checkpoint: u64,
    pub failed: Option<String>,
    pub closed: bool,
    /// Sequence number of the latest checkpoint started (see `Log::ckpt`).
    pub ckpt_seq: u64,
    /// A periodic checkpoint is running outside the lock.
    pub checkpointing: bool,
    /// A delete-records or retention pass is writing the checkpoint of a new log start: periodic
    /// checkpoints (which would record the old one) are skipped meanwhile.
    pub moving_start: bool,
    /// Sealed segments rolled since the last checkpoint, oldest first (a suffix of `sealed`).
    pub pending: Vec<Pending>,
    /// A roll created a segment file whose directory entry is not yet synced.
    pub dir_dirty: bool,
    /// Rolls since open: tells a sync whether a roll happened after its snapshot.
    pub rolls: u64,
}

/// A segment sealed by a roll that is not yet covered by a checkpoint: its bytes may not be synced
/// yet (the next sync does that, outside the lock) and its index files are not written yet (the
/// next checkpoint does that). Retention and compaction leave it alone.
pub(crate) struct Pending {
    pub seg: Arc<Segment>,
    /// Held open until the sync: the cache may close the sealed segment's own handle.
    pub file: Arc<dyn File>,
    pub idx: Arc<Indexes>,
    /// Bytes readers may see while `synced` is false.
    pub visible: u64,
    pub synced: bool,
}

impl State {
    /// Where reads of `seg` stop: a sealed segment whose bytes are not synced yet is read only as
    /// far as they were published.
    pub(crate) fn read_end(&self, seg: &Arc<Segment>) -> u64 {
        if Arc::ptr_eq(seg, &self.active) {
            return self.visible;
        }
        match self.pending.iter().find(|p| Arc::ptr_eq(&p.seg, seg)) {
            Some(p) if !p.synced => p.visible,
            _ => seg.len(),
        }
    }

    /// True when `base` is a segment rolled since the last checkpoint.
    pub(crate) fn is_pending(&self, base: u64) -> bool {
        self.pending.iter().any(|p| p.seg.base == base)
    }
}

/// An append-only log of record batches in one directory.
pub struct Log {
    pub(crate) storage: Arc<dyn Storage>,
    /// The shared cache of sealed segments' files and indexes (from the config at open).
    pub(crate) cache: Arc<SegmentCache>,
    config: RwLock<Arc<LogConfig>>,
    pub(crate) state: Mutex<State>,
    pub(crate) synced_cv: Condvar,
    /// Serialises writes of the checkpoint and of index files of the active and rolled segments;
    /// holds the sequence number of the newest one written, so an older snapshot is never written
    /// over a newer one. Taken alone (checkpoints) or after `state` (`close`), never before it.
    pub(crate) ckpt: Mutex<u64>,
    /// Serialises cleaning passes and `close`; holds what compaction remembers between passes.
    pub(crate) clean: Mutex<CleanState>,
    /// Set by `close` before it waits for `clean`: a running pass stops at its next segment.
    closing: AtomicBool,
    pub(crate) damage: AtomicU64,
    report: RecoveryReport,
}

impl Log {
    /// Opens (recovering if needed) or creates the log in `storage`.
    pub fn open(storage: Arc<dyn Storage>, config: LogConfig) -> Result<Self> {
        config.validate()?;
        let (state, report) = recovery::recover(&storage, &config)?;
        Ok(Self {
            storage,
            cache: config.segment_cache.clone(),
            config: RwLock::new(Arc::new(config)),
            state: Mutex::new(state),
            synced_cv: Condvar::new(),
            ckpt: Mutex::new(0),
            clean: Mutex::new(CleanState::default()),
            closing: AtomicBool::new(false),
            damage: AtomicU64::new(report.damaged_segments.len() as u64),
            report,
        })
    }

    /// What recovery did when this log was opened.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.report
    }

    /// The log's configuration now.
    pub fn config(&self) -> Arc<LogConfig> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the configuration (retention, segment size, sync policy…). Takes effect for the
    /// next append, roll and cleaning pass; nothing already stored is rewritten.
    pub fn set_config(&self, config: LogConfig) -> Result<()> {
        config.validate()?;
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        Ok(())
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Damaged ranges found so far (at recovery and by reads). Never reset: an alert signal.
    pub fn damage_count(&self) -> u64 {
        self.damage.load(Ordering::SeqCst)
    }

    /// Positions and sizes now.
    pub fn stats(&self) -> LogStats {
        let st = self.lock();
        LogStats {
            log_start: st.log_start,
            high_watermark: st.high_watermark,
            next_offset: st.next_offset,
            segments: st.sealed.len() + 1,
            size_bytes: st.sealed.iter().map(|s| s.len()).sum::<u64>() + st.active_file.len(),
            epoch: st.epoch,
            offline: st.failed.is_some(),
        }
    }

    /// Validates `batch`, assigns its offsets (patching base offset and epoch in place) and stores it.
    /// Returns once the bytes are as durable as the sync policy promises. On error nothing is
    /// acknowledged, and a refused batch wrote nothing.
    pub fn append(&self, batch: &mut [u8]) -> Result<Appended> {
        let (appended, ticket) = self.append_start(batch)?;
        if let Some(t) = ticket {
            self.wait_durable(t)?;
        }
        Ok(appended)
    }

    /// The first half of [`Log::append`]: validates and writes the batch (in the order calls
    /// arrive) and answers its offsets, plus, under the `batch` policy, a ticket to pass to
    /// [`Log::wait_durable`] before acknowledging. Writes of later calls may proceed meanwhile, and
    /// one fsync then covers them all.
    pub fn append_start(&self, batch: &mut [u8]) -> Result<(Appended, Option<u64>)> {
        let cfg = self.config();
        let limit = cfg
            .batch_bytes_max
            .min((cfg.segment_bytes - HEADER_BYTES) as usize);
        let header = batch::validate_new(batch, limit)?;
        self.append_checked(batch, &header, None)
    }

    /// A follower's append, for a log opened with [`LogConfig::copied`]: stores `batch`, read
    /// from the log it copies, at the offsets written in it. Its base offset may lie past this
    /// log's end (a compacted source has gaps; the offsets between are left empty) but not
    /// before it. It is checked as a stored batch is (compaction may have removed records, so
    /// its record count may be below its offset span). Otherwise as [`Log::append_start`].
    pub fn append_copied(&self, batch: &mut [u8]) -> Result<(Appended, Option<u64>)> {
        let cfg = self.config();
        if !cfg.copied {
            return Err(LogError::Config(
                "append_copied needs a log opened with `copied`".into(),
            ));
        }
        let limit = cfg
            .batch_bytes_max
            .min((cfg.segment_bytes - HEADER_BYTES) as usize);
        if batch.len() > limit {
            return Err(BatchError::TooLarge {
                size: batch.len(),
                limit,
            }
            .into());
        }
        let header = batch::validate_stored(batch)?;
        if header.base_offset < 0 {
            return Err(BatchError::Header(format!(
                "base offset {} is negative",
                header.base_offset
            ))
            .into());
        }
        self.append_checked(batch, &header, Some(header.base_offset as u64))
    }

    /// Moves the end of a log opened with [`LogConfig::copied`] to `offset` when it ends
    /// before it, writing nothing: its source holds nothing between (compaction removed it).
    /// Reads there find the next batch appended. Not durable by itself: a log reopened after a
    /// crash ends after its last batch again (the copy reads the gap from its source again).
    pub fn skip_to(&self, offset: u64) -> Result<()> {
        if !self.config().copied {
            return Err(LogError::Config(
                "skip_to needs a log opened with `copied`".into(),
            ));
        }
        let mut st = self.lock();
        Self::check_usable(&st)?;
        if offset > st.next_offset {
            let everything_visible = st.high_watermark == st.next_offset;
            st.next_offset = offset;
            if everything_visible {
                st.high_watermark = offset;
            }
        }
        Ok(())
    }

    /// Writes a checked batch at the log's end, or (`at`) at its own offset at or past it.
    fn append_checked(
        &self,
        batch: &mut [u8],
        header: &BatchHeader,
        at: Option<u64>,
    ) -> Result<(Appended, Option<u64>)> {
        let cfg = self.config();
        let mut st = self.lock();
        let rolls = st.rolls;
        let appended = self.write_locked(&mut st, batch, header, at)?;
        // A roll left the old segment's bytes and the new file's directory entry unsynced: under
        // `batch` the caller's wait syncs them; otherwise this append does, after the lock.
        let rolled = st.rolls != rolls;
        let due = match cfg.sync {
            SyncPolicy::Batch => return Ok((appended, Some(st.written))),
            SyncPolicy::Interval(ms) => rolled || cfg.clock.now_ms() - st.last_sync_ms >= ms as i64,
            SyncPolicy::Never => rolled,
        };
        st.high_watermark = st.next_offset;
        st.visible = st.active_file.len();
        drop(st);
        if due {
            self.sync()?;
        }
        Ok((appended, None))
    }

    /// Bytes written since the log was opened: the ticket [`Log::append_start`] would hand out now.
    pub fn written(&self) -> u64 {
        self.lock().written
    }

    /// Blocks until what was written up to `ticket` (from [`Log::append_start`]) is durable.
    pub fn wait_durable(&self, ticket: u64) -> Result<()> {
        self.wait_synced(ticket)
    }

    pub(crate) fn check_usable(st: &State) -> Result<()> {
        if let Some(why) = &st.failed {
            return Err(LogError::Failed(why.clone()));
        }
        if st.closed {
            return Err(LogError::Closed);
        }
        Ok(())
    }

    /// Maintenance (retention, delete-records, compaction, tick, checkpoints) runs only on a log
    /// that is online and not closed or being closed. Cleaning passes call this before they start,
    /// between segments and before they publish anything.
    pub(crate) fn check_maintenance(&self, st: &State) -> Result<()> {
        Self::check_usable(st)?;
        if self.closing.load(Ordering::SeqCst) {
            return Err(LogError::Closed);
        }
        Ok(())
    }

    /// [`Log::check_maintenance`] taking the state lock for the check only.
    pub(crate) fn check_maintenance_now(&self) -> Result<()> {
        self.check_maintenance(&self.lock())
    }

    /// Writes a checked batch at the log's end, or (`at`, a copied log's append) at its own
    /// offset at or past the end.
    fn write_locked(
        &self,
        st: &mut State,
        batch: &mut [u8],
        h: &BatchHeader,
        at: Option<u64>,
    ) -> Result<Appended> {
        Self::check_usable(st)?;
        let was = st.next_offset;
        let at = at.unwrap_or(was);
        if at < was {
            return Err(LogError::OffsetOutOfRange {
                offset: at,
                start: st.log_start,
                end: was,
            });
        }
        self.write_at(st, batch, h, at)
    }

    /// Writes a checked batch at offset `at` (the end, or past it), rolling first when due. A
    /// roll starts the new segment at the end before the gap, so segments follow on exactly
    /// (recovery cuts the log at a segment that does not) and the gap lies inside a segment,
    /// unless the gap is more than 32-bit relative offsets reach: then the batch starts a
    /// segment of its own.
    fn write_at(
        &self,
        st: &mut State,
        batch: &mut [u8],
        h: &BatchHeader,
        at: u64,
    ) -> Result<Appended> {
        let len = batch.len() as u64;
        let now = self.config().clock.now_ms();
        let has_data = st.active_file.len() > HEADER_BYTES;
        let too_old = now - st.active_created_ms >= self.config().segment_ms;
        // A damaged active segment is sealed so new batches land where they can be served.
        let damaged = st.active.damaged_from().is_some();
        // Index entries hold offsets relative to the segment base in 32 bits (as Kafka's do).
        let rel_end = |st: &State| at + h.last_offset_delta as u64 - st.active.base;
        let full = st.active_file.len() + len > self.config().segment_bytes
            || rel_end(st) > u32::MAX as u64;
        if has_data && (full || too_old || damaged) {
            self.roll_locked(st)?;
        }
        if rel_end(st) > u32::MAX as u64 {
            let was = std::mem::replace(&mut st.next_offset, at);
            if let Err(e) = self.roll_locked(st) {
                st.next_offset = was; // nothing changed
                return Err(e);
            }
        }
        let base_offset = at;
        batch::patch(batch, base_offset, st.epoch);
        let file = st.active_file.clone();
        let pos = file.len();
        if let Err(e) = file.append(batch) {
            if let Err(t) = file.truncate(pos) {
                st.failed = Some(format!("write failed ({e}) and could not be undone ({t})"));
            }
            return Err(LogError::io(
                format!(
                    "append to {}",
                    self.storage.describe(&segment::log_name(st.active.base))
                ),
                e,
            ));
        }
        let rel = (base_offset - st.active.base) as u32;
        st.active_index.add(
            rel,
            pos,
            len,
            h.max_timestamp,
            self.config().index_interval_bytes,
        );
        st.next_offset = base_offset + h.last_offset_delta as u64 + 1;
        st.written += len;
        st.since_checkpoint += len;
        debug_assert!(st.next_offset > base_offset);
        Ok(Appended {
            base_offset,
            last_offset: st.next_offset - 1,
        })
    }

    pub(crate) fn fail(st: &mut State, what: &str, e: LogError) -> LogError {
        let why = format!("{what}: {e}");
        st.failed = Some(why.clone());
        LogError::Failed(why)
    }

    /// Fails the log for `e`, unless `e` is a transient lack of resources (see [`is_transient`]):
    /// that is answered as it is and the log stays online.
    pub(crate) fn fail_unless_transient(st: &mut State, what: &str, e: LogError) -> LogError {
        if is_transient(&e) {
            return e;
        }
        Self::fail(st, what, e)
    }

    /// Seals the active segment and starts a new one (protocol in `docs/log-format.md`), with no
    /// fsync: it creates the new file with its header and switches to it. The old segment becomes
    /// [`Pending`]: the next sync makes its bytes, the new directory entry and the new file durable
    /// (in that order, outside the lock) before anything after them is acknowledged or visible,
    /// and the next checkpoint writes its index files.
    ///
    /// Nothing in `st` changes until the new file exists with its header, so a roll that fails
    /// leaves the log as it was: running out of file descriptors (EMFILE, ENFILE) only answers the
    /// error, and the next append tries the roll again (re-creating the new file, which may exist
    /// empty already); any other I/O error fails the log.
    pub(crate) fn roll_locked(&self, st: &mut State) -> Result<()> {
        let new = match Segment::create(&self.storage, &self.cache, st.next_offset) {
            Ok(s) => s,
            Err(e) => return Err(Self::fail_unless_transient(st, "segment creation", e)),
        };
        let new_file = new.file()?;
        let old = std::mem::replace(&mut st.active, Arc::new(new));
        let old_file = std::mem::replace(&mut st.active_file, new_file);
        let idx = std::mem::replace(&mut st.active_index, Indexes::new(HEADER_BYTES));
        old.seal(Some(idx.clone()));
        st.sealed.push(old.clone());
        st.pending.push(Pending {
            seg: old,
            file: old_file,
            idx: Arc::new(idx),
            visible: st.visible,
            synced: false,
        });
        st.dir_dirty = true;
        st.rolls += 1;
        st.active_created_ms = self.config().clock.now_ms();
        st.visible = HEADER_BYTES;
        // The next sync also writes a checkpoint, so recovery does not scan the old segment.
        st.since_checkpoint = st
            .since_checkpoint
            .max(self.config().checkpoint_interval_bytes);
        Ok(())
    }

    /// Clean shutdown: syncs, writes indexes and a clean checkpoint so the next open scans nothing.
    ///
    /// A running cleaning pass is told to stop at its next segment and `close` waits for it (the
    /// `clean` mutex), so no maintenance writes a file into the directory once `close` returns.
    /// The log is closed even when it is offline or the checkpoint fails (that error is answered);
    /// every later operation answers [`LogError::Closed`].
    pub fn close(&self) -> Result<()> {
        self.closing.store(true, Ordering::SeqCst);
        let _clean = self.clean.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = self.lock();
        let res = self.checkpoint_locked(&mut st, true);
        st.closed = true;
        self.synced_cv.notify_all();
        res
    }

    /// Whole stored batches starting with the one that contains `offset`, up to `max_bytes` (at
    /// least one batch, however large), from one segment. Empty at the high watermark.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<ReadResult> {
        let mut offset = offset;
        loop {
            let (seg, start, end, hw, log_start, is_last) = self.locate(offset)?;
            let Some(seg) = seg else {
                return Ok(ReadResult {
                    data: Vec::new(),
                    high_watermark: hw,
                    log_start,
                });
            };
            let data = self.read_segment(&seg, start, end, offset, max_bytes)?;
            if !data.is_empty() || is_last {
                return Ok(ReadResult {
                    data,
                    high_watermark: hw,
                    log_start,
                });
            }
            // Nothing at or after `offset` in this segment (compaction gap): go to the next one.
            match self.next_segment_base(seg.base) {
                Some(b) => offset = offset.max(b),
                None => {
                    return Ok(ReadResult {
                        data,
                        high_watermark: hw,
                        log_start,
                    })
                }
            }
        }
    }

    /// The base offset of the first segment starting after `offset`: where a reader skips to past
    /// a damaged range it cannot read.
    pub fn next_segment_base(&self, offset: u64) -> Option<u64> {
        let st = self.lock();
        let bases = st
            .sealed
            .iter()
            .chain(std::iter::once(&st.active))
            .map(|s| s.base);
        bases.into_iter().find(|b| *b > offset)
    }

    /// Finds the segment holding `offset`, the position to start from and the visible end.
    #[allow(clippy::type_complexity)]
    fn locate(&self, offset: u64) -> Result<(Option<Arc<Segment>>, u64, u64, u64, u64, bool)> {
        let st = self.lock();
        if st.closed {
            return Err(LogError::Closed);
        }
        let (hw, log_start) = (st.high_watermark, st.log_start);
        if offset < log_start || offset > hw {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: log_start,
                end: hw,
            });
        }
        if offset == hw {
            return Ok((None, 0, 0, hw, log_start, true));
        }
        if offset >= st.active.base {
            let rel = (offset - st.active.base) as u32;
            let start = st
                .active_index
                .position_for(rel)
                .map_or(HEADER_BYTES, |(_, p)| p as u64);
            return Ok((
                Some(st.active.clone()),
                start,
                st.visible,
                hw,
                log_start,
                true,
            ));
        }
        let i = st
            .sealed
            .partition_point(|s| s.base <= offset)
            .saturating_sub(1);
        let seg = st.sealed[i].clone();
        let end = st.read_end(&seg);
        drop(st);
        let idx = seg.sealed_indexes(self.config().index_interval_bytes)?;
        let rel = (offset - seg.base) as u32;
        let start = idx
            .position_for(rel)
            .map_or(HEADER_BYTES, |(_, p)| p as u64);
        Ok((Some(seg), start, end, hw, log_start, false))
    }

    fn read_segment(
        &self,
        seg: &Segment,
        start: u64,
        end: u64,
        offset: u64,
        max_bytes: usize,
    ) -> Result<Vec<u8>> {
        let end = seg.damaged_from().map_or(end, |d| d.min(end));
        let file = seg.file()?;
        let mut cursor = Cursor::new(file.as_ref(), start, end, Expect::AtLeast(seg.base));
        let mut out = Vec::new();
        loop {
            match cursor.next_batch() {
                Ok(Some((_, bytes))) => {
                    let h = BatchHeader::parse(bytes).expect("verified batch");
                    if (h.last_offset() as u64) < offset {
                        continue;
                    }
                    if !out.is_empty() && out.len() + bytes.len() > max_bytes {
                        break;
                    }
                    out.extend_from_slice(bytes);
                }
                Ok(None) => break,
                Err((pos, reason)) => {
                    seg.mark_damaged(pos);
                    self.damage.fetch_add(1, Ordering::SeqCst);
                    if out.is_empty() {
                        return Err(LogError::Corrupt {
                            file: self.storage.describe(&segment::log_name(seg.base)),
                            position: pos,
                            reason,
                        });
                    }
                    break;
                }
            }
        }
        // Every valid batch before the damage ends below `offset`: what was asked for is damaged.
        if let Some(d) = seg.damaged_from().filter(|_| out.is_empty()) {
            return Err(LogError::Corrupt {
                file: self.storage.describe(&segment::log_name(seg.base)),
                position: d,
                reason: "range is damaged".into(),
            });
        }
        Ok(out)
    }

    /// The first offset whose record timestamp is at or after `ts`, or `None` when no such record.
    /// Precise to the record for uncompressed batches, to the batch for compressed ones.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<u64>> {
        self.offset_for_timestamp_from(ts, 0)
    }

    /// [`Log::offset_for_timestamp`] among offsets at or after `from`: a caller that decoded a
    /// compressed batch and found its matching record below the log start (or below `from`)
    /// goes on from the batch's next offset.
    pub fn offset_for_timestamp_from(&self, ts: i64, from: u64) -> Result<Option<u64>> {
        let (segs, ends, active_idx, log_start) = {
            let st = self.lock();
            let mut segs = st.sealed.clone();
            segs.push(st.active.clone());
            let ends: Vec<u64> = segs.iter().map(|s| st.read_end(s)).collect();
            (segs, ends, Arc::new(st.active_index.clone()), st.log_start)
        };
        let min = log_start.max(from);
        let interval = self.config().index_interval_bytes;
        let last = segs.len() - 1;
        for (i, seg) in segs.iter().enumerate() {
            // A sealed segment's max timestamp is kept per segment (read from its time index file
            // once), so segments that cannot hold `ts` are skipped without loading their indexes.
            let end = ends[i];
            if segs.get(i + 1).is_some_and(|next| next.base <= min) {
                continue;
            }
            let idx = if i == last {
                active_idx.clone()
            } else if seg.max_timestamp(interval)? < ts {
                continue;
            } else {
                seg.sealed_indexes(interval)?
            };
            if idx.segment_max_timestamp() < ts {
                continue;
            }
            let position = |rel: u32| {
                idx.position_for(rel)
                    .map_or(HEADER_BYTES, |(_, p)| p as u64)
            };
            let from_rel = min.saturating_sub(seg.base).min(u64::from(u32::MAX)) as u32;
            let start = position(idx.scan_start_for_time(ts)).max(position(from_rel));
            let end = seg.damaged_from().map_or(end, |d| d.min(end));
            let file = seg.file()?;
            let mut cursor = Cursor::new(file.as_ref(), start, end, Expect::AtLeast(seg.base));
            while let Ok(Some((_, bytes))) = cursor.next_batch() {
                if let Some(o) = first_at_or_after(bytes, ts, min) {
                    return Ok(Some(o));
                }
            }
        }
        Ok(None)
    }
}

/// True for an error that says the process ran out of a resource for a moment (EMFILE, ENFILE:
/// no file descriptor) rather than that the disk failed: the operation is answered with it and
/// retried later, and the log stays online.
pub(crate) fn is_transient(e: &LogError) -> bool {
    matches!(e, LogError::Io { source, .. } if matches!(source.raw_os_error(), Some(23 | 24)))
}

/// The first offset at or above `min` in the batch whose timestamp is at or after `ts`.
fn first_at_or_after(bytes: &[u8], ts: i64, min: u64) -> Option<u64> {
    let h = BatchHeader::parse(bytes).ok()?;
    if h.max_timestamp < ts || (h.last_offset() as u64) < min {
        return None;
    }
    if h.compression() != 0 {
        return Some((h.base_offset as u64).max(min));
    }
    Records::new(&bytes[BATCH_HEADER_BYTES..])
        .filter_map(|r| r.ok())
        .map(|r| {
            (
                h.base_timestamp.wrapping_add(r.timestamp_delta),
                h.base_offset as u64 + r.offset_delta as u64,
            )
        })
        .find(|(t, o)| *t >= ts && *o >= min)
        .map(|(_, o)| o)
}

impl Drop for Log {
    fn drop(&mut self) {
        // Dropping without `close` is a crash as far as the files know: no clean flag is written.
        self.synced_cv.notify_all();
    }
}
