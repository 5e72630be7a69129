//! One segment file: naming, header, and the cursor that walks and verifies its batches.
//!
//! A segment is shared (`Arc`) between the log, readers and the compactor; a reader holding one keeps
//! reading it even after retention or compaction replaced it (a retired segment keeps its old file
//! open). Sealed segments' files and indexes are held by the bounded, shared [`SegmentCache`] and
//! reopened or reloaded on demand. Every batch leaving this module has passed `validate_stored` and
//! the offset-order check, so corrupt bytes are never served.

use crate::batch::{self, BatchHeader, LOG_OVERHEAD};
use crate::cache::SegmentCache;
use crate::disk::{self, File, Storage};
use crate::error::{LogError, Result};
use crate::index::Indexes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Bytes of the segment file header.
pub const HEADER_BYTES: u64 = 16;
const MAGIC: &[u8; 8] = b"BBSEGLOG";
const VERSION: u16 = 1;
const NO_DAMAGE: u64 = u64::MAX;
/// Bytes read at once when walking a segment.
const CHUNK_BYTES: usize = 256 * 1024;

/// File name of the segment with base offset `base`.
pub fn log_name(base: u64) -> String {
    format!("{base:020}.log")
}

/// File name of the offset index of segment `base`.
pub fn index_name(base: u64) -> String {
    format!("{base:020}.index")
}

/// File name of the time index of segment `base`.
pub fn time_name(base: u64) -> String {
    format!("{base:020}.timeindex")
}

/// The base offset in a file name like `00000000000000000042.log`, if it is one of ours.
pub fn parse_base(name: &str, ext: &str) -> Option<u64> {
    let stem = name.strip_suffix(ext)?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

/// The segment file header bytes.
pub fn header_bytes() -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_BYTES as usize);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&VERSION.to_be_bytes());
    b.extend_from_slice(&0u16.to_be_bytes());
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    b
}

/// Checks a segment's header. `Ok(false)` when the file is shorter than a header (a creation torn
/// by a crash), an error when the header is damaged or of another version.
pub fn check_header(file: &dyn File, name: &str) -> Result<bool> {
    if file.len() < HEADER_BYTES {
        return Ok(false);
    }
    let mut h = [0u8; HEADER_BYTES as usize];
    disk::read_exact_at(file, 0, &mut h).map_err(|e| LogError::io(format!("read {name}"), e))?;
    match header_fault(&h) {
        None => Ok(true),
        Some(HeaderFault::Damaged(reason)) => Err(LogError::Corrupt {
            file: name.to_string(),
            position: 0,
            reason,
        }),
        Some(HeaderFault::Unsupported(reason)) => Err(LogError::UnsupportedFormat {
            file: name.to_string(),
            reason,
        }),
    }
}

/// What is wrong with a segment header.
enum HeaderFault {
    Damaged(String),
    Unsupported(String),
}

/// Checks the segment header at the start of `bytes` (a segment held in memory, such as a
/// cluster's cold-tier object); the error says what is wrong.
pub fn check_header_bytes(bytes: &[u8]) -> std::result::Result<(), String> {
    match bytes.get(..HEADER_BYTES as usize).map(header_fault) {
        None => Err("shorter than a segment header".into()),
        Some(None) => Ok(()),
        Some(Some(HeaderFault::Damaged(r) | HeaderFault::Unsupported(r))) => Err(r),
    }
}

fn header_fault(h: &[u8]) -> Option<HeaderFault> {
    let crc = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
    if &h[0..8] != MAGIC || crc32c::crc32c(&h[..12]) != crc {
        return Some(HeaderFault::Damaged(
            "segment header magic or CRC is wrong".into(),
        ));
    }
    let version = u16::from_be_bytes([h[8], h[9]]);
    let flags = u16::from_be_bytes([h[10], h[11]]);
    if version != VERSION || flags != 0 {
        return Some(HeaderFault::Unsupported(format!(
            "segment version {version} flags {flags}, this build reads {VERSION}/0"
        )));
    }
    None
}

/// A segment of the log.
///
/// While active, the segment holds its file open itself (appends never wait for the cache). Once
/// sealed, its file and indexes live in the shared [`SegmentCache`] (bounded, least recently used
/// first) and are reopened or reloaded on demand. When a segment is replaced (compaction) or
/// deleted (retention), it is retired: it keeps its old file open until the last reader drops it,
/// and is never reopened by name, since the name may already hold another file.
pub struct Segment {
    pub base: u64,
    id: u64,
    storage: Arc<dyn Storage>,
    cache: Arc<SegmentCache>,
    slot: Mutex<Slot>,
    /// Length of a sealed segment (`ACTIVE` while active: ask the file).
    sealed_len: AtomicU64,
    /// A sealed segment's max timestamp and the relative offset of the first batch reaching it
    /// (`None` inside: no batch), once known. A sealed segment's bytes never change.
    max: OnceLock<Option<(i64, u32)>>,
    damaged_from: AtomicU64,
}

struct Slot {
    /// The file, held here while active or retired.
    pinned: Option<Arc<dyn File>>,
    retired: bool,
}

const ACTIVE: u64 = u64::MAX;

impl Segment {
    /// Wraps an open segment file; the segment is active until [`Segment::seal`].
    pub fn new(
        base: u64,
        file: Arc<dyn File>,
        storage: Arc<dyn Storage>,
        cache: Arc<SegmentCache>,
    ) -> Self {
        Self {
            base,
            id: cache.new_id(),
            storage,
            cache,
            slot: Mutex::new(Slot {
                pinned: Some(file),
                retired: false,
            }),
            sealed_len: AtomicU64::new(ACTIVE),
            max: OnceLock::new(),
            damaged_from: AtomicU64::new(NO_DAMAGE),
        }
    }

    /// Creates a new empty segment file with its header, not synced: the caller syncs the file
    /// and the directory before anything in it is acknowledged.
    pub fn create(
        storage: &Arc<dyn Storage>,
        cache: &Arc<SegmentCache>,
        base: u64,
    ) -> Result<Self> {
        let name = log_name(base);
        let io = |e| LogError::io(format!("create {}", storage.describe(&name)), e);
        let file = storage.create(&name).map_err(io)?;
        file.append(&header_bytes()).map_err(io)?;
        Ok(Self::new(base, file, storage.clone(), cache.clone()))
    }

    /// A new active handle on this segment, its file opened again by name: recovery makes a sealed
    /// segment the active one again when it cuts the log's end before the last segment.
    pub fn reopen_active(&self) -> Result<Segment> {
        let name = log_name(self.base);
        let file = self
            .storage
            .open(&name)
            .map_err(|e| LogError::io(format!("open {}", self.storage.describe(&name)), e))?;
        let seg = Segment::new(self.base, file, self.storage.clone(), self.cache.clone());
        if let Some(d) = self.damaged_from() {
            seg.mark_damaged(d);
        }
        Ok(seg)
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Seals the segment: its length is fixed, its file moves into the shared cache (which may close
    /// it at once), and `idx` (when given) becomes its cached indexes.
    pub fn seal(&self, idx: Option<Indexes>) {
        let file = self.slot().pinned.take();
        if let Some(file) = file {
            self.sealed_len.store(file.len(), Ordering::SeqCst);
            self.cache.put_file(self.id, file);
        }
        if let Some(idx) = idx {
            self.set_sealed_indexes(idx);
        }
    }

    /// Bytes in the segment (a sealed segment's length never changes).
    pub fn len(&self) -> u64 {
        match self.sealed_len.load(Ordering::SeqCst) {
            ACTIVE => self.slot().pinned.as_ref().map_or(0, |f| f.len()),
            len => len,
        }
    }

    /// The segment's file: its own while active or retired, else from the cache, reopened by name
    /// when it was evicted. A failed reopen (EMFILE included) is an I/O error for the caller only.
    pub fn file(&self) -> Result<Arc<dyn File>> {
        let slot = self.slot();
        if let Some(f) = &slot.pinned {
            return Ok(f.clone());
        }
        if let Some(f) = self.cache.file(self.id) {
            return Ok(f);
        }
        let name = log_name(self.base);
        if slot.retired {
            return Err(LogError::io(
                format!("reopen {}", self.storage.describe(&name)),
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the segment was deleted or replaced",
                ),
            ));
        }
        // Under the slot lock, so `retire` cannot rename or remove the name meanwhile.
        let f = self
            .storage
            .open(&name)
            .map_err(|e| LogError::io(format!("reopen {}", self.storage.describe(&name)), e))?;
        self.cache.count_reopen();
        self.cache.put_file(self.id, f.clone());
        Ok(f)
    }

    /// Retires the segment and runs `replace` (the rename or removal of its file) while no reader
    /// can reopen it by name. The old file stays open for readers that still hold the segment
    /// (best effort: when it cannot be opened, they get an I/O error instead).
    pub fn retire(&self, replace: impl FnOnce() -> Result<()>) -> Result<()> {
        let old = self.file().ok();
        let mut slot = self.slot();
        replace()?;
        slot.retired = true;
        if slot.pinned.is_none() {
            slot.pinned = old;
        }
        drop(slot);
        self.cache.forget(self.id);
        Ok(())
    }

    /// Marks a sealed segment's indexes as known.
    pub fn set_sealed_indexes(&self, idx: Indexes) {
        let _ = self.max.set(idx.max_timestamp);
        self.cache.put_indexes(self.id, Arc::new(idx), false);
    }

    /// The indexes of a sealed segment: cached, or from its files, or rebuilt by a scan when they
    /// are missing, damaged or describe another length.
    pub fn sealed_indexes(&self, interval: u64) -> Result<Arc<Indexes>> {
        if let Some(idx) = self.cache.indexes(self.id) {
            return Ok(idx);
        }
        let storage = self.storage.as_ref();
        let len = self.len();
        let idx = match load_indexes(storage, self.base).filter(|i| i.covered == len) {
            Some(idx) => idx,
            None => {
                let file = self.file()?;
                let scan = scan(
                    file.as_ref(),
                    self.base,
                    HEADER_BYTES,
                    Expect::AtLeast(self.base),
                    Indexes::new(HEADER_BYTES),
                    interval,
                );
                if let Some((pos, _)) = scan.error {
                    self.mark_damaged(pos);
                } else {
                    // Under the slot lock: a segment that compaction or retention retired (its
                    // name now holds another file, whose indexes compaction writes) must not
                    // write the old file's indexes over them.
                    let slot = self.slot();
                    if !slot.retired {
                        let _ = write_indexes(storage, self.base, &scan.indexes);
                    }
                }
                scan.indexes
            }
        };
        let idx = Arc::new(idx);
        let _ = self.max.set(idx.max_timestamp);
        self.cache.put_indexes(self.id, idx.clone(), true);
        Ok(idx)
    }

    /// The largest max timestamp of a sealed segment's batches (-1 when it holds none).
    pub fn max_timestamp(&self, interval: u64) -> Result<i64> {
        Ok(self.max_record(interval)?.map_or(-1, |(ts, _)| ts))
    }

    /// A sealed segment's largest batch max timestamp and the relative offset of the first batch
    /// reaching it (`None` when it holds no batch). Kept for the segment's life once known (set
    /// at seal, or when its indexes are loaded); else found from the time index file alone (its
    /// last entry), loading the whole indexes only when that file is missing or damaged. Never
    /// reads the segment file unless its indexes must be rebuilt.
    pub fn max_record(&self, interval: u64) -> Result<Option<(i64, u32)>> {
        if let Some(known) = self.max.get() {
            return Ok(*known);
        }
        let storage = self.storage.as_ref();
        let from_file = disk::read_all(storage, &time_name(self.base))
            .ok()
            .flatten()
            .and_then(|b| {
                Indexes::decode_max_timestamp(self.base, &b, self.len(), &time_name(self.base)).ok()
            });
        let max = match from_file {
            Some(max) => max,
            None => self.sealed_indexes(interval)?.max_timestamp,
        };
        Ok(*self.max.get_or_init(|| max))
    }

    /// Records that bytes from `pos` on are damaged; they are never served.
    pub fn mark_damaged(&self, pos: u64) {
        self.damaged_from.fetch_min(pos, Ordering::SeqCst);
    }

    /// Position from which this segment is damaged, if any.
    pub fn damaged_from(&self) -> Option<u64> {
        let d = self.damaged_from.load(Ordering::SeqCst);
        (d != NO_DAMAGE).then_some(d)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.cache.forget(self.id);
    }
}

/// Loads a segment's index files, or `None` when missing or damaged.
pub fn load_indexes(storage: &dyn Storage, base: u64) -> Option<Indexes> {
    let off = disk::read_all(storage, &index_name(base)).ok()??;
    let times = disk::read_all(storage, &time_name(base)).ok()??;
    Indexes::decode(base, &off, &times, &storage.describe(&index_name(base))).ok()
}

/// Writes both index files of a segment (atomic replace each).
pub fn write_indexes(storage: &dyn Storage, base: u64, idx: &Indexes) -> Result<()> {
    let io = |e| LogError::io("write index", e);
    disk::write_atomic_unique(storage, &index_name(base), &idx.encode_offsets(base)).map_err(io)?;
    disk::write_atomic_unique(storage, &time_name(base), &idx.encode_times(base)).map_err(io)
}

/// How a scan checks batch base offsets.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// Each batch starts exactly at the previous batch's next offset (never-compacted data).
    Exactly(u64),
    /// Each batch starts at or after it (compacted segments have gaps).
    AtLeast(u64),
}

/// What a scan found.
pub struct Scan {
    pub indexes: Indexes,
    /// End of the last valid batch.
    pub end: u64,
    /// Offset after the last valid batch (or the expected one when there was none).
    pub next_offset: u64,
    /// Position and reason of the first invalid batch.
    pub error: Option<(u64, String)>,
}

/// Walks and verifies every batch from `from` to the end of the file, extending `indexes`.
pub fn scan(
    file: &dyn File,
    base: u64,
    from: u64,
    expect: Expect,
    mut indexes: Indexes,
    interval: u64,
) -> Scan {
    let mut cursor = Cursor::new(file, from, file.len(), expect);
    let mut out_err = None;
    loop {
        match cursor.next_batch() {
            Ok(Some((pos, bytes))) => {
                let h = BatchHeader::parse(bytes).expect("verified batch");
                let rel = (h.base_offset as u64 - base) as u32;
                indexes.add(rel, pos, bytes.len() as u64, h.max_timestamp, interval);
            }
            Ok(None) => break,
            Err((pos, reason)) => {
                out_err = Some((pos, reason));
                break;
            }
        }
    }
    Scan {
        indexes,
        end: cursor.pos,
        next_offset: cursor.next_offset(),
        error: out_err,
    }
}

/// One step of a [`Cursor`]: a verified batch and its position, the end, or where and why it stopped.
pub type Step<'a> = Result<Option<(u64, &'a [u8])>, (u64, String)>;

/// Reads verified batches of one segment in order, buffering reads.
pub struct Cursor<'a> {
    file: &'a dyn File,
    pub pos: u64,
    end: u64,
    expect: Expect,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'a> Cursor<'a> {
    /// A cursor at `pos` that stops at `end`.
    pub fn new(file: &'a dyn File, pos: u64, end: u64, expect: Expect) -> Self {
        Self {
            file,
            pos,
            end,
            expect,
            buf: Vec::new(),
            buf_start: pos,
        }
    }

    /// The offset the next batch must start at (or after).
    pub fn next_offset(&self) -> u64 {
        match self.expect {
            Expect::Exactly(o) | Expect::AtLeast(o) => o,
        }
    }

    fn fill(&mut self, want: usize) -> std::io::Result<bool> {
        let have_from = self.pos - self.buf_start;
        if self.buf.len() as u64 >= have_from + want as u64 {
            return Ok(true);
        }
        let n = want.max(CHUNK_BYTES).min((self.end - self.pos) as usize);
        if n < want {
            return Ok(false);
        }
        self.buf.resize(n, 0);
        disk::read_exact_at(self.file, self.pos, &mut self.buf)?;
        self.buf_start = self.pos;
        Ok(true)
    }

    /// The next verified batch and its position; `Ok(None)` at the end; `Err((pos, reason))` at the
    /// first batch that is short, fails its checks or breaks offset order.
    pub fn next_batch(&mut self) -> Step<'_> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let pos = self.pos;
        let fail = |r: String| Err((pos, r));
        match self.fill(LOG_OVERHEAD) {
            Ok(true) => {}
            Ok(false) => return fail(format!("{} trailing bytes are not a batch", self.end - pos)),
            Err(e) => return fail(format!("read failed: {e}")),
        }
        let at = (pos - self.buf_start) as usize;
        let declared = i32::from_be_bytes(self.buf[at + 8..at + 12].try_into().unwrap_or_default());
        let total = match usize::try_from(declared) {
            Ok(d) if (d as u64 + LOG_OVERHEAD as u64) <= self.end - pos => d + LOG_OVERHEAD,
            _ => return fail(format!("batch length {declared} overruns the segment")),
        };
        match self.fill(total) {
            Ok(true) => {}
            Ok(false) => return fail("batch is cut short".into()),
            Err(e) => return fail(format!("read failed: {e}")),
        }
        let at = (pos - self.buf_start) as usize;
        let bytes = &self.buf[at..at + total];
        let h = match batch::validate_stored(bytes) {
            Ok(h) => h,
            Err(e) => return fail(e.to_string()),
        };
        let base = h.base_offset;
        let ok = match self.expect {
            Expect::Exactly(o) => base >= 0 && base as u64 == o,
            Expect::AtLeast(o) => base >= 0 && base as u64 >= o,
        };
        if !ok {
            return fail(format!(
                "batch base offset {base} breaks offset order (expected {:?})",
                self.expect
            ));
        }
        let next = h.next_offset() as u64;
        self.expect = match self.expect {
            Expect::Exactly(_) => Expect::Exactly(next),
            Expect::AtLeast(_) => Expect::AtLeast(next),
        };
        self.pos = pos + total as u64;
        let at = (pos - self.buf_start) as usize;
        Ok(Some((pos, &self.buf[at..at + total])))
    }
}
