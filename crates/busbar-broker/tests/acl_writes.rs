//! ACL writes are all-or-nothing: a create or delete whose rows need more than one batch of the
//! internal log is refused whole (nothing changes, in memory or after a reopen), a failed write
//! changes nothing in memory, and DeleteAcls' filters are deleted in one write.

use busbar_broker::auth::acl::{
    AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType,
};
use busbar_broker::auth::acls::AclStore;
use busbar_broker::auth::AuthError;
use busbar_log::disk::{FaultStorage, MemStorage, Storage};
use std::sync::Arc;

/// About 2 KiB per row: 1,500 of them need several 1 MiB batches.
fn acl(i: usize) -> AclBinding {
    AclBinding {
        resource_type: ResourceType::Topic,
        resource_name: format!("{i:04}-{}", "n".repeat(1000)),
        pattern: PatternType::Literal,
        principal: format!("User:{}", "p".repeat(1000)),
        host: "*".into(),
        operation: Operation::Read,
        permission: Permission::Allow,
    }
}

fn clock() -> Arc<dyn busbar_log::Clock> {
    Arc::new(busbar_log::SystemClock)
}

fn by_name(i: usize) -> AclFilter {
    AclFilter {
        resource_name: Some(acl(i).resource_name),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_over_one_batch_is_refused_whole() {
    let storage: Arc<dyn Storage> = Arc::new(MemStorage::default());
    let s = AclStore::open(storage.clone(), clock(), 10_000).unwrap();
    let r = s.create((0..1500).map(acl).collect()).await;
    assert!(
        matches!(&r, Err(AuthError::InvalidAcl(m)) if m.contains("too many for one write")),
        "{r:?}"
    );
    assert!(s.snapshot().all().is_empty());
    for chunk in 0..5 {
        s.create((chunk * 300..(chunk + 1) * 300).map(acl).collect())
            .await
            .unwrap();
    }
    let r = s.delete(&AclFilter::default()).await;
    assert!(matches!(r, Err(AuthError::InvalidAcl(_))), "{r:?}");
    assert_eq!(s.snapshot().all().len(), 1500);
    s.close().unwrap();
    let s = AclStore::open(storage, clock(), 10_000).unwrap();
    assert_eq!(s.snapshot().all().len(), 1500, "nothing deleted on disk");
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_delete_in_one_write_and_a_failed_one_changes_nothing() {
    let fault = FaultStorage::new(MemStorage::default());
    let plan = fault.plan();
    let storage: Arc<dyn Storage> = Arc::new(fault.clone());
    let s = AclStore::open(storage.clone(), clock(), 10_000).unwrap();
    s.create((0..10).map(acl).collect()).await.unwrap();
    let filters: Vec<AclFilter> = (0..3).map(by_name).collect();
    plan.fail_nth(plan.ops()); // the append fails
    let r = s.delete_each(&filters).await;
    assert!(matches!(r, Err(AuthError::Storage(_))), "{r:?}");
    assert_eq!(s.snapshot().all().len(), 10, "nothing deleted in memory");
    plan.fail_nth(u64::MAX);
    drop(s);
    let s = AclStore::open(storage, clock(), 10_000).unwrap();
    assert_eq!(s.snapshot().all().len(), 10, "nothing deleted on disk");
    let before = plan.ops();
    let per = s.delete_each(&filters).await.unwrap();
    let one_write = plan.ops() - before;
    assert_eq!(per.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
    assert_eq!(s.snapshot().all().len(), 7);
    let before = plan.ops();
    s.delete(&by_name(4)).await.unwrap();
    assert_eq!(
        one_write,
        plan.ops() - before,
        "three filters cost one write"
    );
}
