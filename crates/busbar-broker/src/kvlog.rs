//! An internal compacted log of key/value records (like Kafka's `__consumer_offsets`): the broker's
//! durable tables (committed offsets, subscription retry state) are each one of these. A write is
//! one batch (several consecutive ones past the log's batch limit) appended through group commit,
//! so it is durable when acknowledged without costing one fsync per row; a `None` value is a tombstone. Replay yields every row in log order, and each row
//! carries its log offset so a table can apply "last in log order wins" even when a late write is
//! applied after a newer one.

use crate::error::{BrokerError, Result};
use busbar_log::batch::{self, BatchHeader, NewRecord, Records, HEADER_BYTES};
use busbar_log::disk::Storage;
use busbar_log::{CleanupPolicy, Clock, Log, LogConfig};
use std::sync::Arc;

/// Room left for a segment's own header when sizing batches.
const SEGMENT_HEADER_ALLOWANCE: usize = 4096;

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

    /// Calls `f(log offset, key, value)` for every stored row, in log order. A damaged range is
    /// skipped (to the next segment) and described in the answer, so one bad batch costs the rows
    /// written there, not the whole table: a key whose newest row was in it falls back to its
    /// previous row (for committed offsets: an older position, so events are delivered again,
    /// never skipped).
    pub fn replay(&self, mut f: impl FnMut(u64, &[u8], Option<&[u8]>)) -> Result<Vec<String>> {
        let mut offset = self.log.stats().log_start;
        let mut damage = Vec::new();
        loop {
            let r = match self.log.read(offset, 1 << 20) {
                Ok(r) => r,
                Err(e @ busbar_log::LogError::Corrupt { .. }) => {
                    let next = self.log.next_segment_base(offset);
                    damage.push(format!(
                        "{e}; rows from offset {offset} to {} skipped",
                        next.map_or("the end".to_string(), |n| (n - 1).to_string())
                    ));
                    match next {
                        Some(n) => {
                            offset = n;
                            continue;
                        }
                        None => return Ok(damage),
                    }
                }
                Err(e) => return Err(e.into()),
            };
            if r.data.is_empty() {
                return Ok(damage);
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

    /// Appends `rows` durably, as one batch when they fit in the log's batch limit and as several
    /// consecutive batches otherwise (each durable before the next is written), then calls
    /// `apply(offsets)` on a blocking thread with the log offset of every row written: all of them,
    /// or, when a batch failed, those of the batches before it (and the error is returned). A
    /// caller that stops waiting cannot leave the log and its table disagreeing.
    pub async fn write(
        &self,
        rows: Vec<Row>,
        apply: impl FnOnce(Vec<u64>) + Send + 'static,
    ) -> Result<()> {
        self.write_batches(rows, false, apply).await
    }

    /// [`write`](Self::write) all-or-nothing: `rows` that do not fit one batch of the log are
    /// refused ([`BrokerError::InvalidRequest`], nothing written). A failed sync still leaves
    /// the outcome unknown (the batch may be on disk after a restart), as for every write.
    pub async fn write_whole(
        &self,
        rows: Vec<Row>,
        apply: impl FnOnce(Vec<u64>) + Send + 'static,
    ) -> Result<()> {
        self.write_batches(rows, true, apply).await
    }

    async fn write_batches(
        &self,
        rows: Vec<Row>,
        whole: bool,
        apply: impl FnOnce(Vec<u64>) + Send + 'static,
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
        let cfg = self.log.config();
        let limit = cfg
            .batch_bytes_max
            .min((cfg.segment_bytes as usize).saturating_sub(SEGMENT_HEADER_ALLOWANCE));
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || {
            let mut offsets = Vec::with_capacity(recs.len());
            let mut result = Ok(());
            let batches = chunks(&recs, limit)?;
            if whole && batches.len() > 1 {
                return Err(BrokerError::InvalidRequest(format!(
                    "{} rows take more than one batch of at most {limit} bytes",
                    recs.len()
                )));
            }
            for mut b in batches {
                match log.append(&mut b) {
                    Ok(at) => offsets.extend(at.base_offset..=at.last_offset),
                    Err(e) => {
                        result = Err(e.into());
                        break;
                    }
                }
            }
            apply(offsets);
            result
        })
        .await
        .map_err(|e| BrokerError::Storage(format!("internal log write failed: {e}")))?
    }

    /// Whether any row was ever written (offsets are never reused, so compaction keeps this).
    pub fn ever_written(&self) -> bool {
        self.log.stats().next_offset > 0
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

/// `recs` as consecutive batches of at most `limit` bytes each. A single row larger than that is
/// an error (nothing written).
fn chunks(recs: &[NewRecord], limit: usize) -> Result<Vec<Vec<u8>>> {
    let b = batch::build(recs);
    if b.len() <= limit {
        return Ok(vec![b]);
    }
    if recs.len() == 1 {
        return Err(BrokerError::InvalidRequest(format!(
            "an internal record of {} bytes exceeds the batch limit of {limit} bytes",
            b.len()
        )));
    }
    let (left, right) = recs.split_at(recs.len() / 2);
    let mut out = chunks(left, limit)?;
    out.extend(chunks(right, limit)?);
    Ok(out)
}
