//! How a worker settles events: the outcome of an attempt (delivered, retried later, dead-lettered),
//! the dead letter written (or, when the dead-letter topic refuses it, written again later without
//! delivering the event again), undecodable batches set aside, and a settled event's retry entry,
//! position and key lane released. A letter is written as the subscription's creator: while the
//! creator may not run the subscription (`creator.rs`), it is kept to be written later, never
//! written nor dropped.

use super::{read, Done, Job, Worker, DEAD_LETTER_RETRY};
use crate::deliver::{Failure, Outcome};
use crate::dlq;
use crate::error::Result;
use crate::policy::{verdict, Verdict};
use crate::state::{EventRef, RetryEntry};
use crate::SubState;
use busbar_broker::event::StoredEvent;
use std::collections::VecDeque;

impl Worker {
    /// A stored batch no record of which can be read: dead-lettered (reason `undecodable`)
    /// before the position passes it, or dropped and counted when there is no dead-letter topic.
    /// It is never matched against the filter (its events cannot be read) nor delivered.
    pub(super) async fn set_aside(&mut self, bad: &dlq::Undecodable) -> Result<()> {
        let counter = match self.sub.spec.dead_letter_topic.clone() {
            Some(topic) => {
                let letter = dlq::undecodable_letter(&self.sub, bad, self.now());
                self.ctx.broker.publish(&topic, vec![letter]).await?;
                self.counters.lettered(dlq::UNDECODABLE);
                &self.counters.undecodable
            }
            None => {
                self.counters.dropped();
                &self.counters.undecodable
            }
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    pub(super) async fn on_done(&mut self, done: Done) {
        let Done {
            job,
            event,
            outcome,
        } = done;
        let now = self.now();
        if let Outcome::Retry { failure, .. } = &outcome {
            if failure.reason == read::NOT_HERE && self.entries.contains_key(&job.r) {
                // Not an attempt: read again shortly; its lane keeps its place.
                let due = now.saturating_add(read::NOT_HERE_AGAIN_MS);
                self.timers.insert((due, job.r));
                return;
            }
        }
        let pending_letter = job.entry.as_ref().and_then(|e| e.dead_letter.clone());
        let ev = match event {
            Some(ev) => ev,
            None if matches!(outcome, Outcome::Delivered) => {
                // Gone from the log (retention, deleted records) before this attempt.
                self.counters.expired();
                return self.finish(job).await;
            }
            None => {
                if let Some(why) = &pending_letter {
                    // Its letter waits for the event's bytes: tried again later, still a letter.
                    let f = stored_failure(job.entry.as_ref().expect("pending"));
                    return self.letter_later(job, f, why, now).await;
                }
                // Unreadable (a storage error): an attempt like any failed one, so the retry
                // policy ends it in a dead letter (without its bytes) instead of looping.
                super::stand_in(&job.r, now)
            }
        };
        if let Some(why) = pending_letter {
            let f = outcome_failure(&outcome);
            return self.dead_letter(job, &ev, f, &why).await;
        }
        match &outcome {
            // An undecodable event was never attempted.
            Outcome::Fatal(f) if f.reason == dlq::UNDECODABLE => {}
            Outcome::Fatal(f) | Outcome::Retry { failure: f, .. } => {
                self.counters.failed_attempt(f.kind());
            }
            Outcome::Delivered => {}
        }
        match outcome {
            Outcome::Delivered => {
                self.target_recovered(now);
                // Counted once its retry state is ended, so a reader never sees it delivered
                // and still retrying.
                self.finish(job).await;
                self.counters.delivered(now - ev.timestamp);
            }
            Outcome::Fatal(f) => {
                if f.reason == dlq::UNDECODABLE {
                    self.counters
                        .undecodable
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let attempts = job.entry.as_ref().map_or(0, |e| e.attempts) + 1;
                let first = first_attempt(&job, now);
                let job = Job {
                    entry: Some(entry_after(&job, attempts, first, now, None, &f)),
                    ..job
                };
                self.dead_letter(job, &ev, f, "non_retriable").await;
            }
            Outcome::Retry {
                failure,
                retry_after_ms,
            } => {
                let policy = &self.sub.spec.delivery;
                let attempts = job.entry.as_ref().map_or(0, |e| e.attempts) + 1;
                let first = first_attempt(&job, now);
                match verdict(
                    policy,
                    attempts,
                    first,
                    now,
                    retry_after_ms,
                    &mut self.jitter,
                ) {
                    Verdict::Exhausted(why) => {
                        let job = Job {
                            entry: Some(entry_after(&job, attempts, first, now, None, &failure)),
                            ..job
                        };
                        self.dead_letter(job, &ev, failure, why).await;
                    }
                    Verdict::RetryIn(delay) => {
                        self.target_failing(now, &failure, attempts, delay);
                        self.counters.retried();
                        let due = now.saturating_add(delay);
                        self.retry_later(job, failure, now, Some((attempts, first, due)))
                            .await;
                    }
                }
            }
        }
    }

    /// Writes the retry entry and schedules the next attempt. `next` is (attempts, first, due);
    /// `None` keeps the attempt count and retries after the longest backoff (the event could not
    /// even be read or dead-lettered).
    pub(super) async fn retry_later(
        &mut self,
        job: Job,
        failure: Failure,
        now: i64,
        next: Option<(u32, i64, i64)>,
    ) {
        let policy = &self.sub.spec.delivery;
        let (attempts, first, due) = next.unwrap_or_else(|| {
            let attempts = job.entry.as_ref().map_or(0, |e| e.attempts);
            (
                attempts,
                first_attempt(&job, now),
                now.saturating_add(policy.backoff_max_ms as i64),
            )
        });
        let entry = entry_after(&job, attempts, first, now, Some(due), &failure);
        self.schedule(job.r, entry, due).await;
    }

    /// Writes `entry` for `r` and schedules it at `due`. Until the entry is durable the event
    /// holds its partition's position (a later attempt or write releases it, without a restart).
    async fn schedule(&mut self, r: EventRef, entry: RetryEntry, due: i64) {
        let written = self
            .ctx
            .retries
            .put(&self.name, vec![(r.clone(), Some(entry.clone()))])
            .await;
        if written.is_ok() {
            self.release(&r);
        }
        self.timers.insert((due, r.clone()));
        self.entries.insert(r, entry);
    }

    pub(super) async fn dead_letter(&mut self, job: Job, ev: &StoredEvent, f: Failure, why: &str) {
        let now = self.now();
        let Some(topic) = self.sub.spec.dead_letter_topic.clone() else {
            self.finish(job).await;
            self.counters.dropped();
            return;
        };
        if self.gate.denied(&self.ctx.broker, &self.sub.spec).is_some() {
            // Written once the creator may again (the worker is paused `unauthorized` meanwhile).
            return self.letter_later(job, f, why, now).await;
        }
        let attempts = job.entry.as_ref().map_or(1, |e| e.attempts.max(1));
        let first = first_attempt(&job, now);
        let letter = dlq::letter(&self.sub, ev, &f, why, attempts, first, now);
        let mut span = dlq::span(&self.sub, ev, &f, why, &topic);
        let written = self.ctx.broker.publish(&topic, vec![letter]).await;
        if let Err(e) = &written {
            span.fail(e.to_string());
        }
        drop(span);
        match written {
            Ok(_) => {
                self.finish(job).await;
                self.counters.lettered(f.reason);
            }
            Err(e) => {
                // Settled, but not written: the letter (not a delivery) is tried again.
                self.counters
                    .dead_letter_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.set_status(SubState::DeadLetterFailing {
                    topic: topic.clone(),
                    error: e.to_string(),
                });
                self.letter_later(job, f, why, now).await;
            }
        }
    }

    /// Stores that `job`'s event is settled as a dead letter (`why`) still to be written, and
    /// schedules the write in [`DEAD_LETTER_RETRY`]. The failure it keeps is the delivery's.
    pub(super) async fn letter_later(&mut self, job: Job, f: Failure, why: &str, now: i64) {
        let attempts = job.entry.as_ref().map_or(1, |e| e.attempts.max(1));
        let first = first_attempt(&job, now);
        let due = now.saturating_add(DEAD_LETTER_RETRY.as_millis() as i64);
        let entry = RetryEntry {
            dead_letter: Some(why.to_string()),
            ..entry_after(&job, attempts, first, now, Some(due), &f)
        };
        self.schedule(job.r, entry, due).await;
    }

    /// The event is settled: end its retry state, free its position, release its lane.
    pub(super) async fn finish(&mut self, job: Job) {
        let exactly = self.sink.is_some();
        if let Some(p) = (self.parts.iter_mut())
            .find(|p| p.topic == job.r.topic && p.partition == job.r.partition)
        {
            if job.r.offset >= p.next {
                p.settled_ahead.insert(job.r.offset);
            }
            if exactly {
                // Stored with the position while an earlier event is unsettled (`release`
                // prunes it once none is).
                p.done.insert(job.r.offset);
            }
        }
        if self.entries.remove(&job.r).is_some() {
            if self.sink.is_some() {
                // Exactly-once: ended with the transaction that delivered it (`exactly.rs`).
                self.ended.push(job.r.clone());
            } else {
                // Losing this end in a crash only means one more delivery (at-least-once).
                let _ = self
                    .ctx
                    .retries
                    .put(&self.name, vec![(job.r.clone(), None)])
                    .await;
            }
        }
        self.release(&job.r);
        let Some(lane) = job.lane else {
            return;
        };
        let next = self.lanes.get_mut(&lane).and_then(VecDeque::pop_front);
        match next {
            Some(r) => {
                let due = self.due_next(&r, self.now());
                self.timers.insert((due, r));
            }
            None => {
                self.lanes.remove(&lane);
            }
        }
    }

    pub(super) fn release(&mut self, r: &EventRef) {
        if let Some(p) = self
            .parts
            .iter_mut()
            .find(|p| p.topic == r.topic && p.partition == r.partition)
        {
            p.outstanding.remove(&r.offset);
            p.prune_done();
        }
    }
}

fn outcome_failure(o: &Outcome) -> Failure {
    match o {
        Outcome::Retry { failure, .. } | Outcome::Fatal(failure) => failure.clone(),
        Outcome::Delivered => Failure {
            reason: "storage",
            status: None,
            error: "event unreadable".into(),
        },
    }
}

/// The least time between two log lines about one subscription's target (failing, recovered),
/// in ms: a flapping target writes at most two lines in this time, never one per event.
pub(super) const TARGET_LOG_GAP_MS: i64 = 5_000;

impl Worker {
    /// Logs that the target fails and is retried with backoff, when the log has not said so
    /// since it last delivered (`failing_since`).
    fn target_failing(&mut self, now: i64, f: &Failure, attempts: u32, delay: i64) {
        if self.failing_since.is_some() {
            return;
        }
        self.failing_since = Some(now);
        let name = &self.name;
        let status = f.status.map(|s| format!(" {s}")).unwrap_or_default();
        let msg = format!(
            "subscription {name:?}: target failing ({}{status}: {}); attempt {attempts} is retried in {delay} ms",
            f.reason, f.error
        );
        let fields = [
            ("subscription", name.as_str().into()),
            ("reason", f.reason.into()),
            ("status", f.status.into()),
            ("error", f.error.as_str().into()),
            ("attempts", attempts.into()),
            ("retry_in_ms", delay.into()),
        ];
        busbar_broker::log::warn("busbar", "target_failing", &msg, &fields);
    }

    /// Logs that the target delivers again, at least [`TARGET_LOG_GAP_MS`] after it was said
    /// to fail.
    fn target_recovered(&mut self, now: i64) {
        let Some(since) = self.failing_since else {
            return;
        };
        if now - since < TARGET_LOG_GAP_MS {
            return;
        }
        self.failing_since = None;
        let name = &self.name;
        let msg = format!("subscription {name:?}: target delivers again");
        let fields = [
            ("subscription", name.as_str().into()),
            ("failing_ms", (now - since).into()),
        ];
        busbar_broker::log::info("busbar", "target_recovered", &msg, &fields);
    }
}

/// The delivery failure a stored entry recorded.
pub(super) fn stored_failure(e: &RetryEntry) -> Failure {
    Failure {
        reason: [
            "http_status",
            "timeout",
            "connection",
            "tls",
            "target_forbidden",
            "target_gone",
            "too_large",
            "invalid_timestamp",
            "schema_invalid",
            "transform_too_large",
            "schema_encode_failed",
            dlq::UNDECODABLE,
        ]
        .into_iter()
        .find(|r| *r == e.reason)
        .unwrap_or("storage"),
        status: e.status,
        error: e.error.clone(),
    }
}

/// When the first attempt was made (this one, when there was none before).
fn first_attempt(job: &Job, now: i64) -> i64 {
    match &job.entry {
        Some(e) if e.attempts > 0 => e.first_ms,
        _ => now,
    }
}

fn entry_after(
    job: &Job,
    attempts: u32,
    first: i64,
    now: i64,
    due: Option<i64>,
    f: &Failure,
) -> RetryEntry {
    RetryEntry {
        attempts,
        first_ms: first,
        last_ms: now,
        due_ms: due,
        lane: job.lane.as_ref().map(|l| l.2),
        reason: f.reason.to_string(),
        status: f.status,
        error: f.error.clone(),
        dead_letter: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A letter written after a failed first write keeps the reason of its failure: every
    /// reason a delivery fails with is known to `stored_failure` (else it would read `storage`).
    #[test]
    fn a_stored_failure_keeps_its_reason() {
        for reason in [
            "http_status",
            "timeout",
            "schema_invalid",
            "transform_too_large",
            "schema_encode_failed",
            dlq::UNDECODABLE,
        ] {
            let e = RetryEntry {
                attempts: 1,
                first_ms: 0,
                last_ms: 0,
                due_ms: None,
                lane: None,
                reason: reason.into(),
                status: None,
                error: "e".into(),
                dead_letter: Some("non_retriable".into()),
            };
            assert_eq!(stored_failure(&e).reason, reason);
        }
    }
}
