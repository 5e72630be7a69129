//! Moving a subscription's positions (`POST /subscriptions/{name}/reset`): the only way to move
//! them, as they are not consumer-group offsets. In cluster mode the subscription is paused for
//! the move, which this broker makes under the subscription's lease ([`Bus::reset_shared`]).

use crate::cluster::{conflict, RESET_WAIT};
use crate::error::{BusError, Result};
use crate::positions::{self, Position, ResetPosition, ResetTo};
use crate::spec::{invalid, SubscriptionSpec};
use crate::state::EventRef;
use crate::{worker, Bus};
use busbar_broker::BrokerError;
use std::time::{Duration, Instant};

impl Bus {
    /// Moves the positions of subscription `name` (the only way to move them: they are not
    /// consumer-group offsets). The worker stops while they move and starts again after, unless
    /// paused; the retry state of every partition moved is dropped (the new position decides what
    /// is delivered). Answers the new position of each partition moved.
    pub async fn reset(&self, name: &str, to: ResetTo) -> Result<Vec<ResetPosition>> {
        if self.shared().is_some() {
            return self.reset_shared(name, to).await;
        }
        let mut subs = self.subs.lock().await;
        let e = subs
            .get_mut(name)
            .ok_or_else(|| BusError::UnknownSubscription(name.into()))?;
        let moved = self.reset_targets(&e.record.spec, &to)?;
        if let Some(h) = e.handle.take() {
            h.stop().await;
        }
        let sources = e.record.spec.sources.clone();
        let res = match positions::take_over_legacy(&self.ctx, name, &sources).await {
            Ok(()) => self.write_reset(name, &moved).await,
            Err(err) => Err(err),
        };
        if !e.record.paused {
            e.handle = Some(self.spawn(e));
        }
        res.map(|()| moved)
    }

    /// The positions `to` names, each checked against its topic as it is now.
    pub(crate) fn reset_targets(
        &self,
        spec: &SubscriptionSpec,
        to: &ResetTo,
    ) -> Result<Vec<ResetPosition>> {
        let broker = &self.ctx.broker;
        if let ResetTo::Offsets { offsets } = to {
            if offsets.is_empty() {
                return Err(invalid("offsets", "name at least one partition"));
            }
            let mut out: Vec<ResetPosition> = Vec::new();
            for (i, o) in offsets.iter().enumerate() {
                let path = format!("offsets[{i}]");
                if out
                    .iter()
                    .any(|m| m.topic == o.topic && m.partition == o.partition)
                {
                    return Err(invalid(&path, "names a partition named before"));
                }
                if !spec.sources.contains(&o.topic) {
                    return Err(invalid(&path, format!("{:?} is not a source", o.topic)));
                }
                let (start, end) = broker.offsets_of(&o.topic, o.partition as i64)?;
                if !(start..=end).contains(&o.offset) {
                    let why = format!("offset {} is outside [{start}, {end}]", o.offset);
                    return Err(invalid(&format!("{path}.offset"), why));
                }
                out.push(o.clone());
            }
            return Ok(out);
        }
        let ts = match to {
            ResetTo::Time { time } => Some(
                busbar_broker::time::parse_rfc3339(time)
                    .ok_or_else(|| invalid("time", format!("{time:?} is not an RFC 3339 time")))?,
            ),
            _ => None,
        };
        let mut out = Vec::new();
        for topic in &spec.sources {
            let (_, n) = positions::topic_layout(broker, topic)?;
            for p in 0..n {
                let (start, end) = broker.offsets_of(topic, p as i64)?;
                let offset = match (to, ts) {
                    (ResetTo::Earliest {}, _) => start,
                    (_, Some(ts)) => broker.offset_for_timestamp(topic, p as i64, ts)?,
                    _ => end,
                };
                out.push(ResetPosition {
                    topic: topic.clone(),
                    partition: p,
                    offset,
                });
            }
        }
        Ok(out)
    }

    /// Stores the new positions, then ends the retry entries of the partitions moved. In this
    /// order a failure between the two leaves entries that deliver an event again, never a
    /// position past an event that lost its entry. An exactly-once transaction left recorded is
    /// settled first: rolled back later, it would move the positions back over the reset.
    pub(crate) async fn write_reset(&self, name: &str, moved: &[ResetPosition]) -> Result<()> {
        worker::settle_record(&self.ctx, name).await?;
        let (positions, ended) = self.reset_rows(name, moved)?;
        self.ctx.positions.put(name, positions).await?;
        self.ctx.retries.put(name, ended).await
    }

    /// What a reset of `name` to `moved` writes: the new positions, and the end of every retry
    /// entry of a partition moved (the new position decides what is delivered).
    pub(crate) fn reset_rows(&self, name: &str, moved: &[ResetPosition]) -> Result<ResetRows> {
        let mut rows = Vec::new();
        for m in moved {
            let (id, _) = positions::topic_layout(&self.ctx.broker, &m.topic)?;
            let pos = Position {
                offset: m.offset,
                topic_id: id,
                done: vec![],
            };
            rows.push(((m.topic.clone(), m.partition), Some(pos)));
        }
        let moved: std::collections::HashSet<(&str, u32)> = (moved.iter())
            .map(|m| (m.topic.as_str(), m.partition))
            .collect();
        let hit = |r: &EventRef| moved.contains(&(r.topic.as_str(), r.partition));
        let ended = self.ctx.retries.entries(name).into_keys().filter(hit);
        Ok((rows, ended.map(|r| (r, None)).collect()))
    }
}

/// Cluster mode (`docs/cluster.md`, "Reset").
impl Bus {
    /// Cluster mode's reset: the subscription is paused (its runner, wherever it is, drains,
    /// commits and gives its lease up), this broker takes the lease, loads the state, settles
    /// an exactly-once transaction left recorded, writes the new positions and ends the moved
    /// partitions' retry entries in one write fenced by the lease (as a worker's writes are),
    /// gives the lease up and resumes the subscription unless it was paused before. As Kafka
    /// resets a group's offsets only while the group is empty, no worker runs while the
    /// positions move. Bad input is refused before anything changes. One reset of a name at a
    /// time on a broker (another: 409); while it runs this broker's tick leaves the name alone
    /// and nothing here gives its lease up. A change of the subscription made elsewhere while
    /// it waits (update, resume) fails the reset (409) and is kept: the reset resumes only the
    /// version its own pause made. A runner that does not give its lease up within
    /// [`RESET_WAIT`] fails it (503, nothing reset). The pause is recorded as this process's
    /// (`paused_by_reset`): should it die in between, another broker resumes the subscription
    /// once its heartbeat lapses (`cluster.rs`), with or without the new positions.
    pub(crate) async fn reset_shared(&self, name: &str, to: ResetTo) -> Result<Vec<ResetPosition>> {
        if !self.leases.begin_borrow(name) {
            return Err(BusError::Broker(BrokerError::PolicyViolation(format!(
                "a reset of subscription {name:?} is in progress on this broker; try again when \
                 it ends"
            ))));
        }
        let result = self.reset_marked(name, to).await;
        self.leases.end_borrow(name);
        result
    }

    async fn reset_marked(&self, name: &str, to: ResetTo) -> Result<Vec<ResetPosition>> {
        // The record as the cluster has it now (a pause made elsewhere a moment ago counts).
        self.sync().await?;
        let (spec, paused, seen) = {
            let subs = self.subs.lock().await;
            let e = subs
                .get(name)
                .ok_or_else(|| BusError::UnknownSubscription(name.into()))?;
            (e.record.spec.clone(), e.record.paused, e.version)
        };
        let moved = self.reset_targets(&spec, &to)?;
        // Paused by the reset only from the version it checked against; resumed only from the
        // version that pause wrote (any change made meanwhile, a user's pause included, moves
        // it, and is then left as it is).
        let version = match paused {
            true => seen,
            false => match self.set_paused_at(name, true, Some(seen), true).await {
                Ok(Some((_, version))) => version,
                Ok(None) => return Err(conflict(name)),
                Err(err) => {
                    // The pause may have been stored all the same (its answer lost).
                    let _ = self.resume_after_reset(name).await;
                    return Err(err);
                }
            },
        };
        let result = self.reset_under_lease(name, &moved, version).await;
        if !paused {
            self.resume_after_reset(name).await?;
        }
        result.map(|()| moved)
    }

    /// Resumes `name` while it is paused by this reset (its mark is this process's: a user's
    /// pause made meanwhile clears it and is kept; an update made meanwhile keeps it, and the
    /// subscription is resumed with the update). Tried a few times: the positions have moved,
    /// and a subscription left paused is answered as an error saying so.
    async fn resume_after_reset(&self, name: &str) -> Result<()> {
        let me = self.shared().expect("cluster mode").instance();
        let mut last = None;
        for _ in 0..3 {
            match self.resume_if_marked(name, &me).await {
                Ok(_) => return Ok(()),
                Err(BusError::UnknownSubscription(_)) => return Ok(()),
                Err(err) => last = Some(err),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let err = last.map_or_else(String::new, |e| e.to_string());
        Err(BusError::Storage(format!(
            "subscription {name:?}: its positions were reset, but resuming it failed ({err}); \
             it stays paused until resumed"
        )))
    }

    /// Takes `name`'s lease (waiting up to [`RESET_WAIT`] for its holder to give it up), loads
    /// its state at `version` and writes the reset under it.
    async fn reset_under_lease(
        &self,
        name: &str,
        moved: &[ResetPosition],
        version: i64,
    ) -> Result<()> {
        let shared = self.shared().expect("cluster mode").clone();
        let deadline = Instant::now() + RESET_WAIT;
        loop {
            if let Some(sent) = shared.take(name).await? {
                let rows = match shared.load(name, Some(version)).await {
                    Ok(Some(rows)) => rows,
                    Ok(None) => {
                        shared.release(name).await;
                        return Err(conflict(name));
                    }
                    Err(err) => {
                        shared.release(name).await;
                        return Err(err.into());
                    }
                };
                self.load_rows(name, &rows);
                shared.confirm(name, sent);
                let written = self.write_reset_until(name, moved, deadline).await;
                // Settling took the transactional id's lease here: the next runner needs it.
                let id = worker::transactional_id(name);
                self.ctx.broker.hand_over_bus_txn(&id).await;
                shared.release(name).await;
                return written;
            }
            if Instant::now() >= deadline {
                return Err(BusError::Broker(BrokerError::NotCoordinator(format!(
                    "subscription {name:?}: its runner did not give its lease up within \
                     {RESET_WAIT:?}; nothing was reset"
                ))));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The reset's writes under the lease: an exactly-once record settled (again while the
    /// transactional id is still coordinated by the broker that ran the worker, until it gives
    /// that lease up too), then the positions and the ended retry entries in one fenced write.
    async fn write_reset_until(
        &self,
        name: &str,
        moved: &[ResetPosition],
        deadline: Instant,
    ) -> Result<()> {
        let shared = self.shared().expect("cluster mode").clone();
        loop {
            match crate::worker::settle_record(&self.ctx, name).await {
                Err(BusError::Broker(BrokerError::NotCoordinator(_)))
                    if Instant::now() < deadline && shared.holds(name) =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => return Err(err),
                Ok(_) => break,
            }
        }
        let (positions, ended) = self.reset_rows(name, moved)?;
        let mut rows = self.ctx.positions.encode(name, &positions);
        rows.extend(self.ctx.retries.encode(name, &ended));
        shared.write(name, rows).await?;
        if let Some(rows) = shared.load(name, None).await? {
            self.load_rows(name, &rows);
        }
        Ok(())
    }
}

impl Bus {
    /// Resumes the subscriptions a reset paused on a broker process that is no longer live (it
    /// died before it resumed them; asked of the store, so a stale list of brokers here never
    /// counts): as they were before the reset, whether or not its one write of the new
    /// positions was made. A user's pause since clears the reset's mark and is left alone;
    /// several brokers may try, one succeeds.
    pub(crate) async fn resume_orphaned_resets(&self) {
        let shared = self.shared().expect("cluster mode").clone();
        let me = shared.instance();
        let marked: Vec<(String, String)> = (self.subs.lock().await.iter())
            .filter(|(n, e)| e.record.paused && !self.leases.is_borrowed(n))
            .filter_map(|(n, e)| Some((n.clone(), e.record.paused_by_reset.clone()?)))
            .filter(|(_, by)| *by != me)
            .collect();
        for (name, by) in marked {
            if !matches!(shared.is_live(&by).await, Ok(false)) {
                continue;
            }
            if let Ok(true) = self.resume_if_marked(&name, &by).await {
                let msg = format!(
                    "subscription {name:?}: resumed; the broker whose reset paused it died"
                );
                busbar_broker::log::warn("busbar", "bus_cluster", &msg, &[]);
            }
        }
    }

    /// Resumes `name` if it is paused by a reset of the process with instance token `by`
    /// (whatever changed since, a user's pause excepted: it clears the mark); whether it did.
    pub(crate) async fn resume_if_marked(&self, name: &str, by: &str) -> Result<bool> {
        for _ in 0..3 {
            self.sync().await?;
            let version = {
                let subs = self.subs.lock().await;
                let Some(e) = subs.get(name) else {
                    return Ok(false);
                };
                if !e.record.paused || e.record.paused_by_reset.as_deref() != Some(by) {
                    return Ok(false);
                }
                e.version
            };
            // Changed between the read and the write: read again.
            if self
                .set_paused_at(name, false, Some(version), false)
                .await?
                .is_some()
            {
                return Ok(true);
            }
        }
        Err(conflict(name))
    }
}

/// A reset's rows: positions, and retry entries ended.
pub(crate) type ResetRows = (
    Vec<(positions::PartKey, Option<Position>)>,
    Vec<(EventRef, Option<crate::state::RetryEntry>)>,
);
