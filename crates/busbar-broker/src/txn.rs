//! The transaction coordinator (Kafka's Transactions V1, KIP-98; `shared/spec/wave2-facts.md` §2,
//! `docs/transactions.md`): transactional ids mapped to a producer id and epoch, each
//! transaction's state, partitions and pending consumer offsets, kept in an internal compacted
//! log (like Kafka's `__transaction_state`), so every answer follows a durable write and recovery
//! is a replay.
//!
//! States: Empty → Ongoing (a partition or group joined) → PrepareCommit / PrepareAbort (EndTxn,
//! durable before any marker) → CompleteCommit / CompleteAbort (every marker durable, pending
//! offsets committed or dropped) → Ongoing again with the next transaction. A transaction left in
//! a Prepare state (a crash, a failed write, a caller that stopped waiting) is completed by the
//! coordinator's timer (`ops.rs`, [`crate::Broker::tick_transactions`]), at start-up too.
//!
//! The same log holds the aborted-transaction index of every partition (rows keyed by topic id,
//! partition, producer id and first offset; the value the ABORT marker's offset), written before
//! CompleteAbort and pruned once the log start passes them: `read_committed` reads list those
//! that overlap what they return.
//!
//! Locking: each transactional id's operations run one at a time (a striped tokio mutex, held
//! across their writes); `state` (a std `RwLock`) is held only to read or swap entries, and for
//! reading across the produce path's check and append, so a batch admitted as part of an ongoing
//! transaction is written before that transaction's state can change.

use crate::error::{BrokerError, Result};
use crate::kvlog::{KvLog, Row};
use busbar_log::disk::Storage;
use busbar_log::Clock;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

mod cluster;
pub mod marker;
mod ops;
pub mod partition;
pub mod producer;
mod reads;
mod timer;

pub(crate) use cluster::{note_applied, note_applying};
pub use ops::PartitionAdd;
pub use partition::{Aborted, PartitionTxns};
pub use reads::{IsolatedRead, Isolation};

/// `[transactions]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnConfig {
    /// Longest `transaction.timeout.ms` a producer may ask for (Kafka's
    /// `transaction.max.timeout.ms`); a longer one fails InitProducerId with
    /// INVALID_TRANSACTION_TIMEOUT. Default 900,000 (15 minutes).
    pub max_timeout_ms: i64,
    /// A transactional id unused this long (and not in a transaction) is forgotten (Kafka's
    /// `transactional.id.expiration.ms`). Default 604,800,000 (7 days).
    pub id_expiration_ms: i64,
    /// Most transactional ids remembered; a new one past it is refused until ids expire.
    /// Default 100,000.
    pub ids_max: usize,
    /// Most partitions, and most pending consumer offsets, in one transaction. Default 10,000.
    pub partitions_max: usize,
}

impl Default for TxnConfig {
    fn default() -> Self {
        Self {
            max_timeout_ms: 900_000,
            id_expiration_ms: 604_800_000,
            ids_max: 100_000,
            partitions_max: 10_000,
        }
    }
}

/// A transaction's state (Kafka's `TransactionState`, without Dead and PrepareEpochFence: a
/// fence here aborts and bumps the epoch in one step).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    /// Kafka's name, as `busbar` shows it.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    fn preparing(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }

    /// No transaction open or ending.
    pub(crate) fn is_idle(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }
}

/// A partition in a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnPartition {
    pub topic: String,
    /// The topic's id when it joined: a topic deleted and created again is another topic.
    pub topic_id: String,
    pub partition: u32,
    /// The partition's log end when it joined (no batch of the transaction lies below).
    pub first: u64,
}

/// A consumer offset committed inside a transaction (TxnOffsetCommit), applied at commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOffset {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub metadata: String,
}

/// One transactional id's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    pub producer_id: i64,
    pub epoch: i16,
    pub timeout_ms: i64,
    pub state: TxnState,
    pub partitions: Vec<TxnPartition>,
    pub groups: Vec<String>,
    pub offsets: Vec<PendingOffset>,
    /// When the current transaction began (its first partition or group).
    pub started_ms: i64,
    /// When the record last changed.
    pub updated_ms: i64,
    /// Bump the epoch when the transaction completes (it timed out): set before it is prepared,
    /// so a completion after a crash still fences the producer that let it expire.
    #[serde(default)]
    pub fence: bool,
    /// How many transactions this id has begun (the current one's number while one is open):
    /// the bus tells its own transactions apart by it (`producer.rs`), as their producer id and
    /// epoch stay the same from one to the next.
    #[serde(default)]
    pub seq: u64,
}

impl Txn {
    /// Whether the partition (of this incarnation of its topic) is in the transaction.
    fn has_partition(&self, topic_id: &str, partition: u32) -> bool {
        self.partitions
            .iter()
            .any(|p| p.topic_id == topic_id && p.partition == partition)
    }
}

/// An aborted-index row as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct AbortedRow {
    topic: String,
    topic_id: String,
    partition: u32,
    aborted: Aborted,
}

fn txn_key(id: &str) -> Vec<u8> {
    [b"t", id.as_bytes()].concat()
}

fn aborted_key(topic_id: &str, partition: u32, a: &Aborted) -> Vec<u8> {
    let tail = format!("{topic_id}/{partition}/{}/{}", a.producer_id, a.first);
    [b"a", tail.as_bytes()].concat()
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) txns: HashMap<String, Txn>,
    pub(crate) by_pid: HashMap<i64, String>,
    /// Per id: (transaction number, the newest Kafka connection by the listener's sequence
    /// number that added a partition or group to that transaction). An EndTxn from an older
    /// connection while that transaction is open is a request delayed past its retry (`ops.rs`,
    /// `end_txn_via`); another transaction (a new one, or one of a producer that fenced the
    /// previous) starts afresh. In memory only: after a restart every connection is new.
    pub(crate) conns: HashMap<String, (u64, u64)>,
}

impl State {
    fn put(&mut self, id: &str, txn: Option<Txn>) {
        if txn.is_none() {
            self.conns.remove(id);
        }
        if let Some(old) = self.txns.remove(id) {
            self.by_pid.remove(&old.producer_id);
        }
        if let Some(t) = txn {
            self.by_pid.insert(t.producer_id, id.to_string());
            self.txns.insert(id.to_string(), t);
        }
    }
}

/// Largest encoded record of one transactional id: it must fit one batch of the coordinator's
/// log (1 MiB) in every state, so a transaction that would grow past it is refused while it
/// grows (AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit), never when it completes.
pub const RECORD_BYTES_MAX: usize = 900 * 1024;

/// Stripes of the per-id operation lock.
const LOCK_STRIPES: usize = 64;

/// The coordinator's durable state.
pub struct Transactions {
    log: KvLog,
    pub(crate) state: Arc<RwLock<State>>,
    locks: Vec<tokio::sync::Mutex<()>>,
    pub(crate) config: TxnConfig,
    /// Aborted-index rows loaded at open, to be attached to their partitions.
    loaded_aborted: std::sync::Mutex<Vec<(String, String, u32, Aborted)>>,
    damage: Vec<String>,
    /// Cluster mode: producer id → transactional id, as the shared store answered (a producer
    /// id never changes owner); at most [`OWNERS_MAX`], emptied when full.
    pub(crate) owners: std::sync::Mutex<HashMap<i64, String>>,
}

/// Most producer owners remembered (cluster mode).
pub(crate) const OWNERS_MAX: usize = 10_000;

impl Transactions {
    /// Opens the coordinator's log in `storage` and replays it.
    pub fn open(
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        config: TxnConfig,
    ) -> Result<Self> {
        let log = KvLog::open(storage, clock)?;
        let mut txns: HashMap<String, Option<Txn>> = HashMap::new();
        let mut aborted: HashMap<Vec<u8>, Option<AbortedRow>> = HashMap::new();
        let damage = log.replay(|_, key, value| match key.split_first() {
            Some((b't', id)) => {
                let id = String::from_utf8_lossy(id).into_owned();
                txns.insert(id, value.and_then(|v| serde_json::from_slice(v).ok()));
            }
            Some((b'a', _)) => {
                aborted.insert(
                    key.to_vec(),
                    value.and_then(|v| serde_json::from_slice(v).ok()),
                );
            }
            _ => {}
        })?;
        let mut state = State::default();
        for (id, t) in txns {
            if t.is_some() {
                state.put(&id, t);
            }
        }
        let loaded = aborted
            .into_values()
            .flatten()
            .map(|r| (r.topic, r.topic_id, r.partition, r.aborted))
            .collect();
        Ok(Self {
            log,
            state: Arc::new(RwLock::new(state)),
            locks: (0..LOCK_STRIPES).map(|_| Default::default()).collect(),
            config,
            loaded_aborted: std::sync::Mutex::new(loaded),
            damage,
            owners: Default::default(),
        })
    }

    /// Damaged ranges of the coordinator's log skipped at open.
    pub fn damage(&self) -> &[String] {
        &self.damage
    }

    /// The aborted-index rows read at open (taken once, to attach to partitions).
    pub(crate) fn take_loaded_aborted(&self) -> Vec<(String, String, u32, Aborted)> {
        std::mem::take(
            &mut *self
                .loaded_aborted
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Keeps aborted-index rows of topics that are gone, for the timer to delete.
    pub(crate) fn keep_stale(&self, rows: Vec<(String, String, u32, Aborted)>) {
        *self
            .loaded_aborted
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = rows;
    }

    /// Serializes the operations of one transactional id.
    pub(crate) async fn lock_id(&self, id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        self.locks[h.finish() as usize % LOCK_STRIPES].lock().await
    }

    /// [`Transactions::lock_id`] if free now (the timer skips an id that is busy).
    pub(crate) fn try_lock_id(&self, id: &str) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        self.locks[h.finish() as usize % LOCK_STRIPES]
            .try_lock()
            .ok()
    }

    /// The highest producer id the coordinator holds (start-up reserves ids past it).
    pub(crate) fn max_producer_id(&self) -> Option<i64> {
        self.read().by_pid.keys().max().copied()
    }

    /// The record of `id`.
    pub fn get(&self, id: &str) -> Option<Txn> {
        self.read().txns.get(id).cloned()
    }

    /// Every transactional id with its record, sorted by id.
    pub fn list(&self) -> Vec<(String, Txn)> {
        let mut v: Vec<_> = self
            .read()
            .txns
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `id`'s record (`None` forgets it) and `extra` rows durably, then applies the
    /// record to memory (on the write's thread, so a caller that stops waiting cannot leave
    /// memory behind the log).
    pub(crate) async fn put(&self, id: &str, txn: Option<Txn>, extra: Vec<Row>) -> Result<()> {
        let value = Self::encode(txn.as_ref())?;
        let mut rows = vec![(txn_key(id), value)];
        let count = 1 + extra.len();
        rows.extend(extra);
        let state = self.state.clone();
        let id = id.to_string();
        self.log
            .write_whole(rows, move |written| {
                if written.len() == count {
                    state
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .put(&id, txn);
                }
            })
            .await
    }

    /// A record as stored (JSON); refused while a growing transaction would pass
    /// [`RECORD_BYTES_MAX`].
    pub(crate) fn encode(txn: Option<&Txn>) -> Result<Option<Vec<u8>>> {
        let value = txn.map(|t| serde_json::to_vec(t).expect("a transaction record encodes"));
        // Only an ongoing transaction grows; its later states differ by a few bytes.
        let growing = txn.is_some_and(|t| t.state == TxnState::Ongoing);
        if let Some(v) = value
            .as_ref()
            .filter(|v| growing && v.len() > RECORD_BYTES_MAX)
        {
            return Err(BrokerError::InvalidRequest(format!(
                "the transaction would take {} bytes of coordinator state, more than {} \
                 (fewer partitions, groups or offsets, or shorter offset metadata)",
                v.len(),
                RECORD_BYTES_MAX
            )));
        }
        Ok(value)
    }

    /// Cluster mode: sets `id`'s record in memory only (loaded from, or written to, the shared
    /// store).
    pub(crate) fn replace(&self, id: &str, txn: Option<Txn>) {
        self.state
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .put(id, txn);
    }

    /// Rows adding aborted transactions to the index.
    pub(crate) fn aborted_rows(rows: &[(TxnPartition, Aborted)]) -> Vec<Row> {
        rows.iter()
            .map(|(p, a)| {
                let row = AbortedRow {
                    topic: p.topic.clone(),
                    topic_id: p.topic_id.clone(),
                    partition: p.partition,
                    aborted: *a,
                };
                let v = serde_json::to_vec(&row).expect("a row encodes");
                (aborted_key(&p.topic_id, p.partition, a), Some(v))
            })
            .collect()
    }

    /// Writes aborted-index rows durably (before the transaction that aborted is Complete).
    pub(crate) async fn add_aborted_rows(&self, rows: Vec<Row>) -> Result<()> {
        self.log.write(rows, |_| {}).await
    }

    /// Removes aborted-index rows (pruned partitions).
    pub(crate) async fn forget_aborted(&self, rows: Vec<(String, u32, Aborted)>) -> Result<()> {
        let rows: Vec<Row> = rows
            .iter()
            .map(|(tid, p, a)| (aborted_key(tid, *p, a), None))
            .collect();
        self.log.write(rows, |_| {}).await
    }

    /// The partitions of `group` with transactional offsets not yet committed or aborted.
    pub fn pending_offsets(&self, group: &str) -> Vec<(String, u32)> {
        self.read()
            .txns
            .values()
            .filter(|t| t.state == TxnState::Ongoing || t.state.preparing())
            .flat_map(|t| t.offsets.iter())
            .filter(|o| o.group == group)
            .map(|o| (o.topic.clone(), o.partition))
            .collect()
    }

    /// Compacts the log.
    pub fn compact(&self) -> Result<()> {
        self.log.compact()
    }

    /// Clean shutdown.
    pub fn close(&self) -> Result<()> {
        self.log.close()
    }

    /// Checks a produced batch of producer `pid` against its transaction (called with the state
    /// read-locked, across the append): a transactional batch needs an ongoing transaction of
    /// the same epoch that this partition joined (INVALID_TXN_STATE, or INVALID_PRODUCER_EPOCH
    /// for an older epoch); a plain batch from a producer with an open transaction is refused.
    pub(crate) fn check_produce(
        state: &State,
        h: &busbar_log::batch::BatchHeader,
        topic: &str,
        topic_id: &str,
        partition: u32,
    ) -> Result<()> {
        let transactional = marker::is_transactional(h);
        let txn = state
            .by_pid
            .get(&h.producer_id)
            .and_then(|id| state.txns.get(id));
        match (transactional, txn) {
            (false, Some(t)) if t.state == TxnState::Ongoing || t.state.preparing() => {
                Err(BrokerError::InvalidTxnState(format!(
                    "producer {} has an open transaction: a batch outside it is refused",
                    h.producer_id
                )))
            }
            (false, _) => Ok(()),
            (true, None) => Err(BrokerError::InvalidTxnState(format!(
                "producer {} has no transaction",
                h.producer_id
            ))),
            (true, Some(t)) if h.producer_epoch < t.epoch => {
                Err(BrokerError::InvalidProducerEpoch(format!(
                    "epoch {} is older than {}: this producer was fenced",
                    h.producer_epoch, t.epoch
                )))
            }
            (true, Some(t))
                if t.state != TxnState::Ongoing
                    || h.producer_epoch != t.epoch
                    || !t.has_partition(topic_id, partition) =>
            {
                Err(BrokerError::InvalidTxnState(format!(
                    "partition {topic}-{partition} is not in an ongoing transaction of producer {} \
                     epoch {}",
                    h.producer_id, h.producer_epoch
                )))
            }
            (true, Some(_)) => Ok(()),
        }
    }
}
