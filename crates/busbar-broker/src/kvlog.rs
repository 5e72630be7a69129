//! An internal compacted log of key/value records (like Kafka's `__consumer_offsets`): the broker's
//! durable tables (committed offsets, subscription retry state) are each one of these. A write is
//! one batch appended through group commit, so it is durable when acknowledged without costing one
//! fsync per row; a `None` value is a tombstone. Replay yields every row in log order, and each row
//! carries its log offset so a table can apply "last in log order wins" even when a late write is
//! applied after a newer one.

use crate::error::{BrokerError, Result};
use busbar_log::batch::{self, BatchHeader, NewRecord, Records, HEADER_BYTES};
use busbar_log::disk::Storage;
use busbar_log::{CleanupPolicy, Clock, Log, LogConfig};
use std::sync::Arc;

/// One row: key, value (`None` deletes).
pub type Row = (Vec<u8>, Option<Vec<u8>>);

/// A compacted internal log.
pub struct KvLog {
    log: Arc<Log>,
    clock: Arc<dyn Clock>,
}

impl KvLog {
    /// Opens the log in `storage`.
    pub fn open(storage: Arc<dyn Storage>, clock: Arc<dyn Clock>) -> Result<Self> {
        let config = LogConfig {
            cleanup: CleanupPolicy::Compact,
            segment_bytes: 16 << 20,
            retention_ms: None,
            clock: clock.clone(),
            ..LogConfig::default()
        };
        let log = Arc::new(Log::open(storage, config)?);
        Ok(Self { log, clock })
    }

    /// Calls `f(log offset, key, value)` for every stored row, in log order.
    pub fn replay(&self, mut f: impl FnMut(u64, &[u8], Option<&[u8]>)) -> Result<()> {
        let mut offset = self.log.stats().log_start;
        loop {
            let r = self.log.read(offset, 1 << 20)?;
            if r.data.is_empty() {
                return Ok(());
            }
            let mut pos = 0;
            while pos < r.data.len() {
                let h = BatchHeader::parse(&r.data[pos..])
                    .map_err(|e| BrokerError::Storage(e.to_string()))?;
                let len = h.total_len().unwrap_or(r.data.len() - pos);
                for rec in Records::new(&r.data[pos + HEADER_BYTES..pos + len]).flatten() {
                    if let Some(key) = rec.key {
                        f(
                            h.base_offset as u64 + rec.offset_delta as u64,
                            key,
                            rec.value,
                        );
                    }
                }
                offset = h.last_offset() as u64 + 1;
                pos += len;
            }
        }
    }

    /// Appends `rows` as one batch, durably, then calls `apply(first log offset)` on a blocking
    /// thread: a caller that stops waiting cannot leave the log and its table disagreeing.
    pub async fn write(
        &self,
        rows: Vec<Row>,
        apply: impl FnOnce(u64) + Send + 'static,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let recs: Vec<NewRecord> = rows
            .into_iter()
            .map(|(key, value)| NewRecord {
                key: Some(key),
                value,
                headers: vec![],
                timestamp: now,
            })
            .collect();
        let mut b = batch::build(&recs);
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || {
            let at = log.append(&mut b)?;
            apply(at.base_offset);
            Ok::<_, BrokerError>(())
        })
        .await
        .map_err(|e| BrokerError::Storage(format!("internal log write failed: {e}")))?
    }

    /// Compacts the log (latest row per key).
    pub fn compact(&self) -> Result<()> {
        self.log.compact()?;
        Ok(())
    }

    /// Clean shutdown.
    pub fn close(&self) -> Result<()> {
        Ok(self.log.close()?)
    }
}
