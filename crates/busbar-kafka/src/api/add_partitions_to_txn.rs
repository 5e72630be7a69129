//! AddPartitionsToTxn (v0–3, one transaction per request; v4+ is Transactions V2's broker-only
//! form and is not advertised): the partitions join the producer's transaction. Needs WRITE on the
//! transactional id (53 for every partition) and on each topic (29 for that topic's partitions,
//! OPERATION_NOT_ATTEMPTED 55 for the rest, as Kafka). PRODUCER_FENCED from v2, INVALID_PRODUCER_EPOCH
//! before.

use super::{topic, Ctx};
use crate::authz::{Authz, Op, Res, TOPIC_DENIED, TXN_DENIED};
use crate::codes;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use std::collections::BTreeMap;

/// OPERATION_NOT_ATTEMPTED.
const NOT_ATTEMPTED: i16 = 55;

fn answer(codes: Vec<(String, i32, i16)>) -> AddPartitionsToTxnResponse {
    let mut by_topic: BTreeMap<String, Vec<(i32, i16)>> = BTreeMap::new();
    for (t, p, c) in codes {
        by_topic.entry(t).or_default().push((p, c));
    }
    let mut r = AddPartitionsToTxnResponse::default();
    for (name, parts) in by_topic {
        let mut tr = AddPartitionsToTxnTopicResult::default();
        tr.name = topic(name);
        for (p, c) in parts {
            let mut pr = AddPartitionsToTxnPartitionResult::default();
            pr.partition_index = p;
            pr.partition_error_code = c;
            tr.results_by_partition.push(pr);
        }
        r.results_by_topic_v3_and_below.push(tr);
    }
    r
}

pub async fn handle(ctx: &Ctx<'_>, req: AddPartitionsToTxnRequest) -> AddPartitionsToTxnResponse {
    let authz = Authz::new(ctx, "AddPartitionsToTxn");
    let id = req.v3_and_below_transactional_id.0.as_str().to_string();
    let parts: Vec<(String, i32)> = req
        .v3_and_below_topics
        .iter()
        .flat_map(|t| {
            let name = t.name.0.as_str().to_string();
            t.partitions.iter().map(move |p| (name.clone(), *p))
        })
        .collect();
    let all = |code: i16| parts.iter().map(|(t, p)| (t.clone(), *p, code)).collect();
    if authz.check(Op::Write, Res::TransactionalId, &id).is_err() {
        return answer(all(TXN_DENIED));
    }
    let denied: Vec<bool> = parts
        .iter()
        .map(|(t, _)| authz.check(Op::Write, Res::Topic, t).is_err())
        .collect();
    if denied.iter().any(|d| *d) {
        let codes = parts.iter().zip(&denied).map(|((t, p), d)| {
            let code = if *d { TOPIC_DENIED } else { NOT_ATTEMPTED };
            (t.clone(), *p, code)
        });
        return answer(codes.collect());
    }
    let pid = req.v3_and_below_producer_id.0;
    let epoch = req.v3_and_below_producer_epoch;
    match ctx
        .shared
        .broker
        .add_partitions_to_txn_via(&id, pid, epoch, parts.clone(), Some(ctx.conn))
        .await
    {
        Ok(results) => answer(
            results
                .into_iter()
                .map(|(t, p, e)| (t, p, e.map_or(0, |e| codes::of(&e))))
                .collect(),
        ),
        Err(e) => answer(all(codes::of_versioned(&e, ctx.version, 2))),
    }
}
