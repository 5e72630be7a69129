//! InitProducerId for idempotent producers (no transactional id): always a new producer id at
//! epoch 0, whatever id and epoch a v3+ request names, as Kafka answers (idempotent producers
//! bump their epoch themselves, KIP-360): bumping the named id would let any client fence another
//! principal's producer by guessing its small, sequential id. Transactions are not served yet, so
//! a transactional id gets INVALID_REQUEST (a retriable code would make clients retry forever).

use super::Ctx;
use crate::authz::{Authz, Op, Res, CLUSTER_DENIED};
use crate::codes;
use busbar_broker::auth::acl::CLUSTER_NAME;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

pub fn handle(ctx: &Ctx<'_>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut r = InitProducerIdResponse::default();
    r.producer_id = ProducerId(-1);
    r.producer_epoch = -1;
    let authz = Authz::new(ctx, "InitProducerId");
    if let Some(txn) = req.transactional_id.as_ref() {
        // Transactions are not served; WRITE on the id is still checked first, as Kafka does.
        r.error_code = match authz.check(Op::Write, Res::TransactionalId, txn) {
            Ok(()) => codes::INVALID_REQUEST,
            Err(code) => code,
        };
        return r;
    }
    // Idempotence: IDEMPOTENT_WRITE on the cluster or WRITE on any topic (KIP-679).
    if !authz.quietly(Op::IdempotentWrite, Res::Cluster, CLUSTER_NAME)
        && !authz.any(Op::Write, Res::Topic)
    {
        r.error_code = CLUSTER_DENIED;
        return r;
    }
    match ctx.shared.broker.init_producer_id(None) {
        Ok((pid, epoch)) => {
            r.producer_id = ProducerId(pid);
            r.producer_epoch = epoch;
        }
        Err(e) => r.error_code = codes::of(&e),
    }
    r
}
