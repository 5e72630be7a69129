//! Making the log durable without holding its state lock: group commit, the syncs a roll leaves
//! behind, and checkpoints (periodic, and the ones that move the log start).
//!
//! Every fdatasync and directory sync here runs outside `state`: a snapshot of what to sync is
//! taken under it, the I/O runs with no lock (checkpoint and index files under `ckpt` only), and
//! the result is published under it again, only if the log is still online. What a sync covers, in
//! order: the files of sealed segments rolled since their bytes were last synced, the directory
//! (when a roll created a file since it was last synced), then the active segment. So nothing is
//! acknowledged or made visible before its bytes and the directory entry of its file are durable.
//! Only `close` syncs while holding `state` (shutdown; see `docs/ARCHITECTURE.md`).

use crate::checkpoint::Checkpoint;
use crate::config::SyncPolicy;
use crate::disk::File;
use crate::error::{LogError, Result};
use crate::index::Indexes;
use crate::log::{is_transient, Log, State};
use crate::segment;
use std::sync::{Arc, MutexGuard};

/// What one sync covers, as of the moment it was taken under `state`.
pub(crate) struct SyncSnapshot {
    file: Arc<dyn File>,
    written: u64,
    next_offset: u64,
    segment: u64,
    len: u64,
    /// Sealed segments whose bytes were not known synced: (base, file), oldest first.
    sealed: Vec<(u64, Arc<dyn File>)>,
    /// A roll created a file whose directory entry is not yet synced.
    dir: bool,
    rolls: u64,
}

impl SyncSnapshot {
    pub(crate) fn of(st: &State) -> Self {
        SyncSnapshot {
            file: st.active_file.clone(),
            written: st.written,
            next_offset: st.next_offset,
            segment: st.active.base,
            len: st.active_file.len(),
            sealed: st
                .pending
                .iter()
                .filter(|p| !p.synced)
                .map(|p| (p.seg.base, p.file.clone()))
                .collect(),
            dir: st.dir_dirty,
            rolls: st.rolls,
        }
    }
}

/// What one checkpoint writes, as of its snapshot.
struct CkptSnapshot {
    sync: SyncSnapshot,
    active_index: Indexes,
    /// Sealed segments rolled since the last checkpoint and their indexes (files not written yet).
    sealed_indexes: Vec<(u64, Arc<Indexes>)>,
    log_start: u64,
    epoch: u32,
    seq: u64,
    /// Bytes `since_checkpoint` counted when the snapshot was taken.
    bytes: u64,
}

impl Log {
    /// Runs the syncs `snap` covers, in order, holding no lock.
    fn sync_files(&self, snap: &SyncSnapshot) -> Result<()> {
        let start = std::time::Instant::now();
        let r = self.sync_files_untimed(snap);
        crate::stats::FSYNC_LATENCY.observe(start.elapsed());
        r
    }

    fn sync_files_untimed(&self, snap: &SyncSnapshot) -> Result<()> {
        let describe = |base| self.storage.describe(&segment::log_name(base));
        for (base, file) in &snap.sealed {
            file.sync()
                .map_err(|e| LogError::io(format!("fdatasync of {}", describe(*base)), e))?;
        }
        if snap.dir {
            self.storage
                .sync_dir()
                .map_err(|e| LogError::io("directory sync after a roll", e))?;
        }
        snap.file
            .sync()
            .map_err(|e| LogError::io(format!("fdatasync of {}", describe(snap.segment)), e))
    }

    /// Publishes what a successful sync of `snap` made durable.
    fn publish(st: &mut State, snap: &SyncSnapshot) {
        for p in st.pending.iter_mut() {
            if snap.sealed.iter().any(|(b, _)| *b == p.seg.base) {
                p.synced = true;
            }
            if p.seg.base == snap.segment {
                // Rolled after the snapshot: its synced part becomes readable.
                p.visible = p.visible.max(snap.len);
            }
        }
        if snap.dir && st.rolls == snap.rolls {
            st.dir_dirty = false;
        }
        if snap.written > st.synced {
            st.synced = snap.written;
            st.high_watermark = st.high_watermark.max(snap.next_offset);
            if st.active.base == snap.segment {
                st.visible = st.visible.max(snap.len);
            }
        }
    }

    /// Blocks until everything written before `ticket` is synced (group commit).
    pub(crate) fn wait_synced(&self, ticket: u64) -> Result<()> {
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

    /// Becomes the syncer: syncs outside the lock, then publishes the result.
    ///
    /// A failed fdatasync or directory sync fails the log; a directory sync that finds no file
    /// descriptor (EMFILE) is answered as it is and publishes nothing, and the next sync retries.
    fn run_sync<'a>(&'a self, mut st: MutexGuard<'a, State>) -> Result<MutexGuard<'a, State>> {
        let snap = SyncSnapshot::of(&st);
        st.syncing = true;
        drop(st);
        let res = self.sync_files(&snap);
        let mut st = self.lock();
        st.syncing = false;
        self.synced_cv.notify_all();
        if let Err(e) = res {
            return Err(Self::fail_unless_transient(&mut st, "sync", e));
        }
        if let Some(why) = &st.failed {
            // Another operation failed meanwhile: a sync that "succeeds" after a failed one
            // proves nothing, so nothing is published.
            return Err(LogError::Failed(why.clone()));
        }
        st.last_sync_ms = self.config().clock.now_ms();
        Self::publish(&mut st, &snap);
        let interval = self.config().checkpoint_interval_bytes;
        if st.since_checkpoint >= interval && !st.checkpointing && !st.moving_start {
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

    pub(crate) fn ckpt_lock(&self) -> MutexGuard<'_, u64> {
        self.ckpt.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a checkpoint's snapshot under `state` (with `log_start` raised to `start`, if given).
    fn ckpt_snapshot(st: &mut State, start: Option<u64>) -> CkptSnapshot {
        st.ckpt_seq += 1;
        CkptSnapshot {
            sync: SyncSnapshot::of(st),
            active_index: st.active_index.clone(),
            sealed_indexes: st
                .pending
                .iter()
                .map(|p| (p.seg.base, p.idx.clone()))
                .collect(),
            log_start: start.map_or(st.log_start, |s| s.max(st.log_start)),
            epoch: st.epoch,
            seq: st.ckpt_seq,
            bytes: std::mem::take(&mut st.since_checkpoint),
        }
    }

    /// Under `ckpt`: writes the rolled segments' and the active segment's index files and the
    /// checkpoint, unless a newer snapshot was written already. `Ok(false)` when superseded.
    fn store_checkpoint(&self, snap: &CkptSnapshot, clean: bool) -> Result<bool> {
        let storage = self.storage.as_ref();
        let mut stored = self.ckpt_lock();
        if snap.seq <= *stored {
            return Ok(false);
        }
        for (base, idx) in &snap.sealed_indexes {
            segment::write_indexes(storage, *base, idx)?;
        }
        segment::write_indexes(storage, snap.sync.segment, &snap.active_index)?;
        Checkpoint {
            clean,
            epoch: snap.epoch,
            segment: snap.sync.segment,
            position: snap.sync.len,
            next_offset: snap.sync.next_offset,
            log_start: snap.log_start,
        }
        .store(storage)?;
        *stored = snap.seq;
        Ok(true)
    }

    /// Syncs and stores the checkpoint of `snap` holding no lock but `ckpt`.
    fn write_checkpoint(&self, snap: &CkptSnapshot) -> Result<bool> {
        self.sync_files(&snap.sync)?;
        // A sync that failed elsewhere meanwhile makes this one prove nothing.
        self.check_maintenance_now()?;
        self.store_checkpoint(snap, false)
    }

    /// Publishes a checkpoint's outcome under `state`: `Ok(true)` when it was written.
    fn finish_checkpoint(st: &mut State, snap: &CkptSnapshot, res: Result<bool>) -> Result<bool> {
        match res {
            Ok(written) if st.failed.is_none() => {
                Self::publish(st, &snap.sync);
                if written {
                    let done = |b: u64| snap.sealed_indexes.iter().any(|(s, _)| *s == b);
                    st.pending.retain(|p| !done(p.seg.base));
                }
                Ok(written)
            }
            Ok(_) => Err(LogError::Failed(st.failed.clone().unwrap_or_default())),
            Err(LogError::Closed) => Err(LogError::Closed),
            Err(e) if is_transient(&e) || matches!(e, LogError::Failed(_)) => {
                st.since_checkpoint += snap.bytes;
                Err(e)
            }
            Err(e) => Err(Self::fail(st, "checkpoint", e)),
        }
    }

    /// The periodic checkpoint (every `checkpoint_interval_bytes`, and after a roll): a snapshot
    /// under `state`, then the syncs, the index files and the checkpoint (under `ckpt` only), then
    /// the result published under `state`.
    pub(crate) fn checkpoint_unlocked(&self) -> Result<()> {
        let snap = {
            let mut st = self.lock();
            self.check_maintenance(&st)?;
            if st.checkpointing || st.moving_start {
                return Ok(());
            }
            st.checkpointing = true;
            Self::ckpt_snapshot(&mut st, None)
        };
        let res = self.write_checkpoint(&snap);
        let mut st = self.lock();
        st.checkpointing = false;
        Self::finish_checkpoint(&mut st, &snap, res).map(|_| ())
    }

    /// Raises the log start offset to `start` (delete-records, retention; the caller holds
    /// `clean`): writes a checkpoint recording it, outside `state`, and moves the log start in
    /// memory only once that checkpoint is durable and the log is still online. A failed write
    /// leaves the log start where it was (and fails the log unless it lacked a file descriptor).
    pub(crate) fn move_log_start(&self, start: u64) -> Result<()> {
        self.move_log_start_and_end(start, false)
    }

    /// [`Log::move_log_start`]; with `end`, the high watermark is raised to `start` in the same
    /// step (`start_over_at`: readers never see a start past the end).
    pub(crate) fn move_log_start_and_end(&self, start: u64, end: bool) -> Result<()> {
        loop {
            let snap = {
                let mut st = self.lock();
                self.check_maintenance(&st)?;
                if start <= st.log_start {
                    return Ok(());
                }
                // Periodic checkpoints (which would record the old start) wait their turn.
                st.moving_start = true;
                Self::ckpt_snapshot(&mut st, Some(start))
            };
            let res = self.write_checkpoint(&snap);
            let mut st = self.lock();
            st.moving_start = false;
            // `Ok(false)`: a periodic checkpoint taken before ours was raised wrote a newer
            // sequence number; write ours again.
            if Self::finish_checkpoint(&mut st, &snap, res)? {
                if end {
                    st.high_watermark = st.high_watermark.max(start);
                }
                st.log_start = st.log_start.max(start);
                return Ok(());
            }
        }
    }

    /// The clean checkpoint of `close`, written holding `state` (shutdown: nothing else runs).
    /// Refused on an offline or closed log: after a failed fdatasync a later one proves nothing.
    pub(crate) fn checkpoint_locked(&self, st: &mut State, clean: bool) -> Result<()> {
        Self::check_usable(st)?;
        let snap = Self::ckpt_snapshot(st, None);
        let res = self
            .sync_files(&snap.sync)
            .and_then(|_| self.store_checkpoint(&snap, clean));
        Self::finish_checkpoint(st, &snap, res).map(|_| ())
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
}
