//! Cluster mode's topic catalog in this broker (`shared.rs`): [`Broker::sync_topics`] makes the
//! local topics the shared catalog's, with the admin operations' local halves (`admin.rs`).

use super::Broker;
use crate::error::Result;
use crate::kvlog::{SharedKv, SharedTable};
use crate::metadata::TopicMeta;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Broker {
    /// Makes this broker's topics those of the cluster's catalog: topics it lacks are created
    /// (with the catalog's ids), topics gone from it (or another topic under the name) deleted,
    /// partition counts and configs brought level. A topic that fails is logged and the others go
    /// on; the failure is answered after all were tried. Answers whether topics or partitions were
    /// added (their data is then to be fetched). Each change is made under the admin lock and
    /// only if the topic is still the one seen (a local admin operation may have run meanwhile).
    ///
    /// `writes_before`: [`Broker::catalog_writes`] before `metas` was read. When this broker has
    /// written the catalog since, `metas` may predate that write (a topic created here just now
    /// would be deleted, a config change undone): the sync stops before its next change and
    /// answers `None`; the caller reads the catalog again.
    pub async fn sync_topics(
        &self,
        metas: &[TopicMeta],
        writes_before: u64,
    ) -> Result<Option<bool>> {
        let want: HashMap<&str, &TopicMeta> = metas.iter().map(|m| (m.name.as_str(), m)).collect();
        let mut first_err = None;
        let mut failed = |e: crate::error::BrokerError, what: &str| {
            crate::log::warn(
                "busbar",
                "cluster_topic_sync_failed",
                &format!("cluster: could not apply the catalog's {what}: {e}"),
                &[],
            );
            first_err.get_or_insert(e);
        };
        let mut added = false;
        for t in self.all_topics() {
            if want.get(t.name.as_str()).is_some_and(|m| m.id == t.id) {
                continue;
            }
            let name = t.name.clone();
            let admin = self.lock_admin().await;
            if self.catalog_writes() != writes_before {
                return Ok(None);
            }
            if !self.topic(&name).is_ok_and(|now| Arc::ptr_eq(&now, &t)) {
                continue;
            }
            if let Err(e) = self.delete_local(admin, t).await {
                failed(e, &format!("deletion of {name}"));
            }
        }
        for m in metas {
            let admin = self.lock_admin().await;
            if self.catalog_writes() != writes_before {
                return Ok(None);
            }
            let Ok(t) = self.topic(&m.name) else {
                added = true;
                if let Err(e) = self.create_local(admin, m.clone()).await {
                    failed(e, &format!("topic {}", m.name));
                }
                continue;
            };
            if t.id != m.id {
                // Replaced under this name since the list was read: the next sync sees it.
                continue;
            }
            let admin = if m.partitions as usize > t.partitions.len() {
                added = true;
                match self.add_partitions_local(admin, t, m.partitions).await {
                    Ok(a) => a,
                    Err(e) => {
                        failed(e, &format!("partitions of {}", m.name));
                        continue;
                    }
                }
            } else {
                admin
            };
            let Ok(t) = self.topic(&m.name) else {
                continue;
            };
            if m.configs != t.overrides {
                if let Err(e) = self.set_configs_local(admin, t, m.configs.clone()).await {
                    failed(e, &format!("configs of {}", m.name));
                }
            }
        }
        first_err.map_or(Ok(Some(added)), Err)
    }

    /// Cluster mode: users, API tokens, ACLs and quotas live in `kv` from now on (every broker
    /// the same), each loaded now.
    pub async fn share_tables(&self, kv: Arc<dyn SharedKv>) -> Result<()> {
        self.auth.share(&kv).await?;
        self.quotas.share(kv.clone()).await?;
        let _ = self.shared_kv.set(kv);
        Ok(())
    }

    /// The shared spaces: [`Broker::share_tables`]'s, and `schemas` (the schema registry, kept
    /// by `busbar-schema`, [`Broker::add_shared_table`]).
    pub const SHARED_SPACES: [&'static str; 5] = ["users", "tokens", "acls", "quotas", "schemas"];

    /// A single node's users, ACLs and quotas, by shared space: what `busbar cluster import`
    /// copies into the cluster (not its API tokens: made again on the cluster).
    pub fn export_tables(&self) -> Result<crate::kvlog::SpaceRows> {
        let mut out = self.auth.rows()?;
        out.push(("quotas", self.quotas.rows()?));
        Ok(out)
    }

    /// Cluster mode: the shared spaces' store (for tables other crates keep there).
    pub fn shared_kv(&self) -> Option<Arc<dyn SharedKv>> {
        self.shared_kv.get().cloned()
    }

    /// Cluster mode: `table` keeps its rows in shared space `space` (one of
    /// [`Broker::SHARED_SPACES`]); it is refreshed when another broker changes it.
    pub fn add_shared_table(&self, space: &'static str, table: Arc<dyn SharedTable>) {
        let mut tables = self.shared_tables.lock().unwrap_or_else(|e| e.into_inner());
        tables.retain(|(s, _)| *s != space);
        tables.push((space, table));
    }

    /// Cluster mode: reads shared space `space` again if another broker changed it (a
    /// notification, or a poll while notifications are down).
    pub async fn refresh_table(&self, space: &str) -> Result<()> {
        match space {
            "quotas" => self.quotas.refresh().await,
            "users" | "tokens" | "acls" => self.auth.refresh(space).await,
            _ => {
                let table = (self.shared_tables.lock().unwrap_or_else(|e| e.into_inner()))
                    .iter()
                    .find(|(s, _)| *s == space)
                    .map(|(_, t)| t.clone());
                match table {
                    Some(t) => t.refresh().await,
                    None => Ok(()),
                }
            }
        }
    }

    /// How many catalog changes this broker has written to the shared store (cluster mode).
    pub fn catalog_writes(&self) -> u64 {
        self.catalog_writes.load(Ordering::SeqCst)
    }

    /// Counts a catalog change written to the shared store (the admin lock held).
    pub(super) fn wrote_catalog(&self) {
        self.catalog_writes.fetch_add(1, Ordering::SeqCst);
    }

    /// InitProducerId for an idempotent producer: from the shared store in cluster mode (ids
    /// unique across brokers), else [`Broker::init_producer_id`].
    pub async fn init_producer_id_shared(&self, current: Option<(i64, i16)>) -> Result<(i64, i16)> {
        match self.shared.get() {
            Some(cluster) => cluster.init_producer_id(current).await,
            None => self.init_producer_id(current),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Broker, BrokerConfig};

    /// A catalog read before this broker's own write (here: a topic it created) is stale: the
    /// sync changes nothing and asks for a new read; a read after it applies.
    #[tokio::test]
    async fn a_catalog_read_before_this_brokers_own_write_changes_nothing() {
        let fs = busbar_log::disk::MemFs::new();
        let data = crate::datadir::MemDataDir::new(fs);
        let b = Broker::open(BrokerConfig {
            data: Some(std::sync::Arc::new(data)),
            ..Default::default()
        })
        .unwrap();
        let before = b.catalog_writes();
        b.create_topic("t", Some(1), Default::default())
            .await
            .unwrap();
        // What the cluster-mode branch of an admin operation does after the shared commit.
        b.wrote_catalog();
        assert_eq!(b.sync_topics(&[], before).await.unwrap(), None);
        assert!(b.topic("t").is_ok(), "a topic created after the read stays");
        let now = b.catalog_writes();
        assert_eq!(b.sync_topics(&[], now).await.unwrap(), Some(false));
        assert!(b.topic("t").is_err(), "a read after the write applies");
    }
}
