//! A partition log: append with group commit, read, time look-up, roll, checkpoint, close.
//!
//! Locking: one `Mutex<State>` guards the segment list and all positions; appends write under it
//! (so offsets and bytes are in the same order), readers take it only to snapshot what to read.
//! The group-commit sync and the periodic checkpoint run outside the lock; rolls, `close` and the
//! checkpoints of cleaning passes sync under it. Lock order: `clean` → `state` → `ckpt` (the
//! checkpoint writer's mutex, also taken alone by the periodic checkpoint). Details and the list
//! of what holds which lock during I/O: `docs/ARCHITECTURE.md`.

use crate::batch::{self, BatchHeader, Records, HEADER_BYTES as BATCH_HEADER_BYTES};
use crate::cache::SegmentCache;
use crate::checkpoint::Checkpoint;
use crate::config::{LogConfig, SyncPolicy};
use crate::disk::{File, Storage};
use crate::error::{LogError, Result};
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
}

/// An append-only log of record batches in one directory.
pub struct Log {
    pub(crate) storage: Arc<dyn Storage>,
    /// The shared cache of sealed segments' files and indexes (from the config at open).
    pub(crate) cache: Arc<SegmentCache>,
    config: RwLock<Arc<LogConfig>>,
    pub(crate) state: Mutex<State>,
    synced_cv: Condvar,
    /// Serialises writes of the checkpoint and of the active segment's index files; holds the
    /// sequence number of the newest one written, so an older snapshot is never written over a
    /// newer one. Taken after `state` (rolls, close, cleaning passes) or alone (the periodic
    /// checkpoint), never before `state`.
    ckpt: Mutex<u64>,
    pub(crate) clean: Mutex<()>,
    /// Set by `close` before it waits for `clean`: a running pass stops at its next segment.
    closing: AtomicBool,
    pub(crate) damage: AtomicU64,
    report: RecoveryReport,
}

struct SyncSnapshot {
    file: Arc<dyn File>,
    written: u64,
    next_offset: u64,
    segment: u64,
    len: u64,
}

impl SyncSnapshot {
    /// What a sync of the active segment covers, as of `st`.
    fn of(st: &State) -> Self {
        SyncSnapshot {
            file: st.active_file.clone(),
            written: st.written,
            next_offset: st.next_offset,
            segment: st.active.base,
            len: st.active_file.len(),
        }
    }
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
            clean: Mutex::new(()),
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
        let mut st = self.lock();
        let appended = self.write_locked(&mut st, batch, &header)?;
        match cfg.sync {
            SyncPolicy::Batch => return Ok((appended, Some(st.written))),
            SyncPolicy::Interval(ms) => {
                st.high_watermark = st.next_offset;
                st.visible = st.active_file.len();
                let due = cfg.clock.now_ms() - st.last_sync_ms >= ms as i64;
                drop(st);
                if due {
                    self.sync()?;
                }
            }
            SyncPolicy::Never => {
                st.high_watermark = st.next_offset;
                st.visible = st.active_file.len();
            }
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

    fn check_usable(st: &State) -> Result<()> {
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

    fn write_locked(&self, st: &mut State, batch: &mut [u8], h: &BatchHeader) -> Result<Appended> {
        Self::check_usable(st)?;
        let len = batch.len() as u64;
        let now = self.config().clock.now_ms();
        let has_data = st.active_file.len() > HEADER_BYTES;
        let too_old = now - st.active_created_ms >= self.config().segment_ms;
        // A damaged active segment is sealed so new batches land where they can be served.
        let damaged = st.active.damaged_from().is_some();
        // Index entries hold offsets relative to the segment base in 32 bits (as Kafka's do).
        let rel_end = st.next_offset + h.last_offset_delta as u64 - st.active.base;
        let full =
            st.active_file.len() + len > self.config().segment_bytes || rel_end > u32::MAX as u64;
        if has_data && (full || too_old || damaged) {
            self.roll_locked(st)?;
        }
        let base_offset = st.next_offset;
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

    /// Blocks until everything written before `ticket` is synced (group commit).
    fn wait_synced(&self, ticket: u64) -> Result<()> {
        let mut st = self.lock();
        loop {
            if let Some(why) = &st.failed {
                return Err(LogError::Failed(why.clone()));
            }
            if st.synced >= ticket {
                return Ok(());
            }
            if st.syncing {
                st = self.synced_cv.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st = self.run_sync(st)?;
        }
    }

    /// Becomes the syncer: syncs the active segment outside the lock, then publishes the result.
    fn run_sync<'a>(&'a self, mut st: MutexGuard<'a, State>) -> Result<MutexGuard<'a, State>> {
        let snap = SyncSnapshot::of(&st);
        st.syncing = true;
        drop(st);
        let res = snap.file.sync();
        let mut st = self.lock();
        st.syncing = false;
        self.synced_cv.notify_all();
        if let Err(e) = res {
            let why = format!(
                "fdatasync of {} failed: {e}",
                self.storage.describe(&segment::log_name(snap.segment))
            );
            st.failed = Some(why.clone());
            return Err(LogError::Failed(why));
        }
        if let Some(why) = &st.failed {
            // Another operation failed meanwhile: a sync that "succeeds" after a failed one
            // proves nothing, so nothing is published.
            return Err(LogError::Failed(why.clone()));
        }
        st.last_sync_ms = self.config().clock.now_ms();
        if snap.written > st.synced {
            st.synced = snap.written;
            st.high_watermark = st.high_watermark.max(snap.next_offset);
            if st.active.base == snap.segment {
                st.visible = st.visible.max(snap.len);
            }
        }
        if st.since_checkpoint >= self.config().checkpoint_interval_bytes && !st.checkpointing {
            drop(st);
            match self.checkpoint_unlocked() {
                // The appends this sync covers are durable; the checkpoint is retried later.
                Err(e) if is_transient(&e) => {}
                r => r?,
            }
            st = self.lock();
        }
        Ok(st)
    }

    fn ckpt_lock(&self) -> MutexGuard<'_, u64> {
        self.ckpt.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The periodic checkpoint (every `checkpoint_interval_bytes`), run without holding `state`
    /// during its I/O: a snapshot under `state`, then the active segment's fdatasync, its index
    /// files and the checkpoint (under `ckpt` only), then the result published under `state`.
    fn checkpoint_unlocked(&self) -> Result<()> {
        let (snap, idx, log_start, epoch, seq, bytes) = {
            let mut st = self.lock();
            self.check_maintenance(&st)?;
            if st.checkpointing {
                return Ok(());
            }
            st.checkpointing = true;
            st.ckpt_seq += 1;
            let bytes = std::mem::take(&mut st.since_checkpoint);
            let snap = SyncSnapshot::of(&st);
            let idx = st.active_index.clone();
            (snap, idx, st.log_start, st.epoch, st.ckpt_seq, bytes)
        };
        let storage = self.storage.as_ref();
        let synced = snap.file.sync();
        let res = match synced {
            Err(e) => Err(LogError::io("sync at checkpoint", e)),
            // A sync that failed elsewhere meanwhile makes this one prove nothing.
            Ok(()) => self.check_maintenance_now().and_then(|_| {
                let mut stored = self.ckpt_lock();
                if seq <= *stored {
                    return Ok(()); // a roll or a later checkpoint superseded this one
                }
                segment::write_indexes(storage, snap.segment, &idx)?;
                Checkpoint {
                    clean: false,
                    epoch,
                    segment: snap.segment,
                    position: snap.len,
                    next_offset: snap.next_offset,
                    log_start,
                }
                .store(storage)?;
                *stored = seq;
                Ok(())
            }),
        };
        let mut st = self.lock();
        st.checkpointing = false;
        match res {
            Ok(()) if st.failed.is_none() => {
                if snap.written > st.synced {
                    st.synced = snap.written;
                    st.high_watermark = st.high_watermark.max(snap.next_offset);
                    if st.active.base == snap.segment {
                        st.visible = st.visible.max(snap.len);
                    }
                }
                Ok(())
            }
            Ok(()) => Err(LogError::Failed(st.failed.clone().unwrap_or_default())),
            Err(LogError::Closed) => Err(LogError::Closed),
            Err(e) if is_transient(&e) || matches!(e, LogError::Failed(_)) => {
                st.since_checkpoint += bytes;
                Err(e)
            }
            Err(e) => Err(Self::fail(&mut st, "checkpoint", e)),
        }
    }

    /// Syncs everything written so far (used by `interval`, `tick` and callers that want it).
    pub fn sync(&self) -> Result<()> {
        let ticket = self.lock().written;
        self.wait_synced(ticket)
    }

    /// Periodic work for the `interval` policy: syncs when the interval has passed. Fails (and
    /// does nothing) on an offline or closed log, whatever the policy.
    pub fn tick(&self) -> Result<()> {
        self.check_maintenance_now()?;
        if let SyncPolicy::Interval(ms) = self.config().sync {
            let st = self.lock();
            let due = st.written > st.synced
                && self.config().clock.now_ms() - st.last_sync_ms >= ms as i64;
            drop(st);
            if due {
                return self.sync();
            }
        }
        Ok(())
    }

    fn fail(st: &mut State, what: &str, e: LogError) -> LogError {
        let why = format!("{what}: {e}");
        st.failed = Some(why.clone());
        LogError::Failed(why)
    }

    /// Fails the log for `e`, unless `e` is a transient lack of resources (see [`is_transient`]):
    /// that is answered as it is and the log stays online.
    fn fail_unless_transient(st: &mut State, what: &str, e: LogError) -> LogError {
        if is_transient(&e) {
            return e;
        }
        Self::fail(st, what, e)
    }

    /// Seals the active segment and starts a new one (protocol in `docs/log-format.md`).
    ///
    /// Nothing in `st` changes until the new segment exists and the directory is synced, so a roll
    /// that fails leaves the log as it was: a failed sync fails the log; running out of file
    /// descriptors (EMFILE, ENFILE) only answers the error, and the next append tries the roll
    /// again (re-creating the new file, which may exist empty already); any other I/O error fails
    /// the log. Once switched, a checkpoint that fails for lack of descriptors is left for the next
    /// sync to write.
    pub(crate) fn roll_locked(&self, st: &mut State) -> Result<()> {
        let storage = self.storage.as_ref();
        let old = st.active.clone();
        if let Err(e) = st.active_file.sync() {
            return Err(Self::fail(st, "sync before roll", LogError::io("sync", e)));
        }
        let indexed = {
            let mut stored = self.ckpt_lock();
            st.ckpt_seq += 1;
            *stored = st.ckpt_seq; // a periodic checkpoint of the old segment is now stale
            segment::write_indexes(storage, old.base, &st.active_index)
        };
        if let Err(e) = indexed {
            return Err(Self::fail_unless_transient(st, "index write at roll", e));
        }
        let new = match Segment::create(&self.storage, &self.cache, st.next_offset) {
            Ok(s) => s,
            Err(e) => return Err(Self::fail_unless_transient(st, "segment creation", e)),
        };
        let new_file = new.file()?;
        if let Err(e) = storage.sync_dir() {
            let e = LogError::io("sync dir", e);
            return Err(Self::fail_unless_transient(st, "directory sync at roll", e));
        }
        let idx = std::mem::replace(&mut st.active_index, Indexes::new(HEADER_BYTES));
        old.seal(Some(idx));
        st.sealed.push(old);
        st.active = Arc::new(new);
        st.active_file = new_file;
        st.active_created_ms = self.config().clock.now_ms();
        st.synced = st.written;
        st.high_watermark = st.next_offset;
        st.visible = HEADER_BYTES;
        match self.checkpoint_locked(st, false) {
            Err(e) if is_transient(&e) => {
                st.since_checkpoint = self.config().checkpoint_interval_bytes;
                Ok(())
            }
            r => r,
        }
    }

    /// Syncs the active segment, writes its index files and a checkpoint at its end. Refused on an
    /// offline or closed log: after a failed fdatasync a later one proves nothing, so nothing more
    /// may be published (high watermark, visible length, checkpoint).
    pub(crate) fn checkpoint_locked(&self, st: &mut State, clean: bool) -> Result<()> {
        Self::check_usable(st)?;
        let storage = self.storage.as_ref();
        let mut stored = self.ckpt_lock();
        st.ckpt_seq += 1;
        let seq = st.ckpt_seq;
        let res = st
            .active_file
            .sync()
            .map_err(|e| LogError::io("sync at checkpoint", e))
            .and_then(|_| segment::write_indexes(storage, st.active.base, &st.active_index))
            .and_then(|_| {
                Checkpoint {
                    clean,
                    epoch: st.epoch,
                    segment: st.active.base,
                    position: st.active_file.len(),
                    next_offset: st.next_offset,
                    log_start: st.log_start,
                }
                .store(storage)
            });
        match res {
            Ok(()) => {
                *stored = seq;
                st.synced = st.written;
                st.high_watermark = st.next_offset;
                st.visible = st.active_file.len();
                st.since_checkpoint = 0;
                Ok(())
            }
            Err(e) => Err(Self::fail_unless_transient(st, "checkpoint", e)),
        }
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
        drop(st);
        let idx = seg.sealed_indexes(self.config().index_interval_bytes)?;
        let rel = (offset - seg.base) as u32;
        let start = idx
            .position_for(rel)
            .map_or(HEADER_BYTES, |(_, p)| p as u64);
        let end = seg.len();
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
        let (segs, active_idx, visible, log_start) = {
            let st = self.lock();
            let mut segs = st.sealed.clone();
            segs.push(st.active.clone());
            (
                segs,
                Arc::new(st.active_index.clone()),
                st.visible,
                st.log_start,
            )
        };
        let interval = self.config().index_interval_bytes;
        let last = segs.len() - 1;
        for (i, seg) in segs.iter().enumerate() {
            // A sealed segment's max timestamp is kept per segment (read from its time index file
            // once), so segments that cannot hold `ts` are skipped without loading their indexes.
            let (idx, end) = if i == last {
                (active_idx.clone(), visible)
            } else if seg.max_timestamp(interval)? < ts {
                continue;
            } else {
                (seg.sealed_indexes(interval)?, seg.len())
            };
            if idx.segment_max_timestamp() < ts {
                continue;
            }
            let rel = idx.scan_start_for_time(ts);
            let start = idx
                .position_for(rel)
                .map_or(HEADER_BYTES, |(_, p)| p as u64);
            let end = seg.damaged_from().map_or(end, |d| d.min(end));
            let file = seg.file()?;
            let mut cursor = Cursor::new(file.as_ref(), start, end, Expect::AtLeast(seg.base));
            while let Ok(Some((_, bytes))) = cursor.next_batch() {
                if let Some(o) = first_at_or_after(bytes, ts, log_start) {
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
                h.base_timestamp + r.timestamp_delta,
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
