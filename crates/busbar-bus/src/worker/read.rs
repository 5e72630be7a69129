//! How a worker reads its partitions: through the chunks its topic's subscriptions share
//! (`shared.rs`), taking from each only the items its subscription must handle (the events its
//! pattern matches and undecodable batches) and passing the rest in one step; and reading back
//! the one event a retry or a key lane's next delivery needs (`read_one`).

use super::shared::{holds, read_pinned, same_incarnation, Chunk, READ_BYTES};
use super::{Ctx, Worker};
use crate::error::Result;
use crate::state::EventRef;
use busbar_broker::event::Decoded;
use busbar_broker::BrokerError;
use std::sync::Arc;

/// The part of a chunk a worker is reading.
pub(super) struct View {
    chunk: Arc<Chunk>,
    /// Indexes of the items to handle, in offset order, and how many were taken.
    wanted: Vec<u32>,
    taken: usize,
    /// Items past the reader's position when opened that it does not handle.
    passed: usize,
}

/// What reading a partition gave.
pub(super) enum Next {
    /// Nothing to read now.
    Idle,
    /// Events passed without handling (none matched): how many.
    Skipped(usize),
    /// An item to handle.
    Item(Decoded),
}

impl Worker {
    /// The next item partition `i` must handle, reading a chunk when its last one is done.
    pub(super) async fn next_event(&mut self, i: usize) -> Result<Next> {
        if self.parts[i].view.is_none() {
            if let Some(next) = self.open_view(i).await? {
                return Ok(next);
            }
        }
        let p = &mut self.parts[i];
        let v = p.view.as_mut().expect("opened");
        let Some(&j) = v.wanted.get(v.taken) else {
            let (end, passed) = (v.chunk.end.max(p.next), v.passed);
            p.pass(end);
            p.view = None;
            return Ok(if passed > 0 {
                Next::Skipped(passed)
            } else {
                Next::Idle
            });
        };
        v.taken += 1;
        let mut item = v.chunk.items[j as usize].clone();
        let last = v.chunk.last_of(j);
        match &mut item {
            Decoded::Event(e) => p.pass(e.offset),
            // Only what is left of it from the reader's position on.
            Decoded::Undecodable { first, .. } => {
                *first = (*first).max(p.next);
                p.pass(*first);
            }
        }
        p.next = last + 1;
        Ok(Next::Item(item))
    }

    /// Finds the chunk holding partition `i`'s position; answers what to report instead when
    /// there is none (nothing new, another worker still reading it, or the position was outside the
    /// log and moved into it).
    async fn open_view(&mut self, i: usize) -> Result<Option<Next>> {
        let broker = &self.ctx.broker;
        let p = &mut self.parts[i];
        let (start, end) = broker.offsets_of(&p.topic, p.partition as i64)?;
        if p.next == end {
            return Ok(Some(Next::Idle));
        }
        // Cluster mode: a copy caught up on read holds what the position needs before it is read
        // (else the position would be clamped back to the copy's end and events sent again).
        broker
            .catch_up_for_read(&p.topic, p.partition as i64, p.next)
            .await?;
        // Offsets by name are those of the topic as it is now: if it was deleted and created
        // again, they must neither move this incarnation's position nor lead it to its cached
        // chunks (`UnknownTopic`: the worker starts over on the new incarnation).
        same_incarnation(broker, &p.topic, &p.topic_id)?;
        if p.next < start || p.next > end {
            p.clamp(start, end);
            return Ok(Some(Next::Idle));
        }
        let chunk = match self.ctx.shared.chunk_at(broker, &p.key, p.next).await {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(Some(Next::Idle)),
            Err(BrokerError::OffsetOutOfRange { start, end, .. }) => {
                p.clamp(start, end);
                return Ok(Some(Next::Idle));
            }
            Err(e) => return Err(e.into()),
        };
        let wanted = self.ctx.shared.wanted(&chunk, &p.topic, &self.reg, p.next);
        // Items are in offset order.
        let ahead = chunk.items.len() - chunk.items.partition_point(|d| last(d) < p.next);
        p.view = Some(View {
            passed: ahead.saturating_sub(wanted.len()),
            chunk,
            wanted,
            taken: 0,
        });
        Ok(None)
    }
}

fn last(d: &Decoded) -> u64 {
    match d {
        Decoded::Event(e) => e.offset,
        Decoded::Undecodable { last, .. } => *last,
    }
}

impl super::Part {
    /// The lowest event not yet settled (the position to store).
    pub(super) fn low(&self) -> u64 {
        self.outstanding.first().copied().unwrap_or(self.next)
    }

    /// Forgets the settled events the lowest unsettled one has passed.
    pub(super) fn prune_done(&mut self) {
        let low = self.low();
        while self.done.first().is_some_and(|o| *o < low) {
            self.done.pop_first();
        }
    }

    /// Moves the reader to `to` (not back), past events it does not handle: restored events
    /// settled ahead of it there are behind it now.
    fn pass(&mut self, to: u64) {
        if to > self.next && !self.settled_ahead.is_empty() {
            let from = self.next;
            self.settled_ahead.retain(|o| *o < from || *o >= to);
        }
        self.next = self.next.max(to);
        self.prune_done();
    }

    /// The position moved into the log's range `[start, end]`.
    fn clamp(&mut self, start: u64, end: u64) {
        self.next = self.next.clamp(start, end);
        let next = self.next;
        self.settled_ahead.retain(|o| *o >= next);
        self.prune_done();
    }
}

/// What reading one event found.
pub(super) enum Found {
    /// The event, or the undecodable batch holding its offset.
    Item(Decoded),
    /// The log (or that incarnation) no longer has it.
    Gone,
    /// Cluster mode: past the end of this broker's copy, which could not catch up now (a copy
    /// behind the shared store, a lease just taken over): read again shortly, and not counted
    /// as an attempt (`settle.rs`). Why.
    NotHere(String),
}

/// Reads the one event at `r` of the topic incarnation `topic_id` (when the worker still reads the
/// topic; else of whatever topic has the name); other batches in the same read do not matter.
pub(super) async fn read_one(
    ctx: &Arc<Ctx>,
    r: &EventRef,
    topic_id: Option<String>,
) -> Result<Found> {
    let broker = &ctx.broker;
    if let Some(id) = &topic_id {
        // A retry or a lane's next event is most often in a chunk the reader has cached: no
        // read (nor decoding of a whole read for one event).
        let key = (r.topic.clone(), id.clone(), r.partition);
        if let Some(d) = ctx.shared.cached_item(broker, &key, r.offset) {
            return Ok(Found::Item(d));
        }
    }
    let read = match read_at(broker, r, topic_id.clone()).await {
        // Cluster mode: past the end of this broker's copy is not gone, only not here yet.
        Err(BrokerError::OffsetOutOfRange { start, .. })
            if r.offset >= start && broker.shared_log().is_some() =>
        {
            let p = r.partition as i64;
            if let Err(e) = broker.catch_up_for_read(&r.topic, p, r.offset + 1).await {
                return Ok(Found::NotHere(format!(
                    "this broker's copy is behind ({e})"
                )));
            }
            match read_at(broker, r, topic_id).await {
                Err(BrokerError::OffsetOutOfRange { start, end, .. }) if r.offset >= start => {
                    let why = format!("this broker's copy ends at offset {end} for now");
                    return Ok(Found::NotHere(why));
                }
                read => read,
            }
        }
        read => read,
    };
    let data = match read {
        Ok(d) => d,
        Err(BrokerError::OffsetOutOfRange { .. }) | Err(BrokerError::UnknownTopic(_)) => {
            return Ok(Found::Gone)
        }
        Err(e) => return Err(e.into()),
    };
    let found = broker.decode_committed(&r.topic, r.partition, &data, r.offset)?;
    let first = found.into_iter().next().filter(|d| holds(d, r.offset));
    Ok(first.map_or(Found::Gone, Found::Item))
}

/// The failure reason of an attempt that found its event not in this broker's copy yet
/// ([`Found::NotHere`]): the event is read again after [`NOT_HERE_AGAIN_MS`], no attempt counted.
pub(super) const NOT_HERE: &str = "not_here_yet";
/// How long an event [`NOT_HERE`] waits before it is read again, ms.
pub(super) const NOT_HERE_AGAIN_MS: i64 = 500;

/// One read at `r` (of the incarnation `topic_id` when given).
async fn read_at(
    broker: &Arc<busbar_broker::Broker>,
    r: &EventRef,
    topic_id: Option<String>,
) -> busbar_broker::Result<Vec<u8>> {
    match topic_id {
        Some(id) => {
            let key = (r.topic.clone(), id, r.partition);
            read_pinned(broker, &key, r.offset, READ_BYTES).await
        }
        None => broker.read_now(&r.topic, r.partition as i64, r.offset, READ_BYTES),
    }
}
