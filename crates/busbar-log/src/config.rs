//! Log configuration, sync policies and the injected clock.
//!
//! Every limit is named with its unit last (`segment_bytes`, `retention_ms`). `LogConfig::validate`
//! is the one place that checks ranges; the log calls it on open.

use crate::cache::SegmentCache;
use crate::error::{LogError, Result};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// When appended bytes are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// Group-committed fdatasync before an append completes (the default).
    #[default]
    Batch,
    /// fdatasync when the last one is older than this many milliseconds.
    Interval(u64),
    /// Never sync on append; the OS writes back (syncs still happen at roll, checkpoint, close).
    Never,
}

/// What background cleaning does with old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    /// Retention by time and size deletes old segments.
    #[default]
    Delete,
    /// Keep the latest record per key.
    Compact,
    /// Both.
    CompactDelete,
}

/// Milliseconds since the Unix epoch, injectable for tests.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `now_ms`.
    pub fn new(now_ms: i64) -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(now_ms)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Settings of one partition log.
#[derive(Clone)]
pub struct LogConfig {
    /// Sync policy (`batch` by default).
    pub sync: SyncPolicy,
    /// A segment rolls when the next batch would take it past this size. Default 1 GiB.
    pub segment_bytes: u64,
    /// A non-empty segment rolls when older than this. Default 7 days.
    pub segment_ms: i64,
    /// Largest batch accepted. Default 1,048,588 (Kafka's `message.max.bytes`).
    pub batch_bytes_max: usize,
    /// An offset-index entry every this many bytes of log. Default 4096.
    pub index_interval_bytes: u64,
    /// A checkpoint is written after this many bytes were synced since the last one, bounding the
    /// crash-recovery scan. Default 64 MiB.
    pub checkpoint_interval_bytes: u64,
    /// Delete, compact or both.
    pub cleanup: CleanupPolicy,
    /// Time retention; `None` keeps forever. Default 7 days.
    pub retention_ms: Option<i64>,
    /// Size retention; `None` (the default) keeps any size.
    pub retention_bytes: Option<u64>,
    /// How long compaction keeps tombstones from the pass that first kept them (their delete
    /// horizon, Kafka's KIP-534). Default 1 day.
    pub delete_retention_ms: i64,
    /// Memory for one compaction pass's key map: each distinct key counts its length plus
    /// [`crate::ENTRY_OVERHEAD_BYTES`]. A log with more keys is compacted in several passes (a
    /// pass always takes at least one key). A pass also keeps the keys of transactional batches
    /// it keeps whole in a second budget of this size (see [`crate::HeldKeys`]). Default 16 MiB (about
    /// 200,000 keys of 16 bytes).
    pub compaction_map_bytes: u64,
    /// Kafka's `min.cleanable.dirty.ratio`: new settled data starts a compaction only once the
    /// settled segments not yet compacted hold at least this share of the settled bytes (a
    /// segment compaction stopped inside counts whole). Each compaction reads every settled
    /// segment, so the ratio bounds how often a big, slowly changing log is read again. A kept
    /// tombstone whose delete horizon passes starts one whatever the ratio, as does the first
    /// call after an open (which maps from the log start). 0 compacts after every roll.
    /// Default 0.5; within [0, 1].
    pub min_cleanable_dirty_ratio: f64,
    /// The clock used for rolls, retention and sync intervals.
    pub clock: Arc<dyn Clock>,
    /// Where sealed segments keep their open files and loaded indexes: a bounded cache
    /// (`open_files_max`, `indexes_max`) shared by every log given the same one. Default: the
    /// process-wide [`SegmentCache::shared`]. Read when the log opens; `set_config` does not move
    /// an open log to another cache.
    pub segment_cache: Arc<SegmentCache>,
    /// A copy of another log (cluster mode's local copies): batches come in through
    /// [`crate::Log::append_copied`] at the offsets the source gave them, with the gaps a
    /// compacted source has, and recovery accepts such gaps inside a segment after its
    /// checkpoint too (a batch must start at or after the previous one's end rather than
    /// exactly there; segments still follow on exactly). Default false.
    pub copied: bool,
    /// The record codecs compaction inflates compressed batches with (busbar-log has none of
    /// its own: the broker supplies Kafka's). Without it, a compressed batch is kept whole, its
    /// keys unread, and no tombstone after it expires in a pass. Default none.
    pub codec: Option<Arc<dyn crate::Codec>>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            sync: SyncPolicy::Batch,
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            batch_bytes_max: 1_048_588,
            index_interval_bytes: 4096,
            checkpoint_interval_bytes: 64 << 20,
            cleanup: CleanupPolicy::Delete,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            delete_retention_ms: 24 * 3600 * 1000,
            compaction_map_bytes: 16 << 20,
            min_cleanable_dirty_ratio: 0.5,
            clock: Arc::new(SystemClock),
            segment_cache: SegmentCache::shared(),
            copied: false,
            codec: None,
        }
    }
}

impl std::fmt::Debug for LogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogConfig")
            .field("sync", &self.sync)
            .field("segment_bytes", &self.segment_bytes)
            .field("segment_ms", &self.segment_ms)
            .field("batch_bytes_max", &self.batch_bytes_max)
            .field("cleanup", &self.cleanup)
            .field("retention_ms", &self.retention_ms)
            .field("retention_bytes", &self.retention_bytes)
            .field("compaction_map_bytes", &self.compaction_map_bytes)
            .field("min_cleanable_dirty_ratio", &self.min_cleanable_dirty_ratio)
            .field("segment_cache", &self.segment_cache)
            .field("codec", &self.codec.is_some())
            .finish_non_exhaustive()
    }
}

/// Smallest allowed segment size: a header plus room for a small batch.
pub const SEGMENT_BYTES_MIN: u64 = 1024;
/// Largest allowed segment size: positions in index files are 32-bit.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;

impl LogConfig {
    /// Checks every value's range.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(LogError::Config(m));
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return bad(format!(
                "segment_bytes {} outside [{SEGMENT_BYTES_MIN}, {SEGMENT_BYTES_MAX}]",
                self.segment_bytes
            ));
        }
        if self.segment_ms <= 0 {
            return bad(format!("segment_ms {} must be positive", self.segment_ms));
        }
        if self.batch_bytes_max < crate::batch::HEADER_BYTES {
            return bad(format!(
                "batch_bytes_max {} is below a batch header",
                self.batch_bytes_max
            ));
        }
        if self.index_interval_bytes == 0
            || self.checkpoint_interval_bytes == 0
            || self.compaction_map_bytes == 0
        {
            return bad(
                "index_interval_bytes, checkpoint_interval_bytes and compaction_map_bytes \
                 must be positive"
                    .into(),
            );
        }
        if !(0.0..=1.0).contains(&self.min_cleanable_dirty_ratio) {
            return bad(format!(
                "min_cleanable_dirty_ratio {} outside [0, 1]",
                self.min_cleanable_dirty_ratio
            ));
        }
        if matches!(self.retention_ms, Some(ms) if ms < 0) || self.delete_retention_ms < 0 {
            return bad("retention times must not be negative".into());
        }
        Ok(())
    }

    /// True when retention by time and size applies.
    pub fn deletes(&self) -> bool {
        matches!(
            self.cleanup,
            CleanupPolicy::Delete | CleanupPolicy::CompactDelete
        )
    }

    /// True when compaction applies.
    pub fn compacts(&self) -> bool {
        matches!(
            self.cleanup,
            CleanupPolicy::Compact | CleanupPolicy::CompactDelete
        )
    }
}
