//! Durable topic metadata: one JSON document (`meta/topics.json`) replaced atomically on every change
//! (temp file, fsync, rename, directory fsync). Topic changes are rare, so rewriting the whole
//! document is simpler than a journal. A damaged document stops start-up with a clear error; it is
//! never silently reset.

use crate::error::{BrokerError, Result};
use busbar_log::disk::{self, Storage};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

const FILE: &str = "topics.json";
const VERSION: u32 = 1;

/// What is stored about one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    /// 32 hex digits, stable for the topic's life (Kafka's topic id).
    pub id: String,
    pub partitions: u32,
    /// Only the configs set on this topic; the rest come from the broker defaults.
    pub configs: BTreeMap<String, String>,
    pub created_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct Document {
    version: u32,
    topics: Vec<TopicMeta>,
}

/// The metadata directory.
pub struct MetaStore {
    storage: Arc<dyn Storage>,
}

fn storage_err(what: &str, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Storage(format!("{what}: {e}"))
}

impl MetaStore {
    /// The metadata directory.
    pub fn open(storage: Arc<dyn Storage>) -> Result<Self> {
        Ok(Self { storage })
    }

    /// The stored topics (none on a fresh directory).
    pub fn load(&self) -> Result<Vec<TopicMeta>> {
        let path = self.storage.describe(FILE);
        let Some(bytes) = disk::read_all(self.storage.as_ref(), FILE)
            .map_err(|e| storage_err("read topic metadata", e))?
        else {
            return Ok(Vec::new());
        };
        let doc: Document = serde_json::from_slice(&bytes).map_err(|e| {
            storage_err(
                &format!(
                    "{} is damaged (not overwritten; restore or remove it)",
                    path
                ),
                e,
            )
        })?;
        if doc.version != VERSION {
            return Err(storage_err(
                &path.to_string(),
                format!("metadata version {} is not {VERSION}", doc.version),
            ));
        }
        Ok(doc.topics)
    }

    /// Replaces the stored topics durably.
    pub fn save(&self, topics: &[TopicMeta]) -> Result<()> {
        let doc = Document {
            version: VERSION,
            topics: topics.to_vec(),
        };
        let bytes =
            serde_json::to_vec_pretty(&doc).map_err(|e| storage_err("encode topic metadata", e))?;
        disk::write_atomic(self.storage.as_ref(), FILE, &bytes)
            .map_err(|e| storage_err("write topic metadata", e))
    }
}
