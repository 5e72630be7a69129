//! FindCoordinator: this broker coordinates every group (and would every transaction).

use super::{sb, Ctx};
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

pub fn handle(ctx: &Ctx<'_>, _req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let mut r = FindCoordinatorResponse::default();
    r.node_id = BrokerId(ctx.shared.config.node_id);
    r.host = sb(ctx.listener.advertised_host.clone());
    r.port = i32::from(ctx.listener.advertised_port);
    r
}
