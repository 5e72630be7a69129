//! `GroupConsumer`: consuming as a member of a consumer group, in process. It speaks Kafka's consumer
//! protocol (range assignor) through the same group coordinator Kafka clients use, so busbar's own
//! consumers (in-process, HTTP instances, SSE streams) and Kafka clients can share a group.
//!
//! The member heartbeats from `poll` and `tick` (call one of them at least every heartbeat
//! interval); when the coordinator says a rebalance is under way it rejoins, takes its new
//! partitions and resumes from their committed offsets (or `reset` when none). Positions advance as
//! events are returned; `commit` makes them durable (at-least-once when committed after processing).

use crate::assignment;
use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use crate::event::StoredEvent;
use crate::group::JoinRequest;
use crate::offsets::OffsetCommit;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Where a member starts on a partition that has no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    Latest,
}

/// Settings of a group member.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    pub client_id: String,
    pub client_host: String,
    /// The coordinator evicts a member silent for this long.
    pub session_timeout: Duration,
    /// How long a rebalance waits for members to rejoin.
    pub rebalance_timeout: Duration,
    /// How often the member heartbeats.
    pub heartbeat_interval: Duration,
    /// Start on partitions without a committed offset.
    pub start: StartAt,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            client_id: "busbar".into(),
            client_host: "in-process".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(1),
            start: StartAt::Latest,
        }
    }
}

/// A member of a consumer group.
pub struct GroupConsumer {
    broker: Arc<Broker>,
    group: String,
    topics: Vec<String>,
    options: ConsumerOptions,
    member_id: String,
    generation: i32,
    /// Assigned (topic, partition) → next offset to read.
    positions: BTreeMap<(String, u32), u64>,
    next_heartbeat: Instant,
    turn: usize,
    left: bool,
}

impl GroupConsumer {
    /// Joins `group` subscribed to `topics`; returns once it has its first assignment.
    pub async fn join(
        broker: Arc<Broker>,
        group: &str,
        topics: Vec<String>,
        options: ConsumerOptions,
    ) -> Result<Self> {
        if topics.is_empty() {
            return Err(BrokerError::InvalidRequest(
                "subscribe to at least one topic".into(),
            ));
        }
        for t in &topics {
            broker.topic(t)?;
        }
        let mut c = Self {
            broker,
            group: group.to_string(),
            topics,
            options,
            member_id: String::new(),
            generation: -1,
            positions: BTreeMap::new(),
            next_heartbeat: Instant::now(),
            turn: 0,
            left: false,
        };
        c.rejoin().await?;
        Ok(c)
    }

    /// The member id the coordinator gave this member.
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The current generation.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The partitions assigned now, with the next offset to read from each.
    pub fn assignment(&self) -> Vec<(String, u32, u64)> {
        self.positions
            .iter()
            .map(|((t, p), o)| (t.clone(), *p, *o))
            .collect()
    }

    fn join_request(&self) -> JoinRequest {
        JoinRequest {
            group: self.group.clone(),
            member_id: self.member_id.clone(),
            client_id: self.options.client_id.clone(),
            client_host: self.options.client_host.clone(),
            protocol_type: "consumer".into(),
            protocols: vec![(
                "range".into(),
                assignment::encode_subscription(&self.topics),
            )],
            session_timeout_ms: self.options.session_timeout.as_millis() as i64,
            rebalance_timeout_ms: self.options.rebalance_timeout.as_millis() as i64,
            require_known_member_id: true,
        }
    }

    /// Joins (again), syncs, and positions on the new assignment.
    async fn rejoin(&mut self) -> Result<()> {
        let resp = loop {
            match self.broker.join_group(self.join_request()).await {
                Ok(r) => break r,
                Err(BrokerError::MemberIdRequired(id)) => self.member_id = id,
                Err(BrokerError::UnknownMember { .. }) if !self.member_id.is_empty() => {
                    self.member_id.clear()
                }
                Err(BrokerError::RebalanceInProgress(_)) => continue,
                Err(e) => return Err(e),
            }
        };
        self.member_id = resp.member_id.clone();
        self.generation = resp.generation;
        let plan: Vec<(String, Vec<u8>)> = if resp.leader == resp.member_id {
            let members: Vec<(String, Vec<String>)> = resp
                .members
                .iter()
                .map(|m| {
                    (
                        m.member_id.clone(),
                        assignment::decode_subscription(&m.metadata).unwrap_or_default(),
                    )
                })
                .collect();
            let broker = self.broker.clone();
            let counts = move |t: &str| broker.topic(t).map_or(0, |t| t.partitions.len() as u32);
            assignment::range(&members, counts)
                .into_iter()
                .map(|(m, a)| (m, assignment::encode(&a)))
                .collect()
        } else {
            Vec::new()
        };
        let mine = match self
            .broker
            .sync_group(&self.group, &self.member_id, self.generation, plan)
            .await
        {
            Ok(bytes) => bytes,
            Err(BrokerError::RebalanceInProgress(_) | BrokerError::IllegalGeneration { .. }) => {
                return Box::pin(self.rejoin()).await
            }
            Err(e) => return Err(e),
        };
        let parts = assignment::decode(&mine).ok_or_else(|| {
            BrokerError::InvalidRequest(
                "the group leader sent an assignment busbar cannot read".into(),
            )
        })?;
        self.positions.clear();
        for (topic, ps) in parts {
            for p in ps {
                let start = self.start_offset(&topic, p)?;
                self.positions.insert((topic.clone(), p), start);
            }
        }
        self.next_heartbeat = Instant::now() + self.options.heartbeat_interval;
        Ok(())
    }

    fn start_offset(&self, topic: &str, p: u32) -> Result<u64> {
        let (start, hw) = self.broker.offsets_of(topic, p as i64)?;
        Ok(match self.broker.committed(&self.group, topic, p) {
            Some(c) => c.offset.clamp(start, hw),
            None if self.options.start == StartAt::Earliest => start,
            None => hw,
        })
    }

    /// Heartbeats if due; rejoins when the group rebalances. Call at least every heartbeat interval.
    pub async fn tick(&mut self) -> Result<()> {
        if Instant::now() < self.next_heartbeat {
            return Ok(());
        }
        self.next_heartbeat = Instant::now() + self.options.heartbeat_interval;
        match self
            .broker
            .heartbeat(&self.group, &self.member_id, self.generation)
        {
            Ok(()) => Ok(()),
            Err(
                BrokerError::RebalanceInProgress(_)
                | BrokerError::IllegalGeneration { .. }
                | BrokerError::UnknownMember { .. },
            ) => self.rejoin().await,
            Err(e) => Err(e),
        }
    }

    /// Up to `max` events from the assigned partitions, waiting up to `wait` for the first.
    pub async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<StoredEvent>> {
        let deadline = Instant::now() + wait;
        loop {
            self.tick().await?;
            let out = self.read_available(max).await?;
            if !out.is_empty() || Instant::now() >= deadline {
                return Ok(out);
            }
            let until = deadline.min(self.next_heartbeat);
            self.wait_for_data(until).await;
        }
    }

    async fn read_available(&mut self, max: usize) -> Result<Vec<StoredEvent>> {
        let keys: Vec<(String, u32)> = self.positions.keys().cloned().collect();
        let mut out = Vec::new();
        for i in 0..keys.len() {
            if out.len() >= max {
                break;
            }
            let (topic, p) = &keys[(self.turn + i) % keys.len()];
            let at = self.positions[&(topic.clone(), *p)];
            let (events, next) = match self
                .broker
                .read_events_next(topic, *p as i64, at, max - out.len(), Duration::ZERO)
                .await
            {
                Ok(read) => read,
                Err(BrokerError::OffsetOutOfRange { start, end, .. }) => {
                    let reset = if self.options.start == StartAt::Earliest {
                        start
                    } else {
                        end
                    };
                    self.positions.insert((topic.clone(), *p), reset);
                    continue;
                }
                Err(BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. }) => {
                    continue
                }
                Err(e) => return Err(e),
            };
            // Past markers and aborted batches too, which answer no event.
            if next > at {
                self.positions.insert((topic.clone(), *p), next);
            }
            out.extend(events);
        }
        self.turn = self.turn.wrapping_add(1);
        Ok(out)
    }

    /// Waits until an assigned partition may have data past this member's position, or `until`.
    async fn wait_for_data(&self, until: Instant) {
        let parts: Vec<Arc<crate::topic::Partition>> = self
            .positions
            .keys()
            .filter_map(|(t, p)| {
                self.broker
                    .topic(t)
                    .ok()
                    .and_then(|t| t.partition(*p as i64).ok().cloned())
            })
            .collect();
        let mut waits: Vec<Pin<Box<tokio::sync::futures::Notified<'_>>>> = parts
            .iter()
            .map(|p| Box::pin(p.appended.notified()))
            .collect();
        for w in &mut waits {
            w.as_mut().enable();
        }
        // Committed data only: an open transaction's batches wake nothing until it ends.
        let has_data = self.positions.iter().any(|((t, p), at)| {
            self.broker
                .last_stable_offset(t, *p as i64)
                .is_ok_and(|lso| lso > *at)
        });
        if has_data {
            return;
        }
        let _ = tokio::time::timeout_at(until, crate::broker::AnyOf(waits)).await;
    }

    /// Commits the current positions of the assigned partitions.
    pub async fn commit(&mut self) -> Result<()> {
        let commits = self
            .positions
            .iter()
            .map(|((t, p), o)| OffsetCommit {
                topic: t.clone(),
                partition: *p,
                offset: *o,
                metadata: String::new(),
            })
            .collect();
        self.broker
            .commit_offsets(&self.group, &self.member_id, self.generation, commits)
            .await
    }

    /// Leaves the group (its partitions go to the other members at once). Dropping a member leaves
    /// too, ignoring errors.
    pub fn leave(mut self) -> Result<()> {
        self.left = true;
        self.broker.leave_group(&self.group, &self.member_id)
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        if !self.left && !self.member_id.is_empty() {
            let _ = self.broker.leave_group(&self.group, &self.member_id);
        }
    }
}
