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

    /// The stored topics; `None` when the document does not exist.
    pub fn load_existing(&self) -> Result<Option<Vec<TopicMeta>>> {
        let doc: Option<Document> = load_versioned(self.storage.as_ref(), FILE, VERSION)?;
        Ok(doc.map(|d| d.topics))
    }

    /// The document's path as a person reads it.
    pub fn describe(&self) -> String {
        self.storage.describe(FILE)
    }

    /// Replaces the stored topics durably.
    pub fn save(&self, topics: &[TopicMeta]) -> Result<()> {
        let doc = Document {
            version: VERSION,
            topics: topics.to_vec(),
        };
        save_json(self.storage.as_ref(), FILE, &doc)
    }
}

/// Reads a JSON document with a `version` field; `None` when the file does not exist. A damaged
/// document or another version is an error naming the file (it is never overwritten or reset).
pub fn load_versioned<T: serde::de::DeserializeOwned>(
    storage: &dyn Storage,
    file: &str,
    version: u32,
) -> Result<Option<T>> {
    let path = storage.describe(file);
    let Some(bytes) =
        disk::read_all(storage, file).map_err(|e| storage_err(&format!("read {path}"), e))?
    else {
        return Ok(None);
    };
    let damaged = |e: &dyn std::fmt::Display| {
        storage_err(
            &format!("{path} is damaged (not overwritten; restore or remove it)"),
            e,
        )
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| damaged(&e))?;
    let found = v.get("version").and_then(serde_json::Value::as_u64);
    if found != Some(u64::from(version)) {
        return Err(storage_err(
            &path,
            format!("format version {found:?} is not {version}"),
        ));
    }
    serde_json::from_value(v).map(Some).map_err(|e| damaged(&e))
}

/// Replaces a JSON document durably (temp file, fsync, rename, directory fsync).
pub fn save_json<T: Serialize>(storage: &dyn Storage, file: &str, doc: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(doc).expect("metadata encodes");
    disk::write_atomic(storage, file, &bytes)
        .map_err(|e| storage_err(&format!("write {}", storage.describe(file)), e))
}
