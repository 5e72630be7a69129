//! The broker's own transactional producer: how the bus makes a topic target exactly-once
//! (issue 18, `docs/transactions.md` "The bus").
//!
//! A subscription with a topic target appends its deliveries as batches of a transaction of its
//! own transactional id (`__busbar.subscription.<name>`, a prefix Kafka clients may not use), and
//! commits that transaction together with its position in two steps: the position write
//! (`busbar-bus` `positions.rs`) records the transaction's number ([`Txn::seq`]) as open, then
//! EndTxn commits it. The coordinator's record is the decider: after a crash,
//! [`Broker::settle_bus_txn`] says whether the recorded transaction committed (it is committed
//! then if it was still open), and the bus keeps the recorded position or goes back to the one
//! before. A later transaction the position never recorded is aborted when the producer starts
//! again ([`Broker::txn_producer`] is InitProducerId, which aborts what the id left open).
//!
//! A write that fails part way leaves some of the events in the transaction: the producer is
//! then broken and the transaction can only be aborted (the bus starts over from its stored
//! position). Everything that can refuse an event (its timestamp, size, partition, schema) is
//! checked before the first byte is written, so a bad event fails alone instead.

use super::{Txn, TxnState};
use crate::broker::publish::answers;
use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use crate::event::{Event, Published};
use busbar_log::batch::{self, BatchHeader};
use std::collections::{BTreeSet, HashMap};

/// Transactional ids that belong to the bus: a Kafka client using one is refused (53).
pub const PREFIX: &str = "__busbar.";

/// Whether `id` belongs to the bus.
pub fn reserved(id: &str) -> bool {
    id.starts_with(PREFIX)
}

/// The transaction timeout the bus's producers ask for (at most the broker's maximum): a bus
/// transaction lives one commit interval, so only a stalled disk or a crash lets it expire.
const TIMEOUT_MS: i64 = 60_000;

/// The transactional-batch bit of a RecordBatch's attributes.
const TRANSACTIONAL: i16 = 0x10;

/// Appends of the open transaction not yet known durable before [`Broker::flush_txn`] waits
/// for them all: past this many, the next append waits first.
const UNSYNCED_MAX: usize = 1024;

/// A transactional producer of the bus.
pub struct TxnProducer {
    id: String,
    producer_id: i64,
    epoch: i16,
    /// The next sequence number per (topic, partition); an epoch starts them at 0.
    seqs: HashMap<(String, u32), i32>,
    /// The partitions the open transaction holds.
    added: BTreeSet<(String, u32)>,
    /// The open transaction's number ([`Txn::seq`]).
    open: Option<u64>,
    /// A write of the open transaction failed part way: it can only be aborted.
    broken: bool,
    /// The open transaction's appends, written but not yet known durable: they share one
    /// fsync per partition when the transaction is flushed, not one per append.
    unsynced: Vec<crate::produce::PendingAppend>,
}

impl TxnProducer {
    /// The open transaction's number, if one is open.
    pub fn open_txn(&self) -> Option<u64> {
        self.open
    }

    /// Whether a write of the open transaction failed part way (it can only be aborted).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// The transactional id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// What became of a transaction the bus recorded as open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Committed,
    Aborted,
}

impl Broker {
    /// A producer for the bus's transactional id `id` (InitProducerId: a transaction the id left
    /// open is aborted, a prepared one completed, and the epoch bumped).
    pub async fn txn_producer(&self, id: &str) -> Result<TxnProducer> {
        if !reserved(id) {
            return Err(BrokerError::InvalidRequest(format!(
                "the bus's transactional ids start with {PREFIX}"
            )));
        }
        let timeout = TIMEOUT_MS.min(self.txns.config.max_timeout_ms);
        let (producer_id, epoch) = self.init_transactional(id, timeout, None).await?;
        Ok(TxnProducer {
            id: id.to_string(),
            producer_id,
            epoch,
            seqs: HashMap::new(),
            added: BTreeSet::new(),
            open: None,
            broken: false,
            unsynced: Vec::new(),
        })
    }

    /// Publishes `events` to `topic` inside `p`'s transaction (starting one), routed as
    /// [`Broker::publish`] routes them. Invisible to read-committed readers until
    /// [`Broker::commit_txn`]. Answers once written, not durable: [`Broker::flush_txn`] (and the
    /// commit) wait for that, for all the transaction's appends at once.
    pub async fn publish_txn(
        &self,
        p: &mut TxnProducer,
        topic: &str,
        events: Vec<Event>,
    ) -> Result<Vec<Published>> {
        if p.broken {
            return Err(BrokerError::InvalidTxnState(
                "an earlier write of this transaction failed: it can only be aborted".into(),
            ));
        }
        let t = self.topic(topic)?;
        self.check_timestamps(&t, &events)?;
        let events = self.check_events(&t, events).await?;
        let n = events.len();
        let routed = self.route(&t, &events)?;
        let new: Vec<(String, i32)> = (routed.keys())
            .filter(|i| !p.added.contains(&(t.name.clone(), **i)))
            .map(|i| (t.name.clone(), *i as i32))
            .collect();
        if !new.is_empty() {
            // A failure here may leave a transaction open that this producer does not know of
            // (a write whose outcome was unknown), or mean the producer was fenced: either way
            // it is broken, so the worker starts over and settles its record.
            let added = (self.add_partitions_to_txn(&p.id, p.producer_id, p.epoch, new))
                .await
                .inspect_err(|_| p.broken = true)?;
            if let Some(e) = added.into_iter().find_map(|(_, _, e)| e) {
                p.broken = true;
                return Err(e);
            }
            p.added.extend(routed.keys().map(|i| (t.name.clone(), *i)));
            if p.open.is_none() {
                p.open = Some(self.txns.get(&p.id).map_or(0, |t: Txn| t.seq));
            }
        }
        let mut pending = Vec::new();
        for (part, chunks) in routed {
            for (idx, bytes) in chunks {
                let key = (t.name.clone(), part);
                let seq = p.seqs.get(&key).copied().unwrap_or(0);
                let stamped = stamp(&bytes, p.producer_id, p.epoch, seq);
                match self.produce_start(&t.name, i64::from(part), stamped).await {
                    Ok(w) => {
                        p.seqs.insert(key, next_seq(seq, idx.len()));
                        pending.push((part, idx, w));
                    }
                    Err(e) => {
                        p.broken = true;
                        return Err(e);
                    }
                }
            }
        }
        let mut done: Vec<(u32, Vec<_>)> = Vec::new();
        for (part, idx, w) in pending {
            let at = match w.written() {
                Some(at) => {
                    p.unsynced.push(w);
                    at
                }
                None => w.durable().await.inspect_err(|_| p.broken = true)?,
            };
            match done.last_mut() {
                Some((q, v)) if *q == part => v.push((idx, at)),
                _ => done.push((part, vec![(idx, at)])),
            }
        }
        if p.unsynced.len() >= UNSYNCED_MAX {
            self.flush_txn(p).await?;
        }
        Ok(answers(n, done))
    }

    /// Waits until every append of `p`'s open transaction is durable (per the topics' sync
    /// policy). A failure breaks the transaction: it can only be aborted.
    pub async fn flush_txn(&self, p: &mut TxnProducer) -> Result<()> {
        for w in std::mem::take(&mut p.unsynced) {
            w.durable().await.inspect_err(|_| p.broken = true)?;
        }
        Ok(())
    }

    /// Commits `p`'s open transaction (nothing when none is open). An error leaves its outcome
    /// to [`Broker::settle_bus_txn`].
    pub async fn commit_txn(&self, p: &mut TxnProducer) -> Result<()> {
        if p.open.is_none() {
            return Ok(());
        }
        if p.broken {
            return Err(BrokerError::InvalidTxnState(
                "a write of this transaction failed: it can only be aborted".into(),
            ));
        }
        // Its data is durable before the commit is (a crash must not keep a commit marker
        // whose records were lost).
        self.flush_txn(p).await?;
        self.end_txn(&p.id, p.producer_id, p.epoch, true).await?;
        p.open = None;
        p.added.clear();
        Ok(())
    }

    /// What became of the bus's transaction number `seq` of `id`, recorded as open before its
    /// EndTxn: committed if the coordinator committed it or it is still open (it is committed
    /// now, as its position is already stored); aborted otherwise (it timed out, or the id is
    /// unknown). A later transaction of the id began only after this one committed.
    pub async fn settle_bus_txn(&self, id: &str, seq: u64) -> Result<Fate> {
        // Cluster mode: the record as the shared store has it (the worker may have moved here
        // from a broker that died between its position write and its EndTxn).
        {
            let _g = self.txns.lock_id(id).await;
            self.coordinate_txn(id).await?;
        }
        let Some(t) = self.txns.get(id) else {
            return Ok(Fate::Aborted);
        };
        if t.seq != seq {
            return Ok(if t.seq > seq {
                Fate::Committed
            } else {
                Fate::Aborted
            });
        }
        match t.state {
            TxnState::Ongoing | TxnState::PrepareCommit => {
                self.end_txn(id, t.producer_id, t.epoch, true).await?;
                Ok(Fate::Committed)
            }
            TxnState::CompleteCommit => Ok(Fate::Committed),
            TxnState::PrepareAbort => {
                self.end_txn(id, t.producer_id, t.epoch, false).await?;
                Ok(Fate::Aborted)
            }
            TxnState::Empty | TxnState::CompleteAbort => Ok(Fate::Aborted),
        }
    }

    /// Forgets the bus's transactional id `id` (its subscription is deleted): a transaction it
    /// left open is aborted first.
    pub async fn forget_bus_txn(&self, id: &str) -> Result<()> {
        {
            let _g = self.txns.lock_id(id).await;
            self.coordinate_txn(id).await?;
            if self.txns.get(id).is_none() {
                self.give_up_txn(id).await;
                return Ok(());
            }
        }
        let timeout = TIMEOUT_MS.min(self.txns.config.max_timeout_ms);
        let (pid, epoch) = self.init_transactional(id, timeout, None).await?;
        let _g = self.txns.lock_id(id).await;
        self.coordinate_txn(id).await?;
        // Only the record as that InitProducerId left it (no transaction opened since).
        if let Some(t) = self.txns.get(id) {
            if t.producer_id == pid && t.epoch == epoch && t.state.is_idle() {
                self.store_txn(id, None, vec![], false).await?;
            }
        }
        self.give_up_txn(id).await;
        Ok(())
    }

    /// Cluster mode: gives the lease of transactional id `id` up when this broker holds it.
    async fn give_up_txn(&self, id: &str) {
        let of = crate::shared::Coordinated::Txn;
        if let Some(shared) = self.shared.get().filter(|s| s.holds(of, id)) {
            shared.give_up(of, id).await;
        }
    }

    /// Cluster mode, when the worker of the bus's transactional id `id` stopped here for good
    /// (paused, moved, deleted): a transaction it left open is aborted (its position write
    /// failed or never came; the record it may have left is settled as aborted, which rolls
    /// the positions back with it) and the id's lease given up, so the broker that runs the
    /// subscription next coordinates it at once. Single-node mode: nothing to do.
    pub async fn hand_over_bus_txn(&self, id: &str) {
        let Some(shared) = self.shared.get().cloned() else {
            return;
        };
        let of = crate::shared::Coordinated::Txn;
        let open = {
            let _g = self.txns.lock_id(id).await;
            if !shared.holds(of, id) {
                return;
            }
            match self.txns.get(id).filter(|t| !t.state.is_idle()) {
                // A prepared one is completed here and now.
                Some(t) if t.state != TxnState::Ongoing => {
                    if let Err(e) = self.complete(id, t).await {
                        let msg = format!("completing the transaction of {id:?} on its stop: {e}");
                        crate::log::warn("busbar", "bus_txn", &msg, &[]);
                    }
                    None
                }
                t => t,
            }
        };
        if let Some(t) = open {
            if let Err(e) = self.end_txn(id, t.producer_id, t.epoch, false).await {
                // Given up all the same: the broker that takes the id next, or any broker's
                // tick once the lease is free, ends it.
                let msg = format!("aborting the open transaction of {id:?} on its stop: {e}");
                crate::log::warn("busbar", "bus_txn", &msg, &[]);
            }
        }
        let _g = self.txns.lock_id(id).await;
        if shared.holds(of, id) {
            shared.give_up(of, id).await;
        }
    }
}

/// `bytes` (a batch as built for publishing) as a transactional batch of `producer_id` at
/// `epoch`, starting at sequence `seq`.
fn stamp(bytes: &[u8], producer_id: i64, epoch: i16, seq: i32) -> Vec<u8> {
    let mut h = BatchHeader::parse(bytes).expect("a built batch parses");
    h.attributes |= TRANSACTIONAL;
    h.producer_id = producer_id;
    h.producer_epoch = epoch;
    h.base_sequence = seq;
    batch::assemble(&h, &bytes[batch::HEADER_BYTES..])
}

/// The sequence after `records` records from `seq` (wrapping past `i32::MAX` to 0, as Kafka's).
fn next_seq(seq: i32, records: usize) -> i32 {
    ((i64::from(seq) + records as i64) % (i64::from(i32::MAX) + 1)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_to_zero_after_the_largest() {
        assert_eq!(next_seq(0, 3), 3);
        assert_eq!(next_seq(i32::MAX, 1), 0);
        assert_eq!(next_seq(i32::MAX - 1, 3), 1);
    }

    #[test]
    fn only_the_prefix_is_reserved() {
        assert!(reserved("__busbar.subscription.a"));
        assert!(!reserved("busbar.subscription.a"));
        assert!(!reserved("app-1"));
    }
}
