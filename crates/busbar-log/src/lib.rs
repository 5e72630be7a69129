//! busbar-log: the storage engine. A [`Log`] is one partition's append-only sequence of Kafka
//! RecordBatch v2 batches, split into segments with sparse offset and time indexes, recovered after a
//! crash by verifying only the unverified tail, synced per a [`SyncPolicy`] with group commit, and
//! cleaned by retention, delete-records and key compaction.
//!
//! It knows nothing of topics, Kafka requests or HTTP, and does all disk I/O through the
//! [`disk::Storage`] trait. The byte layout and the crash rules are in `docs/log-format.md`.
//!
//! ```
//! use busbar_log::{batch, disk::MemStorage, Log, LogConfig};
//! use std::sync::Arc;
//!
//! let log = Log::open(Arc::new(MemStorage::new()), LogConfig::default()).unwrap();
//! let mut b = batch::build(&[batch::NewRecord {
//!     key: Some(b"user-1".to_vec()),
//!     value: Some(b"hello".to_vec()),
//!     headers: vec![],
//!     timestamp: 1_700_000_000_000,
//! }]);
//! let at = log.append(&mut b).unwrap(); // returns once fdatasync'ed (default policy)
//! assert_eq!(at.base_offset, 0);
//! let read = log.read(0, 1 << 20).unwrap();
//! assert_eq!(read.data, b);
//! log.close().unwrap();
//! ```

pub mod batch;
mod cache;
mod checkpoint;
mod cleaner;
mod compact;
mod config;
pub mod disk;
mod error;
mod index;
mod log;
mod max_timestamp;
mod recovery;
mod segment;
pub mod stats;
mod sync;

pub use cache::{SegmentCache, INDEXES_MAX_DEFAULT, OPEN_FILES_MAX_DEFAULT};
pub use cleaner::CleanReport;
pub use compact::{
    for_each_keyed, Codec, Filter as CompactionFilter, HeldKeys, Kept, KeyMap,
    ENTRY_OVERHEAD_BYTES, REWRITE_CHUNK_BYTES,
};
pub use config::{CleanupPolicy, Clock, LogConfig, ManualClock, SyncPolicy, SystemClock};
pub use error::{BatchError, LogError, Result};
pub use log::{Appended, Log, LogStats, ReadResult};
pub use max_timestamp::MaxTimestamp;
pub use recovery::RecoveryReport;
pub use segment::{
    check_header_bytes as check_segment_header, header_bytes as segment_header_bytes,
    HEADER_BYTES as SEGMENT_HEADER_BYTES,
};
