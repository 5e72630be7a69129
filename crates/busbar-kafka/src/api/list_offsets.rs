//! ListOffsets: -1 latest (high watermark), -2 earliest (log start), otherwise the first offset
//! whose timestamp is at or after the given one (-1 when there is none).

use super::{topic, Ctx};
use crate::codes;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

pub fn handle(ctx: &Ctx<'_>, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let broker = &ctx.shared.broker;
    let mut r = ListOffsetsResponse::default();
    for t in req.topics {
        let name = t.name.0.as_str().to_string();
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = topic(name.clone());
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.leader_epoch = -1;
            pr.timestamp = -1;
            pr.offset = -1;
            let answer =
                broker
                    .offsets_of(&name, p.partition_index as i64)
                    .and_then(|(start, hw)| match p.timestamp {
                        -1 => Ok(Some(hw)),
                        -2 => Ok(Some(start)),
                        ts if ts >= 0 => broker
                            .offset_for_timestamp(&name, p.partition_index as i64, ts)
                            .map(|o| (o < hw).then_some(o)),
                        _ => Ok(None),
                    });
            match answer {
                Ok(Some(o)) => {
                    pr.offset = o as i64;
                    if p.timestamp >= 0 {
                        pr.timestamp = p.timestamp;
                    }
                }
                Ok(None) if p.timestamp >= 0 || p.timestamp == -3 => {}
                Ok(None) => pr.error_code = codes::INVALID_REQUEST,
                Err(e) => pr.error_code = codes::of(&e),
            }
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    r
}
