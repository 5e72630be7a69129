//! OffsetFetch (v1–7, one group per request): committed offsets as the clients committed them
//! (negative ones included, as Kafka keeps them), -1 where none; a null topic list (v2+) means
//! every partition the group has committed. With `require_stable` (v7), a partition with
//! transactional offsets not yet committed or aborted answers UNSTABLE_OFFSET_COMMIT (88, the
//! client retries).

use super::{sb, topic, Ctx};
use crate::authz::{Authz, Op, Res};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
use std::collections::BTreeMap;

/// Kafka's UNSTABLE_OFFSET_COMMIT (retriable).
const UNSTABLE_OFFSET_COMMIT: i16 = 88;

/// GROUP_AUTHORIZATION_FAILED: at the top (v2+) and for each partition asked (v1 has no
/// top-level code).
fn group_denied(req: OffsetFetchRequest, code: i16) -> OffsetFetchResponse {
    let mut r = OffsetFetchResponse::default();
    r.error_code = code;
    for t in req.topics.unwrap_or_default() {
        let mut tr = OffsetFetchResponseTopic::default();
        for p in t.partition_indexes {
            let mut pr = OffsetFetchResponsePartition::default();
            pr.partition_index = p;
            pr.committed_leader_epoch = -1;
            pr.committed_offset = -1;
            pr.metadata = Some(sb(""));
            pr.error_code = code;
            tr.partitions.push(pr);
        }
        tr.name = t.name;
        r.topics.push(tr);
    }
    r
}

pub async fn handle(ctx: &Ctx<'_>, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let group = req.group_id.0.as_str().to_string();
    let broker = &ctx.shared.broker;
    let authz = Authz::new(ctx, "OffsetFetch");
    if let Err(code) = authz.check(Op::Describe, Res::Group, &group) {
        return group_denied(req, code);
    }
    if let Some(code) = super::groups::not_coordinator(ctx, &group).await {
        return group_denied(req, code);
    }
    let wanted: BTreeMap<String, Vec<i32>> = match req.topics {
        Some(ts) => ts
            .into_iter()
            .map(|t| (t.name.0.as_str().to_string(), t.partition_indexes))
            .collect(),
        None => {
            let mut all: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            // Every committed partition of the topics the principal may DESCRIBE.
            for (topic, partition, _, _) in broker.committed_raw_all(&group) {
                if authz.quietly(Op::Describe, Res::Topic, &topic) {
                    all.entry(topic).or_default().push(partition as i32);
                }
            }
            all
        }
    };
    // `None`: the cluster's store could not say, so every partition answers unstable
    // (retriable) rather than an offset a transaction may be about to move.
    let pending = if req.require_stable {
        broker.unstable_offsets(&group).await.ok()
    } else {
        Some(Vec::new())
    };
    let mut r = OffsetFetchResponse::default();
    for (name, parts) in wanted {
        let mut tr = OffsetFetchResponseTopic::default();
        tr.name = topic(name.clone());
        let denied = authz.check(Op::Describe, Res::Topic, &name).err();
        for p in parts {
            let mut pr = OffsetFetchResponsePartition::default();
            pr.partition_index = p;
            pr.committed_leader_epoch = -1;
            pr.committed_offset = -1;
            pr.metadata = Some(sb(""));
            if let Some(code) = denied {
                pr.error_code = code;
                tr.partitions.push(pr);
                continue;
            }
            let unstable = pending.as_ref().is_none_or(|pending| {
                pending
                    .iter()
                    .any(|(t, q)| *t == name && i64::from(*q) == i64::from(p))
            });
            if unstable {
                pr.error_code = UNSTABLE_OFFSET_COMMIT;
                tr.partitions.push(pr);
                continue;
            }
            if let Some((offset, metadata)) = u32::try_from(p)
                .ok()
                .and_then(|p| broker.committed_raw(&group, &name, p))
            {
                pr.committed_offset = offset;
                pr.metadata = Some(sb(metadata));
            }
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    r
}
