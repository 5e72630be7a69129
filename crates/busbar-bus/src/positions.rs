//! Where each subscription has read to, per source partition: the bus's own compacted internal log
//! (`internal/positions`), one row per (subscription, topic, partition) holding the next offset to
//! read and the id of the topic it belongs to. Positions are not consumer-group offsets: `busbar
//! group reset-offsets` or `group delete` cannot move or erase them; only the subscription API
//! (create, reset, delete) does.
//!
//! The topic id makes a position belong to one incarnation of its topic: after a topic is deleted
//! and created again under the same name, the old position no longer applies and the worker reads
//! the new topic from its beginning.
//!
//! The same log holds each subscription's counters (`stats.rs`), one row keyed
//! `{"counters": <subscription>}` (an object, where position rows have an array key), written in
//! the same durable write as the positions they go with: they are as durable as the positions and
//! never newer. A log written before counters were stored has no such row: they start at zero.
//!
//! An exactly-once subscription (a topic target) also has a row keyed `{"txn": <subscription>}`:
//! the transaction its last position write went with ([`TxnRecord`], `worker/exactly.rs`), in the
//! same all-or-nothing write.
//!
//! A data directory written before this store existed kept positions as the committed offsets of
//! consumer group `busbar-subscription-<name>`; a subscription with no row here takes its position
//! from there once (see [`legacy_group`]).

use crate::backing::Backing;
use crate::cluster::{SharedBus, Space, StateRow, WriteRow};
use crate::error::{BusError, Result};
use crate::state::EventRef;
use crate::stats::CounterSnapshot;
use crate::worker::Ctx;
use busbar_broker::kvlog::KvLog;
use busbar_broker::Broker;
use busbar_log::disk::Storage;
use busbar_log::Clock;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// A source partition of a subscription.
pub type PartKey = (String, u32);

/// Where a subscription reads a partition from next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub offset: u64,
    /// The id of the topic incarnation the offset belongs to.
    pub topic_id: String,
    /// Offsets past `offset` already settled, in order: events an exactly-once worker
    /// delivered in a committed transaction while an earlier one still waited (a retry, a
    /// parked event). The reader skips them. Empty for at-least-once workers, and then not
    /// stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub done: Vec<u64>,
}

/// Where `POST /subscriptions/{name}/reset` moves a subscription: `{"to": "earliest"}`,
/// `{"to": "latest"}`, `{"to": "time", "time": "<RFC 3339>"}` (the first event at or after it) or
/// `{"to": "offsets", "offsets": [{"topic", "partition", "offset"}]}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "to", rename_all = "snake_case", deny_unknown_fields)]
pub enum ResetTo {
    // Struct variants: serde lets unit variants of a tagged enum carry unknown fields.
    Earliest {},
    Latest {},
    Time { time: String },
    Offsets { offsets: Vec<ResetPosition> },
}

/// One partition's position, as a reset names or answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetPosition {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

/// Per subscription, per partition: (log offset of the row, position).
type Table = HashMap<String, BTreeMap<PartKey, (u64, Position)>>;

/// The key of a subscription's counters row.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CountersKey {
    counters: String,
}

/// The key of an exactly-once subscription's transaction row.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TxnKey {
    txn: String,
}

/// What a position write of an exactly-once subscription (a topic target) records about the
/// transaction its deliveries went out in, written in the same batch as the positions, before
/// the transaction is committed: if the transaction turns out not to have committed
/// (`busbar_broker::txn::producer`), the subscription goes back to `prev`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnRecord {
    /// The transaction's number in the coordinator (`Txn::seq`).
    pub seq: u64,
    /// The positions the write replaced (`None`: none was stored).
    pub prev: Vec<(PartKey, Option<Position>)>,
    /// The counters stored before the write.
    pub prev_counters: Option<CounterSnapshot>,
    /// Retry entries ended by deliveries of the transaction: removed once it is committed.
    pub ended: Vec<EventRef>,
}

#[derive(Default)]
struct Tables {
    positions: Table,
    /// Per subscription: (log offset of the row, counters).
    counters: HashMap<String, (u64, CounterSnapshot)>,
    /// Per exactly-once subscription: (log offset of the row, its open transaction).
    txns: HashMap<String, (u64, TxnRecord)>,
    /// Per exactly-once subscription: a transaction record whose write failed and may still be
    /// on disk, until a roll-back write succeeds over it (in memory: it outlives the worker, not
    /// the process; after a restart the record is on disk or not, and settled as such).
    pending: HashMap<String, TxnRecord>,
}

impl Tables {
    /// Applies a stored row (skipping keys of neither kind).
    fn apply_row(&mut self, at: u64, key: &[u8], value: Option<&[u8]>) {
        if let Ok((sub, topic, partition)) = serde_json::from_slice(key) {
            let v = value.and_then(|v| serde_json::from_slice(v).ok());
            apply(&mut self.positions, sub, (topic, partition), at, v);
        } else if let Ok(k) = serde_json::from_slice::<CountersKey>(key) {
            let v = value.and_then(|v| serde_json::from_slice(v).ok());
            self.apply_counters(k.counters, at, v);
        } else if let Ok(k) = serde_json::from_slice::<TxnKey>(key) {
            let v = value.and_then(|v| serde_json::from_slice(v).ok());
            self.apply_txn(k.txn, at, v);
        }
    }

    fn apply_txn(&mut self, sub: String, at: u64, v: Option<TxnRecord>) {
        if self.txns.get(&sub).is_some_and(|(o, _)| *o > at) {
            return;
        }
        match v {
            Some(v) => self.txns.insert(sub, (at, v)),
            None => self.txns.remove(&sub),
        };
    }

    fn apply_counters(&mut self, sub: String, at: u64, v: Option<CounterSnapshot>) {
        if self.counters.get(&sub).is_some_and(|(o, _)| *o > at) {
            return;
        }
        match v {
            Some(v) => self.counters.insert(sub, (at, v)),
            None => self.counters.remove(&sub),
        };
    }
}

/// The consumer group in which busbar before `internal/positions` kept a subscription's
/// positions; read once when a subscription has no stored position.
pub fn legacy_group(name: &str) -> String {
    format!("busbar-subscription-{name}")
}

/// The durable positions of every subscription.
pub struct PositionStore {
    log: Backing,
    table: Arc<Mutex<Tables>>,
}

impl PositionStore {
    /// Opens the store in `storage`, replaying it. A damaged log stops start-up: a lost position
    /// would move a subscription back to its start (or skip ahead), silently.
    pub fn open(storage: Arc<dyn Storage>, clock: Arc<dyn Clock>) -> Result<Self> {
        let store = Self {
            log: Backing::Local(KvLog::open(storage, clock)?),
            table: Arc::default(),
        };
        let damage = {
            let mut t = store.lock();
            store
                .log
                .replay(|at, key, value| t.apply_row(at, key, value))?
        };
        if !damage.is_empty() {
            return Err(BusError::Storage(format!(
                "the subscription-position log is damaged: {}",
                damage.join("; ")
            )));
        }
        Ok(store)
    }

    /// The store of a cluster broker: rows in `bus`, loaded per subscription ([`Self::load`]).
    pub fn shared(bus: Arc<dyn SharedBus>) -> Self {
        Self {
            log: Backing::Shared {
                bus,
                space: Space::Positions,
            },
            table: Arc::default(),
        }
    }

    /// Replaces what the table holds of `sub` with `rows` (read from the shared store; none:
    /// forgets it here).
    pub fn load(&self, sub: &str, rows: &[&StateRow]) {
        let mut t = self.lock();
        t.positions.remove(sub);
        t.counters.remove(sub);
        t.txns.remove(sub);
        t.pending.remove(sub);
        for r in rows {
            t.apply_row(r.seq, &r.key, Some(&r.value));
        }
    }

    /// `rows` of `sub` as the shared store takes them.
    pub fn encode(&self, sub: &str, rows: &[(PartKey, Option<Position>)]) -> Vec<WriteRow> {
        rows.iter()
            .map(|(k, v)| {
                let (key, value) = encode_position(sub, k, v.as_ref());
                (Space::Positions, key, value)
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored position of one partition of `sub`.
    pub fn get(&self, sub: &str, topic: &str, partition: u32) -> Option<Position> {
        let t = self.lock();
        t.positions
            .get(sub)?
            .get(&(topic.to_string(), partition))
            .map(|(_, p)| p.clone())
    }

    /// Every stored position of `sub`.
    pub fn of(&self, sub: &str) -> BTreeMap<PartKey, Position> {
        let t = self.lock();
        t.positions
            .get(sub)
            .map(|m| m.iter().map(|(k, (_, p))| (k.clone(), p.clone())).collect())
            .unwrap_or_default()
    }

    /// Writes (or with `None` removes) positions of `sub`, durably; the table changes only once
    /// the write is durable.
    pub async fn put(&self, sub: &str, rows: Vec<(PartKey, Option<Position>)>) -> Result<()> {
        self.write(sub, rows, None, None).await
    }

    /// As [`Self::put`], with `sub`'s counters in the same write (after the positions: a write
    /// split in batches never leaves counters newer than their positions).
    pub async fn put_with_counters(
        &self,
        sub: &str,
        rows: Vec<(PartKey, Option<Position>)>,
        counters: CounterSnapshot,
    ) -> Result<()> {
        self.write(sub, rows, Some(Some(counters)), None).await
    }

    /// As [`Self::put_with_counters`], recording `txn` (the transaction the deliveries went out
    /// in, still to be committed), all in one batch (all or nothing).
    /// A failed write leaves the record pending ([`Self::settle_pending`]).
    pub async fn put_in_txn(
        &self,
        sub: &str,
        rows: Vec<(PartKey, Option<Position>)>,
        counters: CounterSnapshot,
        txn: TxnRecord,
    ) -> Result<()> {
        let written = (self.write(sub, rows, Some(Some(counters)), Some(Some(txn.clone())))).await;
        if written.is_err() {
            self.lock().pending.insert(sub.to_string(), txn);
        }
        written
    }

    /// Writes the roll-back of `sub`'s pending record (one whose write failed, so it may be on
    /// disk): its positions and counters go back to those before it and no record stays. Until
    /// this succeeds no later transaction of `sub` may start: settling a record that reached the
    /// disk after a later transaction began would take that one's number for its commit.
    pub async fn settle_pending(&self, sub: &str) -> Result<()> {
        let Some(rec) = self.lock().pending.get(sub).cloned() else {
            return Ok(());
        };
        self.roll_back(sub, rec).await?;
        self.lock().pending.remove(sub);
        Ok(())
    }

    /// The transaction `sub` recorded and has not settled since.
    pub fn txn(&self, sub: &str) -> Option<TxnRecord> {
        self.lock().txns.get(sub).map(|(_, t)| t.clone())
    }

    /// The recorded transaction of `sub` committed: its record goes.
    pub async fn close_txn(&self, sub: &str) -> Result<()> {
        self.write(sub, vec![], None, Some(None)).await
    }

    /// The recorded transaction of `sub` did not commit: its positions and counters go back to
    /// those before it, and its record goes (one batch).
    pub async fn roll_back(&self, sub: &str, txn: TxnRecord) -> Result<()> {
        let counters = Some(txn.prev_counters);
        self.write(sub, txn.prev, counters, Some(None)).await
    }

    /// The stored counters of `sub` (`None`: none stored yet).
    pub fn counters(&self, sub: &str) -> Option<CounterSnapshot> {
        self.lock().counters.get(sub).map(|(_, c)| c.clone())
    }

    /// `counters`: `None` leaves them; `Some(None)` removes them.
    /// `txn`: as `counters`; a write with a `txn` row is all or nothing (one batch).
    async fn write(
        &self,
        sub: &str,
        rows: Vec<(PartKey, Option<Position>)>,
        counters: Option<Option<CounterSnapshot>>,
        txn: Option<Option<TxnRecord>>,
    ) -> Result<()> {
        let mut encoded: Vec<(Vec<u8>, Option<Vec<u8>>)> = rows
            .iter()
            .map(|(k, v)| encode_position(sub, k, v.as_ref()))
            .collect();
        if let Some(c) = &counters {
            let key = CountersKey {
                counters: sub.to_string(),
            };
            let key = serde_json::to_vec(&key).expect("key encodes");
            encoded.push((
                key,
                c.as_ref().map(|c| serde_json::to_vec(c).expect("encodes")),
            ));
        }
        if let Some(x) = &txn {
            let key = TxnKey {
                txn: sub.to_string(),
            };
            let key = serde_json::to_vec(&key).expect("key encodes");
            encoded.push((
                key,
                x.as_ref().map(|x| serde_json::to_vec(x).expect("encodes")),
            ));
        }
        let (table, name) = (self.table.clone(), sub.to_string());
        let sub = name.clone();
        let whole = txn.is_some();
        let apply_all = move |offsets: Vec<u64>| {
            let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
            // On a failed write, `offsets` holds those of the rows written (a prefix).
            let mut offsets = offsets.into_iter();
            for ((k, v), at) in rows.into_iter().zip(offsets.by_ref()) {
                apply(&mut t.positions, sub.clone(), k, at, v);
            }
            if let Some(c) = counters {
                match offsets.next() {
                    Some(at) => t.apply_counters(sub.clone(), at, c),
                    None => return,
                }
            }
            if let (Some(x), Some(at)) = (txn, offsets.next()) {
                t.apply_txn(sub, at, x);
            }
        };
        self.log.write(&name, encoded, whole, apply_all).await
    }

    /// Every subscription name with positions or counters stored.
    pub fn subscriptions(&self) -> std::collections::BTreeSet<String> {
        let t = self.lock();
        let with_positions = t.positions.iter().filter(|(_, m)| !m.is_empty());
        (with_positions.map(|(s, _)| s.clone()))
            .chain(t.counters.keys().cloned())
            .chain(t.txns.keys().cloned())
            .collect()
    }

    /// Removes every position and the counters of `sub`.
    pub async fn clear(&self, sub: &str) -> Result<()> {
        let pending = self.lock().pending.get(sub).cloned();
        let mut keys: std::collections::BTreeSet<PartKey> = self.of(sub).into_keys().collect();
        // A pending record's rows may be on disk, unknown to the table.
        keys.extend(
            pending
                .iter()
                .flat_map(|r| r.prev.iter().map(|(k, _)| k.clone())),
        );
        let rows = keys.into_iter().map(|k| (k, None)).collect();
        let counters = (self.counters(sub).is_some() || pending.is_some()).then_some(None);
        let txn = (self.txn(sub).is_some() || pending.is_some()).then_some(None);
        self.write(sub, rows, counters, txn).await?;
        self.lock().pending.remove(sub);
        Ok(())
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

/// A position row's key and value.
fn encode_position(sub: &str, k: &PartKey, v: Option<&Position>) -> (Vec<u8>, Option<Vec<u8>>) {
    let key = serde_json::to_vec(&(sub, &k.0, k.1)).expect("key encodes");
    (key, v.map(|v| serde_json::to_vec(v).expect("encodes")))
}

/// Applies a row unless a newer one (by log offset) is held.
fn apply(t: &mut Table, sub: String, k: PartKey, at: u64, v: Option<Position>) {
    let m = t.entry(sub.clone()).or_default();
    if m.get(&k).is_some_and(|(o, _)| *o > at) {
        return;
    }
    match v {
        Some(v) => {
            m.insert(k, (at, v));
        }
        None => {
            m.remove(&k);
            if m.is_empty() {
                t.remove(&sub);
            }
        }
    }
}

/// The id and partition count of `topic` as it is now.
pub(crate) fn topic_layout(broker: &Broker, topic: &str) -> Result<(String, u32)> {
    let d = broker.describe_topic(topic)?;
    Ok((d.id, d.partitions.len() as u32))
}

/// Takes over, once, the positions an older busbar kept as the committed offsets of consumer
/// group `busbar-subscription-<sub>`: when `sub` has no stored position at all, every source
/// partition's position is written in one durable write (the legacy offset, or the log start).
pub(crate) async fn take_over_legacy(ctx: &Ctx, sub: &str, sources: &[String]) -> Result<()> {
    if !ctx.positions.of(sub).is_empty() {
        return Ok(());
    }
    let group = legacy_group(sub);
    let mut rows = Vec::new();
    let mut any = false;
    for topic in sources {
        let (id, n) = topic_layout(&ctx.broker, topic)?;
        for p in 0..n {
            let legacy = ctx.broker.committed(&group, topic, p).map(|c| c.offset);
            any |= legacy.is_some();
            let (start, _) = ctx.broker.offsets_of(topic, p as i64)?;
            let pos = Position {
                offset: legacy.unwrap_or(start),
                topic_id: id.clone(),
                done: vec![],
            };
            rows.push(((topic.clone(), p), Some(pos)));
        }
    }
    if any {
        ctx.positions.put(sub, rows).await?;
    }
    Ok(())
}

/// When `topic` was deleted and created again (its stored positions name another id), ends the
/// retry entries `sub` holds on it: they point at offsets of the old topic.
pub(crate) async fn forget_old_incarnation(
    ctx: &Ctx,
    sub: &str,
    topic: &str,
    id: &str,
) -> Result<()> {
    let stale =
        (ctx.positions.of(sub).iter()).any(|((t, _), pos)| t == topic && pos.topic_id != id);
    if !stale {
        return Ok(());
    }
    let ended = ctx
        .retries
        .entries(sub)
        .into_keys()
        .filter(|r| r.topic == topic);
    let rows: Vec<_> = ended.map(|r| (r, None)).collect();
    ctx.retries.put(sub, rows).await
}

/// The stored position of `sub` on one partition if it belongs to the topic incarnation `id`;
/// with no stored position at all, the offset committed by an older busbar in the legacy group.
pub(crate) fn stored_position(
    ctx: &Ctx,
    sub: &str,
    topic: &str,
    partition: u32,
    id: &str,
) -> Option<Position> {
    match ctx.positions.get(sub, topic, partition) {
        Some(p) => (p.topic_id == id).then_some(p),
        None if ctx.positions.of(sub).is_empty() => (ctx.broker)
            .committed(&legacy_group(sub), topic, partition)
            .map(|c| Position {
                offset: c.offset,
                topic_id: id.to_string(),
                done: vec![],
            }),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use busbar_log::disk::MemFs;

    fn open(fs: &MemFs) -> PositionStore {
        PositionStore::open(Arc::new(fs.dir("p")), Arc::new(busbar_log::SystemClock)).unwrap()
    }

    fn pos(offset: u64) -> Option<Position> {
        Some(Position {
            offset,
            topic_id: "id".into(),
            done: vec![],
        })
    }

    /// A log written before counters were stored (position rows only, as an older busbar wrote
    /// them) loads: positions as stored, no counters.
    #[tokio::test]
    async fn positions_written_without_counters_load() {
        let fs = MemFs::new();
        {
            let log =
                KvLog::open(Arc::new(fs.dir("p")), Arc::new(busbar_log::SystemClock)).unwrap();
            let key = serde_json::to_vec(&("s", "src", 0u32)).unwrap();
            let value = br#"{"offset":7,"topic_id":"id"}"#.to_vec();
            log.write(vec![(key, Some(value))], |_| {}).await.unwrap();
            log.close().unwrap();
        }
        let store = open(&fs);
        assert_eq!(store.get("s", "src", 0), pos(7));
        assert_eq!(store.counters("s"), None);
    }

    /// Counters are stored with positions, survive a reopen, and go with the subscription.
    #[tokio::test]
    async fn counters_are_stored_with_the_positions_and_cleared_with_them() {
        let fs = MemFs::new();
        let store = open(&fs);
        let counters = CounterSnapshot {
            delivered: 5,
            dead_lettered: 2,
            ..Default::default()
        };
        let rows = vec![(("src".to_string(), 0), pos(9))];
        store
            .put_with_counters("s", rows, counters.clone())
            .await
            .unwrap();
        store
            .put("t", vec![(("src".to_string(), 0), pos(1))])
            .await
            .unwrap();
        store.close().unwrap();
        let store = open(&fs);
        assert_eq!(store.get("s", "src", 0), pos(9));
        assert_eq!(store.counters("s"), Some(counters));
        assert_eq!(store.counters("t"), None, "another subscription's");
        store.clear("s").await.unwrap();
        assert_eq!(store.counters("s"), None);
        store.close().unwrap();
        let store = open(&fs);
        assert_eq!(
            (store.get("s", "src", 0), store.counters("s")),
            (None, None)
        );
        assert_eq!(store.get("t", "src", 0), pos(1));
    }
}
