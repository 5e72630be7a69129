//! Key lanes and backpressure of a worker: parking an event durably behind the one of its key
//! in flight or scheduled, releasing lanes restored at start once the reader has passed their
//! key's first event, when a lane's next event is due, and `delivery.waiting_max`.

use super::{Lane, Worker};
use crate::error::Result;
use crate::state::{EventRef, RetryEntry};
use crate::SubState;
use std::collections::VecDeque;

impl Worker {
    pub(super) fn waiting_max(&self) -> usize {
        self.sub.spec.delivery.waiting_max as usize
    }

    /// Whether `delivery.waiting_max` events wait (for a retry, behind their key, for their dead
    /// letter): then no new event is read until some settle. Keeps the state saying so.
    /// Held lanes (restored at start) wait for the reader to pass their key's first event, so
    /// reading goes on while any is held, whatever the count: else a restart with the limit
    /// reached by parked events alone would wait forever.
    pub(super) fn backpressure(&self) -> bool {
        let (waiting, max) = (self.entries.len(), self.waiting_max());
        let waiting = if self.held.is_empty() { waiting } else { 0 };
        if self.done_full() {
            return true;
        }
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let was = matches!(*status, SubState::Backpressure { .. });
        let full = waiting >= max;
        if full && !status.is_error() {
            *status = SubState::Backpressure { waiting, max };
        } else if !full && was {
            *status = SubState::Running;
        }
        let now_in = matches!(*status, SubState::Backpressure { .. });
        let shown = (now_in != was).then(|| status.clone());
        drop(status);
        if let Some(new) = shown {
            self.log_backpressure(was, new);
        }
        full
    }

    /// Logs entering or leaving backpressure (`view::log_change`), gated: a subscription that
    /// flips in and out with each settled event (a hot key at `waiting_max`) writes at most
    /// two lines per [`super::settle::TARGET_LOG_GAP_MS`]: entering is logged when the last
    /// such line is that old, leaving only when the entering line was logged and is that old.
    fn log_backpressure(&self, was: bool, new: SubState) {
        use std::sync::atomic::Ordering::Relaxed;
        let now = self.now();
        let last = self.backpressure_line_ms.load(Relaxed);
        if now.saturating_sub(last) < super::settle::TARGET_LOG_GAP_MS {
            return;
        }
        let logged_entering = self.backpressure_logged.load(Relaxed);
        if was && !logged_entering {
            return;
        }
        self.backpressure_line_ms.store(now, Relaxed);
        self.backpressure_logged.store(!was, Relaxed);
        let old = match was {
            true => SubState::Backpressure { waiting: 0, max: 0 },
            false => SubState::Running,
        };
        crate::view::log_change(&self.name, &old, &new);
    }

    /// Exactly-once: a partition holds as many events settled past an unsettled one as a
    /// position stores. Only while one is unsettled (it settles by its own retry timer): events
    /// restored ahead of the reader and settled before it reaches them never stop it.
    pub(super) fn done_full(&self) -> bool {
        (self.parts.iter())
            .any(|p| !p.outstanding.is_empty() && p.done.len() >= super::DONE_AHEAD_MAX)
    }

    /// Where the reader of `r`'s partition is (`u64::MAX` when it does not read it).
    pub(super) fn position_of(&self, r: &EventRef) -> u64 {
        self.parts
            .iter()
            .find(|p| p.topic == r.topic && p.partition == r.partition)
            .map_or(u64::MAX, |p| p.next)
    }

    /// When a lane's next event is due once the one ahead of it is settled: at once, or at its
    /// own stored due time if that is later (a restored retry keeps its backoff).
    pub(super) fn due_next(&mut self, r: &EventRef, now: i64) -> i64 {
        let Some(e) = self.entries.get_mut(r) else {
            return now;
        };
        let due = e.due_ms.map_or(now, |d| d.max(now));
        e.due_ms = Some(due);
        due
    }

    /// Schedules the first event of every held lane the reader has passed: no earlier event of
    /// its key is left to read.
    pub(super) fn release_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let passed: Vec<Lane> = (self.held.iter())
            .filter(|l| {
                let front = self.lanes.get(*l).and_then(|q| q.front());
                front.is_none_or(|r| r.offset < self.position_of(r))
            })
            .cloned()
            .collect();
        let now = self.now();
        for l in passed {
            self.held.remove(&l);
            match self.lanes.get_mut(&l).and_then(VecDeque::pop_front) {
                Some(r) => {
                    let due = self.due_next(&r, now);
                    self.timers.insert((due, r));
                }
                None => {
                    self.lanes.remove(&l);
                }
            }
        }
    }

    /// Parks `r` durably behind the event of its key that is in flight or scheduled.
    pub(super) async fn park(&mut self, r: EventRef, lane: Lane) -> Result<()> {
        let now = self.now();
        let entry = RetryEntry {
            attempts: 0,
            first_ms: now,
            last_ms: now,
            due_ms: None,
            lane: Some(lane.2),
            reason: "waiting".into(),
            status: None,
            error: "waiting behind an earlier event with the same key".into(),
            dead_letter: None,
        };
        self.ctx
            .retries
            .put(&self.name, vec![(r.clone(), Some(entry.clone()))])
            .await?;
        // In offset order: an event read again after a restart may precede restored ones.
        let q = self.lanes.entry(lane).or_default();
        q.insert(q.partition_point(|x| x.offset < r.offset), r.clone());
        self.entries.insert(r, entry);
        Ok(())
    }
}
