//! ACLs over the wire (issue 16), raw protocol: CreateAcls / DeleteAcls a disk refuses answer the
//! storage error and change nothing; malformed bindings and filters answer INVALID_REQUEST (42)
//! each, change nothing, panic nothing; and with authentication on and no ACL, a PLAINTEXT client
//! (User:ANONYMOUS) is refused by every API with Kafka's code (29, 30, 31, 53).

mod common;

use busbar_broker::auth::acl::{AclBinding, Operation, PatternType, Permission, ResourceType};
use busbar_broker::auth::AuthConfig;
use busbar_broker::datadir::FaultDataDir;
use busbar_broker::BrokerConfig;
use busbar_log::disk::MemFs;
use common::{call, sb, Server};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::*;
use std::sync::Arc;

/// A server with authentication on over a data directory whose ACL log can be made to fail;
/// topic `t` exists.
fn server() -> (Server, Arc<FaultDataDir>, tempfile::TempDir) {
    let dir = Arc::new(FaultDataDir::new(MemFs::new(), &["internal/acls"]));
    let tmp = tempfile::tempdir().unwrap();
    let s = common::start_at(
        tmp.path().into(),
        BrokerConfig {
            data: Some(dir.clone()),
            auth: AuthConfig {
                enabled: true,
                ..AuthConfig::default()
            },
            ..Default::default()
        },
    );
    s.rt.block_on(s.broker.create_topic("t", Some(1), Default::default()))
        .unwrap();
    (s, dir, tmp)
}

fn anonymous(ty: ResourceType, name: &str, op: Operation) -> AclBinding {
    AclBinding {
        resource_type: ty,
        resource_name: name.into(),
        pattern: PatternType::Literal,
        principal: "User:ANONYMOUS".into(),
        host: "*".into(),
        operation: op,
        permission: Permission::Allow,
    }
}

/// Lets the PLAINTEXT client (User:ANONYMOUS) manage ACLs.
fn let_anonymous_manage_acls(s: &Server) {
    let acls = vec![
        anonymous(ResourceType::Cluster, "kafka-cluster", Operation::Alter),
        anonymous(ResourceType::Cluster, "kafka-cluster", Operation::Describe),
    ];
    s.rt.block_on(s.broker.auth().acls().create(acls)).unwrap();
}

fn acls(s: &Server) -> Vec<AclBinding> {
    s.broker.auth().acls().snapshot().all().to_vec()
}

fn creation(
    ty: i8,
    name: &str,
    pattern: i8,
    who: &str,
    host: &str,
    op: i8,
    perm: i8,
) -> AclCreation {
    let mut c = AclCreation::default();
    c.resource_type = ty;
    c.resource_name = sb(name);
    c.resource_pattern_type = pattern;
    c.principal = sb(who);
    c.host = sb(host);
    c.operation = op;
    c.permission_type = perm;
    c
}

fn create(s: &Server, creations: Vec<AclCreation>) -> Vec<(i16, Option<String>)> {
    let mut req = CreateAclsRequest::default();
    req.creations = creations;
    let resp: CreateAclsResponse = call(s, ApiKey::CreateAcls, 2, &req);
    resp.results
        .into_iter()
        .map(|r| (r.error_code, r.error_message.map(|m| m.to_string())))
        .collect()
}

/// A filter: resource type, name, pattern, operation, permission (principal and host any).
fn filter(ty: i8, name: Option<&str>, pattern: i8, op: i8, perm: i8) -> DeleteAclsFilter {
    let mut f = DeleteAclsFilter::default();
    f.resource_type_filter = ty;
    f.resource_name_filter = name.map(sb);
    (f.principal_filter, f.host_filter) = (None, None);
    f.pattern_type_filter = pattern;
    f.operation = op;
    f.permission_type = perm;
    f
}

fn delete(s: &Server, filters: Vec<DeleteAclsFilter>) -> DeleteAclsResponse {
    let mut req = DeleteAclsRequest::default();
    req.filters = filters;
    call(s, ApiKey::DeleteAcls, 2, &req)
}

const VALID: (i8, i8, i8, i8) = (2, 3, 3, 3); // TOPIC, LITERAL, READ, ALLOW

#[test]
fn acl_writes_the_disk_refuses_answer_the_error_and_change_nothing() {
    let (s, dir, _tmp) = server();
    let_anonymous_manage_acls(&s);
    let before = acls(&s);
    let plan = dir.plan("internal/acls").expect("faulted");
    plan.set_disk_full(true);
    let (ty, pat, op, perm) = VALID;
    let answers = create(
        &s,
        vec![
            creation(ty, "a", pat, "User:alice", "*", op, perm),
            creation(ty, "b", pat, "User:alice", "*", op, perm),
        ],
    );
    assert!(
        answers.iter().all(|(code, _)| *code == 56),
        "KAFKA_STORAGE_ERROR for each: {answers:?}"
    );
    assert_eq!(acls(&s), before, "a refused CreateAcls stored nothing");
    let resp = delete(&s, vec![filter(1, None, 1, 1, 1)]);
    assert_eq!(resp.filter_results[0].error_code, 56, "{resp:?}");
    assert!(resp.filter_results[0].matching_acls.is_empty());
    assert_eq!(acls(&s), before, "a refused DeleteAcls deleted nothing");
    plan.set_disk_full(false);
    let answers = create(
        &s,
        vec![creation(ty, "a", pat, "User:alice", "*", op, perm)],
    );
    assert_eq!(answers, [(0, None)]);
    assert_eq!(acls(&s).len(), before.len() + 1);
}

#[test]
fn malformed_acl_requests_answer_invalid_request_and_change_nothing() {
    let (s, _dir, _tmp) = server();
    let_anonymous_manage_acls(&s);
    let before = acls(&s);
    let (ty, pat, op, perm) = VALID;
    let huge = "n".repeat(2_000);
    let answers = create(
        &s,
        vec![
            creation(99, "x", pat, "User:a", "*", op, perm), // unknown resource type
            creation(1, "x", pat, "User:a", "*", op, perm),  // ANY resource type
            creation(ty, "x", 2, "User:a", "*", op, perm),   // MATCH pattern
            creation(ty, "x", pat, "User:a", "*", 1, perm),  // ANY operation
            creation(ty, "x", pat, "User:a", "*", op, 0),    // UNKNOWN permission
            creation(ty, "x", pat, "alice", "*", op, perm),  // not User:
            creation(ty, "x", pat, "User:a", "example.com", op, perm), // host not an IP
            creation(4, "other", pat, "User:a", "*", op, perm), // CLUSTER not kafka-cluster
            creation(ty, &huge, pat, "User:a", "*", op, perm), // name too long
            creation(ty, "ok", pat, "User:a", "10.0.0.1", op, perm),
        ],
    );
    let (bad, ok) = answers.split_at(answers.len() - 1);
    for (i, (code, msg)) in bad.iter().enumerate() {
        assert_eq!(*code, 42, "creation {i}: {msg:?}");
        assert!(
            msg.as_ref().is_some_and(|m| !m.is_empty()),
            "creation {i} says why"
        );
    }
    assert_eq!(ok, [(0, None)]);
    let after = acls(&s);
    assert_eq!(
        after.len(),
        before.len() + 1,
        "only the valid creation: {after:?}"
    );

    // Bad filters: 42 each; a huge name and thousands of filters matching nothing delete nothing.
    let mut filters = vec![
        filter(0, None, 1, 1, 1),  // UNKNOWN resource type
        filter(2, None, 9, 1, 1),  // unknown pattern type
        filter(2, None, 1, 99, 1), // unknown operation
        filter(2, None, 1, 1, 7),  // unknown permission
        filter(2, Some(&"z".repeat(1 << 20)), 3, 1, 1),
    ];
    filters.extend((0..5_000).map(|i| filter(2, Some(&format!("none-{i}")), 2, 1, 1)));
    let resp = delete(&s, filters);
    assert_eq!(resp.filter_results.len(), 5_005);
    for (i, r) in resp.filter_results[..4].iter().enumerate() {
        assert_eq!(r.error_code, 42, "filter {i}");
        assert!(r.error_message.is_some());
    }
    assert!(resp.filter_results[4..]
        .iter()
        .all(|r| r.error_code == 0 && r.matching_acls.is_empty()));
    assert_eq!(acls(&s), after, "nothing deleted");

    let mut d = DescribeAclsRequest::default();
    d.resource_type_filter = 1;
    d.pattern_type_filter = 1;
    (d.resource_name_filter, d.principal_filter, d.host_filter) = (None, None, None);
    d.operation = 99;
    d.permission_type = 1;
    let resp: DescribeAclsResponse = call(&s, ApiKey::DescribeAcls, 1, &d);
    assert_eq!(resp.error_code, 42);
    assert!(resp.error_message.is_some_and(|m| m.contains("operation")));
    // Every advertised version answers.
    d.operation = 1;
    for v in 1..=3 {
        let resp: DescribeAclsResponse = call(&s, ApiKey::DescribeAcls, v, &d);
        let n: usize = resp.resources.iter().map(|r| r.acls.len()).sum();
        assert_eq!((resp.error_code, n), (0, after.len()), "v{v}");
    }
}

/// Every API's code for a client without any ACL.
#[test]
fn without_acls_a_plaintext_client_is_refused_by_every_api() {
    let (s, _dir, _tmp) = server();
    let broker = s.broker.clone();
    s.rt.block_on(broker.create_topic("secret", Some(1), Default::default()))
        .unwrap();
    let t = || common::sb("t");

    let mut md = MetadataRequest::default();
    md.topics = None;
    let resp: MetadataResponse = call(&s, ApiKey::Metadata, 12, &md);
    assert!(resp.topics.is_empty(), "every topic hidden");
    let mut named = metadata_request::MetadataRequestTopic::default();
    named.name = Some(TopicName(sb("no-such")));
    md.topics = Some(vec![named]);
    md.allow_auto_topic_creation = true;
    let resp: MetadataResponse = call(&s, ApiKey::Metadata, 12, &md);
    assert_eq!(resp.topics[0].error_code, 29, "29 whether or not it exists");
    assert!(
        broker.describe_topic("no-such").is_err(),
        "not auto-created"
    );

    let mut p = produce_request::PartitionProduceData::default();
    p.records = Some(bytes::Bytes::from(busbar_log::batch::build(&[
        busbar_log::batch::NewRecord {
            key: None,
            value: Some(b"v".to_vec()),
            headers: vec![],
            timestamp: 1,
        },
    ])));
    let mut td = produce_request::TopicProduceData::default();
    td.name = TopicName(t());
    td.partition_data = vec![p];
    let mut pr = ProduceRequest::default();
    pr.acks = -1;
    pr.timeout_ms = 1000;
    pr.topic_data = vec![td.clone()];
    let resp: ProduceResponse = call(&s, ApiKey::Produce, 9, &pr);
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 29);
    pr.transactional_id = Some(TransactionalId(sb("tx")));
    let resp: ProduceResponse = call(&s, ApiKey::Produce, 9, &pr);
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 53);
    assert_eq!(broker.offsets_of("t", 0).unwrap(), (0, 0), "nothing stored");

    let mut fp = fetch_request::FetchPartition::default();
    fp.partition_max_bytes = 1 << 20;
    let mut ft = fetch_request::FetchTopic::default();
    ft.topic = TopicName(t());
    ft.partitions = vec![fp];
    let mut f = FetchRequest::default();
    f.max_bytes = 1 << 20;
    f.topics = vec![ft];
    let resp: FetchResponse = call(&s, ApiKey::Fetch, 12, &f);
    assert_eq!(resp.responses[0].partitions[0].error_code, 29);

    let mut lp = list_offsets_request::ListOffsetsPartition::default();
    lp.timestamp = -1;
    let mut lt = list_offsets_request::ListOffsetsTopic::default();
    lt.name = TopicName(t());
    lt.partitions = vec![lp];
    let mut lo = ListOffsetsRequest::default();
    lo.topics = vec![lt];
    let resp: ListOffsetsResponse = call(&s, ApiKey::ListOffsets, 7, &lo);
    assert_eq!(resp.topics[0].partitions[0].error_code, 29);

    let g = || GroupId(sb("g"));
    let mut fc = FindCoordinatorRequest::default();
    fc.key = sb("g");
    let resp: FindCoordinatorResponse = call(&s, ApiKey::FindCoordinator, 2, &fc);
    assert_eq!(resp.error_code, 30);
    fc.key_type = 1;
    let resp: FindCoordinatorResponse = call(&s, ApiKey::FindCoordinator, 2, &fc);
    assert_eq!(resp.error_code, 53);

    let mut j = JoinGroupRequest::default();
    j.group_id = g();
    j.session_timeout_ms = 10_000;
    j.rebalance_timeout_ms = 10_000;
    j.protocol_type = sb("consumer");
    let resp: JoinGroupResponse = call(&s, ApiKey::JoinGroup, 5, &j);
    assert_eq!(resp.error_code, 30);
    let mut sg = SyncGroupRequest::default();
    sg.group_id = g();
    let resp: SyncGroupResponse = call(&s, ApiKey::SyncGroup, 3, &sg);
    assert_eq!(resp.error_code, 30);
    let mut hb = HeartbeatRequest::default();
    hb.group_id = g();
    let resp: HeartbeatResponse = call(&s, ApiKey::Heartbeat, 3, &hb);
    assert_eq!(resp.error_code, 30);
    let mut lg = LeaveGroupRequest::default();
    lg.group_id = g();
    let resp: LeaveGroupResponse = call(&s, ApiKey::LeaveGroup, 4, &lg);
    assert_eq!(resp.error_code, 30);

    let mut cp = offset_commit_request::OffsetCommitRequestPartition::default();
    cp.committed_offset = 1;
    let mut ct = offset_commit_request::OffsetCommitRequestTopic::default();
    ct.name = TopicName(t());
    ct.partitions = vec![cp];
    let mut oc = OffsetCommitRequest::default();
    oc.group_id = g();
    oc.generation_id_or_member_epoch = -1;
    oc.topics = vec![ct];
    let resp: OffsetCommitResponse = call(&s, ApiKey::OffsetCommit, 8, &oc);
    assert_eq!(resp.topics[0].partitions[0].error_code, 30);
    let mut of = OffsetFetchRequest::default();
    of.group_id = g();
    of.topics = None;
    let resp: OffsetFetchResponse = call(&s, ApiKey::OffsetFetch, 7, &of);
    assert_eq!(resp.error_code, 30);

    let mut dg = DescribeGroupsRequest::default();
    dg.groups = vec![g()];
    let resp: DescribeGroupsResponse = call(&s, ApiKey::DescribeGroups, 5, &dg);
    assert_eq!(resp.groups[0].error_code, 30);
    let mut del = DeleteGroupsRequest::default();
    del.groups_names = vec![g()];
    let resp: DeleteGroupsResponse = call(&s, ApiKey::DeleteGroups, 2, &del);
    assert_eq!(resp.results[0].error_code, 30);
    let mut od = OffsetDeleteRequest::default();
    od.group_id = g();
    let resp: OffsetDeleteResponse = call(&s, ApiKey::OffsetDelete, 0, &od);
    assert_eq!(resp.error_code, 30);

    let mut ctp = create_topics_request::CreatableTopic::default();
    ctp.name = TopicName(sb("new"));
    ctp.num_partitions = 1;
    ctp.replication_factor = 1;
    let mut cr = CreateTopicsRequest::default();
    cr.topics = vec![ctp];
    let resp: CreateTopicsResponse = call(&s, ApiKey::CreateTopics, 5, &cr);
    assert_eq!(resp.topics[0].error_code, 29);
    assert!(broker.describe_topic("new").is_err());
    let mut dt = DeleteTopicsRequest::default();
    dt.topic_names = vec![TopicName(sb("secret"))];
    let resp: DeleteTopicsResponse = call(&s, ApiKey::DeleteTopics, 5, &dt);
    assert_eq!(resp.responses[0].error_code, 29);
    assert!(broker.describe_topic("secret").is_ok());
    let mut drp = delete_records_request::DeleteRecordsPartition::default();
    drp.offset = -1;
    let mut drt = delete_records_request::DeleteRecordsTopic::default();
    drt.name = TopicName(t());
    drt.partitions = vec![drp];
    let mut dr = DeleteRecordsRequest::default();
    dr.topics = vec![drt];
    let resp: DeleteRecordsResponse = call(&s, ApiKey::DeleteRecords, 2, &dr);
    assert_eq!(resp.topics[0].partitions[0].error_code, 29);
    let mut cpt = create_partitions_request::CreatePartitionsTopic::default();
    cpt.name = TopicName(t());
    cpt.count = 3;
    let mut cpr = CreatePartitionsRequest::default();
    cpr.topics = vec![cpt];
    let resp: CreatePartitionsResponse = call(&s, ApiKey::CreatePartitions, 3, &cpr);
    assert_eq!(resp.results[0].error_code, 29);

    let mut dcr = describe_configs_request::DescribeConfigsResource::default();
    dcr.resource_type = 2;
    dcr.resource_name = sb("t");
    let mut dbr = dcr.clone();
    dbr.resource_type = 4;
    dbr.resource_name = sb("0");
    let mut dc = DescribeConfigsRequest::default();
    dc.resources = vec![dcr, dbr];
    let resp: DescribeConfigsResponse = call(&s, ApiKey::DescribeConfigs, 4, &dc);
    let codes: Vec<i16> = resp.results.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, [29, 31]);
    let mut acr = alter_configs_request::AlterConfigsResource::default();
    acr.resource_type = 2;
    acr.resource_name = sb("t");
    let mut ac = AlterConfigsRequest::default();
    ac.resources = vec![acr];
    let resp: AlterConfigsResponse = call(&s, ApiKey::AlterConfigs, 2, &ac);
    assert_eq!(resp.responses[0].error_code, 29);
    let mut icr = incremental_alter_configs_request::AlterConfigsResource::default();
    icr.resource_type = 2;
    icr.resource_name = sb("t");
    let mut ic = IncrementalAlterConfigsRequest::default();
    ic.resources = vec![icr];
    let resp: IncrementalAlterConfigsResponse = call(&s, ApiKey::IncrementalAlterConfigs, 1, &ic);
    assert_eq!(resp.responses[0].error_code, 29);

    let resp: DescribeClusterResponse = call(
        &s,
        ApiKey::DescribeCluster,
        1,
        &DescribeClusterRequest::default(),
    );
    // Kafka checks nothing for DescribeCluster (it only fills authorized operations).
    assert_eq!((resp.error_code, resp.brokers.len()), (0, 1));
    let resp: DescribeLogDirsResponse = call(
        &s,
        ApiKey::DescribeLogDirs,
        4,
        &DescribeLogDirsRequest::default(),
    );
    assert_eq!((resp.error_code, resp.results.len()), (31, 0));
    let mut ip = InitProducerIdRequest::default();
    ip.transactional_id = None;
    ip.transaction_timeout_ms = 1000;
    ip.producer_id = ProducerId(-1);
    ip.producer_epoch = -1;
    let resp: InitProducerIdResponse = call(&s, ApiKey::InitProducerId, 4, &ip);
    assert_eq!(resp.error_code, 31, "idempotence needs WRITE on some topic");
    ip.transactional_id = Some(TransactionalId(sb("tx")));
    let resp: InitProducerIdResponse = call(&s, ApiKey::InitProducerId, 4, &ip);
    assert_eq!(resp.error_code, 53);

    let resp: ListGroupsResponse = call(&s, ApiKey::ListGroups, 4, &ListGroupsRequest::default());
    assert!(resp.groups.is_empty());
    let mut d = DescribeAclsRequest::default();
    (d.resource_type_filter, d.pattern_type_filter) = (1, 1);
    (d.operation, d.permission_type) = (1, 1);
    (d.resource_name_filter, d.principal_filter, d.host_filter) = (None, None, None);
    let resp: DescribeAclsResponse = call(&s, ApiKey::DescribeAcls, 2, &d);
    assert_eq!(resp.error_code, 31);
    let (ty, pat, op, perm) = VALID;
    let answers = create(
        &s,
        vec![creation(ty, "t", pat, "User:ANONYMOUS", "*", op, perm)],
    );
    assert_eq!(answers[0].0, 31);
    let resp = delete(&s, vec![filter(1, None, 1, 1, 1)]);
    assert_eq!(resp.filter_results[0].error_code, 31);
    assert!(acls(&s).is_empty());
    let resp: DescribeUserScramCredentialsResponse = call(
        &s,
        ApiKey::DescribeUserScramCredentials,
        0,
        &DescribeUserScramCredentialsRequest::default(),
    );
    assert_eq!(resp.error_code, 31);

    // With READ on t and on group g, the same client fetches and joins.
    s.rt.block_on(broker.auth().acls().create(vec![
        anonymous(ResourceType::Topic, "t", Operation::Read),
        anonymous(ResourceType::Group, "g", Operation::Read),
    ]))
    .unwrap();
    let resp: FetchResponse = call(&s, ApiKey::Fetch, 12, &f);
    assert_eq!(resp.responses[0].partitions[0].error_code, 0);
    fc.key_type = 0;
    let resp: FindCoordinatorResponse = call(&s, ApiKey::FindCoordinator, 2, &fc);
    assert_eq!(resp.error_code, 0);
    md.topics = None;
    let resp: MetadataResponse = call(&s, ApiKey::Metadata, 12, &md);
    let names: Vec<_> = resp
        .topics
        .iter()
        .map(|t| t.name.clone().unwrap().0.to_string())
        .collect();
    assert_eq!(names, ["t"], "READ implies DESCRIBE; secret stays hidden");
}

#[test]
fn acl_apis_answer_security_disabled_while_auth_is_off() {
    let s = common::start(); // auth.enabled = false
    let (ty, pat, op, perm) = VALID;
    let answers = create(&s, vec![creation(ty, "t", pat, "User:*", "*", op, perm)]);
    assert_eq!(answers[0].0, 54, "SECURITY_DISABLED: {answers:?}");
    assert!(answers[0]
        .1
        .as_ref()
        .is_some_and(|m| m.contains("auth.enabled")));
    assert!(acls(&s).is_empty(), "nothing stored");
    s.rt.block_on(s.broker.auth().acls().create(vec![anonymous(
        ResourceType::Topic,
        "t",
        Operation::Read,
    )]))
    .unwrap();
    let resp = delete(&s, vec![filter(1, None, 1, 1, 1)]);
    assert_eq!(resp.filter_results[0].error_code, 54, "{resp:?}");
    assert_eq!(acls(&s).len(), 1, "nothing deleted");
    let mut req = DescribeAclsRequest::default();
    (req.resource_type_filter, req.pattern_type_filter) = (1, 1);
    (req.operation, req.permission_type) = (1, 1);
    let resp: DescribeAclsResponse = call(&s, ApiKey::DescribeAcls, 2, &req);
    assert_eq!(resp.error_code, 54, "{resp:?}");
    assert!(resp.resources.is_empty());
}

#[test]
fn one_denial_audit_line_per_request_and_operation_not_per_topic() {
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("audit.log");
    let s = common::start_at(
        tmp.path().join("data"),
        BrokerConfig {
            auth: AuthConfig {
                enabled: true,
                ..AuthConfig::default()
            },
            audit: busbar_broker::audit::AuditConfig {
                target: busbar_broker::audit::AuditTarget::File(audit.clone()),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    let mut md = MetadataRequest::default();
    md.topics = Some(
        (0..50)
            .map(|i| {
                let mut t = metadata_request::MetadataRequestTopic::default();
                t.name = Some(TopicName(sb(&format!("topic-{i}"))));
                t
            })
            .collect(),
    );
    let resp: MetadataResponse = call(&s, ApiKey::Metadata, 12, &md);
    assert!(resp.topics.iter().all(|t| t.error_code == 29));
    s.broker.audit().flush();
    let text = std::fs::read_to_string(&audit).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("Metadata")).collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("TOPIC:topic-0"), "{}", lines[0]);
    assert!(lines[0].contains("50 denied"), "{}", lines[0]);
    assert!(
        !lines[0].contains("topic-49"),
        "at most 10 listed: {}",
        lines[0]
    );
}

/// A DescribeAcls whose answer would pass `auth.acls_answer_bytes_max` answers
/// INVALID_REQUEST saying how many ACLs match, and builds nothing; a narrower filter answers.
#[test]
fn describe_acls_past_the_answer_budget_is_refused_and_a_narrow_filter_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let s = common::start_at(
        tmp.path().into(),
        BrokerConfig {
            auth: AuthConfig {
                enabled: true,
                acls_answer_bytes_max: 2_000,
                ..AuthConfig::default()
            },
            ..Default::default()
        },
    );
    let_anonymous_manage_acls(&s);
    let long: Vec<AclBinding> = (0..20)
        .map(|i| anonymous(ResourceType::Topic, &format!("{i:0>100}"), Operation::Read))
        .collect();
    s.rt.block_on(s.broker.auth().acls().create(long)).unwrap();
    let mut req = DescribeAclsRequest::default();
    (req.resource_type_filter, req.pattern_type_filter) = (1, 1);
    (req.operation, req.permission_type) = (1, 1);
    (
        req.resource_name_filter,
        req.principal_filter,
        req.host_filter,
    ) = (None, None, None);
    let resp: DescribeAclsResponse = call(&s, ApiKey::DescribeAcls, 2, &req);
    assert_eq!(resp.error_code, 42, "{resp:?}");
    let why = resp.error_message.as_ref().unwrap().as_str();
    assert!(why.contains("22 ACLs match"), "{why}");
    assert!(why.contains("auth.acls_answer_bytes_max"), "{why}");
    assert!(resp.resources.is_empty());
    req.resource_type_filter = 4; // CLUSTER: the two ACLs letting ANONYMOUS manage ACLs
    let resp: DescribeAclsResponse = call(&s, ApiKey::DescribeAcls, 2, &req);
    assert_eq!((resp.error_code, resp.resources.len()), (0, 1), "{resp:?}");
    assert_eq!(resp.resources[0].acls.len(), 2);
}
