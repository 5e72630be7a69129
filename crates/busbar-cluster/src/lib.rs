//! busbar-cluster: cluster mode (issue 20). Several busbar brokers share partition data and topics
//! through PostgreSQL; any broker accepts a produce for any partition. This crate implements
//! `busbar_broker::shared::SharedLog` on PostgreSQL (the broker side of the seam, and how each
//! broker keeps its local logs as a copy, is `busbar_broker::shared`).
//!
//! - `migrate`: the schema (`migrations/*.sql`), applied at start under an advisory lock.
//! - `pool`: a bounded pool of connections (`cluster.pg_connections_max`).
//! - `commit`: the committer: batches from every partition queued on this broker share one
//!   transaction (group commit) that advances each partition's `next_offset`, stores the batches
//!   with their offsets written in, checks idempotent producers' sequences and notifies the other
//!   brokers; the ack follows `COMMIT`.
//! - `catalog`: topics and producer ids in the database.
//! - `bus`: the bus's subscriptions, their state and leases (`busbar_bus::cluster::SharedBus`).
//! - `cold`: the cold tier's objects (S3-compatible storage through `object_store`) and their
//!   bytes (the local log's segment format); `upload`: the uploader that moves committed batches
//!   there, one broker per partition range (a lease).
//! - `txn`: transactional ids' records, the partitions in open transactions and the
//!   aborted-transaction index (the markers go through the committer).
//! - `records`: DeleteRecords (a partition's start raised, what lies wholly below it deleted).
//! - `import`: `busbar cluster import`, a single node's topics, events and commits in one
//!   transaction.
//! - `watch`: one `LISTEN` connection wakes this broker when another commits (with polling while
//!   it is down, and a slow poll always, so a lost notification costs latency, never data).
//!
//! Decisions and the operator's view: `docs/cluster.md`.

mod asks;
mod bus;
mod catalog;
pub mod cold;
mod commit;
mod compact;
pub mod import;
mod kv;
pub mod members;
pub mod migrate;
pub mod pg;
mod pool;
mod records;
mod txn;
mod upload;
mod watch;

use busbar_broker::metadata::TopicMeta;
use busbar_broker::shared::{
    BoxFuture, Committed, Coordinated, Member, OffsetRow, SharedLog, SharedRead, StagedOffsets,
    TxnCommitted, TxnPartitionState, TxnWrite,
};
use busbar_broker::Broker;
use busbar_broker::BrokerError;
use std::sync::Arc;
use std::time::Duration;

/// What can go wrong talking to the cluster's database.
#[derive(Debug)]
pub enum Error {
    /// The database refused or the connection failed.
    Db(tokio_postgres::Error),
    /// A setting or the database's state makes cluster mode impossible (said why).
    Config(String),
    /// No answer in time, or a limit reached: try again later (said why).
    Busy(String),
    /// The object store failed or answered a damaged object (said which and why).
    Store(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The source says what PostgreSQL answered (the top level is often just "db error").
            Error::Db(e) => match std::error::Error::source(e) {
                Some(s) => write!(f, "PostgreSQL: {e}: {s}"),
                None => write!(f, "PostgreSQL: {e}"),
            },
            Error::Config(s) | Error::Busy(s) | Error::Store(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for Error {}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Error::Db(e)
    }
}

impl From<Error> for BrokerError {
    fn from(e: Error) -> Self {
        // Retriable for Kafka clients (KAFKA_STORAGE_ERROR), 503 over HTTP.
        BrokerError::Storage(format!("cluster store: {e}"))
    }
}

/// `[cluster]` settings.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `postgres://user:password@host:port/database` (libpq's URL form).
    pub postgres_url: String,
    /// Most connections this broker opens for reads and admin work (the committer and the listener
    /// have one each besides).
    pub pg_connections_max: usize,
    /// Most bytes of batches waiting for the committer; past it a produce is refused with a
    /// retriable error.
    pub commit_queue_bytes_max: usize,
    /// Most batches one commit transaction takes.
    pub commit_batches_max: usize,
    /// Most bytes the hot tier holds across all partitions; past it a produce is refused with a
    /// retriable error until space is freed (backpressure, as a full disk does).
    pub hot_bytes_max: u64,
    /// How often the database is asked for partitions' ends while notifications work (a safety
    /// net; while the listener is down it is asked every [`POLL_DOWN`]).
    pub poll_interval: Duration,
    /// The cold tier's object store; `None`: no cold tier (the hot tier keeps everything, up to
    /// `hot_bytes_max`).
    pub object_store: Option<cold::ObjectStoreConfig>,
    /// A partition's hot bytes that make the uploader move them to one object (also about the
    /// largest object it writes, plus one batch).
    pub upload_bytes: usize,
    /// The longest hot data waits for an upload when `upload_bytes` is not reached.
    pub upload_after: Duration,
    /// How often the holder of an upload range looks for a compacted topic's partition whose
    /// objects are due a compaction (`compact.rs`).
    pub compaction_interval: Duration,
    /// Memory for the key map of one compaction of objects (one at a time per broker): each
    /// distinct key counts its length plus 64 bytes; a partition with more keys is compacted in
    /// several passes.
    pub compaction_map_bytes: u64,
    /// With `sslmode=require` in `postgres_url`: the CA certificates (PEM) the server's
    /// certificate must chain to; `None`: the Mozilla roots (`pg.rs`).
    pub postgres_ca_file: Option<std::path::PathBuf>,
    /// With `sslmode=require`: the client certificate and key to present (`pg.rs`).
    pub postgres_client_cert: Option<pg::ClientCert>,
}

/// How often partitions' ends are polled while the `LISTEN` connection is down.
pub const POLL_DOWN: Duration = Duration::from_millis(100);

impl ClusterConfig {
    /// The defaults with `url`.
    pub fn new(url: &str) -> ClusterConfig {
        ClusterConfig {
            postgres_url: url.to_string(),
            pg_connections_max: 8,
            commit_queue_bytes_max: 64 << 20,
            commit_batches_max: 512,
            hot_bytes_max: 8 << 30,
            poll_interval: Duration::from_secs(5),
            object_store: None,
            upload_bytes: 8 << 20,
            upload_after: Duration::from_secs(10),
            compaction_interval: Duration::from_secs(30),
            compaction_map_bytes: 16 << 20,
            postgres_ca_file: None,
            postgres_client_cert: None,
        }
    }
}

/// How this broker is reached, for the `brokers` table.
#[derive(Debug, Clone)]
pub struct Advertised {
    pub node_id: i32,
    /// The first Kafka listener's advertised address.
    pub kafka_host: String,
    pub kafka_port: u16,
    /// Every Kafka listener, in order (the first is `kafka_host:kafka_port`).
    pub listeners: Vec<busbar_broker::shared::AdvertisedListener>,
    pub http_addr: String,
}

/// A broker's membership in a cluster: the shared store on PostgreSQL.
pub struct Cluster {
    /// The database and how to reach it.
    pg: pg::Pg,
    config: ClusterConfig,
    pool: pool::Pool,
    committer: commit::Handle,
    members: members::Membership,
    /// The cold tier's store, when configured.
    cold: Option<Arc<cold::Cold>>,
    /// The database's cluster id (`busbar_cluster`).
    pub id: String,
    /// Woken when an ask for a subscription was made (`busbar_asks`, `asks.rs`).
    asks: Arc<tokio::sync::Notify>,
}

/// The longest any one database call may take as seen from here (the server's own
/// `statement_timeout` is shorter; this bounds a connection that stopped answering).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// The lease kind of a coordinator.
fn lease_kind(of: Coordinated) -> members::Kind {
    match of {
        Coordinated::Group => members::Kind::Group,
        Coordinated::Txn => members::Kind::Txn,
    }
}

/// `f` within [`CALL_TIMEOUT`].
async fn bounded<T>(f: impl std::future::Future<Output = Result<T, Error>>) -> Result<T, Error> {
    tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| Err(Error::Busy(format!("no answer within {CALL_TIMEOUT:?}"))))
}

/// `f` (answering broker errors) within [`CALL_TIMEOUT`].
async fn bounded_b<T>(
    f: impl std::future::Future<Output = busbar_broker::Result<T>>,
) -> busbar_broker::Result<T> {
    tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| {
            Err(BrokerError::Storage(format!(
                "cluster store: no answer within {CALL_TIMEOUT:?}"
            )))
        })
}

/// The Kafka cluster id for a database cluster id (32 hex digits): its 16 bytes in URL-safe
/// base64 without padding, the form Kafka clients expect; every broker of the cluster answers it.
pub fn kafka_cluster_id(id: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes: Vec<u8> = (0..id.len() / 2)
        .filter_map(|i| u8::from_str_radix(id.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

impl Cluster {
    /// Connects, applies migrations and starts the committer. Fails with the reason when the
    /// database cannot be reached or its schema is newer than this busbar.
    pub async fn connect(config: ClusterConfig, me: Advertised) -> Result<Arc<Cluster>, Error> {
        let pg = pg::Pg::new(
            &config.postgres_url,
            config.postgres_ca_file.as_deref(),
            config.postgres_client_cert.as_ref(),
        )?;
        let cold = match &config.object_store {
            Some(c) => Some(Arc::new(cold::Cold::new(c)?)),
            None => None,
        };
        let mut first = pool::connect(&pg).await?;
        migrate::apply(&mut first).await?;
        let id: String = first
            .query_one("SELECT id FROM busbar_cluster", &[])
            .await?
            .get(0);
        check_store(&first, config.object_store.as_ref()).await?;
        let pool = pool::Pool::new(pg.clone(), config.pg_connections_max);
        let members = members::Membership::new(
            pg.clone(),
            me.node_id,
            &me.kafka_host,
            me.kafka_port,
            &me.http_addr,
        )
        .with_listeners(me.listeners.clone());
        tokio::time::timeout(Duration::from_secs(30), members.register())
            .await
            .unwrap_or_else(|_| Err(Error::Busy("registering took over 30 s".into())))?;
        let committer = commit::start(pg.clone(), &config);
        Ok(Arc::new(Cluster {
            pg,
            config,
            pool,
            committer,
            members,
            cold,
            id,
            asks: Arc::default(),
        }))
    }

    /// Joins `broker` to the cluster: installs the shared store, brings its topics level with the
    /// catalog, and starts the watcher that keeps its copies current. Answers once the topics
    /// are level.
    pub async fn attach(self: &Arc<Self>, broker: Arc<Broker>) -> Result<(), BrokerError> {
        broker.set_shared_log(self.clone());
        let before = broker.catalog_writes();
        let metas = bounded(catalog::topics(&self.pool)).await?;
        // A topic this broker cannot apply (logged) must not keep it from serving the others.
        // Nothing is served yet, so no write of this broker's can be newer than `metas`.
        let _ = broker.sync_topics(&metas, before).await;
        // Users, tokens, ACLs and quotas are the cluster's from the first request on.
        broker.share_tables(self.clone()).await?;
        // Open transactions and the aborted index, before any batch is applied here.
        broker.load_shared_txns().await?;
        watch::start(self.clone(), broker.clone());
        tokio::spawn(heartbeats(self.clone()));
        tokio::spawn(expiries(self.clone()));
        if let Some(cold) = &self.cold {
            tokio::spawn(upload::run(self.clone(), cold.clone(), broker.clone()));
        }
        Ok(())
    }

    /// Leaves the cluster cleanly (at shutdown): this broker's leases are deleted and it stops
    /// counting as live at once, so its groups and clients move without waiting for expiries.
    pub async fn leave(&self) {
        let _ = bounded(self.members.leave()).await;
    }
}

/// Every broker of a cluster uses the cold tier the first one started with (its bucket and
/// prefix; endpoints may differ): a broker without it could not read the objects, one with
/// another bucket would read and delete in the wrong place.
async fn check_store(
    c: &tokio_postgres::Client,
    store: Option<&cold::ObjectStoreConfig>,
) -> Result<(), Error> {
    let mine = match store {
        Some(s) => {
            let (bucket, prefix) = cold::parse_url(&s.url).map_err(Error::Config)?;
            Some(format!("s3://{bucket}/{prefix}"))
        }
        None => None,
    };
    let theirs: Option<String> = match &mine {
        Some(m) => c
            .query_one(
                "UPDATE busbar_cluster SET object_store = coalesce(object_store, $1) \
                 RETURNING object_store",
                &[m],
            )
            .await?
            .get(0),
        None => c
            .query_one("SELECT object_store FROM busbar_cluster", &[])
            .await?
            .get(0),
    };
    match (mine, theirs) {
        (None, Some(t)) => Err(Error::Config(format!(
            "this cluster keeps partition data in object storage ({t}); a broker without \
             cluster.object_store_url could not read it"
        ))),
        (Some(m), Some(t)) if m != t => Err(Error::Config(format!(
            "this cluster's object storage is {t}, not {m} (cluster.object_store_url): every \
             broker uses the same bucket and prefix"
        ))),
        _ => Ok(()),
    }
}

/// Expires idle producers' state, and purges rows a DeleteRecords left below a partition's
/// start, every minute.
async fn expiries(cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let _ = bounded(catalog::expire_producers(&cluster.pool)).await;
        let _ = bounded(txn::expire(&cluster.pool)).await;
        let _ = bounded(records::purge_leftovers(&cluster.pool)).await;
        let _ = bounded(asks::expire(&cluster.pool)).await;
    }
}

/// Heartbeats every [`members::HEARTBEAT_EVERY`], on their own connection.
async fn heartbeats(cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(members::HEARTBEAT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = bounded(cluster.members.heartbeat()).await {
            busbar_broker::log::warn(
                "busbar",
                "cluster_heartbeat_failed",
                &format!("cluster: heartbeat failed: {e}"),
                &[],
            );
        }
    }
}

impl SharedLog for Cluster {
    fn append(
        &self,
        topic_id: &str,
        partition: u32,
        batch: Vec<u8>,
    ) -> BoxFuture<'static, busbar_broker::Result<Committed>> {
        self.committer.submit(topic_id, partition, batch)
    }

    fn read(
        &self,
        topic_id: &str,
        partition: u32,
        from: u64,
        max_bytes: usize,
    ) -> BoxFuture<'_, busbar_broker::Result<SharedRead>> {
        let topic_id = topic_id.to_string();
        Box::pin(async move {
            Ok(bounded(catalog::read(
                &self.pool,
                self.cold.as_deref(),
                &topic_id,
                partition,
                from,
                max_bytes,
            ))
            .await?)
        })
    }

    fn delete_records(
        &self,
        topic_id: &str,
        partition: u32,
        offset: Option<u64>,
    ) -> BoxFuture<'_, busbar_broker::Result<u64>> {
        let topic_id = topic_id.to_string();
        Box::pin(async move {
            bounded_b(records::delete_records(
                &self.pool, &topic_id, partition, offset,
            ))
            .await
        })
    }

    fn create_topic(&self, meta: &TopicMeta) -> BoxFuture<'_, busbar_broker::Result<()>> {
        let meta = meta.clone();
        Box::pin(async move { bounded_b(catalog::create_topic(&self.pool, &meta)).await })
    }

    fn update_topic(&self, meta: &TopicMeta) -> BoxFuture<'_, busbar_broker::Result<()>> {
        let meta = meta.clone();
        Box::pin(async move { bounded_b(catalog::update_topic(&self.pool, &meta)).await })
    }

    fn delete_topic(&self, id: &str) -> BoxFuture<'_, busbar_broker::Result<()>> {
        let id = id.to_string();
        Box::pin(async move { bounded_b(catalog::delete_topic(&self.pool, &id)).await })
    }

    fn init_producer_id(
        &self,
        current: Option<(i64, i16)>,
    ) -> BoxFuture<'_, busbar_broker::Result<(i64, i16)>> {
        Box::pin(bounded_b(catalog::init_producer_id(&self.pool, current)))
    }

    fn members(&self) -> Vec<Member> {
        self.members.members()
    }

    fn node_id(&self) -> i32 {
        self.members.node_id
    }

    fn coordinator(
        &self,
        of: Coordinated,
        name: &str,
    ) -> BoxFuture<'_, busbar_broker::Result<Option<i32>>> {
        let name = name.to_string();
        Box::pin(async move {
            Ok(bounded(self.members.coordinator(&self.pool, lease_kind(of), &name)).await?)
        })
    }

    fn holds(&self, of: Coordinated, name: &str) -> bool {
        self.members.holds(lease_kind(of), name)
    }

    fn holds_quietly(&self, of: Coordinated, name: &str) -> bool {
        self.members.holds_quietly(lease_kind(of), name)
    }

    fn take(
        &self,
        of: Coordinated,
        name: &str,
    ) -> BoxFuture<'_, busbar_broker::Result<Option<(std::time::Instant, bool)>>> {
        let name = name.to_string();
        Box::pin(
            async move { Ok(bounded(self.members.take(&self.pool, lease_kind(of), &name)).await?) },
        )
    }

    fn confirm(&self, of: Coordinated, name: &str, sent: std::time::Instant) {
        self.members.confirm(lease_kind(of), name, sent)
    }

    fn give_up(&self, of: Coordinated, name: &str) -> BoxFuture<'_, ()> {
        let name = name.to_string();
        Box::pin(async move {
            let gone = self.members.give_up(&self.pool, lease_kind(of), &name);
            if let Err(e) = bounded(gone).await {
                let msg = format!("cluster: giving up the lease of {name:?}: {e}");
                busbar_broker::log::warn("busbar", "cluster_lease", &msg, &[]);
            }
        })
    }

    fn release(&self, of: Coordinated, name: &str) {
        self.members.release(lease_kind(of), name)
    }

    fn write_txn(&self, w: TxnWrite) -> BoxFuture<'_, busbar_broker::Result<Vec<u64>>> {
        let me = (self.members.node_id, self.members.instance().to_string());
        Box::pin(bounded_b(async move {
            txn::write(&self.pool, (me.0, &me.1), &w).await
        }))
    }

    fn load_txn(&self, id: &str) -> BoxFuture<'_, busbar_broker::Result<Option<String>>> {
        let id = id.to_string();
        Box::pin(async move { Ok(bounded(txn::load(&self.pool, &id)).await?) })
    }

    fn append_marker(
        &self,
        topic_id: &str,
        partition: u32,
        marker: Vec<u8>,
        seq: u64,
    ) -> BoxFuture<'static, busbar_broker::Result<Committed>> {
        self.committer
            .submit_marker(topic_id, partition, marker, seq)
    }

    fn txn_partition_state(
        &self,
        aborted_of: Option<Vec<(String, u32)>>,
    ) -> BoxFuture<'_, busbar_broker::Result<TxnPartitionState>> {
        Box::pin(async move {
            Ok(bounded(txn::partition_state(&self.pool, aborted_of.as_deref())).await?)
        })
    }

    fn txn_partitions_of(
        &self,
        pid: i64,
        seq: u64,
    ) -> BoxFuture<'_, busbar_broker::Result<Vec<(String, u32)>>> {
        Box::pin(async move { Ok(bounded(txn::partitions_of(&self.pool, pid, seq)).await?) })
    }

    fn txn_owner(&self, pid: i64) -> BoxFuture<'_, busbar_broker::Result<Option<String>>> {
        Box::pin(async move { Ok(bounded(txn::owner(&self.pool, pid)).await?) })
    }

    fn stage_txn_offsets(&self, s: StagedOffsets) -> BoxFuture<'_, busbar_broker::Result<()>> {
        Box::pin(bounded_b(async move {
            txn::stage_offsets(&self.pool, &s).await
        }))
    }

    fn settle_txn_offsets(
        &self,
        id: &str,
        seq: u64,
        commit: bool,
    ) -> BoxFuture<'_, busbar_broker::Result<()>> {
        let id = id.to_string();
        Box::pin(
            async move { Ok(bounded(txn::settle_offsets(&self.pool, &id, seq, commit)).await?) },
        )
    }

    fn staged_offsets_of(
        &self,
        group: &str,
    ) -> BoxFuture<'_, busbar_broker::Result<Vec<(String, u32)>>> {
        let group = group.to_string();
        Box::pin(async move { Ok(bounded(txn::staged_of(&self.pool, &group)).await?) })
    }

    fn committed_txn_offsets(
        &self,
        group: &str,
    ) -> BoxFuture<'_, busbar_broker::Result<Vec<TxnCommitted>>> {
        let group = group.to_string();
        Box::pin(async move { Ok(bounded(txn::committed_offsets(&self.pool, &group)).await?) })
    }

    fn forget_txn_offsets(
        &self,
        group: &str,
        rows: Vec<TxnCommitted>,
    ) -> BoxFuture<'_, busbar_broker::Result<()>> {
        let group = group.to_string();
        Box::pin(
            async move { Ok(bounded(txn::forget_committed(&self.pool, &group, &rows)).await?) },
        )
    }

    fn groups_with_txn_offsets(
        &self,
        limit: usize,
    ) -> BoxFuture<'_, busbar_broker::Result<Vec<String>>> {
        let me = (self.members.node_id, self.members.instance().to_string());
        Box::pin(async move {
            Ok(bounded(txn::groups_with_committed(&self.pool, (me.0, &me.1), limit)).await?)
        })
    }

    fn orphan_txns(&self, limit: usize) -> BoxFuture<'_, busbar_broker::Result<Vec<String>>> {
        Box::pin(async move { Ok(bounded(txn::orphans(&self.pool, limit)).await?) })
    }

    fn write_offsets(&self, rows: Vec<OffsetRow>) -> BoxFuture<'_, busbar_broker::Result<()>> {
        let me = (self.members.node_id, self.members.instance().to_string());
        Box::pin(bounded_b(async move {
            catalog::write_offsets(&self.pool, (me.0, &me.1), rows).await
        }))
    }

    fn load_offsets(&self, group: &str) -> BoxFuture<'_, busbar_broker::Result<Vec<OffsetRow>>> {
        let group = group.to_string();
        Box::pin(async move { Ok(bounded(catalog::load_offsets(&self.pool, &group)).await?) })
    }

    fn group_ids(&self, limit: usize) -> BoxFuture<'_, busbar_broker::Result<Vec<String>>> {
        Box::pin(async move { Ok(bounded(catalog::group_ids(&self.pool, limit)).await?) })
    }
}
