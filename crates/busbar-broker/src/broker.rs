//! The `Broker`: topics and their partitions, publish and produce, long-polling fetch, committed
//! offsets, background maintenance and clean shutdown. Every state change goes through here; front
//! ends call these methods with domain types.
//!
//! Locking: `topics` (a `RwLock` over the topic map) is held only to look up or swap entries; admin
//! operations (`admin.rs`) hold `admin` (a tokio mutex) across their disk work, which runs on the
//! blocking pool, and take it before `topics`. Appends run on blocking threads (the log blocks
//! until durable).

use crate::config::{BrokerConfig, TopicConfig};
use crate::error::{BrokerError, Result};
use crate::metadata::{MetaStore, TopicMeta};
use crate::offsets::OffsetStore;
use crate::partitioner::Sticky;
use crate::schema_rules::{Failures, SchemaChecker};
use crate::topic::{Partition, PartitionInfo, Topic, TopicDescription, TopicInfo};
use busbar_log::{Appended, Log};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

/// What a fetch answers: whole stored batches and the partition's positions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchResult {
    pub data: Vec<u8>,
    pub high_watermark: u64,
    pub log_start: u64,
}

/// Totals of the partition logs' recovery reports at open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoverySummary {
    pub partitions: usize,
    /// Partitions that were shut down cleanly (nothing scanned).
    pub clean: usize,
    pub scanned_bytes: u64,
    pub truncated_bytes: u64,
    pub damaged_segments: usize,
    /// Partitions whose producer state was loaded from its snapshot (the rest scanned their
    /// newest records).
    pub producer_snapshots: usize,
    /// Offsets whose batch headers were read to restore producer state.
    pub producer_scanned: u64,
}

/// The broker core.
pub struct Broker {
    pub(crate) config: BrokerConfig,
    topics: Arc<RwLock<TopicMap>>,
    /// Held by admin operations from start to end, across their work on the blocking pool.
    admin: Arc<tokio::sync::Mutex<()>>,
    /// Cluster mode: catalog changes this broker wrote to the shared store (bumped under the
    /// admin lock), so a topic sync can tell a catalog read before one of them (`cluster.rs`).
    catalog_writes: std::sync::atomic::AtomicU64,
    /// Cluster mode: the shared spaces' store, once joined (`cluster.rs`).
    shared_kv: std::sync::OnceLock<Arc<dyn crate::kvlog::SharedKv>>,
    /// Tables other crates keep in shared spaces, by space (`cluster.rs`).
    shared_tables: std::sync::Mutex<Vec<(&'static str, Arc<dyn crate::kvlog::SharedTable>)>>,
    meta: Arc<MetaStore>,
    pub(crate) offsets: OffsetStore,
    auth: crate::auth::Auth,
    quotas: crate::quota::Quotas,
    pub(crate) groups: crate::group::Groups,
    pub(crate) producer_ids: crate::producers::ProducerIds,
    /// The transaction coordinator (`txn.rs`).
    pub(crate) txns: crate::txn::Transactions,
    audit: crate::audit::Audit,
    sticky: Sticky,
    /// Held for the broker's life: no second process opens the same data directory.
    _lock: Option<crate::datadir::DirLock>,
    /// Asked before a topic is deleted (under the admin lock): `Some(why)` refuses it.
    deletion_guard: std::sync::RwLock<Option<DeletionGuard>>,
    /// The schema registry's record check (see `schema_rules`), once installed.
    schema_checker: std::sync::RwLock<Option<Arc<dyn SchemaChecker>>>,
    /// Records refused by schema checks, per topic and reason.
    pub(crate) schema_failures: Arc<Failures>,
    /// Counters and histograms the front ends and the broker record (`/metrics`).
    metrics: Arc<crate::metrics::Metrics>,
    /// Each committed partition's last commits, for its lag status (`lag.rs`).
    pub(crate) lag_windows: crate::lag::Windows,
    /// Cluster mode's shared store, once set (`shared.rs`).
    pub(crate) shared: std::sync::OnceLock<Arc<dyn crate::shared::SharedLog>>,
    /// Cluster mode: group leases are taken one at a time (`Broker::coordinates`).
    pub(crate) lease_takes: tokio::sync::Mutex<()>,
    /// Cluster mode: one application of transactions' committed offsets at a time.
    pub(crate) txn_offsets_applying: tokio::sync::Mutex<()>,
}

/// Says why a topic may not be deleted now, or `None` (see [`Broker::set_deletion_guard`]).
pub type DeletionGuard = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Topics by name.
type TopicMap = BTreeMap<String, Arc<Topic>>;

mod admin;
mod cluster;
pub mod observe;
pub(crate) mod publish;
mod read;

pub(crate) fn io_err(what: &str, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Storage(format!("{what}: {e}"))
}

impl Broker {
    /// Opens the broker's data directory (creating it), recovering every partition.
    pub fn open(config: BrokerConfig) -> Result<Self> {
        let data = config.data();
        let lock = data.lock().map_err(|e| match e {
            held @ crate::datadir::LockError::Held { .. } => {
                BrokerError::DataDirLocked(held.to_string())
            }
            other => BrokerError::Storage(other.to_string()),
        })?;
        let dir = |rel: &str| {
            data.storage(rel)
                .map_err(|e| io_err(&format!("open {}", data.describe(rel)), e))
        };
        dir("topics")?;
        let meta = MetaStore::open(dir("meta")?)?;
        let offsets = OffsetStore::open(dir("internal/offsets")?, config.clock.clone())?;
        let users =
            crate::auth::users::UserStore::open(dir("internal/users")?, config.clock.clone())?
                .with_users_max(config.auth.users_max);
        let tokens =
            crate::auth::tokens::TokenStore::open(dir("internal/tokens")?, config.clock.clone())?;
        let acls = crate::auth::acls::AclStore::open(
            dir("internal/acls")?,
            config.clock.clone(),
            config.auth.acls_max,
        )?;
        let acls = acls.with_answer_bytes_max(config.auth.acls_answer_bytes_max);
        let auth = crate::auth::Auth::new(config.auth.clone(), users, tokens, acls);
        let quotas = crate::quota::Quotas::open(
            dir("internal/quotas")?,
            config.clock.clone(),
            config.quotas.clone(),
        )?;
        let mut topics = BTreeMap::new();
        for m in Self::load_topics(data.as_ref(), &meta)? {
            let t = Self::open_topic(&config, &m)?;
            topics.insert(m.name.clone(), Arc::new(t));
        }
        Self::remove_orphans(data.as_ref(), &topics)?;
        let groups = crate::group::Groups::new(&config);
        let producer_ids =
            crate::producers::ProducerIds::open_with(dir("meta")?, config.producers_max)?;
        let newest = topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| p.producers.max_producer_id())
            .max();
        if let Some(pid) = newest {
            producer_ids.reserve_through(pid)?;
        }
        let txns = crate::txn::Transactions::open(
            dir("internal/transactions")?,
            config.clock.clone(),
            config.transactions.clone(),
        )?;
        let audit_dir = config.data.is_none().then_some(config.data_dir.as_path());
        let audit = crate::audit::Audit::start(&config.audit, audit_dir, config.clock.clone())
            .map_err(|e| io_err("open the audit log", e))?;
        if let Some(pid) = txns.max_producer_id() {
            producer_ids.reserve_through(pid)?;
        }
        let series_max = config.metrics_series_max;
        let broker = Self {
            config,
            topics: Arc::new(RwLock::new(topics)),
            admin: Arc::default(),
            catalog_writes: Default::default(),
            shared_kv: Default::default(),
            shared_tables: Default::default(),
            meta: Arc::new(meta),
            offsets,
            auth,
            quotas,
            groups,
            producer_ids,
            txns,
            audit,
            sticky: Sticky::default(),
            _lock: lock,
            deletion_guard: Default::default(),
            schema_checker: Default::default(),
            schema_failures: Default::default(),
            metrics: Arc::new(crate::metrics::Metrics::new(series_max)),
            lag_windows: Default::default(),
            shared: Default::default(),
            lease_takes: Default::default(),
            txn_offsets_applying: Default::default(),
        };
        broker.attach_aborted();
        broker.sync_open_transactions();
        Ok(broker)
    }

    /// Installs the schema registry's record check (the binary does, once the registry is open):
    /// topics with `{key,value}.schema.validation` other than `none` are checked by it.
    pub fn set_schema_checker(&self, checker: Arc<dyn SchemaChecker>) {
        *self
            .schema_checker
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(checker);
    }

    /// The installed schema check, if any.
    pub(crate) fn schema_checker(&self) -> Option<Arc<dyn SchemaChecker>> {
        (self
            .schema_checker
            .read()
            .unwrap_or_else(|e| e.into_inner()))
        .clone()
    }

    /// Records refused by schema checks: (topic, reason, count), for
    /// `busbar_schema_validation_failures_total`.
    pub fn schema_failures(&self) -> Vec<(String, &'static str, u64)> {
        self.schema_failures.snapshot()
    }

    fn partition_dir(topic: &str, p: u32) -> String {
        format!("topics/{topic}/{p}")
    }

    fn open_partition(
        config: &BrokerConfig,
        topic: &str,
        p: u32,
        tc: &TopicConfig,
    ) -> Result<Arc<Partition>> {
        let data = config.data();
        let rel = Self::partition_dir(topic, p);
        let storage = data
            .storage(&rel)
            .map_err(|e| io_err(&format!("open {}", data.describe(&rel)), e))?;
        let log = Log::open(storage.clone(), config.log_config(tc))?;
        let producers = crate::producers::PartitionProducers::new(config.producers_max);
        let restored = producers.restore(storage.as_ref(), &log)?;
        Ok(Arc::new(Partition {
            index: p,
            log: Arc::new(log),
            dir: storage,
            appended: tokio::sync::Notify::new(),
            producers,
            restored,
            sync: Default::default(),
            txns: Default::default(),
            replica: Default::default(),
        }))
    }

    fn open_topic(config: &BrokerConfig, m: &TopicMeta) -> Result<Topic> {
        let tc = config.topic_defaults.with_overrides(&m.configs)?;
        let partitions = (0..m.partitions)
            .map(|p| Self::open_partition(config, &m.name, p, &tc))
            .collect::<Result<Vec<_>>>()?;
        Ok(Topic {
            name: m.name.clone(),
            id: m.id.clone(),
            config: tc,
            overrides: m.configs.clone(),
            partitions,
            created_ms: m.created_ms,
        })
    }

    /// What opening the partition logs found: after a clean shutdown every log is clean and nothing
    /// was scanned; after a crash, the unverified tails were scanned and torn bytes cut.
    pub fn recovery_summary(&self) -> RecoverySummary {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        let mut s = RecoverySummary::default();
        for p in topics.values().flat_map(|t| t.partitions.iter()) {
            let r = p.log.recovery();
            s.partitions += 1;
            s.clean += usize::from(r.clean);
            s.scanned_bytes += r.scanned_bytes;
            s.truncated_bytes += r.truncated_bytes;
            s.damaged_segments += r.damaged_segments.len();
            s.producer_snapshots += usize::from(p.restored.from_snapshot);
            s.producer_scanned += p.restored.scanned;
        }
        s
    }

    /// Damage found in the broker's internal logs at open and contained (committed offsets
    /// written in a damaged range are lost; their groups fall back to older commits, so events
    /// are delivered again, never skipped). For the operator: `busbar serve` prints each.
    ///
    /// Also each producer-state snapshot found unusable and removed (the partition's producer
    /// state was rebuilt from its newest records instead).
    pub fn internal_damage(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .offsets
            .damage()
            .iter()
            .map(|d| format!("committed-offsets log: {d}"))
            .collect();
        out.extend(
            self.auth
                .users()
                .damage()
                .iter()
                .map(|d| format!("users log: {d}")),
        );
        let quota_damage = self.quotas.damage().iter();
        out.extend(quota_damage.map(|d| format!("quotas log: {d}")));
        out.extend(
            self.auth
                .acls()
                .damage()
                .iter()
                .map(|d| format!("ACL log: {d}")),
        );
        for t in self.all_topics() {
            for p in &t.partitions {
                if let Some(why) = &p.restored.problem {
                    out.push(format!(
                        "producer-state snapshot of {}/{} not used ({why}); rebuilt from the \
                         newest {} records",
                        t.name,
                        p.index,
                        crate::producers::REBUILD_RECORDS
                    ));
                }
            }
        }
        out
    }

    /// Authentication: settings, users, failed-login backoff.
    pub fn auth(&self) -> &crate::auth::Auth {
        &self.auth
    }

    /// The audit log (authentication failures, denials, administrative changes).
    pub fn audit(&self) -> &crate::audit::Audit {
        &self.audit
    }

    /// Client quotas: the stored quotas and the measured rates.
    pub fn quotas(&self) -> &crate::quota::Quotas {
        &self.quotas
    }

    /// The broker's configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub(crate) fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        topics
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))
    }

    /// Every topic, by name.
    pub fn list_topics(&self) -> Vec<TopicInfo> {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        topics
            .values()
            .map(|t| TopicInfo {
                name: t.name.clone(),
                id: t.id.clone(),
                partitions: t.partitions.len() as u32,
            })
            .collect()
    }

    /// A topic with its partitions' positions and its configs.
    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let t = self.topic(name)?;
        let partitions = t
            .partitions
            .iter()
            .map(|p| {
                let s = p.log.stats();
                PartitionInfo {
                    partition: p.index,
                    log_start: p.reported_start(),
                    high_watermark: p.reported_end(),
                    size_bytes: s.size_bytes,
                    segments: s.segments,
                    damaged_ranges: p.log.damage_count(),
                    offline: s.offline,
                }
            })
            .collect();
        Ok(TopicDescription {
            name: t.name.clone(),
            id: t.id.clone(),
            partitions,
            configs: t.config.entries(),
            overrides: t.overrides.clone(),
        })
    }

    /// A topic's effective configuration.
    pub fn topic_config(&self, name: &str) -> Result<TopicConfig> {
        Ok(self.topic(name)?.config.clone())
    }

    pub(crate) async fn append(p: &Arc<Partition>, mut batch: Vec<u8>) -> Result<Appended> {
        let log = p.log.clone();
        let at = tokio::task::spawn_blocking(move || log.append(&mut batch))
            .await
            .map_err(|e| BrokerError::Storage(format!("append task failed: {e}")))??;
        p.appended.notify_waiters();
        Ok(at)
    }

    /// The first offset with a timestamp at or after `ts`, or the high watermark when none.
    pub fn offset_for_timestamp(&self, topic: &str, partition: i64, ts: i64) -> Result<u64> {
        match self.find_timestamp(topic, partition, ts)? {
            Some((o, _)) => Ok(o),
            // The local end, not the heard one (`offsets_of`): a record at or after `ts` may
            // be among the shared store's batches this copy has not applied yet.
            None => Ok(self
                .topic(topic)?
                .partition(partition)?
                .log
                .stats()
                .high_watermark),
        }
    }

    /// (log start, high watermark) of a partition. Cluster mode: the high watermark is the
    /// shared store's end as this broker heard it when its copy is behind (a copy is caught up
    /// when read, `shared.rs`).
    pub fn offsets_of(&self, topic: &str, partition: i64) -> Result<(u64, u64)> {
        let t = self.topic(topic)?;
        let p = t.partition(partition)?;
        Ok((p.reported_start(), p.reported_end()))
    }

    /// Raises a partition's log start offset (Kafka's DeleteRecords) to `offset` (`None`: the
    /// high watermark; in cluster mode the shared store's). A compact-only topic refuses it, as
    /// Kafka does (POLICY_VIOLATION): its records go by key, not by offset.
    pub async fn delete_records(
        &self,
        topic: &str,
        partition: i64,
        offset: Option<u64>,
    ) -> Result<u64> {
        let t = self.topic(topic)?;
        if self.topic_config(topic)?.cleanup_policy == busbar_log::CleanupPolicy::Compact {
            return Err(BrokerError::PolicyViolation(format!(
                "topic {topic:?} has cleanup.policy=compact: records cannot be deleted by \
                 offset"
            )));
        }
        let p = t.partition(partition)?;
        if self.shared_log().is_some() {
            return self.delete_records_shared(&t, p, offset).await;
        }
        let log = p.log.clone();
        let offset = offset.unwrap_or_else(|| log.stats().high_watermark);
        tokio::task::spawn_blocking(move || log.delete_records(offset))
            .await
            .map_err(|e| BrokerError::Storage(format!("delete task failed: {e}")))?
            .map_err(Into::into)
    }

    pub(crate) fn all_topics(&self) -> Vec<Arc<Topic>> {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        topics.values().cloned().collect()
    }

    /// One round of background work: interval syncs, retention, compaction, producer-state
    /// snapshots, offsets compaction. Errors are per partition and do not stop the round.
    pub fn maintain(&self) -> Vec<BrokerError> {
        let topics = self.all_topics();
        let mut errors = Vec::new();
        for t in topics {
            for p in &t.partitions {
                let r = p
                    .log
                    .tick()
                    .and_then(|_| p.log.enforce_retention().map(|_| ()))
                    .and_then(|_| p.log.compact().map(|_| ()));
                if let Err(e) = r {
                    // Named, so the log line says which partition's maintenance failed.
                    let at = format!("{}-{}", t.name, p.index);
                    errors.push(BrokerError::Storage(format!("{at}: {e}")));
                }
                let lag = crate::producers::SNAPSHOT_LAG;
                if let Err(e) = p.producers.save(p.dir.as_ref(), &p.log, lag) {
                    errors.push(e);
                }
            }
        }
        if let Err(e) = self.offsets.maintain() {
            errors.push(e);
        }
        if let Err(e) = self.auth.users().maintain() {
            errors.push(e);
        }
        if let Err(e) = self.auth.tokens().maintain() {
            errors.push(e);
        }
        if let Err(e) = self.quotas.maintain() {
            errors.push(e);
        }
        if let Err(e) = self.auth.acls().maintain() {
            errors.push(e);
        }
        if let Err(e) = self.txns.compact() {
            errors.push(e);
        }
        errors
    }

    /// Clean shutdown: every partition's producer state snapshotted, every log synced and marked
    /// clean. Later calls fail with `ShuttingDown`.
    pub fn close(&self) -> Result<()> {
        let topics = self.all_topics();
        let mut first = None;
        for t in topics {
            for p in &t.partitions {
                // At the high watermark, so the next start reads no batch header at all.
                if let Err(e) = p.producers.save(p.dir.as_ref(), &p.log, 1) {
                    first.get_or_insert(e);
                }
                p.producers.seal();
                if let Err(e) = p.log.close() {
                    first.get_or_insert(BrokerError::from(e));
                }
                p.appended.notify_waiters();
            }
        }
        if let Err(e) = self.offsets.close() {
            first.get_or_insert(e);
        }
        if let Err(e) = self.auth.users().close() {
            first.get_or_insert(e);
        }
        if let Err(e) = self.auth.tokens().close() {
            first.get_or_insert(e);
        }
        if let Err(e) = self.quotas.close() {
            first.get_or_insert(e);
        }
        if let Err(e) = self.auth.acls().close() {
            first.get_or_insert(e);
        }
        if let Err(e) = self.txns.close() {
            first.get_or_insert(e);
        }
        self.audit.flush();
        first.map_or(Ok(()), Err)
    }

    /// Per-partition event counts waiting to be read by `group` on `topic` (lag).
    pub fn lag(&self, group: &str, topic: &str) -> Result<HashMap<u32, u64>> {
        let t = self.topic(topic)?;
        Ok(t.partitions
            .iter()
            .map(|p| {
                let hw = p.log.stats().high_watermark;
                let committed = self
                    .offsets
                    .get(group, topic, p.index)
                    .map_or(p.log.stats().log_start, |c| c.offset);
                (p.index, hw.saturating_sub(committed))
            })
            .collect())
    }
}

/// The offset of the last record in `data` (whole record batches), or `None` if it holds none.
pub fn last_offset(data: &[u8]) -> Option<u64> {
    let mut pos = 0;
    let mut last = None;
    while pos < data.len() {
        let h = busbar_log::batch::BatchHeader::parse(&data[pos..]).ok()?;
        last = Some(h.last_offset() as u64);
        pos += h.total_len()?;
    }
    last
}

/// Resolves when any of the futures does.
pub(crate) struct AnyOf<F>(pub(crate) Vec<std::pin::Pin<Box<F>>>);

impl<F: std::future::Future<Output = ()>> std::future::Future for AnyOf<F> {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0.is_empty() {
            return std::task::Poll::Pending;
        }
        for f in self.0.iter_mut() {
            if f.as_mut().poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    }
}
