//! Client quotas on the wire (issue 16): AlterClientQuotas / DescribeClientQuotas (48/49) round
//! trips with Kafka's refusals, and KIP-219 enforcement: a Produce over `producer_byte_rate` is
//! stored and answered at once with `throttle_time_ms`, then the connection takes nothing for
//! that long; a Fetch over `consumer_byte_rate` answers no data.

mod common;

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::*;
use std::io::Write;
use std::time::{Duration, Instant};

/// The client id `common::frame` sends.
const CLIENT: &str = "fidelity-test";

fn entry(
    parts: &[(&str, Option<&str>)],
    ops: &[(&str, f64, bool)],
) -> alter_client_quotas_request::EntryData {
    let mut e = alter_client_quotas_request::EntryData::default();
    e.entity = parts
        .iter()
        .map(|(t, n)| {
            let mut d = alter_client_quotas_request::EntityData::default();
            d.entity_type = sb(t);
            d.entity_name = n.map(sb);
            d
        })
        .collect();
    e.ops = ops
        .iter()
        .map(|(k, v, remove)| {
            let mut o = alter_client_quotas_request::OpData::default();
            o.key = sb(k);
            o.value = *v;
            o.remove = *remove;
            o
        })
        .collect();
    e
}

fn alter(
    s: &Server,
    entries: Vec<alter_client_quotas_request::EntryData>,
    validate_only: bool,
) -> Vec<i16> {
    let mut req = AlterClientQuotasRequest::default();
    req.entries = entries;
    req.validate_only = validate_only;
    let r: AlterClientQuotasResponse = call(s, ApiKey::AlterClientQuotas, 1, &req);
    r.entries.iter().map(|e| e.error_code).collect()
}

fn describe(
    s: &Server,
    components: &[(&str, i8, Option<&str>)],
    strict: bool,
) -> DescribeClientQuotasResponse {
    let mut req = DescribeClientQuotasRequest::default();
    req.components = components
        .iter()
        .map(|(t, m, name)| {
            let mut c = describe_client_quotas_request::ComponentData::default();
            c.entity_type = sb(t);
            c.match_type = *m;
            c._match = name.map(sb);
            c
        })
        .collect();
    req.strict = strict;
    call(s, ApiKey::DescribeClientQuotas, 1, &req)
}

/// (entity as "type=name|<default>" pairs, key=value) of every entry.
fn listed(r: &DescribeClientQuotasResponse) -> Vec<String> {
    let mut out: Vec<String> = r
        .entries
        .as_ref()
        .expect("entries")
        .iter()
        .map(|e| {
            let entity: Vec<String> = e
                .entity
                .iter()
                .map(|d| {
                    let name = d.entity_name.as_ref().map_or("<default>", |n| n.as_str());
                    format!("{}={name}", d.entity_type.as_str())
                })
                .collect();
            let values: Vec<String> = e
                .values
                .iter()
                .map(|v| format!("{}={}", v.key.as_str(), v.value))
                .collect();
            format!("{} {}", entity.join(","), values.join(","))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn alter_and_describe_client_quotas_round_trip_with_kafkas_refusals() {
    let s = start();
    let codes = alter(
        &s,
        vec![
            entry(
                &[("user", Some("alice"))],
                &[("producer_byte_rate", 1024.0, false)],
            ),
            entry(
                &[("user", Some("alice")), ("client-id", None)],
                &[("request_percentage", 12.5, false)],
            ),
            entry(
                &[("client-id", None)],
                &[("consumer_byte_rate", 2048.0, false)],
            ),
            entry(&[("user", Some("bob"))], &[("bogus_rate", 1.0, false)]),
            entry(
                &[("ip", Some("10.0.0.1"))],
                &[("producer_byte_rate", 1.0, false)],
            ),
            entry(
                &[("user", Some("a")), ("user", Some("b"))],
                &[("producer_byte_rate", 1.0, false)],
            ),
            entry(
                &[("user", Some("carol"))],
                &[("producer_byte_rate", 1.5, false)],
            ),
        ],
        false,
    );
    assert_eq!(codes, [0, 0, 0, 42, 42, 42, 42]);
    // validate_only: checked, nothing stored.
    let checked = alter(
        &s,
        vec![entry(
            &[("user", Some("dave"))],
            &[("producer_byte_rate", 1.0, false)],
        )],
        true,
    );
    assert_eq!(checked, [0]);
    assert_eq!(
        listed(&describe(&s, &[], false)),
        [
            "client-id=<default> consumer_byte_rate=2048",
            "user=alice producer_byte_rate=1024",
            "user=alice,client-id=<default> request_percentage=12.5",
        ]
    );
    // Exact, strict, default and any filters.
    let alice = describe(&s, &[("user", 0, Some("alice"))], true);
    assert_eq!(listed(&alice), ["user=alice producer_byte_rate=1024"]);
    let any_client = describe(&s, &[("client-id", 2, None)], false);
    assert_eq!(listed(&any_client).len(), 2);
    let default_client = describe(&s, &[("client-id", 1, None)], true);
    assert_eq!(
        listed(&default_client),
        ["client-id=<default> consumer_byte_rate=2048"]
    );
    // A bad filter: INVALID_REQUEST and no entries.
    for bad in [
        vec![("user", 0, None)],
        vec![("user", 1, Some("x"))],
        vec![("group", 2, None)],
        vec![("user", 2, None), ("user", 1, None)],
    ] {
        let r = describe(&s, &bad, false);
        assert_eq!(r.error_code, 42, "{bad:?}");
        assert!(r.entries.is_none());
    }
    // Remove: the last key takes the entity.
    let removed = alter(
        &s,
        vec![entry(
            &[("user", Some("alice"))],
            &[("producer_byte_rate", 0.0, true)],
        )],
        false,
    );
    assert_eq!(removed, [0]);
    assert_eq!(
        listed(&describe(&s, &[("user", 0, Some("alice"))], true)),
        Vec::<String>::new()
    );
}

fn produce_req(value_bytes: usize) -> ProduceRequest {
    let rec = busbar_log::batch::NewRecord {
        value: Some(vec![b'x'; value_bytes]),
        timestamp: 1,
        ..Default::default()
    };
    let mut pd = produce_request::PartitionProduceData::default();
    pd.index = 0;
    pd.records = Some(Bytes::from(busbar_log::batch::build(&[rec])));
    let mut td = produce_request::TopicProduceData::default();
    td.name = TopicName(sb("t"));
    td.partition_data = vec![pd];
    let mut r = ProduceRequest::default();
    r.acks = -1;
    r.timeout_ms = 5000;
    r.topic_data = vec![td];
    r
}

#[test]
fn a_produce_over_its_quota_is_stored_answered_at_once_then_the_connection_is_muted() {
    let s = start();
    // 1,000 B/s for this client id: its 10 s allowance is 10,000 bytes.
    let set = alter(
        &s,
        vec![entry(
            &[("client-id", Some(CLIENT))],
            &[("producer_byte_rate", 1000.0, false)],
        )],
        false,
    );
    assert_eq!(set, [0]);
    let mut c = connect(&s);
    let started = Instant::now();
    let r: ProduceResponse = call_on(&mut c, ApiKey::Produce, 8, &produce_req(15_000)).unwrap();
    let answered = started.elapsed();
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 0,
        "stored"
    );
    // ~15,100 bytes over 10 s against 1,000/s: (1510 - 1000) / 1000 × 10 s ≈ 5.1 s.
    let throttle = r.throttle_time_ms;
    assert!(
        (4_500..6_000).contains(&throttle),
        "throttle_time_ms {throttle}"
    );
    assert!(
        answered < Duration::from_secs(2),
        "answered at once, not after the throttle: {answered:?}"
    );
    // The next request on this connection waits out the mute; another client id is not muted.
    c.write_all(&frame(ApiKey::Metadata, 12, &MetadataRequest::default()))
        .unwrap();
    assert!(read_response(&mut c).is_some());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(throttle as u64 - 100),
        "muted for {waited:?}"
    );
    assert_eq!(s.broker.offsets_of("t", 0).unwrap().1, 1);
}

#[test]
fn an_old_produce_client_gets_its_answer_late_instead() {
    let s = start();
    alter(
        &s,
        vec![entry(
            &[("client-id", None)],
            &[("producer_byte_rate", 1000.0, false)],
        )],
        false,
    );
    let started = Instant::now();
    let r: ProduceResponse = call(&s, ApiKey::Produce, 5, &produce_req(11_500));
    let (answered, throttle) = (started.elapsed(), r.throttle_time_ms as u64);
    assert!(throttle >= 1000, "throttle_time_ms {throttle}");
    assert!(
        answered >= Duration::from_millis(throttle - 50),
        "held {answered:?} for {throttle} ms"
    );
}

fn fetch_at(c: &mut std::net::TcpStream, offset: i64) -> FetchResponse {
    let mut fp = fetch_request::FetchPartition::default();
    fp.partition = 0;
    fp.fetch_offset = offset;
    fp.partition_max_bytes = 1 << 20;
    fp.current_leader_epoch = -1;
    let mut t = fetch_request::FetchTopic::default();
    t.topic = TopicName(sb("t"));
    t.partitions = vec![fp];
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_bytes = 1 << 20;
    req.min_bytes = 1;
    req.session_epoch = -1;
    req.topics = vec![t];
    call_on(c, ApiKey::Fetch, 12, &req).unwrap()
}

#[test]
fn a_fetch_over_its_quota_answers_no_data_and_the_throttle() {
    let s = start();
    for _ in 0..6 {
        produce_sized(&s, "t", 0, 4_000);
    }
    alter(
        &s,
        vec![entry(
            &[("user", None)],
            &[("consumer_byte_rate", 1000.0, false)],
        )],
        false,
    );
    let mut c = connect(&s);
    let (mut offset, mut got) = (0i64, 0usize);
    // Each answer is at most 5,000 bytes (half the 10 s allowance, so ~1 batch); the third goes
    // past 10,000 bytes in the window and comes back empty.
    loop {
        let r = fetch_at(&mut c, offset);
        if r.throttle_time_ms > 0 {
            assert!(r.responses.is_empty(), "a throttled fetch carries no data");
            break;
        }
        let p = &r.responses[0].partitions[0];
        got += p.records.as_ref().map_or(0, |b| b.len());
        assert!(got <= 10_500, "{got} bytes passed a 10,000-byte allowance");
        offset = p.high_watermark.min(offset + 1);
    }
    assert!(got >= 8_000, "{got}");
}

/// `request_percentage` covers every API: a client id over its share of request time gets
/// `throttle_time_ms` on a Metadata answer too (set by the one function for every response type).
#[test]
fn request_time_over_its_percentage_throttles_any_api() {
    let s = start();
    let tiny = [("request_percentage", 0.0001, false)];
    assert_eq!(
        alter(
            &s,
            vec![entry(&[("client-id", Some(CLIENT))], &tiny)],
            false
        ),
        [0]
    );
    let mut c = connect(&s);
    let mut throttled = None;
    for _ in 0..50 {
        let r: MetadataResponse =
            call_on(&mut c, ApiKey::Metadata, 12, &MetadataRequest::default()).unwrap();
        if r.throttle_time_ms > 0 {
            throttled = Some(r.throttle_time_ms);
            break;
        }
    }
    assert!(
        throttled.is_some(),
        "50 Metadata requests never exceeded 0.0001 % of a thread"
    );
    // The rate is the client id's, not the connection's: a new connection is still over.
    let r: MetadataResponse = call(&s, ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(
        r.throttle_time_ms > 0,
        "a new connection of the same client id"
    );
}

/// `request_percentage` counts the time a request is worked on, not its wait: a JoinGroup's
/// wait for the rebalance (`group.initial.rebalance.delay`, 3 s) is not request time (Kafka's
/// request time is request-thread time; a waiting join sits in purgatory), so a lone consumer
/// far under a quarter thread is not throttled for joining.
#[test]
fn a_joingroups_rebalance_wait_is_not_request_time() {
    let s = start();
    let quarter = [("request_percentage", 25.0, false)];
    let entity = entry(&[("client-id", Some(CLIENT))], &quarter);
    assert_eq!(alter(&s, vec![entity], false), [0]);
    let mut join = JoinGroupRequest::default();
    join.group_id = GroupId(kafka_protocol::protocol::StrBytes::from_static_str("g"));
    join.session_timeout_ms = 10_000;
    join.rebalance_timeout_ms = 10_000;
    join.protocol_type = kafka_protocol::protocol::StrBytes::from_static_str("consumer");
    let mut p = join_group_request::JoinGroupRequestProtocol::default();
    p.name = kafka_protocol::protocol::StrBytes::from_static_str("range");
    join.protocols = vec![p];
    let mut c = connect(&s);
    let started = Instant::now();
    let r: JoinGroupResponse = call_on(&mut c, ApiKey::JoinGroup, 3, &join).unwrap();
    assert_eq!(r.error_code, 0);
    assert!(
        started.elapsed() >= Duration::from_millis(2_500),
        "it waited"
    );
    // 3 s of wall time over the 10 s minimum span would be 30 % of a thread.
    assert_eq!(r.throttle_time_ms, 0, "the join's wait was counted");
    let m: MetadataResponse =
        call_on(&mut c, ApiKey::Metadata, 12, &MetadataRequest::default()).unwrap();
    assert_eq!(m.throttle_time_ms, 0);
}
