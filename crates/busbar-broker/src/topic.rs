//! Topics and partitions: name rules, the partition handle (its log and the wake-up for long-polling
//! fetches), and the descriptions the broker answers with.

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
