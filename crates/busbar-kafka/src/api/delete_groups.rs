//! DeleteGroups: groups without members, with their committed offsets.

use super::Ctx;
use crate::authz::{Authz, Op, Res};
use crate::codes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

pub async fn handle(ctx: &Ctx<'_>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut r = DeleteGroupsResponse::default();
    let authz = Authz::new(ctx, "DeleteGroups");
    for g in req.groups_names {
        let mut res = DeletableGroupResult::default();
        if let Err(code) = authz.check(Op::Delete, Res::Group, g.0.as_str()) {
            res.error_code = code;
        } else if let Err(e) = ctx.shared.broker.delete_group(g.0.as_str()).await {
            res.error_code = codes::of(&e);
        }
        res.group_id = g;
        r.results.push(res);
    }
    r
}
