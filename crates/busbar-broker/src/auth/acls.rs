//! The durable ACL store: one row per ACL in the internal compacted log `internal/acls` (the key
//! is the ACL itself as JSON, the value a marker; a tombstone deletes). Writes are serialised by
//! one lock; each write is one batch (a request whose rows need more is refused), and the in-memory
//! [`AclSet`] is swapped only once it is durable, so a failed write answers an error and changes
//! nothing in memory. At most `auth.acls_max` ACLs exist.

use super::acl::{AclBinding, AclFilter, AclSet, Operation, PatternType, Permission, ResourceType};
use super::AuthError;
use crate::kvlog::{KvLog, SharedKv};
use busbar_log::disk::Storage;
use busbar_log::Clock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

/// An ACL as stored (Kafka's names for the enums).
#[derive(Serialize, Deserialize)]
struct Stored {
    resource_type: String,
    resource_name: String,
    pattern: String,
    principal: String,
    host: String,
    operation: String,
    permission: String,
}

fn encode(b: &AclBinding) -> Vec<u8> {
    let s = Stored {
        resource_type: b.resource_type.name().into(),
        resource_name: b.resource_name.clone(),
        pattern: b.pattern.name().into(),
        principal: b.principal.clone(),
        host: b.host.clone(),
        operation: b.operation.name().into(),
        permission: b.permission.name().into(),
    };
    serde_json::to_vec(&s).expect("acl encodes")
}

fn decode(bytes: &[u8]) -> Option<AclBinding> {
    let s: Stored = serde_json::from_slice(bytes).ok()?;
    Some(AclBinding {
        resource_type: ResourceType::of_name(&s.resource_type)?,
        resource_name: s.resource_name,
        pattern: PatternType::of_name(&s.pattern)?,
        principal: s.principal,
        host: s.host,
        operation: Operation::of_name(&s.operation)?,
        permission: Permission::of_name(&s.permission)?,
    })
}

/// The ACLs `log` holds, and the damaged ranges it skipped.
fn replay(log: &KvLog) -> crate::Result<(AclSet, Vec<String>)> {
    let mut all = BTreeSet::new();
    let damage = log.replay(|_, key, value| {
        let Some(b) = decode(key) else { return };
        match value {
            Some(_) => all.insert(b),
            None => all.remove(&b),
        };
    })?;
    Ok((AclSet::new(all.into_iter().collect()), damage))
}

/// The durable store of ACLs.
pub struct AclStore {
    log: KvLog,
    /// The current set; readers clone the `Arc` and decide without a lock held.
    set: Arc<RwLock<Arc<AclSet>>>,
    writing: tokio::sync::Mutex<()>,
    max: usize,
    /// Largest answer of one delete (`auth.acls_answer_bytes_max`).
    answer_bytes_max: usize,
    damage: Vec<String>,
}

impl AclStore {
    /// Opens the store in `storage`, replaying its log; at most `max` ACLs may exist.
    pub fn open(
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        max: usize,
    ) -> crate::Result<Self> {
        let log = KvLog::open(storage, clock)?;
        let (all, damage) = replay(&log)?;
        Ok(Self {
            log,
            set: Arc::new(RwLock::new(Arc::new(all))),
            writing: Default::default(),
            max,
            answer_bytes_max: usize::MAX,
            damage,
        })
    }

    /// Sets `auth.acls_answer_bytes_max`: a delete whose answer (each filter's matches, counted
    /// by [`AclBinding::answer_bytes`]) would pass it is refused whole.
    pub fn with_answer_bytes_max(mut self, answer_bytes_max: usize) -> Self {
        self.answer_bytes_max = answer_bytes_max;
        self
    }

    /// Damaged ranges of the ACL log skipped when it was opened.
    pub fn damage(&self) -> &[String] {
        &self.damage
    }

    /// Cluster mode: the ACLs are those of the shared store's space `acls` from now on.
    pub async fn share(&self, kv: Arc<dyn SharedKv>) -> crate::Result<()> {
        let _w = self.writing.lock().await;
        self.log.share(kv, "acls").await?;
        self.swap(replay(&self.log)?.0);
        Ok(())
    }

    /// Cluster mode: reads the ACLs again if another broker changed them.
    pub async fn refresh(&self) -> crate::Result<()> {
        let _w = self.writing.lock().await;
        self.reload_locked().await
    }

    /// [`AclStore::refresh`] with the write lock held (also after a failed write).
    async fn reload_locked(&self) -> crate::Result<()> {
        (self.log)
            .refresh_with(|log| {
                self.swap(replay(log)?.0);
                Ok(())
            })
            .await
    }

    fn swap(&self, all: AclSet) {
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(all);
    }

    /// The current ACLs.
    pub fn snapshot(&self) -> Arc<AclSet> {
        self.set.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Adds `acls` (each validated first; already present ones are kept as they are) in one
    /// durable write: all or none (more than one batch holds is refused). Refuses the whole when the store would pass `auth.acls_max`.
    pub async fn create(&self, acls: Vec<AclBinding>) -> Result<(), AuthError> {
        for b in &acls {
            b.validate().map_err(AuthError::InvalidAcl)?;
        }
        let _w = self.writing.lock().await;
        // Cluster mode: decided on the cluster's latest (a version read when nothing changed);
        // the write is refused if another broker writes meanwhile.
        let _ = self.reload_locked().await;
        let current = self.snapshot();
        let have: BTreeSet<&AclBinding> = current.all().iter().collect();
        let fresh: BTreeSet<AclBinding> = acls.into_iter().filter(|b| !have.contains(b)).collect();
        if current.all().len() + fresh.len() > self.max {
            return Err(AuthError::InvalidAcl(format!(
                "at most auth.acls_max ({}) ACLs may exist; {} do",
                self.max,
                current.all().len()
            )));
        }
        let rows: Vec<_> = fresh
            .iter()
            .map(|b| (encode(b), Some(b"1".to_vec())))
            .collect();
        self.write(rows, fresh.into_iter().collect(), true).await
    }

    /// Deletes every ACL passing `filter`; answers those deleted (none when the write failed).
    pub async fn delete(&self, filter: &AclFilter) -> Result<Vec<AclBinding>, AuthError> {
        let mut gone = self.delete_each(std::slice::from_ref(filter)).await?;
        Ok(gone.pop().unwrap_or_default())
    }

    /// Deletes every ACL passing any of `filters` in one write (all or nothing); answers, per
    /// filter, the ACLs it matched (an ACL matched by two filters is listed by both).
    pub async fn delete_each(
        &self,
        filters: &[AclFilter],
    ) -> Result<Vec<Vec<AclBinding>>, AuthError> {
        let _w = self.writing.lock().await;
        // Cluster mode: decided on the cluster's latest (a version read when nothing changed);
        // the write is refused if another broker writes meanwhile.
        let _ = self.reload_locked().await;
        let current = self.snapshot();
        let per: Vec<Vec<AclBinding>> = filters
            .iter()
            .map(|f| current.matching(f).cloned().collect())
            .collect();
        let bytes: usize = per.iter().flatten().map(AclBinding::answer_bytes).sum();
        if bytes > self.answer_bytes_max {
            return Err(AuthError::InvalidAcl(format!(
                "the filters match {} ACLs, about {bytes} bytes to answer, over \
                 auth.acls_answer_bytes_max ({}): delete with narrower filters",
                per.iter().map(Vec::len).sum::<usize>(),
                self.answer_bytes_max
            )));
        }
        let gone: BTreeSet<AclBinding> = per.iter().flatten().cloned().collect();
        let rows: Vec<_> = gone.iter().map(|b| (encode(b), None)).collect();
        self.write(rows, gone.into_iter().collect(), false).await?;
        Ok(per)
    }

    /// Writes `rows` (one per ACL of `acls`, same order) in one batch and applies them once
    /// durable: all or nothing (rows over one batch are refused with nothing written; a failed
    /// sync leaves the outcome unknown until a restart, as for every internal log).
    async fn write(
        &self,
        rows: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        acls: Vec<AclBinding>,
        add: bool,
    ) -> Result<(), AuthError> {
        let set = self.set.clone();
        let n = rows.len();
        let written = self
            .log
            .write_whole(rows, move |written| {
                let done: BTreeSet<AclBinding> = acls.into_iter().take(written.len()).collect();
                let mut guard = set.write().unwrap_or_else(|e| e.into_inner());
                let mut all: BTreeSet<AclBinding> = guard.all().iter().cloned().collect();
                if add {
                    all.extend(done);
                } else {
                    all.retain(|b| !done.contains(b));
                }
                *guard = Arc::new(AclSet::new(all.into_iter().collect()));
            })
            .await;
        if written.is_err() {
            let _ = self.reload_locked().await;
        }
        written.map_err(|e| match e {
            crate::BrokerError::InvalidRequest(why) => AuthError::InvalidAcl(format!(
                "{n} ACLs are too many for one write ({why}, the internal log's batch \
                     limit): send fewer per request"
            )),
            e => AuthError::Storage(e),
        })
    }

    /// The stored rows (`busbar cluster import`).
    pub fn rows(&self) -> crate::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.log.rows()
    }

    /// Compacts the log.
    pub fn maintain(&self) -> crate::Result<()> {
        self.log.compact()
    }

    /// Clean shutdown.
    pub fn close(&self) -> crate::Result<()> {
        self.log.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use busbar_log::disk::MemStorage;

    fn acl(name: &str, perm: Permission) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern: PatternType::Literal,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: Operation::Read,
            permission: perm,
        }
    }

    #[test]
    fn stored_acls_round_trip() {
        let b = acl("t", Permission::Deny);
        assert_eq!(decode(&encode(&b)), Some(b));
        assert_eq!(decode(b"{}"), None);
    }

    #[tokio::test]
    async fn acls_survive_reopen_and_deletes_apply() {
        let storage: Arc<dyn Storage> = Arc::new(MemStorage::default());
        let clock: Arc<dyn Clock> = Arc::new(busbar_log::SystemClock);
        let s = AclStore::open(storage.clone(), clock.clone(), 3).unwrap();
        s.create(vec![
            acl("a", Permission::Allow),
            acl("b", Permission::Allow),
        ])
        .await
        .unwrap();
        s.create(vec![acl("a", Permission::Allow)]).await.unwrap();
        assert_eq!(s.snapshot().all().len(), 2);
        let over = s
            .create(vec![
                acl("c", Permission::Allow),
                acl("d", Permission::Allow),
            ])
            .await;
        assert!(matches!(over, Err(AuthError::InvalidAcl(m)) if m.contains("acls_max")));
        let f = AclFilter {
            resource_name: Some("a".into()),
            ..Default::default()
        };
        assert_eq!(s.delete(&f).await.unwrap().len(), 1);
        s.close().unwrap();
        let s = AclStore::open(storage, clock, 3).unwrap();
        assert_eq!(s.snapshot().all(), &[acl("b", Permission::Allow)]);
    }

    #[tokio::test]
    async fn invalid_acls_are_refused_whole() {
        let storage: Arc<dyn Storage> = Arc::new(MemStorage::default());
        let s = AclStore::open(storage, Arc::new(busbar_log::SystemClock), 10).unwrap();
        let mut bad = acl("x", Permission::Allow);
        bad.principal = "alice".into();
        let r = s.create(vec![acl("ok", Permission::Allow), bad]).await;
        assert!(matches!(r, Err(AuthError::InvalidAcl(_))));
        assert!(s.snapshot().all().is_empty());
    }

    /// A DeleteAcls answer lists each filter's matches, so many filters matching the same ACLs
    /// multiply it: past `auth.acls_answer_bytes_max` the delete is refused whole.
    #[tokio::test]
    async fn a_delete_whose_answer_passes_the_budget_is_refused_whole() {
        let storage: Arc<dyn Storage> = Arc::new(MemStorage::default());
        let s = AclStore::open(storage, Arc::new(busbar_log::SystemClock), 100)
            .unwrap()
            .with_answer_bytes_max(1_000);
        let acls: Vec<_> = (0..5)
            .map(|i| acl(&format!("{i:0>40}"), Permission::Allow))
            .collect();
        s.create(acls).await.unwrap();
        let any = AclFilter::default();
        let r = s.delete_each(&vec![any.clone(); 3]).await;
        assert!(
            matches!(&r, Err(AuthError::InvalidAcl(m)) if m.contains("auth.acls_answer_bytes_max")),
            "{r:?}"
        );
        assert_eq!(s.snapshot().all().len(), 5, "nothing deleted");
        assert_eq!(s.delete_each(&[any]).await.unwrap()[0].len(), 5);
    }
}
