//! One running subscription: a durable consumer inside the broker (DESIGN.md data flow 3).
//!
//! The worker reads its source partitions from its stored positions (`positions.rs`, the bus's own
//! internal log, not a consumer group) through chunks every subscription of the topic shares
//! (`shared.rs`: each event read, decoded, parsed and matched against all their patterns once;
//! `read.rs` takes this subscription's matching events from them), and keeps
//! up to `concurrency` deliveries in flight. A failed attempt that may be retried is written to the
//! retry state (durably) before the partition's position may pass it, so the partition keeps flowing
//! while the event waits for its next attempt on a timer. With `ordering: key`, an event whose key
//! already has an event in flight or waiting is parked (also durably) behind it, and released in
//! offset order when the one ahead is delivered or dead-lettered: a failing key holds back only
//! that key. Exhausted or non-retriable events go to the dead-letter topic with headers saying why.
//!
//! The committed position of a partition is its lowest event that is read but neither settled
//! (delivered, dead-lettered, not matched) nor in the retry state. After a crash, everything from
//! there is delivered again: at-least-once for an HTTP target, and every delivery carries the
//! event's stable id. A topic target is exactly-once: its deliveries are a transaction committed
//! with the positions (`exactly.rs`).
//! The subscription's counters are written in the same write as the positions (`stats.rs`).

use super::deliver::{HttpClient, Outcome, TopicSink};
use super::dlq;
use super::spec::{Compiled, Ordering, Target};
use super::state::{EventRef, RetryEntry, RetryStore};
use super::stats::{CounterSnapshot, Counters};
use crate::creator::Denial;
use crate::error::{BusError, Result};
use crate::policy::Jitter;
use crate::positions::{
    forget_old_incarnation, stored_position, take_over_legacy, topic_layout, PartKey, Position,
    PositionStore,
};
use crate::SubState;
use busbar_broker::event::{Decoded, StoredEvent};
use busbar_broker::Broker;
use busbar_broker::BrokerError;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

mod exactly;
mod lanes;
mod launch;
mod read;
mod settle;
mod shared;

pub(crate) use exactly::settle_record;
pub use exactly::transactional_id;
pub use shared::{ReadStats, Shared};

/// Most events matched (or skipped) in one pass before the worker looks at its other work.
const EVENTS_PER_PASS: usize = 10_000;
pub(crate) use shared::{read_pinned, READ_BYTES};
/// How often positions are committed while events flow.
const COMMIT_EVERY: Duration = Duration::from_millis(100);
/// The pause after a failed pass (reading a source, parking an event) before the next.
const ERROR_BACKOFF: Duration = Duration::from_millis(200);
/// The wait before writing a dead letter again after the dead-letter topic refused it.
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(5);
/// How often the worker checks that its source topics are the ones it started on.
const SOURCES_CHECK_EVERY: Duration = Duration::from_secs(1);

/// What the rest of the bus shares with workers.
pub struct Ctx {
    pub broker: Arc<Broker>,
    pub retries: RetryStore,
    pub positions: PositionStore,
    pub http: HttpClient,
    /// What the workers of a topic share: its decoded events and their match results.
    pub shared: Arc<Shared>,
}

/// Commands to a running worker.
pub enum Cmd {
    /// A durable retry entry was added (a redrive): schedule it.
    Schedule(EventRef, RetryEntry),
}

/// A running worker.
pub struct Handle {
    stop: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
    pub cmd: mpsc::UnboundedSender<Cmd>,
}

impl Handle {
    /// Stops the worker (in-flight attempts are abandoned and delivered again later) and waits for
    /// its last commit.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// What tells the worker to stop without waiting for it (a lease watchdog, `cluster.rs`);
    /// closed once the worker has ended.
    pub fn stop_signal(&self) -> Arc<watch::Sender<bool>> {
        self.stop.clone()
    }
}

/// Starts a worker for `sub`.
pub fn spawn(
    ctx: Arc<Ctx>,
    sub: Arc<Compiled>,
    counters: Arc<Counters>,
    status: Arc<Mutex<SubState>>,
    gate: crate::creator::Gate,
) -> Handle {
    let (stop, stop_rx) = watch::channel(false);
    let (cmd, cmd_rx) = mpsc::unbounded_channel();
    let name = sub.spec.name.clone();
    let sink = match &sub.spec.target {
        Target::Topic { topic, .. } => Some(Arc::new(TopicSink::start(
            ctx.broker.clone(),
            topic.clone(),
        ))),
        Target::Http { .. } => None,
    };
    let worker = Worker {
        saved_counters: ctx.positions.counters(&name),
        reg: ctx.shared.register(sub.clone()),
        sink,
        name,
        ctx,
        sub,
        counters,
        status,
        gate,
        parts: Vec::new(),
        inflight: JoinSet::new(),
        timers: BTreeSet::new(),
        entries: BTreeMap::new(),
        lanes: HashMap::new(),
        held: BTreeSet::new(),
        rr: 0,
        jitter: Jitter::from_entropy(),
        failing_since: None,
        backpressure_line_ms: std::sync::atomic::AtomicI64::new(i64::MIN),
        backpressure_logged: std::sync::atomic::AtomicBool::new(false),
        ended: Vec::new(),
        unended: Vec::new(),
        restart: false,
    };
    let task = tokio::spawn(worker.run(stop_rx, cmd_rx));
    Handle {
        stop: Arc::new(stop),
        task,
        cmd,
    }
}

type Lane = (String, u32, u64);

struct Part {
    topic: String,
    /// The id of the topic incarnation `next` belongs to.
    topic_id: String,
    partition: u32,
    /// (topic, topic id, partition): where its chunks are cached.
    key: shared::PartKey,
    next: u64,
    /// The chunk being read.
    view: Option<read::View>,
    outstanding: BTreeSet<u64>,
    /// Restored events settled before the reader reached them again (a retry or parked event
    /// ahead of the position after a restart): the reader skips them, so they are not delivered
    /// twice. At most the retry entries there were.
    settled_ahead: BTreeSet<u64>,
    /// Exactly-once: events settled past the lowest one still unsettled, kept with the
    /// position (its `done`) so a restart does not deliver them again; pruned as the lowest
    /// unsettled event moves past them. At most [`DONE_AHEAD_MAX`] before reading pauses.
    done: BTreeSet<u64>,
    committed: Option<u64>,
    /// The `done` list stored with `committed`.
    committed_done: Vec<u64>,
}

/// How many settled events past a partition's lowest unsettled one an exactly-once worker
/// holds (each is stored with the position) before it stops reading new events until the
/// lowest one settles: bounds the size of a position write.
pub(super) const DONE_AHEAD_MAX: usize = 256;

struct Job {
    r: EventRef,
    /// The retry state this attempt continues, if any.
    entry: Option<RetryEntry>,
    lane: Option<Lane>,
}

struct Done {
    job: Job,
    event: Option<StoredEvent>,
    outcome: Outcome,
}

struct Worker {
    /// The subscription's pattern among its topics' rules (unregistered when the worker ends).
    reg: shared::Registration,
    /// Batches appends to a target topic.
    sink: Option<Arc<TopicSink>>,
    name: String,
    ctx: Arc<Ctx>,
    sub: Arc<Compiled>,
    counters: Arc<Counters>,
    /// The counters as last written with the positions.
    saved_counters: Option<CounterSnapshot>,
    status: Arc<Mutex<SubState>>,
    /// Whether the creator may run the subscription: READ the sources, WRITE the target and
    /// dead-letter topics, still exist (no reading, delivering or dead-lettering while not).
    gate: crate::creator::Gate,
    parts: Vec<Part>,
    inflight: JoinSet<Done>,
    /// (due ms, event) of scheduled retries.
    timers: BTreeSet<(i64, EventRef)>,
    /// This subscription's durable retry entries, mirrored.
    entries: BTreeMap<EventRef, RetryEntry>,
    /// Busy lanes, each with the events parked behind the one in flight or scheduled.
    lanes: HashMap<Lane, VecDeque<EventRef>>,
    /// Lanes restored at start whose parked events all lie at or past the partition's position:
    /// an earlier event of the key may still be read from the source, so none of them is due
    /// until the reader has passed the first (or such an event takes the lane's head).
    held: BTreeSet<Lane>,
    rr: usize,
    jitter: Jitter,
    /// Exactly-once (a topic target): retry entries ended since the last commit, removed once
    /// the transaction that delivered them is committed.
    ended: Vec<EventRef>,
    /// Exactly-once: retry entries of committed deliveries whose removal failed, removed again
    /// at the next commit or start (never forgotten: they would deliver an event again).
    unended: Vec<EventRef>,
    /// A commit failed in a way only a fresh start from the stored state can settle.
    restart: bool,
    /// When the log said the target is failing (`settle.rs`); `None` while it delivers.
    failing_since: Option<i64>,
    /// When the log last said the subscription entered or left backpressure (`lanes.rs`), and
    /// whether that line said it entered.
    backpressure_line_ms: std::sync::atomic::AtomicI64,
    backpressure_logged: std::sync::atomic::AtomicBool,
}

/// The lane of events without a key (no FNV-1a hash of a key is expected to land on it; one
/// that did would only share its lane, never reorder).
const KEYLESS_LANE: u64 = u64::MAX;

fn key_hash(k: &[u8]) -> u64 {
    // FNV-1a: stable across restarts (lanes are rebuilt from stored hashes).
    k.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What a letter carries for an event that cannot be read (no key, value or headers).
pub(crate) fn stand_in(r: &EventRef, timestamp: i64) -> StoredEvent {
    StoredEvent {
        topic: r.topic.clone(),
        partition: r.partition,
        offset: r.offset,
        timestamp,
        key: None,
        value: None,
        headers: Vec::new(),
    }
}

impl Worker {
    /// Serves the subscription until stopped; starts over from the stored state whenever a source
    /// topic is deleted, created again or grows partitions.
    async fn run(
        mut self,
        mut stop: watch::Receiver<bool>,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
    ) {
        loop {
            while let Err(e) = self.init().await {
                self.set_status(SubState::Error {
                    detail: e.to_string(),
                });
                tokio::select! {
                    _ = stop.changed() => {
                        // A start that took the transactional id hands it over all the same.
                        if self.sink.is_some() {
                            let id = exactly::transactional_id(&self.name);
                            self.ctx.broker.hand_over_bus_txn(&id).await;
                        }
                        return;
                    }
                    _ = tokio::time::sleep(SOURCES_CHECK_EVERY) => {}
                }
            }
            self.set_status(SubState::Running);
            let again = self.serve(&mut stop, &mut cmds).await;
            let mut drained = true;
            if !again && self.sink.is_some() {
                // Appends are local and quick: let them end, so the last commit covers them.
                // A stalled disk must not hold the stop: then the open transaction is aborted
                // at the next start and its deliveries are made again.
                drained = tokio::time::timeout(exactly::STOP_DRAIN_MAX, self.drain())
                    .await
                    .is_ok();
            }
            self.inflight.abort_all();
            while self.inflight.join_next().await.is_some() {}
            if !again {
                if drained {
                    self.commit().await;
                }
                if let Some(sink) = &self.sink {
                    // Cluster mode: the next runner (maybe another broker) coordinates the id.
                    // Not while an append may still run (its drain timed out): the id's lease
                    // then stays here until its open transaction times out and is aborted.
                    if let Ok(mut producer) = sink.producer().try_lock() {
                        *producer = None;
                        drop(producer);
                        let id = exactly::transactional_id(&self.name);
                        self.ctx.broker.hand_over_bus_txn(&id).await;
                    }
                }
                return;
            }
            // A transaction left open is aborted when the worker starts again (`init`), and
            // the retry entries its deliveries ended stay.
            self.ended.clear();
            self.restart = false;
            // In-flight attempts are abandoned (delivered again: at-least-once); positions of
            // the old topic stay behind under its id and no longer apply.
            self.parts.clear();
            self.timers.clear();
            self.entries.clear();
            self.lanes.clear();
            self.held.clear();
        }
    }

    /// The delivery loop; answers `true` when the sources changed and the worker must start over,
    /// `false` when stopped.
    async fn serve(
        &mut self,
        stop: &mut watch::Receiver<bool>,
        cmds: &mut mpsc::UnboundedReceiver<Cmd>,
    ) -> bool {
        let mut last_commit = tokio::time::Instant::now();
        let mut last_check = tokio::time::Instant::now();
        loop {
            if *stop.borrow() {
                return false;
            }
            let mut suspect = false;
            let denied = self.gate.denied(&self.ctx.broker, &self.sub.spec);
            let progressed = match self.fill_if(denied.is_none()).await {
                Ok(p) => {
                    self.settle_status(denied.as_ref());
                    p
                }
                Err(e) => {
                    suspect = matches!(e, BusError::Broker(BrokerError::UnknownTopic(_)));
                    self.set_status(SubState::Error {
                        detail: e.to_string(),
                    });
                    // A failing disk or source is not retried in a busy loop.
                    tokio::select! {
                        _ = stop.changed() => return false,
                        _ = tokio::time::sleep(ERROR_BACKOFF) => {}
                    }
                    false
                }
            };
            if last_commit.elapsed() >= COMMIT_EVERY
                || self.ended.len() >= exactly::ENDED_PER_COMMIT
            {
                self.commit().await;
                last_commit = tokio::time::Instant::now();
                if self.restart {
                    return true;
                }
            }
            if suspect || last_check.elapsed() >= SOURCES_CHECK_EVERY {
                last_check = tokio::time::Instant::now();
                if self.sources_changed() {
                    return true;
                }
            }
            if progressed && self.inflight.len() < self.limit() {
                tokio::task::yield_now().await;
                continue;
            }
            let wait = self.wait_time();
            // While denied, new data must not wake the loop: it would not be read.
            let positions = match denied {
                Some(_) => Vec::new(),
                None => self.idle_positions(),
            };
            tokio::select! {
                biased;
                _ = stop.changed() => return false,
                Some(cmd) = cmds.recv() => self.on_cmd(cmd),
                Some(done) = self.inflight.join_next(), if !self.inflight.is_empty() => {
                    if let Ok(done) = done {
                        self.on_done(done).await;
                    }
                }
                _ = self.ctx.broker.wait_for_data(&positions, wait, busbar_broker::Isolation::ReadCommitted), if !positions.is_empty() => {}
                _ = tokio::time::sleep(wait), if positions.is_empty() => {}
            }
        }
    }

    /// Whether a source topic is gone, was created again (another id) or has another partition
    /// count than when the worker started.
    fn sources_changed(&self) -> bool {
        let mut seen: BTreeMap<&str, (&str, u32)> = BTreeMap::new();
        for p in &self.parts {
            let e = seen.entry(&p.topic).or_insert((&p.topic_id, 0));
            e.1 += 1;
        }
        seen.into_iter().any(|(topic, (id, n))| {
            topic_layout(&self.ctx.broker, topic).map_or(true, |now| now != (id.to_string(), n))
        })
    }

    /// The broker's clock (injected: tests drive backoff with a manual clock, no real waits
    /// beyond the loop's 200 ms tick).
    fn now(&self) -> i64 {
        self.ctx.broker.config().clock.now_ms()
    }

    /// Fills when `allowed` (the creator may run the subscription); else reads and starts
    /// nothing (no due retry, no dead letter waiting to be written), so no position moves past
    /// an event not delivered.
    async fn fill_if(&mut self, allowed: bool) -> Result<bool> {
        match allowed {
            true => self.fill().await,
            false => Ok(false),
        }
    }

    /// The status after a pass that did not fail: `unauthorized` while the creator may not run
    /// the subscription (`denied`; an audit line when a denial starts or ends, `creator.rs`);
    /// `running` again once allowed or once an error passed (unless a dead letter still cannot
    /// be written).
    fn settle_status(&mut self, denied: Option<&Denial>) {
        let now = self
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.gate.report(&self.ctx.broker, &self.name, denied);
        let letter_waits = || self.entries.values().any(|e| e.dead_letter.is_some());
        if denied.is_some() {
            if now != SubState::Unauthorized {
                self.set_status(SubState::Unauthorized);
            }
        } else if now == SubState::Unauthorized || (now.is_error() && !letter_waits()) {
            self.set_status(SubState::Running);
        }
    }

    fn set_status(&self, s: SubState) {
        SubState::replace(&self.status, &self.name, s);
    }

    fn limit(&self) -> usize {
        self.sub.spec.delivery.concurrency as usize
    }

    fn wait_time(&self) -> Duration {
        let cap = Duration::from_millis(200);
        if self.inflight.len() >= self.limit() {
            // No due retry can start before an attempt ends, which wakes the loop anyway.
            return cap;
        }
        match self.timers.first() {
            Some((due, _)) => Duration::from_millis((due - self.now()).max(0) as u64).min(cap),
            None => cap,
        }
    }

    /// Partitions worth waiting on: buffer drained and room for more deliveries.
    fn idle_positions(&self) -> Vec<(String, i64, u64)> {
        if self.inflight.len() >= self.limit()
            || (self.entries.len() >= self.waiting_max() && self.held.is_empty())
            || self.done_full()
        {
            return Vec::new();
        }
        self.parts
            .iter()
            .filter(|p| p.view.is_none())
            .map(|p| (p.topic.clone(), p.partition as i64, p.next))
            .collect()
    }

    /// Positions from the stored ones (the log start where none applies to the topic as it is
    /// now), and the retry schedule. Positions an older busbar kept in the legacy consumer group
    /// are taken over first; retry entries of a source topic that was deleted and created again
    /// belong to the old topic and end.
    async fn init(&mut self) -> Result<()> {
        take_over_legacy(&self.ctx, &self.name, &self.sub.spec.sources).await?;
        self.settle_txn().await?;
        let broker = &self.ctx.broker;
        let mut parts = Vec::new();
        for topic in &self.sub.spec.sources {
            let (id, n) = topic_layout(broker, topic)?;
            forget_old_incarnation(&self.ctx, &self.name, topic, &id).await?;
            for p in 0..n {
                let stored = stored_position(&self.ctx, &self.name, topic, p, &id);
                broker.catch_up_for_read(topic, p as i64, 0).await?;
                let (mut start, mut end) = broker.offsets_of(topic, p as i64)?;
                if let Some(s) = stored.as_ref().filter(|s| s.offset > end) {
                    // Cluster mode: a lease taken over from a broker whose copy was ahead of
                    // this one's. Not clamped back (events delivered again): caught up, or the
                    // start fails and is tried again. Single node: nothing to catch up.
                    broker.catch_up_for_read(topic, p as i64, s.offset).await?;
                    (start, end) = broker.offsets_of(topic, p as i64)?;
                }
                let committed = stored.as_ref().map(|s| s.offset);
                let committed_done = stored.map(|s| s.done).unwrap_or_default();
                let next = committed.unwrap_or(start).clamp(start, end);
                let done: BTreeSet<u64> = committed_done.iter().copied().collect();
                parts.push(Part {
                    key: (topic.clone(), id.clone(), p),
                    topic: topic.clone(),
                    topic_id: id.clone(),
                    partition: p,
                    next,
                    view: None,
                    outstanding: BTreeSet::new(),
                    settled_ahead: done.range(next..).copied().collect(),
                    done,
                    committed,
                    committed_done,
                });
            }
        }
        self.parts = parts;
        self.entries = self.ctx.retries.entries(&self.name);
        let now = self.now();
        let starts: HashMap<(&str, u32), u64> = (self.parts.iter())
            .map(|p| ((p.topic.as_str(), p.partition), p.next))
            .collect();
        // Not read any more (a source removed by an update): nothing earlier is left to read.
        let at = |r: &EventRef| starts.get(&(r.topic.as_str(), r.partition)).copied();
        for (r, e) in &self.entries {
            match e.lane {
                Some(h) => {
                    let lane = (r.topic.clone(), r.partition, h);
                    match self.lanes.get_mut(&lane) {
                        Some(q) => q.push_back(r.clone()),
                        None if at(r).is_some_and(|start| r.offset >= start) => {
                            self.lanes.insert(lane.clone(), VecDeque::from([r.clone()]));
                            self.held.insert(lane);
                        }
                        None => {
                            self.lanes.insert(lane, VecDeque::new());
                            self.timers.insert((e.due_ms.unwrap_or(now), r.clone()));
                        }
                    }
                }
                None => {
                    self.timers.insert((e.due_ms.unwrap_or(now), r.clone()));
                }
            }
        }
        Ok(())
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Schedule(r, e) => {
                let due = e.due_ms.unwrap_or_else(|| self.now());
                self.timers.insert((due, r.clone()));
                self.entries.insert(r, e);
            }
        }
    }

    /// Starts due retries, then reads and admits fresh events, until `concurrency` is in flight.
    async fn fill(&mut self) -> Result<bool> {
        let now = self.now();
        let mut progressed = false;
        while self.inflight.len() < self.limit() {
            let Some((due, _)) = self.timers.first() else {
                break;
            };
            if *due > now {
                break;
            }
            let (_, r) = self.timers.pop_first().expect("checked");
            let Some(entry) = self.entries.get(&r).cloned() else {
                continue;
            };
            let lane = entry.lane.map(|h| (r.topic.clone(), r.partition, h));
            self.launch(
                Job {
                    r,
                    entry: Some(entry),
                    lane,
                },
                None,
            );
            progressed = true;
        }
        if self.backpressure() {
            return Ok(progressed);
        }
        let n = self.parts.len();
        let (mut idle, mut seen) = (0, 0);
        while self.inflight.len() < self.limit()
            && idle < n
            && seen < EVENTS_PER_PASS
            && (self.entries.len() < self.waiting_max() || !self.held.is_empty())
        {
            let i = self.rr % n;
            self.rr += 1;
            match self.next_event(i).await? {
                read::Next::Idle => idle += 1,
                read::Next::Skipped(n) => {
                    idle = 0;
                    seen += n;
                    progressed = true;
                }
                read::Next::Item(Decoded::Undecodable {
                    first,
                    last,
                    timestamp,
                    error,
                }) => {
                    idle = 0;
                    seen += 1;
                    progressed = true;
                    let bad = dlq::Undecodable {
                        topic: self.parts[i].topic.clone(),
                        partition: self.parts[i].partition,
                        first,
                        last,
                        timestamp,
                        error,
                    };
                    if let Err(e) = self.set_aside(&bad).await {
                        // Not dead-lettered: read it again, so no position passes it.
                        let p = &mut self.parts[i];
                        p.view = None;
                        p.next = first;
                        return Err(e);
                    }
                }
                read::Next::Item(Decoded::Event(ev)) => {
                    idle = 0;
                    seen += 1;
                    progressed = true;
                    let offset = ev.offset;
                    if let Err(e) = self.admit(i, ev).await {
                        // Not parked: read it again, so no position passes it.
                        let p = &mut self.parts[i];
                        p.view = None;
                        p.next = offset;
                        return Err(e);
                    }
                }
            }
        }
        self.release_held();
        Ok(progressed)
    }

    async fn admit(&mut self, i: usize, ev: StoredEvent) -> Result<()> {
        let r = EventRef {
            topic: ev.topic.clone(),
            partition: ev.partition,
            offset: ev.offset,
        };
        // Matched already (read.rs hands over only the events the pattern matches).
        if self.parts[i].settled_ahead.remove(&r.offset) || self.entries.contains_key(&r) {
            return Ok(());
        }
        let lane = match self.sub.spec.delivery.ordering {
            // Keyless events share one lane per partition: they keep partition order.
            Ordering::Key => {
                let h = ev.key.as_deref().map_or(KEYLESS_LANE, key_hash);
                Some((r.topic.clone(), r.partition, h))
            }
            Ordering::None => None,
        };
        if let Some(l) = &lane {
            if !self.goes_first(l, &r) && self.lanes.contains_key(l) {
                self.park(r, l.clone()).await?;
                self.count_matched();
                return Ok(());
            }
            self.lanes.entry(l.clone()).or_default();
        }
        self.count_matched();
        self.parts[i].outstanding.insert(r.offset);
        self.launch(
            Job {
                r,
                entry: None,
                lane,
            },
            Some(ev),
        );
        Ok(())
    }

    /// Whether `r`, read for held lane `l`, goes ahead of the key's restored events (and the
    /// lane is no longer held): only when it precedes them. One read past them (the reader passed
    /// them in this pass, before [`Worker::release_held`] ran) queues behind them like any other.
    fn goes_first(&mut self, l: &Lane, r: &EventRef) -> bool {
        let front = self.lanes.get(l).and_then(|q| q.front());
        if !self.held.contains(l) || front.is_some_and(|f| f.offset < r.offset) {
            return false;
        }
        self.held.remove(l);
        true
    }

    fn count_matched(&self) {
        self.counters
            .matched
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    async fn commit(&mut self) {
        if self.sink.is_some() {
            return self.commit_txn().await;
        }
        let rows = self.position_rows();
        // Taken with the positions (nothing settles in between): stored in the same write, the
        // counters never count past what the stored positions say was done.
        let counters = self.counters.snapshot();
        if rows.is_empty() && self.saved_counters.as_ref() == Some(&counters) {
            return;
        }
        let write =
            (self.ctx.positions).put_with_counters(&self.name, rows.clone(), counters.clone());
        if write.await.is_ok() {
            self.committed(rows, counters);
        }
    }

    /// The positions that moved since the last commit.
    fn position_rows(&self) -> Vec<(PartKey, Option<Position>)> {
        self.parts
            .iter()
            .filter_map(|p| {
                let at = p.low();
                let done: Vec<u64> = p.done.range(at..).copied().collect();
                (p.committed != Some(at) || p.committed_done != done).then(|| {
                    let k = (p.topic.clone(), p.partition);
                    let pos = Position {
                        offset: at,
                        topic_id: p.topic_id.clone(),
                        done,
                    };
                    (k, Some(pos))
                })
            })
            .collect()
    }

    /// `rows` and `counters` are stored.
    fn committed(&mut self, rows: Vec<(PartKey, Option<Position>)>, counters: CounterSnapshot) {
        self.saved_counters = Some(counters);
        {
            for ((topic, partition), pos) in rows {
                if let Some(p) = self
                    .parts
                    .iter_mut()
                    .find(|p| p.topic == topic && p.partition == partition)
                {
                    p.committed = pos.as_ref().map(|pos| pos.offset);
                    p.committed_done = pos.map(|pos| pos.done).unwrap_or_default();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_is_stable() {
        assert_eq!(key_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(key_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
