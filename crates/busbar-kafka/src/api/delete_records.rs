//! DeleteRecords: raises partitions' log start offsets (-1: up to the high watermark).

use super::Ctx;
use crate::authz::{Authz, Op, Res};
use crate::codes;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

pub async fn handle(ctx: &Ctx<'_>, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let broker = &ctx.shared.broker;
    let mut r = DeleteRecordsResponse::default();
    let authz = Authz::new(ctx, "DeleteRecords");
    for t in req.topics {
        let name = t.name.0.as_str().to_string();
        let mut tr = DeleteRecordsTopicResult::default();
        let denied = authz.check(Op::Delete, Res::Topic, &name).err();
        for p in t.partitions {
            let mut pr = DeleteRecordsPartitionResult::default();
            pr.partition_index = p.partition_index;
            pr.low_watermark = -1;
            if let Some(code) = denied {
                pr.error_code = code;
                tr.partitions.push(pr);
                continue;
            }
            // -1: the high watermark (in cluster mode the shared store's, read with the move).
            let target = match p.offset {
                -1 => Ok(None),
                o if o >= 0 => Ok(Some(o as u64)),
                o => Err(busbar_broker::BrokerError::OffsetOutOfRange {
                    offset: o.unsigned_abs(),
                    start: 0,
                    end: 0,
                }),
            };
            match async {
                broker
                    .delete_records(&name, p.partition_index as i64, target?)
                    .await
            }
            .await
            {
                Ok(low) => pr.low_watermark = low as i64,
                Err(e) => pr.error_code = codes::of(&e),
            }
            tr.partitions.push(pr);
        }
        tr.name = t.name;
        r.topics.push(tr);
    }
    r
}
