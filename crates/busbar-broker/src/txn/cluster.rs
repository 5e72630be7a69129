//! Transactions in cluster mode (issue 20; `docs/cluster.md`, "Transactions").
//!
//! - **Coordinator**: the broker holding the transactional id's lease (kind `txn`; FindCoordinator
//!   answers it). Taking the lease loads the id's record from the shared store; every write of
//!   the record goes to the shared store, fenced by the lease, with the producer's epoch (so a
//!   fenced producer's batches are refused by whichever broker they reach) and the partitions
//!   joining the transaction (a transactional batch is stored only while its partition is in
//!   its producer's open transaction at its epoch, checked in the commit that stores it). The
//!   markers are committed through the shared store like batches; a marker ends only its own
//!   transaction's registration (matched by the transaction's number), so a coordinator that
//!   lost its lease cannot end the next transaction.
//! - **Copies**: each broker's copy of a partition learns transactions from what it applies (a
//!   transactional batch opens its producer's transaction there, a marker closes it, an ABORT
//!   marker adds it to the aborted index: [`note_applied`]), and from the shared store: its open
//!   transactions and aborted index are loaded at start, and each tick closes the transactions a
//!   copy holds open that the store has ended (a copy no longer kept current, or started over
//!   past the marker), with their aborted-index entries.
//! - **Orphans**: an open transaction whose coordinator died is taken over by a broker's tick
//!   (any broker may take the free lease), which completes or expires it as its own.

use super::{Aborted, Transactions, Txn, TxnState};
use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use crate::shared::{Coordinated, TxnWrite};
use crate::topic::Partition;
use busbar_log::batch::BatchHeader;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Most orphaned transactions one tick takes over.
const ORPHANS_PER_TICK: usize = 16;

/// Most groups one tick looks at for committed transactions' offsets to apply.
const GROUPS_PER_TICK: usize = 100;

impl Broker {
    /// Cluster mode: ensures this broker coordinates transactional id `id` now, taking its lease
    /// and loading its record when it did not hold it (NOT_COORDINATOR when another live broker
    /// does). Single-node mode: always. Called with the id's lock held.
    pub(crate) async fn coordinate_txn(&self, id: &str) -> Result<()> {
        let Some(shared) = self.shared.get() else {
            return Ok(());
        };
        let of = Coordinated::Txn;
        if shared.holds(of, id) {
            return Ok(());
        }
        let _one = self.lease_takes.lock().await;
        if shared.holds(of, id) {
            return Ok(());
        }
        let not_here = || {
            BrokerError::NotCoordinator(
                "another broker of the cluster coordinates this transactional id".into(),
            )
        };
        let Some((sent, _)) = shared.take(of, id).await? else {
            return Err(not_here());
        };
        let loaded = match shared.load_txn(id).await {
            Ok(Some(json)) => serde_json::from_str::<Txn>(&json).map(Some).map_err(|e| {
                BrokerError::Storage(format!("the transactional id's record is damaged: {e}"))
            }),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        match loaded {
            Ok(mut txn) => {
                // A transaction this broker did not start (or whose record it no longer has):
                // its timeout runs again from here by this broker's clock (one moved may so
                // last up to twice its timeout, never be cut short by clock skew).
                let known = self.txns.get(id);
                if let Some(t) = txn.as_mut().filter(|t| t.state == TxnState::Ongoing) {
                    t.started_ms = match known {
                        Some(m)
                            if (m.producer_id, m.epoch, m.seq)
                                == (t.producer_id, t.epoch, t.seq) =>
                        {
                            m.started_ms
                        }
                        _ => self.config.clock.now_ms(),
                    };
                }
                self.txns.replace(id, txn)
            }
            Err(e) => {
                shared.release(of, id);
                return Err(e);
            }
        }
        shared.confirm(of, id, sent);
        // A load slower than the lease's local window must not be acted on.
        if shared.holds(of, id) {
            Ok(())
        } else {
            Err(not_here())
        }
    }

    /// Writes `id`'s record (`None` forgets it) durably, then to memory: to the coordinator's
    /// log (single node) or to the shared store, fenced by the id's lease (cluster), with
    /// `joined`, the partitions new to its transaction (topic id, partition), whose registered
    /// first offsets it answers (cluster mode only). `new_id`: the id was unknown.
    pub(crate) async fn store_txn(
        &self,
        id: &str,
        txn: Option<Txn>,
        joined: Vec<(String, u32)>,
        new_id: bool,
    ) -> Result<Vec<u64>> {
        let Some(shared) = self.shared.get().cloned() else {
            self.txns.put(id, txn, vec![]).await?;
            return Ok(vec![]);
        };
        let record = Transactions::encode(txn.as_ref())?
            .map(|v| String::from_utf8(v).expect("JSON is UTF-8"));
        let w = TxnWrite {
            id: id.to_string(),
            record,
            open: txn
                .as_ref()
                .is_some_and(|t| t.state == TxnState::Ongoing || t.state.preparing()),
            producer: txn.as_ref().map(|t| (t.producer_id, t.epoch)),
            joined,
            seq: txn.as_ref().map_or(0, |t| t.seq),
            ids_max: (new_id && !super::producer::reserved(id)).then_some(self.txns.config.ids_max),
        };
        let state = self.txns.state.clone();
        let id = id.to_string();
        // The write and memory together, even when the caller stops waiting. A write that
        // failed may have committed: the lease is given up here, so the next request loads
        // the record again before acting.
        tokio::spawn(async move {
            match shared.write_txn(w).await {
                Ok(firsts) => {
                    state
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .put(&id, txn);
                    Ok(firsts)
                }
                Err(e) => {
                    shared.release(Coordinated::Txn, &id);
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| BrokerError::Storage(format!("transaction write failed: {e}")))?
    }

    /// A producer id of its own for a transactional id (new, or its epochs exhausted).
    pub(crate) async fn txn_producer_id(&self) -> Result<i64> {
        match self.shared.get() {
            Some(shared) => Ok(shared.init_producer_id(None).await?.0),
            None => Ok(self.producer_ids.init(None)?.0),
        }
    }

    /// Cluster mode: commits the markers of `t`'s transaction on every partition the shared
    /// store registered in it (applied to this broker's copies as produced batches are; a
    /// partition of a topic this broker does not know yet is marked in the store only).
    pub(crate) async fn end_shared(&self, t: &Txn, commit: bool) -> Result<()> {
        let shared = self
            .shared
            .get()
            .ok_or_else(|| BrokerError::Storage("shared markers outside cluster mode".into()))?;
        let now = self.config.clock.now_ms();
        let marker = super::marker::build(t.producer_id, t.epoch, commit, now);
        for (topic_id, partition) in shared.txn_partitions_of(t.producer_id, t.seq).await? {
            let local = self.topic_by_id(&topic_id).and_then(|topic| {
                let p = topic.partitions.get(partition as usize).cloned()?;
                Some((topic, p))
            });
            match local {
                Some((topic, p)) => {
                    crate::shared::commit_marker(shared, topic, p, marker.clone(), t.seq).await?;
                }
                None => {
                    shared
                        .append_marker(&topic_id, partition, marker.clone(), t.seq)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Cluster mode's TxnOffsetCommit, on the group's coordinator (NOT_COORDINATOR elsewhere):
    /// the member is checked as an OffsetCommit's, then the offsets are staged in the shared
    /// store against the transaction's record there.
    pub(crate) async fn txn_offset_commit_shared(
        &self,
        id: &str,
        group: &str,
        pid: i64,
        epoch: i16,
        member: Option<(&str, i32)>,
        offsets: Vec<(String, i32, i64, String)>,
    ) -> Result<Vec<super::PartitionAdd>> {
        let shared = self
            .shared
            .get()
            .ok_or_else(|| BrokerError::Storage("staged offsets outside cluster mode".into()))?;
        if !self.coordinates(group).await? {
            return Err(BrokerError::NotCoordinator(
                "another broker of the cluster coordinates this group".into(),
            ));
        }
        if let Some((member, generation)) = member.filter(|(m, g)| !m.is_empty() || *g >= 0) {
            let known = !self.offsets.group_raw(group).is_empty();
            self.groups.check_commit(group, member, generation, known)?;
        }
        let (answers, staged) = self.checked_txn_offsets(offsets);
        if !staged.is_empty() {
            shared
                .stage_txn_offsets(crate::shared::StagedOffsets {
                    id: id.to_string(),
                    pid,
                    epoch,
                    group: group.to_string(),
                    offsets: staged,
                    max: self.txns.config.partitions_max,
                })
                .await?;
        }
        Ok(answers)
    }

    /// The partitions of `group` whose offsets a transaction has staged and not yet ended
    /// (OffsetFetch `require_stable`): this broker's records, or the shared store's.
    pub async fn unstable_offsets(&self, group: &str) -> Result<Vec<(String, u32)>> {
        match self.shared.get() {
            Some(shared) => shared.staged_offsets_of(group).await,
            None => Ok(self.pending_txn_offsets(group)),
        }
    }

    /// Cluster mode: when this broker coordinates `group`, commits the offsets committed
    /// transactions staged for it (as an OffsetCommit would: the shared store first, fenced by
    /// the group's lease, then this broker's copy; the newest transaction's offset of a
    /// partition wins), then deletes the rows. Until then require_stable fetches of those
    /// partitions answer UNSTABLE_OFFSET_COMMIT. Serialized per broker.
    pub async fn apply_txn_offsets(&self, group: &str) -> Result<()> {
        let Some(shared) = self.shared.get() else {
            return Ok(());
        };
        if !shared.holds(Coordinated::Group, group) {
            return Ok(());
        }
        let _one = self.txn_offsets_applying.lock().await;
        let rows = shared.committed_txn_offsets(group).await?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut newest: std::collections::BTreeMap<(String, u32), &crate::shared::TxnCommitted> =
            Default::default();
        for r in &rows {
            newest.insert((r.topic.clone(), r.partition), r);
        }
        let commits = newest
            .into_values()
            .map(|r| crate::offsets::RawCommit {
                topic: r.topic.clone(),
                partition: r.partition,
                offset: r.offset,
                metadata: r.metadata.clone(),
            })
            .collect();
        self.offsets.commit(group, commits).await?;
        shared.forget_txn_offsets(group, rows).await
    }

    /// Cluster mode: [`Broker::apply_txn_offsets`] for every group with committed offsets
    /// waiting (a notification lost while the listener was down, or sent while the group's
    /// lease moved): each coordinator tick.
    pub async fn apply_all_txn_offsets(&self) {
        let Some(shared) = self.shared.get() else {
            return;
        };
        let Ok(groups) = shared.groups_with_txn_offsets(GROUPS_PER_TICK).await else {
            return;
        };
        for g in groups {
            let _ = self.apply_txn_offsets(&g).await;
        }
    }

    /// The transactional id producer `pid` belongs to: this broker's records, else (cluster
    /// mode) the shared store's.
    pub async fn txn_owner(&self, pid: i64) -> Result<Option<String>> {
        if let Some(id) = self.transactional_id_of(pid) {
            return Ok(Some(id));
        }
        let Some(shared) = self.shared.get() else {
            return Ok(None);
        };
        let cached = self.owners().get(&pid).cloned();
        if cached.is_some() {
            return Ok(cached);
        }
        let found = shared.txn_owner(pid).await?;
        if let Some(id) = &found {
            let mut owners = self.owners();
            if owners.len() >= super::OWNERS_MAX {
                owners.clear();
            }
            owners.insert(pid, id.clone());
        }
        Ok(found)
    }

    fn owners(&self) -> std::sync::MutexGuard<'_, HashMap<i64, String>> {
        self.txns.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cluster mode: loads the shared store's open transactions and aborted index into this
    /// broker's copies (when it joins, before it applies or serves anything).
    pub async fn load_shared_txns(&self) -> Result<()> {
        let Some(shared) = self.shared.get() else {
            return Ok(());
        };
        let state = shared.txn_partition_state(None).await?;
        // A copy that starts below the cluster's log start (its own retention lags the
        // cluster's by up to a segment) is trimmed to it first: the index is pruned below it.
        for (topic_id, partition, first, start) in &state.starts {
            let Some(topic) = self.topic_by_id(topic_id) else {
                continue;
            };
            let Some(p) = topic.partitions.get(*partition as usize).cloned() else {
                continue;
            };
            p.replica.heard_start(*start);
            let stats = p.log.stats();
            if stats.log_start >= *start {
                continue;
            }
            // A copy ending below the first stored offset starts over there; one holding the
            // start drops what lies below it (else the catch-up that brings it there does).
            let trimmed = if *first > stats.high_watermark {
                crate::shared::start_over(&topic, &p, stats.high_watermark, *first).await
            } else {
                crate::shared::trim_now(&p).await
            };
            // One copy that cannot be trimmed does not keep the broker from serving the rest
            // (its reads fail as its log does).
            if let Err(e) = trimmed {
                crate::log::warn(
                    "busbar",
                    "cluster_copy_trim_failed",
                    &format!(
                        "cluster: trimming the local copy of {}/{} to the cluster's log start \
                         {start} failed: {e}",
                        topic.name, partition
                    ),
                    &[],
                );
            }
        }
        for r in state.open {
            if let Some(p) = self.partition_by_id(&r.topic_id, r.partition) {
                p.txns.open(r.aborted.producer_id, r.aborted.first);
            }
        }
        let mut by_partition: HashMap<(String, u32), Vec<Aborted>> = HashMap::new();
        for r in state.aborted {
            by_partition
                .entry((r.topic_id, r.partition))
                .or_default()
                .push(r.aborted);
        }
        for ((topic_id, partition), list) in by_partition {
            if let Some(p) = self.partition_by_id(&topic_id, partition) {
                p.txns.add_aborted_many(list);
            }
        }
        Ok(())
    }

    fn partition_by_id(&self, topic_id: &str, partition: u32) -> Option<Arc<Partition>> {
        let t = self.topic_by_id(topic_id)?;
        t.partitions.get(partition as usize).cloned()
    }

    /// Cluster mode, each tick: closes the transactions this broker's copies hold open that the
    /// shared store has ended, and takes over open transactions no live broker coordinates.
    /// Errors wait for the next tick.
    pub(crate) async fn reconcile_txns(&self) {
        let Some(shared) = self.shared.get() else {
            return;
        };
        // What the copies hold open, before the store is read: an entry the store no longer
        // has was registered when its batch was stored, so its marker was committed since.
        let mut local = Vec::new();
        for t in self.all_topics() {
            for p in &t.partitions {
                for (pid, first) in p.txns.open_list() {
                    local.push((t.id.clone(), p.clone(), pid, first));
                }
            }
        }
        if !local.is_empty() {
            let _ = self.close_ended(shared.as_ref(), local).await;
        }
        let Ok(orphans) = shared.orphan_txns(ORPHANS_PER_TICK).await else {
            return;
        };
        for id in orphans {
            if let Some(_g) = self.txns.try_lock_id(&id) {
                if self.coordinate_txn(&id).await.is_ok() && super::producer::reserved(&id) {
                    self.end_orphan_bus_txn(shared.as_ref(), &id).await;
                }
            }
        }
    }

    /// A bus transaction (a topic target's) whose coordinator died died with its writer (the
    /// subscription's worker runs where its transactional id is coordinated): it is ended at
    /// once, not after its timeout (aborted and the epoch bumped; a prepared one completed), and
    /// the lease given up, so the broker that runs the subscription next takes the id at once
    /// and settles its record either way (`busbar-bus` `worker/exactly.rs`). Called with the
    /// id's lock held.
    async fn end_orphan_bus_txn(&self, shared: &dyn crate::shared::SharedLog, id: &str) {
        let Some(t) = self.txns.get(id) else {
            return;
        };
        let ended = match t.state {
            s if s.preparing() => self.complete(id, t).await.map(drop),
            TxnState::Ongoing => self.expire(id, t).await,
            _ => Ok(()),
        };
        if ended.is_ok() {
            shared.give_up(Coordinated::Txn, id).await;
        }
    }
}

impl Broker {
    /// Closes the `local` open transactions (topic id, partition, producer id, first offset)
    /// the shared store has ended, with their aborted-index rows.
    async fn close_ended(
        &self,
        shared: &dyn crate::shared::SharedLog,
        local: Vec<(String, Arc<Partition>, i64, u64)>,
    ) -> Result<()> {
        let state = shared.txn_partition_state(Some(Vec::new())).await?;
        let open: HashSet<(&str, u32, i64)> = state
            .open
            .iter()
            .map(|r| (r.topic_id.as_str(), r.partition, r.aborted.producer_id))
            .collect();
        let ended: Vec<_> = local
            .into_iter()
            .filter(|(t, p, pid, _)| !open.contains(&(t.as_str(), p.index, *pid)))
            .collect();
        if ended.is_empty() {
            return Ok(());
        }
        let mut parts: Vec<(String, u32)> = ended
            .iter()
            .map(|(t, p, ..)| (t.clone(), p.index))
            .collect();
        parts.sort();
        parts.dedup();
        let index = shared.txn_partition_state(Some(parts)).await?.aborted;
        for (topic_id, p, pid, first) in ended {
            let aborted = index
                .iter()
                .filter(|r| r.topic_id == topic_id && r.partition == p.index)
                .map(|r| r.aborted)
                .filter(|a| a.producer_id == pid && a.last >= first)
                .collect();
            p.txns.close_if(pid, first, aborted);
            p.appended.notify_waiters();
        }
        Ok(())
    }
}

/// A shared batch is about to be applied to `p`'s copy at `base`: a transactional batch opens
/// its producer's transaction there first (so no read sees it readable and stable).
pub(crate) fn note_applying(p: &Partition, base: u64, bytes: &[u8]) {
    let Ok(h) = BatchHeader::parse(bytes) else {
        return;
    };
    if h.is_transactional() && !h.is_control() && h.producer_id >= 0 {
        p.txns.open(h.producer_id, base);
    }
}

/// A shared batch was applied to `p`'s copy at `base`: a marker closes its producer's
/// transaction there (an ABORT marker indexes the transaction, from the first offset the copy
/// knows of it, else the marker's own).
pub(crate) fn note_applied(p: &Partition, base: u64, bytes: &[u8]) {
    let Ok(h) = BatchHeader::parse(bytes) else {
        return;
    };
    if !h.is_transactional() || !h.is_control() || h.producer_id < 0 {
        return;
    }
    let Some(commit) = super::marker::kind(bytes) else {
        return;
    };
    let aborted = (!commit).then(|| Aborted {
        producer_id: h.producer_id,
        first: p.txns.first_of(h.producer_id).unwrap_or(base),
        last: base,
    });
    p.txns.close(h.producer_id, aborted);
}
