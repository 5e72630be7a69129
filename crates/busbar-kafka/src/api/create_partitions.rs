//! CreatePartitions: grows a topic to `count` partitions (replica assignments are meaningless on
//! one node and must be absent or name this node).

use super::{sb, Ctx};
use crate::authz::{Authz, Op, Res};
use crate::codes;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

pub async fn handle(ctx: &Ctx<'_>, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let broker = &ctx.shared.broker;
    let mut r = CreatePartitionsResponse::default();
    let authz = Authz::new(ctx, "CreatePartitions");
    for t in req.topics {
        let name = t.name.0.as_str().to_string();
        let mut res = CreatePartitionsTopicResult::default();
        if let Err(code) = authz.check(Op::Alter, Res::Topic, &name) {
            res.error_code = code;
            res.name = t.name;
            r.results.push(res);
            continue;
        }
        let outcome = match broker.describe_topic(&name) {
            Err(e) => Err(e),
            Ok(d) if i64::from(t.count) <= d.partitions.len() as i64 => {
                Err(busbar_broker::BrokerError::InvalidPartitions(format!(
                    "topic {name:?} has {} partitions; the count can only grow",
                    d.partitions.len()
                )))
            }
            Ok(_) if req.validate_only => Ok(()),
            Ok(_) => broker
                .add_partitions(&name, i64::from(t.count))
                .await
                .map(|_| ()),
        };
        if let Err(e) = outcome {
            (res.error_code, res.error_message) = (codes::of(&e), Some(sb(e.to_string())));
        }
        res.name = t.name;
        r.results.push(res);
    }
    r
}
