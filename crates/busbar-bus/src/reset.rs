//! Moving a subscription's positions (`POST /subscriptions/{name}/reset`): the only way to move
//! them, as they are not consumer-group offsets.

use crate::error::{BusError, Result};
use crate::positions::{self, Position, ResetPosition, ResetTo};
use crate::spec::{invalid, SubscriptionSpec};
use crate::state::EventRef;
use crate::{worker, Bus};

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

/// A reset's rows: positions, and retry entries ended.
pub(crate) type ResetRows = (
    Vec<(positions::PartKey, Option<Position>)>,
    Vec<(EventRef, Option<crate::state::RetryEntry>)>,
);
