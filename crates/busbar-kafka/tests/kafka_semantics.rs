//! Kafka's semantics where a client can tell the difference (issue 13 items 2, 3, 4, 5, 7): what
//! is stored and answered for negative committed offsets, who may commit to a group without
//! members, empty group ids, invalid and colliding topic names, CreateTopics `validate_only`, the
//! KIP-74 fetch limits, `fetch.min.bytes`, and what a fetch of a damaged range answers.

mod common;

use busbar_broker::BrokerConfig;
use common::*;
use kafka_protocol::messages::*;
use std::time::{Duration, Instant};

fn commit(
    s: &Server,
    group: &str,
    member: &str,
    generation: i32,
    offsets: &[(i32, i64)],
) -> Vec<i16> {
    let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
    t.name = TopicName(sb("t2"));
    t.partitions = offsets
        .iter()
        .map(|(p, o)| {
            let mut pr = offset_commit_request::OffsetCommitRequestPartition::default();
            pr.partition_index = *p;
            pr.committed_offset = *o;
            pr.committed_leader_epoch = -1;
            pr.committed_metadata = Some(sb(&format!("m{o}")));
            pr
        })
        .collect();
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(sb(group));
    req.member_id = sb(member);
    req.generation_id_or_member_epoch = generation;
    req.topics = vec![t];
    let r: OffsetCommitResponse = call(s, ApiKey::OffsetCommit, 8, &req);
    r.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

fn fetch_offsets(s: &Server, group: &str, all: bool) -> Vec<(i32, i64, String)> {
    let mut req = OffsetFetchRequest::default();
    req.group_id = GroupId(sb(group));
    req.topics = (!all).then(|| {
        let mut t = offset_fetch_request::OffsetFetchRequestTopic::default();
        t.name = TopicName(sb("t2"));
        t.partition_indexes = vec![0, 1, 2];
        vec![t]
    });
    let r: OffsetFetchResponse = call(s, ApiKey::OffsetFetch, 7, &req);
    assert_eq!(r.error_code, 0);
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            let m = p
                .metadata
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            (p.partition_index, p.committed_offset, m)
        })
        .collect()
}

/// kafkajs commits -1 / -2 when it resets a position (OFFSET_OUT_OF_RANGE recovery,
/// `admin.resetOffsets`); Kafka stores them and answers them back, across restarts too.
#[test]
fn negative_offsets_are_stored_and_fetched_back() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = start_at(dir.path().into(), BrokerConfig::default());
        s.rt.block_on(s.broker.create_topic("t2", Some(3), Default::default()))
            .unwrap();
        assert_eq!(
            commit(&s, "kjs", "", -1, &[(0, -1), (1, -2), (2, 5)]),
            [0, 0, 0]
        );
        let want = vec![
            (0, -1, "m-1".to_string()),
            (1, -2, "m-2".to_string()),
            (2, 5, "m5".to_string()),
        ];
        assert_eq!(fetch_offsets(&s, "kjs", false), want);
        assert_eq!(
            fetch_offsets(&s, "kjs", true),
            want,
            "a null topic list: every commit"
        );
        // A negative commit is no position for busbar's own consumers.
        assert!(s.broker.committed("kjs", "t2", 1).is_none());
        assert_eq!(s.broker.committed("kjs", "t2", 2).unwrap().offset, 5);
    }
    let s = start_at(dir.path().into(), BrokerConfig::default());
    assert_eq!(
        fetch_offsets(&s, "kjs", false)[1],
        (1, -2, "m-2".to_string()),
        "after a restart"
    );
}

/// A group with no live members takes only generation < 0 commits (assign() users and admin
/// tools); otherwise UNKNOWN_MEMBER_ID when the group exists, ILLEGAL_GENERATION when it does
/// not (OffsetCommit v8), as Kafka's classic coordinator answers.
#[test]
fn commits_to_a_group_without_members_need_a_negative_generation() {
    let s = start();
    s.rt.block_on(s.broker.create_topic("t2", Some(1), Default::default()))
        .unwrap();
    assert_eq!(
        commit(&s, "ghost", "m-1", 3, &[(0, 7)]),
        [22],
        "no such group"
    );
    assert!(
        s.broker.committed("ghost", "t2", 0).is_none(),
        "nothing stored"
    );
    assert_eq!(
        commit(&s, "ghost", "", -1, &[(0, 7)]),
        [0],
        "a simple commit"
    );
    assert_eq!(
        commit(&s, "ghost", "m-1", 3, &[(0, 8)]),
        [25],
        "exists, no such member"
    );
    assert_eq!(commit(&s, "ghost", "", 0, &[(0, 8)]), [25]);
    assert_eq!(s.broker.committed("ghost", "t2", 0).unwrap().offset, 7);
}

/// An empty group id is INVALID_GROUP_ID (24) for the group APIs.
#[test]
fn empty_group_ids_are_invalid_group_id() {
    let s = start();
    let mut join = JoinGroupRequest::default();
    join.session_timeout_ms = 10_000;
    join.rebalance_timeout_ms = 10_000;
    join.protocol_type = sb("consumer");
    let mut p = join_group_request::JoinGroupRequestProtocol::default();
    p.name = sb("range");
    join.protocols = vec![p];
    for v in [1, 5, 7] {
        let r: JoinGroupResponse = call(&s, ApiKey::JoinGroup, v, &join);
        assert_eq!(r.error_code, 24, "JoinGroup v{v}");
    }
    let r: SyncGroupResponse = call(&s, ApiKey::SyncGroup, 5, &SyncGroupRequest::default());
    assert_eq!(r.error_code, 24);
    let r: HeartbeatResponse = call(&s, ApiKey::Heartbeat, 4, &HeartbeatRequest::default());
    assert_eq!(r.error_code, 24);
    let r: LeaveGroupResponse = call(&s, ApiKey::LeaveGroup, 4, &LeaveGroupRequest::default());
    assert_eq!(r.error_code, 24);
    s.rt.block_on(s.broker.create_topic("t2", Some(1), Default::default()))
        .unwrap();
    assert_eq!(commit(&s, "", "", -1, &[(0, 1)]), [24]);
}

fn metadata(s: &Server, names: &[&str], auto: bool) -> Vec<(String, i16)> {
    let mut req = MetadataRequest::default();
    req.allow_auto_topic_creation = auto;
    req.topics = Some(
        names
            .iter()
            .map(|n| {
                let mut t = metadata_request::MetadataRequestTopic::default();
                t.name = Some(TopicName(sb(n)));
                t
            })
            .collect(),
    );
    let r: MetadataResponse = call(s, ApiKey::Metadata, 12, &req);
    r.topics
        .iter()
        .map(|t| (t.name.as_ref().unwrap().0.to_string(), t.error_code))
        .collect()
}

/// Metadata answers INVALID_TOPIC_EXCEPTION (17) for an invalid name, UNKNOWN_TOPIC_OR_PARTITION
/// (3) for a valid one that does not exist.
#[test]
fn metadata_answers_17_for_invalid_topic_names() {
    let s = start();
    for auto in [false, true] {
        let got = metadata(&s, &["bad/name", "..", "missing-x"], auto);
        assert_eq!(got[0], ("bad/name".into(), 17));
        assert_eq!(got[1], ("..".into(), 17));
        assert_eq!(got[2].1, if auto { 0 } else { 3 }, "auto={auto}");
    }
}

fn create(s: &Server, name: &str, partitions: i32, validate_only: bool) -> i16 {
    let mut t = create_topics_request::CreatableTopic::default();
    t.name = TopicName(sb(name));
    t.num_partitions = partitions;
    t.replication_factor = -1;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.validate_only = validate_only;
    let r: CreateTopicsResponse = call(s, ApiKey::CreateTopics, 5, &req);
    r.topics[0].error_code
}

/// `validate_only` runs the checks creation runs (it skipped the partition count).
#[test]
fn create_topics_validate_only_checks_partitions() {
    let s = start();
    assert_eq!(create(&s, "v", 0, true), 37, "INVALID_PARTITIONS");
    assert_eq!(create(&s, "v", -5, true), 37);
    assert_eq!(create(&s, "v", 1_000_000, true), 37);
    assert_eq!(create(&s, "v", 3, true), 0);
    assert_eq!(create(&s, "t", 3, true), 36, "TOPIC_ALREADY_EXISTS");
    assert!(s.broker.describe_topic("v").is_err(), "nothing created");
}

/// Names that collide once `.` and `_` are treated alike: Kafka refuses the second (17), in
/// CreateTopics and in auto-creation.
#[test]
fn topic_names_colliding_on_dot_and_underscore_are_refused() {
    let s = start();
    assert_eq!(create(&s, "a.b_x", 1, false), 0);
    assert_eq!(create(&s, "a_b_x", 1, false), 17);
    assert_eq!(create(&s, "a_b.x", 1, true), 17, "validate_only too");
    assert_eq!(metadata(&s, &["a.b.x"], true), vec![("a.b.x".into(), 17)]);
    assert!(s.broker.describe_topic("a_b_x").is_err());
    assert!(s.broker.describe_topic("a.b.x").is_err());
    assert_eq!(create(&s, "a-b-x", 1, false), 0, "'-' does not collide");
}

fn fetch(
    s: &Server,
    topic: &str,
    parts: &[(i32, i64)],
    max_bytes: i32,
    min_bytes: i32,
    max_wait_ms: i32,
) -> Vec<(i16, usize)> {
    let mut t = fetch_request::FetchTopic::default();
    t.topic = TopicName(sb(topic));
    t.partitions = parts
        .iter()
        .map(|(p, o)| {
            let mut fp = fetch_request::FetchPartition::default();
            fp.partition = *p;
            fp.fetch_offset = *o;
            fp.partition_max_bytes = 1 << 20;
            fp.current_leader_epoch = -1;
            fp
        })
        .collect();
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_bytes = max_bytes;
    req.min_bytes = min_bytes;
    req.max_wait_ms = max_wait_ms;
    req.session_epoch = -1;
    req.topics = vec![t];
    let r: FetchResponse = call(s, ApiKey::Fetch, 12, &req);
    r.responses[0]
        .partitions
        .iter()
        .map(|p| (p.error_code, p.records.as_ref().map_or(0, |b| b.len())))
        .collect()
}

/// KIP-74 as Kafka applies it: the first partition with data answers at least one batch even
/// past `max_bytes`; after it no partition goes past what is left.
#[test]
fn fetch_limits_pass_only_for_the_first_partition_with_data() {
    let s = start();
    s.rt.block_on(s.broker.create_topic("two", Some(2), Default::default()))
        .unwrap();
    produce_sized(&s, "two", 0, 1000);
    produce_sized(&s, "two", 1, 1000);
    let got = fetch(&s, "two", &[(0, 0), (1, 0)], 1500, 1, 0);
    assert_eq!(got[0].0, 0);
    assert!(got[0].1 > 1000, "the first partition answers its batch");
    assert_eq!(got[1], (0, 0), "the second does not fit in what is left");
    // The first partition at its end: the second is now the first with data, and passes the
    // limit by its one batch.
    let got = fetch(&s, "two", &[(0, 1), (1, 0)], 500, 1, 0);
    assert_eq!(got[0], (0, 0));
    assert!(got[1].1 > 1000, "{got:?}");
}

/// `fetch.min.bytes`: with less than that available the fetch waits for more (up to
/// `max_wait_ms`) instead of answering at once.
#[test]
fn fetch_waits_for_min_bytes() {
    let s = start();
    produce_sized(&s, "t", 0, 100);
    let began = Instant::now();
    let got = fetch(&s, "t", &[(0, 0)], 1 << 20, 5000, 600);
    assert!(
        began.elapsed() >= Duration::from_millis(500),
        "{:?}",
        began.elapsed()
    );
    assert!(
        got[0].1 > 100 && got[0].1 < 5000,
        "what there is, after the wait"
    );
    // Enough arrives while it waits: answered then, with all of it.
    let broker = s.broker.clone();
    let began = Instant::now();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for _ in 0..2 {
            let rec = busbar_log::batch::NewRecord {
                value: Some(vec![b'y'; 3000]),
                timestamp: 1,
                ..Default::default()
            };
            rt.block_on(broker.produce("t", 0, busbar_log::batch::build(&[rec])))
                .unwrap();
        }
    });
    let got = fetch(&s, "t", &[(0, 0)], 1 << 20, 5000, 10_000);
    writer.join().unwrap();
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(got[0].1 >= 6000, "{got:?}");
}

/// A damaged range answers CORRUPT_MESSAGE (2), which the Java client raises from poll() and
/// librdkafka reports as a consumer error, not a retriable storage error clients retry forever.
#[test]
fn a_damaged_range_answers_corrupt_message() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_at(dir.path().into(), BrokerConfig::default());
    s.rt.block_on(s.broker.create_topic("t", Some(1), Default::default()))
        .unwrap();
    produce_sized(&s, "t", 0, 200);
    let seg = std::fs::read_dir(dir.path().join("topics/t/0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() - 50; // inside the record's value
    bytes[at] ^= 0xff;
    std::fs::write(&seg, bytes).unwrap();
    let got = fetch(&s, "t", &[(0, 0)], 1 << 20, 1, 0);
    assert_eq!(got[0], (2, 0), "CORRUPT_MESSAGE");
}

/// DescribeConfigs with `include_synonyms`: a topic config lists where its value comes from,
/// most specific first (the topic override, then the broker default under its broker name).
#[test]
fn describe_configs_lists_synonyms() {
    let s = start();
    s.rt.block_on(s.broker.alter_configs(
        "t",
        [("retention.ms".to_string(), Some("1000".to_string()))].into(),
    ))
    .unwrap();
    let mut res = describe_configs_request::DescribeConfigsResource::default();
    res.resource_type = 2;
    res.resource_name = sb("t");
    res.configuration_keys = Some(vec![sb("retention.ms"), sb("cleanup.policy")]);
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![res];
    req.include_synonyms = true;
    let r: DescribeConfigsResponse = call(&s, ApiKey::DescribeConfigs, 4, &req);
    let syn = |key: &str| -> Vec<(String, String, i8)> {
        r.results[0]
            .configs
            .iter()
            .find(|c| c.name.as_str() == key)
            .unwrap()
            .synonyms
            .iter()
            .map(|s| {
                let v = s.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                (s.name.to_string(), v, s.source)
            })
            .collect()
    };
    assert_eq!(
        syn("retention.ms"),
        vec![
            ("retention.ms".into(), "1000".into(), 1),
            ("log.retention.ms".into(), "604800000".into(), 5),
        ]
    );
    assert_eq!(
        syn("cleanup.policy"),
        vec![("log.cleanup.policy".into(), "delete".into(), 5)]
    );
}

fn init_producer_id(s: &Server, current: (i64, i16)) -> InitProducerIdResponse {
    let mut ip = InitProducerIdRequest::default();
    ip.transactional_id = None;
    ip.transaction_timeout_ms = 1000;
    ip.producer_id = ProducerId(current.0);
    ip.producer_epoch = current.1;
    call(s, ApiKey::InitProducerId, 4, &ip)
}

/// Kafka answers an InitProducerId without a transactional id with a new producer id at epoch 0,
/// whatever id and epoch the request names (idempotent producers bump their epoch themselves,
/// KIP-360): naming another producer's id must not bump its epoch and fence it.
#[test]
fn init_producer_id_without_transactional_id_never_bumps_a_named_producer() {
    let s = start();
    let first = init_producer_id(&s, (-1, -1));
    assert_eq!((first.error_code, first.producer_epoch), (0, 0));
    let other = init_producer_id(&s, (first.producer_id.0, 0));
    assert_eq!(other.error_code, 0);
    assert_ne!(other.producer_id, first.producer_id, "a new id, not a bump");
    assert_eq!(other.producer_epoch, 0);
    let unknown = init_producer_id(&s, (1_000_000, 3));
    assert_eq!((unknown.error_code, unknown.producer_epoch), (0, 0));
}
