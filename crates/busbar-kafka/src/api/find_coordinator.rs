//! FindCoordinator: this broker coordinates every group (and would every transaction).

use super::{sb, Ctx};
use crate::authz::{Authz, Op, Res};
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

pub fn handle(ctx: &Ctx<'_>, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let mut r = FindCoordinatorResponse::default();
    // DESCRIBE on the group (key type 0) or the transactional id (1).
    let ty = if req.key_type == 1 {
        Res::TransactionalId
    } else {
        Res::Group
    };
    if let Err(code) = Authz::new(ctx, "FindCoordinator").check(Op::Describe, ty, req.key.as_str())
    {
        r.error_code = code;
        r.node_id = BrokerId(-1);
        r.host = sb("");
        r.port = -1;
        return r;
    }
    r.node_id = BrokerId(ctx.shared.config.node_id);
    r.host = sb(ctx.listener.advertised_host.clone());
    r.port = i32::from(ctx.listener.advertised_port);
    r
}
