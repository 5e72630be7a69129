//! Committed consumer offsets, stored in an internal compacted log (like Kafka's
//! `__consumer_offsets`): one record per (group, topic, partition), the latest wins, a tombstone
//! deletes. Concurrent commits share fsyncs through the log's group commit, so a commit is durable
//! when acknowledged without costing one fsync each. The in-memory map applies a commit only if its
//! log offset is newer than what it holds, so memory and replay agree on "last in log order wins".
//!
//! Kafka stores whatever offset a client commits, negative ones included (kafkajs commits -1 and
//! -2 when it resets a position), and answers them back: so does busbar ([`RawCommit`]). A negative
//! value is not a position, so [`Committed`] (what busbar's own consumers and lag read) holds only
//! offsets >= 0 and a negative commit reads as none there. On disk the value is a JSON number
//! either way: records written when offsets were unsigned load unchanged.

use crate::error::Result;
use crate::kvlog::KvLog;
use busbar_log::disk::Storage;
use busbar_log::Clock;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// A committed position (offset >= 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: u64,
    pub metadata: String,
    pub commit_ms: i64,
}

/// A commit as stored: any offset a Kafka client sends. Same JSON field names as `Committed`
/// always had, so old records (unsigned offsets) decode into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stored {
    offset: i64,
    metadata: String,
    commit_ms: i64,
}

impl Stored {
    fn position(&self) -> Option<Committed> {
        Some(Committed {
            offset: u64::try_from(self.offset).ok()?,
            metadata: self.metadata.clone(),
            commit_ms: self.commit_ms,
        })
    }
}

/// An offset as a Kafka client commits and fetches it: any i64, negative values included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawCommit {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub metadata: String,
}

impl From<OffsetCommit> for RawCommit {
    fn from(c: OffsetCommit) -> Self {
        Self {
            topic: c.topic,
            partition: c.partition,
            // Offsets past i64::MAX do not exist in a log; saturate rather than wrap negative.
            offset: i64::try_from(c.offset).unwrap_or(i64::MAX),
            metadata: c.metadata,
        }
    }
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
    entries: HashMap<Key, (u64, Option<Stored>)>,
}

/// The durable store of committed offsets.
pub struct OffsetStore {
    log: KvLog,
    table: Arc<Mutex<Table>>,
    clock: Arc<dyn Clock>,
    /// Damaged ranges skipped at open (their commits are lost; groups fall back to older ones).
    damage: Vec<String>,
    /// Cluster mode: the shared store, written first (the local log is then a copy).
    pub(crate) shared: std::sync::OnceLock<Arc<dyn crate::shared::SharedLog>>,
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
            shared: Default::default(),
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
    pub(crate) async fn commit(&self, group: &str, commits: Vec<RawCommit>) -> Result<()> {
        if commits.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let rows: Vec<(Key, Option<Stored>)> = commits
            .into_iter()
            .map(|c| {
                let value = Stored {
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
    /// Cluster mode: in the local copy only; the catalog's topic deletion removes them from the
    /// shared store in its own transaction.
    pub async fn delete_topic(&self, topic: &str) -> Result<()> {
        let keys: Vec<Key> = {
            let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
            t.entries
                .iter()
                .filter(|(k, (_, v))| v.is_some() && k.1 == topic)
                .map(|(k, _)| k.clone())
                .collect()
        };
        let rows = keys.into_iter().map(|k| (k, None)).collect();
        if self.shared.get().is_some() {
            return self.write_local(rows).await;
        }
        self.write(rows).await
    }

    /// Deletes the committed offsets of these partitions of `group`.
    pub async fn delete_partitions(&self, group: &str, parts: &[(String, u32)]) -> Result<()> {
        let rows = parts
            .iter()
            .map(|(t, p)| ((group.to_string(), t.clone(), *p), None))
            .collect();
        self.write(rows).await
    }

    /// Makes the local copy of `group`'s offsets the shared store's `rows` (cluster mode, when
    /// this broker takes the group's lease).
    pub(crate) async fn replace_group(
        &self,
        group: &str,
        rows: Vec<crate::shared::OffsetRow>,
    ) -> Result<()> {
        let mut local: Vec<(Key, Option<Stored>)> = {
            let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
            t.entries
                .iter()
                .filter(|(k, (_, v))| k.0 == group && v.is_some())
                .map(|(k, _)| (k.clone(), None))
                .collect()
        };
        local.retain(|(k, _)| !rows.iter().any(|r| r.topic == k.1 && r.partition == k.2));
        for r in rows {
            let value = r.value.map(|(offset, metadata, commit_ms)| Stored {
                offset,
                metadata,
                commit_ms,
            });
            local.push(((group.to_string(), r.topic, r.partition), value));
        }
        self.write_local(local).await
    }

    async fn write(&self, rows: Vec<(Key, Option<Stored>)>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        if let Some(shared) = self.shared.get() {
            let shared_rows = rows
                .iter()
                .map(|((group, topic, partition), v)| crate::shared::OffsetRow {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    value: v
                        .as_ref()
                        .map(|v| (v.offset, v.metadata.clone(), v.commit_ms)),
                })
                .collect();
            shared.write_offsets(shared_rows).await?;
        }
        self.write_local(rows).await
    }

    async fn write_local(&self, rows: Vec<(Key, Option<Stored>)>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
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

    /// The committed position of one partition (`None` also when the commit is negative).
    pub fn get(&self, group: &str, topic: &str, partition: u32) -> Option<Committed> {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.entries
            .get(&(group.to_string(), topic.to_string(), partition))
            .and_then(|(_, c)| c.as_ref()?.position())
    }

    /// The commit of one partition as the client sent it (negative offsets included).
    pub(crate) fn get_raw(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Option<(i64, String)> {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.entries
            .get(&(group.to_string(), topic.to_string(), partition))
            .and_then(|(_, c)| c.as_ref().map(|c| (c.offset, c.metadata.clone())))
    }

    /// Every committed position of `group`, by (topic, partition).
    pub fn group(&self, group: &str) -> BTreeMap<(String, u32), Committed> {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.entries
            .iter()
            .filter(|(k, _)| k.0 == group)
            .filter_map(|(k, (_, c))| c.as_ref()?.position().map(|c| ((k.1.clone(), k.2), c)))
            .collect()
    }

    /// At most `max` committed positions of every group, (group, topic, partition, commit), in
    /// key order, read under one hold of the lock.
    pub fn all(&self, max: usize) -> Vec<(String, String, u32, Committed)> {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        (t.entries.iter())
            .filter_map(|(k, (_, c))| {
                let c = c.as_ref()?.position()?;
                Some((k.0.clone(), k.1.clone(), k.2, c))
            })
            .take(max)
            .collect()
    }

    /// Every commit of `group` as the client sent it (negative offsets included), in
    /// (topic, partition) order.
    pub(crate) fn group_raw(&self, group: &str) -> Vec<RawCommit> {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<RawCommit> = t
            .entries
            .iter()
            .filter(|(k, _)| k.0 == group)
            .filter_map(|(k, (_, c))| {
                c.as_ref().map(|c| RawCommit {
                    topic: k.1.clone(),
                    partition: k.2,
                    offset: c.offset,
                    metadata: c.metadata.clone(),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        out
    }

    /// True when `group` has at least one committed offset.
    pub(crate) fn has_group(&self, group: &str) -> bool {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.entries
            .iter()
            .any(|(k, (_, v))| k.0 == group && v.is_some())
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

fn apply(table: &mut Table, key: Key, at: u64, value: Option<Stored>) {
    if table.entries.get(&key).is_some_and(|(o, _)| *o > at) {
        return;
    }
    table.entries.insert(key, (at, value));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_written_with_unsigned_offsets_still_load() {
        // What the store wrote when offsets were u64 (the same JSON, any value up to i64::MAX).
        let old = serde_json::to_vec(&Committed {
            offset: 42,
            metadata: "m".into(),
            commit_ms: 7,
        })
        .unwrap();
        let stored: Stored = serde_json::from_slice(&old).unwrap();
        assert_eq!(stored.position().unwrap().offset, 42);
        let negative = serde_json::to_vec(&Stored {
            offset: -2,
            metadata: String::new(),
            commit_ms: 7,
        })
        .unwrap();
        let back: Stored = serde_json::from_slice(&negative).unwrap();
        assert_eq!((back.offset, back.position()), (-2, None));
    }
}
