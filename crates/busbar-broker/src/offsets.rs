//! Committed consumer offsets, stored in an internal compacted log (like Kafka's
//! `__consumer_offsets`): one record per (group, topic, partition), the latest wins, a tombstone
//! deletes. Concurrent commits share fsyncs through the log's group commit, so a commit is durable
//! when acknowledged without costing one fsync each. The in-memory map applies a commit only if its
//! log offset is newer than what it holds, so memory and replay agree on "last in log order wins".

use crate::error::Result;
use crate::kvlog::KvLog;
use busbar_log::disk::Storage;
use busbar_log::Clock;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
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
    log: KvLog,
    table: Arc<Mutex<Table>>,
    clock: Arc<dyn Clock>,
    /// Damaged ranges skipped at open (their commits are lost; groups fall back to older ones).
    damage: Vec<String>,
}

fn encode_key(k: &Key) -> Vec<u8> {
    serde_json::to_vec(&(&k.0, &k.1, k.2)).expect("tuple encodes")
}

fn decode_key(b: &[u8]) -> Option<Key> {
    serde_json::from_slice(b).ok()
}

impl OffsetStore {
    /// Opens the store in `dir`, replaying its log.
    pub fn open(storage: Arc<dyn Storage>, clock: Arc<dyn Clock>) -> Result<Self> {
        let mut store = Self {
            log: KvLog::open(storage, clock.clone())?,
            table: Arc::default(),
            clock,
            damage: Vec::new(),
        };
        {
            let mut table = store.table.lock().unwrap_or_else(|e| e.into_inner());
            store.damage = store.log.replay(|at, key, value| {
                if let Some(key) = decode_key(key) {
                    apply(
                        &mut table,
                        key,
                        at,
                        value.and_then(|v| serde_json::from_slice(v).ok()),
                    );
                }
            })?;
        }
        Ok(store)
    }

    /// Damaged ranges of the offsets log skipped when it was opened.
    pub fn damage(&self) -> &[String] {
        &self.damage
    }

    /// Commits offsets for `group` durably: all or nothing when they fit in one batch of the
    /// offsets log (1 MiB, some 10,000 partitions); a larger commit is written batch after batch,
    /// and a failure part-way leaves the earlier batches committed (and answers the error).
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

    /// Deletes every group's committed offsets of `topic` (a topic deleted, or one created under a
    /// name whose old offsets a crash or a failure part-way through a deletion left behind).
    pub async fn delete_topic(&self, topic: &str) -> Result<()> {
        let keys: Vec<Key> = {
            let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
            t.entries
                .iter()
                .filter(|(k, (_, v))| v.is_some() && k.1 == topic)
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
        let encoded = rows
            .iter()
            .map(|(k, v)| {
                let value = v
                    .as_ref()
                    .map(|v| serde_json::to_vec(v).expect("offset encodes"));
                (encode_key(k), value)
            })
            .collect();
        let table = self.table.clone();
        self.log
            .write(encoded, move |offsets| {
                let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
                for ((k, v), at) in rows.into_iter().zip(offsets) {
                    apply(&mut table, k, at, v);
                }
            })
            .await
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
        self.log.compact()
    }

    /// Clean shutdown of the offsets log.
    pub fn close(&self) -> Result<()> {
        self.log.close()
    }
}

fn apply(table: &mut Table, key: Key, at: u64, value: Option<Committed>) {
    if table.entries.get(&key).is_some_and(|(o, _)| *o > at) {
        return;
    }
    table.entries.insert(key, (at, value));
}
