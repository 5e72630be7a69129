//! Consumer groups through the broker's public API with a manual clock: member-id-required first
//! joins, the initial rebalance delay, rebalances on join, leave and session expiry, generations,
//! SyncGroup assignment hand-out, commit fencing, listing with lag, reset and delete.

use busbar_broker::{
    Broker, BrokerConfig, BrokerError, Event, GroupState, JoinRequest, ManualClock, OffsetCommit,
    ResetTo,
};
use std::sync::Arc;
use std::time::Duration;

fn broker(dir: &std::path::Path, clock: Arc<ManualClock>) -> Arc<Broker> {
    Arc::new(
        Broker::open(BrokerConfig {
            data_dir: dir.into(),
            clock,
            group_session_timeout_min: Duration::from_millis(1000),
            group_initial_rebalance_delay: Duration::from_millis(3000),
            ..Default::default()
        })
        .unwrap(),
    )
}

fn req(member: &str, known: bool) -> JoinRequest {
    JoinRequest {
        group: "g".into(),
        member_id: member.into(),
        client_id: "c".into(),
        client_host: "127.0.0.1".into(),
        protocol_type: "consumer".into(),
        protocols: vec![
            ("range".into(), b"meta".to_vec()),
            ("roundrobin".into(), vec![]),
        ],
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 20_000,
        require_known_member_id: known,
    }
}

/// The first member of a new group: joins, waits out the initial rebalance delay on the manual clock.
async fn first_member(b: &Arc<Broker>, clock: &ManualClock) -> busbar_broker::JoinResponse {
    let j = tokio::spawn({
        let b = b.clone();
        async move { b.join_group(req("", false)).await }
    });
    settle().await;
    clock.advance(3000);
    b.tick_groups();
    j.await.unwrap().unwrap()
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalances_on_join_leave_and_session_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let b = broker(dir.path(), clock.clone());
    // First join without an id: told to rejoin with one.
    let id1 = match b.join_group(req("", true)).await {
        Err(BrokerError::MemberIdRequired(id)) => id,
        other => panic!("{other:?}"),
    };
    let j1 = tokio::spawn({
        let b = b.clone();
        let r = req(&id1, true);
        async move { b.join_group(r).await }
    });
    settle().await;
    assert!(
        !j1.is_finished(),
        "a new group waits for the initial rebalance delay"
    );
    clock.advance(3000);
    b.tick_groups();
    let r1 = j1.await.unwrap().unwrap();
    assert_eq!(
        (r1.generation, r1.leader.as_str(), r1.protocol.as_str()),
        (1, id1.as_str(), "range")
    );
    assert_eq!(
        r1.members,
        vec![busbar_broker::JoinMember {
            member_id: id1.clone(),
            instance_id: None,
            metadata: b"meta".to_vec()
        }]
    );
    assert_eq!(
        b.sync_group("g", &id1, 1, vec![(id1.clone(), b"all".to_vec())])
            .await
            .unwrap(),
        b"all"
    );
    b.heartbeat("g", &id1, 1).unwrap();

    // A second member joins: the first learns through its heartbeat and rejoins.
    let j2 = tokio::spawn({
        let b = b.clone();
        async move { b.join_group(req("", false)).await }
    });
    settle().await;
    assert!(matches!(
        b.heartbeat("g", &id1, 1),
        Err(BrokerError::RebalanceInProgress(_))
    ));
    let r1 = b.join_group(req(&id1, true)).await.unwrap();
    let r2 = j2.await.unwrap().unwrap();
    assert_eq!((r1.generation, r2.generation), (2, 2));
    assert_eq!(r2.leader, id1);
    assert!(r2.members.is_empty(), "followers get no member list");
    assert_eq!(r1.members.len(), 2);
    let id2 = r2.member_id.clone();
    let follower = tokio::spawn({
        let (b, id2) = (b.clone(), id2.clone());
        async move { b.sync_group("g", &id2, 2, vec![]).await }
    });
    settle().await;
    assert!(
        !follower.is_finished(),
        "followers wait for the leader's assignment"
    );
    let assign = vec![(id1.clone(), b"p0".to_vec()), (id2.clone(), b"p1".to_vec())];
    assert_eq!(b.sync_group("g", &id1, 2, assign).await.unwrap(), b"p0");
    assert_eq!(follower.await.unwrap().unwrap(), b"p1");
    assert!(matches!(
        b.heartbeat("g", &id1, 1),
        Err(BrokerError::IllegalGeneration {
            got: 1,
            current: 2,
            ..
        })
    ));
    assert!(matches!(
        b.heartbeat("g", "stranger", 2),
        Err(BrokerError::UnknownMember { .. })
    ));

    // The second member leaves: the first rejoins alone.
    b.leave_group("g", &id2).unwrap();
    assert!(matches!(
        b.heartbeat("g", &id1, 2),
        Err(BrokerError::RebalanceInProgress(_))
    ));
    let r1 = b.join_group(req(&id1, true)).await.unwrap();
    assert_eq!((r1.generation, r1.members.len()), (3, 1));
    b.sync_group("g", &id1, 3, vec![(id1.clone(), b"all".to_vec())])
        .await
        .unwrap();

    // Silence past the session timeout evicts the member; the group becomes empty.
    clock.advance(10_001);
    b.tick_groups();
    let d = b.describe_group("g").unwrap();
    assert_eq!(d.state, "Empty");
    assert!(d.live.unwrap().members.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_do_not_rejoin_in_time_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let b = broker(dir.path(), clock.clone());
    let r1 = first_member(&b, &clock).await;
    b.sync_group("g", &r1.member_id, 1, vec![]).await.unwrap();
    // A newcomer triggers a rebalance; the old member never rejoins.
    let j2 = tokio::spawn({
        let b = b.clone();
        async move { b.join_group(req("", false)).await }
    });
    settle().await;
    clock.advance(20_000);
    b.tick_groups();
    let r2 = j2.await.unwrap().unwrap();
    assert_eq!(r2.generation, 2);
    assert_eq!(r2.leader, r2.member_id, "the only member left leads");
    assert_eq!(
        b.describe_group("g").unwrap().live.unwrap().members.len(),
        1
    );
}

#[tokio::test]
async fn bad_joins_are_refused_precisely() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path(), ManualClock::new(0));
    let mut r = req("", false);
    r.session_timeout_ms = 10;
    assert!(matches!(
        b.join_group(r).await,
        Err(BrokerError::InvalidSessionTimeout(10))
    ));
    let mut r = req("", false);
    r.protocols.clear();
    assert!(matches!(
        b.join_group(r).await,
        Err(BrokerError::InconsistentGroupProtocol)
    ));
    assert!(matches!(
        b.join_group(req("made-up", false)).await,
        Err(BrokerError::UnknownMember { .. })
    ));
    let mut r = req("", false);
    r.group.clear();
    assert!(matches!(
        b.join_group(r).await,
        Err(BrokerError::InvalidRequest(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_fenced_and_offsets_listed_reset_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let b = broker(dir.path(), clock.clone());
    b.create_topic("t", Some(2), Default::default())
        .await
        .unwrap();
    b.publish(
        "t",
        (0..10)
            .map(|i| Event {
                partition: Some(i % 2),
                ..Event::value("v")
            })
            .collect(),
    )
    .await
    .unwrap();
    let commit = |o| {
        vec![OffsetCommit {
            topic: "t".into(),
            partition: 0,
            offset: o,
            metadata: String::new(),
        }]
    };
    b.commit_offsets("g", "", -1, commit(2)).await.unwrap();
    let m = first_member(&b, &clock).await;
    b.sync_group("g", &m.member_id, 1, vec![]).await.unwrap();
    assert!(matches!(
        b.commit_offsets("g", "", -1, commit(3)).await,
        Err(BrokerError::UnknownMember { .. })
    ));
    assert!(matches!(
        b.commit_offsets("g", &m.member_id, 0, commit(3)).await,
        Err(BrokerError::IllegalGeneration { .. })
    ));
    b.commit_offsets("g", &m.member_id, 1, commit(4))
        .await
        .unwrap();
    let d = b.describe_group("g").unwrap();
    assert_eq!(d.state, "Stable");
    assert_eq!((d.offsets[0].committed, d.offsets[0].lag), (4, 1));
    assert!(b
        .list_groups()
        .contains(&("g".to_string(), "Stable".to_string())));
    assert!(matches!(
        b.reset_offsets("g", "t", None, ResetTo::Earliest).await,
        Err(BrokerError::GroupNotEmpty(_))
    ));
    assert!(matches!(
        b.delete_group("g").await,
        Err(BrokerError::GroupNotEmpty(_))
    ));
    b.leave_group("g", &m.member_id).unwrap();
    assert_eq!(
        b.describe_group("g").unwrap().live.map(|l| l.state),
        Some(GroupState::Empty)
    );
    let moved = b
        .reset_offsets("g", "t", None, ResetTo::Latest)
        .await
        .unwrap();
    assert_eq!(moved, vec![(0, 5), (1, 5)]);
    assert_eq!(
        b.reset_offsets("g", "t", Some(vec![1]), ResetTo::Offset(99))
            .await
            .unwrap(),
        vec![(1, 5)]
    );
    b.delete_group("g").await.unwrap();
    assert!(matches!(
        b.describe_group("g"),
        Err(BrokerError::UnknownGroup(_))
    ));
    assert!(matches!(
        b.delete_group("g").await,
        Err(BrokerError::UnknownGroup(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_ids_handed_out_and_never_used_expire_with_the_session_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let b = broker(dir.path(), clock.clone());
    let id = match b.join_group(req("", true)).await {
        Err(BrokerError::MemberIdRequired(id)) => id,
        other => panic!("{other:?}"),
    };
    // The id is kept for the session timeout (10 s in `req`), then forgotten.
    clock.advance(10_001);
    b.tick_groups();
    assert!(
        matches!(
            tokio::time::timeout(Duration::from_secs(5), b.join_group(req(&id, true))).await,
            Ok(Err(BrokerError::UnknownMember { .. }))
        ),
        "an expired pending id was still accepted"
    );
    b.tick_groups();
    assert!(
        b.list_groups().iter().all(|(g, _)| g != "g"),
        "a group holding only expired ids is forgotten"
    );
}

/// A remote client joins and leaves groups under fresh names (no offsets committed): each one
/// stayed in the broker's memory and in ListGroups for good, however long the clock ran. Now an
/// Empty group without offsets is forgotten once `group_empty_retention` passed; one with
/// committed offsets keeps its live state (generation) as in Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_left_by_every_member_without_offsets_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let b = Arc::new(
        Broker::open(BrokerConfig {
            data_dir: dir.path().into(),
            clock: clock.clone(),
            group_initial_rebalance_delay: Duration::ZERO,
            group_empty_retention: Duration::from_secs(600),
            ..Default::default()
        })
        .unwrap(),
    );
    b.create_topic("t", Some(1), Default::default())
        .await
        .unwrap();
    for i in 0..50 {
        let g = if i == 0 {
            "kept".into()
        } else {
            format!("g{i}")
        };
        let r = b
            .join_group(JoinRequest {
                group: g.clone(),
                client_id: "c".into(),
                client_host: "h".into(),
                protocol_type: "consumer".into(),
                protocols: vec![("range".into(), vec![])],
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 10_000,
                ..Default::default()
            })
            .await
            .unwrap();
        if i == 0 {
            b.sync_group(&g, &r.member_id, r.generation, vec![])
                .await
                .unwrap();
            let c = OffsetCommit {
                topic: "t".into(),
                partition: 0,
                offset: 0,
                metadata: String::new(),
            };
            b.commit_offsets(&g, &r.member_id, r.generation, vec![c])
                .await
                .unwrap();
        }
        b.leave_group(&g, &r.member_id).unwrap();
    }
    clock.advance(599_000);
    b.tick_groups();
    assert_eq!(b.list_groups().len(), 50, "kept for the retention");
    clock.advance(7 * 24 * 3600 * 1000);
    b.tick_groups();
    let left = b.list_groups();
    assert_eq!(left, vec![("kept".to_string(), "Empty".to_string())]);
    let live = b.describe_group("kept").unwrap().live;
    assert_eq!(live.map(|l| l.generation), Some(2), "live state kept");
}
