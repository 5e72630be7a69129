//! Replay: re-deliver a time range of a subscription's sources through its pattern, transform and
//! target, as a separate run beside the live worker (which it never delays), at most `rate` events a
//! second. Every replayed event is marked: the CloudEvents extension `busbarreplay` (HTTP header
//! `ce-busbarreplay`) or the Kafka header `busbar-replay` on topic targets, set to the run's name,
//! and it keeps its stable `id`, so receivers can tell replays apart and deduplicate.
//!
//! Decisions: a run walks its range in time slices, every source partition through one slice before
//! the next, so `last_replayed_time` is a true resume point (every event stored before it is
//! replayed, for timestamps in offset order). A slice spans at most about `rate` events (one second
//! of work) and grows over empty stretches. Events go one at a time; a failed event is retried in
//! place with the subscription's policy (a replay is a bulk job; holding it back is acceptable where
//! holding back a live partition is not), and what is exhausted is dead-lettered; a dead letter that
//! cannot be written ends the run `FAILED` (an event neither delivered nor dead-lettered is never
//! reported `COMPLETED`). Undecodable batches are counted and skipped (the live subscription
//! dead-letters them).
//!
//! Runs are durable (`state.rs`): written when they start, every [`CHECKPOINT_INTERVAL`] while they
//! run and when they end, the last [`crate::REPLAYS_KEPT`] per subscription. A run ends `STOPPED`
//! when its subscription is paused or updated (it would deliver with a spec that no longer
//! applies), `INTERRUPTED` when the bus closes or the process dies; either way a new run from its
//! `last_replayed_time` finishes the job. States follow EventBridge: `RUNNING`, `COMPLETED`,
//! `CANCELLED`, `FAILED`, plus those two.

use super::deliver::Outcome;
use super::policy::{verdict, Verdict};
use super::spec::Compiled;
use super::worker::Ctx;
use super::{dlq, request};
use crate::error::{BusError, Result};
use crate::{invalid, Bus, REPLAYS_KEPT};
use busbar_broker::event::{self, Decoded};
use busbar_broker::time::{format_rfc3339, parse_rfc3339};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Most events a second a replay may deliver; the default is 100.
pub const RATE_MAX: u32 = 100_000;
/// How often a running replay writes its progress: a crash repeats at most this much of its work
/// (plus the slice in progress) when resumed from `last_replayed_time`.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// The first slice's width; later ones shrink to about `rate` events or double while empty.
const SLICE_MS: i64 = 60_000;

/// A replay request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaySpec {
    pub name: String,
    /// RFC 3339, inclusive.
    pub from: String,
    /// RFC 3339, exclusive.
    pub to: String,
    #[serde(default = "default_rate")]
    pub rate: u32,
}

fn default_rate() -> u32 {
    100
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunState {
    Running,
    Completed,
    Cancelled,
    Failed,
    /// Its subscription was paused or updated.
    Stopped,
    /// The bus closed or the process died while it ran.
    Interrupted,
}

/// What a run counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    pub matched: u64,
    pub delivered: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub dropped: u64,
    #[serde(default)]
    pub undecodable: u64,
}

/// A run as stored in the retry-state log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub name: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub rate: u32,
    pub started_ms: i64,
    pub state: RunState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every event stored before this time is replayed (the end of the last slice done).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_to_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<i64>,
    #[serde(default)]
    pub counts: RunCounts,
}

/// What `GET .../replays/{name}` shows.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    pub name: String,
    pub state: RunState,
    pub error: Option<String>,
    pub from: String,
    pub to: String,
    pub rate: u32,
    pub started: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    /// Where a new run resumes this one: every event before it is replayed.
    pub last_replayed_time: Option<String>,
    #[serde(flatten)]
    pub counts: RunCounts,
}

/// How a run was asked to end.
type End = Option<(RunState, String)>;

/// A replay run: its record and, while it runs, its task.
pub struct Run {
    sub: String,
    record: Mutex<RunRecord>,
    stop: watch::Sender<End>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Run {
    fn new(sub: &str, record: RunRecord) -> Arc<Run> {
        Arc::new(Run {
            sub: sub.to_string(),
            record: Mutex::new(record),
            stop: watch::channel(None).0,
            task: Mutex::new(None),
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

    /// Is it still running?
    pub fn running(&self) -> bool {
        self.lock().state == RunState::Running
    }

    fn count(&self, f: impl FnOnce(&mut RunCounts)) {
        f(&mut self.lock().counts);
    }

    /// Ends the run (if it runs) as `state` saying `why`, and waits until its end is written.
    pub async fn stop(&self, state: RunState, why: &str) {
        self.stop.send_if_modified(|end| {
            let first = end.is_none();
            if first {
                *end = Some((state, why.to_string()));
            }
            first
        });
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Its progress.
    pub fn view(&self) -> RunView {
        let r = self.record();
        RunView {
            name: r.name,
            state: r.state,
            error: r.error,
            from: format_rfc3339(r.from_ms),
            to: format_rfc3339(r.to_ms),
            rate: r.rate,
            started: format_rfc3339(r.started_ms),
            ended: r.ended_ms.map(format_rfc3339),
            last_replayed_time: r.replayed_to_ms.map(format_rfc3339),
            counts: r.counts,
        }
    }
}

/// Why a run ended `INTERRUPTED`.
pub(crate) fn interrupted() -> String {
    "the server stopped while it ran; start a new run from last_replayed_time".into()
}

/// Ends every running run of `runs` as `state` saying `why`, waiting for each.
pub(crate) async fn stop_all(runs: &BTreeMap<String, Arc<Run>>, state: RunState, why: &str) {
    for r in runs.values() {
        r.stop(state, why).await;
    }
}

impl Bus {
    /// Starts a replay run of subscription `name`, once its record is durable. A finished run of
    /// the same name is replaced; past [`REPLAYS_KEPT`] runs the oldest finished one is forgotten.
    pub async fn start_replay(&self, name: &str, spec: ReplaySpec) -> Result<RunView> {
        let record = self.replay_record(&spec)?;
        let mut subs = self.subs.lock().await;
        let e = subs
            .get_mut(name)
            .ok_or_else(|| BusError::UnknownSubscription(name.into()))?;
        if e.record.paused {
            return Err(invalid("name", format!("subscription {name:?} is paused")));
        }
        if e.replays.get(&spec.name).is_some_and(|r| r.running()) {
            let why = format!("replay {:?} is running", spec.name);
            return Err(invalid("name", why));
        }
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
        let (ctx, sub, stop) = (self.ctx.clone(), e.compiled.clone(), run.stop.subscribe());
        let task = tokio::spawn(execute(ctx, sub, run.clone(), stop));
        *run.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        e.replays.insert(spec.name, run.clone());
        Ok(run.view())
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
        })
    }

    /// The replay runs of subscription `name` (kept across restarts).
    pub async fn replays(&self, name: &str) -> Result<Vec<RunView>> {
        let subs = self.subs.lock().await;
        let e = subs
            .get(name)
            .ok_or_else(|| BusError::UnknownSubscription(name.into()))?;
        Ok(e.replays.values().map(|r| r.view()).collect())
    }

    /// One replay run; `cancel` ends it `CANCELLED` first (if it runs).
    pub async fn replay(&self, name: &str, run: &str, cancel: bool) -> Result<RunView> {
        let subs = self.subs.lock().await;
        let r = subs
            .get(name)
            .ok_or_else(|| BusError::UnknownSubscription(name.into()))?
            .replays
            .get(run)
            .ok_or_else(|| BusError::UnknownReplay(run.into()))?;
        if cancel {
            r.stop(RunState::Cancelled, "cancelled").await;
        }
        Ok(r.view())
    }
}

/// Runs `run` to its end (or until it is stopped), writing its progress every
/// [`CHECKPOINT_INTERVAL`] and how it ended. Writes happen here only, one after the other and
/// never cut short by a stop, so the last one written is the newest.
async fn execute(ctx: Arc<Ctx>, sub: Arc<Compiled>, run: Arc<Run>, mut stop: watch::Receiver<End>) {
    let work = replay_all(&ctx, &sub, &run);
    tokio::pin!(work);
    let mut every = tokio::time::interval(CHECKPOINT_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    let mut saved = run.record();
    let (state, error) = loop {
        tokio::select! {
            r = &mut work => break match r {
                Ok(()) => (RunState::Completed, None),
                Err(e) => (RunState::Failed, Some(e.to_string())),
            },
            end = stop.wait_for(Option::is_some) => break match end.ok().and_then(|e| e.clone()) {
                Some((state, why)) => (state, (state != RunState::Cancelled).then_some(why)),
                None => (RunState::Interrupted, Some(interrupted())),
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
        r.state = state;
        r.error = error;
        r.ended_ms = Some(ctx.broker.config().clock.now_ms());
        if state == RunState::Completed {
            r.replayed_to_ms = Some(r.to_ms);
        }
    }
    // Not written (a failing disk): the stored record shows the last checkpoint, and after a
    // restart the run reads `INTERRUPTED` from there; nothing is lost but repeated work.
    let _ = checkpoint(&ctx, &run).await;
}

/// Writes the run's record as it is now.
async fn checkpoint(ctx: &Ctx, run: &Run) -> Result<()> {
    let r = run.record();
    ctx.retries
        .put_runs(&run.sub, vec![(r.name.clone(), Some(r))])
        .await
}

/// One source partition of a run: the next offset to replay and the end of the run's range.
struct Part {
    topic: String,
    partition: u32,
    next: u64,
    limit: u64,
}

/// Spaces deliveries `1/rate` s apart.
struct Pace {
    every: Duration,
    next: tokio::time::Instant,
}

impl Pace {
    async fn wait(&mut self) {
        tokio::time::sleep_until(self.next).await;
        self.next = self.next.max(tokio::time::Instant::now()) + self.every;
    }
}

async fn replay_all(ctx: &Ctx, sub: &Compiled, run: &Run) -> Result<()> {
    let (from, to, rate) = {
        let r = run.record();
        (r.from_ms, r.to_ms, r.rate.max(1))
    };
    let mut parts = Vec::new();
    for topic in &sub.spec.sources {
        let (_, n) = crate::positions::topic_layout(&ctx.broker, topic)?;
        for partition in 0..n {
            let at = |ts| ctx.broker.offset_for_timestamp(topic, partition as i64, ts);
            let (next, limit) = (at(from)?, at(to)?);
            let topic = topic.clone();
            parts.push(Part {
                topic,
                partition,
                next,
                limit,
            });
        }
    }
    let mut pace = Pace {
        every: Duration::from_secs_f64(1.0 / f64::from(rate)),
        next: tokio::time::Instant::now(),
    };
    let (mut t, mut width) = (from, SLICE_MS);
    while t < to {
        let (end_t, ends) = next_slice(ctx, &parts, t, to, &mut width, u64::from(rate))?;
        for (part, end) in parts.iter_mut().zip(ends) {
            replay_range(ctx, sub, run, part, end, &mut pace).await?;
        }
        t = end_t;
        run.lock().replayed_to_ms = Some(t);
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// The next slice `[t, end)` and where it ends in each partition: at most about `events` offsets
/// in all (unless it is down to 1 ms), widened for the slice after when it is empty.
fn next_slice(
    ctx: &Ctx,
    parts: &[Part],
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

/// Replays offsets `[part.next, end)` of one partition.
async fn replay_range(
    ctx: &Ctx,
    sub: &Compiled,
    run: &Run,
    part: &mut Part,
    end: u64,
    pace: &mut Pace,
) -> Result<()> {
    let (topic, p) = (part.topic.as_str(), part.partition);
    let (from, to) = {
        let r = run.lock();
        (r.from_ms, r.to_ms)
    };
    'read: while part.next < end {
        let data = ctx.broker.read_now(topic, p as i64, part.next, 1 << 20)?;
        let Some(last) = busbar_broker::last_offset(&data) else {
            break;
        };
        for d in event::decode_each(topic, p, &data, part.next)? {
            let ev = match d {
                Decoded::Undecodable { first, .. } if first >= end => break 'read,
                // Set aside by the subscription itself (dead-lettered); counted here.
                Decoded::Undecodable { last, .. } => {
                    run.count(|c| c.undecodable += 1);
                    part.next = last + 1;
                    continue;
                }
                Decoded::Event(ev) if ev.offset >= end => break 'read,
                Decoded::Event(ev) => ev,
            };
            if ev.timestamp >= from && ev.timestamp < to && request::matches(sub, &ev) {
                run.count(|c| c.matched += 1);
                pace.wait().await;
                deliver_one(ctx, sub, run, &ev).await?;
            }
            part.next = ev.offset + 1;
        }
        part.next = part.next.max((last + 1).min(end));
    }
    // Past the data read: what is left of the slice holds no event (or is gone from the log).
    part.next = part.next.max(end);
    Ok(())
}

/// Delivers `ev` (with retries), or dead-letters it; an error when its dead letter cannot be
/// written, which ends the run `FAILED` (an event neither delivered nor dead-lettered).
async fn deliver_one(ctx: &Ctx, sub: &Compiled, run: &Run, ev: &event::StoredEvent) -> Result<()> {
    let policy = &sub.spec.delivery;
    let clock = ctx.broker.config().clock.clone();
    let first = clock.now_ms();
    let mut jitter = crate::policy::Jitter::from_entropy();
    let name = run.record().name;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let outcome = request::attempt(&ctx.broker, &ctx.http, None, sub, ev, Some(&name)).await;
        let (failure, why) = match outcome {
            Outcome::Delivered => {
                run.count(|c| c.delivered += 1);
                return Ok(());
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
                        tokio::time::sleep(Duration::from_millis(delay as u64)).await;
                        continue;
                    }
                }
            }
        };
        let Some(topic) = &sub.spec.dead_letter_topic else {
            run.count(|c| c.dropped += 1);
            return Ok(());
        };
        let letter = dlq::letter(sub, ev, &failure, why, attempts, first, clock.now_ms());
        ctx.broker.publish(topic, vec![letter]).await.map_err(|e| {
            BusError::Storage(format!(
                "dead letter of {}/{}@{} to {topic:?}: {e}",
                ev.topic, ev.partition, ev.offset
            ))
        })?;
        run.count(|c| c.dead_lettered += 1);
        return Ok(());
    }
}
