//! The broker's consumer-group operations: membership (through `group::Groups`), committed offsets
//! (through `offsets::OffsetStore`), listings with lag, deletion and offset resets, and the
//! background loop that drives session timeouts and maintenance.

use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use crate::group::{GroupInfo, GroupState, JoinRequest, JoinResponse};
use crate::offsets::{Committed, OffsetCommit, RawCommit};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Where `reset_offsets` moves a group's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    Earliest,
    Latest,
    /// The first offset at or after this time (ms since the epoch).
    Timestamp(i64),
    Offset(u64),
}

/// One partition's committed offset and lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: u32,
    pub committed: u64,
    pub metadata: String,
    pub high_watermark: u64,
    pub lag: u64,
}

/// A group: its live state (if any members ever joined since start) and its offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group: String,
    pub state: String,
    pub live: Option<GroupInfo>,
    pub offsets: Vec<PartitionLag>,
    /// Cluster mode: the broker coordinating the group (node id).
    pub coordinator: Option<i32>,
}

/// Most groups one cluster-wide listing answers (`GET /groups` in cluster mode).
pub const GROUPS_LISTED_MAX: usize = 10_000;

impl Broker {
    /// JoinGroup; resolves when the rebalance completes.
    pub async fn join_group(&self, req: JoinRequest) -> Result<JoinResponse> {
        self.groups.join(req).await
    }

    /// JoinGroup as a static member (KIP-345) when `instance` is set; see [`crate::group::Groups::join_as`].
    pub async fn join_group_as(
        &self,
        req: JoinRequest,
        instance: Option<String>,
    ) -> Result<JoinResponse> {
        self.groups.join_as(req, instance).await
    }

    /// True when the static member `instance` is now held by a member id other than `member`
    /// (Kafka's FENCED_INSTANCE_ID).
    pub fn instance_fenced(&self, group: &str, instance: &str, member: &str) -> bool {
        self.groups.fenced(group, instance, member)
    }

    /// LeaveGroup by instance id; `Ok(false)` when `member` is not the id holding it (fenced).
    pub fn leave_group_instance(&self, group: &str, instance: &str, member: &str) -> Result<bool> {
        self.groups.leave_instance(group, instance, member)
    }

    /// SyncGroup; the leader passes assignments, every member gets its own.
    pub async fn sync_group(
        &self,
        group: &str,
        member: &str,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
    ) -> Result<Vec<u8>> {
        self.groups
            .sync(group, member, generation, assignments)
            .await
    }

    /// Heartbeat.
    pub fn heartbeat(&self, group: &str, member: &str, generation: i32) -> Result<()> {
        self.groups.heartbeat(group, member, generation)
    }

    /// LeaveGroup.
    pub fn leave_group(&self, group: &str, member: &str) -> Result<()> {
        self.groups.leave(group, member)
    }

    /// Commits offsets durably for a member of the current generation, or for a group without
    /// members (generation -1). Unknown topics or partitions refuse the whole commit.
    pub async fn commit_offsets(
        &self,
        group: &str,
        member: &str,
        generation: i32,
        commits: Vec<OffsetCommit>,
    ) -> Result<()> {
        let raw = commits.into_iter().map(RawCommit::from).collect();
        self.commit(group, member, generation, raw).await
    }

    /// [`Broker::commit_offsets`] with offsets as a Kafka client sends them, (topic, partition,
    /// offset, metadata): Kafka stores any value, negative ones included (kafkajs commits -1 and
    /// -2 when it resets a position). A negative commit is answered back by
    /// [`Broker::committed_raw`] and reads as no position everywhere else.
    pub async fn commit_raw_offsets(
        &self,
        group: &str,
        member: &str,
        generation: i32,
        commits: Vec<(String, u32, i64, String)>,
    ) -> Result<()> {
        let raw = commits
            .into_iter()
            .map(|(topic, partition, offset, metadata)| RawCommit {
                topic,
                partition,
                offset,
                metadata,
            })
            .collect();
        self.commit(group, member, generation, raw).await
    }

    async fn commit(
        &self,
        group: &str,
        member: &str,
        generation: i32,
        commits: Vec<RawCommit>,
    ) -> Result<()> {
        // Cluster mode: only the group's coordinator commits (the HTTP consumer API takes the
        // lease here; the Kafka front end has checked already).
        self.require_coordinator(group).await?;
        if group.is_empty() {
            return Err(BrokerError::InvalidRequest(
                "group id must not be empty".into(),
            ));
        }
        let known = !self.offsets.group_raw(group).is_empty();
        self.groups.check_commit(group, member, generation, known)?;
        let limit = self.config.offset_metadata_bytes_max;
        for c in &commits {
            self.topic(&c.topic)?.partition(c.partition as i64)?;
            if c.metadata.len() > limit {
                return Err(BrokerError::OffsetMetadataTooLarge {
                    size: c.metadata.len(),
                    limit,
                });
            }
        }
        let samples: Vec<(String, u32, i64)> = (commits.iter())
            .map(|c| (c.topic.clone(), c.partition, c.offset))
            .collect();
        self.offsets.commit(group, commits).await?;
        self.record_commits(group, &samples);
        Ok(())
    }

    /// One partition's commit as the client sent it, (offset, metadata), negative included.
    pub fn committed_raw(&self, group: &str, topic: &str, partition: u32) -> Option<(i64, String)> {
        self.offsets.get_raw(group, topic, partition)
    }

    /// Every commit of `group` as sent, (topic, partition, offset, metadata), in order.
    pub fn committed_raw_all(&self, group: &str) -> Vec<(String, u32, i64, String)> {
        self.offsets
            .group_raw(group)
            .into_iter()
            .map(|c| (c.topic, c.partition, c.offset, c.metadata))
            .collect()
    }

    /// The committed offset of one partition.
    pub fn committed(&self, group: &str, topic: &str, partition: u32) -> Option<Committed> {
        self.offsets.get(group, topic, partition)
    }

    /// Every group known by live state or committed offsets, with its state name.
    pub fn list_groups(&self) -> Vec<(String, String)> {
        let mut names = self.groups.names();
        names.extend(self.offsets.groups());
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|g| {
                let state = self.group_state(&g).to_string();
                (g, state)
            })
            .collect()
    }

    /// The state name of a group as this broker knows it (Empty without live state).
    fn group_state(&self, group: &str) -> &'static str {
        self.groups
            .describe(group)
            .map_or(GroupState::Empty, |i| i.state)
            .name()
    }

    /// [`Broker::list_groups`]; in cluster mode with every group that has committed offsets in
    /// the cluster (at most [`GROUPS_LISTED_MAX`], cut before the caller's ACLs filter them), and
    /// a group this broker does not coordinate now is listed as "Unknown" (its coordinator knows
    /// its members). With the database out of reach, this broker's own groups (logged).
    pub async fn list_groups_cluster(&self) -> Result<Vec<(String, String)>> {
        let Some(shared) = self.shared_log() else {
            return Ok(self.list_groups());
        };
        let mut names = match shared.group_ids(GROUPS_LISTED_MAX).await {
            Ok(names) => names,
            Err(e) => {
                // The database is out of reach: this broker's own groups at least.
                let msg = format!("groups: the cluster's group list could not be read ({e})");
                crate::log::warn("busbar", "cluster_groups", &msg, &[]);
                Vec::new()
            }
        };
        names.extend(self.groups.names());
        names.sort();
        names.dedup();
        names.truncate(GROUPS_LISTED_MAX);
        Ok(names
            .into_iter()
            .map(|g| {
                let state = if shared.holds_quietly(crate::shared::Coordinated::Group, &g) {
                    self.group_state(&g)
                } else {
                    "Unknown"
                };
                (g, state.to_string())
            })
            .collect())
    }

    /// [`Broker::describe_group`]; in cluster mode, a group this broker does not coordinate now
    /// is described from the database: its committed offsets and their lag, its coordinator, no
    /// members (state "Unknown").
    pub async fn describe_group_cluster(&self, group: &str) -> Result<GroupDescription> {
        let Some(shared) = self.shared_log() else {
            return self.describe_group(group);
        };
        let coordinator = shared
            .coordinator(crate::shared::Coordinated::Group, group)
            .await?;
        if shared.holds_quietly(crate::shared::Coordinated::Group, group) {
            let mut d = self.describe_group(group)?;
            d.coordinator = coordinator;
            return Ok(d);
        }
        let rows = shared.load_offsets(group).await?;
        if rows.is_empty() {
            return Err(BrokerError::UnknownGroup(group.to_string()));
        }
        let mut offsets = Vec::new();
        for r in rows {
            let Some((offset, metadata, _)) = r.value else {
                continue;
            };
            let Ok(committed) = u64::try_from(offset) else {
                continue;
            };
            // The partition's end as heard (a catch-up of the copy would add nothing here).
            let hw = self
                .offsets_of(&r.topic, r.partition as i64)
                .map_or(0, |(_, hw)| hw);
            offsets.push(PartitionLag {
                topic: r.topic,
                partition: r.partition,
                committed,
                metadata,
                high_watermark: hw,
                lag: hw.saturating_sub(committed),
            });
        }
        offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(GroupDescription {
            group: group.to_string(),
            state: "Unknown".into(),
            live: None,
            offsets,
            coordinator,
        })
    }

    /// A group's members, assignments, committed offsets and lag.
    pub fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let live = self.groups.describe(group);
        let committed = self.offsets.group(group);
        if live.is_none() && self.offsets.group_raw(group).is_empty() {
            return Err(BrokerError::UnknownGroup(group.to_string()));
        }
        let offsets = committed
            .into_iter()
            .map(|((topic, partition), c)| {
                let hw = self
                    .offsets_of(&topic, partition as i64)
                    .map_or(0, |(_, hw)| hw);
                PartitionLag {
                    topic,
                    partition,
                    committed: c.offset,
                    metadata: c.metadata,
                    high_watermark: hw,
                    lag: hw.saturating_sub(c.offset),
                }
            })
            .collect();
        Ok(GroupDescription {
            group: group.to_string(),
            state: live
                .as_ref()
                .map_or(GroupState::Empty, |i| i.state)
                .name()
                .to_string(),
            live,
            offsets,
            coordinator: None,
        })
    }

    /// [`Self::require_coordinator`], and (cluster mode) the offsets committed transactions
    /// staged for the group applied first: an administrative change is never undone by them.
    async fn require_settled(&self, group: &str) -> Result<()> {
        self.require_coordinator(group).await?;
        self.apply_txn_offsets(group).await
    }

    /// Cluster mode: takes or keeps `group`'s lease, else NotCoordinator (single-node: nothing).
    async fn require_coordinator(&self, group: &str) -> Result<()> {
        if group.is_empty() || self.coordinates(group).await? {
            return Ok(());
        }
        Err(BrokerError::NotCoordinator(format!(
            "another broker coordinates group {group:?}"
        )))
    }

    /// Deletes the committed offsets of some partitions (Kafka's OffsetDelete); refused while the
    /// group has members.
    pub async fn delete_offsets(&self, group: &str, parts: &[(String, u32)]) -> Result<()> {
        self.require_settled(group).await?;
        if self.groups.has_members(group) {
            return Err(BrokerError::GroupNotEmpty(group.to_string()));
        }
        if self.offsets.group_raw(group).is_empty() && self.groups.describe(group).is_none() {
            return Err(BrokerError::UnknownGroup(group.to_string()));
        }
        self.offsets.delete_partitions(group, parts).await?;
        self.prune_lag_windows();
        Ok(())
    }

    /// Deletes a group without members and its committed offsets.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        self.require_settled(group).await?;
        if self.groups.has_members(group) {
            return Err(BrokerError::GroupNotEmpty(group.to_string()));
        }
        if self.groups.describe(group).is_none() && self.offsets.group_raw(group).is_empty() {
            return Err(BrokerError::UnknownGroup(group.to_string()));
        }
        self.offsets.delete(group, None).await?;
        self.prune_lag_windows();
        self.groups.remove(group)
    }

    /// Moves a group's committed offsets for `topic` (all partitions, or the given ones). Allowed
    /// only while the group has no members. Answers (partition, new offset).
    pub async fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: Option<Vec<u32>>,
        to: ResetTo,
    ) -> Result<Vec<(u32, u64)>> {
        self.require_settled(group).await?;
        let out = self.reset_plan(group, topic, partitions, to).await?;
        let commits = out
            .iter()
            .map(|(p, o)| {
                RawCommit::from(OffsetCommit {
                    topic: topic.to_string(),
                    partition: *p,
                    offset: *o,
                    metadata: String::new(),
                })
            })
            .collect();
        self.offsets.commit(group, commits).await?;
        Ok(out)
    }

    /// Where [`Broker::reset_offsets`] would move the offsets, with the same checks, changing
    /// nothing (a preview). Cluster mode: each partition's copy is caught up first (its start,
    /// end and timestamps are the cluster's).
    pub async fn reset_plan(
        &self,
        group: &str,
        topic: &str,
        partitions: Option<Vec<u32>>,
        to: ResetTo,
    ) -> Result<Vec<(u32, u64)>> {
        if self.groups.has_members(group) {
            return Err(BrokerError::GroupNotEmpty(group.to_string()));
        }
        let t = self.topic(topic)?;
        let parts = partitions.unwrap_or_else(|| (0..t.partitions.len() as u32).collect());
        let mut out = Vec::new();
        for p in parts {
            self.prepare_read(topic, p as i64).await;
            let (start, hw) = self.offsets_of(topic, p as i64)?;
            let offset = match to {
                ResetTo::Earliest => start,
                ResetTo::Latest => hw,
                ResetTo::Timestamp(ts) => self.offset_for_timestamp(topic, p as i64, ts)?,
                ResetTo::Offset(o) => o.clamp(start, hw),
            };
            out.push((p, offset));
        }
        Ok(out)
    }

    /// Expires group sessions and ends timed-out rebalances (call often; `run_background` does).
    pub fn tick_groups(&self) {
        self.groups.tick(|g| self.offsets.has_group(g));
    }

    /// The background loop an embedding program runs until `shutdown` resolves: group timers every
    /// 100 ms, maintenance (interval syncs, retention, compaction) every `maintenance_interval`.
    /// A maintenance pass runs on the blocking pool beside the group timers (sessions keep
    /// expiring during a long compaction); a pass still running when the next is due is not
    /// doubled, the next starts after it.
    pub async fn run_background(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut groups = tokio::time::interval(Duration::from_millis(100));
        let mut maint = tokio::time::interval(self.config.maintenance_interval);
        let mut pass: Option<tokio::task::JoinHandle<()>> = None;
        let reported = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut txn_timer = tokio::time::interval(TXN_TICK);
        let mut txn_pass: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = txn_timer.tick() => {
                    if txn_pass.as_ref().is_none_or(|p| p.is_finished()) {
                        let b = self.clone();
                        txn_pass = Some(tokio::spawn(async move { b.tick_transactions().await }));
                    }
                }
                _ = groups.tick() => self.tick_groups(),
                _ = maint.tick() => {
                    if pass.as_ref().is_none_or(|p| p.is_finished()) {
                        let (b, reported) = (self.clone(), reported.clone());
                        pass = Some(tokio::task::spawn_blocking(move || {
                            report_new(&reported, b.maintain());
                        }));
                    }
                }
            }
        }
        if let Some(p) = pass {
            let _ = p.await;
        }
        if let Some(p) = txn_pass {
            // Stopping mid-way is safe: a prepared transaction is completed at the next start.
            p.abort();
        }
    }
}

/// Logs the errors of a maintenance pass (a compaction that cannot go on, a failed retention)
/// that the previous pass did not have: one that persists is logged once, and again only after
/// a pass without it.
fn report_new(reported: &std::sync::Mutex<Vec<String>>, errors: Vec<BrokerError>) {
    let now: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let mut before = reported.lock().unwrap_or_else(|e| e.into_inner());
    for e in now.iter().filter(|e| !before.contains(e)) {
        crate::log::warn(
            "busbar",
            "maintenance_failed",
            &format!("maintenance (retention, compaction, snapshots): {e}"),
            &[],
        );
    }
    *before = now;
}

/// How often the transaction coordinator's timer runs (completing prepared transactions,
/// aborting timed-out ones, forgetting idle ids).
pub const TXN_TICK: Duration = Duration::from_millis(1000);

/// Committed offsets by (topic, partition), for callers that want the whole map.
pub type OffsetMap = BTreeMap<(String, u32), Committed>;
