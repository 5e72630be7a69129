//! The bus: subscriptions that route events by content from source topics to a target topic or an
//! HTTP endpoint, with retries that never block a partition, dead letters, redrive and replay.
//!
//! [`Bus`] owns the subscriptions (stored in `meta/subscriptions.json`), their workers
//! (`worker/`), the durable retry state (`internal/retries`), dead-letter listing and redrive
//! (`dlq.rs`, `redrive.rs`) and replay runs (`replay.rs`). Admin operations are serialised by one
//! async mutex; each validates fully before changing anything.

mod ask;
mod backing;
pub mod cluster;
mod creator;
pub mod decode;
mod delete;
pub mod deliver;
pub mod dlq;
pub mod envelope;
mod error;
mod owner;
pub mod patch;
pub mod policy;
pub mod positions;
mod redrive;
mod redrive_shared;
mod replay;
pub mod request;
mod reset;
mod runrecord;
mod runs;
pub mod spec;
mod state;
pub mod stats;
pub mod targets;
pub mod tls;
mod view;
mod worker;

pub use creator::Creator;
pub use dlq::{DeadLetter, Filter};
pub use error::{BusError, Result};
pub use owner::Owner;
pub use positions::{ResetPosition, ResetTo};
pub use redrive::RedriveSummary;
pub use replay::{ReplaySpec, RunCounts, RunState, RunView};
pub use spec::SubscriptionSpec;
pub use stats::CounterSnapshot;
pub use targets::TargetPolicy;
pub use view::{LastFailure, SubState, SubscriptionView};
pub use worker::ReadStats;

use busbar_broker::Broker;

use busbar_broker::BrokerError;
use positions::{Position, PositionStore};
use spec::{invalid, Compiled, Start};
use state::{RetryStore, SubRecord, SubStore};
use stats::Counters;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use worker::{Ctx, Handle};

/// Most dead letters one list or redrive call returns or handles.
pub const DEAD_LETTERS_MAX: usize = 10_000;
/// Most replay runs kept per subscription, durably (finished ones are forgotten oldest first).
pub const REPLAYS_KEPT: usize = 20;

/// The bus's limits (`[bus]` in `busbar.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    /// Most subscriptions; creating one more is refused (`LimitReached`). Each runs a worker and
    /// holds positions and retry state, so their count is bounded like every other resource.
    pub subscriptions_max: usize,
    /// Which hosts and addresses HTTP targets may reach (`[bus.targets]`).
    pub targets: TargetPolicy,
    /// Most bytes of decoded source events the subscriptions of a topic share (one read, decode
    /// and parse per event for all of them); `0` turns sharing off (`worker/shared.rs`).
    pub read_cache_bytes: usize,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            subscriptions_max: 1000,
            targets: TargetPolicy::default(),
            read_cache_bytes: 64 << 20,
        }
    }
}

struct Entry {
    record: SubRecord,
    compiled: Arc<Compiled>,
    counters: Arc<Counters>,
    status: Arc<Mutex<SubState>>,
    handle: Option<Handle>,
    replays: BTreeMap<String, Arc<replay::Run>>,
    /// Cluster mode: the version of the record in the shared store (`cluster.rs`).
    version: i64,
}

impl Entry {
    /// A subscription another broker runs, as the shared store holds it (`cluster.rs`).
    fn remote(record: SubRecord, compiled: Arc<Compiled>, version: i64) -> Entry {
        let status = if record.paused {
            SubState::Paused
        } else {
            SubState::Elsewhere
        };
        Entry {
            record,
            compiled,
            counters: Arc::default(),
            status: Arc::new(Mutex::new(status)),
            handle: None,
            replays: BTreeMap::new(),
            version,
        }
    }
}

/// The bus.
pub struct Bus {
    ctx: Arc<Ctx>,
    /// The subscriptions document of a single node (`None` in cluster mode).
    store: Option<SubStore>,
    /// Cluster mode: the shared store of subscriptions and their state (`cluster.rs`).
    shared_bus: Option<Arc<dyn cluster::SharedBus>>,
    leases: cluster::LeaseView,
    subs: tokio::sync::Mutex<BTreeMap<String, Entry>>,
    maintenance: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Cluster mode: the task of [`Bus::run_cluster`].
    ticks: Mutex<Option<tokio::task::JoinHandle<()>>>,
    config: BusConfig,
    /// Dead-letter topic → the subscriptions naming it, as last saved, and the claims of
    /// creates and updates in progress: the broker refuses to delete those topics (its deletion
    /// guard reads this without the async lock).
    dlq_users: Arc<Mutex<DlqGuard>>,
    /// The subscriptions a configuration file declares.
    owners: owner::Owners,
}

type DlqUsers = BTreeMap<String, Vec<String>>;

/// What the broker's deletion guard consults.
#[derive(Default)]
struct DlqGuard {
    saved: DlqUsers,
    /// (topic, subscription) claimed by a create or update not yet saved.
    pending: Vec<(String, String)>,
}

impl DlqGuard {
    /// Why `topic` may not be deleted, or `None`.
    fn refusal(&self, topic: &str) -> Option<String> {
        let mut names: Vec<&str> = self
            .saved
            .get(topic)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        names.extend(
            self.pending
                .iter()
                .filter(|p| p.0 == topic)
                .map(|p| p.1.as_str()),
        );
        (!names.is_empty()).then(|| {
            format!(
                "it is the dead-letter topic of subscription(s) {}; change or delete them first",
                names.join(", ")
            )
        })
    }
}

/// A dead-letter topic claimed for the length of a create or update (see
/// [`Broker::topic_changes_settled`]); dropping it ends the claim, by which time a save has
/// recorded the subscription as the topic's user or the change failed.
struct Claim {
    guard: Arc<Mutex<DlqGuard>>,
    entry: Option<(String, String)>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(e) = self.entry.take() {
            let mut g = self.guard.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = g.pending.iter().position(|p| *p == e) {
                g.pending.swap_remove(i);
            }
        }
    }
}

fn dlq_users(subs: &BTreeMap<String, Entry>) -> DlqUsers {
    let mut out = DlqUsers::new();
    for (name, e) in subs {
        if let Some(t) = &e.record.spec.dead_letter_topic {
            out.entry(t.clone()).or_default().push(name.clone());
        }
    }
    out
}

impl Bus {
    /// Opens the bus's state in the broker's data directory with default limits. Workers start
    /// with [`Bus::start`].
    pub fn open(broker: Arc<Broker>) -> Result<Bus> {
        Self::open_with(broker, BusConfig::default())
    }

    /// Opens the bus with `config`'s limits (subscriptions already stored above a lowered limit
    /// stay; only new ones are refused).
    pub fn open_with(broker: Arc<Broker>, config: BusConfig) -> Result<Bus> {
        if broker.shared_log().is_some() {
            // Each broker would run its own copy of every subscription.
            return Err(cluster::not_in_cluster(
                "a bus on local files (open it with Bus::open_shared)",
            ));
        }
        let data = broker.config().data();
        let dir = |rel: &str| {
            data.storage(rel)
                .map_err(|e| BusError::Storage(format!("open {}: {e}", data.describe(rel))))
        };
        let clock = broker.config().clock.clone();
        let retries = RetryStore::open(dir("internal/retries")?, clock.clone())?;
        let positions = PositionStore::open(dir("internal/positions")?, clock)?;
        let store = SubStore::open(dir("meta")?);
        let stored = store.load()?;
        Self::assemble(
            broker,
            config,
            (retries, positions),
            Some(store),
            stored,
            None,
        )
    }

    /// Opens the bus of a cluster broker: subscriptions and their state are in `shared`, read by
    /// [`Bus::run_cluster`] (nothing runs before it).
    pub fn open_shared(
        broker: Arc<Broker>,
        config: BusConfig,
        shared: Arc<dyn cluster::SharedBus>,
    ) -> Result<Bus> {
        let retries = RetryStore::shared(shared.clone());
        let positions = PositionStore::shared(shared.clone());
        Self::assemble(
            broker,
            config,
            (retries, positions),
            None,
            vec![],
            Some(shared),
        )
    }

    fn assemble(
        broker: Arc<Broker>,
        config: BusConfig,
        (retries, positions): (RetryStore, PositionStore),
        store: Option<SubStore>,
        stored: Vec<SubRecord>,
        shared_bus: Option<Arc<dyn cluster::SharedBus>>,
    ) -> Result<Bus> {
        let mut subs = BTreeMap::new();
        for record in stored {
            let compiled = record.spec.clone().compile()?;
            let name = record.spec.name.clone();
            let status = if record.paused {
                SubState::Paused
            } else {
                SubState::Starting
            };
            let counters = positions.counters(&name).unwrap_or_default();
            subs.insert(
                name,
                Entry {
                    counters: Arc::new(Counters::restore(&counters)),
                    record,
                    compiled: Arc::new(compiled),
                    status: Arc::new(Mutex::new(status)),
                    handle: None,
                    replays: BTreeMap::new(),
                    version: 0,
                },
            );
        }
        let ctx = Arc::new(Ctx {
            broker,
            retries,
            positions,
            http: deliver::HttpClient::new(config.targets.clone()),
            shared: worker::Shared::new(config.read_cache_bytes),
        });
        for (name, e) in subs.iter_mut() {
            e.replays = replay::Run::restore(&ctx, name);
        }
        let users = Arc::new(Mutex::new(DlqGuard {
            saved: dlq_users(&subs),
            pending: Vec::new(),
        }));
        let guard = users.clone();
        ctx.broker.set_deletion_guard(Arc::new(move |topic: &str| {
            guard
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .refusal(topic)
        }));
        Ok(Bus {
            ctx,
            store,
            shared_bus,
            leases: cluster::LeaseView::default(),
            subs: tokio::sync::Mutex::new(subs),
            maintenance: Mutex::new(None),
            ticks: Mutex::new(None),
            config,
            dlq_users: users,
            owners: owner::Owners::default(),
        })
    }

    /// The broker the bus runs on.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.ctx.broker
    }

    /// The installed decoder of schema-framed events, if any.
    pub fn decoder(&self) -> Option<decode::Decoder> {
        self.ctx.shared.decoder()
    }

    /// Installs the hook that decodes schema-framed values (magic byte 0, schema id) so that
    /// patterns match their decoded content (`decode.rs`); `None` removes it. Install it before
    /// [`Bus::start`]: events matched earlier are not matched again.
    pub fn set_decoder(&self, decoder: Option<decode::Decoder>) {
        self.ctx.shared.set_decoder(decoder);
    }

    /// How much the workers read, decoded and parsed so far (shared by all subscriptions).
    pub fn read_stats(&self) -> ReadStats {
        self.ctx.shared.stats()
    }

    /// Starts the workers of every subscription not paused, and every `maintenance_interval` the
    /// pruning of redrive records and the compaction of the retry state and positions.
    pub async fn start(&self) {
        let ctx = self.ctx.clone();
        let every = ctx.broker.config().maintenance_interval;
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = redrive::prune(&ctx).await {
                    let msg = format!("pruning redrive records: {e}");
                    busbar_broker::log::error("busbar", "bus_housekeeping", &msg, &[]);
                }
                let c = ctx.clone();
                let done = tokio::task::spawn_blocking(move || {
                    (c.retries.maintain(), c.positions.maintain())
                });
                if let Ok((r, p)) = done.await {
                    for e in [r.err(), p.err()].into_iter().flatten() {
                        let msg = format!("compacting subscription state: {e}");
                        busbar_broker::log::error("busbar", "bus_housekeeping", &msg, &[]);
                    }
                }
            }
        });
        if let Some(old) = self
            .maintenance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(task)
        {
            old.abort();
        }
        if self.shared().is_some() {
            // Cluster mode: workers start as leases are taken (`Bus::run_cluster`).
            return;
        }
        let mut subs = self.subs.lock().await;
        self.forget_deleted(&subs).await;
        for e in subs.values_mut() {
            if !e.record.paused && e.handle.is_none() {
                e.handle = Some(self.spawn(e));
            }
        }
    }

    /// Cluster mode: reads the cluster's subscriptions every [`cluster::TICK`] and runs those
    /// whose leases this broker takes, until [`Bus::close`]. Call after [`Bus::start`].
    pub fn run_cluster(self: &Arc<Self>) {
        if self.shared().is_none() {
            return;
        }
        let task = self.start_ticks();
        let slot = self
            .ticks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(task);
        if let Some(old) = slot {
            old.abort();
        }
    }

    fn spawn(&self, e: &Entry) -> Handle {
        worker::spawn(
            self.ctx.clone(),
            e.compiled.clone(),
            e.counters.clone(),
            e.status.clone(),
            e.record.gate(),
        )
    }

    fn now(&self) -> i64 {
        self.ctx.broker.config().clock.now_ms()
    }

    /// Validates `spec` completely, including that its topics exist, that the target policy
    /// allows its HTTP target's host and that its CA file holds certificates. (Stored
    /// subscriptions are not refused at start-up by a policy changed since: their deliveries are
    /// dead-lettered with reason `target_forbidden` instead.)
    /// Claims `spec`'s dead-letter topic in the deletion guard before it is checked to exist, and
    /// waits out a deletion that passed the guard before the claim.
    async fn claim(&self, spec: &SubscriptionSpec) -> Claim {
        let entry = spec
            .dead_letter_topic
            .clone()
            .map(|topic| (topic, spec.name.clone()));
        if let Some(e) = &entry {
            self.dlq_users
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pending
                .push(e.clone());
            self.ctx.broker.topic_changes_settled().await;
        }
        Claim {
            guard: self.dlq_users.clone(),
            entry,
        }
    }

    fn validate(&self, spec: SubscriptionSpec) -> Result<Compiled> {
        let compiled = spec.compile()?;
        compiled.check_target(&self.config.targets)?;
        compiled.check_encode(self.decoder().as_ref())?;
        for (path, topic) in compiled.spec.topics() {
            if self.ctx.broker.describe_topic(&topic).is_err() {
                return Err(invalid(&path, format!("unknown topic {topic:?}")));
            }
        }
        Ok(compiled)
    }

    /// Stores the start position of every source partition that has none yet (for the topic as
    /// it is now).
    async fn commit_start(&self, c: &Compiled) -> Result<()> {
        self.prepare_sources(c).await;
        let rows = self.start_rows(c)?;
        self.ctx.positions.put(&c.spec.name, rows).await
    }

    /// Cluster mode: every source partition's copy caught up (start positions come from them:
    /// the earliest, the latest, the first at a time).
    pub(crate) async fn prepare_sources(&self, c: &Compiled) {
        let broker = &self.ctx.broker;
        for topic in &c.spec.sources {
            let Ok(d) = broker.describe_topic(topic) else {
                continue;
            };
            for p in 0..d.partitions.len() {
                broker.prepare_read(topic, p as i64).await;
            }
        }
    }

    /// The start position of every source partition of `c` that has none stored here.
    fn start_rows(&self, c: &Compiled) -> Result<Vec<(positions::PartKey, Option<Position>)>> {
        let name = &c.spec.name;
        let broker = &self.ctx.broker;
        let mut rows = Vec::new();
        for topic in &c.spec.sources {
            let (id, n) = positions::topic_layout(broker, topic)?;
            for p in 0..n {
                if positions::stored_position(&self.ctx, name, topic, p, &id).is_some() {
                    continue;
                }
                let (start, end) = broker.offsets_of(topic, p as i64)?;
                let offset = match c.start {
                    Start::Latest => end,
                    Start::Earliest => start,
                    Start::Time(ts) => broker.offset_for_timestamp(topic, p as i64, ts)?,
                };
                let pos = Position {
                    offset,
                    topic_id: id.clone(),
                    done: vec![],
                };
                rows.push(((topic.clone(), p), Some(pos)));
            }
        }
        Ok(rows)
    }

    /// Forgets every position of `name`, with any an older busbar kept in its legacy group.
    async fn forget_positions(&self, name: &str) -> Result<()> {
        self.ctx.positions.clear(name).await?;
        match self
            .ctx
            .broker
            .delete_group(&positions::legacy_group(name))
            .await
        {
            // A Kafka client may have joined a group of that name: it is not the bus's (positions
            // no longer live there), so its members do not block the subscription.
            Ok(()) | Err(BrokerError::UnknownGroup(_) | BrokerError::GroupNotEmpty(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores every subscription of a single node (in cluster mode each change is stored on its
    /// own, `cluster.rs`).
    fn save(&self, subs: &BTreeMap<String, Entry>) -> Result<()> {
        let records: Vec<SubRecord> = subs.values().map(|e| e.record.clone()).collect();
        let store = self.store.as_ref().expect("a single node's store");
        store.save(&records)?;
        self.save_guard(subs);
        Ok(())
    }

    /// Records the dead-letter topics `subs` use for the broker's deletion guard.
    fn save_guard(&self, subs: &BTreeMap<String, Entry>) {
        self.dlq_users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .saved = dlq_users(subs);
    }

    /// Creates a subscription and starts it; it runs unchecked (no creator).
    pub async fn create(&self, spec: SubscriptionSpec) -> Result<SubscriptionView> {
        self.create_as(spec, None).await
    }

    /// Creates a subscription that runs as `creator` (`creator.rs`; `None`: unchecked) and
    /// starts it.
    pub async fn create_as(
        &self,
        spec: SubscriptionSpec,
        creator: Option<Creator>,
    ) -> Result<SubscriptionView> {
        let _claim = self.claim(&spec).await;
        // Cluster mode: the list as the database has it now (names and the limit).
        self.sync().await?;
        let compiled = self.validate(spec)?;
        let name = compiled.spec.name.clone();
        let mut subs = self.subs.lock().await;
        if subs.contains_key(&name) {
            return Err(BusError::SubscriptionExists(name));
        }
        if subs.len() >= self.config.subscriptions_max {
            let limit = self.config.subscriptions_max;
            return Err(BusError::LimitReached {
                what: "bus.subscriptions_max",
                limit,
            });
        }
        // Positions left by an earlier subscription of this name would resume it; start fresh.
        // (In cluster mode the create removes them in the same transaction.)
        let start = if self.shared().is_some() {
            self.ctx.positions.load(&name, &[]);
            self.ctx.retries.load(&name, &[]);
            self.prepare_sources(&compiled).await;
            self.start_rows(&compiled)?
        } else {
            self.forget_positions(&name).await?;
            self.ctx.retries.clear(&name).await?;
            self.commit_start(&compiled).await?;
            vec![]
        };
        let now = self.now();
        let users = self.ctx.broker.auth().users();
        let creator_is_user = (creator.as_ref()).is_some_and(|c| users.exists(&c.user));
        let mut entry = Entry {
            record: SubRecord {
                spec: compiled.spec.clone(),
                paused: false,
                created_ms: now,
                updated_ms: now,
                creator,
                creator_is_user,
                paused_by_reset: None,
            },
            compiled: Arc::new(compiled),
            counters: Arc::default(),
            status: Arc::new(Mutex::new(SubState::Starting)),
            handle: None,
            replays: BTreeMap::new(),
            version: 0,
        };
        if self.shared().is_some() {
            let start = self.ctx.positions.encode(&name, &start);
            entry.version = self.create_shared(&entry.record, start).await?;
            *entry.status.lock().unwrap_or_else(|e| e.into_inner()) = SubState::Elsewhere;
            subs.insert(name.clone(), entry);
            self.save_guard(&subs);
            return Ok(self.view(&subs[&name]));
        }
        subs.insert(name.clone(), entry);
        if let Err(e) = self.save(&subs) {
            subs.remove(&name);
            return Err(e);
        }
        entry = subs.remove(&name).expect("inserted");
        entry.handle = Some(self.spawn(&entry));
        subs.insert(name.clone(), entry);
        Ok(self.view(&subs[&name]))
    }

    /// Replaces a subscription's spec (positions, retry state and counters are kept). All or
    /// nothing: every step that can fail (validation, start positions of new sources, saving the
    /// spec) runs before the old worker stops, so a failed update leaves it running unchanged.
    /// A spec equal to the current one (header values sent as `***` resolved) restarts nothing.
    pub async fn update(&self, name: &str, spec: SubscriptionSpec) -> Result<SubscriptionView> {
        self.owners.check(name)?;
        if spec.name != name {
            return Err(invalid("name", format!("must stay {name:?}")));
        }
        self.change(name, &serde_json::Value::Null, |_| Ok(spec.clone()))
            .await
    }

    /// Stops delivering (positions and retry state are kept) or starts again.
    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<SubscriptionView> {
        let (view, _) =
            (self.set_paused_at(name, paused, None, false).await?).expect("no version to hold to");
        Ok(view)
    }

    /// [`Bus::set_paused`], only while the record is at version `at` when one is given (read
    /// afresh; `None` when it moved: nothing changed); with the record's version after it. In
    /// cluster mode a pause is written even when the record is paused already: its version moves,
    /// so a reset that paused it does not resume it over this pause (`reset.rs`).
    /// `by_reset`: a reset on this broker pauses it (recorded, so that another broker resumes
    /// it should this process die before the reset resumes it).
    pub(crate) async fn set_paused_at(
        &self,
        name: &str,
        paused: bool,
        at: Option<i64>,
        by_reset: bool,
    ) -> Result<Option<(SubscriptionView, i64)>> {
        self.sync().await?;
        let mut subs = self.subs.lock().await;
        let e = subs
            .get_mut(name)
            .ok_or_else(|| BusError::UnknownSubscription(name.into()))?;
        if at.is_some_and(|v| v != e.version) {
            return Ok(None);
        }
        let again = paused && at.is_none() && self.shared().is_some();
        let marker = (self.shared())
            .filter(|_| paused && by_reset)
            .map(|s| s.instance());
        if e.record.paused != paused || again || e.record.paused_by_reset != marker {
            let was = (e.record.paused, e.record.paused_by_reset.take());
            e.record.paused = paused;
            e.record.paused_by_reset = marker;
            e.record.updated_ms = self.now();
            if let Err(err) = self.persist(&mut subs, name).await {
                let e = subs.get_mut(name).expect("present");
                (e.record.paused, e.record.paused_by_reset) = was;
                return Err(err);
            }
        }
        let e = subs.get_mut(name).expect("present");
        let lock = |s: &std::sync::Mutex<SubState>| -> SubState {
            s.lock().unwrap_or_else(|e| e.into_inner()).clone()
        };
        let old = lock(&e.status);
        if paused {
            let why = "the subscription was paused";
            replay::stop_all(&e.replays, replay::RunState::Stopped, why).await;
            if let Some(h) = e.handle.take() {
                h.stop().await;
            }
            // A reset here holds the lease of the subscription it paused.
            if let Some(shared) = self.shared().filter(|_| !self.leases.is_borrowed(name)) {
                shared.release(name).await;
            }
            *e.status.lock().unwrap_or_else(|e| e.into_inner()) = SubState::Paused;
        } else if self.shared().is_some() {
            // Cluster mode: the broker that takes its lease runs it (`cluster.rs`).
            if e.handle.is_none() {
                *e.status.lock().unwrap_or_else(|e| e.into_inner()) = SubState::Elsewhere;
            }
        } else if e.handle.is_none() {
            // The answer (and a read before the worker's first step) says `starting`, never
            // `paused`: sent back as an update, it must be accepted.
            *e.status.lock().unwrap_or_else(|e| e.into_inner()) = SubState::Starting;
            e.handle = Some(self.spawn(e));
        }
        let new = lock(&e.status);
        let (v, version) = (self.view(e), e.version);
        // Logged with no lock held: a blocked stderr must not hold up the other subscriptions.
        drop(subs);
        view::log_change(name, &old, &new);
        Ok(Some((v, version)))
    }

    /// Changes the fields `patch` gives (a JSON merge patch of the spec, `patch.rs`); the rest
    /// keeps its value. Then as [`Bus::update`]; a patch that changes nothing restarts nothing. The
    /// merge reads the spec under the same lock that writes it, so concurrent patches all land.
    pub async fn patch(&self, name: &str, patch: &serde_json::Value) -> Result<SubscriptionView> {
        self.change(name, patch, |current| patch::merge(current, patch))
            .await
    }

    /// Marks `names` as declared in the configuration file `file` (replacing earlier marks): the
    /// API may no longer change or delete them ([`BusError::OwnedByConfig`]).
    pub fn set_config_owned(&self, names: impl IntoIterator<Item = String>, file: &str) {
        self.owners.set(names, file);
    }

    /// One subscription.
    pub async fn get(&self, name: &str) -> Result<SubscriptionView> {
        self.sync_for(name).await?;
        self.refresh_remote(name).await?;
        let subs = self.subs.lock().await;
        subs.get(name)
            .map(|e| self.view(e))
            .ok_or_else(|| BusError::UnknownSubscription(name.into()))
    }

    /// Every subscription, by name.
    pub async fn list(&self) -> Vec<SubscriptionView> {
        // Cluster mode: a failed read shows the list as last read.
        let _ = self.sync().await;
        let subs = self.subs.lock().await;
        subs.values().map(|e| self.view(e)).collect()
    }

    /// Stops every worker (each commits its positions) and replay run (each writes its progress,
    /// `INTERRUPTED`), then closes the retry state. In cluster mode the leases go.
    pub async fn close(&self) -> Result<()> {
        if let Some(t) = self.ticks.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
        if let Some(t) = self
            .maintenance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            t.abort();
        }
        let mut subs = self.subs.lock().await;
        for e in subs.values_mut() {
            if let Some(h) = e.handle.take() {
                h.stop().await;
            }
            // In cluster mode a run stays RUNNING where it is stored, and the next broker to
            // run the subscription goes on with it.
            let (state, why) = match self.shared() {
                Some(_) => (replay::RunState::Running, "handed over".to_string()),
                None => (replay::RunState::Interrupted, replay::interrupted()),
            };
            replay::stop_all(&e.replays, state, &why).await;
            if let Some(shared) = self.shared().filter(|s| s.holds(&e.record.spec.name)) {
                shared.release(&e.record.spec.name).await;
            }
        }
        // A closed bus delivers nothing, so it no longer holds dead-letter topics.
        self.ctx.broker.set_deletion_guard(Arc::new(|_: &str| None));
        let retries = self.ctx.retries.close();
        self.ctx.positions.close().and(retries)
    }
}
