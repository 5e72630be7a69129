//! The API versions busbar advertises (shared/spec/kafka-protocol.md §2.2), and only those: a
//! request at a version outside this table is never decoded. Chosen so librdkafka 2.0.2 enables
//! every feature (Produce from 0 for compression, single-version feature checks) while staying below
//! versions whose semantics busbar does not implement (topic ids, KIP-848, transactions V2).

use kafka_protocol::messages::ApiKey;

/// (api key, min version, max version).
pub const ADVERTISED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 9),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 3),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 5),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::InitProducerId, 0, 4),
    // Transactions V1 only: AddPartitionsToTxn v4+ and EndTxn v4+ mean Transactions V2.
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
    // v0 was removed in Kafka 4.0 (KIP-896) and kafka-protocol cannot decode it.
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
];

/// Produce versions advertised only for librdkafka's compression check; the crate cannot decode
/// them, so such a request closes the connection (Kafka 4.0 behaves alike).
pub const PRODUCE_DECODABLE_MIN: i16 = 3;

/// The advertised range of `key`, if busbar serves it.
pub fn range(key: ApiKey) -> Option<(i16, i16)> {
    ADVERTISED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, lo, hi)| (*lo, *hi))
}

/// True when (key, version) is served and decodable.
pub fn serves(key: ApiKey, version: i16) -> bool {
    let min = if key == ApiKey::Produce {
        PRODUCE_DECODABLE_MIN
    } else {
        i16::MIN
    };
    range(key).is_some_and(|(lo, hi)| version >= lo.max(min) && version <= hi)
}
