//! Errors of the log engine.
//!
//! `BatchError` says why a batch was refused (the caller maps it to a wire code); `LogError` is
//! everything an operation on a log can answer. Messages name the file, position or field at fault.

use std::io;

/// Why a record batch was refused. Nothing was written when a batch is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a batch header, or `batchLength` disagrees with the bytes given.
    #[error("batch length: {0}")]
    Length(String),
    /// The magic byte is not 2 (only RecordBatch v2 is stored).
    #[error("unsupported batch magic {0} (only 2 is accepted)")]
    Magic(i8),
    /// The CRC-32C over the batch does not match the stored one.
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    /// A header field is inconsistent (record count, offset delta, timestamps).
    #[error("invalid batch header: {0}")]
    Header(String),
    /// The records inside an uncompressed batch do not parse.
    #[error("invalid record: {0}")]
    Record(String),
    /// The batch is larger than the configured maximum.
    #[error("batch of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

/// Everything a log operation can answer.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The batch was refused; nothing was written.
    #[error("batch refused: {0}")]
    Batch(#[from] BatchError),
    /// The requested offset is below the log start offset or above the high watermark.
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: u64, start: u64, end: u64 },
    /// Stored bytes failed verification; they are never served.
    #[error("corrupt data in {file} at byte {position}: {reason}")]
    Corrupt {
        file: String,
        position: u64,
        reason: String,
    },
    /// A file has a format version this build does not know.
    #[error("{file}: unsupported format ({reason})")]
    UnsupportedFormat { file: String, reason: String },
    /// A previous sync or I/O failure took the log offline; nothing more is acknowledged.
    #[error("log is offline after an I/O failure: {0}")]
    Failed(String),
    /// The log was closed.
    #[error("log is closed")]
    Closed,
    /// An I/O operation failed.
    #[error("I/O error during {op}: {source}")]
    Io {
        op: String,
        #[source]
        source: io::Error,
    },
    /// Compaction cannot rewrite the segment based at `offset` (its rewrite would outgrow a
    /// segment); the pass stops there (segments rewritten before it in the pass stay rewritten).
    #[error("compaction cannot rewrite the segment at offset {offset}: {reason}")]
    Compaction { offset: u64, reason: String },
    /// A configuration value is outside its allowed range.
    #[error("invalid log config: {0}")]
    Config(String),
}

impl LogError {
    /// Wraps an I/O error with the operation that produced it.
    pub fn io(op: impl Into<String>, source: io::Error) -> Self {
        LogError::Io {
            op: op.into(),
            source,
        }
    }
}

/// Result of log operations.
pub type Result<T, E = LogError> = std::result::Result<T, E>;
