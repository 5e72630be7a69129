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
//! Dead letters, redrives and replays are not part of the transaction: they stay at least once.

use super::Worker;
use crate::error::Result;
use crate::positions::TxnRecord;
use busbar_broker::txn::producer::{Fate, PREFIX};

/// The transactional id of subscription `name`.
pub fn transactional_id(name: &str) -> String {
    format!("{PREFIX}subscription.{name}")
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

    /// Settles the transaction the last commit recorded (see the module docs), then starts a
    /// fresh producer for the sink (aborting any later transaction left open).
    /// A worker without a topic target settles what it recorded while it had one (the target
    /// was changed).
    pub(super) async fn settle_txn(&mut self) -> Result<()> {
        let sink = self.sink.clone();
        let (broker, positions) = (&self.ctx.broker, &self.ctx.positions);
        let id = transactional_id(&self.name);
        // Held throughout: the sink appends nothing while its transaction is being settled.
        let mut producer = match &sink {
            Some(s) => Some(s.producer().lock().await),
            None => None,
        };
        if let Some(p) = producer.as_mut() {
            **p = None;
        }
        if let Some(rec) = positions.txn(&self.name) {
            match broker.settle_bus_txn(&id, rec.seq).await? {
                Fate::Committed => {
                    self.end_retries(&rec.ended).await?;
                    positions.close_txn(&self.name).await?;
                }
                Fate::Aborted => {
                    let counters = rec.prev_counters.clone().unwrap_or_default();
                    positions.roll_back(&self.name, rec).await?;
                    self.counters.set(&counters);
                }
            }
        }
        self.saved_counters = positions.counters(&self.name);
        if let Some(p) = producer.as_mut() {
            **p = Some(broker.txn_producer(&id).await?);
        }
        Ok(())
    }

    /// Removes ended retry entries (their deliveries are committed).
    async fn end_retries(&self, ended: &[crate::state::EventRef]) -> Result<()> {
        if ended.is_empty() {
            return Ok(());
        }
        let rows = ended.iter().map(|r| (r.clone(), None)).collect();
        self.ctx.retries.put(&self.name, rows).await
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
            if write.await.is_ok() {
                self.committed(rows, counters);
                let ended = std::mem::take(&mut self.ended);
                let _ = self.end_retries(&ended).await;
            }
            return;
        };
        let prev = rows
            .iter()
            .map(|(k, _)| (k.clone(), self.stored(k)))
            .collect();
        let rec = TxnRecord {
            seq,
            prev,
            prev_counters: self.saved_counters.clone(),
            ended: self.ended.clone(),
        };
        let write =
            (self.ctx.positions).put_in_txn(&self.name, rows.clone(), counters.clone(), rec);
        if write.await.is_err() {
            // Not recorded (all or nothing): the transaction is aborted when the worker starts
            // again, and its deliveries are made again.
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
        // Losing this in a crash is settled at the next start (the record lists them).
        let _ = self.end_retries(&ended).await;
    }

    /// The position stored for a partition (what the transaction's record goes back to).
    fn stored(&self, k: &crate::positions::PartKey) -> Option<crate::positions::Position> {
        let p = self
            .parts
            .iter()
            .find(|p| p.topic == k.0 && p.partition == k.1)?;
        p.committed.map(|offset| crate::positions::Position {
            offset,
            topic_id: p.topic_id.clone(),
        })
    }
}
