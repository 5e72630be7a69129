//! DeleteGroups: groups without members, with their committed offsets.

use super::Ctx;
use crate::codes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

pub async fn handle(ctx: &Ctx<'_>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut r = DeleteGroupsResponse::default();
    for g in req.groups_names {
        let mut res = DeletableGroupResult::default();
        if let Err(e) = ctx.shared.broker.delete_group(g.0.as_str()).await {
            res.error_code = codes::of(&e);
        }
        res.group_id = g;
        r.results.push(res);
    }
    r
}
