//! Kafka's per-API authorization table (issue 16, K14) as data: for every API busbar advertises,
//! the codes a PLAINTEXT client (User:ANONYMOUS) gets with authentication on and no ACL, the ACLs
//! that let the same request through, and the codes then. [`probe`] sends each API's request
//! over a raw socket and reduces its answer to those codes. An advertised API without a row fails
//! the test that walks [`ROWS`].

#![allow(dead_code)] // each test file uses its own subset

use crate::common::{call_on, sb};
use busbar_broker::auth::acl::{Operation as Op, ResourceType as Ty};
use bytes::Bytes;
use kafka_protocol::messages::*;
use std::net::TcpStream;

/// One API: its key, the version sent, the codes without ACLs, the ACLs (resource type, name,
/// operation) it needs, and the codes with them.
pub struct Row {
    pub key: ApiKey,
    pub version: i16,
    pub denied: &'static [i16],
    pub needs: &'static [(Ty, &'static str, Op)],
    pub allowed: &'static [i16],
}

const C: &str = "kafka-cluster";

const fn row(
    key: ApiKey,
    version: i16,
    denied: &'static [i16],
    needs: &'static [(Ty, &'static str, Op)],
    allowed: &'static [i16],
) -> Row {
    Row {
        key,
        version,
        denied,
        needs,
        allowed,
    }
}

/// Kafka's codes: 29 TOPIC_, 30 GROUP_, 31 CLUSTER_, 53 TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
/// 34 ILLEGAL_SASL_STATE. Run in this order: the group rows go through a consumer's life (join,
/// sync, heartbeat, commit, leave, then delete its offsets and the group).
pub const ROWS: &[Row] = &[
    // Unchecked (KafkaApis authorizes nothing for them).
    row(ApiKey::ApiVersions, 3, &[0], &[], &[0]),
    row(ApiKey::DescribeCluster, 1, &[0, 1], &[], &[0, 1]),
    // Valid only before authentication on a SASL listener.
    row(ApiKey::SaslHandshake, 1, &[34], &[], &[34]),
    row(ApiKey::SaslAuthenticate, 2, &[34], &[], &[34]),
    // Metadata: [code of each listed topic (all topics asked)..., code of `t` when named].
    row(
        ApiKey::Metadata,
        12,
        &[29],
        &[(Ty::Topic, "t", Op::Describe)],
        &[0, 0],
    ),
    row(
        ApiKey::Produce,
        9,
        &[29],
        &[(Ty::Topic, "t", Op::Write)],
        &[0],
    ),
    row(
        ApiKey::Fetch,
        12,
        &[29],
        &[(Ty::Topic, "t", Op::Read)],
        &[0],
    ),
    row(
        ApiKey::ListOffsets,
        7,
        &[29],
        &[(Ty::Topic, "t", Op::Describe)],
        &[0],
    ),
    row(
        ApiKey::OffsetForLeaderEpoch,
        4,
        &[29],
        &[(Ty::Topic, "t", Op::Describe)],
        &[0],
    ),
    row(
        ApiKey::CreateTopics,
        5,
        &[29],
        &[(Ty::Topic, "new", Op::Create)],
        &[0],
    ),
    row(
        ApiKey::DeleteTopics,
        5,
        &[29],
        &[(Ty::Topic, "doomed", Op::Delete)],
        &[0],
    ),
    row(
        ApiKey::DeleteRecords,
        2,
        &[29],
        &[(Ty::Topic, "t", Op::Delete)],
        &[0],
    ),
    row(
        ApiKey::CreatePartitions,
        3,
        &[29],
        &[(Ty::Topic, "t", Op::Alter)],
        &[0],
    ),
    row(
        ApiKey::DescribeConfigs,
        4,
        &[29, 31],
        &[
            (Ty::Topic, "t", Op::DescribeConfigs),
            (Ty::Cluster, C, Op::DescribeConfigs),
        ],
        &[0, 0],
    ),
    row(
        ApiKey::AlterConfigs,
        2,
        &[29],
        &[(Ty::Topic, "t", Op::AlterConfigs)],
        &[0],
    ),
    row(
        ApiKey::IncrementalAlterConfigs,
        1,
        &[29],
        &[(Ty::Topic, "t", Op::AlterConfigs)],
        &[0],
    ),
    // Group life.
    row(
        ApiKey::FindCoordinator,
        2,
        &[30],
        &[(Ty::Group, "g", Op::Describe)],
        &[0],
    ),
    row(
        ApiKey::JoinGroup,
        5,
        &[30],
        &[(Ty::Group, "g", Op::Read)],
        &[0],
    ),
    row(
        ApiKey::SyncGroup,
        3,
        &[30],
        &[(Ty::Group, "g", Op::Read)],
        &[0],
    ),
    row(
        ApiKey::Heartbeat,
        3,
        &[30],
        &[(Ty::Group, "g", Op::Read)],
        &[0],
    ),
    row(
        ApiKey::OffsetCommit,
        8,
        &[30],
        &[(Ty::Group, "g", Op::Read), (Ty::Topic, "t", Op::Read)],
        &[0],
    ),
    row(
        ApiKey::OffsetFetch,
        7,
        &[30],
        &[(Ty::Group, "g", Op::Describe)],
        &[0],
    ),
    row(
        ApiKey::DescribeGroups,
        5,
        &[30],
        &[(Ty::Group, "g", Op::Describe)],
        &[0],
    ),
    // ListGroups filters: [error code, groups listed].
    row(
        ApiKey::ListGroups,
        4,
        &[0, 0],
        &[(Ty::Group, "g", Op::Describe)],
        &[0, 1],
    ),
    row(
        ApiKey::LeaveGroup,
        4,
        &[30],
        &[(Ty::Group, "g", Op::Read)],
        &[0],
    ),
    // OffsetDelete: [group code, partition codes...].
    row(
        ApiKey::OffsetDelete,
        0,
        &[30],
        &[(Ty::Group, "g", Op::Delete), (Ty::Topic, "t", Op::Read)],
        &[0, 0],
    ),
    row(
        ApiKey::DeleteGroups,
        2,
        &[30],
        &[(Ty::Group, "g", Op::Delete)],
        &[0],
    ),
    // Cluster and transactional ids. InitProducerId: [without a transactional id, with "tx"].
    // The transactional APIs name producer -1: once their ACLs pass, the coordinator answers
    // INVALID_PRODUCER_ID_MAPPING (49).
    row(
        ApiKey::DescribeLogDirs,
        4,
        &[31],
        &[(Ty::Cluster, C, Op::Describe)],
        &[0],
    ),
    row(
        ApiKey::InitProducerId,
        4,
        &[31, 53],
        &[
            (Ty::Cluster, C, Op::IdempotentWrite),
            (Ty::TransactionalId, "tx", Op::Write),
        ],
        &[0, 0],
    ),
    row(
        ApiKey::AddPartitionsToTxn,
        3,
        &[53],
        &[
            (Ty::TransactionalId, "tx", Op::Write),
            (Ty::Topic, "t", Op::Write),
        ],
        &[49],
    ),
    row(
        ApiKey::AddOffsetsToTxn,
        3,
        &[53],
        &[
            (Ty::TransactionalId, "tx", Op::Write),
            (Ty::Group, "g", Op::Read),
        ],
        &[49],
    ),
    row(
        ApiKey::EndTxn,
        3,
        &[53],
        &[(Ty::TransactionalId, "tx", Op::Write)],
        &[49],
    ),
    row(
        ApiKey::TxnOffsetCommit,
        3,
        &[53],
        &[
            (Ty::TransactionalId, "tx", Op::Write),
            (Ty::Group, "g", Op::Read),
            (Ty::Topic, "t", Op::Read),
        ],
        &[49],
    ),
    row(
        ApiKey::DescribeUserScramCredentials,
        0,
        &[31],
        &[(Ty::Cluster, C, Op::Describe)],
        &[0],
    ),
    row(
        ApiKey::AlterUserScramCredentials,
        0,
        &[31],
        &[(Ty::Cluster, C, Op::Alter)],
        &[0],
    ),
    row(
        ApiKey::DescribeClientQuotas,
        1,
        &[31],
        &[(Ty::Cluster, C, Op::DescribeConfigs)],
        &[0],
    ),
    row(
        ApiKey::AlterClientQuotas,
        1,
        &[31],
        &[(Ty::Cluster, C, Op::AlterConfigs)],
        &[0],
    ),
    row(
        ApiKey::DescribeAcls,
        3,
        &[31],
        &[(Ty::Cluster, C, Op::Describe)],
        &[0],
    ),
    row(
        ApiKey::CreateAcls,
        3,
        &[31],
        &[(Ty::Cluster, C, Op::Alter)],
        &[0],
    ),
    row(
        ApiKey::DeleteAcls,
        3,
        &[31],
        &[(Ty::Cluster, C, Op::Alter)],
        &[0],
    ),
];

/// What the group rows carry from one request to the next.
#[derive(Default)]
pub struct Group {
    pub member: String,
    pub generation: i32,
}

/// Sends `row`'s request on `c` and reduces the answer to the codes its row lists.
pub fn probe(c: &mut TcpStream, row: &Row, g: &mut Group) -> Vec<i16> {
    let v = row.version;
    match row.key {
        ApiKey::ApiVersions => api_versions(c, v),
        ApiKey::DescribeCluster => describe_cluster(c, v),
        ApiKey::SaslHandshake => sasl_handshake(c, v),
        ApiKey::SaslAuthenticate => sasl_authenticate(c, v),
        ApiKey::Metadata => metadata(c, v),
        ApiKey::Produce => produce(c, v),
        ApiKey::Fetch => fetch(c, v),
        ApiKey::ListOffsets => list_offsets(c, v),
        ApiKey::OffsetForLeaderEpoch => offset_for_leader_epoch(c, v),
        ApiKey::CreateTopics => create_topics(c, v),
        ApiKey::DeleteTopics => delete_topics(c, v),
        ApiKey::DeleteRecords => delete_records(c, v),
        ApiKey::CreatePartitions => create_partitions(c, v),
        ApiKey::DescribeConfigs => describe_configs(c, v),
        ApiKey::AlterConfigs => alter_configs(c, v),
        ApiKey::IncrementalAlterConfigs => incremental_alter_configs(c, v),
        ApiKey::FindCoordinator => find_coordinator(c, v),
        ApiKey::JoinGroup => join_group(c, v, g),
        ApiKey::SyncGroup => sync_group(c, v, g),
        ApiKey::Heartbeat => heartbeat(c, v, g),
        ApiKey::OffsetCommit => offset_commit(c, v, g),
        ApiKey::OffsetFetch => offset_fetch(c, v),
        ApiKey::DescribeGroups => describe_groups(c, v),
        ApiKey::ListGroups => list_groups(c, v),
        ApiKey::LeaveGroup => leave_group(c, v, g),
        ApiKey::OffsetDelete => offset_delete(c, v),
        ApiKey::DeleteGroups => delete_groups(c, v),
        ApiKey::DescribeLogDirs => describe_log_dirs(c, v),
        ApiKey::InitProducerId => init_producer_id(c, v),
        ApiKey::AddPartitionsToTxn => add_partitions_to_txn(c, v),
        ApiKey::AddOffsetsToTxn => add_offsets_to_txn(c, v),
        ApiKey::EndTxn => end_txn(c, v),
        ApiKey::TxnOffsetCommit => txn_offset_commit(c, v),
        ApiKey::DescribeUserScramCredentials => describe_scram(c, v),
        ApiKey::AlterUserScramCredentials => alter_scram(c, v),
        ApiKey::DescribeClientQuotas => describe_quotas(c, v),
        ApiKey::AlterClientQuotas => alter_quotas(c, v),
        ApiKey::DescribeAcls => describe_acls(c, v),
        ApiKey::CreateAcls => create_acls(c, v),
        ApiKey::DeleteAcls => delete_acls(c, v),
        other => panic!("no probe for {other:?}: add one with its row"),
    }
}

fn send<R: kafka_protocol::protocol::Decodable>(
    c: &mut TcpStream,
    key: ApiKey,
    v: i16,
    req: &impl kafka_protocol::protocol::Encodable,
) -> R {
    call_on(c, key, v, req).unwrap_or_else(|| panic!("{key:?} v{v}: closed without an answer"))
}

fn topic() -> TopicName {
    TopicName(sb("t"))
}

fn group() -> GroupId {
    GroupId(sb("g"))
}

fn api_versions(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut req = ApiVersionsRequest::default();
    req.client_software_name = sb("probe");
    req.client_software_version = sb("1");
    let r: ApiVersionsResponse = send(c, ApiKey::ApiVersions, v, &req);
    vec![r.error_code]
}

fn describe_cluster(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let req = DescribeClusterRequest::default();
    let r: DescribeClusterResponse = send(c, ApiKey::DescribeCluster, v, &req);
    vec![r.error_code, r.brokers.len() as i16]
}

fn sasl_handshake(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut req = SaslHandshakeRequest::default();
    req.mechanism = sb("PLAIN");
    let r: SaslHandshakeResponse = send(c, ApiKey::SaslHandshake, v, &req);
    vec![r.error_code]
}

fn sasl_authenticate(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut req = SaslAuthenticateRequest::default();
    req.auth_bytes = Bytes::from_static(b"\0alice\0x");
    let r: SaslAuthenticateResponse = send(c, ApiKey::SaslAuthenticate, v, &req);
    vec![r.error_code]
}

fn metadata(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut req = MetadataRequest::default();
    req.topics = None;
    let r: MetadataResponse = send(c, ApiKey::Metadata, v, &req);
    let mut codes: Vec<i16> = r.topics.iter().map(|t| t.error_code).collect();
    let mut named = metadata_request::MetadataRequestTopic::default();
    named.name = Some(topic());
    req.topics = Some(vec![named]);
    let r: MetadataResponse = send(c, ApiKey::Metadata, v, &req);
    codes.extend(r.topics.iter().map(|t| t.error_code));
    codes
}

fn produce(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let record = busbar_log::batch::NewRecord {
        value: Some(b"v".to_vec()),
        timestamp: 1,
        ..Default::default()
    };
    let mut p = produce_request::PartitionProduceData::default();
    p.records = Some(Bytes::from(busbar_log::batch::build(&[record])));
    let mut td = produce_request::TopicProduceData::default();
    td.name = topic();
    td.partition_data = vec![p];
    let mut req = ProduceRequest::default();
    (req.acks, req.timeout_ms, req.topic_data) = (-1, 1000, vec![td]);
    let r: ProduceResponse = send(c, ApiKey::Produce, v, &req);
    vec![r.responses[0].partition_responses[0].error_code]
}

fn fetch(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut fp = fetch_request::FetchPartition::default();
    fp.partition_max_bytes = 1 << 20;
    let mut ft = fetch_request::FetchTopic::default();
    (ft.topic, ft.partitions) = (topic(), vec![fp]);
    let mut req = FetchRequest::default();
    (req.max_bytes, req.topics) = (1 << 20, vec![ft]);
    let r: FetchResponse = send(c, ApiKey::Fetch, v, &req);
    vec![r.responses[0].partitions[0].error_code]
}

fn list_offsets(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut lp = list_offsets_request::ListOffsetsPartition::default();
    lp.timestamp = -1;
    let mut lt = list_offsets_request::ListOffsetsTopic::default();
    (lt.name, lt.partitions) = (topic(), vec![lp]);
    let mut req = ListOffsetsRequest::default();
    (req.replica_id, req.topics) = (BrokerId(-1), vec![lt]);
    let r: ListOffsetsResponse = send(c, ApiKey::ListOffsets, v, &req);
    vec![r.topics[0].partitions[0].error_code]
}

fn offset_for_leader_epoch(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut p = offset_for_leader_epoch_request::OffsetForLeaderPartition::default();
    (p.current_leader_epoch, p.leader_epoch) = (-1, 0);
    let mut t = offset_for_leader_epoch_request::OffsetForLeaderTopic::default();
    (t.topic, t.partitions) = (topic(), vec![p]);
    let mut req = OffsetForLeaderEpochRequest::default();
    (req.replica_id, req.topics) = (BrokerId(-1), vec![t]);
    let r: OffsetForLeaderEpochResponse = send(c, ApiKey::OffsetForLeaderEpoch, v, &req);
    vec![r.topics[0].partitions[0].error_code]
}

fn create_topics(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut t = create_topics_request::CreatableTopic::default();
    (t.name, t.num_partitions, t.replication_factor) = (TopicName(sb("new")), 1, 1);
    let mut req = CreateTopicsRequest::default();
    (req.topics, req.timeout_ms) = (vec![t], 5_000);
    let r: CreateTopicsResponse = send(c, ApiKey::CreateTopics, v, &req);
    vec![r.topics[0].error_code]
}

fn delete_topics(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut req = DeleteTopicsRequest::default();
    (req.topic_names, req.timeout_ms) = (vec![TopicName(sb("doomed"))], 5_000);
    let r: DeleteTopicsResponse = send(c, ApiKey::DeleteTopics, v, &req);
    vec![r.responses[0].error_code]
}

fn delete_records(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut p = delete_records_request::DeleteRecordsPartition::default();
    p.offset = -1;
    let mut t = delete_records_request::DeleteRecordsTopic::default();
    (t.name, t.partitions) = (topic(), vec![p]);
    let mut req = DeleteRecordsRequest::default();
    (req.topics, req.timeout_ms) = (vec![t], 5_000);
    let r: DeleteRecordsResponse = send(c, ApiKey::DeleteRecords, v, &req);
    vec![r.topics[0].partitions[0].error_code]
}

fn create_partitions(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut t = create_partitions_request::CreatePartitionsTopic::default();
    (t.name, t.count) = (topic(), 2);
    let mut req = CreatePartitionsRequest::default();
    (req.topics, req.timeout_ms, req.validate_only) = (vec![t], 5_000, true);
    let r: CreatePartitionsResponse = send(c, ApiKey::CreatePartitions, v, &req);
    vec![r.results[0].error_code]
}

fn describe_configs(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut t = describe_configs_request::DescribeConfigsResource::default();
    (t.resource_type, t.resource_name) = (2, sb("t"));
    let mut b = t.clone();
    (b.resource_type, b.resource_name) = (4, sb("0"));
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![t, b];
    let r: DescribeConfigsResponse = send(c, ApiKey::DescribeConfigs, v, &req);
    r.results.iter().map(|r| r.error_code).collect()
}

fn alter_configs(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut t = alter_configs_request::AlterConfigsResource::default();
    (t.resource_type, t.resource_name) = (2, sb("t"));
    let mut req = AlterConfigsRequest::default();
    (req.resources, req.validate_only) = (vec![t], true);
    let r: AlterConfigsResponse = send(c, ApiKey::AlterConfigs, v, &req);
    vec![r.responses[0].error_code]
}

fn incremental_alter_configs(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut t = incremental_alter_configs_request::AlterConfigsResource::default();
    (t.resource_type, t.resource_name) = (2, sb("t"));
    let mut req = IncrementalAlterConfigsRequest::default();
    (req.resources, req.validate_only) = (vec![t], true);
    let r: IncrementalAlterConfigsResponse = send(c, ApiKey::IncrementalAlterConfigs, v, &req);
    vec![r.responses[0].error_code]
}

fn find_coordinator(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut req = FindCoordinatorRequest::default();
    req.key = sb("g");
    let r: FindCoordinatorResponse = send(c, ApiKey::FindCoordinator, v, &req);
    vec![r.error_code]
}

/// Joins `g` (again with the member id a v4+ first join is given: MEMBER_ID_REQUIRED, 79).
fn join_group(c: &mut TcpStream, v: i16, g: &mut Group) -> Vec<i16> {
    let mut proto = join_group_request::JoinGroupRequestProtocol::default();
    proto.name = sb("range");
    let mut req = JoinGroupRequest::default();
    req.group_id = group();
    (req.session_timeout_ms, req.rebalance_timeout_ms) = (30_000, 5_000);
    (req.protocol_type, req.protocols) = (sb("consumer"), vec![proto]);
    let mut r: JoinGroupResponse = send(c, ApiKey::JoinGroup, v, &req);
    if r.error_code == 79 {
        req.member_id = r.member_id.clone();
        r = send(c, ApiKey::JoinGroup, v, &req);
    }
    (g.member, g.generation) = (r.member_id.to_string(), r.generation_id);
    vec![r.error_code]
}

fn sync_group(c: &mut TcpStream, v: i16, g: &mut Group) -> Vec<i16> {
    let mut a = sync_group_request::SyncGroupRequestAssignment::default();
    a.member_id = sb(&g.member);
    let mut req = SyncGroupRequest::default();
    (req.group_id, req.generation_id) = (group(), g.generation);
    (req.member_id, req.assignments) = (sb(&g.member), vec![a]);
    let r: SyncGroupResponse = send(c, ApiKey::SyncGroup, v, &req);
    vec![r.error_code]
}

fn heartbeat(c: &mut TcpStream, v: i16, g: &mut Group) -> Vec<i16> {
    let mut req = HeartbeatRequest::default();
    (req.group_id, req.generation_id, req.member_id) = (group(), g.generation, sb(&g.member));
    let r: HeartbeatResponse = send(c, ApiKey::Heartbeat, v, &req);
    vec![r.error_code]
}

fn offset_commit(c: &mut TcpStream, v: i16, g: &mut Group) -> Vec<i16> {
    let mut p = offset_commit_request::OffsetCommitRequestPartition::default();
    p.committed_offset = 0;
    let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
    (t.name, t.partitions) = (topic(), vec![p]);
    let mut req = OffsetCommitRequest::default();
    (req.group_id, req.generation_id_or_member_epoch) = (group(), g.generation);
    (req.member_id, req.topics) = (sb(&g.member), vec![t]);
    let r: OffsetCommitResponse = send(c, ApiKey::OffsetCommit, v, &req);
    vec![r.topics[0].partitions[0].error_code]
}

fn offset_fetch(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut req = OffsetFetchRequest::default();
    (req.group_id, req.topics) = (group(), None);
    let r: OffsetFetchResponse = send(c, ApiKey::OffsetFetch, v, &req);
    vec![r.error_code]
}

fn describe_groups(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut req = DescribeGroupsRequest::default();
    req.groups = vec![group()];
    let r: DescribeGroupsResponse = send(c, ApiKey::DescribeGroups, v, &req);
    vec![r.groups[0].error_code]
}

fn list_groups(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let r: ListGroupsResponse = send(c, ApiKey::ListGroups, v, &ListGroupsRequest::default());
    vec![r.error_code, r.groups.len() as i16]
}

fn leave_group(c: &mut TcpStream, v: i16, g: &mut Group) -> Vec<i16> {
    let mut m = leave_group_request::MemberIdentity::default();
    m.member_id = sb(&g.member);
    let mut req = LeaveGroupRequest::default();
    (req.group_id, req.members) = (group(), vec![m]);
    let r: LeaveGroupResponse = send(c, ApiKey::LeaveGroup, v, &req);
    vec![r.error_code]
}

fn offset_delete(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut t = offset_delete_request::OffsetDeleteRequestTopic::default();
    t.name = topic();
    t.partitions = vec![offset_delete_request::OffsetDeleteRequestPartition::default()];
    let mut req = OffsetDeleteRequest::default();
    (req.group_id, req.topics) = (group(), vec![t]);
    let r: OffsetDeleteResponse = send(c, ApiKey::OffsetDelete, v, &req);
    let partitions = r.topics.iter().flat_map(|t| &t.partitions);
    std::iter::once(r.error_code)
        .chain(partitions.map(|p| p.error_code))
        .collect()
}

fn delete_groups(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut req = DeleteGroupsRequest::default();
    req.groups_names = vec![group()];
    let r: DeleteGroupsResponse = send(c, ApiKey::DeleteGroups, v, &req);
    vec![r.results[0].error_code]
}

fn describe_log_dirs(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let req = DescribeLogDirsRequest::default();
    let r: DescribeLogDirsResponse = send(c, ApiKey::DescribeLogDirs, v, &req);
    vec![r.error_code]
}

fn init_producer_id(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = None; // the default is Some("")
    (
        req.transaction_timeout_ms,
        req.producer_id,
        req.producer_epoch,
    ) = (5_000, ProducerId(-1), -1);
    let idempotent: InitProducerIdResponse = send(c, ApiKey::InitProducerId, v, &req);
    req.transactional_id = Some(TransactionalId(sb("tx")));
    let transactional: InitProducerIdResponse = send(c, ApiKey::InitProducerId, v, &req);
    vec![idempotent.error_code, transactional.error_code]
}

fn txn_id() -> TransactionalId {
    TransactionalId(sb("tx"))
}

fn add_partitions_to_txn(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut req = AddPartitionsToTxnRequest::default();
    let mut t = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default();
    (t.name, t.partitions) = (topic(), vec![0]);
    req.v3_and_below_transactional_id = txn_id();
    req.v3_and_below_producer_id = ProducerId(-1);
    req.v3_and_below_topics = vec![t];
    let r: AddPartitionsToTxnResponse = send(c, ApiKey::AddPartitionsToTxn, v, &req);
    r.results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| {
            t.results_by_partition
                .iter()
                .map(|p| p.partition_error_code)
        })
        .collect()
}

fn add_offsets_to_txn(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut req = AddOffsetsToTxnRequest::default();
    (req.transactional_id, req.producer_id, req.group_id) = (txn_id(), ProducerId(-1), group());
    let r: AddOffsetsToTxnResponse = send(c, ApiKey::AddOffsetsToTxn, v, &req);
    vec![r.error_code]
}

fn end_txn(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut req = EndTxnRequest::default();
    (req.transactional_id, req.producer_id, req.committed) = (txn_id(), ProducerId(-1), true);
    let r: EndTxnResponse = send(c, ApiKey::EndTxn, v, &req);
    vec![r.error_code]
}

fn txn_offset_commit(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut p = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default();
    (p.partition_index, p.committed_offset) = (0, 1);
    let mut t = txn_offset_commit_request::TxnOffsetCommitRequestTopic::default();
    (t.name, t.partitions) = (topic(), vec![p]);
    let mut req = TxnOffsetCommitRequest::default();
    (req.transactional_id, req.group_id, req.producer_id) = (txn_id(), group(), ProducerId(-1));
    (req.generation_id, req.topics) = (-1, vec![t]);
    let r: TxnOffsetCommitResponse = send(c, ApiKey::TxnOffsetCommit, v, &req);
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

fn describe_scram(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let req = DescribeUserScramCredentialsRequest::default();
    let r: DescribeUserScramCredentialsResponse =
        send(c, ApiKey::DescribeUserScramCredentials, v, &req);
    vec![r.error_code]
}

fn alter_scram(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut u = alter_user_scram_credentials_request::ScramCredentialUpsertion::default();
    (u.name, u.mechanism, u.iterations) = (sb("carol"), 1, 4096);
    u.salt = Bytes::from_static(b"0123456789abcdef");
    u.salted_password = Bytes::from(vec![7u8; 32]);
    let mut req = AlterUserScramCredentialsRequest::default();
    req.upsertions = vec![u];
    let r: AlterUserScramCredentialsResponse = send(c, ApiKey::AlterUserScramCredentials, v, &req);
    r.results.iter().map(|r| r.error_code).collect()
}

fn describe_quotas(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut component = describe_client_quotas_request::ComponentData::default();
    (component.entity_type, component.match_type) = (sb("user"), 2); // any user
    component._match = None;
    let mut req = DescribeClientQuotasRequest::default();
    req.components = vec![component];
    let r: DescribeClientQuotasResponse = send(c, ApiKey::DescribeClientQuotas, v, &req);
    vec![r.error_code]
}

fn alter_quotas(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut entity = alter_client_quotas_request::EntityData::default();
    (entity.entity_type, entity.entity_name) = (sb("user"), Some(sb("carol")));
    let mut op = alter_client_quotas_request::OpData::default();
    (op.key, op.value) = (sb("producer_byte_rate"), 1_000_000.0);
    let mut entry = alter_client_quotas_request::EntryData::default();
    (entry.entity, entry.ops) = (vec![entity], vec![op]);
    let mut req = AlterClientQuotasRequest::default();
    (req.entries, req.validate_only) = (vec![entry], true);
    let r: AlterClientQuotasResponse = send(c, ApiKey::AlterClientQuotas, v, &req);
    r.entries.iter().map(|e| e.error_code).collect()
}

fn describe_acls(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut req = DescribeAclsRequest::default();
    (req.resource_type_filter, req.pattern_type_filter) = (1, 1);
    (req.operation, req.permission_type) = (1, 1);
    let r: DescribeAclsResponse = send(c, ApiKey::DescribeAcls, v, &req);
    vec![r.error_code]
}

fn create_acls(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut a = create_acls_request::AclCreation::default();
    (a.resource_type, a.resource_name, a.resource_pattern_type) = (2, sb("zzz"), 3);
    (a.principal, a.host) = (sb("User:carol"), sb("*"));
    (a.operation, a.permission_type) = (3, 3); // READ, ALLOW
    let mut req = CreateAclsRequest::default();
    req.creations = vec![a];
    let r: CreateAclsResponse = send(c, ApiKey::CreateAcls, v, &req);
    r.results.iter().map(|r| r.error_code).collect()
}

fn delete_acls(c: &mut TcpStream, v: i16) -> Vec<i16> {
    let mut f = delete_acls_request::DeleteAclsFilter::default();
    (f.resource_type_filter, f.resource_name_filter) = (2, Some(sb("zzz")));
    (f.pattern_type_filter, f.operation, f.permission_type) = (1, 1, 1);
    let mut req = DeleteAclsRequest::default();
    req.filters = vec![f];
    let r: DeleteAclsResponse = send(c, ApiKey::DeleteAcls, v, &req);
    r.filter_results.iter().map(|r| r.error_code).collect()
}
