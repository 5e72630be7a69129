//! The [`Broker`]'s transaction operations, the Kafka APIs' semantics (`txn.rs` has the states):
//! InitProducerId with a transactional id, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit,
//! EndTxn, completing and marking a transaction. The coordinator's timer is `timer.rs`; isolated
//! reads are `reads.rs`.

use super::{Aborted, PendingOffset, Transactions, Txn, TxnPartition, TxnState};
use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use crate::topic::Partition;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One partition's answer to AddPartitionsToTxn / TxnOffsetCommit: `None` when accepted.
pub type PartitionAdd = (String, i32, Option<BrokerError>);

/// An offset a transaction stages: topic, partition, offset, metadata.
pub type StagedOffset = (String, u32, i64, String);

/// Longest transactional id, bytes.
pub const TRANSACTIONAL_ID_BYTES_MAX: usize = 4096;

fn owner(t: &Txn, pid: i64, epoch: i16) -> Result<()> {
    if t.producer_id != pid {
        return Err(BrokerError::InvalidProducerIdMapping(format!(
            "the transactional id belongs to producer {}, not {pid}",
            t.producer_id
        )));
    }
    if t.epoch != epoch {
        return Err(BrokerError::ProducerFenced(format!(
            "epoch {epoch} is not the current epoch {}: a newer producer with this \
             transactional id fenced this one",
            t.epoch
        )));
    }
    Ok(())
}

fn unknown_id(id: &str) -> BrokerError {
    BrokerError::InvalidProducerIdMapping(format!(
        "transactional id '{}' has no producer: call InitProducerId first",
        id.chars().take(200).collect::<String>()
    ))
}

impl Broker {
    /// InitProducerId with a transactional id: a new id gets a new producer id at epoch 0; a
    /// known one keeps its producer id with the next epoch (fencing the previous producer),
    /// after completing or aborting the transaction it left open. `current` (KIP-360) must name
    /// the current producer and epoch when given.
    pub async fn init_transactional(
        &self,
        id: &str,
        timeout_ms: i64,
        current: Option<(i64, i16)>,
    ) -> Result<(i64, i16)> {
        if id.is_empty() || id.len() > TRANSACTIONAL_ID_BYTES_MAX {
            return Err(BrokerError::InvalidRequest(format!(
                "a transactional id has 1 to {TRANSACTIONAL_ID_BYTES_MAX} bytes"
            )));
        }
        let max = self.txns.config.max_timeout_ms;
        if timeout_ms <= 0 || timeout_ms > max {
            return Err(BrokerError::InvalidTransactionTimeout(format!(
                "transaction.timeout.ms {timeout_ms} is not within 1..={max} \
                 (the broker's transactions.max_timeout_ms)"
            )));
        }
        let _g = self.txns.lock_id(id).await;
        self.coordinate_txn(id).await?;
        let now = self.config.clock.now_ms();
        let Some(mut t) = self.txns.get(id) else {
            // The bus's own ids (one per subscription with a topic target, bounded by
            // `subscriptions_max`) are not counted against clients' ids.
            let clients = |st: &super::State| {
                let bus = st.txns.keys().filter(|k| super::producer::reserved(k));
                st.txns.len() - bus.count()
            };
            // (Cluster mode: counted across the cluster when the record is written.)
            let full = !super::producer::reserved(id)
                && self.shared.get().is_none()
                && clients(&self.txns.read()) >= self.txns.config.ids_max;
            if full {
                return Err(BrokerError::TooManyTransactions(format!(
                    "{} transactional ids are in use (transactions.ids_max)",
                    self.txns.config.ids_max
                )));
            }
            let pid = self.txn_producer_id().await?;
            let t = Txn {
                producer_id: pid,
                epoch: 0,
                timeout_ms,
                state: TxnState::Empty,
                partitions: vec![],
                groups: vec![],
                offsets: vec![],
                started_ms: now,
                updated_ms: now,
                fence: false,
                seq: 0,
            };
            self.store_txn(id, Some(t), vec![], true).await?;
            return Ok((pid, 0));
        };
        if let Some((pid, epoch)) = current.filter(|(pid, _)| *pid >= 0) {
            owner(&t, pid, epoch)?;
        }
        if t.state.preparing() {
            t = self.complete(id, t).await?;
        }
        if t.state == TxnState::Ongoing {
            t = self.finish(id, t, false).await?;
        }
        self.bump(&mut t).await?;
        t.state = TxnState::Empty;
        t.timeout_ms = timeout_ms;
        t.updated_ms = now;
        self.store_txn(id, Some(t.clone()), vec![], false).await?;
        Ok((t.producer_id, t.epoch))
    }

    /// Records that Kafka connection `conn` added to `id`'s transaction number `seq` (called
    /// under the id's lock, once the addition is stored).
    fn note_connection(&self, id: &str, seq: u64, conn: Option<u64>) {
        if let Some(c) = conn {
            let mut state = self.txns.state.write().unwrap_or_else(|e| e.into_inner());
            let newest = state.conns.entry(id.to_string()).or_insert((seq, c));
            *newest = match newest.0 == seq {
                true => (seq, newest.1.max(c)),
                false => (seq, c),
            };
        }
    }

    /// The next epoch of `t`, or a new producer id at epoch 0 when the epoch is exhausted.
    async fn bump(&self, t: &mut Txn) -> Result<()> {
        if t.epoch >= i16::MAX - 1 {
            t.producer_id = self.txn_producer_id().await?;
            t.epoch = 0;
        } else {
            t.epoch += 1;
        }
        Ok(())
    }

    /// The record of `id` when `pid` at `epoch` owns it and may add to its transaction (not while
    /// the previous one completes).
    fn joinable(&self, id: &str, pid: i64, epoch: i16) -> Result<Txn> {
        let t = self.txns.get(id).ok_or_else(|| unknown_id(id))?;
        owner(&t, pid, epoch)?;
        if t.state.preparing() {
            return Err(BrokerError::ConcurrentTransactions(
                "the previous transaction is still completing".into(),
            ));
        }
        Ok(t)
    }

    /// Starts the next transaction of `t` when none is open.
    fn begin(t: &mut Txn, now: i64) {
        if t.state != TxnState::Ongoing {
            t.state = TxnState::Ongoing;
            t.seq += 1;
            t.partitions.clear();
            t.groups.clear();
            t.offsets.clear();
            t.started_ms = now;
        }
    }

    /// AddPartitionsToTxn: the partitions join the producer's transaction (starting one). Answers
    /// per partition; when one is unknown nothing is added and the others are not attempted.
    pub async fn add_partitions_to_txn(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        parts: Vec<(String, i32)>,
    ) -> Result<Vec<PartitionAdd>> {
        self.add_partitions_to_txn_via(id, pid, epoch, parts, None)
            .await
    }

    /// [`Self::add_partitions_to_txn`] from Kafka connection number `conn` (see
    /// [`Self::end_txn_via`]).
    pub async fn add_partitions_to_txn_via(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        parts: Vec<(String, i32)>,
        conn: Option<u64>,
    ) -> Result<Vec<PartitionAdd>> {
        let _g = self.txns.lock_id(id).await;
        self.coordinate_txn(id).await?;
        let mut t = self.joinable(id, pid, epoch)?;
        let mut found = Vec::with_capacity(parts.len());
        let mut errors: Vec<PartitionAdd> = Vec::new();
        for (topic, index) in &parts {
            match self
                .topic(topic)
                .and_then(|tt| Ok((tt.id.clone(), tt.partition(i64::from(*index))?.clone())))
            {
                Ok(found_one) => found.push((topic.clone(), *index, found_one)),
                Err(e) => errors.push((topic.clone(), *index, Some(e))),
            }
        }
        if !errors.is_empty() {
            let skipped = found.into_iter().map(|(t, i, _)| {
                let e = BrokerError::OperationNotAttempted("another partition failed".into());
                (t, i, Some(e))
            });
            errors.extend(skipped);
            return Ok(errors);
        }
        let now = self.config.clock.now_ms();
        Self::begin(&mut t, now);
        // Partitions new to the transaction hold the last stable offset from before the write
        // that records them (a produce on another connection may follow that write at once);
        // if the write fails they are released again.
        // Cluster mode: registered in the shared store with the record (each broker's copies
        // learn of the transaction from its batches, `cluster.rs`).
        let cluster = self.shared.get().is_some();
        let mut opened = Vec::new();
        let mut joined = Vec::new();
        for (topic, index, (topic_id, p)) in &found {
            let index = *index as u32;
            if t.has_partition(topic_id, index) {
                continue;
            }
            // A topic deleted and created again under the same name is another topic: its old
            // entry has no partition to mark any more.
            t.partitions
                .retain(|x| !(x.topic == *topic && x.partition == index));
            let first = p.log.stats().next_offset;
            t.partitions.push(TxnPartition {
                topic: topic.clone(),
                topic_id: topic_id.clone(),
                partition: index,
                first,
            });
            if cluster {
                joined.push((topic_id.clone(), index));
            } else if !p.txns.is_open(pid) {
                p.txns.open(pid, first);
                opened.push(p.clone());
            }
        }
        if t.partitions.len() > self.txns.config.partitions_max {
            for p in &opened {
                p.txns.close(pid, None);
            }
            return Err(BrokerError::InvalidRequest(format!(
                "a transaction holds at most {} partitions (transactions.partitions_max)",
                self.txns.config.partitions_max
            )));
        }
        t.updated_ms = now;
        if let Err(e) = self.store_txn(id, Some(t.clone()), joined, false).await {
            for p in &opened {
                p.txns.close(pid, None);
            }
            return Err(e);
        }
        self.note_connection(id, t.seq, conn);
        Ok(found.into_iter().map(|(t, i, _)| (t, i, None)).collect())
    }

    /// AddOffsetsToTxn: the group's offsets join the producer's transaction (starting one).
    pub async fn add_offsets_to_txn(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        group: &str,
    ) -> Result<()> {
        self.add_offsets_to_txn_via(id, pid, epoch, group, None)
            .await
    }

    /// [`Self::add_offsets_to_txn`] from Kafka connection number `conn` (see
    /// [`Self::end_txn_via`]).
    pub async fn add_offsets_to_txn_via(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        group: &str,
        conn: Option<u64>,
    ) -> Result<()> {
        if group.is_empty() {
            return Err(BrokerError::InvalidRequest(
                "group id must not be empty".into(),
            ));
        }
        let _g = self.txns.lock_id(id).await;
        self.coordinate_txn(id).await?;
        let mut t = self.joinable(id, pid, epoch)?;
        let now = self.config.clock.now_ms();
        Self::begin(&mut t, now);
        if !t.groups.iter().any(|g| g == group) {
            if t.groups.len() >= self.txns.config.partitions_max {
                return Err(BrokerError::InvalidRequest(format!(
                    "a transaction holds at most {} groups (transactions.partitions_max)",
                    self.txns.config.partitions_max
                )));
            }
            t.groups.push(group.to_string());
        }
        t.updated_ms = now;
        let seq = t.seq;
        self.store_txn(id, Some(t), vec![], false).await?;
        self.note_connection(id, seq, conn);
        Ok(())
    }

    /// TxnOffsetCommit: stages consumer offsets in the producer's transaction, applied when it
    /// commits and dropped when it aborts. `member` (v3+: member id and generation) is checked
    /// against the group as a commit would be.
    pub async fn txn_offset_commit(
        &self,
        id: &str,
        group: &str,
        pid: i64,
        epoch: i16,
        member: Option<(&str, i32)>,
        offsets: Vec<(String, i32, i64, String)>,
    ) -> Result<Vec<PartitionAdd>> {
        if self.shared.get().is_some() {
            return self
                .txn_offset_commit_shared(id, group, pid, epoch, member, offsets)
                .await;
        }
        let _g = self.txns.lock_id(id).await;
        let mut t = self.txns.get(id).ok_or_else(|| unknown_id(id))?;
        owner(&t, pid, epoch)?;
        if t.state != TxnState::Ongoing || !t.groups.iter().any(|g| g == group) {
            return Err(BrokerError::InvalidTxnState(format!(
                "group '{}' is not in an ongoing transaction (AddOffsetsToTxn first)",
                group.chars().take(200).collect::<String>()
            )));
        }
        if let Some((member, generation)) = member.filter(|(m, g)| !m.is_empty() || *g >= 0) {
            let known = !self.offsets.group_raw(group).is_empty();
            self.groups.check_commit(group, member, generation, known)?;
        }
        let (answers, staged) = self.checked_txn_offsets(offsets);
        for (topic, partition, offset, metadata) in staged {
            t.offsets
                .retain(|o| !(o.group == group && o.topic == topic && o.partition == partition));
            t.offsets.push(PendingOffset {
                group: group.to_string(),
                topic,
                partition,
                offset,
                metadata,
            });
        }
        if t.offsets.len() > self.txns.config.partitions_max {
            return Err(BrokerError::InvalidRequest(format!(
                "a transaction holds at most {} offsets (transactions.partitions_max)",
                self.txns.config.partitions_max
            )));
        }
        t.updated_ms = self.config.clock.now_ms();
        self.store_txn(id, Some(t), vec![], false).await?;
        Ok(answers)
    }

    /// TxnOffsetCommit's offsets checked (the partition exists, the metadata fits): each one's
    /// answer, and those to stage (topic, partition, offset, metadata).
    pub(crate) fn checked_txn_offsets(
        &self,
        offsets: Vec<(String, i32, i64, String)>,
    ) -> (Vec<PartitionAdd>, Vec<StagedOffset>) {
        let limit = self.config.offset_metadata_bytes_max;
        let mut answers = Vec::with_capacity(offsets.len());
        let mut staged = Vec::with_capacity(offsets.len());
        for (topic, index, offset, metadata) in offsets {
            let checked = self
                .topic(&topic)
                .and_then(|tt| tt.partition(i64::from(index)).map(|_| ()))
                .and(match metadata.len() {
                    size if size > limit => {
                        Err(BrokerError::OffsetMetadataTooLarge { size, limit })
                    }
                    _ => Ok(()),
                });
            match checked {
                Err(e) => answers.push((topic, index, Some(e))),
                Ok(()) => {
                    answers.push((topic.clone(), index, None));
                    staged.push((topic, index as u32, offset, metadata));
                }
            }
        }
        (answers, staged)
    }

    /// EndTxn: commits or aborts the producer's transaction. Only the producer and epoch that own
    /// the ongoing transaction may end it (a delayed EndTxn of an earlier one cannot end a later
    /// one: it is answered as a retry of what it asked, or refused). A retry after completion
    /// answers success when it asks the same outcome.
    pub async fn end_txn(&self, id: &str, pid: i64, epoch: i16, commit: bool) -> Result<()> {
        self.end_txn_via(id, pid, epoch, commit, None).await
    }

    /// [`Self::end_txn`] from Kafka connection number `conn` (numbered in the order they were
    /// accepted). While a transaction is open, an EndTxn from a connection older than the newest
    /// one that added to the id's transactions is refused (INVALID_TXN_STATE): it is a request of
    /// an earlier transaction, delayed in the network past its client's retry on a new
    /// connection and the start of the next transaction (the race Jepsen found in Kafka and
    /// Bufstream). Under Transactions V1 it carries the same producer id and epoch as the next
    /// transaction's own EndTxn; the connection it came on is what tells them apart. A client
    /// sends a transaction's requests to its coordinator on one connection at a time (librdkafka,
    /// the Java client, kafka-python, aiokafka, franz-go), so its own EndTxn never comes on an
    /// older one.
    pub async fn end_txn_via(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        commit: bool,
        conn: Option<u64>,
    ) -> Result<()> {
        let _g = self.txns.lock_id(id).await;
        self.coordinate_txn(id).await?;
        let t = self.txns.get(id).ok_or_else(|| unknown_id(id))?;
        owner(&t, pid, epoch)?;
        let newest = (self.txns.read().conns.get(id).copied())
            .and_then(|(seq, c)| (seq == t.seq).then_some(c));
        if let (Some(c), Some(newest), TxnState::Ongoing) = (conn, newest, t.state) {
            if c < newest {
                return Err(BrokerError::InvalidTxnState(format!(
                    "this EndTxn came on a connection older than the one the open transaction \
                     was added to from: a delayed request of an earlier transaction, refused \
                     (connection {c}, newest {newest})"
                )));
            }
        }
        match (t.state, commit) {
            (TxnState::Ongoing, _) => self.finish(id, t, commit).await.map(drop),
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(()),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                self.complete(id, t).await.map(drop)
            }
            (TxnState::PrepareCommit | TxnState::PrepareAbort, _) => Err(
                BrokerError::ConcurrentTransactions("the transaction is completing".into()),
            ),
            (state, _) => Err(BrokerError::InvalidTxnState(format!(
                "cannot {} a transaction in state {}",
                if commit { "commit" } else { "abort" },
                state.name()
            ))),
        }
    }

    /// Prepares the outcome durably, then completes it.
    pub(super) async fn finish(&self, id: &str, mut t: Txn, commit: bool) -> Result<Txn> {
        t.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        t.updated_ms = self.config.clock.now_ms();
        self.store_txn(id, Some(t.clone()), vec![], false).await?;
        self.complete(id, t).await
    }

    /// Completes a prepared transaction: a durable marker on every partition, the pending
    /// offsets committed (commit) and the aborted index written (abort), then the Complete
    /// state. Safe to repeat after a crash at any point: a second marker of an ended
    /// transaction is skipped by every reader.
    pub(super) async fn complete(&self, id: &str, mut t: Txn) -> Result<Txn> {
        let commit = t.state == TxnState::PrepareCommit;
        let mut aborted = Vec::new();
        let mut touched = Vec::new();
        let cluster = self.shared.get().is_some();
        if cluster {
            // Every partition the shared store registered in the transaction (the record may
            // lack one whose registration's outcome was unknown); the store indexes an abort
            // with its marker, and each copy closes the transaction when it applies the marker.
            // Then the offsets the groups' coordinators staged in it are committed or dropped.
            self.end_shared(&t, commit).await?;
            if let Some(shared) = self.shared.get() {
                shared.settle_txn_offsets(id, t.seq, commit).await?;
            }
        }
        for tp in t.partitions.iter().filter(|_| !cluster) {
            let Some(p) = self.txn_partition(tp) else {
                continue;
            };
            let last = self
                .write_marker(&p, t.producer_id, t.epoch, commit)
                .await?;
            // The registered first offset may be lower than the record's: clamped to the log
            // end found at start-up (`sync_open_transactions`).
            let first = p
                .txns
                .first_of(t.producer_id)
                .map_or(tp.first, |f| f.min(tp.first));
            let entry = Aborted {
                producer_id: t.producer_id,
                first,
                last,
            };
            if !commit {
                aborted.push((tp.clone(), entry));
            }
            touched.push((p, (!commit).then_some(entry)));
        }
        if commit {
            let mut by_group: BTreeMap<&str, Vec<crate::offsets::RawCommit>> = BTreeMap::new();
            for o in &t.offsets {
                by_group
                    .entry(o.group.as_str())
                    .or_default()
                    .push(crate::offsets::RawCommit {
                        topic: o.topic.clone(),
                        partition: o.partition,
                        offset: o.offset,
                        metadata: o.metadata.clone(),
                    });
            }
            for (group, commits) in by_group {
                self.offsets.commit(group, commits).await?;
            }
        }
        t.state = if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        t.updated_ms = self.config.clock.now_ms();
        let pid = t.producer_id;
        if std::mem::take(&mut t.fence) {
            self.bump(&mut t).await?;
        }
        // The index rows first (written in as many batches as they take), then the state.
        if !cluster {
            self.txns
                .add_aborted_rows(Transactions::aborted_rows(&aborted))
                .await?;
        }
        self.store_txn(id, Some(t.clone()), vec![], false).await?;
        for (p, entry) in touched {
            p.txns.close(pid, entry);
            p.appended.notify_waiters();
        }
        Ok(t)
    }

    /// The partition of `tp` if its topic still exists (the same topic, not a new one with its
    /// name).
    pub(super) fn txn_partition(&self, tp: &TxnPartition) -> Option<Arc<Partition>> {
        let t = self.topic(&tp.topic).ok().filter(|t| t.id == tp.topic_id)?;
        t.partition(i64::from(tp.partition)).ok().cloned()
    }

    /// Appends a marker and waits until it is durable; answers its offset.
    async fn write_marker(
        &self,
        p: &Arc<Partition>,
        pid: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<u64> {
        let mut b = super::marker::build(pid, epoch, commit, self.config.clock.now_ms());
        let (at, ticket) = p.log.append_start(&mut b)?;
        match ticket {
            Some(ticket) => {
                crate::sync::kick(p);
                crate::sync::durable(p, ticket).await?;
            }
            // The topic's policy does not wait (interval, never), but a marker must be durable
            // before the outcome is: else a lost marker leaves an aborted-index entry whose range
            // the producer's next transaction could fall into.
            None => {
                let log = p.log.clone();
                tokio::task::spawn_blocking(move || log.sync())
                    .await
                    .map_err(|e| BrokerError::Storage(format!("marker sync failed: {e}")))??;
            }
        }
        Ok(at.base_offset)
    }
}
