//! AddOffsetsToTxn (v0–3): the group's offsets join the producer's transaction. Needs WRITE on the
//! transactional id (53) and READ on the group (30). PRODUCER_FENCED from v2, INVALID_PRODUCER_EPOCH
//! before.

use super::Ctx;
use crate::authz::{Authz, Op, Res};
use crate::codes;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

pub async fn handle(ctx: &Ctx<'_>, req: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let mut r = AddOffsetsToTxnResponse::default();
    let authz = Authz::new(ctx, "AddOffsetsToTxn");
    let id = req.transactional_id.0.as_str();
    let group = req.group_id.0.as_str();
    let allowed = authz
        .check(Op::Write, Res::TransactionalId, id)
        .and_then(|()| authz.check(Op::Read, Res::Group, group));
    if let Err(code) = allowed {
        r.error_code = code;
        return r;
    }
    let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
    if let Err(e) = ctx
        .shared
        .broker
        .add_offsets_to_txn_via(id, pid, epoch, group, Some(ctx.conn))
        .await
    {
        r.error_code = codes::of_versioned(&e, ctx.version, 2);
    }
    r
}
