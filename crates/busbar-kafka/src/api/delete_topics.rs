//! DeleteTopics (by name, v1–5).

use super::{sb, Ctx};
use crate::authz::{Authz, Op, Res};
use crate::codes;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};

pub async fn handle(ctx: &Ctx<'_>, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut r = DeleteTopicsResponse::default();
    let authz = Authz::new(ctx, "DeleteTopics");
    for name in req.topic_names {
        let mut res = DeletableTopicResult::default();
        if let Err(code) = authz.check(Op::Delete, Res::Topic, name.0.as_str()) {
            res.error_code = code;
        } else if let Err(e) = ctx.shared.broker.delete_topic(name.0.as_str()).await {
            res.error_code = codes::of(&e);
            res.error_message = Some(sb(e.to_string()));
        }
        res.name = Some(name);
        r.responses.push(res);
    }
    r
}
