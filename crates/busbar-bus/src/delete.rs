//! Deleting a subscription: its record first (the commit point), then its positions, retry
//! state, replay runs and transactional id; what an interrupted deletion left is removed when the
//! bus starts ([`Bus::forget_deleted`]). Cluster mode: `cluster.rs` (`delete_shared`).

use crate::error::{BusError, Result};
use crate::{replay, worker, Bus, Entry};
use std::collections::BTreeMap;

impl Bus {
    /// Deletes a subscription with its positions, retry state and replay runs (dead letters
    /// stay). Saving the subscriptions without it is the commit point: if that fails nothing
    /// changed (it keeps running; delete again). What is left after it is removed here, or, if a
    /// write fails or the process dies first, when the bus starts or the name is created again;
    /// until then it is unused (no worker reads another subscription's state).
    pub async fn delete(&self, name: &str) -> Result<()> {
        self.owners.check(name)?;
        self.sync().await?;
        let mut subs = self.subs.lock().await;
        let mut e = subs
            .remove(name)
            .ok_or_else(|| BusError::UnknownSubscription(name.into()))?;
        if self.shared().is_some() {
            return self.delete_shared(&mut subs, e).await;
        }
        if let Err(err) = self.save(&subs) {
            subs.insert(name.into(), e);
            return Err(err);
        }
        if let Some(h) = e.handle.take() {
            h.stop().await;
        }
        replay::stop_all(&e.replays, replay::RunState::Cancelled, "deleted").await;
        if let Err(err) = self.forget(name).await {
            let msg = format!("subscription {name:?} deleted; its state is removed later: {err}");
            busbar_broker::log::error("busbar", "bus_housekeeping", &msg, &[]);
        }
        Ok(())
    }

    /// Removes the positions, retry entries and replay runs of `name`.
    pub(crate) async fn forget(&self, name: &str) -> Result<()> {
        self.forget_positions(name).await?;
        self.ctx.retries.clear(name).await?;
        let id = worker::transactional_id(name);
        Ok(self.ctx.broker.forget_bus_txn(&id).await?)
    }

    /// Removes what a deletion interrupted left of subscriptions that no longer exist: retry
    /// entries, replay runs, positions and counters.
    pub(crate) async fn forget_deleted(&self, subs: &BTreeMap<String, Entry>) {
        let mut stored = self.ctx.retries.subscriptions();
        stored.extend(self.ctx.positions.subscriptions());
        let prefix = worker::transactional_id("");
        let txns = self.ctx.broker.transactions().into_iter();
        stored.extend(txns.filter_map(|(id, _)| id.strip_prefix(&prefix).map(str::to_string)));
        for name in stored.iter().filter(|n| !subs.contains_key(*n)) {
            if let Err(e) = self.forget(name).await {
                let msg = format!("removing the state of deleted subscription {name:?}: {e}");
                busbar_broker::log::error("busbar", "bus_housekeeping", &msg, &[]);
            }
        }
    }
}
