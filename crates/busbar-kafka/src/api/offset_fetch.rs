//! OffsetFetch (v1–7, one group per request): committed offsets, -1 where none; a null topic list
//! (v2+) means every partition the group has committed.

use super::{sb, topic, Ctx};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
use std::collections::BTreeMap;

pub fn handle(ctx: &Ctx<'_>, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let group = req.group_id.0.as_str().to_string();
    let broker = &ctx.shared.broker;
    let wanted: BTreeMap<String, Vec<i32>> = match req.topics {
        Some(ts) => ts
            .into_iter()
            .map(|t| (t.name.0.as_str().to_string(), t.partition_indexes))
            .collect(),
        None => {
            let mut all: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            if let Ok(d) = broker.describe_group(&group) {
                for o in d.offsets {
                    all.entry(o.topic).or_default().push(o.partition as i32);
                }
            }
            all
        }
    };
    let mut r = OffsetFetchResponse::default();
    for (name, parts) in wanted {
        let mut tr = OffsetFetchResponseTopic::default();
        tr.name = topic(name.clone());
        for p in parts {
            let mut pr = OffsetFetchResponsePartition::default();
            pr.partition_index = p;
            pr.committed_leader_epoch = -1;
            pr.committed_offset = -1;
            pr.metadata = Some(sb(""));
            if let Some(c) = u32::try_from(p)
                .ok()
                .and_then(|p| broker.committed(&group, &name, p))
            {
                pr.committed_offset = c.offset as i64;
                pr.metadata = Some(sb(c.metadata));
            }
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    r
}
