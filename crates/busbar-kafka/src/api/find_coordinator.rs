//! FindCoordinator: in single-node mode this broker coordinates every group (and transaction);
//! in cluster mode a group's (or transactional id's) coordinator is the live holder of its
//! lease, else the live broker rendezvous hashing prefers (`busbar_broker::shared`), and
//! COORDINATOR_NOT_AVAILABLE (15, retriable) when the cluster's store cannot say.

use super::{sb, Ctx};
use crate::authz::{Authz, Op, Res};
use busbar_broker::shared::Coordinated;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

pub async fn handle(ctx: &Ctx<'_>, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
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
    let broker = &ctx.shared.broker;
    let Some(shared) = broker.shared_log() else {
        return r;
    };
    let of = match req.key_type {
        1 => Coordinated::Txn,
        _ => Coordinated::Group,
    };
    let elsewhere = match broker.coordinator_of(of, req.key.as_str()).await {
        Ok(Some(node)) if node == shared.node_id() => return r,
        Ok(Some(node)) => shared.members().into_iter().find(|m| m.node_id == node),
        _ => None,
    };
    match elsewhere {
        Some(m) => {
            r.node_id = BrokerId(m.node_id);
            let (host, port) = m.addr(ctx.listener.place, ctx.listener.security.name());
            r.host = sb(host.to_string());
            r.port = i32::from(port);
        }
        None => {
            r.error_code = crate::api::groups::COORDINATOR_NOT_AVAILABLE;
            r.node_id = BrokerId(-1);
            r.host = sb("");
            r.port = -1;
        }
    }
    r
}
