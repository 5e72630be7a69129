//! One file per Kafka API, same shape in each: take the decoded request, call the broker, build the
//! response. `dispatch` routes a decoded request to its file.

mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod alter_client_quotas;
mod alter_user_scram_credentials;
pub mod api_versions;
pub(crate) mod audit;
mod configs;
mod create_acls;
mod create_partitions;
mod create_topics;
mod delete_acls;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_acls;
mod describe_client_quotas;
mod describe_cluster;
mod describe_groups;
mod describe_log_dirs;
mod describe_user_scram_credentials;
mod end_txn;
pub(crate) mod fetch;
mod find_coordinator;
mod groups;
mod init_producer_id;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
pub(crate) mod produce;
mod sasl_authenticate;
mod sasl_handshake;
mod txn_offset_commit;

use crate::Shared;
use kafka_protocol::messages::{RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::net::SocketAddr;

/// What a handler knows about the request besides its body.
pub struct Ctx<'a> {
    pub shared: &'a Shared,
    pub version: i16,
    pub client_id: String,
    pub peer: SocketAddr,
    /// The connection's number, in the order connections were accepted.
    pub conn: u64,
    /// The listener the client connected to (its advertised address goes into Metadata).
    pub listener: &'a crate::Listener,
    /// The authenticated user; `None` on a PLAINTEXT listener.
    pub principal: Option<&'a str>,
}

/// Owned `StrBytes` from a string.
pub fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// A `TopicName` from a string.
pub fn topic(s: impl Into<String>) -> TopicName {
    TopicName(sb(s))
}

/// A Kafka topic id from busbar's 32-hex-digit topic id.
pub fn topic_id(hex: &str) -> uuid::Uuid {
    uuid::Uuid::from_u128(u128::from_str_radix(hex, 16).unwrap_or(0))
}

/// Routes a request; `None` when no response is sent (acks=0 produce). Administrative requests
/// are audited here, from their responses (`audit.rs`).
pub async fn dispatch(ctx: &Ctx<'_>, req: RequestKind) -> Option<ResponseKind> {
    let pending = audit::Pending::of(&req);
    let resp = route(ctx, req).await;
    if let (Some(p), Some(r)) = (pending, &resp) {
        p.finish(ctx, r);
    }
    resp
}

async fn route(ctx: &Ctx<'_>, req: RequestKind) -> Option<ResponseKind> {
    Some(match req {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::handle()),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(ctx, r).await),
        RequestKind::Produce(r) => return produce::handle(ctx, r).await.map(ResponseKind::Produce),
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(ctx, r).await.0),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(ctx, r).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(ctx, r).await)
        }
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(groups::join(ctx, r).await),
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(groups::sync(ctx, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(ctx, r).await),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(groups::leave(ctx, r).await),
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(offset_commit::handle(ctx, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(offset_fetch::handle(ctx, r).await)
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(list_groups::handle(ctx, r)),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(describe_groups::handle(ctx, r))
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(delete_groups::handle(ctx, r).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(create_topics::handle(ctx, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(delete_topics::handle(ctx, r).await)
        }
        RequestKind::DescribeConfigs(r) => ResponseKind::DescribeConfigs(configs::describe(ctx, r)),
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(configs::alter(ctx, r).await),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental(ctx, r).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(create_partitions::handle(ctx, r).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::handle(ctx, r).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(ctx, r))
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(describe_log_dirs::handle(ctx, r))
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(ctx, r).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(offset_delete::handle(ctx, r).await)
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(ctx, r))
        }
        RequestKind::SaslHandshake(_) => ResponseKind::SaslHandshake(sasl_handshake::handle()),
        RequestKind::SaslAuthenticate(_) => {
            ResponseKind::SaslAuthenticate(sasl_authenticate::handle())
        }
        RequestKind::DescribeUserScramCredentials(r) => ResponseKind::DescribeUserScramCredentials(
            describe_user_scram_credentials::handle(ctx, r),
        ),
        RequestKind::AlterUserScramCredentials(r) => ResponseKind::AlterUserScramCredentials(
            alter_user_scram_credentials::handle(ctx, r).await,
        ),
        RequestKind::DescribeAcls(r) => ResponseKind::DescribeAcls(describe_acls::handle(ctx, r)),
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(create_acls::handle(ctx, r).await),
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(delete_acls::handle(ctx, r).await),
        RequestKind::DescribeClientQuotas(r) => {
            ResponseKind::DescribeClientQuotas(describe_client_quotas::handle(ctx, r))
        }
        RequestKind::AlterClientQuotas(r) => {
            ResponseKind::AlterClientQuotas(alter_client_quotas::handle(ctx, r).await)
        }
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(add_partitions_to_txn::handle(ctx, r).await)
        }
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(add_offsets_to_txn::handle(ctx, r).await)
        }
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(end_txn::handle(ctx, r).await),
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(txn_offset_commit::handle(ctx, r).await)
        }
        // `conn` only decodes advertised APIs, all of which are listed above.
        other => unreachable!("undispatched request {other:?}"),
    })
}
