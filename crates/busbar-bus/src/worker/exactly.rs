//! Exactly-once delivery to a topic target (issue 18, `docs/transactions.md` "The bus").
//!
//! The worker's deliveries go out in a transaction of its own transactional id (the
//! [`TopicSink`](crate::deliver::TopicSink)'s producer, `busbar_broker::txn::producer`). Each
//! commit lets the deliveries in flight end, then stores the positions and counters together with
//! a record of the transaction (its number, the positions and counters it replaces, the retry
//! entries its deliveries ended) in one all-or-nothing write, then commits the transaction. A
//! crash between the two is settled when the worker starts again ([`Worker::settle_txn`]): the
//! coordinator says whether the recorded transaction committed (a transaction still open is
//! committed then, as its position is stored), and if not the positions and counters go back to
//! those the record replaced. Either way each event is in the target once: the stored position
//! and the committed events always agree. A transaction the positions never recorded is aborted
//! when the producer starts again.
//!
//! Events settled past one still waiting (a retry, a parked event) are stored with the
//! position (its `done` list), so a restart skips them. A record whose write failed may still be
//! on disk: no later transaction starts until a roll-back write overwrites it (else a later
//! transaction's commit would make the settling of that record say "committed"); the positions
//! store keeps it pending, beyond the worker.
//!
//! Dead letters, redrives and replays are not part of the transaction: they stay at least once.

use super::Ctx;
use super::Worker;
use crate::error::Result;
use crate::positions::{PartKey, Position, TxnRecord};
use crate::state::EventRef;
use busbar_broker::txn::producer::{Fate, PREFIX};
use std::time::Duration;

/// Exactly-once: how long a stopping worker waits for its appends in flight before it gives up
/// its last commit (the transaction is aborted at the next start).
pub(super) const STOP_DRAIN_MAX: Duration = Duration::from_secs(10);

/// Exactly-once: retry entries ended by deliveries of one transaction before it commits early
/// (its record lists them, and a record is one write of at most a batch).
pub(super) const ENDED_PER_COMMIT: usize = 1024;

/// The transactional id of subscription `name`.
pub fn transactional_id(name: &str) -> String {
    format!("{PREFIX}subscription.{name}")
}

/// Settles the transaction record of subscription `name` (see the module docs): answers
/// `Some(aborted)` when there was one. Used at every start of its worker and before a reset
/// moves its positions (a roll-back after the reset would undo it).
pub(crate) async fn settle_record(ctx: &Ctx, name: &str) -> Result<Option<bool>> {
    // A record whose write failed goes first: it is rolled back (its transaction, never
    // ended, is aborted when the next producer starts).
    ctx.positions.settle_pending(name).await?;
    let Some(rec) = ctx.positions.txn(name) else {
        return Ok(None);
    };
    match ctx
        .broker
        .settle_bus_txn(&transactional_id(name), rec.seq)
        .await?
    {
        Fate::Committed => {
            end_retries(ctx, name, &rec.ended).await?;
            ctx.positions.close_txn(name).await?;
            Ok(Some(false))
        }
        Fate::Aborted => {
            ctx.positions.roll_back(name, rec).await?;
            Ok(Some(true))
        }
    }
}

/// Removes ended retry entries (their deliveries are committed).
async fn end_retries(ctx: &Ctx, name: &str, ended: &[EventRef]) -> Result<()> {
    if ended.is_empty() {
        return Ok(());
    }
    let rows = ended.iter().map(|r| (r.clone(), None)).collect();
    ctx.retries.put(name, rows).await
}

impl Worker {
    /// Waits for every delivery in flight and settles it.
    pub(super) async fn drain(&mut self) {
        while let Some(done) = self.inflight.join_next().await {
            if let Ok(done) = done {
                self.on_done(done).await;
            }
        }
    }

    /// Settles what the last commits left (see the module docs), then starts a fresh producer
    /// for the sink (aborting any later transaction left open). A worker without a topic target
    /// settles what it recorded while it had one (the target was changed). Fails, starting no
    /// producer, while any of it cannot be written.
    pub(super) async fn settle_txn(&mut self) -> Result<()> {
        let sink = self.sink.clone();
        // Held throughout: the sink appends nothing while its transaction is being settled.
        let mut producer = match &sink {
            Some(s) => Some(s.producer().lock().await),
            None => None,
        };
        if let Some(p) = producer.as_mut() {
            **p = None;
        }
        let ctx = self.ctx.clone();
        let had_record = settle_record(&ctx, &self.name).await?.is_some();
        end_retries(&ctx, &self.name, &self.unended).await?;
        self.unended.clear();
        self.saved_counters = ctx.positions.counters(&self.name);
        if had_record || sink.is_some() {
            // Deliveries of a transaction that will not commit were counted: back to the
            // counters stored with the positions.
            self.counters
                .set(&self.saved_counters.clone().unwrap_or_default());
        }
        if let Some(p) = producer.as_mut() {
            **p = Some(
                ctx.broker
                    .txn_producer(&transactional_id(&self.name))
                    .await?,
            );
        }
        Ok(())
    }

    /// After a commit: ends the retry entries of `ended` (committed deliveries), keeping those
    /// whose removal failed for the next commit or start.
    async fn end_committed(&mut self, ended: Vec<EventRef>) {
        let ended: Vec<EventRef> = std::mem::take(&mut self.unended)
            .into_iter()
            .chain(ended)
            .collect();
        if end_retries(&self.ctx, &self.name, &ended).await.is_err() {
            self.unended = ended;
        }
    }

    /// The commit of an exactly-once worker (see the module docs). A failure that leaves the
    /// transaction's outcome unknown sets `restart`: the worker starts over and settles it.
    pub(super) async fn commit_txn(&mut self) {
        self.drain().await;
        let Some(sink) = self.sink.clone() else {
            return;
        };
        let mut guard = sink.producer().lock().await;
        let Some(producer) = guard.as_mut() else {
            return;
        };
        if producer.is_broken() {
            self.restart = true;
            return;
        }
        let rows = self.position_rows();
        let counters = self.counters.snapshot();
        let Some(seq) = producer.open_txn() else {
            // Nothing delivered since the last commit: no transaction to tie the positions to.
            if rows.is_empty() && self.saved_counters.as_ref() == Some(&counters) {
                return;
            }
            let write =
                (self.ctx.positions).put_with_counters(&self.name, rows.clone(), counters.clone());
            if write.await.is_err() {
                // A failing disk: start over from the stored state (with its backoff) rather
                // than commit again on every pass.
                self.restart = true;
                return;
            }
            self.committed(rows, counters);
            let ended = std::mem::take(&mut self.ended);
            self.end_committed(ended).await;
            return;
        };
        let prev = rows
            .iter()
            .map(|(k, _)| (k.clone(), self.stored(k)))
            .collect();
        // The deliveries are durable before the record says they will be committed: settled
        // as "commit" after a crash, the transaction must still hold them.
        if self.ctx.broker.flush_txn(producer).await.is_err() {
            self.restart = true;
            return;
        }
        // Entries of earlier commits whose removal failed stay listed until removed: this
        // record replaces the one that listed them.
        let ended = (self.unended.iter()).chain(&self.ended).cloned().collect();
        let rec = TxnRecord {
            seq,
            prev,
            prev_counters: self.saved_counters.clone(),
            ended,
        };
        let write =
            (self.ctx.positions).put_in_txn(&self.name, rows.clone(), counters.clone(), rec);
        if write.await.is_err() {
            // Maybe on disk: rolled back before the next transaction starts (the store keeps
            // it pending, `settle_record`).
            self.restart = true;
            return;
        }
        self.committed(rows, counters);
        if self.ctx.broker.commit_txn(producer).await.is_err() {
            self.restart = true;
            return;
        }
        drop(guard);
        let ended = std::mem::take(&mut self.ended);
        let closing = !ended.is_empty();
        // Losing this in a crash is settled at the next start (the record lists them).
        self.end_committed(ended).await;
        if closing && self.unended.is_empty() {
            // Settled: a later start must not end these entries again (a redrive may have
            // written one anew meanwhile).
            let _ = self.ctx.positions.close_txn(&self.name).await;
        }
    }

    /// The position stored for a partition (what the transaction's record goes back to).
    fn stored(&self, k: &PartKey) -> Option<Position> {
        let p = self
            .parts
            .iter()
            .find(|p| p.topic == k.0 && p.partition == k.1)?;
        p.committed.map(|offset| Position {
            offset,
            topic_id: p.topic_id.clone(),
            done: p.committed_done.clone(),
        })
    }
}
