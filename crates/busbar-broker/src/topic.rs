//! Topics and partitions: name rules, the partition handle (its log and the wake-up for long-polling
//! fetches), the descriptions the broker answers with, and lookups by record timestamp (Kafka's
//! ListOffsets by time and max timestamp).

use crate::broker::Broker;
use crate::config::TopicConfig;
use crate::error::{BrokerError, Result};
use busbar_log::batch::BatchHeader;
use busbar_log::disk::Storage;
use busbar_log::Log;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// Longest topic name (Kafka's limit).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Checks a topic name as Kafka does: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(BrokerError::InvalidTopicName {
            name: name.chars().take(300).collect(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return bad("it is longer than 249 characters");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not allowed");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// True when `name` and `other` differ but are equal once `.` and `_` are treated alike (Kafka
/// refuses the second of two such names: they map to the same metric names).
pub(crate) fn collides(name: &str, other: &str) -> bool {
    name != other && name.len() == other.len() && name.replace('.', "_") == other.replace('.', "_")
}

impl Broker {
    /// An existing topic whose name collides with `name` once `.` and `_` are treated alike.
    pub fn colliding_topic(&self, name: &str) -> Option<String> {
        self.list_topics()
            .into_iter()
            .map(|t| t.name)
            .find(|t| collides(name, t))
    }

    /// The offset and timestamp of the first record whose timestamp is at or after `ts` (Kafka's
    /// ListOffsets by time), exact to the record in compressed batches too; `None` when none.
    pub fn find_timestamp(
        &self,
        topic: &str,
        partition: i64,
        ts: i64,
    ) -> Result<Option<(u64, i64)>> {
        let t = self.topic(topic)?;
        let p = t.partition(partition)?;
        let hw = p.log.stats().high_watermark;
        let mut from = 0;
        // The log answers to the batch for compressed ones; when the decoded batch holds no
        // record at or after `ts` from there (its match lies below the log start: DeleteRecords
        // cut it), the search goes on after that batch.
        while let Some(at) = p.log.offset_for_timestamp_from(ts, from)? {
            if at >= hw {
                break;
            }
            let data = p.log.read(at, 1)?.data;
            let events = crate::event::decode(topic, partition as u32, &data, at)?;
            if let Some(e) = events.iter().find(|e| e.timestamp >= ts) {
                return Ok(Some((e.offset, e.timestamp)));
            }
            let next = BatchHeader::parse(&data).map_or(at + 1, |h| h.next_offset().max(0) as u64);
            from = next.max(at + 1);
        }
        Ok(None)
    }

    /// The offset and timestamp of the record with the largest timestamp (the first of equal
    /// ones), Kafka's ListOffsets -3; `None` for an empty partition. The log finds the batch from
    /// each segment's kept maximum (reading only that batch, in the common case); only it is
    /// decoded. A batch header's maximum may name a record readers cannot see (below the log
    /// start after DeleteRecords cut the batch; compacted away by busbar before compaction
    /// rewrote headers): then that batch ranks by its visible records and the log is asked again
    /// without it, up to [`MAX_TIMESTAMP_RERANKS`] times.
    pub fn max_timestamp(&self, topic: &str, partition: i64) -> Result<Option<(u64, i64)>> {
        let t = self.topic(topic)?;
        let p = t.partition(partition)?;
        let start = p.log.stats().log_start;
        let mut skip = Vec::new();
        let mut best: Option<(u64, i64)> = None;
        for _ in 0..MAX_TIMESTAMP_RERANKS {
            let Some(found) = p.log.max_timestamp_skipping(&skip)? else {
                break;
            };
            let base = BatchHeader::parse(&found.batch).map_or(0, |h| h.base_offset.max(0) as u64);
            // Every batch left claims at most `found.timestamp`: a visible record reaching it
            // already (an earlier one on ties) cannot be beaten.
            if best.is_some_and(|(o, t)| t > found.timestamp || (t == found.timestamp && o < base))
            {
                break;
            }
            let events = crate::event::decode(topic, partition as u32, &found.batch, start)?;
            let top = events.iter().fold(None::<(u64, i64)>, |m, e| match m {
                Some((_, t)) if t >= e.timestamp => m,
                _ => Some((e.offset, e.timestamp)),
            });
            if let Some((o, t)) = top {
                if best.is_none_or(|(bo, bt)| t > bt || (t == bt && o < bo)) {
                    best = Some((o, t));
                }
                if t >= found.timestamp {
                    break;
                }
            }
            skip.push(base);
        }
        Ok(best)
    }
}

/// How many batches [`Broker::max_timestamp`] ranks again by their visible records before it
/// answers the best found so far (each costs a look-up that may scan one segment). Only a batch
/// cut by the log start, or compacted before headers were rewritten, needs it.
pub const MAX_TIMESTAMP_RERANKS: usize = 16;

/// One partition: its log and the signal that wakes fetches waiting for new data.
pub struct Partition {
    pub index: u32,
    pub log: Arc<Log>,
    /// The partition's directory (the log's, and the producer-state snapshot's).
    pub dir: Arc<dyn Storage>,
    pub appended: Notify,
    pub producers: crate::producers::PartitionProducers,
    /// How `producers` was restored at open.
    pub restored: crate::producers::Restored,
    /// Group-commit driver of the Kafka produce path.
    pub sync: crate::sync::Syncer,
    /// Open and aborted transactions here (kept by the coordinator, `txn.rs`).
    pub txns: crate::txn::PartitionTxns,
    /// Cluster mode: the local copy's state (`shared.rs`).
    pub replica: crate::shared::Replica,
}

impl Partition {
    /// The partition's start as reported: the local copy's log start, or in cluster mode the
    /// shared start heard of (DeleteRecords, retention) when the copy has not dropped the
    /// records below it yet (it does once it holds that offset, `shared.rs`).
    pub(crate) fn reported_start(&self) -> u64 {
        let s = self.log.stats();
        // Never past the end reported with it (a copy trims once it holds the new start).
        s.log_start
            .max(self.replica.shared_start())
            .min(self.reported_end())
    }

    /// The partition's last stable offset below `end` (every transaction below it has ended),
    /// never below the reported start: a transaction left open below a start that DeleteRecords
    /// moved past it does not hold readers below the start (Kafka clamps its first unstable
    /// offset so too).
    pub(crate) fn last_stable(&self, end: u64) -> u64 {
        self.txns
            .last_stable(end)
            .max(self.reported_start().min(end))
    }

    /// The partition's end as reported: the local copy's high watermark, or in cluster mode the
    /// shared end heard of when the copy is behind it (copies are caught up on read,
    /// `shared.rs`).
    pub(crate) fn reported_end(&self) -> u64 {
        self.log
            .stats()
            .high_watermark
            .max(self.replica.shared_end())
    }
}

/// A topic as the broker holds it in memory.
pub struct Topic {
    pub name: String,
    pub id: String,
    pub config: TopicConfig,
    pub overrides: BTreeMap<String, String>,
    pub partitions: Vec<Arc<Partition>>,
    pub created_ms: i64,
}

impl Topic {
    /// The partition with this index.
    pub fn partition(&self, index: i64) -> Result<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
            .ok_or_else(|| BrokerError::UnknownPartition {
                topic: self.name.clone(),
                partition: index,
            })
    }
}

/// A topic in listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub id: String,
    pub partitions: u32,
}

/// One partition's positions and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: u32,
    pub log_start: u64,
    pub high_watermark: u64,
    pub size_bytes: u64,
    pub segments: usize,
    /// Damaged ranges found in this partition's log since it was opened (never served).
    pub damaged_ranges: u64,
    /// A failed write or fsync took the log offline: it refuses writes until busbar restarts.
    pub offline: bool,
}

/// A topic with its partitions and effective configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub id: String,
    pub partitions: Vec<PartitionInfo>,
    /// Every config with its effective value.
    pub configs: BTreeMap<String, String>,
    /// The configs set on this topic (the rest are defaults).
    pub overrides: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_and_underscores_collide() {
        assert!(collides("a.b_x", "a_b_x"));
        assert!(collides("a_b", "a.b"));
        assert!(
            !collides("a.b", "a.b"),
            "the same name is an existing topic, not a collision"
        );
        assert!(!collides("a.b", "a-b"));
    }

    #[test]
    fn names_follow_kafkas_rules() {
        for ok in ["a", "orders", "my.topic_v2-x", &"x".repeat(249)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "has space",
            "slash/x",
            "ünï",
            &"x".repeat(250),
            "a\0b",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
