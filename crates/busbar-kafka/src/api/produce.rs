//! Produce: one record batch per partition, stored as received after the checks of
//! shared/spec/reliability.md §5.1 (the log checks the header and CRC; this file checks what only
//! the Kafka path knows: acks, client base offset 0, no client control batches). Needs WRITE on
//! each topic (29) and, for a transactional producer, on its transactional id (53). acks=0 gets no
//! response. An answer is sent only once the batch is durable per the topic's sync policy.

use super::{topic, Ctx};
use crate::authz::{self, Authz, Op, Res};
use crate::codes;
use busbar_log::batch::BatchHeader;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

fn check_client_batch(bytes: &[u8]) -> Result<(), (i16, String)> {
    let h = BatchHeader::parse(bytes).map_err(|e| (codes::INVALID_RECORD, e.to_string()))?;
    if h.base_offset != 0 {
        return Err((
            codes::INVALID_RECORD,
            format!("producers must send base offset 0, not {}", h.base_offset),
        ));
    }
    if h.is_control() {
        return Err((
            codes::INVALID_RECORD,
            "clients may not send control batches".into(),
        ));
    }
    if h.is_transactional() && h.producer_id < 0 {
        return Err((
            codes::INVALID_RECORD,
            "a transactional batch needs a producer id".into(),
        ));
    }
    if h.producer_id >= 0 && h.base_sequence < 0 {
        return Err((
            codes::INVALID_RECORD,
            "a batch with a producer id needs a base sequence".into(),
        ));
    }
    Ok(())
}

/// A transactional batch's producer id must belong to the request's transactional id (the one
/// whose WRITE was checked): else a principal allowed to write the topic could put batches into
/// another principal's transaction by naming its (small, sequential) producer id.
/// No Kafka client may write with the producer id of busbar's own transactions (the bus's
/// exactly-once deliveries, `busbar_broker::txn::producer`), transactional or not: an
/// idempotent batch would take sequence numbers that producer counts on.
/// In cluster mode the owner of a transactional batch's producer id is asked of the shared store
/// when this broker does not coordinate it.
async fn owns(ctx: &Ctx<'_>, bytes: &[u8], txn: Option<&str>) -> Result<(), (i16, String)> {
    let Ok(h) = BatchHeader::parse(bytes) else {
        return Ok(());
    };
    if h.producer_id < 0 {
        return Ok(());
    }
    let broker = &ctx.shared.broker;
    let owner = if h.is_transactional() {
        broker
            .txn_owner(h.producer_id)
            .await
            .map_err(|e| (codes::of(&e), e.to_string()))?
    } else {
        broker.transactional_id_of(h.producer_id)
    };
    if owner
        .as_deref()
        .is_some_and(busbar_broker::txn::producer::reserved)
    {
        return Err((
            authz::TXN_DENIED,
            format!("producer id {} belongs to busbar itself", h.producer_id),
        ));
    }
    if !busbar_broker::txn::marker::is_transactional(&h) {
        return Ok(());
    }
    match owner {
        Some(owner) if Some(owner.as_str()) != txn => Err((
            authz::TXN_DENIED,
            format!(
                "producer id {} belongs to another transactional id than the request's",
                h.producer_id
            ),
        )),
        _ => Ok(()),
    }
}

/// A partition's response so far, its write awaiting durability (none when refused), and the
/// size of its batch as sent (for `busbar_produce_bytes_total`).
type Started = (
    PartitionProduceResponse,
    Option<busbar_broker::PendingAppend>,
    u64,
);

/// Phase one of a partition: checks and writes its batch (answering at once when refused).
async fn start_one(
    ctx: &Ctx<'_>,
    topic_name: &str,
    partition: i32,
    records: Option<bytes::Bytes>,
    txn: Option<&str>,
    detail: &mut usize,
) -> Started {
    let mut r = PartitionProduceResponse::default();
    r.index = partition;
    r.base_offset = -1;
    r.log_append_time_ms = -1;
    r.log_start_offset = -1;
    let bytes = records.unwrap_or_default();
    let size = bytes.len() as u64;
    let checked = match check_client_batch(&bytes) {
        Ok(()) => owns(ctx, &bytes, txn).await,
        Err(e) => Err(e),
    };
    if let Err((code, msg)) = checked {
        r.error_code = code;
        r.error_message = Some(super::sb(msg));
        return (r, None, size);
    }
    let started = ctx
        .shared
        .broker
        .produce_start(topic_name, partition as i64, bytes.to_vec())
        .await;
    match started {
        Ok(pending) => (r, Some(pending), size),
        Err(e) => {
            fail(&mut r, &e);
            if ctx.version >= 8 {
                r.record_errors = record_errors(&e);
            }
            bound_detail(&mut r, detail);
            (r, None, size)
        }
    }
}

/// Most bytes of error messages and record errors one produce answer carries; past it a
/// partition's answer keeps only the start of its message (a request listing many partitions of
/// bad records would otherwise get an answer many times its own size).
pub const REFUSAL_DETAIL_BYTES_MAX: usize = 1 << 20;

/// Charges `r`'s message and record errors to the request's `left` budget, cutting them once it
/// is spent.
fn bound_detail(r: &mut PartitionProduceResponse, left: &mut usize) {
    let listed: usize = (r.record_errors.iter())
        .map(|e| 4 + e.batch_index_error_message.as_ref().map_or(0, |m| m.len()))
        .sum();
    let message = r.error_message.as_ref().map_or(0, |m| m.len());
    if listed + message <= *left {
        *left -= listed + message;
        return;
    }
    r.record_errors.clear();
    if let Some(m) = &r.error_message {
        let cut = busbar_broker::schema_rules::clip(m, 200);
        r.error_message = Some(super::sb(format!(
            "{cut} (details left out: this answer reached {REFUSAL_DETAIL_BYTES_MAX} bytes of them)"
        )));
    }
    *left = left.saturating_sub(r.error_message.as_ref().map_or(0, |m| m.len()));
}

/// The bad records a schema refusal names (KIP-467 `RecordErrors`, Produce v8+): each record's
/// index in its batch and why.
fn record_errors(e: &busbar_broker::BrokerError) -> Vec<BatchIndexAndErrorMessage> {
    let busbar_broker::BrokerError::SchemaRefused { records, .. } = e else {
        return Vec::new();
    };
    (records.iter())
        .map(|(index, why)| {
            let mut b = BatchIndexAndErrorMessage::default();
            b.batch_index = i32::try_from(*index).unwrap_or(i32::MAX);
            b.batch_index_error_message = Some(super::sb(why.clone()));
            b
        })
        .collect()
}

/// A partition's answer refused before writing.
fn refused(partition: i32, code: i16) -> PartitionProduceResponse {
    let mut pr = PartitionProduceResponse::default();
    pr.index = partition;
    pr.error_code = code;
    pr.base_offset = -1;
    pr.log_append_time_ms = -1;
    pr.log_start_offset = -1;
    pr
}

fn fail(r: &mut PartitionProduceResponse, e: &busbar_broker::BrokerError) {
    let (code, msg) = codes::with_message(e);
    r.error_code = code;
    r.error_message = msg.map(super::sb);
}

/// The response once every written batch is durable (phase two). The partitions' fsyncs were
/// started by their writes and run together; awaiting them in turn costs no extra time.
async fn finish(
    broker: std::sync::Arc<busbar_broker::Broker>,
    acks: i16,
    started: Vec<(String, Vec<Started>)>,
) -> Option<ProduceResponse> {
    let mut responses = Vec::with_capacity(started.len());
    for (name, parts) in started {
        let mut tr = TopicProduceResponse::default();
        tr.name = topic(name.clone());
        // A topic that does not exist is counted under "": its name is the client's to choose.
        let label = if broker.has_topic(&name) {
            &name[..]
        } else {
            ""
        };
        for (mut r, pending, size) in parts {
            let mut events = 0;
            if let Some(pending) = pending {
                let stored = !pending.is_duplicate();
                match pending.durable().await {
                    Ok(at) => {
                        if stored {
                            events = at.last_offset - at.base_offset + 1;
                        }
                        r.base_offset = at.base_offset as i64;
                        r.log_start_offset = broker
                            .offsets_of(&name, r.index as i64)
                            .map_or(-1, |(s, _)| s as i64);
                    }
                    Err(e) => fail(&mut r, &e),
                }
            }
            let outcome = codes::name(r.error_code);
            let size = if events == 0 { 0 } else { size };
            (broker.metrics()).produced(label, "kafka", &outcome, events, size);
            tr.partition_responses.push(r);
        }
        responses.push(tr);
    }
    if acks == 0 {
        return None;
    }
    let mut r = ProduceResponse::default();
    r.responses = responses;
    Some(r)
}

/// Phase one of a request: every batch checked and written, in order. Answers phase two: a future
/// of the response once they are durable, which the connection may await while it reads and
/// starts its next produce requests.
pub async fn start(
    ctx: &Ctx<'_>,
    req: ProduceRequest,
) -> impl std::future::Future<Output = Option<ProduceResponse>> + Send + 'static {
    let acks = req.acks;
    let authz = Authz::new(ctx, "Produce");
    let txn = req.transactional_id.as_ref().filter(|t| !t.is_empty());
    let txn_denied = txn.is_some_and(|t| !authz.allows(Op::Write, Res::TransactionalId, t));
    let mut started = Vec::with_capacity(req.topic_data.len());
    let mut detail = REFUSAL_DETAIL_BYTES_MAX;
    for t in req.topic_data {
        let name = t.name.0.as_str().to_string();
        let denied = if txn_denied {
            Some(authz::TXN_DENIED)
        } else {
            authz.check(Op::Write, Res::Topic, &name).err()
        };
        let mut parts = Vec::with_capacity(t.partition_data.len());
        for p in t.partition_data {
            let size = p.records.as_ref().map_or(0, |r| r.len() as u64);
            if let Some(code) = denied {
                parts.push((refused(p.index, code), None, size));
            } else if (-1..=1).contains(&acks) {
                let txn = txn.map(|t| t.as_str());
                parts.push(start_one(ctx, &name, p.index, p.records, txn, &mut detail).await);
            } else {
                parts.push((refused(p.index, codes::INVALID_REQUIRED_ACKS), None, size));
            }
        }
        started.push((name, parts));
    }
    finish(ctx.shared.broker.clone(), acks, started)
}

/// A whole request: both phases, one after the other.
pub async fn handle(ctx: &Ctx<'_>, req: ProduceRequest) -> Option<ProduceResponse> {
    start(ctx, req).await.await
}
