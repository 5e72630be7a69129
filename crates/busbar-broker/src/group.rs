//! Consumer groups: Kafka's classic group protocol as a state machine (Empty → PreparingRebalance →
//! CompletingRebalance → Stable), with generations, member-id-required first joins, rebalances on
//! join, leave and session expiry, and assignments handed out by SyncGroup. Protocol metadata and
//! assignments are opaque bytes, as in Kafka; the HTTP front end and Kafka clients both use them.
//!
//! Waiting requests (JoinGroup until the rebalance completes, SyncGroup until the leader's
//! assignment arrives) hold a oneshot receiver; the state machine answers them. Time comes from the
//! injected clock; `tick` (run by the broker's background loop, or by tests after moving a manual
//! clock) expires sessions and ends rebalances whose deadline passed. Group state is in memory:
//! after a restart members rejoin, as they do when a Kafka coordinator moves; committed offsets are
//! durable in the offset store.

mod protocol;
mod statics;

use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
use busbar_log::Clock;
use protocol::{choose_protocol, common_protocol};
use statics::forget_statics;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Where a group is in its rebalance cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// Kafka's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// A JoinGroup request.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    pub group: String,
    /// Empty for a member joining for the first time.
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub protocol_type: String,
    /// (assignor name, opaque metadata), in the member's order of preference.
    pub protocols: Vec<(String, Vec<u8>)>,
    pub session_timeout_ms: i64,
    pub rebalance_timeout_ms: i64,
    /// Kafka v4+: a first join gets `MemberIdRequired` with an id to rejoin with.
    pub require_known_member_id: bool,
}

/// The JoinGroup answer once the rebalance completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub member_id: String,
    /// Every member and its metadata for the chosen protocol: for the leader only.
    pub members: Vec<JoinMember>,
}

/// A member as the leader's JoinGroup answer lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinMember {
    pub member_id: String,
    /// KIP-345's `group.instance.id` of a static member (Kafka's assignors use it to keep a
    /// restarted member's partitions).
    pub instance_id: Option<String>,
    /// The member's metadata for the chosen protocol.
    pub metadata: Vec<u8>,
}

/// A member as `describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Vec<u8>,
    pub assignment: Vec<u8>,
    /// KIP-345's `group.instance.id` of a static member.
    pub instance_id: Option<String>,
}

/// A group as `describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub group: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub members: Vec<MemberInfo>,
}

struct Member {
    client_id: String,
    client_host: String,
    protocols: Vec<(String, Vec<u8>)>,
    session_timeout_ms: i64,
    rebalance_timeout_ms: i64,
    last_seen_ms: i64,
    assignment: Vec<u8>,
    join_waiter: Option<oneshot::Sender<Result<JoinResponse>>>,
    sync_waiter: Option<oneshot::Sender<Result<Vec<u8>>>>,
    /// KIP-345's `group.instance.id` of a static member.
    instance_id: Option<String>,
}

/// Member ids handed out by MemberIdRequired and not yet used, per group.
pub const PENDING_MAX: usize = 1000;

struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: String,
    protocol: String,
    leader: String,
    members: BTreeMap<String, Member>,
    /// Ids handed out by MemberIdRequired, not yet used to join, with the time (ms) they expire:
    /// the session timeout of the join that got them, as in Kafka. At most [`PENDING_MAX`].
    pending: HashMap<String, i64>,
    /// Static members: instance id → the member id that holds it now (live members only).
    statics: HashMap<String, String>,
    rebalance_deadline_ms: i64,
    /// A new group's first rebalance waits at least until then for more members.
    initial_until_ms: i64,
    /// Since when (ms) the group is Empty without members or pending ids: forgotten after
    /// `group_empty_retention` unless it has committed offsets.
    empty_since_ms: Option<i64>,
}

impl Group {
    /// Empty, without members or pending member ids.
    fn is_vacant(&self) -> bool {
        self.state == GroupState::Empty && self.members.is_empty() && self.pending.is_empty()
    }

    /// Nothing worth keeping (never had a generation): forgotten by the next tick.
    fn is_idle(&self) -> bool {
        self.is_vacant() && self.generation == 0
    }

    fn new() -> Self {
        Self {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: String::new(),
            leader: String::new(),
            members: BTreeMap::new(),
            pending: HashMap::new(),
            statics: HashMap::new(),
            rebalance_deadline_ms: 0,
            initial_until_ms: 0,
            empty_since_ms: None,
        }
    }
}

/// Every consumer group's live state.
pub struct Groups {
    groups: Mutex<HashMap<String, Group>>,
    clock: Arc<dyn Clock>,
    session_min_ms: i64,
    session_max_ms: i64,
    initial_delay_ms: i64,
    empty_retention_ms: i64,
    next_id: std::sync::atomic::AtomicU64,
}

impl Groups {
    pub(crate) fn new(config: &BrokerConfig) -> Self {
        Self {
            groups: Mutex::new(HashMap::new()),
            clock: config.clock.clone(),
            session_min_ms: config.group_session_timeout_min.as_millis() as i64,
            session_max_ms: config.group_session_timeout_max.as_millis() as i64,
            initial_delay_ms: config.group_initial_rebalance_delay.as_millis() as i64,
            empty_retention_ms: config.group_empty_retention.as_millis() as i64,
            next_id: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_member_id(&self, client_id: &str) -> String {
        let n = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let salt = self.clock.now_ms() as u64 ^ (n << 20) ^ u64::from(std::process::id());
        // At most 64 characters of the client id: a member id is kept (and sent to every member)
        // for the group's life, and a client id may be 32 KiB.
        let prefix: String = client_id.chars().take(64).collect();
        format!(
            "{}-{n}-{salt:x}",
            if prefix.is_empty() { "member" } else { &prefix }
        )
    }

    /// Joins (or rejoins) a group; resolves when the rebalance completes.
    /// Joins drive their own rebalance timers: a waiting join wakes at the group's next deadline and
    /// ticks, so groups make progress without a background loop (which still expires sessions).
    pub async fn join(&self, req: JoinRequest) -> Result<JoinResponse> {
        self.join_as(req, None).await
    }

    /// [`Groups::join`] for a static member (KIP-345) when `instance` is set: it joins without
    /// MemberIdRequired; joining again with an empty member id replaces the member that holds the
    /// instance id (whose id is fenced from then on) and, in a Stable group whose chosen protocol
    /// stays the same, without a rebalance: the new id gets the current generation (and the
    /// previous leader id, so it acts as a follower) and its predecessor's assignment on SyncGroup.
    /// A member id other than the one holding the instance id answers UNKNOWN_MEMBER_ID here, and
    /// [`Groups::fenced`] tells front ends to answer FENCED_INSTANCE_ID instead.
    pub async fn join_as(
        &self,
        req: JoinRequest,
        instance: Option<String>,
    ) -> Result<JoinResponse> {
        let group = req.group.clone();
        let mut rx = self.join_register(req, instance.filter(|i| !i.is_empty()))?;
        loop {
            let wake = self.wake_in(&group);
            match tokio::time::timeout(wake, &mut rx).await {
                Ok(answer) => {
                    return answer.map_err(|_| {
                        BrokerError::RebalanceInProgress("join was abandoned".into())
                    })?
                }
                Err(_) => self.tick_one(&group),
            }
        }
    }

    /// How long until the group's rebalance may complete by time (at most a second, so a moved
    /// clock is noticed).
    fn wake_in(&self, group: &str) -> std::time::Duration {
        let now = self.clock.now_ms();
        let groups = self.lock();
        let at = groups
            .get(group)
            .filter(|g| g.state == GroupState::PreparingRebalance)
            .map(|g| {
                if g.initial_until_ms > now {
                    g.initial_until_ms.min(g.rebalance_deadline_ms)
                } else {
                    g.rebalance_deadline_ms
                }
            });
        let ms = at.map_or(1000, |at| (at - now).clamp(1, 1000));
        std::time::Duration::from_millis(ms as u64)
    }

    fn join_register(
        &self,
        req: JoinRequest,
        instance: Option<String>,
    ) -> Result<oneshot::Receiver<Result<JoinResponse>>> {
        if req.session_timeout_ms < self.session_min_ms
            || req.session_timeout_ms > self.session_max_ms
        {
            return Err(BrokerError::InvalidSessionTimeout(req.session_timeout_ms));
        }
        if req.group.is_empty() {
            return Err(BrokerError::InvalidRequest(
                "group id must not be empty".into(),
            ));
        }
        if req.protocols.is_empty() || req.protocol_type.is_empty() {
            return Err(BrokerError::InconsistentGroupProtocol);
        }
        let now = self.clock.now_ms();
        let mut groups = self.lock();
        let g = groups.entry(req.group.clone()).or_insert_with(Group::new);
        if !g.members.is_empty() && g.protocol_type != req.protocol_type {
            return Err(BrokerError::InconsistentGroupProtocol);
        }
        if !g.members.is_empty()
            && !common_protocol(
                g.members
                    .values()
                    .map(|m| &m.protocols)
                    .chain([&req.protocols]),
            )
        {
            return Err(BrokerError::InconsistentGroupProtocol);
        }
        let held = instance.as_ref().and_then(|i| g.statics.get(i)).cloned();
        if let Some(old) = &held {
            if req.member_id.is_empty() {
                return Ok(self.replace_static(g, req, old.clone(), now));
            }
            if *old != req.member_id {
                return Err(unknown(&req.group, &req.member_id));
            }
        } else if instance.is_some() && !req.member_id.is_empty() {
            // Kafka's groupInstanceIdNotFound: a member id with an instance id nobody holds
            // (a dynamic member naming one, or an id from before a restart) resets its id.
            return Err(unknown(&req.group, &req.member_id));
        }
        let member_id = if req.member_id.is_empty() {
            let id = self.new_member_id(&req.client_id);
            if req.require_known_member_id && instance.is_none() {
                if g.pending.len() >= PENDING_MAX {
                    // A client looping on first joins: the id closest to expiry goes first.
                    let first = g
                        .pending
                        .iter()
                        .min_by_key(|(_, t)| **t)
                        .map(|(k, _)| k.clone());
                    if let Some(k) = first {
                        g.pending.remove(&k);
                    }
                }
                g.pending.insert(id.clone(), now + req.session_timeout_ms);
                return Err(BrokerError::MemberIdRequired(id));
            }
            id
        } else if g.members.contains_key(&req.member_id)
            || g.pending.remove(&req.member_id).is_some()
        {
            req.member_id.clone()
        } else {
            return Err(BrokerError::UnknownMember {
                group: req.group.clone(),
                member: req.member_id.clone(),
            });
        };
        let (tx, rx) = oneshot::channel();
        let changed = g
            .members
            .get(&member_id)
            .is_none_or(|m| m.protocols != req.protocols);
        let member = g
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                protocols: Vec::new(),
                session_timeout_ms: 0,
                rebalance_timeout_ms: 0,
                last_seen_ms: now,
                assignment: Vec::new(),
                join_waiter: None,
                sync_waiter: None,
                instance_id: None,
            });
        if let Some(i) = &instance {
            if member.instance_id.is_none() {
                member.instance_id = Some(i.clone());
                g.statics.insert(i.clone(), member_id.clone());
            }
        }
        let member = g.members.get_mut(&member_id).expect("inserted above");
        member.protocols = req.protocols;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms.max(req.session_timeout_ms);
        member.last_seen_ms = now;
        if let Some(old) = member.join_waiter.replace(tx) {
            let _ = old.send(Err(BrokerError::RebalanceInProgress(req.group.clone())));
        }
        g.protocol_type = req.protocol_type;
        match g.state {
            GroupState::Stable if !changed && member_id != g.leader => {
                // A follower rejoining with nothing new: answer with the current generation.
                let resp = response(g, &member_id);
                if let Some(tx) = g
                    .members
                    .get_mut(&member_id)
                    .and_then(|m| m.join_waiter.take())
                {
                    let _ = tx.send(Ok(resp));
                }
            }
            GroupState::PreparingRebalance => {}
            _ => self.prepare_rebalance(g, now),
        }
        self.maybe_complete_join(g, now);
        Ok(rx)
    }

    fn prepare_rebalance(&self, g: &mut Group, now: i64) {
        if g.state == GroupState::CompletingRebalance {
            for m in g.members.values_mut() {
                if let Some(tx) = m.sync_waiter.take() {
                    let _ = tx.send(Err(BrokerError::RebalanceInProgress(
                        "group is rebalancing".into(),
                    )));
                }
            }
        }
        let timeout = rebalance_timeout(g);
        if g.state == GroupState::Empty {
            g.initial_until_ms = now + self.initial_delay_ms.min(timeout);
        }
        g.state = GroupState::PreparingRebalance;
        g.rebalance_deadline_ms = now + timeout;
    }

    /// Ends a PreparingRebalance when every member rejoined (after the initial delay for a new
    /// group) or the deadline passed (members that did not rejoin are removed).
    fn maybe_complete_join(&self, g: &mut Group, now: i64) {
        if g.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = g.members.values().all(|m| m.join_waiter.is_some());
        let delay_over = now >= g.initial_until_ms;
        let expired = now >= g.rebalance_deadline_ms;
        if !(expired || (all_joined && delay_over)) {
            return;
        }
        // Dynamic members that did not rejoin leave; static ones stay (until their session
        // expires or they leave), as in Kafka.
        g.members
            .retain(|_, m| m.join_waiter.is_some() || m.instance_id.is_some());
        forget_statics(g);
        if !g.members.is_empty() && !elect_joined_leader(g) {
            // Only static members that did not rejoin are left: as Kafka, the rebalance waits
            // another rebalance timeout (their sessions expire meanwhile, or they come back).
            g.rebalance_deadline_ms = now + rebalance_timeout(g);
            return;
        }
        g.generation += 1;
        if g.members.is_empty() {
            g.state = GroupState::Empty;
            g.leader.clear();
            g.protocol.clear();
            return;
        }
        g.protocol = choose_protocol(g.members.values().map(|m| &m.protocols));
        g.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = g.members.keys().cloned().collect();
        for id in ids {
            let resp = response(g, &id);
            if let Some(m) = g.members.get_mut(&id) {
                m.last_seen_ms = now;
                m.assignment.clear();
                if let Some(tx) = m.join_waiter.take() {
                    let _ = tx.send(Ok(resp));
                }
            }
        }
    }

    /// SyncGroup: the leader hands in assignments; everyone gets theirs.
    pub async fn sync(
        &self,
        group: &str,
        member: &str,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
    ) -> Result<Vec<u8>> {
        let rx = {
            let mut groups = self.lock();
            let g = groups
                .get_mut(group)
                .ok_or_else(|| unknown(group, member))?;
            check_member(g, group, member, generation)?;
            match g.state {
                GroupState::PreparingRebalance | GroupState::Empty => {
                    return Err(BrokerError::RebalanceInProgress(group.into()))
                }
                GroupState::Stable => return Ok(g.members[member].assignment.clone()),
                GroupState::CompletingRebalance => {}
            }
            let (tx, rx) = oneshot::channel();
            g.members.get_mut(member).expect("checked").sync_waiter = Some(tx);
            if member == g.leader {
                let given: HashMap<String, Vec<u8>> = assignments.into_iter().collect();
                for (id, m) in g.members.iter_mut() {
                    m.assignment = given.get(id).cloned().unwrap_or_default();
                    if let Some(tx) = m.sync_waiter.take() {
                        let _ = tx.send(Ok(m.assignment.clone()));
                    }
                }
                g.state = GroupState::Stable;
            }
            rx
        };
        rx.await
            .map_err(|_| BrokerError::RebalanceInProgress(group.into()))?
    }

    /// Heartbeat: keeps the session alive; says when the member must rejoin.
    pub fn heartbeat(&self, group: &str, member: &str, generation: i32) -> Result<()> {
        let now = self.clock.now_ms();
        let mut groups = self.lock();
        let g = groups
            .get_mut(group)
            .ok_or_else(|| unknown(group, member))?;
        check_member(g, group, member, generation)?;
        g.members.get_mut(member).expect("checked").last_seen_ms = now;
        match g.state {
            GroupState::PreparingRebalance => Err(BrokerError::RebalanceInProgress(group.into())),
            _ => Ok(()),
        }
    }

    /// LeaveGroup: removes the member and rebalances the rest.
    pub fn leave(&self, group: &str, member: &str) -> Result<()> {
        let now = self.clock.now_ms();
        let mut groups = self.lock();
        let g = groups
            .get_mut(group)
            .ok_or_else(|| unknown(group, member))?;
        self.leave_in(g, group, member, now)
    }

    fn leave_in(&self, g: &mut Group, group: &str, member: &str, now: i64) -> Result<()> {
        let Some(m) = g.members.remove(member) else {
            return Err(unknown(group, member));
        };
        forget_statics(g);
        if let Some(tx) = m.join_waiter {
            let _ = tx.send(Err(unknown(group, member)));
        }
        self.prepare_rebalance(g, now);
        self.maybe_complete_join(g, now);
        Ok(())
    }

    /// Expires sessions and pending member ids, and ends rebalances whose deadline passed.
    /// Forgets groups that never had a generation once vacant, and, as Kafka's periodic cleanup,
    /// groups Empty for `group_empty_retention` unless `has_offsets` says they have committed
    /// offsets (asked at most once per retention period and group).
    pub fn tick(&self, has_offsets: impl Fn(&str) -> bool) {
        let now = self.clock.now_ms();
        let mut groups = self.lock();
        for g in groups.values_mut() {
            self.tick_group(g, now);
        }
        let retention = self.empty_retention_ms;
        groups.retain(|name, g| {
            if g.is_idle() {
                return false;
            }
            let due = g
                .empty_since_ms
                .is_some_and(|t| now.saturating_sub(t) >= retention);
            if due && has_offsets(name) {
                g.empty_since_ms = Some(now);
                return true;
            }
            !due
        });
    }

    /// [`Groups::tick`] for one group (a waiting join wakes for its own group only).
    fn tick_one(&self, group: &str) {
        let now = self.clock.now_ms();
        let mut groups = self.lock();
        if let Some(g) = groups.get_mut(group) {
            self.tick_group(g, now);
            if g.is_idle() {
                groups.remove(group);
            }
        }
    }

    fn tick_group(&self, g: &mut Group, now: i64) {
        g.pending.retain(|_, expires| *expires >= now);
        g.empty_since_ms = g.is_vacant().then(|| g.empty_since_ms.unwrap_or(now));
        {
            let expired: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| {
                    m.join_waiter.is_none() && now - m.last_seen_ms > m.session_timeout_ms
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                g.members.remove(id);
            }
            forget_statics(g);
            if !expired.is_empty() && g.state != GroupState::PreparingRebalance {
                self.prepare_rebalance(g, now);
            }
            self.maybe_complete_join(g, now);
        }
    }

    /// Checks a commit as Kafka's classic coordinator does: a group without members takes only
    /// "simple" commits (generation < 0, from `assign()` users and admin tools); a member's commit
    /// needs its id and the current generation. `known` says whether the group exists through
    /// committed offsets (an Empty group in Kafka). A commit with a generation >= 0 answers
    /// UNKNOWN_MEMBER_ID to a group that exists without that member, and ILLEGAL_GENERATION to
    /// one that does not exist at all (OffsetCommit v8 and below, as Kafka).
    pub fn check_commit(
        &self,
        group: &str,
        member: &str,
        generation: i32,
        known: bool,
    ) -> Result<()> {
        let groups = self.lock();
        let g = groups.get(group);
        match g.filter(|g| !g.members.is_empty()) {
            None if generation < 0 => Ok(()),
            None if g.is_none() && !known => Err(BrokerError::IllegalGeneration {
                group: group.into(),
                got: generation,
                current: -1,
            }),
            None => Err(unknown(group, member)),
            Some(g) => {
                check_member(g, group, member, generation)?;
                if g.state == GroupState::CompletingRebalance {
                    return Err(BrokerError::RebalanceInProgress(group.into()));
                }
                Ok(())
            }
        }
    }

    /// True when the group has live members.
    pub fn has_members(&self, group: &str) -> bool {
        self.lock()
            .get(group)
            .is_some_and(|g| !g.members.is_empty())
    }

    /// Groups with live state.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// A group's state and members (`None` when it has no live state).
    pub fn describe(&self, group: &str) -> Option<GroupInfo> {
        let groups = self.lock();
        let g = groups.get(group)?;
        Some(GroupInfo {
            group: group.to_string(),
            state: g.state,
            generation: g.generation,
            protocol_type: g.protocol_type.clone(),
            protocol: g.protocol.clone(),
            leader: g.leader.clone(),
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberInfo {
                    member_id: id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m
                        .protocols
                        .iter()
                        .find(|(p, _)| *p == g.protocol)
                        .map(|(_, md)| md.clone())
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                    instance_id: m.instance_id.clone(),
                })
                .collect(),
        })
    }

    /// Forgets a group's live state, members and all (cluster mode: another broker coordinated
    /// the group since this one did; its members join again here).
    pub fn discard(&self, group: &str) {
        self.lock().remove(group);
    }

    /// Forgets an empty group's live state.
    pub fn remove(&self, group: &str) -> Result<()> {
        let mut groups = self.lock();
        if groups.get(group).is_some_and(|g| !g.members.is_empty()) {
            return Err(BrokerError::GroupNotEmpty(group.into()));
        }
        groups.remove(group);
        Ok(())
    }
}

/// The longest rebalance timeout among the members: how long a rebalance waits for them.
fn rebalance_timeout(g: &Group) -> i64 {
    g.members
        .values()
        .map(|m| m.rebalance_timeout_ms)
        .max()
        .unwrap_or(0)
}

/// Kafka's `maybeElectNewJoinedLeader`: the leader stays when it rejoined; otherwise a member that
/// rejoined leads (a static leader that did not rejoin stays a member, but cannot assign for a
/// generation it does not know of). False when no member rejoined.
fn elect_joined_leader(g: &mut Group) -> bool {
    let joined = |m: &Member| m.join_waiter.is_some();
    if g.members.get(&g.leader).is_some_and(joined) {
        return true;
    }
    match g.members.iter().find(|(_, m)| joined(m)) {
        Some((id, _)) => {
            g.leader = id.clone();
            true
        }
        None => false,
    }
}

fn unknown(group: &str, member: &str) -> BrokerError {
    BrokerError::UnknownMember {
        group: group.into(),
        member: member.into(),
    }
}

fn check_member(g: &Group, group: &str, member: &str, generation: i32) -> Result<()> {
    if !g.members.contains_key(member) {
        return Err(unknown(group, member));
    }
    if generation != g.generation {
        return Err(BrokerError::IllegalGeneration {
            group: group.into(),
            got: generation,
            current: g.generation,
        });
    }
    Ok(())
}

fn response(g: &Group, member: &str) -> JoinResponse {
    let members = if member == g.leader {
        g.members
            .iter()
            .map(|(id, m)| JoinMember {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m
                    .protocols
                    .iter()
                    .find(|(p, _)| *p == g.protocol)
                    .map(|(_, md)| md.clone())
                    .unwrap_or_default(),
            })
            .collect()
    } else {
        Vec::new()
    };
    JoinResponse {
        generation: g.generation,
        protocol_type: g.protocol_type.clone(),
        protocol: g.protocol.clone(),
        leader: g.leader.clone(),
        member_id: member.to_string(),
        members,
    }
}
