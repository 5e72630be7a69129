//! Durable state of the bus. Subscriptions (spec and paused flag) are one JSON document,
//! `meta/subscriptions.json`, replaced atomically on every change, like topic metadata. Retry state is
//! an internal compacted log (`internal/retries`), one row per event awaiting another attempt (or
//! waiting behind its key), keyed by (subscription, topic, partition, offset); a tombstone ends it.
//! The event itself stays in its topic and is read back by offset when due (NATS-style: only the
//! retry state is stored, never a copy of the event).

use super::spec::SubscriptionSpec;
use crate::error::Result;
use busbar_broker::kvlog::KvLog;
use busbar_broker::metadata::{load_versioned, save_json};
use busbar_log::disk::Storage;
use busbar_log::Clock;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

const FILE: &str = "subscriptions.json";
const VERSION: u32 = 1;

/// A stored subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubRecord {
    pub spec: SubscriptionSpec,
    pub paused: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct Document {
    version: u32,
    subscriptions: Vec<SubRecord>,
}

/// The subscriptions document.
pub struct SubStore {
    storage: Arc<dyn Storage>,
}

impl SubStore {
    /// The metadata directory.
    pub fn open(storage: Arc<dyn Storage>) -> Self {
        Self { storage }
    }

    /// The stored subscriptions; a damaged document stops start-up (never silently reset).
    pub fn load(&self) -> Result<Vec<SubRecord>> {
        let doc: Option<Document> = load_versioned(self.storage.as_ref(), FILE, VERSION)?;
        Ok(doc.map(|d| d.subscriptions).unwrap_or_default())
    }

    /// Replaces the stored subscriptions durably.
    pub fn save(&self, subs: &[SubRecord]) -> Result<()> {
        let doc = Document {
            version: VERSION,
            subscriptions: subs.to_vec(),
        };
        Ok(save_json(self.storage.as_ref(), FILE, &doc)?)
    }
}

/// Which stored event a retry row is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventRef {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

/// Retry state of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryEntry {
    /// Attempts made so far.
    pub attempts: u32,
    /// Time of the first attempt (max age counts from here), ms since the epoch.
    pub first_ms: i64,
    pub last_ms: i64,
    /// When the next attempt is due; `None` while it waits behind an earlier event of its key.
    pub due_ms: Option<i64>,
    /// The ordering lane (hash of the key) when the subscription orders by key.
    pub lane: Option<u64>,
    pub reason: String,
    pub status: Option<u16>,
    pub error: String,
    /// Set when the event is settled as a dead letter (the value says why: `max_attempts`,
    /// `non_retriable`, ...) but the letter could not be written yet: the next attempt writes
    /// the letter again instead of delivering the event again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<String>,
}

type Table = HashMap<String, BTreeMap<EventRef, (u64, RetryEntry)>>;

/// The retry-state log and its table.
pub struct RetryStore {
    log: KvLog,
    table: Arc<Mutex<Table>>,
}

impl RetryStore {
    /// Opens the store in `dir`, replaying it.
    pub fn open(storage: Arc<dyn Storage>, clock: Arc<dyn Clock>) -> Result<Self> {
        let store = Self {
            log: KvLog::open(storage, clock)?,
            table: Arc::default(),
        };
        {
            let mut t = store.table.lock().unwrap_or_else(|e| e.into_inner());
            let damage = store.log.replay(|at, key, value| {
                let Ok((sub, r)) = serde_json::from_slice::<(String, EventRef)>(key) else {
                    return;
                };
                let v = value.and_then(|v| serde_json::from_slice(v).ok());
                apply(&mut t, sub, r, at, v);
            })?;
            // Unlike committed offsets, a lost retry entry is a lost event (its subscription's
            // position already passed it): refuse to start rather than drop it silently.
            if !damage.is_empty() {
                return Err(crate::error::BusError::Storage(format!(
                    "the retry-state log is damaged: {}",
                    damage.join("; ")
                )));
            }
        }
        Ok(store)
    }

    /// Every live entry of `sub`, by event.
    pub fn entries(&self, sub: &str) -> BTreeMap<EventRef, RetryEntry> {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.get(sub)
            .map(|m| m.iter().map(|(r, (_, e))| (r.clone(), e.clone())).collect())
            .unwrap_or_default()
    }

    /// How many entries `sub` has, and its newest entry after a failed attempt (by last attempt
    /// time): what a subscription's view shows, without copying every entry.
    pub fn summary(&self, sub: &str) -> (usize, Option<RetryEntry>) {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let Some(m) = t.get(sub) else {
            return (0, None);
        };
        let newest = (m.values().map(|(_, e)| e))
            .filter(|e| e.attempts > 0)
            .max_by_key(|e| e.last_ms);
        (m.len(), newest.cloned())
    }

    /// Writes (or with `None` ends) entries of `sub`, durably.
    pub async fn put(&self, sub: &str, rows: Vec<(EventRef, Option<RetryEntry>)>) -> Result<()> {
        let encoded = rows
            .iter()
            .map(|(r, e)| {
                let key = serde_json::to_vec(&(sub, r)).expect("key encodes");
                (
                    key,
                    e.as_ref()
                        .map(|e| serde_json::to_vec(e).expect("entry encodes")),
                )
            })
            .collect();
        let (table, sub) = (self.table.clone(), sub.to_string());
        self.log
            .write(encoded, move |offsets| {
                let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
                for ((r, e), at) in rows.into_iter().zip(offsets) {
                    apply(&mut t, sub.clone(), r, at, e);
                }
            })
            .await?;
        Ok(())
    }

    /// Ends every entry of `sub`.
    pub async fn clear(&self, sub: &str) -> Result<()> {
        let rows = self.entries(sub).into_keys().map(|r| (r, None)).collect();
        self.put(sub, rows).await
    }

    /// Compacts the log.
    pub fn maintain(&self) -> Result<()> {
        Ok(self.log.compact()?)
    }

    /// Clean shutdown.
    pub fn close(&self) -> Result<()> {
        Ok(self.log.close()?)
    }
}

/// Applies a row unless a newer one is held. Ended entries are dropped from memory: writes about
/// one event come from one worker, one at a time, so an older row cannot arrive after its end.
fn apply(t: &mut Table, sub: String, r: EventRef, at: u64, v: Option<RetryEntry>) {
    let m = t.entry(sub).or_default();
    if m.get(&r).is_some_and(|(o, _)| *o > at) {
        return;
    }
    match v {
        Some(v) => {
            m.insert(r, (at, v));
        }
        None => {
            m.remove(&r);
        }
    }
}
