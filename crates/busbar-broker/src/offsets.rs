//! Committed consumer offsets, stored in an internal compacted log (like Kafka's
//! `__consumer_offsets`): one record per (group, topic, partition), the latest wins, a tombstone
//! deletes. Concurrent commits share fsyncs through the log's group commit, so a commit is durable
//! when acknowledged without costing one fsync each. The in-memory map applies a commit only if its
//! log offset is newer than what it holds, so memory and replay agree on "last in log order wins".

use crate::error::{BrokerError, Result};
use busbar_log::batch::{self, BatchHeader, NewRecord, Records, HEADER_BYTES};
use busbar_log::disk::{FileStorage, Storage};
use busbar_log::{CleanupPolicy, Clock, Log, LogConfig};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: u64,
    pub metadata: String,
    pub commit_ms: i64,
}

/// One offset to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub metadata: String,
}

type Key = (String, String, u32);

#[derive(Default)]
struct Table {
    /// (group, topic, partition) -> (log offset of the record, value; `None` once deleted, kept so
    /// an older commit applied late cannot resurrect it).
    entries: HashMap<Key, (u64, Option<Committed>)>,
}

/// The durable store of committed offsets.
pub struct OffsetStore {
    log: Arc<Log>,
    table: Arc<Mutex<Table>>,
    clock: Arc<dyn Clock>,
}

fn encode_key(k: &Key) -> Vec<u8> {
    serde_json::to_vec(&(&k.0, &k.1, k.2)).expect("tuple encodes")
}

fn decode_key(b: &[u8]) -> Option<Key> {
    serde_json::from_slice(b).ok()
}

impl OffsetStore {
    /// Opens the store in `dir`, replaying its log.
    pub fn open(dir: &Path, clock: Arc<dyn Clock>) -> Result<Self> {
        let storage = FileStorage::open(dir)
            .map_err(|e| BrokerError::Storage(format!("open {}: {e}", dir.display())))?;
        let config = LogConfig {
            cleanup: CleanupPolicy::Compact,
            segment_bytes: 16 << 20,
            retention_ms: None,
            clock: clock.clone(),
            ..LogConfig::default()
        };
        let log = Arc::new(Log::open(Arc::new(storage) as Arc<dyn Storage>, config)?);
        let store = Self {
            log,
            table: Arc::default(),
            clock,
        };
        store.replay()?;
        Ok(store)
    }

    fn replay(&self) -> Result<()> {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
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
                    let at = h.base_offset as u64 + rec.offset_delta as u64;
                    let Some(key) = rec.key.and_then(decode_key) else {
                        continue;
                    };
                    apply(
                        &mut table,
                        key,
                        at,
                        rec.value.and_then(|v| serde_json::from_slice(v).ok()),
                    );
                }
                offset = h.last_offset() as u64 + 1;
                pos += len;
            }
        }
    }

    /// Commits offsets for `group` durably; all or nothing.
    pub async fn commit(&self, group: &str, commits: Vec<OffsetCommit>) -> Result<()> {
        if commits.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let rows: Vec<(Key, Option<Committed>)> = commits
            .into_iter()
            .map(|c| {
                let value = Committed {
                    offset: c.offset,
                    metadata: c.metadata,
                    commit_ms: now,
                };
                ((group.to_string(), c.topic, c.partition), Some(value))
            })
            .collect();
        self.write(rows).await
    }

    /// Deletes every committed offset of `group` (or only those of `topic`).
    pub async fn delete(&self, group: &str, topic: Option<&str>) -> Result<()> {
        let keys: Vec<Key> = {
            let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
            t.entries
                .iter()
                .filter(|(k, (_, v))| {
                    v.is_some() && k.0 == group && topic.is_none_or(|tp| k.1 == tp)
                })
                .map(|(k, _)| k.clone())
                .collect()
        };
        self.write(keys.into_iter().map(|k| (k, None)).collect())
            .await
    }

    /// Deletes the committed offsets of these partitions of `group`.
    pub async fn delete_partitions(&self, group: &str, parts: &[(String, u32)]) -> Result<()> {
        let rows = parts
            .iter()
            .map(|(t, p)| ((group.to_string(), t.clone(), *p), None))
            .collect();
        self.write(rows).await
    }

    async fn write(&self, rows: Vec<(Key, Option<Committed>)>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let recs: Vec<NewRecord> = rows
            .iter()
            .map(|(k, v)| NewRecord {
                key: Some(encode_key(k)),
                value: v
                    .as_ref()
                    .map(|v| serde_json::to_vec(v).expect("offset encodes")),
                headers: vec![],
                timestamp: now,
            })
            .collect();
        let mut b = batch::build(&recs);
        let (log, table) = (self.log.clone(), self.table.clone());
        // Append and apply in one blocking task: a caller that stops waiting (a closed connection)
        // cannot leave the log and the in-memory table disagreeing.
        tokio::task::spawn_blocking(move || {
            let at = log.append(&mut b)?;
            let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
            for (i, (k, v)) in rows.into_iter().enumerate() {
                apply(&mut table, k, at.base_offset + i as u64, v);
            }
            Ok::<_, BrokerError>(())
        })
        .await
        .map_err(|e| BrokerError::Storage(format!("commit task failed: {e}")))?
    }

    /// The committed offset of one partition.
    pub fn get(&self, group: &str, topic: &str, partition: u32) -> Option<Committed> {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.entries
            .get(&(group.to_string(), topic.to_string(), partition))
            .and_then(|(_, c)| c.clone())
    }

    /// Every committed offset of `group`, by (topic, partition).
    pub fn group(&self, group: &str) -> BTreeMap<(String, u32), Committed> {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.entries
            .iter()
            .filter(|(k, _)| k.0 == group)
            .filter_map(|(k, (_, c))| c.clone().map(|c| ((k.1.clone(), k.2), c)))
            .collect()
    }

    /// Groups with at least one committed offset.
    pub fn groups(&self) -> Vec<String> {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut g: Vec<String> = t
            .entries
            .iter()
            .filter(|(_, (_, v))| v.is_some())
            .map(|(k, _)| k.0.clone())
            .collect();
        g.sort();
        g.dedup();
        g
    }

    /// Compacts the offsets log.
    pub fn maintain(&self) -> Result<()> {
        self.log.compact()?;
        Ok(())
    }

    /// Clean shutdown of the offsets log.
    pub fn close(&self) -> Result<()> {
        Ok(self.log.close()?)
    }
}

fn apply(table: &mut Table, key: Key, at: u64, value: Option<Committed>) {
    if table.entries.get(&key).is_some_and(|(o, _)| *o > at) {
        return;
    }
    table.entries.insert(key, (at, value));
}
