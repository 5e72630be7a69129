//! The [`Broker`]'s admin operations: creating and deleting topics, adding partitions, changing
//! topic configs.
//!
//! Each takes the `admin` lock (a tokio mutex) first and holds it to the end, so they run one at a
//! time. Their disk work (creating partition logs, about eight fsyncs each; closing logs; writing
//! the topic document; removing directories) runs on the blocking pool, never on an async worker,
//! where a topic of many partitions would stall every task sharing the worker. The lock's guard
//! travels into the blocking task and back, so a caller that stops waiting cannot let the next
//! admin operation start before the work it began is done (map swapped, document written).

use super::{io_err, Broker, TopicMap};
use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
use crate::metadata::{MetaStore, TopicMeta};
use crate::topic::{self, Topic, TopicDescription, TopicInfo};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

pub(super) type AdminGuard = tokio::sync::OwnedMutexGuard<()>;

/// What admin work on the blocking pool needs of the broker.
struct Shared {
    config: BrokerConfig,
    topics: Arc<RwLock<TopicMap>>,
    meta: Arc<MetaStore>,
}

impl Shared {
    /// Writes the topic document for the map `change` makes of the current one, then makes that
    /// map current (the document first: a failed write changes nothing).
    fn commit(&self, change: impl FnOnce(&mut TopicMap)) -> Result<()> {
        let mut next = self
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        change(&mut next);
        let metas: Vec<TopicMeta> = next
            .values()
            .map(|t| TopicMeta {
                name: t.name.clone(),
                id: t.id.clone(),
                partitions: t.partitions.len() as u32,
                configs: t.overrides.clone(),
                created_ms: t.created_ms,
            })
            .collect();
        self.meta.save(&metas)?;
        *self.topics.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }
}

/// Runs `f` on the blocking pool holding the admin lock; hands the lock back with the answer.
async fn blocking<T: Send + 'static>(
    admin: AdminGuard,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<(T, AdminGuard)> {
    tokio::task::spawn_blocking(move || f().map(|v| (v, admin)))
        .await
        .map_err(|e| BrokerError::Storage(format!("admin task failed: {e}")))?
}

fn new_id(name: &str, now: i64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::with_capacity(32);
    for salt in 0..2u8 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(name.as_bytes());
        h.write_i64(now);
        h.write_u8(salt);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

impl Broker {
    fn shared(&self) -> Shared {
        Shared {
            config: self.config.clone(),
            topics: self.topics.clone(),
            meta: self.meta.clone(),
        }
    }

    pub(super) async fn lock_admin(&self) -> AdminGuard {
        self.admin.clone().lock_owned().await
    }

    fn check_partitions(&self, n: i64) -> Result<u32> {
        if n < 1 || n > self.config.partitions_max as i64 {
            return Err(BrokerError::InvalidPartitions(format!(
                "{n} is outside [1, {}]",
                self.config.partitions_max
            )));
        }
        Ok(n as u32)
    }

    /// `name` is free for a new topic: no topic has it (TopicExists) or collides with it once
    /// `.` and `_` are treated alike (TopicCollides). Callers hold the admin lock.
    pub(crate) fn check_new_name(&self, name: &str) -> Result<()> {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        if topics.contains_key(name) {
            return Err(BrokerError::TopicExists(name.to_string()));
        }
        match topics.keys().find(|t| topic::collides(name, t)) {
            Some(existing) => Err(BrokerError::TopicCollides {
                name: name.to_string(),
                existing: existing.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Creates a topic with `partitions` (the default when `None`) and config overrides.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: Option<i64>,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicInfo> {
        topic::validate_name(name)?;
        let n =
            self.check_partitions(partitions.unwrap_or(self.config.default_partitions as i64))?;
        self.config.topic_defaults.with_overrides(&configs)?;
        let admin = self.lock_admin().await;
        // Under the admin lock, which every topic creation holds until its topic is in the map:
        // two concurrent creations of colliding names cannot both pass.
        self.check_new_name(name)?;
        let now = self.config.clock.now_ms();
        let meta = TopicMeta {
            name: name.to_string(),
            id: new_id(name, now),
            partitions: n,
            configs,
            created_ms: now,
        };
        let id = meta.id.clone();
        if let Some(cluster) = self.shared.get() {
            // The cluster's catalog is the commit point; another broker may have the name.
            cluster.create_topic(&meta).await?;
            self.wrote_catalog();
        }
        self.create_local(admin, meta).await?;
        Ok(TopicInfo {
            name: name.to_string(),
            id,
            partitions: n,
        })
    }

    /// Creates `meta`'s topic in this broker (the admin lock held).
    pub(super) async fn create_local(
        &self,
        admin: AdminGuard,
        meta: TopicMeta,
    ) -> Result<AdminGuard> {
        // A deletion that failed or crashed after its metadata write may have left the old
        // topic's committed offsets and directory: they must not become the new topic's.
        self.offsets.delete_topic(&meta.name).await?;
        let shared = self.shared();
        let ((), admin) = blocking(admin, move || {
            let _ = shared
                .config
                .data()
                .remove_dir(&format!("topics/{}", meta.name));
            let t = Arc::new(Broker::open_topic(&shared.config, &meta)?);
            shared.commit(|m| {
                m.insert(meta.name.clone(), t);
            })
        })
        .await?;
        Ok(admin)
    }

    /// Installs the check asked before every topic deletion (the bus refuses deleting a topic
    /// that a subscription dead-letters to). It runs under the admin lock, so it must not block.
    pub fn set_deletion_guard(&self, guard: super::DeletionGuard) {
        *self
            .deletion_guard
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(guard);
    }

    /// Waits until no topic change (create, delete, alter) is in progress, so one that passed
    /// its checks before this call is complete when it returns. The bus claims a dead-letter
    /// topic in its deletion guard, then waits here before checking that the topic exists: a
    /// deletion either saw the claim (refused) or is over (the check sees the topic gone).
    pub async fn topic_changes_settled(&self) {
        drop(self.lock_admin().await);
    }

    fn check_deletion(&self, name: &str) -> Result<()> {
        let guard = self
            .deletion_guard
            .read()
            .unwrap_or_else(|e| e.into_inner());
        match guard.as_ref().and_then(|g| g(name)) {
            Some(by) => Err(BrokerError::TopicInUse {
                name: name.to_string(),
                by,
            }),
            None => Ok(()),
        }
    }

    /// Deletes a topic and its data, and the committed offsets of every group for it. The metadata
    /// write is the commit point: once it is done the topic is gone, and offsets or directories a
    /// failure leaves behind are removed later (directories at open as orphans, offsets when a
    /// topic of that name is created again), so a deletion is all or nothing as users see it.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let admin = self.lock_admin().await;
        let t = self.topic(name)?;
        self.check_deletion(name)?;
        if let Some(cluster) = self.shared.get() {
            cluster.delete_topic(&t.id).await?;
            self.wrote_catalog();
        }
        self.delete_local(admin, t).await.map(drop)
    }

    /// Deletes topic `t` in this broker (the admin lock held).
    pub(super) async fn delete_local(
        &self,
        admin: AdminGuard,
        t: Arc<Topic>,
    ) -> Result<AdminGuard> {
        let name = t.name.clone();
        let shared = self.shared();
        let ((), admin) = blocking(admin, move || {
            shared.commit(|m| {
                m.remove(&t.name);
            })?;
            for p in &t.partitions {
                // No snapshot write after this: the directory is about to go, and a topic
                // created again under this name must not find this one's producer state.
                p.producers.seal();
                let _ = p.log.close();
                p.appended.notify_waiters();
            }
            Ok(())
        })
        .await?;
        self.offsets.delete_topic(&name).await?;
        self.prune_lag_windows();
        self.metrics().forget_topic(&name);
        let data = self.config.data();
        let rel = format!("topics/{name}");
        let ((), admin) = blocking(admin, move || {
            data.remove_dir(&rel)
                .map_err(|e| io_err(&format!("remove {}", data.describe(&rel)), e))
        })
        .await?;
        Ok(admin)
    }

    /// Raises a topic's partition count to `total` (never lowers it, as in Kafka).
    pub async fn add_partitions(&self, name: &str, total: i64) -> Result<TopicInfo> {
        let total = self.check_partitions(total)?;
        let admin = self.lock_admin().await;
        let t = self.topic(name)?;
        let have = t.partitions.len() as u32;
        if total <= have {
            return Err(BrokerError::InvalidPartitions(format!(
                "topic {name:?} has {have} partitions; the count can only grow"
            )));
        }
        let id = t.id.clone();
        if let Some(cluster) = self.shared.get() {
            cluster
                .update_topic(&meta_of(&t, total, t.overrides.clone()))
                .await?;
            self.wrote_catalog();
        }
        self.add_partitions_local(admin, t, total).await?;
        Ok(TopicInfo {
            name: name.to_string(),
            id,
            partitions: total,
        })
    }

    /// Raises topic `t`'s partition count to `total` in this broker (the admin lock held).
    pub(super) async fn add_partitions_local(
        &self,
        admin: AdminGuard,
        t: Arc<Topic>,
        total: u32,
    ) -> Result<AdminGuard> {
        let have = t.partitions.len() as u32;
        let shared = self.shared();
        let ((), admin) = blocking(admin, move || {
            let mut partitions = t.partitions.clone();
            for p in have..total {
                let _ = shared
                    .config
                    .data()
                    .remove_dir(&Broker::partition_dir(&t.name, p));
                partitions.push(Broker::open_partition(
                    &shared.config,
                    &t.name,
                    p,
                    &t.config,
                )?);
            }
            let nt = Arc::new(Topic {
                name: t.name.clone(),
                id: t.id.clone(),
                config: t.config.clone(),
                overrides: t.overrides.clone(),
                partitions,
                created_ms: t.created_ms,
            });
            shared.commit(|m| {
                m.insert(nt.name.clone(), nt);
            })
        })
        .await?;
        Ok(admin)
    }

    /// Sets (`Some`) or removes (`None`, back to the default) topic configs, all or nothing.
    pub async fn alter_configs(
        &self,
        name: &str,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<TopicDescription> {
        let admin = self.lock_admin().await;
        let t = self.topic(name)?;
        let mut overrides = t.overrides.clone();
        for (k, v) in changes {
            match v {
                Some(v) => overrides.insert(k, v),
                None => overrides.remove(&k),
            };
        }
        if let Some(cluster) = self.shared.get() {
            self.config.topic_defaults.with_overrides(&overrides)?;
            let meta = meta_of(&t, t.partitions.len() as u32, overrides.clone());
            cluster.update_topic(&meta).await?;
            self.wrote_catalog();
        }
        self.set_configs_local(admin, t, overrides).await?;
        self.describe_topic(name)
    }

    /// Replaces topic `t`'s config overrides in this broker (the admin lock held).
    pub(super) async fn set_configs_local(
        &self,
        admin: AdminGuard,
        t: Arc<Topic>,
        overrides: BTreeMap<String, String>,
    ) -> Result<AdminGuard> {
        let tc = self.config.topic_defaults.with_overrides(&overrides)?;
        for p in &t.partitions {
            p.log.set_config(self.config.log_config(&tc))?;
        }
        let nt = Arc::new(Topic {
            name: t.name.clone(),
            id: t.id.clone(),
            config: tc,
            overrides,
            partitions: t.partitions.clone(),
            created_ms: t.created_ms,
        });
        let shared = self.shared();
        let ((), admin) = blocking(admin, move || {
            shared.commit(|m| {
                m.insert(nt.name.clone(), nt);
            })
        })
        .await?;
        Ok(admin)
    }
}

/// What the catalog stores of topic `t` with `partitions` and `configs`.
pub(super) fn meta_of(t: &Topic, partitions: u32, configs: BTreeMap<String, String>) -> TopicMeta {
    TopicMeta {
        name: t.name.clone(),
        id: t.id.clone(),
        partitions,
        configs,
        created_ms: t.created_ms,
    }
}
