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
//!
//! Here: runs started, listed, cancelled, stopped and (cluster mode) taken over; the run's task
//! itself is in `replay/exec.rs`.

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

/// Most events a second a replay may deliver; the default is 100.
pub const RATE_MAX: u32 = 100_000;
/// How often a running replay writes its progress: a crash repeats at most this much of its work
/// (plus the slice in progress) when resumed from `last_replayed_time`.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

mod exec;

pub use crate::runs::{Cursor, ReplaySpec, RunCounts, RunRecord, RunState, RunView};
use exec::{execute, fits};

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
