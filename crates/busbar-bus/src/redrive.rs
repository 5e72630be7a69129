//! Listing and redriving dead letters, and the redrive records that make redrive idempotent.
//!
//! A redrive sends each selected letter back through the subscription that dead-lettered it (a
//! retry entry pointing at the letter, due now) and records, in the same write and just before
//! that entry, that the letter was redriven (`state.rs`): a second redrive of the same letters
//! skips them and says how many it skipped, unless forced. Listing shows `redriven_at`. Records
//! are keyed by the letter's place in one incarnation of its dead-letter topic; maintenance drops
//! those below their partition's log start (retention, delete-records) and those of a deleted or
//! recreated topic, so they are never more than the letters still readable.
//!
//! Records are checked and written under the bus's admin lock, so two concurrent redrives of the
//! same letters cannot both send them. The scans read the topic from disk on the blocking pool.

use crate::dlq::{self, DeadLetter, Filter};
use crate::error::{BusError, Result};
use crate::positions::topic_layout;
use crate::state::{EventRef, LetterRef, Redriven, RetryEntry};
use crate::worker::{Cmd, Ctx};
use crate::{Bus, DEAD_LETTERS_MAX};
use busbar_broker::event::{self, StoredEvent};
use busbar_broker::{last_offset, Broker, BrokerError};
use serde::Serialize;
use std::collections::BTreeMap;

/// What a redrive did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RedriveSummary {
    /// Letters sent back through their subscriptions.
    pub redriven: usize,
    /// The same, per subscription.
    pub by_subscription: BTreeMap<String, usize>,
    /// Letters passing the filter that were redriven before and so were left alone (a forced
    /// redrive sends them again). They do not count against the limit.
    pub skipped: usize,
    /// Letters of subscriptions deleted since, left alone (a redrive of every letter must not be
    /// blocked by them; they stay until retention removes them).
    pub no_subscription: usize,
}

type Letters = Vec<(DeadLetter, StoredEvent)>;
type Marks = BTreeMap<(u32, u64), Redriven>;
type Subs = BTreeMap<String, crate::Entry>;
/// Subscription name → whether its dead-letter topic is the one scanned.
type Owners = BTreeMap<String, bool>;

impl Bus {
    /// Dead letters in `topic` passing `filter`, oldest first per partition, at most `limit`,
    /// each with the time of its latest redrive if it had one.
    pub async fn dead_letters(
        &self,
        topic: &str,
        filter: &Filter,
        limit: usize,
    ) -> Result<Letters> {
        let (id, _) = topic_layout(&self.ctx.broker, topic)?;
        self.load_marks(topic).await?;
        let marks = self.ctx.retries.redriven(topic, &id);
        let (mut letters, _, _) = self.scan(topic, &id, filter, limit, None, None).await?;
        for (d, _) in &mut letters {
            d.redriven_at = (marks.get(&(d.partition, d.offset)))
                .map(|m| busbar_broker::time::format_rfc3339(m.at_ms));
        }
        Ok(letters)
    }

    /// Sends dead letters in `topic` passing `filter` back through the subscriptions that
    /// dead-lettered them (letters of a subscription deleted since are left alone and counted), as fresh deliveries with a new attempt count,
    /// at most `limit`. Letters redriven before are skipped unless `force`; letters of an
    /// undecodable batch are never redriven (their letter stays as the record of it).
    pub async fn redrive(
        &self,
        topic: &str,
        filter: &Filter,
        limit: usize,
        force: bool,
    ) -> Result<RedriveSummary> {
        if self.shared().is_some() {
            return self.redrive_shared(topic, filter, limit, force).await;
        }
        let (id, _) = topic_layout(&self.ctx.broker, topic)?;
        let skip = (!force).then(|| self.ctx.retries.redriven(topic, &id));
        // Which subscriptions may own letters here (name → its dead-letter topic is this one),
        // so letters of deleted (or forged) subscriptions are passed over inside the scan and
        // cannot fill its limit.
        let owners: Owners = (self.subs.lock().await.iter())
            .map(|(n, e)| {
                let own = e.record.spec.dead_letter_topic.as_deref() == Some(topic);
                (n.clone(), own)
            })
            .collect();
        let (mut letters, mut skipped, mut no_subscription) = self
            .scan(topic, &id, filter, limit, skip, Some(owners))
            .await?;
        let subs = self.subs.lock().await;
        own_dead_letter_topic(&subs, topic, filter.subscription.as_deref())?;
        if let Some(name) = (filter.subscription.as_ref()).filter(|n| !subs.contains_key(*n)) {
            return Err(BusError::UnknownSubscription(name.clone()));
        }
        // The scan's check again, for subscriptions changed or deleted during it. A letter is an
        // event with busbar-dlq-* headers: anyone who may write a topic can make one. Only letters
        // in the dead-letter topic of the subscription they name are its own.
        letters.retain(|(d, _)| match subs.get(&d.subscription) {
            Some(e) => e.record.spec.dead_letter_topic.as_deref() == Some(topic),
            None => {
                no_subscription += 1;
                false
            }
        });
        if !force {
            // Redriven by another call since the scan: it held this lock while writing.
            let marks = self.ctx.retries.redriven(topic, &id);
            let before = letters.len();
            letters.retain(|(d, _)| !marks.contains_key(&(d.partition, d.offset)));
            skipped += before - letters.len();
        }
        let now = self.now();
        let rows: Vec<_> = (letters.into_iter())
            .map(|(d, _)| redrive_rows(topic, &id, d.subscription, (d.partition, d.offset), now))
            .collect();
        let mut summary = RedriveSummary {
            skipped,
            no_subscription,
            ..Default::default()
        };
        for (_, rec, _, _) in &rows {
            *summary
                .by_subscription
                .entry(rec.subscription.clone())
                .or_default() += 1;
            summary.redriven += 1;
        }
        let written = self.ctx.retries.redrive(rows.clone()).await;
        if let Err(e) = written {
            self.undo_partial(&subs, rows).await;
            return Err(e);
        }
        for (_, rec, r, e) in rows {
            if let Some(h) = subs.get(&rec.subscription).and_then(|e| e.handle.as_ref()) {
                let _ = h.cmd.send(Cmd::Schedule(r, e));
            }
        }
        Ok(summary)
    }

    /// After a failed redrive write, some rows (a prefix) are durable. Those letters whose retry
    /// entry made it are scheduled (they are redriven); records without their entry are removed
    /// if the disk allows, so only a crash leaves a letter marked but not sent (`force` sends it).
    async fn undo_partial(
        &self,
        subs: &Subs,
        rows: Vec<(LetterRef, Redriven, EventRef, RetryEntry)>,
    ) {
        let mut orphans = Vec::new();
        let mut entries: BTreeMap<String, BTreeMap<EventRef, RetryEntry>> = BTreeMap::new();
        for (l, rec, r, e) in rows {
            let sub = rec.subscription;
            let have = entries
                .entry(sub.clone())
                .or_insert_with(|| self.ctx.retries.entries(&sub));
            if !have.contains_key(&r) {
                orphans.push(l);
            } else if let Some(h) = subs.get(&sub).and_then(|x| x.handle.as_ref()) {
                let _ = h.cmd.send(Cmd::Schedule(r, e));
            }
        }
        let _ = self.ctx.retries.forget_redrives(orphans).await;
    }

    /// Scans `topic` (incarnation `id`) on the blocking pool; with `skip`, letters it names and
    /// undecodable letters are passed over (and the former counted).
    pub(crate) async fn scan(
        &self,
        topic: &str,
        id: &str,
        filter: &Filter,
        limit: usize,
        skip: Option<Marks>,
        owners: Option<Owners>,
    ) -> Result<(Letters, usize, usize)> {
        let broker = self.ctx.broker.clone();
        // Cluster mode: this broker's copies may be behind the shared store (caught up when read).
        let (_, partitions) = topic_layout(&broker, topic)?;
        for p in 0..partitions {
            broker.prepare_read(topic, i64::from(p)).await;
        }
        let (topic, id, filter) = (topic.to_string(), id.to_string(), filter.clone());
        tokio::task::spawn_blocking(move || {
            let (mut skipped, mut unowned) = (0, 0);
            let keep = |d: &DeadLetter| match &skip {
                _ if owners
                    .as_ref()
                    .is_some_and(|o| o.get(&d.subscription) != Some(&true)) =>
                {
                    if owners
                        .as_ref()
                        .is_some_and(|o| !o.contains_key(&d.subscription))
                    {
                        unowned += 1;
                    }
                    false
                }
                None => true,
                Some(_) if d.reason == dlq::UNDECODABLE => false,
                Some(m) if m.contains_key(&(d.partition, d.offset)) => {
                    skipped += 1;
                    false
                }
                Some(_) => true,
            };
            let letters = scan_dead_letters(&broker, &topic, &filter, limit, keep)?;
            if topic_layout(&broker, &topic)?.0 != id {
                return Err(BusError::Broker(BrokerError::InvalidRequest(format!(
                    "topic {topic:?} was deleted and created again during the scan; try again"
                ))));
            }
            Ok((letters, skipped, unowned))
        })
        .await
        .map_err(|e| BusError::Storage(format!("dead-letter scan failed: {e}")))?
    }
}

/// The redrive record and retry entry of the letter at `at` (partition, offset), redriven
/// through `subscription` at `now`.
pub(crate) fn redrive_rows(
    topic: &str,
    id: &str,
    subscription: String,
    at: (u32, u64),
    now: i64,
) -> (LetterRef, Redriven, EventRef, RetryEntry) {
    let (partition, offset) = at;
    let letter = LetterRef {
        topic: topic.to_string(),
        topic_id: id.to_string(),
        partition,
        offset,
    };
    let r = EventRef {
        topic: topic.to_string(),
        partition,
        offset,
    };
    let entry = RetryEntry {
        attempts: 0,
        first_ms: now,
        last_ms: now,
        due_ms: Some(now),
        lane: None,
        reason: "redrive".into(),
        status: None,
        error: String::new(),
        dead_letter: None,
    };
    let rec = Redriven {
        subscription,
        at_ms: now,
    };
    (letter, rec, r, entry)
}

/// Dead letters of `topic` passing `filter` and `keep`, oldest first per partition, at most
/// `limit` (and [`DEAD_LETTERS_MAX`]).
fn scan_dead_letters(
    broker: &Broker,
    topic: &str,
    filter: &Filter,
    limit: usize,
    mut keep: impl FnMut(&DeadLetter) -> bool,
) -> Result<Letters> {
    let (_, partitions) = topic_layout(broker, topic)?;
    let limit = limit.min(DEAD_LETTERS_MAX);
    let mut out = Vec::new();
    for p in (0..partitions).filter(|p| filter.partition.is_none_or(|f| f == *p)) {
        let (start, end) = broker.offsets_of(topic, p as i64)?;
        let mut offset = filter.from_offset.unwrap_or(start).max(start);
        let end = filter.to_offset.map_or(end, |t| t.min(end));
        while offset < end && out.len() < limit {
            let data = broker.read_now(topic, p as i64, offset, 1 << 20)?;
            let Some(last) = last_offset(&data) else {
                break;
            };
            // An undecodable batch holds no readable letter: skipped, not fatal to the listing.
            let events = broker.decode_committed(topic, p, &data, offset)?;
            for ev in events.into_iter().filter_map(|d| match d {
                event::Decoded::Event(ev) => Some(ev),
                event::Decoded::Undecodable { .. } => None,
            }) {
                if ev.offset >= end || out.len() >= limit {
                    break;
                }
                if let Some(d) = DeadLetter::of(&ev).filter(|d| d.passes(filter) && keep(d)) {
                    out.push((d, ev));
                }
            }
            offset = last + 1;
        }
    }
    Ok(out)
}

/// Removes the redrive records no letter answers to any more: below their partition's log start,
/// of a partition or topic that is gone, or of an older incarnation of the topic. Answers how many.
pub(crate) async fn prune(ctx: &Ctx) -> Result<usize> {
    let mut gone = Vec::new();
    let mut layouts: BTreeMap<String, Option<(String, u32)>> = BTreeMap::new();
    for l in ctx.retries.redriven_letters() {
        // In cluster mode a record is removed by the broker running its subscription.
        if !(ctx.retries.redriven_by(&l)).is_some_and(|sub| ctx.retries.may_write(&sub)) {
            continue;
        }
        let layout = match layouts.get(&l.topic) {
            Some(v) => v.clone(),
            None => {
                let v = match topic_layout(&ctx.broker, &l.topic) {
                    Ok(v) => Some(v),
                    Err(BusError::Broker(BrokerError::UnknownTopic(_))) => None,
                    Err(e) => return Err(e),
                };
                layouts.insert(l.topic.clone(), v.clone());
                v
            }
        };
        let live = match layout {
            Some((id, n)) if id == l.topic_id && l.partition < n => {
                let (start, _) = ctx.broker.offsets_of(&l.topic, l.partition as i64)?;
                l.offset >= start
            }
            _ => false,
        };
        if !live {
            gone.push(l);
        }
    }
    let n = gone.len();
    ctx.retries.forget_redrives(gone).await?;
    Ok(n)
}

/// A redrive reads a subscription's own dead-letter topic only: `topic` must be the
/// `dead_letter_topic` of `named` (when a subscription is named) or of some subscription, else
/// 400 and nothing is redriven (any other topic's events could be forged letters).
pub(crate) fn own_dead_letter_topic(subs: &Subs, topic: &str, named: Option<&str>) -> Result<()> {
    let dlq_of = |e: &crate::Entry| e.record.spec.dead_letter_topic.as_deref() == Some(topic);
    let ok = match named {
        Some(n) => subs.get(n).is_none_or(dlq_of),
        None => subs.values().any(dlq_of),
    };
    if ok {
        return Ok(());
    }
    let whose = named.map_or("any subscription".to_string(), |n| {
        format!("subscription {n:?}")
    });
    Err(BusError::InvalidSubscription {
        path: "topic".into(),
        reason: format!(
            "{topic:?} is not the dead_letter_topic of {whose}: a redrive reads only a \
             subscription's own dead-letter topic"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::from_json;
    use busbar_broker::datadir::MemDataDir;
    use busbar_broker::{BrokerConfig, Event};
    use busbar_log::disk::MemFs;
    use serde_json::json;
    use std::sync::Arc;

    fn letter(n: u64) -> Event {
        let h = |k: &str, v: String| (format!("busbar-dlq-{k}"), v.into_bytes());
        Event {
            key: None,
            value: Some(b"{}".to_vec()),
            headers: vec![
                h("subscription", "s".into()),
                h("reason", "http_status".into()),
                h("source-topic", "in".into()),
                h("source-partition", "0".into()),
                h("source-offset", n.to_string()),
            ],
            timestamp: None,
            partition: None,
        }
    }

    fn marked(bus: &Bus) -> Vec<(String, u64)> {
        (bus.ctx.retries.redriven_letters().into_iter())
            .map(|l| (l.topic_id, l.offset))
            .collect()
    }

    /// Records go with the letters: below the log start, or of a deleted and recreated topic,
    /// they are pruned; a recreated topic's letters are not taken for the old ones.
    #[tokio::test]
    async fn redrive_records_are_keyed_by_incarnation_and_pruned_with_their_letters() {
        let dir = Arc::new(MemDataDir::new(MemFs::new()));
        let b = Arc::new(
            Broker::open(BrokerConfig {
                data: Some(dir),
                ..Default::default()
            })
            .unwrap(),
        );
        for t in ["in", "dlq"] {
            b.create_topic(t, Some(1), Default::default())
                .await
                .unwrap();
        }
        let bus = Bus::open(b.clone()).unwrap();
        let spec = json!({"name": "s", "sources": ["in"], "target": {"url": "http://127.0.0.1:9/"},
                          "dead_letter_topic": "dlq"});
        bus.create(from_json(&spec).unwrap()).await.unwrap();
        b.publish("dlq", (0..3).map(letter).collect())
            .await
            .unwrap();
        let all = Filter::default();
        let first = bus.redrive("dlq", &all, 100, false).await.unwrap();
        assert_eq!((first.redriven, first.skipped), (3, 0));
        let again = bus.redrive("dlq", &all, 100, false).await.unwrap();
        assert_eq!((again.redriven, again.skipped), (0, 3));
        assert_eq!(prune(&bus.ctx).await.unwrap(), 0);

        b.delete_records("dlq", 0, Some(2)).await.unwrap();
        assert_eq!(prune(&bus.ctx).await.unwrap(), 2);
        let old_id = topic_layout(&b, "dlq").unwrap().0;
        assert_eq!(marked(&bus), [(old_id.clone(), 2)]);

        // A dead-letter topic in use cannot be deleted: the subscription goes and comes back.
        bus.delete("s").await.unwrap();
        b.delete_topic("dlq").await.unwrap();
        b.create_topic("dlq", Some(1), Default::default())
            .await
            .unwrap();
        bus.create(from_json(&spec).unwrap()).await.unwrap();
        b.publish("dlq", vec![letter(7)]).await.unwrap();
        // Offset 0 of the new topic is another letter than offset 0 of the old one.
        let listed = bus.dead_letters("dlq", &all, 10).await.unwrap();
        assert_eq!(listed[0].0.redriven_at, None);
        let fresh = bus.redrive("dlq", &all, 100, false).await.unwrap();
        assert_eq!((fresh.redriven, fresh.skipped), (1, 0));
        assert_eq!(
            prune(&bus.ctx).await.unwrap(),
            1,
            "the old incarnation's record"
        );
        let new_id = topic_layout(&b, "dlq").unwrap().0;
        assert_eq!(marked(&bus), [(new_id, 0)]);
        let listed = bus.dead_letters("dlq", &all, 10).await.unwrap();
        assert!(listed[0].0.redriven_at.is_some());
        bus.close().await.unwrap();
    }
}
