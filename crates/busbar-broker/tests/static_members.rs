//! Static members (KIP-345) through the broker's public API with a manual clock: who leads a
//! rebalance that a static member (the old leader) did not rejoin, and a rebalance that no member
//! rejoined waits instead of starting a generation nobody knows of.

use busbar_broker::{Broker, BrokerConfig, JoinRequest, ManualClock};
use std::sync::Arc;
use std::time::Duration;

fn sreq(member: &str) -> JoinRequest {
    JoinRequest {
        group: "s".into(),
        member_id: member.into(),
        client_id: "c".into(),
        client_host: "h".into(),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), b"m".to_vec())],
        session_timeout_ms: 30_000,
        rebalance_timeout_ms: 30_000,
        require_known_member_id: true,
    }
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Static members a and b; the leader is still alive (it heartbeats) but does not rejoin the next
/// rebalance in time. Kafka (`GroupCoordinator.onCompleteJoin` / `maybeElectNewJoinedLeader`)
/// keeps the absent static member but makes a member that rejoined the leader, so the group gets
/// an assignment; busbar keeps the absent leader, so nobody assigns and SyncGroup waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_without_the_static_leader_elects_a_member_that_rejoined() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let b = Arc::new(
        Broker::open(BrokerConfig {
            data_dir: dir.path().into(),
            clock: clock.clone(),
            group_session_timeout_min: Duration::from_millis(1000),
            group_initial_rebalance_delay: Duration::from_millis(3000),
            ..Default::default()
        })
        .unwrap(),
    );
    let spawn_join = |r: JoinRequest, i: Option<&str>| {
        let b = b.clone();
        let i = i.map(str::to_string);
        tokio::spawn(async move { b.join_group_as(r, i).await })
    };
    let ja = spawn_join(sreq(""), Some("a"));
    let jb = spawn_join(sreq(""), Some("b"));
    settle().await;
    clock.advance(3000);
    b.tick_groups();
    let (ra, rb) = (ja.await.unwrap().unwrap(), jb.await.unwrap().unwrap());
    let (leader, follower, finst) = if ra.leader == ra.member_id {
        (ra.clone(), rb.clone(), "b")
    } else {
        (rb.clone(), ra.clone(), "a")
    };
    let plan = vec![
        (leader.member_id.clone(), b"L".to_vec()),
        (follower.member_id.clone(), b"F".to_vec()),
    ];
    let sf = {
        let b = b.clone();
        let f = follower.member_id.clone();
        tokio::spawn(async move { b.sync_group("s", &f, 1, vec![]).await })
    };
    b.sync_group("s", &leader.member_id, 1, plan).await.unwrap();
    sf.await.unwrap().unwrap();
    // A dynamic member c joins: rebalance. The follower rejoins; the leader only heartbeats.
    let id_c = match b.join_group(sreq("")).await {
        Err(busbar_broker::BrokerError::MemberIdRequired(id)) => id,
        other => panic!("{other:?}"),
    };
    let jc = spawn_join(sreq(&id_c), None);
    settle().await;
    let jf = spawn_join(sreq(&follower.member_id), Some(finst));
    settle().await;
    clock.advance(5000);
    assert!(
        b.heartbeat("s", &leader.member_id, 1).is_err(),
        "rebalancing"
    );
    clock.advance(25_000); // the rebalance deadline; the leader's session is not over
    b.tick_groups();
    let rc = jc.await.unwrap().unwrap();
    let rf = jf.await.unwrap().unwrap();
    assert_eq!(rc.generation, 2);
    assert!(
        rc.leader == rc.member_id || rf.leader == rf.member_id,
        "nobody who rejoined leads generation 2: leader {} is the absent static member {}",
        rc.leader,
        leader.member_id
    );
}

/// Static members a and b; b leaves by instance id and a (alive: it heartbeats) does not rejoin
/// before the rebalance deadline. Kafka postpones the rebalance when no member rejoined
/// (`onCompleteJoin`: "could not complete rebalance because no members rejoined"); busbar started
/// generation 2 with a leader that never heard of it. When a rejoins, it leads generation 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_that_no_member_rejoined_waits_for_one() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let b = Arc::new(
        Broker::open(BrokerConfig {
            data_dir: dir.path().into(),
            clock: clock.clone(),
            group_session_timeout_min: Duration::from_millis(1000),
            group_initial_rebalance_delay: Duration::from_millis(3000),
            ..Default::default()
        })
        .unwrap(),
    );
    let join = |r: JoinRequest, i: &str| {
        let b = b.clone();
        let i = i.to_string();
        tokio::spawn(async move { b.join_group_as(r, Some(i)).await })
    };
    let (ja, jb) = (join(sreq(""), "a"), join(sreq(""), "b"));
    settle().await;
    clock.advance(3000);
    b.tick_groups();
    let (ra, rb) = (ja.await.unwrap().unwrap(), jb.await.unwrap().unwrap());
    assert_eq!((ra.generation, rb.generation), (1, 1));
    let (stay, stay_inst) = if ra.member_id < rb.member_id {
        (ra, "a")
    } else {
        (rb, "b")
    };
    let gone_inst = if stay_inst == "a" { "b" } else { "a" };
    assert!(b.leave_group_instance("s", gone_inst, "").unwrap());
    clock.advance(25_000);
    assert!(b.heartbeat("s", &stay.member_id, 1).is_err(), "rebalancing");
    clock.advance(6_000); // past the rebalance deadline (30 s); the session is alive
    b.tick_groups();
    let live = b.describe_group("s").unwrap().live.unwrap();
    assert_eq!(
        (live.state.name(), live.generation),
        ("PreparingRebalance", 1),
        "no member rejoined: the rebalance waits"
    );
    let again = join(sreq(&stay.member_id), stay_inst);
    settle().await;
    b.tick_groups();
    let r = again.await.unwrap().unwrap();
    assert_eq!((r.generation, r.leader.as_str()), (2, r.member_id.as_str()));
}
