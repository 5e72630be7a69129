//! Durable state of the bus. Subscriptions (spec and paused flag) are one JSON document,
//! `meta/subscriptions.json`, replaced atomically on every change, like topic metadata. Retry state is
//! an internal compacted log (`internal/retries`), one row per event awaiting another attempt (or
//! waiting behind its key), keyed by (subscription, topic, partition, offset); a tombstone ends it.
//! The event itself stays in its topic and is read back by offset when due (NATS-style: only the
//! retry state is stored, never a copy of the event).
//!
//! The same log holds the redrive records: one row per dead letter redriven, keyed by the letter's
//! place (dead-letter topic, its incarnation's id, partition, offset) as a JSON object, where retry
//! rows have a JSON array key. A redrive writes each letter's record just before its retry entry,
//! in one write: one batch is all or nothing, and when a large write is split the batches land in
//! order, so no retry entry of a redrive is ever durable without its record (see
//! `docs/decisions.md`, "Redrive records").
//!
//! It also holds the replay runs (`replay.rs`): one row per run, keyed by subscription and run name
//! as `{"replay": [sub, name]}`, holding its range, state, counts and progress. At most
//! [`crate::REPLAYS_KEPT`] per subscription; deleting (or creating) a subscription ends its rows.

use super::replay::RunRecord;
use super::spec::SubscriptionSpec;
use crate::backing::Backing;
use crate::cluster::{SharedBus, Space, StateRow};
use crate::error::{BusError, Result};
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
    /// Who made it through the API with authentication on; it runs as them (`creator.rs`).
    /// Absent in documents of earlier versions and for subscriptions made with auth off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<crate::Creator>,
    /// Whether the creator was a stored user when it made the subscription: such a
    /// subscription pauses once that user is deleted (`creator.rs`). False in earlier documents.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub creator_is_user: bool,
    /// Cluster mode: paused by a reset on the broker process with this instance token (any
    /// other pause or resume clears it). Should that process die, another broker resumes the
    /// subscription (`cluster.rs`), as it was before the reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_by_reset: Option<String>,
}

impl SubRecord {
    /// The gate its worker and replay runs decide with: they run as its creator.
    pub(crate) fn gate(&self) -> crate::creator::Gate {
        crate::creator::Gate::new(self.creator.clone(), self.creator_is_user)
    }
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

/// A dead letter's place: its partition and offset in one incarnation (`topic_id`) of its
/// dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LetterRef {
    pub topic: String,
    pub topic_id: String,
    pub partition: u32,
    pub offset: u64,
}

/// The record of a dead letter's latest redrive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redriven {
    /// The subscription it was sent back through.
    pub subscription: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

/// A redrive record's key: an object, so it never reads as a retry row's `[sub, event]` array.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedriveKey {
    redriven: LetterRef,
}

/// A replay run's key: an object with another field name than a redrive record's.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunKey {
    replay: (String, String),
}

/// One row of the log.
enum Row {
    Retry(String, EventRef, Option<RetryEntry>),
    Redrive(LetterRef, Option<Redriven>),
    /// (subscription, run name): the run's record.
    Run(String, String, Option<RunRecord>),
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("row encodes")
}

impl Row {
    fn encode(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        match self {
            Row::Retry(sub, r, e) => (json(&(sub, r)), e.as_ref().map(json)),
            Row::Redrive(l, v) => (
                json(&RedriveKey {
                    redriven: l.clone(),
                }),
                v.as_ref().map(json),
            ),
            Row::Run(sub, name, v) => (
                json(&RunKey {
                    replay: (sub.clone(), name.clone()),
                }),
                v.as_ref().map(json),
            ),
        }
    }

    /// Decodes a stored row; `None` for a key of neither kind (skipped, as before).
    fn decode(key: &[u8], value: Option<&[u8]>) -> Option<Row> {
        if let Ok((sub, r)) = serde_json::from_slice::<(String, EventRef)>(key) {
            let v = value.and_then(|v| serde_json::from_slice(v).ok());
            return Some(Row::Retry(sub, r, v));
        }
        if let Ok(k) = serde_json::from_slice::<RedriveKey>(key) {
            let v = value.and_then(|v| serde_json::from_slice(v).ok());
            return Some(Row::Redrive(k.redriven, v));
        }
        let k = serde_json::from_slice::<RunKey>(key).ok()?;
        let v = value.and_then(|v| serde_json::from_slice(v).ok());
        Some(Row::Run(k.replay.0, k.replay.1, v))
    }
}

#[derive(Default)]
struct Tables {
    retries: Table,
    redriven: BTreeMap<LetterRef, (u64, Redriven)>,
    /// (subscription, run name) → record.
    runs: BTreeMap<(String, String), (u64, RunRecord)>,
}

/// The retry-state log and its tables.
pub struct RetryStore {
    log: Backing,
    tables: Arc<Mutex<Tables>>,
}

impl RetryStore {
    /// Opens the store in `dir`, replaying it.
    pub fn open(storage: Arc<dyn Storage>, clock: Arc<dyn Clock>) -> Result<Self> {
        let store = Self {
            log: Backing::Local(KvLog::open(storage, clock)?),
            tables: Arc::default(),
        };
        {
            let mut t = store.lock();
            let damage = store.log.replay(|at, key, value| {
                if let Some(row) = Row::decode(key, value) {
                    t.apply(at, row);
                }
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

    /// The store of a cluster broker: rows in `bus`, loaded per subscription ([`Self::load`]).
    pub fn shared(bus: Arc<dyn SharedBus>) -> Self {
        Self {
            log: Backing::Shared {
                bus,
                space: Space::Retries,
            },
            tables: Arc::default(),
        }
    }

    /// Replaces what the tables hold of `sub` (retry entries, replay runs) with `rows` (read from
    /// the shared store; none: forgets it here).
    pub fn load(&self, sub: &str, rows: &[&StateRow]) {
        let mut t = self.lock();
        t.retries.remove(sub);
        t.runs.retain(|(s, _), _| s != sub);
        t.redriven.retain(|_, (_, r)| r.subscription != sub);
        for r in rows {
            if let Some(row) = Row::decode(&r.key, Some(&r.value)) {
                t.apply(r.seq, row);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every live entry of `sub`, by event.
    pub fn entries(&self, sub: &str) -> BTreeMap<EventRef, RetryEntry> {
        let t = self.lock();
        t.retries
            .get(sub)
            .map(|m| m.iter().map(|(r, (_, e))| (r.clone(), e.clone())).collect())
            .unwrap_or_default()
    }

    /// How many entries `sub` has, and its newest entry after a failed attempt (by last attempt
    /// time): what a subscription's view shows, without copying every entry.
    pub fn summary(&self, sub: &str) -> (usize, Option<RetryEntry>) {
        let t = self.lock();
        let Some(m) = t.retries.get(sub) else {
            return (0, None);
        };
        let newest = (m.values().map(|(_, e)| e))
            .filter(|e| e.attempts > 0)
            .max_by_key(|e| e.last_ms);
        (m.len(), newest.cloned())
    }

    /// Entries of `sub` (`None` ends one) as the shared store takes them (cluster mode, for a
    /// write together with other state).
    pub fn encode(
        &self,
        sub: &str,
        rows: &[(EventRef, Option<RetryEntry>)],
    ) -> Vec<crate::cluster::WriteRow> {
        rows.iter()
            .map(|(r, e)| {
                let (key, value) = Row::Retry(sub.to_string(), r.clone(), e.clone()).encode();
                (crate::cluster::Space::Retries, key, value)
            })
            .collect()
    }

    /// Writes (or with `None` ends) entries of `sub`, durably.
    pub async fn put(&self, sub: &str, rows: Vec<(EventRef, Option<RetryEntry>)>) -> Result<()> {
        let rows = rows
            .into_iter()
            .map(|(r, e)| Row::Retry(sub.to_string(), r, e))
            .collect();
        self.write(rows).await
    }

    /// Ends every entry and replay run of `sub` (in batches when they are many: a crash between
    /// two leaves some, which the next `clear` of the name or [`Self::subscriptions`] finds).
    pub async fn clear(&self, sub: &str) -> Result<()> {
        let mut rows: Vec<Row> = (self.entries(sub).into_keys())
            .map(|r| Row::Retry(sub.to_string(), r, None))
            .collect();
        let runs = self.runs(sub).into_iter();
        rows.extend(runs.map(|r| Row::Run(sub.to_string(), r.name, None)));
        self.write(rows).await
    }

    /// Every subscription name with retry entries or replay runs stored.
    pub fn subscriptions(&self) -> std::collections::BTreeSet<String> {
        let t = self.lock();
        let with_entries = t.retries.iter().filter(|(_, m)| !m.is_empty());
        (with_entries.map(|(s, _)| s.clone()))
            .chain(t.runs.keys().map(|(s, _)| s.clone()))
            .collect()
    }

    /// The stored replay runs of `sub`, by name.
    pub fn runs(&self, sub: &str) -> Vec<RunRecord> {
        let t = self.lock();
        let of_sub = t.runs.range((sub.to_string(), String::new())..);
        of_sub
            .take_while(|((s, _), _)| s == sub)
            .map(|(_, (_, r))| r.clone())
            .collect()
    }

    /// Writes (or with `None` removes) replay runs of `sub`, durably, in one write.
    pub async fn put_runs(&self, sub: &str, runs: Vec<(String, Option<RunRecord>)>) -> Result<()> {
        let rows = (runs.into_iter())
            .map(|(name, r)| Row::Run(sub.to_string(), name, r))
            .collect();
        self.write(rows).await
    }

    /// The redrive records of the letters in one incarnation of dead-letter topic `topic`.
    pub fn redriven(&self, topic: &str, topic_id: &str) -> BTreeMap<(u32, u64), Redriven> {
        let t = self.lock();
        (t.redriven.iter())
            .filter(|(l, _)| l.topic == topic && l.topic_id == topic_id)
            .map(|(l, (_, v))| ((l.partition, l.offset), v.clone()))
            .collect()
    }

    /// Every letter with a redrive record.
    pub fn redriven_letters(&self) -> Vec<LetterRef> {
        self.lock().redriven.keys().cloned().collect()
    }

    /// Records the redrive of each letter and writes the retry entry sending its event back
    /// through the subscription, durably, in one write: each record lands before its entry.
    /// On an error the rows written (a prefix) stay and are in the tables.
    pub async fn redrive(
        &self,
        letters: Vec<(LetterRef, Redriven, EventRef, RetryEntry)>,
    ) -> Result<()> {
        let mut rows = Vec::with_capacity(letters.len() * 2);
        for (l, rec, r, e) in letters {
            let sub = rec.subscription.clone();
            rows.push(Row::Redrive(l, Some(rec)));
            rows.push(Row::Retry(sub, r, Some(e)));
        }
        self.write(rows).await
    }

    /// Removes the redrive records of `letters` (in cluster mode one write per subscription:
    /// each record is its subscription's row).
    pub async fn forget_redrives(&self, letters: Vec<LetterRef>) -> Result<()> {
        let rows: Vec<Row> = letters.into_iter().map(|l| Row::Redrive(l, None)).collect();
        if self.log.is_local() {
            return self.write(rows).await;
        }
        let mut by_sub: BTreeMap<String, Vec<Row>> = BTreeMap::new();
        for row in rows {
            if let Some(sub) = self.owner(&row) {
                by_sub.entry(sub).or_default().push(row);
            }
        }
        for rows in by_sub.into_values() {
            self.write(rows).await?;
        }
        Ok(())
    }

    /// Whether this broker may write `sub`'s rows: always on a single node, under the
    /// subscription's lease in cluster mode.
    pub fn may_write(&self, sub: &str) -> bool {
        match &self.log {
            Backing::Local(_) => true,
            Backing::Shared { bus, .. } => bus.holds(sub),
        }
    }

    /// Cluster mode: gives `sub`'s lease up for good (in the background), as a worker's
    /// watchdog does when the lease lapses here; nothing on a single node.
    pub fn give_up(&self, sub: &str) {
        if let Backing::Shared { bus, .. } = &self.log {
            let (bus, sub) = (bus.clone(), sub.to_string());
            tokio::spawn(async move { bus.release_lapsed(&sub).await });
        }
    }

    /// The subscription of the redrive record of `letter`, if it has one here.
    pub fn redriven_by(&self, letter: &LetterRef) -> Option<String> {
        (self.lock().redriven.get(letter)).map(|(_, r)| r.subscription.clone())
    }

    async fn write(&self, rows: Vec<Row>) -> Result<()> {
        let sub = match self.one_subscription(&rows) {
            Some(sub) => sub,
            None if self.log.is_local() => String::new(),
            None if rows.is_empty() => return Ok(()),
            None => {
                return Err(BusError::Storage(
                    "a write of several subscriptions' state (a redrive) is not available in \
                     cluster mode"
                        .into(),
                ))
            }
        };
        let encoded = rows.iter().map(Row::encode).collect();
        let tables = self.tables.clone();
        self.log
            .write(&sub, encoded, false, move |offsets| {
                let mut t = tables.lock().unwrap_or_else(|e| e.into_inner());
                for (row, at) in rows.into_iter().zip(offsets) {
                    t.apply(at, row);
                }
            })
            .await?;
        Ok(())
    }

    /// The subscription every row of `rows` belongs to, if one does (a redrive record belongs
    /// to the subscription it sent its letter through).
    fn one_subscription(&self, rows: &[Row]) -> Option<String> {
        let mut subs = rows.iter().map(|r| self.owner(r));
        let first = subs.next().flatten()?;
        subs.all(|s| s.as_ref() == Some(&first)).then_some(first)
    }

    /// The subscription `row` belongs to.
    fn owner(&self, row: &Row) -> Option<String> {
        match row {
            Row::Retry(sub, ..) | Row::Run(sub, ..) => Some(sub.clone()),
            Row::Redrive(_, Some(rec)) => Some(rec.subscription.clone()),
            Row::Redrive(l, None) => self.redriven_by(l),
        }
    }

    /// Compacts the log.
    pub fn maintain(&self) -> Result<()> {
        self.log.compact()
    }

    /// Clean shutdown.
    pub fn close(&self) -> Result<()> {
        self.log.close()
    }
}

impl Tables {
    /// Applies a row unless a newer one is held. Ended entries are dropped from memory: writes
    /// about one event come from one worker, one at a time, so an older row cannot arrive after
    /// its end (redrive records are written under the bus's admin lock, likewise one at a time).
    fn apply(&mut self, at: u64, row: Row) {
        match row {
            Row::Retry(sub, r, v) => apply(self.retries.entry(sub).or_default(), r, at, v),
            Row::Redrive(l, v) => apply(&mut self.redriven, l, at, v),
            Row::Run(sub, name, v) => apply(&mut self.runs, (sub, name), at, v),
        }
    }
}

fn apply<K: Ord, V>(m: &mut BTreeMap<K, (u64, V)>, k: K, at: u64, v: Option<V>) {
    if m.get(&k).is_some_and(|(o, _)| *o > at) {
        return;
    }
    match v {
        Some(v) => {
            m.insert(k, (at, v));
        }
        None => {
            m.remove(&k);
        }
    }
}
