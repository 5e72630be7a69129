//! The transaction coordinator's timer and its start-up passes: completing interrupted
//! transactions, aborting timed-out ones, forgetting idle ids, pruning the aborted index
//! (cluster mode: keeping open transactions' leases, reconciling the shared store's ends).

use super::{Aborted, Txn, TxnPartition, TxnState};
use crate::broker::Broker;
use crate::error::Result;
use crate::topic::Partition;
use std::sync::Arc;

impl Broker {
    /// Registers every open transaction with its partitions (at start-up, and after a caller
    /// stopped waiting between a durable AddPartitionsToTxn and that step).
    ///
    /// The coordinator's state stays read-locked throughout: a transaction completing meanwhile
    /// records its Complete state (write lock) before it closes its partitions, so a transaction
    /// seen open here cannot be closed before it is registered, and stay open forever.
    pub(crate) fn sync_open_transactions(&self) {
        let state = self.txns.read();
        let open = state
            .txns
            .values()
            .filter(|t| t.state == TxnState::Ongoing || t.state.preparing());
        for t in open {
            for tp in &t.partitions {
                if let Some(p) = self.txn_partition(tp) {
                    // After a power loss the log may have come back shorter than the end it had
                    // when the partition joined: the transaction's batches start at most there.
                    let end = p.log.stats().next_offset;
                    p.txns.open(t.producer_id, tp.first.min(end));
                }
            }
        }
    }

    /// Attaches the aborted index read at open to the partitions; rows of topics that are gone
    /// are kept aside for the timer to delete.
    pub(crate) fn attach_aborted(&self) {
        let mut stale = Vec::new();
        let mut found: Vec<(Arc<Partition>, Aborted)> = Vec::new();
        for (topic, topic_id, partition, a) in self.txns.take_loaded_aborted() {
            let tp = TxnPartition {
                topic,
                topic_id: topic_id.clone(),
                partition,
                first: a.first,
            };
            match self.txn_partition(&tp) {
                Some(p) => found.push((p, a)),
                None => stale.push((tp.topic, topic_id, partition, a)),
            }
        }
        let mut by_partition: std::collections::HashMap<
            *const Partition,
            (Arc<Partition>, Vec<_>),
        > = std::collections::HashMap::new();
        for (p, a) in found {
            by_partition
                .entry(Arc::as_ptr(&p))
                .or_insert_with(|| (p.clone(), Vec::new()))
                .1
                .push(a);
        }
        for (p, list) in by_partition.into_values() {
            p.txns.add_aborted_many(list);
        }
        self.txns.keep_stale(stale);
    }

    /// The coordinator's timer: completes transactions left prepared, aborts (and fences) those
    /// past their timeout, forgets idle transactional ids, prunes the aborted index below each
    /// log start. Errors are left for the next tick.
    pub async fn tick_transactions(&self) {
        let cluster = self.shared.get();
        if cluster.is_none() {
            self.sync_open_transactions();
        }
        let now = self.config.clock.now_ms();
        let expiry = self.txns.config.id_expiration_ms;
        // The bus's own ids live as long as their subscription (`producer.rs`).
        let due = |id: &str, t: &Txn| match t.state {
            s if s.preparing() => true,
            TxnState::Ongoing => now.saturating_sub(t.started_ms) > t.timeout_ms,
            _ => !super::producer::reserved(id) && now.saturating_sub(t.updated_ms) > expiry,
        };
        // Only the ids with something to do are locked (a producer's own calls wait on the lock).
        let candidates: Vec<String> = {
            let state = self.txns.read();
            // Cluster mode: the leases of this broker's open transactions are kept while they
            // are open, however idle their producers (a lapsed one would be taken over and its
            // timeout started again).
            if let Some(shared) = cluster {
                let open = |t: &&Txn| t.state == TxnState::Ongoing || t.state.preparing();
                for (id, _) in state.txns.iter().filter(|(_, t)| open(t)) {
                    shared.holds(crate::shared::Coordinated::Txn, id);
                }
            }
            let mut ids: Vec<String> = state
                .txns
                .iter()
                .filter(|(id, t)| due(id, t))
                .map(|(id, _)| id.clone())
                .collect();
            ids.sort();
            ids
        };
        for id in candidates {
            // A busy id (its producer's call under way, or a completion stuck on a slow disk)
            // waits for the next tick: it does not hold up the others.
            let Some(_g) = self.txns.try_lock_id(&id) else {
                continue;
            };
            // Cluster mode: only while this broker coordinates it (else its memory is stale).
            if cluster.is_some_and(|s| !s.holds(crate::shared::Coordinated::Txn, &id)) {
                continue;
            }
            let Some(t) = self.txns.get(&id) else {
                continue;
            };
            let _ = match t.state {
                s if s.preparing() => self.complete(&id, t).await.map(drop),
                TxnState::Ongoing if now.saturating_sub(t.started_ms) > t.timeout_ms => {
                    self.expire(&id, t).await
                }
                TxnState::Ongoing => Ok(()),
                _ if due(&id, &t) => self.store_txn(&id, None, vec![], false).await.map(drop),
                _ => Ok(()),
            };
        }
        let mut gone = Vec::new();
        for t in self.all_topics() {
            for p in &t.partitions {
                if p.txns.aborted_len() > 0 {
                    let start = p.log.stats().log_start;
                    gone.extend(
                        p.txns
                            .prune(start)
                            .into_iter()
                            .map(|a| (t.id.clone(), p.index, a)),
                    );
                }
            }
        }
        let stale = self.txns.take_loaded_aborted();
        gone.extend(stale.into_iter().map(|(_, tid, p, a)| (tid, p, a)));
        if !gone.is_empty() && cluster.is_none() {
            let _ = self.txns.forget_aborted(gone).await;
        }
        self.reconcile_txns().await;
        self.apply_all_txn_offsets().await;
    }

    /// Aborts a transaction past its timeout and bumps the epoch, so the producer that let it
    /// expire is fenced.
    pub(super) async fn expire(&self, id: &str, mut t: Txn) -> Result<()> {
        t.fence = true;
        self.finish(id, t, false).await.map(drop)
    }
}
