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

mod copy;
mod replica;

pub(crate) use copy::{append, commit_marker, produce, start_over, trim_now};
use copy::{catch_up, Upto};
pub use replica::Replica;

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
    /// With no batches: nothing is stored from the offset asked for up to this one (the
    /// compaction of the objects removed it), so the reader goes on from there.
    pub skip_to: Option<u64>,
    /// The batches come from a compaction's object: they may skip offsets. Any other read's
    /// batches follow each other (and the offset asked for) exactly.
    pub gapped: bool,
}

/// A topic's retention (`retention.ms`, `retention.bytes`; `None`: no limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub topic_id: String,
    pub partitions: u32,
    pub ms: Option<i64>,
    pub bytes: Option<u64>,
}

/// A compacted topic (`cleanup.policy` with `compact`), for the compaction of its objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compaction {
    pub topic_id: String,
    pub partitions: u32,
    /// `delete.retention.ms`: how long a tombstone is kept.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`: the share of object bytes not yet compacted that starts a
    /// compaction.
    pub min_cleanable_dirty_ratio: crate::config::DirtyRatio,
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
    /// (topic id, partition, first stored offset (a batch's base), start as Kafka reports it
    /// (DeleteRecords may put it inside that batch)).
    pub starts: Vec<(String, u32, u64, u64)>,
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

    /// Raises the start of `partition` of the topic with id `topic_id` to `offset` (Kafka's
    /// DeleteRecords; `None`: the partition's end as the store has it) for every broker: what
    /// lies wholly below it is deleted, the rest of the batch holding it is hidden by each
    /// copy's log start. Answers the partition's start after it (more than `offset` when it was
    /// past it already); `offset` past the partition's end is [`BrokerError::OffsetOutOfRange`].
    fn delete_records(
        &self,
        topic_id: &str,
        partition: u32,
        offset: Option<u64>,
    ) -> BoxFuture<'_, Result<u64>>;

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

    /// [`SharedLog::holds`] without marking the lease used (read-only views must not keep an
    /// idle lease from lapsing).
    fn holds_quietly(&self, of: Coordinated, name: &str) -> bool;

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

    /// Gives the lease of `name` up now, in the database too (another broker may take it at
    /// once); a failure is logged (the lease then lapses by itself).
    fn give_up(&self, of: Coordinated, name: &str) -> BoxFuture<'_, ()>;

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

    /// The groups with committed offsets in the cluster, in name order (at most `limit`).
    fn group_ids(&self, limit: usize) -> BoxFuture<'_, Result<Vec<String>>>;
}

/// A live broker of the cluster, as Kafka clients reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node_id: i32,
    /// Its first Kafka listener's advertised address.
    pub host: String,
    pub port: u16,
    /// Every Kafka listener, in the broker's order (empty: a broker that registered only its
    /// first).
    pub listeners: Vec<AdvertisedListener>,
}

/// One Kafka listener of a broker as clients reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisedListener {
    /// Kafka's name of its security protocol (`SASL_SSL`).
    pub protocol: String,
    pub host: String,
    pub port: u16,
}

impl Member {
    /// Its address for a client that came through a listener of `protocol` at place `place`
    /// of its broker's list: its listener at the same place when that speaks the same protocol
    /// (brokers of a cluster list theirs in the same order, as Kafka's have the same listener
    /// names), else its first listener of that protocol, else its first listener.
    pub fn addr(&self, place: usize, protocol: &str) -> (&str, u16) {
        let same = (self.listeners.get(place)).filter(|l| l.protocol == protocol);
        let any = || self.listeners.iter().find(|l| l.protocol == protocol);
        match same.or_else(any) {
            Some(l) => (&l.host, l.port),
            None => (&self.host, self.port),
        }
    }
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

    /// The shared store said `partition` of topic `topic_id` now starts at `start` (DeleteRecords,
    /// the objects' retention): the local copy drops its records below it, now when it holds
    /// that offset, else when a catch-up brings it there. A failure is logged (reads serve the
    /// copy as it is; the next poll tries again).
    pub async fn shared_started(&self, topic_id: &str, partition: u32, start: u64) {
        let Some(t) = self.topic_by_id(topic_id) else {
            return;
        };
        let Ok(p) = t.partition(i64::from(partition)) else {
            return;
        };
        p.replica.heard_start(start);
        let stats = p.log.stats();
        // A copy that does not hold the start yet is trimmed by the catch-up that brings it
        // there (its lock is not waited for here: the applier must not wait behind a read's
        // catch-up).
        if start <= stats.log_start || start > stats.high_watermark {
            return;
        }
        if let Err(e) = trim_now(p).await {
            crate::log::warn(
                "busbar",
                "cluster_trim_failed",
                &format!(
                    "cluster: dropping the records of {}/{partition} below {start} failed: {e}",
                    t.name
                ),
                &[],
            );
        }
    }

    /// Cluster mode: DeleteRecords through the shared store (every broker's copy drops the
    /// records below the new start; this one's at once when it holds it). Answers the start.
    /// The start has moved once the store answers: a failure to trim this copy then is logged
    /// (the next poll tries again), not answered.
    pub(crate) async fn delete_records_shared(
        &self,
        t: &Topic,
        p: &Partition,
        offset: Option<u64>,
    ) -> Result<u64> {
        let shared = self.shared.get().ok_or_else(|| {
            BrokerError::Storage("cluster DeleteRecords outside cluster mode".into())
        })?;
        let start = shared.delete_records(&t.id, p.index, offset).await?;
        self.shared_started(&t.id, p.index, start).await;
        Ok(start)
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

    /// Every compacted topic (the objects of its partitions are compacted as its local logs).
    pub fn shared_compaction(&self) -> Vec<Compaction> {
        use busbar_log::CleanupPolicy::{Compact, CompactDelete};
        self.all_topics()
            .into_iter()
            .filter(|t| matches!(t.config.cleanup_policy, Compact | CompactDelete))
            .map(|t| Compaction {
                topic_id: t.id.clone(),
                partitions: t.partitions.len() as u32,
                delete_retention_ms: t.config.delete_retention_ms,
                min_cleanable_dirty_ratio: t.config.min_cleanable_dirty_ratio,
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
