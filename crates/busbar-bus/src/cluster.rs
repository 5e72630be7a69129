//! Subscriptions in cluster mode (issue 20, `docs/cluster.md` "Subscriptions").
//!
//! The subscriptions (spec, paused flag) and their state (positions, counters, retry entries)
//! live in the shared store ([`SharedBus`], PostgreSQL in `busbar-cluster`), so every broker
//! lists and changes the same subscriptions and any broker can run any of them. One broker runs
//! each: the one holding the subscription's lease. Every broker keeps a copy of the list
//! ([`Bus::sync`], every [`TICK`] and before a lookup of a name it lacks); on each tick it
//! starts the workers of the subscriptions whose leases it takes and stops those whose leases it
//! lost. The broker rendezvous hashing prefers takes a free lease at once, the others only after
//! [`FALLBACK_AFTER`] (a preferred broker that cannot run it does not leave it idle). A broker
//! keeps a lease while it runs: subscriptions do not move back when a broker returns.
//!
//! A broker that takes a lease loads the subscription's state before it starts the worker, and
//! every write of that worker is fenced in the store by the lease (held by this process,
//! unexpired, row-locked until the write commits): a worker that lost its lease can deliver a
//! last event again (at least once), never move the state under the new holder.
//!
//! Changes (create, update, patch, pause, resume, delete) are one transaction each in the store,
//! checked against the version the change read; the holder sees them on its next tick and
//! restarts or stops the worker. A topic target's transactions are the cluster's (its
//! transactional id is coordinated where its worker runs; `docs/cluster.md`). A reset pauses
//! the subscription, moves its positions under its lease and resumes it (`reset.rs`). Replays
//! run on the subscription's runner (asked of it from other brokers, `ask.rs`) and go on on the
//! next runner when it stops; a redrive writes each subscription's part under its lease
//! (`redrive_shared.rs`).

use crate::error::{BusError, Result};
use crate::replay::{self, RunState};
use crate::state::SubRecord;
use crate::{Bus, Entry, SubState};
use busbar_broker::shared::BoxFuture;
use busbar_broker::BrokerError;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often each broker reads the subscriptions and acts on their leases.
pub const TICK: Duration = Duration::from_secs(1);
/// How long a free lease waits for its preferred broker before any broker takes it.
pub const FALLBACK_AFTER: Duration = Duration::from_secs(5);

/// Which table a state row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    /// `positions.rs`: positions, counters.
    Positions,
    /// `state.rs`: retry entries, replay runs.
    Retries,
}

impl Space {
    /// Its number in the store.
    pub fn code(self) -> i16 {
        match self {
            Space::Positions => 0,
            Space::Retries => 1,
        }
    }

    /// The space numbered `code`.
    pub fn from_code(code: i16) -> Option<Space> {
        match code {
            0 => Some(Space::Positions),
            1 => Some(Space::Retries),
            _ => None,
        }
    }
}

/// A state row to write: its table, key and value (`None` deletes it).
pub type WriteRow = (Space, Vec<u8>, Option<Vec<u8>>);

/// A stored state row.
#[derive(Debug, Clone)]
pub struct StateRow {
    pub space: Space,
    /// Its sequence number (newer rows have larger ones).
    pub seq: u64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// A stored subscription: its name, version and record (JSON).
pub type StoredRecord = (String, i64, Vec<u8>);

/// One change of a subscription record, with the state that goes with it, in one transaction.
#[derive(Debug, Clone)]
pub enum RecordChange {
    /// A new subscription: refused (`Ok(None)`) when the name exists or `limit` subscriptions
    /// do (counted inside the create's transaction, creates on all brokers serialized). State
    /// left by an earlier subscription of the name is removed; `start` rows are written.
    Create {
        name: String,
        record: Vec<u8>,
        start: Vec<WriteRow>,
        limit: u64,
    },
    /// Replaces the record of version `version` (`Ok(None)` when it is another or gone);
    /// `start` rows are written only where the key has none.
    Update {
        name: String,
        version: i64,
        record: Vec<u8>,
        start: Vec<WriteRow>,
    },
    /// Removes the record of version `version`, all its state and its lease.
    Delete { name: String, version: i64 },
}

/// What the brokers of a cluster share about subscriptions (implemented by `busbar-cluster`).
pub trait SharedBus: Send + Sync + 'static {
    /// Every subscription record.
    fn records(&self) -> BoxFuture<'_, busbar_broker::Result<Vec<StoredRecord>>>;
    /// Applies `change`: the record's new version (`0` for a delete), `None` when the version
    /// (or existence) it was based on no longer holds.
    fn change(&self, change: RecordChange) -> BoxFuture<'_, busbar_broker::Result<Option<i64>>>;
    /// Every state row of `sub`; `None` when its record is gone, or is not at `version` when one
    /// is given (the record is locked while the rows are read, so a delete waits for the load).
    fn load(
        &self,
        sub: &str,
        version: Option<i64>,
    ) -> BoxFuture<'_, busbar_broker::Result<Option<Vec<StateRow>>>>;
    /// Writes state rows of `sub` in one transaction, fenced by this process's unexpired lease
    /// on `sub` (`NotCoordinator` without it); the rows' sequence numbers, in order.
    fn write(
        &self,
        sub: &str,
        rows: Vec<WriteRow>,
    ) -> BoxFuture<'_, busbar_broker::Result<Vec<u64>>>;
    /// Takes `sub`'s lease when it is free, expired or this process's: when the request was sent
    /// (for [`SharedBus::confirm`]); `None` when another live process holds it.
    fn take(&self, sub: &str) -> BoxFuture<'_, busbar_broker::Result<Option<Instant>>>;
    /// Makes a lease taken at `sent` usable (the state is loaded).
    fn confirm(&self, sub: &str, sent: Instant);
    /// Whether this broker may run `sub` now.
    fn holds(&self, sub: &str) -> bool;
    /// Gives `sub`'s lease up (its worker has stopped).
    fn release(&self, sub: &str) -> BoxFuture<'_, ()>;
    /// Gives `sub`'s lease up after its local window ran out (a watchdog): forgotten here, its
    /// row left to lapse by itself (never deleting the row of a take made again meanwhile).
    fn release_lapsed(&self, sub: &str) -> BoxFuture<'_, ()>;
    /// Whether rendezvous hashing over the live brokers picks this one for `sub`.
    fn preferred(&self, sub: &str) -> bool;
    /// Asks the broker that runs `sub` to do `body` (an ask as JSON, `ask.rs`): its answer
    /// (JSON), or `None` when no broker took the ask within `wait` (withdrawn: not done).
    fn ask(
        &self,
        sub: &str,
        body: Vec<u8>,
        wait: Duration,
    ) -> BoxFuture<'_, busbar_broker::Result<Option<Vec<u8>>>>;
    /// Takes the oldest open ask of `subs` (subscriptions this broker runs) made less than
    /// `fresh` ago (by the store's clock): it must now be answered ([`SharedBus::answer`]).
    fn asked(
        &self,
        subs: Vec<String>,
        fresh: Duration,
    ) -> BoxFuture<'_, busbar_broker::Result<Option<AskRow>>>;
    /// Woken when an ask was made on any broker (the runner serves it at once, not on its next
    /// tick; a lost wake-up costs at most a tick).
    fn asks_made(&self) -> Arc<tokio::sync::Notify>;
    /// This broker process's instance token (a new one each start).
    fn instance(&self) -> String;
    /// Whether the broker process with instance token `instance` is live (its heartbeat fresh
    /// in the store now).
    fn is_live(&self, instance: &str) -> BoxFuture<'_, busbar_broker::Result<bool>>;
    /// Answers ask `id` with `answer` (an answer as JSON).
    fn answer(&self, id: i64, answer: Vec<u8>) -> BoxFuture<'_, busbar_broker::Result<()>>;
}

/// An ask taken by this broker: its id, subscription and body.
pub type AskRow = (i64, String, Vec<u8>);

/// How long a reset in cluster mode waits for the subscription's runner to stop and give its
/// leases up (a runner that died: its subscription lease expires within 10 s, its transactional
/// id's soon after).
pub const RESET_WAIT: Duration = Duration::from_secs(30);

/// The error for what cluster mode does not do yet.
pub(crate) fn not_in_cluster(what: &str) -> BusError {
    BusError::Broker(BrokerError::PolicyViolation(format!(
        "{what} is not available in cluster mode yet (docs/cluster.md)"
    )))
}

fn encode(record: &SubRecord) -> Vec<u8> {
    serde_json::to_vec(record).expect("a record encodes")
}

/// How often a worker's watchdog checks its lease.
const WATCH_EVERY: Duration = Duration::from_millis(200);

/// What this broker remembers about leases it does not hold, and records it cannot read.
#[derive(Default)]
pub(crate) struct LeaseView(Mutex<LeaseState>, tokio::sync::Mutex<()>);

#[derive(Default)]
struct LeaseState {
    /// When each subscription was first seen here, and when a take was last refused (another
    /// broker holds it).
    attempts: HashMap<String, (Instant, Option<Instant>)>,
    /// Subscriptions whose record (this version) this broker cannot read.
    unreadable: HashMap<String, i64>,
    /// When the last successful read of the list began.
    synced_at: Option<Instant>,
    /// Subscriptions whose lease a reset or a redrive on this broker borrows (a paused one,
    /// [`Bus::reset_shared`], `redrive_shared.rs`): the tick
    /// leaves them alone and nothing here gives their lease up meanwhile.
    resetting: std::collections::HashSet<String>,
}

impl LeaseView {
    /// Marks `name` as being reset here; `false` when it is already.
    pub(crate) fn begin_borrow(&self, name: &str) -> bool {
        self.lock().resetting.insert(name.to_string())
    }

    pub(crate) fn end_borrow(&self, name: &str) {
        self.lock().resetting.remove(name);
    }

    /// Whether a reset on this broker is moving `name`.
    pub(crate) fn is_borrowed(&self, name: &str) -> bool {
        self.lock().resetting.contains(name)
    }

    /// One lookup's read of the list at a time ([`Bus::sync_for`]).
    fn lookups(&self) -> &tokio::sync::Mutex<()> {
        &self.1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LeaseState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether to try `name`'s lease now: always when this broker holds it; else not within
    /// [`FALLBACK_AFTER`] of a refused take; at once when this broker is the preferred one, and
    /// [`FALLBACK_AFTER`] after it first saw the subscription otherwise.
    fn worth_taking(&self, shared: &dyn SharedBus, name: &str) -> bool {
        if shared.holds(name) {
            return true;
        }
        let mut s = self.lock();
        let (seen, refused) = *s
            .attempts
            .entry(name.to_string())
            .or_insert((Instant::now(), None));
        if refused.is_some_and(|at| at.elapsed() < FALLBACK_AFTER) {
            return false;
        }
        shared.preferred(name) || seen.elapsed() >= FALLBACK_AFTER
    }

    /// Another broker holds `name`'s lease.
    fn refused(&self, name: &str) {
        let mut s = self.lock();
        let now = Instant::now();
        s.attempts.entry(name.to_string()).or_insert((now, None)).1 = Some(now);
    }

    /// Forgets what it knew of subscriptions no longer stored (bounded by the list).
    fn keep_only(&self, stored: &std::collections::BTreeSet<String>) {
        let mut s = self.lock();
        s.attempts.retain(|n, _| stored.contains(n));
        s.unreadable.retain(|n, _| stored.contains(n));
    }

    /// Records that version `version` of `name` is unreadable here: true the first time.
    fn unreadable(&self, name: &str, version: i64) -> bool {
        self.lock().unreadable.insert(name.to_string(), version) != Some(version)
    }

    fn readable(&self, name: &str) {
        self.lock().unreadable.remove(name);
    }

    fn is_unreadable(&self, name: &str) -> bool {
        self.lock().unreadable.contains_key(name)
    }
}

/// Stops the worker of `name` as soon as this broker may no longer act on its lease, whatever
/// the rest of the bus is doing (a tick waiting on the database, a lock held by an admin call);
/// ends with the worker.
async fn watchdog(
    shared: Arc<dyn SharedBus>,
    name: String,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
) {
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        if stop.is_closed() || *stop.borrow() {
            return;
        }
        if !shared.holds(&name) {
            let _ = stop.send(true);
            let msg = format!("subscription {name:?}: lease ran out; its worker stops here");
            busbar_broker::log::warn("busbar", "bus_cluster", &msg, &[]);
            // Given up for good: a late renewal must not make the stopped worker look held (the
            // row of a take made again meanwhile is left alone).
            shared.release_lapsed(&name).await;
            return;
        }
    }
}

impl Bus {
    /// The shared store of subscriptions, in cluster mode.
    pub(crate) fn shared(&self) -> Option<&Arc<dyn SharedBus>> {
        self.shared_bus.as_ref()
    }

    /// Applies `change` to the shared store; `Ok(None)` when the version it was based on no longer
    /// holds (the caller syncs and answers a conflict).
    pub(crate) async fn change_shared(&self, change: RecordChange) -> Result<Option<i64>> {
        let shared = self.shared().expect("cluster mode");
        Ok(shared.change(change).await?)
    }

    /// The create of `record` with its start positions in the shared store.
    pub(crate) async fn create_shared(
        &self,
        record: &SubRecord,
        start: Vec<WriteRow>,
    ) -> Result<i64> {
        let name = record.spec.name.clone();
        let limit = self.config.subscriptions_max;
        let change = RecordChange::Create {
            name: name.clone(),
            record: encode(record),
            start,
            limit: limit as u64,
        };
        if let Some(version) = self.change_shared(change).await? {
            return Ok(version);
        }
        // Refused: the name was taken meanwhile, or the cluster is at its limit.
        let shared = self.shared().expect("cluster mode");
        let taken = shared.records().await?.iter().any(|r| r.0 == name);
        Err(if taken {
            BusError::SubscriptionExists(name)
        } else {
            BusError::LimitReached {
                what: "bus.subscriptions_max",
                limit,
            }
        })
    }

    /// Stores the changed `record` (of version `version`); its new version.
    pub(crate) async fn update_shared(
        &self,
        record: &SubRecord,
        version: i64,
        start: Vec<WriteRow>,
    ) -> Result<i64> {
        let name = record.spec.name.clone();
        let change = RecordChange::Update {
            name: name.clone(),
            version,
            record: encode(record),
            start,
        };
        self.change_shared(change)
            .await?
            .ok_or_else(|| conflict(&name))
    }

    /// Stores the changed subscription `name` as `subs` holds it: the whole document of a single
    /// node, or in cluster mode that one record with `start` (its version moves on).
    pub(crate) async fn persist_with(
        &self,
        subs: &mut BTreeMap<String, Entry>,
        name: &str,
        start: Vec<WriteRow>,
    ) -> Result<()> {
        if self.shared().is_none() {
            return self.save(subs);
        }
        let e = subs.get_mut(name).expect("present");
        e.version = self.update_shared(&e.record, e.version, start).await?;
        self.save_guard(subs);
        Ok(())
    }

    /// [`Bus::persist_with`] without start rows.
    pub(crate) async fn persist(
        &self,
        subs: &mut BTreeMap<String, Entry>,
        name: &str,
    ) -> Result<()> {
        self.persist_with(subs, name, vec![]).await
    }

    /// Deletes `e` (taken out of `subs`) from the shared store with its state and lease; on a
    /// failure it goes back into `subs`.
    pub(crate) async fn delete_shared(
        &self,
        subs: &mut BTreeMap<String, Entry>,
        mut e: Entry,
    ) -> Result<()> {
        let name = e.record.spec.name.clone();
        let change = RecordChange::Delete {
            name: name.clone(),
            version: e.version,
        };
        let failed = match self.change_shared(change).await {
            Ok(Some(_)) => None,
            Ok(None) => Some(conflict(&name)),
            Err(err) => Some(err),
        };
        if let Some(err) = failed {
            subs.insert(name, e);
            return Err(err);
        }
        replay::stop_all(&e.replays, RunState::Cancelled, "deleted").await;
        if let Some(h) = e.handle.take() {
            h.stop().await;
        }
        self.forget_txn(&e).await;
        // The row went with the delete; this broker's memory of the lease goes now.
        self.shared().expect("cluster mode").release(&name).await;
        self.ctx.positions.load(&name, &[]);
        self.ctx.retries.load(&name, &[]);
        self.save_guard(subs);
        Ok(())
    }

    /// Deleted subscription `e`'s transactional id (its worker stopped) is forgotten (a
    /// transaction left open aborted first), whatever its target is now (it may have had a
    /// topic target before an update). A failure (another broker still coordinates the id) is
    /// logged; the database forgets the record of a deleted subscription's id anyway once no
    /// broker coordinates it (`busbar-cluster` `txn::expire`).
    async fn forget_txn(&self, e: &Entry) {
        let name = &e.record.spec.name;
        let id = crate::worker::transactional_id(name);
        if let Err(err) = self.ctx.broker.forget_bus_txn(&id).await {
            let msg = format!(
                "subscription {name:?} deleted; its transactional id {id:?} is forgotten \
                 by the broker that ran it, or later by the cluster: {err}"
            );
            busbar_broker::log::info("busbar", "bus_housekeeping", &msg, &[]);
        }
    }

    /// Cluster mode: syncs when `name` is not known here (made on another broker just now).
    /// Lookups wait for one read at a time and share it: a read begun after a lookup arrived
    /// answers it, so a flood of unknown names costs one read in flight, not one each.
    pub(crate) async fn sync_for(&self, name: &str) -> Result<()> {
        if self.shared().is_none() || self.subs.lock().await.contains_key(name) {
            return Ok(());
        }
        let asked = Instant::now();
        let _one = self.leases.lookups().lock().await;
        if (self.leases.lock().synced_at).is_some_and(|t| t >= asked) {
            return Ok(());
        }
        self.sync().await
    }

    /// Reads the shared list and brings the local one level: new subscriptions appear, changed
    /// ones take their new record (a running worker stops; the next tick runs the new record),
    /// removed ones stop. A record this broker cannot read (a newer busbar wrote it) stops its
    /// worker here and shows as an error until a readable version replaces it.
    pub(crate) async fn sync(&self) -> Result<()> {
        let Some(shared) = self.shared() else {
            return Ok(());
        };
        // The list is read under the lock every change holds while it writes: a read never
        // lands after a change it did not see (which would undo it here).
        let mut subs = self.subs.lock().await;
        let began = Instant::now();
        let stored = shared.records().await?;
        let mut seen = std::collections::BTreeSet::new();
        for (name, version, bytes) in stored {
            seen.insert(name.clone());
            if subs.get(&name).is_some_and(|e| e.version >= version) {
                continue;
            }
            let read = serde_json::from_slice::<SubRecord>(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    let c = r.spec.clone().compile().map_err(|e| e.to_string())?;
                    Ok((r, Arc::new(c)))
                });
            let (record, compiled) = match read {
                Ok(read) => read,
                Err(why) => {
                    self.unreadable(&mut subs, &name, version, &why).await;
                    continue;
                }
            };
            self.leases.readable(&name);
            match subs.get_mut(&name) {
                Some(e) => {
                    // A run would go on with the old spec: it ends, to be resumed anew.
                    let why = match record.paused {
                        true => "the subscription was paused",
                        false => "the subscription was updated",
                    };
                    replay::stop_all(&e.replays, RunState::Stopped, why).await;
                    e.record = record;
                    e.compiled = compiled;
                    e.version = version;
                    if let Some(h) = e.handle.take() {
                        h.stop().await;
                    }
                    // A reset here holds the lease of the subscription it paused.
                    if e.record.paused && shared.holds(&name) && !self.leases.is_borrowed(&name) {
                        shared.release(&name).await;
                    }
                    self.show_idle(e);
                }
                None => {
                    subs.insert(name, Entry::remote(record, compiled, version));
                }
            }
        }
        let gone: Vec<String> = subs
            .keys()
            .filter(|n| !seen.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(mut e) = subs.remove(&name) {
                replay::stop_all(&e.replays, RunState::Cancelled, "deleted").await;
                if let Some(h) = e.handle.take() {
                    h.stop().await;
                    self.forget_txn(&e).await;
                }
                self.ctx.positions.load(&name, &[]);
                self.ctx.retries.load(&name, &[]);
            }
        }
        self.leases.keep_only(&seen);
        let mut leases = self.leases.lock();
        leases.synced_at = leases.synced_at.max(Some(began));
        drop(leases);
        self.save_guard(&subs);
        Ok(())
    }

    /// A subscription not running here shows `paused` or `elsewhere`, as its record says.
    fn show_idle(&self, e: &Entry) {
        let mut status = e.status.lock().unwrap_or_else(|e| e.into_inner());
        *status = if e.record.paused {
            SubState::Paused
        } else {
            SubState::Elsewhere
        };
    }

    /// Version `version` of `name` cannot be read here: its worker stops, the lease goes, the
    /// state says why (logged once per version).
    async fn unreadable(
        &self,
        subs: &mut BTreeMap<String, Entry>,
        name: &str,
        version: i64,
        why: &str,
    ) {
        if !self.leases.unreadable(name, version) {
            return;
        }
        let msg = format!("subscription {name:?} in the cluster cannot be read here: {why}");
        busbar_broker::log::error("busbar", "bus_cluster", &msg, &[]);
        let Some(e) = subs.get_mut(name) else {
            return;
        };
        let why = format!("this broker cannot read the subscription's record: {why}");
        replay::stop_all(&e.replays, RunState::Interrupted, &why).await;
        if let Some(h) = e.handle.take() {
            h.stop().await;
        }
        if let Some(shared) = self.shared().filter(|s| s.holds(name)) {
            shared.release(name).await;
        }
        let detail = format!("this broker cannot read the cluster's record: {why}");
        *e.status.lock().unwrap_or_else(|e| e.into_inner()) = SubState::Error { detail };
    }

    /// One pass over the leases: stops the workers whose lease is lost, starts those whose lease
    /// this broker takes.
    pub(crate) async fn tick(&self) -> Result<()> {
        // A failed read must not keep the leases from being checked (each worker also has a
        // watchdog of its own, [`watchdog`]).
        let mut outcome = self.sync().await;
        let shared = self.shared().expect("cluster mode").clone();
        let names: Vec<(String, bool, bool)> = {
            let subs = self.subs.lock().await;
            (subs.iter())
                .map(|(n, e)| (n.clone(), e.record.paused, e.handle.is_some()))
                .collect()
        };
        self.resume_orphaned_resets().await;
        for (name, paused, running) in names {
            if paused || self.leases.is_unreadable(&name) || self.leases.is_borrowed(&name) {
                continue;
            }
            if running {
                if !shared.holds(&name) {
                    self.stop_lost(&name).await;
                }
                continue;
            }
            if !self.leases.worth_taking(shared.as_ref(), &name) {
                continue;
            }
            if let Err(e) = self.take_and_run(shared.as_ref(), &name).await {
                if outcome.is_ok() {
                    outcome = Err(BusError::Storage(format!(
                        "subscription {name:?}: taking its lease: {e}"
                    )));
                }
            }
        }
        let served = self.serve_asks().await;
        outcome.and(served)
    }

    /// Stops the worker of `name`, whose lease this broker no longer holds.
    async fn stop_lost(&self, name: &str) {
        let mut subs = self.subs.lock().await;
        if let Some(e) = subs.get_mut(name) {
            // Handed over: stored, they read RUNNING at their last places (written if the
            // store still takes this broker's write), and the next runner goes on from there.
            replay::stop_all(&e.replays, RunState::Running, "handed over").await;
            if let Some(h) = e.handle.take() {
                h.stop().await;
            }
            self.show_idle(e);
            let msg = format!("subscription {name:?}: lease lost; its worker stopped here");
            busbar_broker::log::warn("busbar", "bus_cluster", &msg, &[]);
        }
    }

    /// Takes `name`'s lease, loads its state and starts its worker (with its [`watchdog`]).
    async fn take_and_run(&self, shared: &dyn SharedBus, name: &str) -> Result<()> {
        let mut subs = self.subs.lock().await;
        let Some(e) = subs.get_mut(name) else {
            return Ok(());
        };
        if e.record.paused || e.handle.is_some() {
            return Ok(());
        }
        let Some(sent) = shared.take(name).await? else {
            self.leases.refused(name);
            return Ok(());
        };
        let rows = match shared.load(name, Some(e.version)).await {
            Ok(Some(rows)) => rows,
            Ok(None) => {
                // Deleted or changed since this broker read the list: the next tick knows.
                shared.release(name).await;
                return Ok(());
            }
            Err(err) => {
                shared.release(name).await;
                return Err(err.into());
            }
        };
        self.load_rows(name, &rows);
        e.counters = Arc::new(crate::stats::Counters::restore(
            &self.ctx.positions.counters(name).unwrap_or_default(),
        ));
        shared.confirm(name, sent);
        // A load slower than the lease's local window must not start a worker.
        if !shared.holds(name) {
            shared.release(name).await;
            return Ok(());
        }
        self.take_over_runs(e).await;
        *e.status.lock().unwrap_or_else(|e| e.into_inner()) = SubState::Starting;
        let handle = self.spawn(e);
        let shared = self.shared().expect("cluster mode").clone();
        tokio::spawn(watchdog(shared, name.to_string(), handle.stop_signal()));
        e.handle = Some(handle);
        let msg = format!("subscription {name:?}: lease taken; its worker runs here");
        busbar_broker::log::info("busbar", "bus_cluster", &msg, &[]);
        Ok(())
    }

    /// Replaces what the tables hold of `name` with `rows`.
    pub(crate) fn load_rows(&self, name: &str, rows: &[StateRow]) {
        let (p, r): (Vec<&StateRow>, Vec<&StateRow>) =
            rows.iter().partition(|r| r.space == Space::Positions);
        self.ctx.positions.load(name, &p);
        self.ctx.retries.load(name, &r);
    }

    /// Loads `name`'s state afresh when another broker runs it (what its view shows).
    pub(crate) async fn refresh_remote(&self, name: &str) -> Result<()> {
        let Some(shared) = self.shared() else {
            return Ok(());
        };
        if shared.holds(name) {
            return Ok(());
        }
        let Some(rows) = shared.load(name, None).await? else {
            return Ok(());
        };
        let subs = self.subs.lock().await;
        // Rows read before a take or a borrow here are older than what the tables hold now.
        let idle = !shared.holds(name) && !self.leases.is_borrowed(name);
        if let Some(e) = subs.get(name).filter(|e| e.handle.is_none() && idle) {
            self.load_rows(name, &rows);
            let stored = self.ctx.positions.counters(name).unwrap_or_default();
            e.counters.set(&stored);
        }
        Ok(())
    }

    /// Runs [`Bus::tick`] every [`TICK`] until the bus closes.
    pub(crate) fn start_ticks(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let bus = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(TICK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let asks = match bus.upgrade() {
                Some(bus) => bus.shared().expect("cluster mode").asks_made(),
                None => return,
            };
            // One line when reading starts failing and one when it works again, not one a tick.
            let mut failing = false;
            loop {
                let tick = tokio::select! {
                    _ = every.tick() => true,
                    _ = asks.notified() => false,
                };
                let Some(bus) = bus.upgrade() else { return };
                if !tick {
                    // A failure here is the tick's too: it says so once.
                    let _ = bus.serve_asks().await;
                    continue;
                }
                match bus.tick().await {
                    Err(e) if !failing => {
                        failing = true;
                        let msg = format!("reading the cluster's subscriptions: {e}");
                        busbar_broker::log::warn("busbar", "bus_cluster", &msg, &[]);
                    }
                    Ok(()) if failing => {
                        failing = false;
                        let msg = "reading the cluster's subscriptions works again";
                        busbar_broker::log::info("busbar", "bus_cluster", msg, &[]);
                    }
                    _ => {}
                }
            }
        })
    }
}

/// A change based on a version another change replaced.
pub(crate) fn conflict(name: &str) -> BusError {
    BusError::Broker(BrokerError::PolicyViolation(format!(
        "subscription {name:?} was changed on another broker meanwhile; read it and try again"
    )))
}
