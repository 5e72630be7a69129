//! OffsetDelete: removes a group's committed offsets for some partitions; a group with members is
//! refused (NON_EMPTY_GROUP), an unknown one answers GROUP_ID_NOT_FOUND.

use super::Ctx;
use crate::authz::{Authz, Op, Res};
use crate::codes;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

pub async fn handle(ctx: &Ctx<'_>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let authz = Authz::new(ctx, "OffsetDelete");
    if let Err(code) = authz.check(Op::Delete, Res::Group, req.group_id.0.as_str()) {
        let mut r = OffsetDeleteResponse::default();
        r.error_code = code;
        return r;
    }
    if let Some(code) = super::groups::not_coordinator(ctx, req.group_id.0.as_str()).await {
        let mut r = OffsetDeleteResponse::default();
        r.error_code = code;
        return r;
    }
    // READ on each topic; a denied one keeps its offsets and answers 29 per partition.
    let denied: Vec<Option<i16>> = req
        .topics
        .iter()
        .map(|t| authz.check(Op::Read, Res::Topic, t.name.0.as_str()).err())
        .collect();
    let parts: Vec<(String, u32)> = req
        .topics
        .iter()
        .zip(&denied)
        .filter(|(_, d)| d.is_none())
        .flat_map(|(t, _)| {
            t.partitions
                .iter()
                .filter(|p| p.partition_index >= 0)
                .map(move |p| (t.name.0.as_str().to_string(), p.partition_index as u32))
        })
        .collect();
    let mut r = OffsetDeleteResponse::default();
    if let Err(e) = ctx
        .shared
        .broker
        .delete_offsets(req.group_id.0.as_str(), &parts)
        .await
    {
        r.error_code = codes::of(&e);
        return r;
    }
    for (t, denied) in req.topics.into_iter().zip(denied) {
        let mut tr = OffsetDeleteResponseTopic::default();
        for p in t.partitions {
            let mut pr = OffsetDeleteResponsePartition::default();
            pr.partition_index = p.partition_index;
            pr.error_code = denied.unwrap_or(0);
            tr.partitions.push(pr);
        }
        tr.name = t.name;
        r.topics.push(tr);
    }
    r
}
