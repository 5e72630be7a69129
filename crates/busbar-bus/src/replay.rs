//! Replay: re-deliver a time range of a subscription's sources through its pattern, transform and
//! target, as a separate run beside the live worker (which it never delays), at most `rate` events a
//! second. Every replayed event is marked: the CloudEvents extension `busbarreplay` (HTTP header
//! `ce-busbarreplay`) or the Kafka header `busbar-replay` on topic targets, set to the run's name,
//! and it keeps its stable `id`, so receivers can tell replays apart and deduplicate.
//!
//! Decisions: a run walks each source partition in offset order, from the first event stamped at
//! or after `from` to the partition's end when the run started (what it covers), and delivers the
//! events stamped inside `[from, to)`: producers may set any CreateTime, so an event inside the
//! range can be stored after one stamped past `to`, and the run reads on to the end for it (the
//! rate limits deliveries, not reads). It walks the stretch up to the first event stamped at or
//! after `to` in time slices, every source partition through one slice before the next, so
//! `last_replayed_time` is a resume point when timestamps are in offset order (every event
//! stored before it is replayed); it does not move during the stretch after. A slice spans at
//! most about `rate` events (one second of work) and grows over empty stretches. Events go one at
//! a time; a failed event is retried in place with the subscription's policy (a replay is a bulk
//! job; holding it back is acceptable where holding back a live partition is not), and what is
//! exhausted is dead-lettered; a dead letter that cannot be written ends the run `FAILED` (an
//! event neither delivered nor dead-lettered is never reported `COMPLETED`). Undecodable batches
//! are counted and skipped (the live subscription dead-letters them).
//!
//! Runs are durable (`state.rs`): written when they start, every [`CHECKPOINT_INTERVAL`] while they
//! run and when they end, the last [`crate::REPLAYS_KEPT`] per subscription, with the run's exact
//! place in each partition ([`Cursor`]: offsets, whatever the timestamps). A run ends `STOPPED`
//! when its subscription is paused or updated (it would deliver with a spec that no longer
//! applies), `INTERRUPTED` when the bus closes or the process dies. A stop lets the event being
//! delivered finish (at most `delivery.timeout_ms` per attempt; a wait between retries is cut
//! short and the event stays ahead), so the place written last is exact: starting the run again
//! under its name with the same `from` and `to` (also after `FAILED`: the event whose letter
//! failed is still ahead) goes on from there and delivers every event of the
//! range exactly once in all (after a crash, from the last checkpoint: what was delivered since is
//! delivered again, at-least-once). Its counts go on too. A new run from `last_replayed_time`
//! also finishes the job when timestamps are in offset order. States follow EventBridge:
//! `RUNNING`, `COMPLETED`, `CANCELLED`, `FAILED`, plus those two.

use super::creator::Gate;
use super::deliver::Outcome;
use super::policy::{verdict, Verdict};
use super::spec::Compiled;
use super::worker::Ctx;
use super::{dlq, request};
use crate::ask::Ask;
use crate::error::{BusError, Result};
use crate::runrecord::RUN_RECORD_BYTES_MAX;
use crate::worker::{read_pinned, READ_BYTES};
use crate::{invalid, Bus, REPLAYS_KEPT};
use busbar_broker::event::{self, Decoded};
use busbar_broker::time::parse_rfc3339;
use busbar_broker::BrokerError;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How often a run waiting for its creator's READ looks again.
const GATE_WAIT: Duration = Duration::from_millis(200);
/// Most events a second a replay may deliver; the default is 100.
pub const RATE_MAX: u32 = 100_000;
/// How often a running replay writes its progress: a crash repeats at most this much of its work
/// (plus the slice in progress) when resumed from `last_replayed_time`.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// The first slice's width; later ones shrink to about `rate` events or double while empty.
const SLICE_MS: i64 = 60_000;

pub use crate::runs::{Cursor, ReplaySpec, RunCounts, RunRecord, RunState, RunView};

/// How a run was asked to end.
type End = Option<(RunState, String)>;

/// A replay run: its record and, while it runs, whether its task has ended.
pub struct Run {
    sub: String,
    record: Mutex<RunRecord>,
    stop: watch::Sender<End>,
    /// `true` once its task ended and wrote its end (or when it has none); every caller of
    /// [`Run::stopped`] waits for it, not only the first.
    done: watch::Sender<bool>,
    /// Whether the run's own last write (its end) was stored.
    end_written: std::sync::atomic::AtomicBool,
}

/// Marks its run done when dropped: when its task ends, also by a panic.
struct DoneOnDrop(Arc<Run>);

impl Drop for DoneOnDrop {
    fn drop(&mut self) {
        self.0.done.send_replace(true);
    }
}

impl Run {
    fn new(sub: &str, record: RunRecord) -> Arc<Run> {
        Arc::new(Run {
            sub: sub.to_string(),
            record: Mutex::new(record),
            stop: watch::channel(None).0,
            done: watch::channel(true).0,
            // Nothing to write for a run that is not launched here.
            end_written: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// The stored runs of `sub`; one that was running when the bus last stopped is `INTERRUPTED`.
    pub(crate) fn restore(ctx: &Ctx, sub: &str) -> BTreeMap<String, Arc<Run>> {
        let restored = ctx.retries.runs(sub).into_iter().map(|mut r| {
            if r.state == RunState::Running {
                r.state = RunState::Interrupted;
                r.error = Some(interrupted());
            }
            (r.name.clone(), Run::new(sub, r))
        });
        restored.collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RunRecord> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of its record.
    pub fn record(&self) -> RunRecord {
        self.lock().clone()
    }

    /// Is it still running? (A run handed over reads `RUNNING` but has ended here.)
    pub fn running(&self) -> bool {
        self.lock().state == RunState::Running && !*self.done.borrow()
    }

    fn count(&self, f: impl FnOnce(&mut RunCounts)) {
        f(&mut self.lock().counts);
    }

    /// Ends the run (if it runs) as `state` saying `why`, and waits until its end is written.
    pub async fn stop(&self, state: RunState, why: &str) {
        self.signal(state, why);
        self.stopped().await;
    }

    /// Asks the run to end as `state` saying `why` (the first ask counts).
    fn signal(&self, state: RunState, why: &str) {
        self.stop.send_if_modified(|end| {
            let first = end.is_none();
            if first {
                *end = Some((state, why.to_string()));
            }
            first
        });
    }

    /// Waits until the run has ended and its end is written.
    async fn stopped(&self) {
        let _ = self.done.subscribe().wait_for(|done| *done).await;
    }

    /// Its progress.
    pub fn view(&self) -> RunView {
        self.record().view()
    }
}

/// Why a run ended `INTERRUPTED`.
pub(crate) fn interrupted() -> String {
    "the server stopped while it ran; start a new run from last_replayed_time".into()
}

/// Ends every running run of `runs` as `state` saying `why`, waiting for each.
pub(crate) async fn stop_all(runs: &BTreeMap<String, Arc<Run>>, state: RunState, why: &str) {
    // All asked first, so they end together (each may be waiting for a delivery in flight).
    for r in runs.values() {
        r.signal(state, why);
    }
    for r in runs.values() {
        r.stopped().await;
    }
}

/// Cluster mode: whether the run's broker lost its subscription's lease. The run then ends here
/// handed over (stored as running; the next runner goes on with it) without waiting for the
/// tick to stop it, so two brokers never replay the same stretch for long.
fn handed_over(ctx: &Ctx, run: &Run) -> bool {
    if ctx.retries.may_write(&run.sub) {
        return false;
    }
    run.signal(RunState::Running, "handed over");
    // Given up for good, as the worker's watchdog does: a late renewal must not leave this
    // broker holding the lease with the run ended (the next take goes on with it).
    ctx.retries.give_up(&run.sub);
    true
}

impl Bus {
    /// Starts a replay run of subscription `name`, once its record is durable. A stopped or
    /// interrupted run of the same name and range goes on where it stopped; another run of the
    /// same name is replaced; past [`REPLAYS_KEPT`] runs the oldest finished one is forgotten.
    /// In cluster mode the run is the subscription's runner's: asked of it when that is another
    /// broker (`ask.rs`).
    pub async fn start_replay(&self, name: &str, spec: ReplaySpec) -> Result<RunView> {
        if self.shared().is_none() || self.runs_here(name).await {
            return Ok(self.start_replay_here(name, spec).await?.view());
        }
        // The record as the cluster has it now (a resume on another broker a moment ago counts).
        self.sync().await?;
        self.replay_record(&spec)?;
        {
            let subs = self.subs.lock().await;
            let e = subs
                .get(name)
                .ok_or_else(|| BusError::UnknownSubscription(name.into()))?;
            if e.record.paused {
                return Err(invalid("name", format!("subscription {name:?} is paused")));
            }
        }
        let ask = Ask::Replay {
            name: spec.name,
            from: spec.from,
            to: spec.to,
            rate: spec.rate,
        };
        Ok(self.ask_run(name, &ask).await?.view())
    }

    /// [`Bus::start_replay`] on the broker that runs the subscription: its record.
    pub(crate) async fn start_replay_here(
        &self,
        name: &str,
        spec: ReplaySpec,
    ) -> Result<RunRecord> {
        let mut record = self.replay_record(&spec)?;
        let mut subs = self.subs.lock().await;
        let e = subs
            .get_mut(name)
            .ok_or_else(|| BusError::UnknownSubscription(name.into()))?;
        if e.record.paused {
            return Err(invalid("name", format!("subscription {name:?} is paused")));
        }
        if self.shared().is_some() && e.handle.is_none() {
            return Err(crate::ask::moved(name));
        }
        if e.replays.get(&spec.name).is_some_and(|r| r.running()) {
            let why = format!("replay {:?} is running", spec.name);
            return Err(invalid("name", why));
        }
        record.spec_id = Some(crate::runrecord::spec_id(&e.compiled.spec));
        fits(&self.ctx, &e.compiled, &record)?;
        let record = match e.replays.get(&spec.name).map(|r| r.record()) {
            Some(old) if old.resumed_by(&record) => RunRecord {
                state: RunState::Running,
                error: None,
                ended_ms: None,
                rate: record.rate,
                ..old
            },
            _ => record,
        };
        // Stored with the run from its first write: a broker taking over checks it.
        let sub_version = self.shared().map(|_| e.version);
        let record = RunRecord {
            sub_version,
            ..record
        };
        let mut kept: Vec<_> = (e.replays.values())
            .filter(|r| r.record().name != spec.name)
            .map(|r| r.record())
            .collect();
        let mut rows = vec![(spec.name.clone(), Some(record.clone()))];
        kept.sort_by_key(|r| (r.state == RunState::Running, r.started_ms));
        let excess = (kept.len() + 1).saturating_sub(REPLAYS_KEPT);
        for old in &kept[..excess] {
            if old.state == RunState::Running {
                let why = format!("{REPLAYS_KEPT} replays are running");
                return Err(invalid("name", why));
            }
            rows.push((old.name.clone(), None));
        }
        self.ctx.retries.put_runs(name, rows.clone()).await?;
        for (gone, _) in &rows[1..] {
            e.replays.remove(gone);
        }
        let run = Run::new(name, record);
        self.launch(e, run.clone());
        Ok(run.record())
    }

    /// Runs `run` of subscription `e`.
    fn launch(&self, e: &mut crate::Entry, run: Arc<Run>) {
        let (ctx, sub, stop) = (self.ctx.clone(), e.compiled.clone(), run.stop.subscribe());
        let gate = e.record.gate();
        run.done.send_replace(false);
        (run.end_written).store(false, std::sync::atomic::Ordering::SeqCst);
        let guard = DoneOnDrop(run.clone());
        tokio::spawn(async move {
            let _done = guard;
            execute(ctx, sub, _done.0.clone(), stop, gate).await;
        });
        e.replays.insert(run.record().name, run);
    }

    /// Cluster mode, on the broker that takes subscription `e`'s lease (its state loaded): the
    /// stored runs, those that were running go on from their last checkpoint (what their
    /// broker delivered since is delivered again: at least once). A run of an older spec (the
    /// subscription was changed before its broker could stop it) ends `STOPPED` instead.
    pub(crate) async fn take_over_runs(&self, e: &mut crate::Entry) {
        let name = e.record.spec.name.clone();
        e.replays = BTreeMap::new();
        let spec_id = Some(crate::runrecord::spec_id(&e.compiled.spec));
        for mut r in self.ctx.retries.runs(&name) {
            if r.state != RunState::Running {
                e.replays.insert(r.name.clone(), Run::new(&name, r));
                continue;
            }
            if r.spec_id == spec_id && r.sub_version == Some(e.version) && !e.record.paused {
                let run = Run::new(&name, r);
                self.launch(e, run);
                continue;
            }
            r.state = RunState::Stopped;
            r.error =
                Some("the subscription was changed or paused while its broker stopped".into());
            r.ended_ms = Some(self.now());
            // Not written: it reads STOPPED here, and the next broker decides again.
            let _ = (self.ctx.retries)
                .put_runs(&name, vec![(r.name.clone(), Some(r.clone()))])
                .await;
            e.replays.insert(r.name.clone(), Run::new(&name, r));
        }
    }

    /// The record of a new run of `spec`, checked.
    fn replay_record(&self, spec: &ReplaySpec) -> Result<RunRecord> {
        crate::spec::check_name("name", &spec.name).map_err(|_| {
            invalid(
                "name",
                "replay names are 1 to 200 of letters, digits, '.', '_', '-'",
            )
        })?;
        let parse = |field: &str, v: &str| {
            parse_rfc3339(v).ok_or_else(|| invalid(field, format!("{v:?} is not an RFC 3339 time")))
        };
        let (from_ms, to_ms) = (parse("from", &spec.from)?, parse("to", &spec.to)?);
        if to_ms <= from_ms {
            return Err(invalid("to", "must be after `from`"));
        }
        // A run covers what is stored when it starts (each partition's end is fixed then); a
        // later `to` would be claimed as replayed (`last_replayed_time`) without being read.
        if to_ms > self.now() {
            return Err(invalid(
                "to",
                "is in the future: a replay covers events already stored (give a time up to now)",
            ));
        }
        if spec.rate == 0 || spec.rate > RATE_MAX {
            let why = format!("{} is outside 1..={RATE_MAX}", spec.rate);
            return Err(invalid("rate", why));
        }
        Ok(RunRecord {
            name: spec.name.clone(),
            from_ms,
            to_ms,
            rate: spec.rate,
            started_ms: self.now(),
            state: RunState::Running,
            error: None,
            replayed_to_ms: None,
            ended_ms: None,
            counts: RunCounts::default(),
            cursors: Vec::new(),
            spec_id: None,
            sub_version: None,
        })
    }

    /// The replay runs of subscription `name` (kept across restarts). In cluster mode, on a
    /// broker that does not run it, as last stored (a running run's counts at its last
    /// checkpoint).
    pub async fn replays(&self, name: &str) -> Result<Vec<RunView>> {
        if let Some(stored) = self.stored_runs(name).await? {
            return Ok(stored.into_iter().map(RunRecord::view).collect());
        }
        let subs = self.subs.lock().await;
        let e = subs
            .get(name)
            .ok_or_else(|| BusError::UnknownSubscription(name.into()))?;
        Ok(e.replays.values().map(|r| r.view()).collect())
    }

    /// Cluster mode, when another broker runs `name` (or none does): its runs as stored.
    async fn stored_runs(&self, name: &str) -> Result<Option<Vec<RunRecord>>> {
        if self.shared().is_none() || self.runs_here(name).await {
            return Ok(None);
        }
        self.sync_for(name).await?;
        if !self.subs.lock().await.contains_key(name) {
            return Err(BusError::UnknownSubscription(name.into()));
        }
        self.refresh_remote(name).await?;
        Ok(Some(self.ctx.retries.runs(name)))
    }

    /// One replay run; `cancel` ends it `CANCELLED` first (if it runs). In cluster mode a cancel
    /// is asked of the broker that runs the subscription.
    pub async fn replay(&self, name: &str, run: &str, cancel: bool) -> Result<RunView> {
        if let Some(stored) = self.stored_runs(name).await? {
            let r = (stored.into_iter().find(|r| r.name == run))
                .ok_or_else(|| BusError::UnknownReplay(run.into()))?;
            if cancel && r.state == RunState::Running {
                let ask = Ask::Cancel { run: run.into() };
                return Ok(self.ask_run(name, &ask).await?.view());
            }
            return Ok(r.view());
        }
        Ok(self.replay_here(name, run, cancel).await?.view())
    }

    /// [`Bus::replay`] on the broker running the subscription: the run's record.
    pub(crate) async fn replay_here(
        &self,
        name: &str,
        run: &str,
        cancel: bool,
    ) -> Result<RunRecord> {
        let r = {
            let subs = self.subs.lock().await;
            subs.get(name)
                .ok_or_else(|| BusError::UnknownSubscription(name.into()))?
                .replays
                .get(run)
                .ok_or_else(|| BusError::UnknownReplay(run.into()))?
                .clone()
        };
        if cancel {
            // Not under the bus's lock: the run may be waiting for a delivery in flight.
            r.stop(RunState::Cancelled, "cancelled").await;
            self.store_cancel(name, &r).await?;
        }
        Ok(r.record())
    }

    /// Cluster mode: a cancelled run whose own last write failed is written again (a run stored
    /// as running would go on on the next runner), under the bus's lock and only while it is
    /// still the run of its name here (not replaced by a new run meanwhile).
    async fn store_cancel(&self, name: &str, r: &Arc<Run>) -> Result<()> {
        use std::sync::atomic::Ordering;
        let record = r.record();
        if self.shared().is_none()
            || record.state != RunState::Cancelled
            || r.end_written.load(Ordering::SeqCst)
        {
            return Ok(());
        }
        let subs = self.subs.lock().await;
        let same = (subs.get(name))
            .and_then(|e| e.replays.get(&record.name))
            .is_some_and(|now| Arc::ptr_eq(now, r));
        if same {
            let row = vec![(record.name.clone(), Some(record))];
            self.ctx.retries.put_runs(name, row).await?;
            r.end_written.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// Runs `run` to its end (or until it is stopped), writing its progress every
/// [`CHECKPOINT_INTERVAL`] and how it ended. Writes happen here only, one after the other and
/// never cut short by a stop, so the last one written is the newest. A stop is seen by the work
/// itself between events, so what it delivered is in the record before the last write.
async fn execute(
    ctx: Arc<Ctx>,
    sub: Arc<Compiled>,
    run: Arc<Run>,
    stop: watch::Receiver<End>,
    gate: Gate,
) {
    let mut seen = stop.clone();
    let work = replay_all(&ctx, &sub, &run, &mut seen, gate);
    tokio::pin!(work);
    let mut every = tokio::time::interval(CHECKPOINT_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    let mut saved = run.record();
    let (state, error) = loop {
        tokio::select! {
            r = &mut work => break match r {
                Ok(true) => (RunState::Completed, None),
                Ok(false) => end_asked(&stop),
                Err(e) => (RunState::Failed, Some(e.to_string())),
            },
            _ = every.tick() => {}
        }
        let now = run.record();
        if now != saved {
            // A failed checkpoint costs repeated work after a crash, not the run.
            let _ = checkpoint(&ctx, &run).await;
            saved = now;
        }
    };
    {
        let mut r = run.lock();
        // Handed over (cluster mode, this broker closing): stored as running, from its place.
        if state != RunState::Running {
            r.state = state;
            r.error = error;
            r.ended_ms = Some(ctx.broker.config().clock.now_ms());
        }
        if state == RunState::Completed {
            r.replayed_to_ms = Some(r.to_ms);
        }
    }
    // Not written (a failing disk): the stored record shows the last checkpoint, and after a
    // restart the run reads `INTERRUPTED` from there; nothing is lost but repeated work. The
    // run's error says so while this process lives.
    let written = checkpoint(&ctx, &run).await;
    (run.end_written).store(written.is_ok(), std::sync::atomic::Ordering::SeqCst);
    if let Err(e) = written {
        let mut r = run.lock();
        let why = format!(
            "its end could not be written ({e}); after a restart it shows its last checkpoint"
        );
        r.error = Some(match r.error.take() {
            Some(before) => format!("{before}; {why}"),
            None => why,
        });
    }
}

/// Refuses a run whose record could outgrow one internal row ([`RUN_RECORD_BYTES_MAX`]): one
/// cursor per source partition, each at most its partition's end.
fn fits(ctx: &Ctx, sub: &Compiled, record: &RunRecord) -> Result<()> {
    let mut r = record.clone();
    for topic in &sub.spec.sources {
        let Ok((id, n)) = crate::positions::topic_layout(&ctx.broker, topic) else {
            continue;
        };
        for partition in 0..n {
            let end =
                (ctx.broker.offsets_of(topic, partition as i64)).map_or(u64::MAX, |(_, end)| end);
            let (topic, topic_id) = (topic.clone(), id.clone());
            r.cursors.push(Cursor {
                topic,
                topic_id,
                partition,
                next: end,
                limit: end,
            });
        }
    }
    r.counts = RunCounts {
        matched: u64::MAX,
        delivered: u64::MAX,
        retried: u64::MAX,
        dead_lettered: u64::MAX,
        dropped: u64::MAX,
        undecodable: u64::MAX,
        expired: u64::MAX,
    };
    r.error = Some("x".repeat(1024));
    r.replayed_to_ms = Some(i64::MAX);
    r.ended_ms = Some(i64::MAX);
    let len = crate::runrecord::encoded_len(&r);
    if len > RUN_RECORD_BYTES_MAX {
        let why = format!(
            "the run's record ({len} bytes: one place per source partition) would exceed \
             {RUN_RECORD_BYTES_MAX} bytes; replay fewer or shorter-named source topics"
        );
        return Err(invalid("name", why));
    }
    Ok(())
}

/// How the run was asked to end: as its stop says, or `INTERRUPTED` when its bus is gone.
fn end_asked(stop: &watch::Receiver<End>) -> (RunState, Option<String>) {
    let end = stop.borrow().clone();
    match end {
        Some((state, why)) => (state, (state != RunState::Cancelled).then_some(why)),
        None => (RunState::Interrupted, Some(interrupted())),
    }
}

/// Whether the run was asked to end (or its bus is gone).
fn ended(stop: &watch::Receiver<End>) -> bool {
    stop.borrow().is_some() || stop.has_changed().is_err()
}

/// Writes the run's record as it is now.
async fn checkpoint(ctx: &Ctx, run: &Run) -> Result<()> {
    let r = run.record();
    ctx.retries
        .put_runs(&run.sub, vec![(r.name.clone(), Some(r))])
        .await
}

/// Spaces deliveries `1/rate` s apart.
struct Pace {
    every: Duration,
    next: tokio::time::Instant,
    /// The subscription's creator must be allowed to READ its sources: the run waits while it may not.
    gate: Gate,
}

impl Pace {
    async fn wait(&mut self) {
        tokio::time::sleep_until(self.next).await;
        self.next = self.next.max(tokio::time::Instant::now()) + self.every;
    }
}

/// The run's place in each source partition: as stored for the topic incarnation of now, else
/// from the first event at or after `from` to the partition's end now.
fn cursors(ctx: &Ctx, sub: &Compiled, run: &Run) -> Result<Vec<Cursor>> {
    let r = run.record();
    let mut out = Vec::new();
    for topic in &sub.spec.sources {
        let (id, n) = crate::positions::topic_layout(&ctx.broker, topic)?;
        for partition in 0..n {
            let kept = (r.cursors.iter())
                .find(|c| c.topic == *topic && c.topic_id == id && c.partition == partition);
            let c = match kept {
                Some(c) => {
                    let mut c = c.clone();
                    let start = ctx.broker.offsets_of(topic, partition as i64)?.0;
                    expire(run, &mut c.next, start.min(c.limit));
                    c
                }
                None => Cursor {
                    topic: topic.clone(),
                    topic_id: id.clone(),
                    partition,
                    next: ctx
                        .broker
                        .offset_for_timestamp(topic, partition as i64, r.from_ms)?,
                    limit: ctx.broker.offsets_of(topic, partition as i64)?.1,
                },
            };
            out.push(c);
        }
    }
    Ok(out)
}

/// Replays the run's range; `false` when it was stopped first.
async fn replay_all(
    ctx: &Ctx,
    sub: &Compiled,
    run: &Run,
    stop: &mut watch::Receiver<End>,
    gate: Gate,
) -> Result<bool> {
    let (from, to, rate, resumed) = {
        let r = run.record();
        (r.from_ms, r.to_ms, r.rate.max(1), r.replayed_to_ms)
    };
    let mut parts = cursors(ctx, sub, run)?;
    run.lock().cursors = parts.clone();
    let mut pace = Pace {
        every: Duration::from_secs_f64(1.0 / f64::from(rate)),
        next: tokio::time::Instant::now(),
        gate,
    };
    let (mut t, mut width) = (resumed.unwrap_or(from).clamp(from, to), SLICE_MS);
    while t < to {
        let (end_t, ends) = next_slice(ctx, &parts, t, to, &mut width, u64::from(rate))?;
        for (i, end) in ends.into_iter().enumerate() {
            if !replay_range(
                ctx,
                sub,
                run,
                (parts.as_mut_slice(), i),
                end,
                &mut pace,
                stop,
            )
            .await?
            {
                return Ok(false);
            }
        }
        t = end_t;
        if t < to {
            run.lock().replayed_to_ms = Some(t);
        }
        tokio::task::yield_now().await;
    }
    // Past the first event stamped at or after `to`, events stamped inside the range may still
    // be stored (a producer sets any CreateTime): read on to what the run covers.
    for i in 0..parts.len() {
        let limit = parts[i].limit;
        if !replay_range(
            ctx,
            sub,
            run,
            (parts.as_mut_slice(), i),
            limit,
            &mut pace,
            stop,
        )
        .await?
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The next slice `[t, end)` and where it ends in each partition: at most about `events` offsets
/// in all (unless it is down to 1 ms), widened for the slice after when it is empty.
fn next_slice(
    ctx: &Ctx,
    parts: &[Cursor],
    t: i64,
    to: i64,
    width: &mut i64,
    events: u64,
) -> Result<(i64, Vec<u64>)> {
    loop {
        let end_t = t.saturating_add(*width).min(to);
        let mut ends = Vec::with_capacity(parts.len());
        for p in parts {
            let at = (ctx.broker).offset_for_timestamp(&p.topic, p.partition as i64, end_t)?;
            ends.push(at.min(p.limit).max(p.next));
        }
        let n: u64 = parts.iter().zip(&ends).map(|(p, e)| e - p.next).sum();
        if n > events && *width > 1 {
            *width /= 2;
            continue;
        }
        if n == 0 {
            *width = width.saturating_mul(2);
        }
        return Ok((end_t, ends));
    }
}

/// Replays offsets `[next, end)` of cursor `i`, moving it (and the run's record) past each event
/// done; `false` when the run was stopped first (the cursor is then at the first event not done).
async fn replay_range(
    ctx: &Ctx,
    sub: &Compiled,
    run: &Run,
    (parts, i): (&mut [Cursor], usize),
    end: u64,
    pace: &mut Pace,
    stop: &mut watch::Receiver<End>,
) -> Result<bool> {
    let part = &mut parts[i];
    let key = (part.topic.clone(), part.topic_id.clone(), part.partition);
    let (from, to) = {
        let r = run.lock();
        (r.from_ms, r.to_ms)
    };
    let decoder = ctx.shared.decoder();
    let advance = |part: &mut Cursor, next: u64| {
        part.next = part.next.max(next);
        if let Some(c) = run.lock().cursors.get_mut(i) {
            c.next = part.next;
        }
    };
    'read: while part.next < end {
        if ended(stop) || handed_over(ctx, run) {
            return Ok(false);
        }
        let start = ctx.broker.offsets_of(&key.0, key.2 as i64)?.0;
        if part.next < start {
            let mut next = part.next;
            expire(run, &mut next, start.min(end));
            advance(part, next);
            continue;
        }
        let data = match read_pinned(&ctx.broker, &key, part.next, READ_BYTES).await {
            Ok(data) => data,
            // Deleted since the check above.
            Err(BrokerError::OffsetOutOfRange { start, .. }) if start > part.next => {
                let mut next = part.next;
                expire(run, &mut next, start.min(end));
                advance(part, next);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let Some(last) = busbar_broker::last_offset(&data) else {
            // Nothing readable below the end: an open transaction holds the last stable offset
            // here. Its events are not passed over: the run waits for it to end.
            if ctx.broker.last_stable_offset(&key.0, key.2 as i64)? <= part.next {
                tokio::select! {
                    _ = tokio::time::sleep(TXN_WAIT) => {}
                    _ = stop.wait_for(Option::is_some) => return Ok(false),
                }
                continue;
            }
            break;
        };
        let (topic, p) = (key.0.as_str(), key.2);
        for d in ctx.broker.decode_committed(topic, p, &data, part.next)? {
            let ev = match d {
                Decoded::Undecodable { first, .. } if first >= end => break 'read,
                // Set aside by the subscription itself (dead-lettered); counted here.
                Decoded::Undecodable { last, .. } => {
                    run.count(|c| c.undecodable += 1);
                    advance(part, last + 1);
                    continue;
                }
                Decoded::Event(ev) if ev.offset >= end => break 'read,
                Decoded::Event(ev) => ev,
            };
            if ev.timestamp >= from
                && ev.timestamp < to
                && request::matches(sub, &ev, decoder.as_ref())
            {
                if ended(stop) || handed_over(ctx, run) {
                    return Ok(false);
                }
                // Runs as the subscription's creator (`creator.rs`): waits while it may not read
                // the sources or write the target or dead-letter topic.
                while pace.gate.denied(&ctx.broker, &sub.spec).is_some() {
                    if handed_over(ctx, run) {
                        return Ok(false);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(GATE_WAIT) => {}
                        _ = stop.wait_for(Option::is_some) => return Ok(false),
                    }
                }
                tokio::select! {
                    _ = pace.wait() => {}
                    _ = stop.wait_for(Option::is_some) => return Ok(false),
                }
                if handed_over(ctx, run) {
                    return Ok(false);
                }
                if !deliver_one(ctx, sub, run, &ev, stop).await? {
                    return Ok(false);
                }
                run.count(|c| c.matched += 1);
            }
            advance(part, ev.offset + 1);
        }
        advance(part, (last + 1).min(end));
    }
    // Past the data read: what is left of the stretch holds no event (or is gone from the log).
    advance(part, end);
    Ok(true)
}

/// How often a replay held at an open transaction looks again.
const TXN_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Moves a place `next` below the log's start up to `start`, counting the events it skips as
/// `expired` (gone before the run reached them).
fn expire(run: &Run, next: &mut u64, start: u64) {
    if *next < start {
        let gone = start - *next;
        run.count(|c| c.expired += gone);
        *next = start;
    }
}

/// Delivers `ev` (with retries), or dead-letters it; an error when its dead letter cannot be
/// written, which ends the run `FAILED` (an event neither delivered nor dead-lettered); `false`
/// when the run is stopped while it waits to try again (the event is not done).
async fn deliver_one(
    ctx: &Ctx,
    sub: &Compiled,
    run: &Run,
    ev: &event::StoredEvent,
    stop: &mut watch::Receiver<End>,
) -> Result<bool> {
    let policy = &sub.spec.delivery;
    let clock = ctx.broker.config().clock.clone();
    let first = clock.now_ms();
    let mut jitter = crate::policy::Jitter::from_entropy();
    let name = run.record().name;
    let decoder = ctx.shared.decoder();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let via = request::Via {
            broker: &ctx.broker,
            http: &ctx.http,
            sink: None,
            decoder: decoder.as_ref(),
            attempt: attempts,
        };
        let outcome = request::attempt(via, sub, ev, Some(&name)).await;
        let (failure, why) = match outcome {
            Outcome::Delivered => {
                run.count(|c| c.delivered += 1);
                return Ok(true);
            }
            Outcome::Fatal(f) => (f, "non_retriable"),
            Outcome::Retry {
                failure,
                retry_after_ms,
            } => {
                let now = clock.now_ms();
                match verdict(policy, attempts, first, now, retry_after_ms, &mut jitter) {
                    Verdict::Exhausted(why) => (failure, why),
                    Verdict::RetryIn(delay) => {
                        run.count(|c| c.retried += 1);
                        let wait = tokio::time::sleep(Duration::from_millis(delay as u64));
                        tokio::select! {
                            _ = wait => {}
                            _ = stop.wait_for(Option::is_some) => return Ok(false),
                        }
                        if handed_over(ctx, run) {
                            return Ok(false);
                        }
                        continue;
                    }
                }
            }
        };
        let Some(topic) = &sub.spec.dead_letter_topic else {
            run.count(|c| c.dropped += 1);
            return Ok(true);
        };
        let letter = dlq::letter(sub, ev, &failure, why, attempts, first, clock.now_ms());
        let mut span = dlq::span(sub, ev, &failure, why, topic);
        ctx.broker.publish(topic, vec![letter]).await.map_err(|e| {
            span.fail(e.to_string());
            BusError::Storage(format!(
                "dead letter of {}/{}@{} to {topic:?}: {e}",
                ev.topic, ev.partition, ev.offset
            ))
        })?;
        run.count(|c| c.dead_lettered += 1);
        return Ok(true);
    }
}
