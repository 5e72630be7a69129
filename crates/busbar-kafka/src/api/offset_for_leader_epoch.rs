//! OffsetForLeaderEpoch (v2–4): busbar reports leader epoch -1 everywhere (one node, no leader
//! changes), so the end offset of any epoch a client asks about is the current high watermark.

use super::{topic, Ctx};
use crate::authz::{Authz, Op, Res};
use crate::codes;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

pub fn handle(ctx: &Ctx<'_>, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let mut r = OffsetForLeaderEpochResponse::default();
    let authz = Authz::new(ctx, "OffsetForLeaderEpoch");
    for t in req.topics {
        let name = t.topic.0.as_str().to_string();
        let denied = authz.check(Op::Describe, Res::Topic, &name).err();
        let mut tr = OffsetForLeaderTopicResult::default();
        tr.topic = topic(name.clone());
        for p in t.partitions {
            let mut e = EpochEndOffset::default();
            e.partition = p.partition;
            e.leader_epoch = -1;
            e.end_offset = -1;
            if let Some(code) = denied {
                e.error_code = code;
                tr.partitions.push(e);
                continue;
            }
            match ctx.shared.broker.offsets_of(&name, p.partition as i64) {
                Ok((_, hw)) => {
                    e.leader_epoch = p.leader_epoch;
                    e.end_offset = hw as i64;
                }
                Err(err) => e.error_code = codes::of(&err),
            }
            tr.partitions.push(e);
        }
        r.topics.push(tr);
    }
    r
}
