//! Cluster mode's seam (issue 20): a [`SharedLog`] that several brokers write and read, the
//! durable truth for partition data and topics, with each broker's local partition logs kept as a
//! replica of it (a cache every read path already serves from).
//!
//! - **Produce**: a batch checked as in single-node mode is handed to [`SharedLog::append`], which
//!   queues it at once (so a connection's batches keep their order) and answers, once the shared
//!   store committed it, the offsets it was given there. The ack follows that commit. The broker
//!   then applies it to its local log, after any batches other brokers committed before it
//!   ([`Broker::catch_up`]), so the local log's offsets are the shared ones.
//! - **Catching up**: batches committed elsewhere are applied in offset order when the shared store
//!   says a partition advanced ([`Broker::shared_advanced`], from its wake-ups) and before a fetch
//!   asks past the local end ([`Broker::catch_up_for_read`]): a consumer never gets
//!   OFFSET_OUT_OF_RANGE for an offset another broker acknowledged.
//! - **Topics**: create, delete, add partitions and config changes are written to the shared store
//!   first (its answer is the commit point), then applied locally; [`Broker::sync_topics`] applies
//!   the shared list on every broker.
//! - **Idempotent producers**: producer ids come from the shared store and sequence checks run
//!   in its commit, so a retry that reaches another broker is still answered as a duplicate.
//!
//! A local log that disagrees with the shared store (a batch whose shared base offset is not the
//! local end) is a cache gone wrong: the partition refuses to apply and answers a storage error
//! until the broker restarts with a fresh data directory (`docs/cluster.md`).

use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use crate::metadata::TopicMeta;
use crate::topic::{Partition, Topic};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future (the trait is used as a `dyn` object).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A batch as the shared store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedBatch {
    pub base_offset: u64,
    pub last_offset: u64,
    /// The RecordBatch with its base offset written in.
    pub bytes: Vec<u8>,
}

/// What a read of the shared store found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedRead {
    /// Stored batches from the offset asked for on, in offset order.
    pub batches: Vec<SharedBatch>,
    /// The partition's first stored offset (retention deleted those below it), when the read
    /// looked it up: it does whenever the batches do not start at the offset asked for.
    pub start: Option<u64>,
}

/// A topic's retention (`retention.ms`, `retention.bytes`; `None`: no limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub topic_id: String,
    pub partitions: u32,
    pub ms: Option<i64>,
    pub bytes: Option<u64>,
}

/// What committing a batch gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Stored at these offsets.
    Appended { base_offset: u64, last_offset: u64 },
    /// A retry of an idempotent producer's batch already stored at these offsets: nothing stored.
    Duplicate { base_offset: u64, last_offset: u64 },
    /// A transaction marker whose transaction had ended on the partition already: nothing
    /// stored.
    Nothing,
}

/// What a coordinator's lease is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coordinated {
    /// A consumer group.
    Group,
    /// A transactional id.
    Txn,
}

/// A write of one transactional id's record ([`SharedLog::write_txn`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnWrite {
    pub id: String,
    /// The record (`txn::Txn` as JSON); `None` forgets the id.
    pub record: Option<String>,
    /// Whether a transaction is open (Ongoing or being completed).
    pub open: bool,
    /// The producer id and epoch the record holds: the shared producer state follows it, so a
    /// fenced epoch's batches are refused by every broker.
    pub producer: Option<(i64, i16)>,
    /// Partitions joining transaction number `seq`: (topic id, partition).
    pub joined: Vec<(String, u32)>,
    pub seq: u64,
    /// For an id the cluster does not know yet: refused past this many ids.
    pub ids_max: Option<usize>,
}

/// A TxnOffsetCommit in cluster mode ([`SharedLog::stage_txn_offsets`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedOffsets {
    pub id: String,
    pub pid: i64,
    pub epoch: i16,
    pub group: String,
    /// (topic, partition, offset, metadata).
    pub offsets: Vec<(String, u32, i64, String)>,
    pub max: usize,
}

/// An offset a committed transaction staged, waiting for its group's coordinator to apply it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnCommitted {
    pub id: String,
    pub seq: u64,
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub metadata: String,
}

/// One partition's open transaction or aborted-index entry, as the shared store keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnPartitionRow {
    pub topic_id: String,
    pub partition: u32,
    pub aborted: crate::txn::Aborted,
}

/// [`SharedLog::txn_partition_state`]: open transactions (`aborted.last` unused) and aborted
/// ones; with the whole index, the log start of every partition whose start moved (the index
/// is pruned below it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnPartitionState {
    pub open: Vec<TxnPartitionRow>,
    pub aborted: Vec<TxnPartitionRow>,
    pub starts: Vec<(String, u32, u64)>,
}

/// The store the brokers of a cluster share (implemented by `busbar-cluster` on PostgreSQL).
pub trait SharedLog: Send + Sync + 'static {
    /// Queues `batch` (a checked RecordBatch v2) for `partition` of the topic with id `topic_id`
    /// before it returns; the future answers once it is committed (or refused: a sequence
    /// error of an idempotent producer, a full store).
    fn append(
        &self,
        topic_id: &str,
        partition: u32,
        batch: Vec<u8>,
    ) -> BoxFuture<'static, Result<Committed>>;

    /// Stored batches of a partition whose base offset is at or past `from` (a batch boundary:
    /// the local copy's end), in offset order, about `max_bytes` at most (at least one when any);
    /// with the partition's first stored offset when they do not start at `from`.
    fn read(
        &self,
        topic_id: &str,
        partition: u32,
        from: u64,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<SharedRead>>;

    /// Creates a topic; [`BrokerError::TopicExists`] when the name is taken in the cluster.
    fn create_topic(&self, meta: &TopicMeta) -> BoxFuture<'_, Result<()>>;

    /// Replaces a topic's partition count and configs (by id).
    fn update_topic(&self, meta: &TopicMeta) -> BoxFuture<'_, Result<()>>;

    /// Deletes a topic and its data (by id).
    fn delete_topic(&self, id: &str) -> BoxFuture<'_, Result<()>>;

    /// InitProducerId for an idempotent producer, unique across the cluster.
    fn init_producer_id(&self, current: Option<(i64, i16)>) -> BoxFuture<'_, Result<(i64, i16)>>;

    /// The live brokers (this one included), by node id.
    fn members(&self) -> Vec<Member>;

    /// This broker's node id.
    fn node_id(&self) -> i32;

    /// The broker coordinating `name` (a group or a transactional id): the live holder of its
    /// lease, else the one rendezvous hashing picks among the live brokers.
    fn coordinator(&self, of: Coordinated, name: &str) -> BoxFuture<'_, Result<Option<i32>>>;

    /// True when this broker may act as `name`'s coordinator now (it holds the lease, loaded
    /// and not about to expire).
    fn holds(&self, of: Coordinated, name: &str) -> bool;

    /// Takes `name`'s lease when it is free, expired or this process's already: the time the
    /// request was sent (for [`SharedLog::confirm`], after the state is loaded), or `None` when
    /// another live broker holds it. The flag says whether another process held it last.
    fn take(
        &self,
        of: Coordinated,
        name: &str,
    ) -> BoxFuture<'_, Result<Option<(std::time::Instant, bool)>>>;

    /// Makes a lease taken at `sent` usable.
    fn confirm(&self, of: Coordinated, name: &str, sent: std::time::Instant);

    /// Gives up using a lease whose state could not be loaded.
    fn release(&self, of: Coordinated, name: &str);

    /// Writes a transactional id's record, fenced by its lease (else
    /// [`BrokerError::NotCoordinator`]); answers the first offset registered for each joining
    /// partition (the partition's end now).
    fn write_txn(&self, w: TxnWrite) -> BoxFuture<'_, Result<Vec<u64>>>;

    /// A transactional id's record as last written (JSON), if any.
    fn load_txn(&self, id: &str) -> BoxFuture<'_, Result<Option<String>>>;

    /// Queues a transaction marker (`txn::marker`) ending transaction number `seq` of its
    /// producer on the partition; [`Committed::Nothing`] when that transaction had ended there.
    fn append_marker(
        &self,
        topic_id: &str,
        partition: u32,
        marker: Vec<u8>,
        seq: u64,
    ) -> BoxFuture<'static, Result<Committed>>;

    /// The cluster's open transactions per partition, and its aborted-transaction index: of
    /// every partition (`None`, when the broker starts) or of those listed (topic id,
    /// partition).
    fn txn_partition_state(
        &self,
        aborted_of: Option<Vec<(String, u32)>>,
    ) -> BoxFuture<'_, Result<TxnPartitionState>>;

    /// The partitions (topic id, partition) registered in transaction number `seq` of producer
    /// `pid`: those its markers must end.
    fn txn_partitions_of(&self, pid: i64, seq: u64) -> BoxFuture<'_, Result<Vec<(String, u32)>>>;

    /// The transactional id producer `pid` belongs to, if any.
    fn txn_owner(&self, pid: i64) -> BoxFuture<'_, Result<Option<String>>>;

    /// TxnOffsetCommit on the group's coordinator: stages `offsets` in the open transaction of
    /// `id` if producer `pid` at `epoch` owns it and `group` joined it (checked against the
    /// record, share-locked, so the transaction cannot end meanwhile); at most `max` staged.
    fn stage_txn_offsets(&self, s: StagedOffsets) -> BoxFuture<'_, Result<()>>;

    /// Marks the offsets staged in transaction number `seq` of `id` committed (`commit`; the
    /// groups' coordinators are told, and apply them) or drops them.
    fn settle_txn_offsets(&self, id: &str, seq: u64, commit: bool) -> BoxFuture<'_, Result<()>>;

    /// The partitions of `group` with offsets staged in a transaction and not applied yet.
    fn staged_offsets_of(&self, group: &str) -> BoxFuture<'_, Result<Vec<(String, u32)>>>;

    /// Committed transactions' offsets of `group` not applied yet, oldest transaction first.
    fn committed_txn_offsets(&self, group: &str) -> BoxFuture<'_, Result<Vec<TxnCommitted>>>;

    /// Deletes `rows` of `group` once applied.
    fn forget_txn_offsets(&self, group: &str, rows: Vec<TxnCommitted>)
        -> BoxFuture<'_, Result<()>>;

    /// Groups this broker coordinates with committed transactions' offsets not applied yet (at
    /// most `limit`).
    fn groups_with_txn_offsets(&self, limit: usize) -> BoxFuture<'_, Result<Vec<String>>>;

    /// Transactional ids with an open transaction that no live broker coordinates (at most
    /// `limit`), for this broker's timer to take over and complete or expire.
    fn orphan_txns(&self, limit: usize) -> BoxFuture<'_, Result<Vec<String>>>;

    /// Writes committed offsets (and deletions) durably, only while this broker holds each
    /// group's lease (else [`BrokerError::NotCoordinator`]).
    fn write_offsets(&self, rows: Vec<OffsetRow>) -> BoxFuture<'_, Result<()>>;

    /// Every committed offset of `group`.
    fn load_offsets(&self, group: &str) -> BoxFuture<'_, Result<Vec<OffsetRow>>>;
}

/// A partition's local copy in cluster mode.
#[derive(Default)]
pub struct Replica {
    /// Held while shared batches are applied to the local log.
    lock: tokio::sync::Mutex<()>,
    /// The shared store's end as last heard (notifications, polls, reads).
    shared_end: std::sync::atomic::AtomicU64,
    /// Batches this broker committed, waiting to be applied in order.
    pending: std::sync::Mutex<Pending>,
    /// Signalled when a batch is pended.
    filled: tokio::sync::Notify,
    /// When a read past the known end last asked the shared store (at most every
    /// [`FORCED_READ_EVERY`], so clients asking for offsets far past the end cannot turn each
    /// fetch into a database read).
    forced_at: std::sync::Mutex<Option<std::time::Instant>>,
    /// Until when the partition counts as served here ([`uptime_ms`]; 0: never served).
    served_until: std::sync::atomic::AtomicU64,
}

/// How long a partition read on a broker stays caught up at once there (cluster mode): longer
/// than any client's pause between fetches, so a reader's long polls are woken by commits.
const SERVED_FOR_MS: u64 = 60_000;

/// Milliseconds since this process first asked (monotonic).
fn uptime_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// Most own batches waiting per partition for the local copy, and most bytes.
const PENDING_MAX: usize = 4096;
const PENDING_BYTES_MAX: usize = 64 << 20;

/// How often a fetch past the known shared end may ask the shared store, per partition.
const FORCED_READ_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Own batches by base offset, with their total size (kept, not summed per batch).
#[derive(Default)]
struct Pending {
    batches: std::collections::BTreeMap<u64, Vec<u8>>,
    bytes: usize,
}

impl Pending {
    fn pop_first(&mut self) -> Option<(u64, Vec<u8>)> {
        let (base, bytes) = self.batches.pop_first()?;
        self.bytes -= bytes.len();
        Some((base, bytes))
    }

    fn first(&self) -> Option<u64> {
        self.batches.keys().next().copied()
    }

    fn clear(&mut self) {
        self.batches.clear();
        self.bytes = 0;
    }
}

impl Replica {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pend(&self, base: u64, bytes: Vec<u8>) {
        let mut pending = self.pending();
        // A copy that cannot keep up must not hold every later batch in memory: past the limits
        // they are read back from the shared store instead.
        if pending.batches.len() < PENDING_MAX && pending.bytes + bytes.len() <= PENDING_BYTES_MAX {
            pending.bytes += bytes.len();
            if let Some(old) = pending.batches.insert(base, bytes) {
                pending.bytes -= old.len();
            }
        }
        drop(pending);
        self.filled.notify_waiters();
    }

    fn first_pending(&self) -> Option<u64> {
        self.pending().first()
    }

    /// Notes a read of the partition here: its copy is kept current for [`SERVED_FOR_MS`].
    fn serve(&self) {
        self.serve_for(std::time::Duration::ZERO);
    }

    /// [`Replica::serve`] for a read that may wait `wait` (a long poll): the copy is kept
    /// current until the wait ends, however long, and [`SERVED_FOR_MS`] at least.
    pub(crate) fn serve_for(&self, wait: std::time::Duration) {
        let span = SERVED_FOR_MS.max(wait.as_millis() as u64);
        self.served_until.fetch_max(
            uptime_ms().saturating_add(span),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    fn served_recently(&self) -> bool {
        uptime_ms() < self.served_until.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The shared store's end as last heard.
    pub fn shared_end(&self) -> u64 {
        self.shared_end.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn heard(&self, end: u64) {
        self.shared_end
            .fetch_max(end, std::sync::atomic::Ordering::Relaxed);
    }

    /// True when a read at `offset` should ask the shared store now.
    fn worth_asking(&self, offset: u64) -> bool {
        if offset <= self.shared_end.load(std::sync::atomic::Ordering::Relaxed) {
            return true;
        }
        let mut at = self.forced_at.lock().unwrap_or_else(|e| e.into_inner());
        if at.is_some_and(|t| t.elapsed() < FORCED_READ_EVERY) {
            return false;
        }
        *at = Some(std::time::Instant::now());
        true
    }
}

/// A live broker of the cluster, as Kafka clients reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
}

/// One committed offset as the shared store keeps it: `None` deletes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetRow {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    /// (offset as the client sent it, metadata, commit time in ms).
    pub value: Option<(i64, String, i64)>,
}

/// The broker among `nodes` that `key` belongs to by rendezvous (highest random weight) hashing:
/// stable while the set is, and when one node leaves only its keys move. `None` without nodes.
pub fn rendezvous(key: &str, nodes: &[i32]) -> Option<i32> {
    nodes.iter().copied().max_by_key(|n| {
        // FNV-1a over the key and the node, then SplitMix64's finaliser: stable across processes
        // and versions (never the standard library's randomly keyed hasher).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.bytes().chain(n.to_be_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (h ^ (h >> 31), *n)
    })
}

/// The checks the local log makes of a new batch (length, CRC, record count against the last
/// offset delta, the topic's `max.message.bytes` and segment size), made before a batch is
/// committed: once committed, every copy must be able to take it.
pub(crate) fn check_new(t: &Topic, batch: &[u8]) -> Result<()> {
    let limit = t
        .config
        .max_message_bytes
        .min((t.config.segment_bytes - busbar_log::SEGMENT_HEADER_BYTES) as usize);
    busbar_log::batch::validate_new(batch, limit)
        .map(drop)
        .map_err(|e| BrokerError::from(busbar_log::LogError::Batch(e)))
}

/// How long a produce's ack waits for its batch to reach this broker's copy after the commit (it
/// is acknowledged either way: the copy goes on in the background).
const APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Most bytes one catch-up read asks of the shared store.
const CATCH_UP_READ_BYTES: usize = 4 << 20;

/// One topic of a single node's data directory as `busbar cluster import` takes it: its stored
/// metadata and its partitions' logs (in index order).
pub type ExportedTopic = (TopicMeta, Vec<Arc<busbar_log::Log>>);

/// One group's commit as the client sent it: (group, topic, partition, offset, metadata).
pub type ExportedCommit = (String, String, u32, i64, String);

impl Broker {
    /// Every topic with its metadata as stored and its partitions (for `busbar cluster import`),
    /// and every group's commits as sent: (group, topic, partition, offset, metadata).
    pub fn export(&self) -> Result<(Vec<ExportedTopic>, Vec<ExportedCommit>)> {
        let mut topics = Vec::new();
        for info in self.list_topics() {
            let t = self.topic(&info.name)?;
            let meta = TopicMeta {
                name: t.name.clone(),
                id: t.id.clone(),
                partitions: t.partitions.len() as u32,
                configs: t.overrides.clone(),
                created_ms: t.created_ms,
            };
            topics.push((meta, t.partitions.iter().map(|p| p.log.clone()).collect()));
        }
        let mut commits = Vec::new();
        for (group, _) in self.list_groups() {
            for (topic, p, offset, metadata) in self.committed_raw_all(&group) {
                commits.push((group.clone(), topic, p, offset, metadata));
            }
        }
        Ok((topics, commits))
    }

    /// Makes this broker a member of a cluster: from now on produce and topic changes go through
    /// `shared`. Call once, before serving.
    pub fn set_shared_log(&self, shared: Arc<dyn SharedLog>) {
        let _ = self.offsets.shared.set(shared.clone());
        let _ = self.shared.set(shared);
    }

    /// The cluster's shared store, in cluster mode.
    pub fn shared_log(&self) -> Option<&Arc<dyn SharedLog>> {
        self.shared.get()
    }

    /// True when this broker may act as `group`'s coordinator now (always in single-node mode).
    /// In cluster mode it takes or keeps the group's lease; taking it loads the group's
    /// committed offsets from the shared store first.
    ///
    /// Takes run one at a time on a broker, and a lease is usable only once its group is loaded:
    /// a request never acts on a group whose state this broker has not read since taking it.
    /// Taking a lease also drops what this broker remembered of the group's members (an earlier
    /// term as coordinator): they join again here.
    pub async fn coordinates(&self, group: &str) -> Result<bool> {
        let Some(shared) = self.shared.get() else {
            return Ok(true);
        };
        let g = Coordinated::Group;
        if shared.holds(g, group) {
            return Ok(true);
        }
        let _one = self.lease_takes.lock().await;
        if shared.holds(g, group) {
            return Ok(true);
        }
        let Some((sent, moved)) = shared.take(g, group).await? else {
            return Ok(false);
        };
        if moved {
            self.groups.discard(group);
        }
        let loaded = match shared.load_offsets(group).await {
            Ok(rows) => self.offsets.replace_group(group, rows).await,
            Err(e) => Err(e),
        };
        if let Err(e) = loaded {
            shared.release(g, group);
            return Err(e);
        }
        shared.confirm(g, group, sent);
        drop(_one);
        // Offsets transactions committed for the group and its last coordinator did not apply
        // (a failure is left for the coordinator tick).
        let _ = self.apply_txn_offsets(group).await;
        // A load slower than the lease's local window must not be acted on.
        Ok(shared.holds(g, group))
    }

    /// The shared store said `partition` of topic `topic_id` now ends at `next_offset`: applies
    /// what this broker lacks (a no-op when it has it or knows no such topic).
    pub async fn shared_advanced(&self, topic_id: &str, partition: u32, next_offset: u64) {
        let Some(t) = self.topic_by_id(topic_id) else {
            return;
        };
        let Ok(p) = t.partition(i64::from(partition)) else {
            return;
        };
        p.replica.heard(next_offset);
        if p.log.stats().high_watermark >= next_offset || !self.keeps_current(&t, p) {
            return;
        }
        if let Err(e) = self.catch_up(&t, p, Some(next_offset)).await {
            crate::log::warn(
                "busbar",
                "cluster_catch_up_failed",
                &format!("cluster: catching up {}/{partition} failed: {e}", t.name),
                &[],
            );
        }
    }

    /// Cluster mode: whether this broker applies `p`'s commits as the shared store announces
    /// them: it leads the partition (rendezvous hashing over the live brokers, as Metadata
    /// answers: where Kafka clients produce and fetch) or served a read of it within
    /// [`SERVED_FOR_MS`]. Other copies only note the shared end and catch up when read
    /// ([`Broker::bring_current`]): each batch is not read from the database by every broker.
    fn keeps_current(&self, t: &Topic, p: &Partition) -> bool {
        self.shared
            .get()
            .is_none_or(|shared| keeps_current(shared.as_ref(), t, p))
    }

    /// Cluster mode, before a read of `p`: notes the read (the copy is kept current for a
    /// while) and applies what the shared store was heard to hold beyond the local end.
    pub(crate) async fn bring_current(&self, t: &Topic, p: &Arc<Partition>) -> Result<()> {
        if self.shared.get().is_none() {
            return Ok(());
        }
        p.replica.serve();
        let heard = p.replica.shared_end();
        if heard > p.log.stats().high_watermark {
            return self.catch_up(t, p, Some(heard)).await;
        }
        Ok(())
    }

    /// Cluster mode, before a reader's positions are decided from the local copy (its log start,
    /// an offset for a timestamp): the copy of `topic`/`partition` caught up to the end this
    /// broker heard of. A failure leaves the copy as it is (the read serves it); unknown topics
    /// are the read's to answer. Single-node mode: nothing to do.
    pub async fn prepare_read(&self, topic: &str, partition: i64) {
        if self.shared.get().is_none() {
            return;
        }
        if let Ok(t) = self.topic(topic) {
            if let Ok(p) = t.partition(partition) {
                let _ = self.bring_current(&t, p).await;
            }
        }
    }

    /// Before a read at `offset` past the local end of the partition: applies what the shared
    /// store has (single-node mode: nothing to do).
    pub async fn catch_up_for_read(&self, topic: &str, partition: i64, offset: u64) -> Result<()> {
        if self.shared.get().is_none() {
            return Ok(());
        }
        let t = self.topic(topic)?;
        let p = t.partition(partition)?;
        self.bring_current(&t, p).await?;
        if offset <= p.log.stats().high_watermark || !p.replica.worth_asking(offset) {
            return Ok(());
        }
        // Up to the end last heard when that covers `offset`; else until the store has no more.
        let heard = p.replica.shared_end();
        self.catch_up(&t, p, (offset <= heard).then_some(heard))
            .await
    }

    /// Cluster mode: the broker coordinating `name` (a group or a transactional id; `None`
    /// without live brokers); single-node mode: `None`.
    pub async fn coordinator_of(&self, of: Coordinated, name: &str) -> Result<Option<i32>> {
        match self.shared.get() {
            Some(shared) => shared.coordinator(of, name).await,
            None => Ok(None),
        }
    }

    /// Cluster mode: the retention of every topic whose cleanup policy deletes and that has a
    /// limit, as this broker applies it to its copies (the uploader applies it to the objects).
    pub fn shared_retention(&self) -> Vec<Retention> {
        use busbar_log::CleanupPolicy::{CompactDelete, Delete};
        self.all_topics()
            .into_iter()
            .filter(|t| matches!(t.config.cleanup_policy, Delete | CompactDelete))
            .filter(|t| t.config.retention_ms.is_some() || t.config.retention_bytes.is_some())
            .map(|t| Retention {
                topic_id: t.id.clone(),
                partitions: t.partitions.len() as u32,
                ms: t.config.retention_ms,
                bytes: t.config.retention_bytes,
            })
            .collect()
    }

    pub(crate) fn topic_by_id(&self, id: &str) -> Option<Arc<Topic>> {
        self.all_topics().into_iter().find(|t| t.id == id)
    }

    /// Applies the shared store's batches from the local end on, in order, up to `end` when the
    /// shared end is known (no read past it), else until the store has no more. One catch-up at a
    /// time per partition.
    pub(crate) async fn catch_up(
        &self,
        t: &Topic,
        p: &Arc<Partition>,
        end: Option<u64>,
    ) -> Result<()> {
        let shared = self
            .shared
            .get()
            .ok_or_else(|| BrokerError::Storage("cluster catch-up outside cluster mode".into()))?;
        catch_up(shared, t, p, Upto::End(end)).await
    }
}

/// [`Broker::keeps_current`] with the shared store at hand.
fn keeps_current(shared: &dyn SharedLog, t: &Topic, p: &Partition) -> bool {
    if p.replica.served_recently() {
        return true;
    }
    let ids: Vec<i32> = shared.members().iter().map(|m| m.node_id).collect();
    partition_leader(&t.id, p.index, &ids).is_none_or(|l| l == shared.node_id())
}

/// The broker that leads partition `partition` of the topic with id `topic_id` among the live
/// brokers `nodes` (rendezvous hashing): what Kafka Metadata answers, and the broker that keeps
/// the partition's copy current. `None` without brokers.
pub fn partition_leader(topic_id: &str, partition: u32, nodes: &[i32]) -> Option<i32> {
    rendezvous(&format!("{topic_id}/{partition}"), nodes)
}

/// Appends `batch` (checked) through the shared store and then locally; its shared offsets.
pub(crate) async fn append(
    shared: &Arc<dyn SharedLog>,
    t: Arc<Topic>,
    p: Arc<Partition>,
    batch: Vec<u8>,
) -> Result<busbar_log::Appended> {
    let (base_offset, last_offset, _) = produce(shared, t, p, batch).await?;
    Ok(busbar_log::Appended {
        base_offset,
        last_offset,
    })
}

/// The cluster-mode produce: queues the checked `batch` in the shared store now (call order),
/// then, once committed there, applies it locally; answers its shared offsets.
pub(crate) fn produce(
    shared: &Arc<dyn SharedLog>,
    t: Arc<Topic>,
    p: Arc<Partition>,
    batch: Vec<u8>,
) -> BoxFuture<'static, Result<(u64, u64, bool)>> {
    let committing = shared.append(&t.id, p.index, batch.clone());
    settle(committing, shared.clone(), t, p, batch)
}

/// A transaction marker ending transaction number `seq` (`txn::marker`), committed through the
/// shared store and applied as a produced batch is; `None` when its transaction had ended on
/// the partition already (nothing stored).
pub(crate) async fn commit_marker(
    shared: &Arc<dyn SharedLog>,
    t: Arc<Topic>,
    p: Arc<Partition>,
    marker: Vec<u8>,
    seq: u64,
) -> Result<Option<u64>> {
    let committed = shared
        .append_marker(&t.id, p.index, marker.clone(), seq)
        .await?;
    if committed == Committed::Nothing {
        return Ok(None);
    }
    let committing: BoxFuture<'static, Result<Committed>> = Box::pin(async move { Ok(committed) });
    let (base, _, _) = settle(committing, shared.clone(), t, p, marker).await?;
    Ok(Some(base))
}

/// Waits for `committing` (the commit of `batch`) and applies it to the local copy.
fn settle(
    committing: BoxFuture<'static, Result<Committed>>,
    shared: Arc<dyn SharedLog>,
    t: Arc<Topic>,
    p: Arc<Partition>,
    batch: Vec<u8>,
) -> BoxFuture<'static, Result<(u64, u64, bool)>> {
    Box::pin(async move {
        match committing.await? {
            Committed::Nothing => Err(BrokerError::Storage(
                "cluster store: the batch was not stored".into(),
            )),
            Committed::Duplicate {
                base_offset,
                last_offset,
            } => Ok((base_offset, last_offset, true)),
            Committed::Appended {
                base_offset,
                last_offset,
            } if !keeps_current(shared.as_ref(), &t, &p) => {
                // A copy this broker does not keep current is not applied to for this batch
                // either (that would read the gap before it, possibly from objects): the end is
                // noted and the copy catches up when read.
                p.replica.heard(last_offset + 1);
                Ok((base_offset, last_offset, false))
            }
            Committed::Appended {
                base_offset,
                last_offset,
            } => {
                // Committed is acknowledged: a local copy that cannot take it is this broker's
                // problem (logged; reads catch up again), not the producer's. A copy far behind
                // (a new broker) must not hold the ack: past APPLY_WAIT it goes on alone.
                let apply = tokio::spawn(async move {
                    if let Err(e) = catch_up(&shared, &t, &p, Upto::Own(base_offset, batch)).await {
                        crate::log::warn(
                            "busbar",
                            "cluster_catch_up_failed",
                            &format!("cluster: applying {}/{} failed: {e}", t.name, p.index),
                            &[],
                        );
                    }
                });
                let _ = tokio::time::timeout(APPLY_WAIT, apply).await;
                Ok((base_offset, last_offset, false))
            }
        }
    })
}

/// How far a catch-up goes.
enum Upto {
    /// Through a batch this broker committed (its shared base offset and bytes).
    Own(u64, Vec<u8>),
    /// To the shared end when known (a notification's), else until the store has no more.
    End(Option<u64>),
}

/// [`Broker::catch_up`] with the shared store at hand. An own batch waits in the partition's
/// pending map, so the batches of one commit group are applied from memory in offset order
/// whichever of their tasks runs first; the shared store is read only for a gap another broker's
/// batches fill (after [`GAP_WAIT`] for this broker's own to arrive). A known end saves the read
/// that would find nothing more (and, on an empty hot tier, the object lookup after it).
async fn catch_up(
    shared: &Arc<dyn SharedLog>,
    t: &Topic,
    p: &Arc<Partition>,
    upto: Upto,
) -> Result<()> {
    let (until, end) = match upto {
        Upto::Own(base, bytes) => {
            p.replica.pend(base, bytes);
            (Some(base), None)
        }
        Upto::End(end) => (None, end),
    };
    let _one = p.replica.lock.lock().await;
    let mut next = p.log.stats().high_watermark;
    let mut waited = false;
    let result = loop {
        next = match drain(t, p, next) {
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        let first_pending = p.replica.first_pending();
        match until {
            Some(u) if next > u => break Ok(()),
            // The gap may be this group's own batches whose tasks have not pended yet.
            Some(_) if !waited && first_pending.is_some_and(|f| f > next) => {
                waited = true;
                let _ = tokio::time::timeout(GAP_WAIT, p.replica.filled.notified()).await;
                continue;
            }
            None if end.is_some_and(|e| next >= e) => break Ok(()),
            _ => {}
        }
        let got = match shared.read(&t.id, p.index, next, CATCH_UP_READ_BYTES).await {
            Ok(got) => got,
            Err(e) => break Err(e),
        };
        if let Some(start) = got.start.filter(|s| *s > next) {
            // Retention deleted what this copy lacks: it starts over where the store begins.
            match start_over(t, p, next, start).await {
                Ok(()) => {
                    next = start;
                    continue;
                }
                Err(e) => break Err(e),
            }
        }
        let got = got.batches;
        if got.is_empty() {
            break match until {
                Some(u) if next <= u => Err(inconsistent(t, p, next, u)),
                _ => Ok(()),
            };
        }
        let before = next;
        let mut failed = None;
        for b in got {
            if b.last_offset < next {
                continue;
            }
            let mut bytes = b.bytes;
            match apply(t, p, b.base_offset, &mut bytes) {
                Ok(n) => next = n,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            p.replica.heard(next);
        }
        if let Some(e) = failed {
            break Err(e);
        }
        if next == before {
            // Rows that do not move the copy on: never loop on them.
            break Err(inconsistent(t, p, next, next));
        }
    };
    p.appended.notify_waiters();
    if result.is_err() {
        // What could not be applied is read back from the shared store by the next catch-up.
        p.replica.pending().clear();
    }
    result
}

/// How long an own batch's apply waits for the batches of its commit group before it reads a gap
/// from the shared store.
const GAP_WAIT: std::time::Duration = std::time::Duration::from_millis(5);

/// Applies the pending own batches that continue the local copy at `next`; drops those it has.
fn drain(t: &Topic, p: &Partition, mut next: u64) -> Result<u64> {
    loop {
        let mut pending = p.replica.pending();
        if pending.first().is_none_or(|base| base > next) {
            return Ok(next);
        }
        let (base, mut bytes) = pending.pop_first().expect("a first batch");
        drop(pending);
        if base < next {
            continue;
        }
        next = apply(t, p, base, &mut bytes)?;
        p.replica.heard(next);
    }
}

/// Empties the local copy of `p` (ending at `end`) and makes it go on at `start`, where the
/// shared store now begins (on the blocking pool: it syncs and deletes files, and waits for a
/// cleaning pass of the log to finish).
pub(crate) async fn start_over(t: &Topic, p: &Partition, end: u64, start: u64) -> Result<()> {
    let log = p.log.clone();
    tokio::task::spawn_blocking(move || log.start_over_at(start))
        .await
        .map_err(|e| BrokerError::Storage(format!("start-over task failed: {e}")))??;
    p.txns.drop_below(start);
    let _ = p.txns.prune(start);
    p.replica.heard(start);
    crate::log::info(
        "busbar",
        "cluster_copy_starts_over",
        &format!(
            "cluster: the local copy of {}/{} ended at offset {end}, below the shared store's \
             first offset {start} (retention deleted the rest): it starts over at {start}",
            t.name, p.index
        ),
        &[],
    );
    Ok(())
}

/// Appends one shared batch to the local log; answers the local end after it.
fn apply(t: &Topic, p: &Partition, base: u64, bytes: &mut [u8]) -> Result<u64> {
    let end = p.log.stats().high_watermark;
    if end != base {
        return Err(inconsistent(t, p, end, base));
    }
    // A transaction's batch holds the last stable offset before it is readable; its marker
    // releases it once written.
    crate::txn::note_applying(p, base, bytes);
    let (at, _) = p.log.append_start(bytes)?;
    if at.base_offset != base {
        return Err(inconsistent(t, p, at.base_offset, base));
    }
    crate::txn::note_applied(p, base, bytes);
    Ok(at.last_offset + 1)
}

fn inconsistent(t: &Topic, p: &Partition, local: u64, shared: u64) -> BrokerError {
    BrokerError::Storage(format!(
        "cluster: the local copy of {}/{} ends at offset {local} but the shared store's next \
         batch starts at {shared}; restart this broker with an empty data directory",
        t.name, p.index
    ))
}
