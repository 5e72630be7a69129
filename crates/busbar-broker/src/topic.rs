//! Topics and partitions: name rules, the partition handle (its log and the wake-up for long-polling
//! fetches), the descriptions the broker answers with, and lookups by record timestamp (Kafka's
//! ListOffsets by time and max timestamp).

use crate::broker::Broker;
use crate::config::TopicConfig;
use crate::error::{BrokerError, Result};
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
        let (_, hw) = self.offsets_of(topic, partition)?;
        let at = self.offset_for_timestamp(topic, partition, ts)?;
        if at >= hw {
            return Ok(None);
        }
        let data = self.read_now(topic, partition, at, 1)?;
        let events = crate::event::decode(topic, partition as u32, &data, at)?;
        Ok(events
            .iter()
            .find(|e| e.timestamp >= ts)
            .or(events.first())
            .map(|e| (e.offset, e.timestamp)))
    }

    /// The offset and timestamp of the record with the largest timestamp (the first of equal
    /// ones), Kafka's ListOffsets -3; `None` for an empty partition. The log finds the batch from
    /// each segment's kept maximum (reading only that batch, in the common case); only it is
    /// decoded. Compaction keeps a batch's max timestamp when it removes the record that set it:
    /// then the batch's latest remaining record answers, as close as the batch allows.
    pub fn max_timestamp(&self, topic: &str, partition: i64) -> Result<Option<(u64, i64)>> {
        let t = self.topic(topic)?;
        let p = t.partition(partition)?;
        let Some(found) = p.log.max_timestamp()? else {
            return Ok(None);
        };
        let start = p.log.stats().log_start;
        let events = crate::event::decode(topic, partition as u32, &found.batch, start)?;
        let exact = events.iter().find(|e| e.timestamp == found.timestamp);
        let latest = || {
            let max = events.iter().map(|e| e.timestamp).max()?;
            events.iter().find(|e| e.timestamp == max)
        };
        Ok(exact.or_else(latest).map(|e| (e.offset, e.timestamp)))
    }
}

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
