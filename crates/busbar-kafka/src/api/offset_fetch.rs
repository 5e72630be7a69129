//! OffsetFetch (v1–7, one group per request): committed offsets as the clients committed them
//! (negative ones included, as Kafka keeps them), -1 where none; a null topic list (v2+) means
//! every partition the group has committed.

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
            for (topic, partition, _, _) in broker.committed_raw_all(&group) {
                all.entry(topic).or_default().push(partition as i32);
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
