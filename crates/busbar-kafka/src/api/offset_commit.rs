//! OffsetCommit: durable commits for the current generation's members, or "simple" commits
//! (generation -1) to a group without members. All partitions of a request share one outcome.
//! Any offset is stored as sent, negative ones included: Kafka does, and kafkajs commits -1 / -2
//! when it resets a position (OFFSET_OUT_OF_RANGE recovery, `admin.resetOffsets`).

use super::{topic, Ctx};
use crate::authz::{Authz, Op, Res};
use crate::codes;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

pub async fn handle(ctx: &Ctx<'_>, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let mut commits = Vec::new();
    let mut bad: Vec<(String, i32, i16)> = Vec::new();
    let authz = Authz::new(ctx, "OffsetCommit");
    let group_denied = if req.group_id.is_empty() {
        None
    } else {
        authz
            .check(Op::Read, Res::Group, req.group_id.0.as_str())
            .err()
    };
    let group_denied = match group_denied {
        None => super::groups::not_coordinator(ctx, req.group_id.0.as_str()).await,
        denied => denied,
    };
    for t in &req.topics {
        let name = t.name.0.as_str().to_string();
        let topic_denied = match group_denied {
            Some(_) => None,
            None => authz.check(Op::Read, Res::Topic, &name).err(),
        };
        for p in &t.partitions {
            if let Some(code) = topic_denied {
                bad.push((name.clone(), p.partition_index, code));
                continue;
            }
            if p.partition_index < 0 {
                bad.push((name.clone(), p.partition_index, codes::INVALID_REQUEST));
                continue;
            }
            if let Err(e) = ctx
                .shared
                .broker
                .offsets_of(&name, p.partition_index as i64)
            {
                bad.push((name.clone(), p.partition_index, codes::of(&e)));
                continue;
            }
            let metadata_len = p.committed_metadata.as_ref().map_or(0, |m| m.len());
            if metadata_len > ctx.shared.broker.config().offset_metadata_bytes_max {
                bad.push((name.clone(), p.partition_index, 12)); // OFFSET_METADATA_TOO_LARGE
                continue;
            }
            commits.push((
                name.clone(),
                p.partition_index as u32,
                p.committed_offset,
                p.committed_metadata
                    .as_ref()
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_default(),
            ));
        }
    }
    // Kafka still takes commits for the empty group id (for pre-0.9 clients); busbar keeps no
    // offsets for it and answers INVALID_GROUP_ID, which clients report by name.
    let outcome = if req.group_id.is_empty() {
        super::groups::INVALID_GROUP_ID
    } else if let Some(code) = group_denied {
        code
    } else if super::groups::fenced(
        ctx,
        req.group_id.0.as_str(),
        req.group_instance_id.as_deref(),
        req.member_id.as_str(),
    ) {
        super::groups::FENCED_INSTANCE_ID
    } else {
        ctx.shared
            .broker
            .commit_raw_offsets(
                req.group_id.0.as_str(),
                req.member_id.as_str(),
                req.generation_id_or_member_epoch,
                commits,
            )
            .await
            .map_err(|e| {
                super::groups::code_for(
                    ctx,
                    &e,
                    req.group_id.0.as_str(),
                    req.group_instance_id.as_deref(),
                    req.member_id.as_str(),
                )
            })
            .err()
            .unwrap_or(codes::NONE)
    };
    let mut r = OffsetCommitResponse::default();
    for t in req.topics {
        let name = t.name.0.as_str().to_string();
        let mut tr = OffsetCommitResponseTopic::default();
        tr.name = topic(name.clone());
        for p in t.partitions {
            let mut pr = OffsetCommitResponsePartition::default();
            pr.partition_index = p.partition_index;
            pr.error_code = group_denied.unwrap_or_else(|| {
                bad.iter()
                    .find(|(n, i, _)| *n == name && *i == p.partition_index)
                    .map_or(outcome, |b| b.2)
            });
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    r
}
