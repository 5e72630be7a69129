//! Static membership (KIP-345, `group.instance.id`) over the raw protocol, as the Java client and
//! Kafka's tools use it: a restarted static member takes its place back without a rebalance, its
//! old member id is fenced (FENCED_INSTANCE_ID 82), and LeaveGroup works by instance id.

mod common;

use busbar_broker::BrokerConfig;
use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::time::{Duration, Instant};

const GROUP: &str = "static";

fn server() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s = start_at(
        dir.path().into(),
        BrokerConfig {
            group_initial_rebalance_delay: Duration::ZERO,
            ..BrokerConfig::default()
        },
    );
    s.rt.block_on(s.broker.create_topic("t", Some(2), Default::default()))
        .unwrap();
    (s, dir)
}

fn join(s: &Server, instance: &str, member: &str) -> JoinGroupResponse {
    let mut req = JoinGroupRequest::default();
    req.group_id = sb(GROUP).into();
    req.member_id = sb(member);
    req.group_instance_id = Some(sb(instance));
    req.session_timeout_ms = 30_000;
    req.rebalance_timeout_ms = 30_000;
    req.protocol_type = sb("consumer");
    let mut p = join_group_request::JoinGroupRequestProtocol::default();
    p.name = sb("range");
    p.metadata = b"subscription".to_vec().into();
    req.protocols.push(p);
    call(s, ApiKey::JoinGroup, 5, &req)
}

fn sync(
    s: &Server,
    instance: &str,
    member: &str,
    generation: i32,
    plan: &[(&str, &str)],
) -> SyncGroupResponse {
    let mut req = SyncGroupRequest::default();
    req.group_id = sb(GROUP).into();
    req.member_id = sb(member);
    req.group_instance_id = Some(sb(instance));
    req.generation_id = generation;
    for (m, a) in plan {
        let mut sa = sync_group_request::SyncGroupRequestAssignment::default();
        sa.member_id = sb(m);
        sa.assignment = a.as_bytes().to_vec().into();
        req.assignments.push(sa);
    }
    call(s, ApiKey::SyncGroup, 3, &req)
}

fn heartbeat(s: &Server, instance: &str, member: &str, generation: i32) -> i16 {
    let mut req = HeartbeatRequest::default();
    req.group_id = sb(GROUP).into();
    req.member_id = sb(member);
    req.group_instance_id = Some(sb(instance));
    req.generation_id = generation;
    call::<HeartbeatResponse>(s, ApiKey::Heartbeat, 3, &req).error_code
}

fn commit(s: &Server, instance: &str, member: &str, generation: i32) -> i16 {
    let mut req = OffsetCommitRequest::default();
    req.group_id = sb(GROUP).into();
    req.member_id = sb(member);
    req.group_instance_id = Some(sb(instance));
    req.generation_id_or_member_epoch = generation;
    let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
    t.name = sb("t").into();
    let mut p = offset_commit_request::OffsetCommitRequestPartition::default();
    p.partition_index = 0;
    p.committed_offset = 0;
    t.partitions.push(p);
    req.topics.push(t);
    let r: OffsetCommitResponse = call(s, ApiKey::OffsetCommit, 7, &req);
    r.topics[0].partitions[0].error_code
}

fn leave(s: &Server, members: &[(&str, &str)]) -> LeaveGroupResponse {
    let mut req = LeaveGroupRequest::default();
    req.group_id = sb(GROUP).into();
    for (instance, member) in members {
        let mut m = leave_group_request::MemberIdentity::default();
        m.member_id = sb(member);
        m.group_instance_id = Some(StrBytes::from_string(instance.to_string()));
        req.members.push(m);
    }
    call(s, ApiKey::LeaveGroup, 3, &req)
}

struct Joined {
    a: String,
    b: String,
    generation: i32,
    /// The leader's JoinGroup member list: (member id, group instance id).
    listed: Vec<(String, Option<String>)>,
}

/// Static members "a" (the leader, assigned "pa") and "b" (assigned "pb") in a Stable group.
fn two_static_members(s: &Server) -> Joined {
    let first = join(s, "a", "");
    assert_eq!(
        first.error_code, 0,
        "a static member joins without MemberIdRequired"
    );
    let a = first.member_id.to_string();
    assert_eq!(
        sync(s, "a", &a, first.generation_id, &[(&a, "pa")]).error_code,
        0
    );
    let (ja, jb) = std::thread::scope(|scope| {
        let jb = scope.spawn(|| join(s, "b", ""));
        // a learns of the rebalance by its heartbeat and joins again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while heartbeat(s, "a", &a, first.generation_id) != 27 {
            assert!(Instant::now() < deadline, "no rebalance after b joined");
            std::thread::sleep(Duration::from_millis(20));
        }
        let ja = join(s, "a", &a);
        (ja, jb.join().unwrap())
    });
    assert_eq!((ja.error_code, jb.error_code), (0, 0));
    assert_eq!(ja.generation_id, jb.generation_id);
    assert_eq!(ja.leader.as_str(), a, "a stays the leader");
    let b = jb.member_id.to_string();
    let generation = ja.generation_id;
    let (ra, rb) = std::thread::scope(|scope| {
        let rb = scope.spawn(|| sync(s, "b", &b, generation, &[]));
        let ra = sync(s, "a", &a, generation, &[(&a, "pa"), (&b, "pb")]);
        (ra, rb.join().unwrap())
    });
    assert_eq!(ra.assignment.as_ref(), b"pa");
    assert_eq!(rb.assignment.as_ref(), b"pb");
    let listed = ja
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.to_string(),
                m.group_instance_id.as_ref().map(|i| i.to_string()),
            )
        })
        .collect();
    Joined {
        a,
        b,
        generation,
        listed,
    }
}

fn describe(s: &Server, version: i16) -> Vec<(String, Option<String>)> {
    let mut req = DescribeGroupsRequest::default();
    req.groups.push(sb(GROUP).into());
    let r: DescribeGroupsResponse = call(s, ApiKey::DescribeGroups, version, &req);
    let mut members: Vec<_> = r.groups[0]
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.to_string(),
                m.group_instance_id.as_ref().map(|i| i.to_string()),
            )
        })
        .collect();
    members.sort();
    members
}

/// The leader's member list (JoinGroup v5+) and DescribeGroups (v4+) carry each static member's
/// `group.instance.id`: the Java client's assignors and `kafka-consumer-groups --describe
/// --members` read it (before: null for every member).
#[test]
fn the_leader_and_describe_groups_see_each_members_instance_id() {
    let (s, _dir) = server();
    let g = two_static_members(&s);
    let mut listed = g.listed.clone();
    listed.sort();
    let mut want = vec![
        (g.a.clone(), Some("a".to_string())),
        (g.b.clone(), Some("b".to_string())),
    ];
    want.sort();
    assert_eq!(listed, want, "the leader's JoinGroup member list");
    assert_eq!(describe(&s, 5), want, "DescribeGroups v5");
    assert_eq!(describe(&s, 4), want, "DescribeGroups v4");
    let no_field: Vec<_> = want.iter().map(|(m, _)| (m.clone(), None)).collect();
    assert_eq!(
        describe(&s, 3),
        no_field,
        "DescribeGroups v3 has no such field"
    );
}

/// The Java client restarting with `group.instance.id`: JoinGroup with the instance id and no
/// member id. It gets the current generation and its assignment back at once; the other member
/// is not asked to rejoin (before: MEMBER_ID_REQUIRED, then a rebalance the whole group waited
/// out for the session timeout).
#[test]
fn a_restarted_static_member_gets_its_assignment_back_without_a_rebalance() {
    let (s, _dir) = server();
    let g = two_static_members(&s);
    let started = Instant::now();
    let again = join(&s, "a", "");
    assert_eq!(again.error_code, 0);
    assert_ne!(again.member_id.as_str(), g.a, "a new member id");
    assert_eq!(again.generation_id, g.generation, "no new generation");
    assert_ne!(
        again.leader.as_str(),
        again.member_id.as_str(),
        "answered as a follower (a Stable group would not pass on a new plan)"
    );
    assert!(again.members.is_empty());
    let new_a = again.member_id.to_string();
    let r = sync(&s, "a", &new_a, g.generation, &[]);
    assert_eq!(r.error_code, 0);
    assert_eq!(r.assignment.as_ref(), b"pa", "its previous assignment");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "far below the session timeout"
    );
    assert_eq!(
        heartbeat(&s, "b", &g.b, g.generation),
        0,
        "b is not asked to rejoin"
    );
    assert_eq!(heartbeat(&s, "a", &new_a, g.generation), 0);
    assert_eq!(commit(&s, "a", &new_a, g.generation), 0);
    let d = s.broker.describe_group(GROUP).unwrap().live.unwrap();
    let mut ids: Vec<String> = d.members.iter().map(|m| m.member_id.clone()).collect();
    ids.sort();
    let mut want = vec![new_a.clone(), g.b.clone()];
    want.sort();
    assert_eq!(ids, want, "no ghost member left behind");
    assert_eq!(d.leader, new_a, "the new id holds the leadership");
}

/// The old member id of a static member that joined again is fenced: FENCED_INSTANCE_ID (82) on
/// Heartbeat, SyncGroup, OffsetCommit and JoinGroup (before: it stayed a member, a ghost).
#[test]
fn the_old_member_id_of_a_replaced_static_member_is_fenced() {
    let (s, _dir) = server();
    let g = two_static_members(&s);
    let again = join(&s, "a", "");
    assert_eq!(again.error_code, 0);
    assert_eq!(heartbeat(&s, "a", &g.a, g.generation), 82, "Heartbeat");
    assert_eq!(
        sync(&s, "a", &g.a, g.generation, &[]).error_code,
        82,
        "SyncGroup"
    );
    assert_eq!(commit(&s, "a", &g.a, g.generation), 82, "OffsetCommit");
    assert_eq!(join(&s, "a", &g.a).error_code, 82, "JoinGroup");
    let r = leave(&s, &[("a", &g.a)]);
    assert_eq!(r.members[0].error_code, 82, "LeaveGroup");
    assert_eq!(
        heartbeat(&s, "b", &g.b, g.generation),
        0,
        "the group did not move"
    );
}

/// LeaveGroup v3+ by instance id removes that member (Kafka's tools and the Java client's
/// `close` with a leave reason send it that way); an unknown instance id is UNKNOWN_MEMBER_ID (25)
/// for that member only.
#[test]
fn leave_group_by_instance_id_removes_the_member() {
    let (s, _dir) = server();
    let g = two_static_members(&s);
    let r = leave(&s, &[("b", ""), ("nobody", "")]);
    assert_eq!(r.error_code, 0);
    assert_eq!(r.members.len(), 2);
    assert_eq!(r.members[0].error_code, 0, "b left");
    assert_eq!(r.members[1].error_code, 25, "unknown instance id");
    assert_eq!(r.members[1].group_instance_id.as_deref(), Some("nobody"));
    assert_eq!(heartbeat(&s, "b", &g.b, g.generation), 25, "b is gone");
    assert_eq!(
        heartbeat(&s, "a", &g.a, g.generation),
        27,
        "the rest rebalances"
    );
    let r = leave(&s, &[("a", &g.a)]);
    assert_eq!(r.members[0].error_code, 0);
    let d = s.broker.describe_group(GROUP).unwrap().live;
    assert!(d.is_none_or(|d| d.members.is_empty()), "the group is empty");
}

/// A member id naming another member's instance id on Heartbeat, SyncGroup and OffsetCommit is
/// FENCED_INSTANCE_ID (82), as Kafka's `isStaticMemberFenced` (busbar answered 0).
#[test]
fn a_member_naming_another_members_instance_id_is_fenced() {
    let (s, _dir) = server();
    let j = two_static_members(&s);
    assert_eq!(heartbeat(&s, "b", &j.a, j.generation), 82);
    assert_eq!(sync(&s, "b", &j.a, j.generation, &[]).error_code, 82);
    assert_eq!(commit(&s, "b", &j.a, j.generation), 82);
    assert_eq!(
        heartbeat(&s, "a", &j.a, j.generation),
        0,
        "its own still works"
    );
}

/// A known dynamic member joining with an instance id nobody holds is UNKNOWN_MEMBER_ID (25), as
/// Kafka's `doCurrentMemberJoinGroup` (groupInstanceIdNotFound); busbar made it static.
#[test]
fn a_known_member_with_an_instance_id_nobody_holds_is_unknown() {
    let (s, _dir) = server();
    let mut req = JoinGroupRequest::default();
    req.group_id = sb(GROUP).into();
    req.session_timeout_ms = 30_000;
    req.rebalance_timeout_ms = 30_000;
    req.protocol_type = sb("consumer");
    let mut p = join_group_request::JoinGroupRequestProtocol::default();
    p.name = sb("range");
    p.metadata = b"subscription".to_vec().into();
    req.protocols.push(p);
    let first: JoinGroupResponse = call(&s, ApiKey::JoinGroup, 5, &req);
    assert_eq!(first.error_code, 79);
    req.member_id = first.member_id.clone();
    let joined: JoinGroupResponse = call(&s, ApiKey::JoinGroup, 5, &req);
    assert_eq!(joined.error_code, 0);
    let again = join(&s, "nobody", first.member_id.as_str());
    assert_eq!(again.error_code, 25);
    assert!(
        describe(&s, 4).iter().all(|(_, i)| i.is_none()),
        "still dynamic"
    );
}

/// A group.instance.id Kafka's clients would refuse (longer than 249 characters, or outside
/// `[a-zA-Z0-9._-]`) is INVALID_REQUEST (42) and not kept; busbar took up to 32 KiB per member.
#[test]
fn an_invalid_instance_id_is_refused() {
    let (s, _dir) = server();
    assert_eq!(join(&s, &"x".repeat(250), "").error_code, 42);
    assert_eq!(join(&s, "foo bar", "").error_code, 42);
    assert!(describe(&s, 4).is_empty(), "nobody joined");
    assert_eq!(join(&s, &"x".repeat(249), "").error_code, 0);
}
