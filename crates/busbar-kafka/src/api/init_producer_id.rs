//! InitProducerId. Without a transactional id (idempotent producers): always a new producer id at
//! epoch 0, whatever id and epoch a v3+ request names, as Kafka answers (idempotent producers bump
//! their epoch themselves, KIP-360): bumping the named id would let any client fence another
//! principal's producer by guessing its small, sequential id. With one (WRITE on the
//! TRANSACTIONAL_ID): the coordinator's producer id for it and the next epoch, fencing the
//! previous producer (`busbar_broker::txn`); a v3+ request naming a producer must name the current
//! one. PRODUCER_FENCED (90) from v4, INVALID_PRODUCER_EPOCH (47) before.

use super::Ctx;
use crate::authz::{Authz, Op, Res, CLUSTER_DENIED};
use crate::codes;
use busbar_broker::auth::acl::CLUSTER_NAME;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

pub async fn handle(ctx: &Ctx<'_>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut r = InitProducerIdResponse::default();
    r.producer_id = ProducerId(-1);
    r.producer_epoch = -1;
    let authz = Authz::new(ctx, "InitProducerId");
    if let Some(txn) = req.transactional_id.as_ref() {
        if let Err(code) = authz.check(Op::Write, Res::TransactionalId, txn) {
            r.error_code = code;
            return r;
        }
        let current = (req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
        let timeout = i64::from(req.transaction_timeout_ms);
        match ctx
            .shared
            .broker
            .init_transactional(txn.as_str(), timeout, current)
            .await
        {
            Ok((pid, epoch)) => {
                r.producer_id = ProducerId(pid);
                r.producer_epoch = epoch;
            }
            Err(e) => r.error_code = codes::of_versioned(&e, ctx.version, 4),
        }
        return r;
    }
    // Idempotence: IDEMPOTENT_WRITE on the cluster or WRITE on any topic (KIP-679).
    if !authz.quietly(Op::IdempotentWrite, Res::Cluster, CLUSTER_NAME)
        && !authz.any(Op::Write, Res::Topic)
    {
        r.error_code = CLUSTER_DENIED;
        return r;
    }
    match ctx.shared.broker.init_producer_id_shared(None).await {
        Ok((pid, epoch)) => {
            r.producer_id = ProducerId(pid);
            r.producer_epoch = epoch;
        }
        Err(e) => r.error_code = codes::of(&e),
    }
    r
}
