//! TxnOffsetCommit (v0–3): consumer offsets staged in the producer's transaction, visible when it
//! commits (`require_stable` readers get UNSTABLE_OFFSET_COMMIT until then) and dropped when it
//! aborts. Needs WRITE on the transactional id (53), READ on the group (30) and READ on each topic
//! (29). v3 carries the group member and generation, checked as an OffsetCommit's (KIP-447).
//! A fenced producer gets INVALID_PRODUCER_EPOCH (47).

use super::{topic, Ctx};
use crate::authz::{Authz, Op, Res};
use crate::codes;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use std::collections::BTreeMap;

fn answer(codes: Vec<(String, i32, i16)>) -> TxnOffsetCommitResponse {
    let mut by_topic: BTreeMap<String, Vec<(i32, i16)>> = BTreeMap::new();
    for (t, p, c) in codes {
        by_topic.entry(t).or_default().push((p, c));
    }
    let mut r = TxnOffsetCommitResponse::default();
    for (name, parts) in by_topic {
        let mut tr = TxnOffsetCommitResponseTopic::default();
        tr.name = topic(name);
        for (p, c) in parts {
            let mut pr = TxnOffsetCommitResponsePartition::default();
            pr.partition_index = p;
            pr.error_code = c;
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    r
}

pub async fn handle(ctx: &Ctx<'_>, req: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    let authz = Authz::new(ctx, "TxnOffsetCommit");
    let id = req.transactional_id.0.as_str();
    let group = req.group_id.0.as_str();
    let mut offsets = Vec::new();
    let mut refused = Vec::new();
    for t in &req.topics {
        let name = t.name.0.as_str().to_string();
        let denied = authz.check(Op::Read, Res::Topic, &name).err();
        for p in &t.partitions {
            match denied {
                Some(code) => refused.push((name.clone(), p.partition_index, code)),
                None => offsets.push((
                    name.clone(),
                    p.partition_index,
                    p.committed_offset,
                    p.committed_metadata
                        .as_ref()
                        .map_or(String::new(), |m| m.as_str().to_string()),
                )),
            }
        }
    }
    let all = |code: i16| {
        let parts = req.topics.iter().flat_map(|t| {
            let name = t.name.0.as_str().to_string();
            t.partitions
                .iter()
                .map(move |p| (name.clone(), p.partition_index, code))
        });
        answer(parts.collect())
    };
    let allowed = authz
        .check(Op::Write, Res::TransactionalId, id)
        .and_then(|()| authz.check(Op::Read, Res::Group, group));
    if let Err(code) = allowed {
        return all(code);
    }
    let member = (ctx.version >= 3).then_some((req.member_id.as_str(), req.generation_id));
    let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
    match ctx
        .shared
        .broker
        .txn_offset_commit(id, group, pid, epoch, member, offsets)
        .await
    {
        Ok(results) => {
            let mut codes: Vec<(String, i32, i16)> = results
                .into_iter()
                .map(|(t, p, e)| (t, p, e.map_or(0, |e| codes::of(&e))))
                .collect();
            codes.extend(refused);
            answer(codes)
        }
        Err(e) => all(codes::of_versioned(&e, ctx.version, i16::MAX)),
    }
}
