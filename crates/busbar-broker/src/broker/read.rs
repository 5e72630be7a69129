//! Reads: Kafka fetches (waiting for data up to the fetch's wait, isolated or not) and the
//! HTTP API's event reads (decoded, committed only).

use super::{last_offset, AnyOf, Broker, FetchResult};
use crate::error::Result;
use crate::event::{self, StoredEvent};
use crate::topic::Partition;
use crate::txn::Isolation;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

impl Broker {
    /// Whole stored batches from `offset`, waiting up to `max_wait` (capped by `fetch_wait_max`)
    /// until at least `min_bytes` are available.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: i64,
        offset: u64,
        max_bytes: usize,
        min_bytes: usize,
        max_wait: Duration,
    ) -> Result<FetchResult> {
        let iso = Isolation::ReadUncommitted;
        self.fetch_isolated(
            topic, partition, offset, max_bytes, min_bytes, max_wait, iso,
        )
        .await
    }

    /// [`Broker::fetch`] at an isolation level: ReadCommitted answers only batches below the
    /// last stable offset (transaction markers and aborted batches included: the caller filters
    /// them, `PartitionTxns::committed_only`).
    #[allow(clippy::too_many_arguments)]
    pub async fn fetch_isolated(
        &self,
        topic: &str,
        partition: i64,
        offset: u64,
        max_bytes: usize,
        min_bytes: usize,
        max_wait: Duration,
        isolation: Isolation,
    ) -> Result<FetchResult> {
        let t = self.topic(topic)?;
        let p = t.partition(partition)?.clone();
        // Cluster mode: a copy this broker does not keep current catches up first (failing
        // that, the local copy is served as it is).
        let _ = self.bring_current(&t, &p).await;
        drop(t);
        let wait = max_wait.min(self.config.fetch_wait_max);
        p.replica.serve_for(wait);
        let deadline = Instant::now() + wait;
        let max_bytes = max_bytes.clamp(1, self.config.fetch_bytes_max);
        let read = || {
            self.read_isolated(topic, partition, offset, max_bytes, isolation)
                .map(|r| FetchResult {
                    data: r.data,
                    high_watermark: r.high_watermark,
                    log_start: r.log_start,
                })
        };
        loop {
            let notified = p.appended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let result = read()?;
            if result.data.len() >= min_bytes.max(1) || Instant::now() >= deadline {
                return Ok(result);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return read();
            }
        }
    }

    /// Whole stored batches from `offset` up to `max_bytes` (at least one batch), without
    /// waiting, below the last stable offset only (no batch of an open transaction): decode them
    /// with [`Broker::decode_committed`], which leaves out markers and aborted transactions, and
    /// take the position after them from the batches themselves ([`last_offset`]).
    pub fn read_now(
        &self,
        topic: &str,
        partition: i64,
        offset: u64,
        max_bytes: usize,
    ) -> Result<Vec<u8>> {
        let iso = Isolation::ReadCommitted;
        Ok(self
            .read_isolated(topic, partition, offset, max_bytes, iso)?
            .data)
    }

    /// The events of `data` (whole batches read from `topic`/`partition` at `from`, below the
    /// last stable offset) as [`event::decode_each`] finds them, without transaction markers and
    /// without batches of aborted transactions.
    pub fn decode_committed(
        &self,
        topic: &str,
        partition: u32,
        data: &[u8],
        from: u64,
    ) -> Result<Vec<event::Decoded>> {
        let t = self.topic(topic)?;
        let p = t.partition(i64::from(partition))?;
        event::decode_each(topic, partition, &p.txns.committed_only(data), from)
    }

    /// Waits until any of `parts` ((topic, partition, offset)) has data at or past its offset, or
    /// `timeout` passes. Unknown topics or partitions are ignored.
    pub async fn wait_for_data(
        &self,
        parts: &[(String, i64, u64)],
        timeout: Duration,
        isolation: Isolation,
    ) {
        let mut found: Vec<(Arc<Partition>, u64)> = Vec::with_capacity(parts.len());
        for (t, p, o) in parts {
            let Some((t, p)) = self
                .topic(t)
                .ok()
                .and_then(|t| t.partition(*p).ok().cloned().map(|p| (t, p)))
            else {
                continue;
            };
            // Cluster mode: the copy is kept current while read (failing that, waited on as is).
            let _ = self.bring_current(&t, &p).await;
            p.replica.serve_for(timeout);
            found.push((p, *o));
        }
        let mut waits: Vec<std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>>> = found
            .iter()
            .map(|(p, _)| Box::pin(p.appended.notified()))
            .collect();
        for w in &mut waits {
            w.as_mut().enable();
        }
        let readable = |p: &Partition| {
            let hw = p.log.stats().high_watermark;
            match isolation {
                Isolation::ReadUncommitted => hw,
                Isolation::ReadCommitted => p.txns.last_stable(hw),
            }
        };
        if found.iter().any(|(p, o)| readable(p) > *o) {
            return;
        }
        let _ = tokio::time::timeout(timeout, AnyOf(waits)).await;
    }

    /// Up to `limit` events from `offset` (waiting up to `max_wait` for the first one), and no
    /// more than `fetch_bytes_max` of stored batches past the first (at least one event is always
    /// answered): a count alone would let `limit` large events fill memory.
    pub async fn read_events(
        &self,
        topic: &str,
        partition: i64,
        offset: u64,
        limit: usize,
        max_wait: Duration,
    ) -> Result<Vec<StoredEvent>> {
        let (events, _) = self
            .read_events_next(topic, partition, offset, limit, max_wait)
            .await?;
        Ok(events)
    }

    /// [`Broker::read_events`], and the offset to read on from: past the last event answered,
    /// or past transaction markers and aborted batches that answered no event (so a reader that
    /// goes on from it never reads them again).
    pub async fn read_events_next(
        &self,
        topic: &str,
        partition: i64,
        offset: u64,
        limit: usize,
        max_wait: Duration,
    ) -> Result<(Vec<StoredEvent>, u64)> {
        let mut out: Vec<StoredEvent> = Vec::new();
        let mut next = offset;
        let mut wait = max_wait;
        let mut bytes = 0;
        let p = self.topic(topic)?.partition(partition)?.clone();
        while out.len() < limit && (out.is_empty() || bytes < self.config.fetch_bytes_max) {
            let r = self
                .fetch_isolated(
                    topic,
                    partition,
                    next,
                    1 << 20,
                    1,
                    wait,
                    Isolation::ReadCommitted,
                )
                .await?;
            if r.data.is_empty() {
                break;
            }
            bytes += r.data.len();
            // Transaction markers and aborted transactions are never shown.
            let committed = p.txns.committed_only(&r.data);
            let evs = event::decode(topic, partition as u32, &committed, next)?;
            let room = limit - out.len();
            if evs.len() > room {
                out.extend(evs.into_iter().take(room));
                next = out.last().map_or(next, |e| e.offset + 1);
                break;
            }
            out.extend(evs);
            next = last_offset(&r.data).map_or(next, |o| o + 1).max(next);
            wait = Duration::ZERO;
            if next >= r.high_watermark {
                break;
            }
        }
        Ok((out, next))
    }
}
