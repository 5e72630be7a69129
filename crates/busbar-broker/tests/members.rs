//! `GroupConsumer` end to end in process: two members share a topic's partitions, a rebalance on
//! join and on leave hands partitions over at committed offsets, nothing is lost and per-key order
//! holds; positions survive a restart through committed offsets.

use busbar_broker::{
    Broker, BrokerConfig, ConsumerOptions, Event, GroupConsumer, StartAt, StoredEvent,
};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

fn open(dir: &std::path::Path) -> Arc<Broker> {
    Arc::new(
        Broker::open(BrokerConfig {
            data_dir: dir.into(),
            group_initial_rebalance_delay: Duration::from_millis(50),
            group_session_timeout_min: Duration::from_millis(500),
            ..Default::default()
        })
        .unwrap(),
    )
}

fn opts() -> ConsumerOptions {
    ConsumerOptions {
        start: StartAt::Earliest,
        heartbeat_interval: Duration::from_millis(100),
        session_timeout: Duration::from_secs(5),
        rebalance_timeout: Duration::from_secs(5),
        ..ConsumerOptions::default()
    }
}

async fn drain(c: &mut GroupConsumer, seen: &mut Vec<StoredEvent>, quiet_polls: usize) {
    let mut quiet = 0;
    while quiet < quiet_polls {
        let evs = c.poll(100, Duration::from_millis(50)).await.unwrap();
        if evs.is_empty() {
            quiet += 1;
        } else {
            quiet = 0;
            seen.extend(evs);
            c.commit().await.unwrap();
        }
    }
}

fn check_order(seen: &[StoredEvent]) {
    let mut last: BTreeMap<(u32, Vec<u8>), u64> = BTreeMap::new();
    for e in seen {
        let k = (e.partition, e.key.clone().unwrap());
        if let Some(prev) = last.insert(k, e.offset) {
            assert!(
                e.offset > prev,
                "per-key order broken at partition {} offset {}",
                e.partition,
                e.offset
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_share_partitions_and_hand_over_on_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic("t", Some(4), Default::default())
        .await
        .unwrap();
    let events: Vec<Event> = (0..2000)
        .map(|i| Event::keyed(format!("k{}", i % 37), format!("{i}")))
        .collect();
    b.publish("t", events).await.unwrap();

    let mut a = GroupConsumer::join(b.clone(), "g", vec!["t".into()], opts())
        .await
        .unwrap();
    assert_eq!(
        a.assignment().len(),
        4,
        "a lone member owns every partition"
    );
    let mut seen_a = a.poll(300, Duration::from_millis(100)).await.unwrap();
    a.commit().await.unwrap();

    // A second member joins; `a` learns through its heartbeat and rejoins.
    let joiner = tokio::spawn({
        let b = b.clone();
        async move { GroupConsumer::join(b, "g", vec!["t".into()], opts()).await }
    });
    while !joiner.is_finished() {
        seen_a.extend(a.poll(10, Duration::from_millis(20)).await.unwrap());
        a.commit().await.unwrap();
    }
    let mut bm = joiner.await.unwrap().unwrap();
    a.tick().await.unwrap();
    let pa: HashSet<u32> = a.assignment().iter().map(|x| x.1).collect();
    let pb: HashSet<u32> = bm.assignment().iter().map(|x| x.1).collect();
    assert_eq!(
        (pa.len(), pb.len()),
        (2, 2),
        "range assignment splits 4 partitions 2/2"
    );
    assert!(pa.is_disjoint(&pb));
    assert_eq!(a.generation(), bm.generation());

    let mut seen_b = Vec::new();
    let (ra, rb) = tokio::join!(
        drain(&mut a, &mut seen_a, 5),
        drain(&mut bm, &mut seen_b, 5)
    );
    let _ = (ra, rb);
    check_order(&seen_a);
    check_order(&seen_b);
    let all: HashSet<(u32, u64)> = seen_a
        .iter()
        .chain(&seen_b)
        .map(|e| (e.partition, e.offset))
        .collect();
    assert_eq!(all.len(), 2000, "every event was consumed");

    // b leaves: a takes every partition back, resuming at the committed offsets (nothing left).
    bm.leave().unwrap();
    let more = a.poll(10, Duration::from_millis(300)).await.unwrap();
    assert!(
        more.is_empty(),
        "committed positions were respected: {} re-delivered",
        more.len()
    );
    a.tick().await.unwrap();
    assert_eq!(a.assignment().len(), 4);
    let d = b.describe_group("g").unwrap();
    assert_eq!(d.offsets.iter().map(|o| o.lag).sum::<u64>(), 0);
    assert_eq!(d.live.unwrap().members[0].client_id, "busbar");
    a.leave().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_resumes_from_committed_offsets_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        b.create_topic("t", Some(2), Default::default())
            .await
            .unwrap();
        b.publish(
            "t",
            (0..100)
                .map(|i| Event::keyed(format!("{i}"), "v"))
                .collect(),
        )
        .await
        .unwrap();
        let mut c = GroupConsumer::join(b.clone(), "g", vec!["t".into()], opts())
            .await
            .unwrap();
        let mut n = 0;
        while n < 40 {
            n += c
                .poll(40 - n, Duration::from_millis(100))
                .await
                .unwrap()
                .len();
        }
        c.commit().await.unwrap();
        // No leave, no close: a crash.
    }
    let b = open(dir.path());
    let mut c = GroupConsumer::join(b.clone(), "g", vec!["t".into()], opts())
        .await
        .unwrap();
    let mut seen = Vec::new();
    drain(&mut c, &mut seen, 3).await;
    assert_eq!(
        seen.len(),
        60,
        "exactly the uncommitted events are delivered again"
    );
    assert!(
        GroupConsumer::join(b.clone(), "g2", vec!["nope".into()], opts())
            .await
            .is_err()
    );
    assert!(GroupConsumer::join(b.clone(), "g2", vec![], opts())
        .await
        .is_err());
}
