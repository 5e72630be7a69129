//! EndTxn (v0–3; v4+ belongs to Transactions V2 and is not advertised): commits or aborts the
//! producer's transaction, answering once every marker is durable and the transaction's offsets are
//! committed. Needs WRITE on the transactional id (53). PRODUCER_FENCED from v2,
//! INVALID_PRODUCER_EPOCH before. An EndTxn on a connection older than the one the open
//! transaction was added from is a delayed request of an earlier transaction: INVALID_TXN_STATE
//! (`busbar_broker` `end_txn_via`).

use super::Ctx;
use crate::authz::{Authz, Op, Res};
use crate::codes;
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

pub async fn handle(ctx: &Ctx<'_>, req: EndTxnRequest) -> EndTxnResponse {
    let mut r = EndTxnResponse::default();
    r.producer_id = ProducerId(-1);
    r.producer_epoch = -1;
    let id = req.transactional_id.0.as_str();
    if let Err(code) = Authz::new(ctx, "EndTxn").check(Op::Write, Res::TransactionalId, id) {
        r.error_code = code;
        return r;
    }
    let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
    if let Err(e) = ctx
        .shared
        .broker
        .end_txn_via(id, pid, epoch, req.committed, Some(ctx.conn))
        .await
    {
        r.error_code = codes::of_versioned(&e, ctx.version, 2);
    }
    r
}
