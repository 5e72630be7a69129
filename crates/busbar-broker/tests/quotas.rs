//! The quota store (`quota`): quotas survive a restart, and a write the disk refuses answers an
//! error and changes nothing (in memory or after a restart).

use busbar_broker::datadir::FaultDataDir;
use busbar_broker::quota::{Entity, Kind, Op};
use busbar_broker::{Broker, BrokerConfig, BrokerError};
use busbar_log::disk::MemFs;
use std::sync::Arc;

fn open(fs: &MemFs) -> (Broker, Arc<FaultDataDir>) {
    let dir = Arc::new(FaultDataDir::new(fs.clone(), &["internal/quotas"]));
    let b = Broker::open(BrokerConfig {
        data: Some(dir.clone()),
        ..Default::default()
    })
    .unwrap();
    (b, dir)
}

fn user(name: Option<&str>) -> Entity {
    Entity::from_parts([("user", name)]).unwrap()
}

fn set(key: &str, v: f64) -> Op {
    Op::Set(key.into(), v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_survive_a_restart_and_a_refused_write_changes_nothing() {
    let fs = MemFs::new();
    let (b, dir) = open(&fs);
    let q = b.quotas();
    assert!(!q.any());
    q.alter(
        &user(Some("alice")),
        &[set("producer_byte_rate", 1000.0)],
        false,
    )
    .await
    .unwrap();
    q.alter(&user(None), &[set("consumer_byte_rate", 2000.0)], false)
        .await
        .unwrap();
    let plan = dir.plan("internal/quotas").expect("faulted");
    plan.set_disk_full(true);
    let refused = q
        .alter(
            &user(Some("alice")),
            &[set("producer_byte_rate", 5.0)],
            false,
        )
        .await;
    assert!(
        matches!(refused, Err(BrokerError::Storage(_))),
        "{refused:?}"
    );
    let removed = q
        .alter(
            &user(None),
            &[Op::Remove("consumer_byte_rate".into())],
            false,
        )
        .await;
    assert!(removed.is_err());
    plan.set_disk_full(false);
    let a = q.applied("alice", "c", Kind::Produce).unwrap();
    assert_eq!(a.quota, 1000.0, "the refused write changed nothing");
    assert!(q.applied("bob", "c", Kind::Fetch).is_some());
    // Removing the last key removes the entity.
    q.alter(
        &user(Some("alice")),
        &[Op::Remove("producer_byte_rate".into())],
        false,
    )
    .await
    .unwrap();
    b.close().unwrap();
    let (b, _) = open(&fs);
    let list = b.quotas().list();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].0, user(None));
    assert_eq!(list[0].1["consumer_byte_rate"], 2000.0);
    b.close().unwrap();
}
