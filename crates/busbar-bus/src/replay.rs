//! Replay: re-deliver a time range of a subscription's sources through its pattern, transform and
//! target, as a separate run beside the live worker (which it never delays), at most `rate` events a
//! second. Every replayed event is marked: the CloudEvents extension `busbarreplay` (HTTP header
//! `ce-busbarreplay`) or the Kafka header `busbar-replay` on topic targets, set to the run's name,
//! and it keeps its stable `id`, so receivers can tell replays apart and deduplicate.
//!
//! Decisions: a run delivers one event at a time in (topic, partition, offset) order, retrying a
//! failed event in place with the subscription's policy (a replay is a bulk job; holding it back is
//! acceptable where holding back a live partition is not), and dead-letters what is exhausted; a
//! dead letter that cannot be written ends the run `FAILED` (an event neither delivered nor
//! dead-lettered is never reported `COMPLETED`). Undecodable batches are counted and skipped (the
//! live subscription dead-letters them).
//! Runs live in memory: a restart ends them (start a new run from `last_replayed_time`).
//! States follow EventBridge: `RUNNING`, `COMPLETED`, `CANCELLED`, `FAILED`.

use super::deliver::Outcome;
use super::policy::{verdict, Verdict};
use super::spec::Compiled;
use super::stats::Counters;
use super::worker::Ctx;
use super::{dlq, request};
use crate::error::{BusError, Result};
use busbar_broker::event;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Most events a second a replay may deliver; the default is 100.
pub const RATE_MAX: u32 = 100_000;

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

/// A replay run's progress.
pub struct Run {
    pub name: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub rate: u32,
    pub started_ms: i64,
    state: Mutex<(&'static str, Option<String>)>,
    pub counters: Counters,
    last_time: AtomicU64,
    cancel: watch::Sender<bool>,
}

/// What `GET .../replays/{name}` shows.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    pub name: String,
    pub state: &'static str,
    pub error: Option<String>,
    pub from: String,
    pub to: String,
    pub rate: u32,
    pub started: String,
    pub last_replayed_time: Option<String>,
    pub matched: u64,
    pub delivered: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub dropped: u64,
}

impl Run {
    /// A run not started yet.
    pub fn new(name: String, from_ms: i64, to_ms: i64, rate: u32, now: i64) -> Arc<Run> {
        Arc::new(Run {
            name,
            from_ms,
            to_ms,
            rate,
            started_ms: now,
            state: Mutex::new(("RUNNING", None)),
            counters: Counters::default(),
            last_time: AtomicU64::new(0),
            cancel: watch::channel(false).0,
        })
    }

    /// Is it still running?
    pub fn running(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0 == "RUNNING"
    }

    /// Asks the run to stop.
    pub fn cancel(&self) {
        let _ = self.cancel.send(true);
    }

    fn finish(&self, state: &'static str, error: Option<String>) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = (state, error);
    }

    /// Its progress.
    pub fn view(&self) -> RunView {
        let (state, error) = self.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let c = self.counters.snapshot();
        let last = self.last_time.load(Relaxed);
        RunView {
            name: self.name.clone(),
            state,
            error,
            from: busbar_broker::time::format_rfc3339(self.from_ms),
            to: busbar_broker::time::format_rfc3339(self.to_ms),
            rate: self.rate,
            started: busbar_broker::time::format_rfc3339(self.started_ms),
            last_replayed_time: (last > 0)
                .then(|| busbar_broker::time::format_rfc3339(last as i64)),
            matched: c.matched,
            delivered: c.delivered,
            retried: c.retried,
            dead_lettered: c.dead_lettered,
            dropped: c.dropped,
        }
    }
}

/// Runs `run` to its end.
pub async fn execute(ctx: Arc<Ctx>, sub: Arc<Compiled>, run: Arc<Run>) {
    let mut cancel = run.cancel.subscribe();
    let work = replay_all(&ctx, &sub, &run);
    tokio::select! {
        r = work => match r {
            Ok(()) => run.finish("COMPLETED", None),
            Err(e) => run.finish("FAILED", Some(e.to_string())),
        },
        _ = cancel.wait_for(|c| *c) => run.finish("CANCELLED", None),
    }
}

async fn replay_all(ctx: &Ctx, sub: &Compiled, run: &Run) -> Result<()> {
    let pace = Duration::from_secs_f64(1.0 / f64::from(run.rate.max(1)));
    let mut next_slot = tokio::time::Instant::now();
    for topic in &sub.spec.sources {
        let (_, partitions) = crate::positions::topic_layout(&ctx.broker, topic)?;
        for p in 0..partitions {
            let mut offset = ctx
                .broker
                .offset_for_timestamp(topic, p as i64, run.from_ms)?;
            let end = ctx
                .broker
                .offset_for_timestamp(topic, p as i64, run.to_ms)?;
            while offset < end {
                let data = ctx.broker.read_now(topic, p as i64, offset, 1 << 20)?;
                if data.is_empty() {
                    break;
                }
                let events = event::decode_each(topic, p, &data, offset)?;
                offset = busbar_broker::last_offset(&data).map_or(end, |o| o + 1);
                for ev in events {
                    let ev = match ev {
                        event::Decoded::Event(ev) => ev,
                        // Set aside by the subscription itself (dead-lettered); counted here.
                        event::Decoded::Undecodable { first, .. } if first < end => {
                            run.counters.undecodable.fetch_add(1, Relaxed);
                            continue;
                        }
                        event::Decoded::Undecodable { .. } => break,
                    };
                    if ev.offset >= end {
                        break;
                    }
                    if ev.timestamp < run.from_ms
                        || ev.timestamp >= run.to_ms
                        || !request::matches(sub, &ev)
                    {
                        continue;
                    }
                    run.counters.matched.fetch_add(1, Relaxed);
                    tokio::time::sleep_until(next_slot).await;
                    next_slot = next_slot.max(tokio::time::Instant::now()) + pace;
                    deliver_one(ctx, sub, run, &ev).await?;
                    run.last_time.store(ev.timestamp.max(1) as u64, Relaxed);
                }
            }
        }
    }
    Ok(())
}

/// Delivers `ev` (with retries), or dead-letters it; an error when its dead letter cannot be
/// written, which ends the run `FAILED` (an event neither delivered nor dead-lettered).
async fn deliver_one(ctx: &Ctx, sub: &Compiled, run: &Run, ev: &event::StoredEvent) -> Result<()> {
    let policy = &sub.spec.delivery;
    let first = ctx.broker.config().clock.now_ms();
    let mut jitter = crate::policy::Jitter::from_entropy();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let outcome =
            request::attempt(&ctx.broker, &ctx.http, None, sub, ev, Some(&run.name)).await;
        let (failure, why) = match outcome {
            Outcome::Delivered => {
                run.counters
                    .delivered(ctx.broker.config().clock.now_ms() - ev.timestamp);
                return Ok(());
            }
            Outcome::Fatal(f) => (f, "non_retriable"),
            Outcome::Retry {
                failure,
                retry_after_ms,
            } => match verdict(
                policy,
                attempts,
                first,
                ctx.broker.config().clock.now_ms(),
                retry_after_ms,
                &mut jitter,
            ) {
                Verdict::Exhausted(why) => (failure, why),
                Verdict::RetryIn(delay) => {
                    run.counters.retried.fetch_add(1, Relaxed);
                    tokio::time::sleep(Duration::from_millis(delay as u64)).await;
                    continue;
                }
            },
        };
        let Some(topic) = &sub.spec.dead_letter_topic else {
            run.counters.dropped.fetch_add(1, Relaxed);
            return Ok(());
        };
        let letter = dlq::letter(
            sub,
            ev,
            &failure,
            why,
            attempts,
            first,
            ctx.broker.config().clock.now_ms(),
        );
        ctx.broker.publish(topic, vec![letter]).await.map_err(|e| {
            BusError::Storage(format!(
                "dead letter of {}/{}@{} to {topic:?}: {e}",
                ev.topic, ev.partition, ev.offset
            ))
        })?;
        run.counters.dead_lettered.fetch_add(1, Relaxed);
        return Ok(());
    }
}
