//! Redrive in cluster mode (`docs/cluster.md` "Replay and redrive"). Any broker scans the
//! dead-letter topic (the log is shared) against the redrive records of every subscription
//! that owns letters there (each subscription's records are rows of its own state, read from
//! the store). The letters are then redriven per subscription, under its lease: by this broker
//! when it runs the subscription, asked of the broker that does otherwise (`ask.rs`), and for a
//! paused subscription (no broker runs it) under its lease taken here for the write. Each
//! subscription's part is one write (records and retry entries, all or nothing), checked again
//! there against the records as they are then, so two redrives at once on two brokers never
//! both send a letter (unless forced). A part that fails leaves the others done: the error
//! says so, and redriving again skips what was redriven.

use crate::ask::{moved, Ask};
use crate::dlq::Filter;
use crate::error::{BusError, Result};
use crate::positions::topic_layout;
use crate::redrive::{redrive_rows, RedriveSummary};
use crate::worker::Cmd;
use crate::Bus;
use busbar_broker::BrokerError;
use std::collections::BTreeMap;

impl Bus {
    /// [`Bus::redrive`] in cluster mode.
    pub(crate) async fn redrive_shared(
        &self,
        topic: &str,
        filter: &Filter,
        limit: usize,
        force: bool,
    ) -> Result<RedriveSummary> {
        let (id, _) = topic_layout(&self.ctx.broker, topic)?;
        if force {
            self.sync().await?;
        }
        let owners: BTreeMap<String, bool> = (self.subs.lock().await.iter())
            .map(|(n, e)| {
                let own = e.record.spec.dead_letter_topic.as_deref() == Some(topic);
                (n.clone(), own)
            })
            .collect();
        let skip = match force {
            true => None,
            false => {
                self.load_marks(topic).await?;
                Some(self.ctx.retries.redriven(topic, &id))
            }
        };
        let (letters, skipped, no_subscription) = self
            .scan(topic, &id, filter, limit, skip, Some(owners))
            .await?;
        self.check_redrive(topic, filter).await?;
        let mut by_sub: BTreeMap<String, Vec<(u32, u64)>> = BTreeMap::new();
        for (d, _) in letters {
            by_sub
                .entry(d.subscription)
                .or_default()
                .push((d.partition, d.offset));
        }
        let mut summary = RedriveSummary {
            skipped,
            no_subscription,
            ..Default::default()
        };
        let mut failed = Vec::new();
        let known: Vec<String> = self.subs.lock().await.keys().cloned().collect();
        for (sub, letters) in by_sub {
            if !known.contains(&sub) {
                // Deleted since the scan, as on a single node.
                summary.no_subscription += letters.len();
                continue;
            }
            let n = letters.len();
            match self.redrive_part(&sub, topic, &id, letters, force).await {
                Ok((redriven, skipped)) => {
                    if redriven > 0 {
                        summary.by_subscription.insert(sub, redriven);
                    }
                    summary.redriven += redriven;
                    summary.skipped += skipped;
                }
                Err(BusError::UnknownSubscription(_)) => summary.no_subscription += n,
                Err(e) => failed.push((sub, e)),
            }
        }
        match failed.into_iter().next() {
            None => Ok(summary),
            Some((_, e)) if summary.redriven == 0 => Err(e),
            Some((sub, e)) => {
                let again = match force {
                    true => "a forced redrive sends them again: name the subscription",
                    false => "redrive again (letters redriven are skipped)",
                };
                Err(BusError::Broker(BrokerError::NotCoordinator(format!(
                    "{} letters were redriven ({:?}), but not those of subscription {sub:?}: \
                     {e}; {again}",
                    summary.redriven, summary.by_subscription
                ))))
            }
        }
    }

    /// Cluster mode: reads the redrive records of every subscription whose dead-letter topic is
    /// `topic` as stored (those running here have theirs loaded already). Nothing on a single
    /// node, whose records are all loaded.
    pub(crate) async fn load_marks(&self, topic: &str) -> Result<()> {
        if self.shared().is_none() {
            return Ok(());
        }
        self.sync().await?;
        let owners: Vec<String> = (self.subs.lock().await.iter())
            .filter(|(_, e)| e.record.spec.dead_letter_topic.as_deref() == Some(topic))
            .map(|(n, _)| n.clone())
            .collect();
        for name in owners {
            self.refresh_remote(&name).await?;
        }
        Ok(())
    }

    /// The checks a single node makes after its scan: the topic is a dead-letter topic (of the
    /// named subscription, when one is named), which exists.
    async fn check_redrive(&self, topic: &str, filter: &Filter) -> Result<()> {
        let subs = self.subs.lock().await;
        crate::redrive::own_dead_letter_topic(&subs, topic, filter.subscription.as_deref())?;
        match filter.subscription.as_ref() {
            Some(name) if !subs.contains_key(name) => {
                Err(BusError::UnknownSubscription(name.clone()))
            }
            _ => Ok(()),
        }
    }

    /// Redrives `letters` of subscription `sub` wherever its lease allows: (redriven, skipped).
    async fn redrive_part(
        &self,
        sub: &str,
        topic: &str,
        id: &str,
        letters: Vec<(u32, u64)>,
        force: bool,
    ) -> Result<(usize, usize)> {
        if self.runs_here(sub).await {
            return self.redrive_here(sub, topic, id, &letters, force).await;
        }
        let paused = (self.subs.lock().await.get(sub)).map(|e| e.record.paused);
        match paused {
            // Deleted since: counted by the caller as on a single node.
            None => Err(BusError::UnknownSubscription(sub.to_string())),
            Some(true) => self.redrive_paused(sub, topic, id, &letters, force).await,
            Some(false) => {
                let ask = Ask::Redrive {
                    topic: topic.to_string(),
                    topic_id: id.to_string(),
                    letters,
                    force,
                };
                self.ask_redrive(sub, &ask).await
            }
        }
    }

    /// Redrives `letters` (of incarnation `id` of `topic`) through subscription `sub`, whose lease
    /// this broker holds: those with a redrive record are skipped unless `force`; the records and
    /// retry entries of the others go in one write, and a worker running here is told.
    pub(crate) async fn redrive_here(
        &self,
        sub: &str,
        topic: &str,
        id: &str,
        letters: &[(u32, u64)],
        force: bool,
    ) -> Result<(usize, usize)> {
        let subs = self.subs.lock().await;
        self.redrive_locked(&subs, sub, (topic, id), letters, force)
            .await
    }

    /// [`Bus::redrive_here`] with the bus's lock held.
    async fn redrive_locked(
        &self,
        subs: &BTreeMap<String, crate::Entry>,
        sub: &str,
        (topic, id): (&str, &str),
        letters: &[(u32, u64)],
        force: bool,
    ) -> Result<(usize, usize)> {
        let Some(e) = subs.get(sub) else {
            return Err(BusError::UnknownSubscription(sub.to_string()));
        };
        if !self.ctx.retries.may_write(sub) {
            return Err(moved(sub));
        }
        // Changed since the scan: its letters here are no longer its own (as on a single node).
        if e.record.spec.dead_letter_topic.as_deref() != Some(topic) {
            return Ok((0, 0));
        }
        if topic_layout(&self.ctx.broker, topic)?.0 != id {
            return Err(BusError::Broker(BrokerError::InvalidRequest(format!(
                "topic {topic:?} was deleted and created again during the redrive; try again"
            ))));
        }
        let marks = match force {
            true => BTreeMap::new(),
            false => self.ctx.retries.redriven(topic, id),
        };
        let now = self.now();
        let fresh: Vec<_> = (letters.iter())
            .filter(|at| !marks.contains_key(at))
            .map(|at| redrive_rows(topic, id, sub.to_string(), *at, now))
            .collect();
        let skipped = letters.len() - fresh.len();
        self.ctx.retries.redrive(fresh.clone()).await?;
        if let Some(h) = e.handle.as_ref() {
            for (_, _, r, entry) in fresh.iter().cloned() {
                let _ = h.cmd.send(Cmd::Schedule(r, entry));
            }
        }
        Ok((fresh.len(), skipped))
    }

    /// [`Bus::redrive_here`] for a paused subscription: under its lease taken here for the
    /// write (its state loaded first), given up after, all under the bus's lock (no other load
    /// of its rows lands in between). A subscription resumed or changed meanwhile (its record's
    /// version moved, or a runner holds its lease) is answered 503, nothing done.
    async fn redrive_paused(
        &self,
        sub: &str,
        topic: &str,
        id: &str,
        letters: &[(u32, u64)],
        force: bool,
    ) -> Result<(usize, usize)> {
        if !self.leases.begin_borrow(sub) {
            return Err(moved(sub));
        }
        let done = self.redrive_borrowed(sub, topic, id, letters, force).await;
        self.leases.end_borrow(sub);
        done
    }

    async fn redrive_borrowed(
        &self,
        sub: &str,
        topic: &str,
        id: &str,
        letters: &[(u32, u64)],
        force: bool,
    ) -> Result<(usize, usize)> {
        let shared = self.shared().expect("cluster mode").clone();
        let subs = self.subs.lock().await;
        let Some(e) = subs.get(sub) else {
            return Err(BusError::UnknownSubscription(sub.to_string()));
        };
        if !e.record.paused || e.handle.is_some() || shared.holds(sub) {
            return Err(moved(sub));
        }
        let version = e.version;
        let Some(sent) = shared.take(sub).await? else {
            return Err(moved(sub));
        };
        let done = match shared.load(sub, Some(version)).await {
            Ok(Some(rows)) => {
                self.load_rows(sub, &rows);
                shared.confirm(sub, sent);
                self.redrive_locked(&subs, sub, (topic, id), letters, force)
                    .await
            }
            Ok(None) => Err(moved(sub)),
            Err(e) => Err(e.into()),
        };
        shared.release(sub).await;
        done
    }
}
