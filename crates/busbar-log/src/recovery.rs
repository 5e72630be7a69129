//! Opening a log: clean fast path, crash recovery of the unverified tail, index rebuilds.
//!
//! Rules in `docs/log-format.md`, "Recovery on open". Start-up reads nothing of the segments before
//! the checkpoint, so its time does not grow with the log; after a crash it verifies only the tail.

use crate::cache::SegmentCache;
use crate::checkpoint::Checkpoint;
use crate::config::LogConfig;
use crate::disk::Storage;
use crate::error::{LogError, Result};
use crate::index::Indexes;
use crate::log::State;
use crate::segment::{self, Expect, Segment, HEADER_BYTES};
use std::sync::Arc;

/// What recovery did, for logs, metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The previous shutdown was clean and nothing was scanned.
    pub clean: bool,
    /// Bytes of segments read and verified.
    pub scanned_bytes: u64,
    /// Bytes cut off a torn tail.
    pub truncated_bytes: u64,
    /// Segments whose index files were rebuilt during recovery.
    pub rebuilt_indexes: u64,
    /// Segments with a damaged range (`(base offset, position, reason)`), never served.
    pub damaged_segments: Vec<(u64, u64, String)>,
    /// The checkpoint was missing or damaged (`Some(reason)` when damaged).
    pub checkpoint_problem: Option<String>,
    /// Leftover temporary files deleted.
    pub removed_leftovers: u64,
    /// Base offsets of segments removed because a crash left them past the log's end: a new
    /// segment whose header was cut before it was synced (a roll that never completed), or
    /// segments rolled after bytes that never became durable. None held an acknowledged batch.
    pub removed_torn_segments: Vec<u64>,
}

fn io(what: &str, storage: &dyn Storage, name: &str) -> impl Fn(std::io::Error) -> LogError {
    let op = format!("{what} {}", storage.describe(name));
    move |e| LogError::io(op.clone(), e)
}

/// Deletes leftovers and index files without a segment; returns the sorted segment bases.
fn tidy(storage: &dyn Storage, report: &mut RecoveryReport) -> Result<Vec<u64>> {
    let names = storage
        .list()
        .map_err(|e| LogError::io("list log directory", e))?;
    let mut bases: Vec<u64> = names
        .iter()
        .filter_map(|n| segment::parse_base(n, ".log"))
        .collect();
    bases.sort_unstable();
    for name in &names {
        let orphan_index = segment::parse_base(name, ".index")
            .or_else(|| segment::parse_base(name, ".timeindex"))
            .is_some_and(|b| bases.binary_search(&b).is_err());
        if name.ends_with(".tmp") || name.ends_with(".cleaned") || orphan_index {
            storage.remove(name).map_err(io("remove", storage, name))?;
            report.removed_leftovers += 1;
        }
    }
    if report.removed_leftovers > 0 {
        storage
            .sync_dir()
            .map_err(|e| LogError::io("sync dir", e))?;
    }
    Ok(bases)
}

/// Opens every segment and checks its header (`docs/log-format.md`, "Recovery on open", step 1).
///
/// The last segment, when it is no longer than a header and that header is not whole and valid, is
/// a roll cut by a crash before the new file's header was synced (no batch can follow an unsynced
/// header): it is removed, and the segment before it is the active one again; when it is the only
/// segment it is written again empty, so its base offset (the log start) is kept. Any other bad
/// header is damage: the segment is reported, never served, and the rest of the log opens.
///
/// Every segment but the last is sealed at once, so its file goes to the bounded cache (which may
/// close it) and opening a long log never holds more descriptors than the cache allows.
fn open_segments(
    shared: &Arc<dyn Storage>,
    cache: &Arc<SegmentCache>,
    bases: &mut Vec<u64>,
    report: &mut RecoveryReport,
) -> Result<Vec<Arc<Segment>>> {
    let storage = shared.as_ref();
    let new_seg =
        |base: u64, file| Arc::new(Segment::new(base, file, shared.clone(), cache.clone()));
    let mut segs: Vec<Arc<Segment>> = Vec::with_capacity(bases.len());
    for (i, base) in bases.clone().into_iter().enumerate() {
        let name = segment::log_name(base);
        let file = storage.open(&name).map_err(io("open", storage, &name))?;
        let header = segment::check_header(file.as_ref(), &storage.describe(&name));
        let last = i + 1 == bases.len();
        if last && file.len() <= HEADER_BYTES && !matches!(header, Ok(true)) {
            if i > 0 {
                drop(file);
                storage
                    .remove(&name)
                    .map_err(io("remove", storage, &name))?;
                storage
                    .sync_dir()
                    .map_err(|e| LogError::io("sync dir", e))?;
                report.removed_torn_segments.push(base);
                bases.pop();
                // The segment before it is the active one again.
                if let Some(prev) = segs.pop() {
                    let name = segment::log_name(prev.base);
                    let file = storage.open(&name).map_err(io("open", storage, &name))?;
                    let seg = new_seg(prev.base, file);
                    if let Some(d) = prev.damaged_from() {
                        seg.mark_damaged(d);
                    }
                    segs.push(seg);
                }
                break;
            }
            let fix = io("rewrite header of", storage, &name);
            file.truncate(0).map_err(&fix)?;
            file.append(&segment::header_bytes()).map_err(&fix)?;
            file.sync().map_err(&fix)?;
            segs.push(new_seg(base, file));
            continue;
        }
        let seg = new_seg(base, file);
        if !last {
            seg.seal(None);
        }
        let damage = match header {
            Ok(true) => None,
            Ok(false) => Some("segment is shorter than its header".to_string()),
            Err(LogError::Corrupt { reason, .. }) => Some(reason),
            Err(e) => return Err(e),
        };
        if let Some(reason) = damage {
            seg.mark_damaged(0);
            report.damaged_segments.push((base, 0, reason));
        }
        segs.push(seg);
    }
    Ok(segs)
}

fn load_checkpoint(
    storage: &dyn Storage,
    report: &mut RecoveryReport,
) -> Result<Option<Checkpoint>> {
    match Checkpoint::load(storage) {
        Ok(c) => Ok(c),
        Err(LogError::Corrupt { reason, .. }) => {
            report.checkpoint_problem = Some(reason);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Opens the log in `storage`, recovering after a crash.
pub(crate) fn recover(
    shared: &Arc<dyn Storage>,
    config: &LogConfig,
) -> Result<(State, RecoveryReport)> {
    let storage = shared.as_ref();
    let cache = &config.segment_cache;
    let mut report = RecoveryReport::default();
    let mut bases = tidy(storage, &mut report)?;
    let ckpt = load_checkpoint(storage, &mut report)?;
    if bases.is_empty() {
        if let Some(c) = ckpt {
            return Err(LogError::Corrupt {
                file: storage.describe(crate::checkpoint::NAME),
                position: 0,
                reason: format!(
                    "checkpoint records offsets up to {} but no segment file exists",
                    c.next_offset
                ),
            });
        }
        let seg = Segment::create(shared, cache, 0)?;
        storage
            .sync_dir()
            .map_err(|e| LogError::io("sync dir", e))?;
        let state = new_state(
            vec![],
            Arc::new(seg),
            Indexes::new(HEADER_BYTES),
            0,
            0,
            0,
            config,
        )?;
        return finish(storage, state, report, config);
    }
    let mut segs = open_segments(shared, cache, &mut bases, &mut report)?;
    let active = segs.pop().expect("at least one segment");
    let log_start = ckpt.map_or(0, |c| c.log_start).max(bases[0]);
    let mut epoch = ckpt.map_or(0, |c| c.epoch);
    if let Some(c) =
        ckpt.filter(|c| c.clean && c.segment == active.base && c.position == active.len())
    {
        report.clean = true;
        let idx =
            match segment::load_indexes(storage, active.base).filter(|i| i.covered == c.position) {
                Some(idx) => idx,
                None => {
                    report.rebuilt_indexes += 1;
                    let s = scan_segment(
                        &active,
                        HEADER_BYTES,
                        Expect::AtLeast(active.base),
                        Indexes::new(HEADER_BYTES),
                        config,
                        &mut report,
                    )?;
                    s.indexes
                }
            };
        let state = new_state(segs, active, idx, c.next_offset, log_start, epoch, config)?;
        return finish(storage, state, report, config);
    }
    epoch = epoch.wrapping_add(1);
    segs.push(active);
    let (segs, idx, next) = recover_tail(storage, segs, ckpt, config, &mut report)?;
    let mut segs = segs;
    let active = segs.pop().expect("at least one segment");
    let state = new_state(segs, active, idx, next, log_start, epoch, config)?;
    finish(storage, state, report, config)
}

fn scan_segment(
    seg: &Segment,
    from: u64,
    expect: Expect,
    idx: Indexes,
    config: &LogConfig,
    report: &mut RecoveryReport,
) -> Result<segment::Scan> {
    let file = seg.file()?;
    let s = segment::scan(
        file.as_ref(),
        seg.base,
        from,
        expect,
        idx,
        config.index_interval_bytes,
    );
    report.scanned_bytes += s.end - from;
    Ok(s)
}

/// Verifies every segment from the recovery point on and cuts the log at its torn end.
///
/// With a checkpoint, every byte after its position may be one a roll left unsynced (a roll does
/// not sync; the next sync does), so the first sign of a crash there ends the log: an invalid
/// batch (the segment is truncated before it), a later segment whose header is not whole or whose
/// base offset does not follow on (the log ends before it). Segments after the end are removed:
/// they were written after bytes that never became durable, so none of their batches was
/// acknowledged. Without a usable checkpoint nothing tells a torn write from damage: an invalid
/// batch in a segment other than the last marks the rest of that segment damaged, as before.
fn recover_tail(
    storage: &dyn Storage,
    mut segs: Vec<Arc<Segment>>,
    ckpt: Option<Checkpoint>,
    config: &LogConfig,
    report: &mut RecoveryReport,
) -> Result<(Vec<Arc<Segment>>, Indexes, u64)> {
    let start = ckpt
        .and_then(|c| {
            segs.iter()
                .position(|s| s.base == c.segment)
                .map(|i| (i, c))
        })
        .filter(|(i, c)| c.position >= HEADER_BYTES && c.position <= segs[*i].len());
    let anchored = start.is_some();
    let first = start.map_or(0, |(i, _)| i);
    let last = segs.len() - 1;
    let mut next = segs[first].base;
    let mut end_idx = Indexes::new(HEADER_BYTES);
    let mut end = last;
    for (i, seg) in segs.iter().enumerate().skip(first) {
        // Segments follow on exactly, in a copied log too (its appends roll at the end before
        // a gap: `Log::write_at`), so one that does not is a torn roll's.
        if anchored && i > first && (seg.damaged_from() == Some(0) || seg.base != next) {
            end = i - 1; // the segment before ends the log; `end_idx` holds its indexes
            break;
        }
        let (from, idx, expect) = match start {
            Some((ci, c)) if ci == i => {
                match segment::load_indexes(storage, seg.base).filter(|x| x.covered == c.position) {
                    Some(idx) => (c.position, idx, Expect::Exactly(c.next_offset)),
                    None => {
                        report.rebuilt_indexes += 1;
                        (
                            HEADER_BYTES,
                            Indexes::new(HEADER_BYTES),
                            Expect::Exactly(seg.base),
                        )
                    }
                }
            }
            _ => (
                HEADER_BYTES,
                Indexes::new(HEADER_BYTES),
                Expect::Exactly(next.max(seg.base)),
            ),
        };
        // Compacted segments have offset gaps; none lies after a checkpoint's segment, except
        // in a copied log (its source's gaps).
        let expect = match expect {
            Expect::Exactly(o) | Expect::AtLeast(o)
                if config.copied || (i != last && !anchored) =>
            {
                Expect::AtLeast(o)
            }
            e => e,
        };
        let scan = scan_segment(seg, from, expect, idx, config, report)?;
        next = scan.next_offset.max(seg.base);
        if let Some((pos, reason)) = scan.error {
            if i == last || anchored {
                truncate_torn_tail(storage, seg, pos, report)?;
                end = i;
                end_idx = scan.indexes;
                break;
            }
            seg.mark_damaged(pos);
            report.damaged_segments.push((seg.base, pos, reason));
        }
        if i != last && seg.damaged_from().is_none() {
            segment::write_indexes(storage, seg.base, &scan.indexes)?;
        }
        if i != last && !anchored {
            seg.set_sealed_indexes(scan.indexes);
        } else {
            if i != last {
                seg.set_sealed_indexes(scan.indexes.clone());
            }
            end_idx = scan.indexes;
        }
    }
    if end != last {
        remove_after(storage, &mut segs, end, report)?;
    }
    Ok((segs, end_idx, next))
}

/// Cuts the torn tail of `seg` at `pos` (the first invalid batch) and syncs it.
fn truncate_torn_tail(
    storage: &dyn Storage,
    seg: &Segment,
    pos: u64,
    report: &mut RecoveryReport,
) -> Result<()> {
    let file = seg.file()?;
    let len = file.len();
    let fix = io(
        "truncate torn tail of",
        storage,
        &segment::log_name(seg.base),
    );
    file.truncate(pos).map_err(&fix)?;
    file.sync().map_err(&fix)?;
    report.truncated_bytes += len - pos;
    Ok(())
}

/// Removes every segment after `segs[end]` (files and index files, then a directory sync) and
/// makes `segs[end]` the active segment again.
fn remove_after(
    storage: &dyn Storage,
    segs: &mut Vec<Arc<Segment>>,
    end: usize,
    report: &mut RecoveryReport,
) -> Result<()> {
    for seg in segs.drain(end + 1..) {
        report.truncated_bytes += seg.len();
        report.removed_torn_segments.push(seg.base);
        report.damaged_segments.retain(|d| d.0 != seg.base);
        for name in [
            segment::log_name(seg.base),
            segment::index_name(seg.base),
            segment::time_name(seg.base),
        ] {
            match storage.remove(&name) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io("remove", storage, &name)(e));
                }
                _ => {}
            }
        }
    }
    storage
        .sync_dir()
        .map_err(|e| LogError::io("sync dir", e))?;
    let active = segs[end].reopen_active()?;
    segs[end] = Arc::new(active);
    Ok(())
}

fn new_state(
    sealed: Vec<Arc<Segment>>,
    active: Arc<Segment>,
    active_index: Indexes,
    next_offset: u64,
    log_start: u64,
    epoch: u32,
    config: &LogConfig,
) -> Result<State> {
    let now = config.clock.now_ms();
    let active_file = active.file()?;
    let visible = active_file.len();
    Ok(State {
        sealed,
        active,
        active_file,
        active_index,
        active_created_ms: now,
        next_offset,
        log_start: log_start.min(next_offset),
        epoch,
        written: 0,
        synced: 0,
        high_watermark: next_offset,
        visible,
        syncing: false,
        last_sync_ms: now,
        since_checkpoint: 0,
        failed: None,
        closed: false,
        ckpt_seq: 0,
        checkpointing: false,
        moving_start: false,
        pending: Vec::new(),
        dir_dirty: false,
        rolls: 0,
    })
}

/// Syncs the active segment and records the new recovery point (clean flag off).
fn finish(
    storage: &dyn Storage,
    state: State,
    report: RecoveryReport,
    _config: &LogConfig,
) -> Result<(State, RecoveryReport)> {
    let fix = io("sync", storage, &segment::log_name(state.active.base));
    state.active_file.sync().map_err(&fix)?;
    segment::write_indexes(storage, state.active.base, &state.active_index)?;
    Checkpoint {
        clean: false,
        epoch: state.epoch,
        segment: state.active.base,
        position: state.active_file.len(),
        next_offset: state.next_offset,
        log_start: state.log_start,
    }
    .store(storage)?;
    Ok((state, report))
}
