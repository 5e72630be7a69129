//! InitProducerId for idempotent producers (no transactional id): a new producer id at epoch 0, or,
//! from v3 (KIP-360), the caller's id with the next epoch. Transactions are not served yet, so a
//! transactional id gets INVALID_REQUEST (a retriable code would make clients retry forever).

use super::Ctx;
use crate::codes;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

pub fn handle(ctx: &Ctx<'_>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut r = InitProducerIdResponse::default();
    r.producer_id = ProducerId(-1);
    r.producer_epoch = -1;
    if req.transactional_id.is_some() {
        r.error_code = codes::INVALID_REQUEST;
        return r;
    }
    let current = (ctx.version >= 3 && req.producer_id.0 >= 0)
        .then_some((req.producer_id.0, req.producer_epoch));
    match ctx.shared.broker.init_producer_id(current) {
        Ok((pid, epoch)) => {
            r.producer_id = ProducerId(pid);
            r.producer_epoch = epoch;
        }
        Err(e) => r.error_code = codes::of(&e),
    }
    r
}
