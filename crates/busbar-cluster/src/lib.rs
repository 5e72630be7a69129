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
//! - `watch`: one `LISTEN` connection wakes this broker when another commits (with polling while
//!   it is down, and a slow poll always, so a lost notification costs latency, never data).
//!
//! Decisions and the operator's view: `docs/cluster.md`.

mod catalog;
mod commit;
pub mod migrate;
mod pool;
mod watch;

use busbar_broker::metadata::TopicMeta;
use busbar_broker::shared::{BoxFuture, Committed, SharedBatch, SharedLog};
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
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The source says what PostgreSQL answered (the top level is often just "db error").
            Error::Db(e) => match std::error::Error::source(e) {
                Some(s) => write!(f, "PostgreSQL: {e}: {s}"),
                None => write!(f, "PostgreSQL: {e}"),
            },
            Error::Config(s) => f.write_str(s),
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
        }
    }
}

/// A broker's membership in a cluster: the shared store on PostgreSQL.
pub struct Cluster {
    config: ClusterConfig,
    pool: pool::Pool,
    committer: commit::Handle,
    /// The database's cluster id (`busbar_cluster`).
    pub id: String,
}

impl Cluster {
    /// Connects, applies migrations and starts the committer. Fails with the reason when the
    /// database cannot be reached or its schema is newer than this busbar.
    pub async fn connect(config: ClusterConfig) -> Result<Arc<Cluster>, Error> {
        let pg: tokio_postgres::Config = config.postgres_url.parse().map_err(|e| {
            Error::Config(format!("cluster.postgres_url is not a PostgreSQL URL: {e}"))
        })?;
        let mut first = pool::connect(&pg).await?;
        migrate::apply(&mut first).await?;
        let id: String = first
            .query_one("SELECT id FROM busbar_cluster", &[])
            .await?
            .get(0);
        let pool = pool::Pool::new(pg.clone(), config.pg_connections_max);
        let committer = commit::start(pg, &config);
        Ok(Arc::new(Cluster {
            config,
            pool,
            committer,
            id,
        }))
    }

    /// Joins `broker` to the cluster: installs the shared store, brings its topics level with the
    /// catalog, and starts the watcher that keeps its copies current. Answers once the topics
    /// are level.
    pub async fn attach(self: &Arc<Self>, broker: Arc<Broker>) -> Result<(), BrokerError> {
        broker.set_shared_log(self.clone());
        let metas = catalog::topics(&self.pool).await?;
        broker.sync_topics(&metas).await?;
        watch::start(self.clone(), broker);
        Ok(())
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
    ) -> BoxFuture<'_, busbar_broker::Result<Vec<SharedBatch>>> {
        let topic_id = topic_id.to_string();
        Box::pin(async move {
            Ok(catalog::read(&self.pool, &topic_id, partition, from, max_bytes).await?)
        })
    }

    fn create_topic(&self, meta: &TopicMeta) -> BoxFuture<'_, busbar_broker::Result<()>> {
        let meta = meta.clone();
        Box::pin(async move { catalog::create_topic(&self.pool, &meta).await })
    }

    fn update_topic(&self, meta: &TopicMeta) -> BoxFuture<'_, busbar_broker::Result<()>> {
        let meta = meta.clone();
        Box::pin(async move { catalog::update_topic(&self.pool, &meta).await })
    }

    fn delete_topic(&self, id: &str) -> BoxFuture<'_, busbar_broker::Result<()>> {
        let id = id.to_string();
        Box::pin(async move { Ok(catalog::delete_topic(&self.pool, &id).await?) })
    }

    fn init_producer_id(
        &self,
        current: Option<(i64, i16)>,
    ) -> BoxFuture<'_, busbar_broker::Result<(i64, i16)>> {
        Box::pin(async move { catalog::init_producer_id(&self.pool, current).await })
    }
}
