//! ListOffsets (v1–9): -1 latest (high watermark), -2 earliest (log start), -3 the record with the
//! largest timestamp (v7), -4 earliest local (v8: the log start, all data is local), -5 latest
//! tiered (v9: -1, nothing is tiered), otherwise the first record whose timestamp is at or after
//! the given one. A found record is answered with its own offset and timestamp; none found is
//! offset -1, timestamp -1, as in Kafka. At `isolation_level` 1 (read_committed, v2+) latest is the
//! last stable offset.

use super::{topic, Ctx};
use crate::authz::{Authz, Op, Res};
use crate::codes;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// (offset, timestamp) for one partition; `Ok(None)` is an invalid query.
fn lookup(
    ctx: &Ctx<'_>,
    name: &str,
    partition: i64,
    ts: i64,
    committed: bool,
) -> busbar_broker::Result<Option<(i64, i64)>> {
    let broker = &ctx.shared.broker;
    let (start, hw) = broker.offsets_of(name, partition)?;
    let found = |f: Option<(u64, i64)>| f.map_or((-1, -1), |(o, t)| (o as i64, t));
    Ok(Some(match ts {
        LATEST if committed => (broker.last_stable_offset(name, partition)? as i64, -1),
        LATEST => (hw as i64, -1),
        EARLIEST | EARLIEST_LOCAL => (start as i64, -1),
        MAX_TIMESTAMP => found(broker.max_timestamp(name, partition)?),
        LATEST_TIERED => (-1, -1),
        ts if ts >= 0 => found(broker.find_timestamp(name, partition, ts)?),
        _ => return Ok(None),
    }))
}

pub async fn handle(ctx: &Ctx<'_>, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut r = ListOffsetsResponse::default();
    let authz = Authz::new(ctx, "ListOffsets");
    for t in req.topics {
        let name = t.name.0.as_str().to_string();
        let denied = authz.check(Op::Describe, Res::Topic, &name).err();
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = topic(name.clone());
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.leader_epoch = -1;
            pr.timestamp = -1;
            pr.offset = -1;
            if let Some(code) = denied {
                pr.error_code = code;
                tr.partitions.push(pr);
                continue;
            }
            let committed = req.isolation_level == 1;
            // Cluster mode: the answer is the cluster's (a copy caught up on read is first).
            let broker = &ctx.shared.broker;
            broker.prepare_read(&name, p.partition_index as i64).await;
            match lookup(ctx, &name, p.partition_index as i64, p.timestamp, committed) {
                Ok(Some((offset, timestamp))) => (pr.offset, pr.timestamp) = (offset, timestamp),
                Ok(None) => pr.error_code = codes::INVALID_REQUEST,
                Err(e) => pr.error_code = codes::of(&e),
            }
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    r
}
