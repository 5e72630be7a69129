//! Produce: one record batch per partition, stored as received after the checks of
//! shared/spec/reliability.md §5.1 (the log checks the header and CRC; this file checks what only
//! the Kafka path knows: acks, client base offset 0, no client control batches). acks=0 gets no
//! response. An answer is sent only once the batch is durable per the topic's sync policy.

use super::{topic, Ctx};
use crate::codes;
use busbar_log::batch::BatchHeader;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
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
    if h.producer_id >= 0 && h.base_sequence < 0 {
        return Err((
            codes::INVALID_RECORD,
            "a batch with a producer id needs a base sequence".into(),
        ));
    }
    Ok(())
}

async fn one(
    ctx: &Ctx<'_>,
    topic_name: &str,
    partition: i32,
    records: Option<bytes::Bytes>,
) -> PartitionProduceResponse {
    let mut r = PartitionProduceResponse::default();
    r.index = partition;
    r.base_offset = -1;
    r.log_append_time_ms = -1;
    r.log_start_offset = -1;
    let bytes = records.unwrap_or_default();
    if let Err((code, msg)) = check_client_batch(&bytes) {
        r.error_code = code;
        r.error_message = Some(super::sb(msg));
        return r;
    }
    match ctx
        .shared
        .broker
        .produce(topic_name, partition as i64, bytes.to_vec())
        .await
    {
        Ok(at) => {
            r.base_offset = at.base_offset as i64;
            r.log_start_offset = ctx
                .shared
                .broker
                .offsets_of(topic_name, partition as i64)
                .map_or(-1, |(s, _)| s as i64);
        }
        Err(e) => {
            let (code, msg) = codes::with_message(&e);
            r.error_code = code;
            r.error_message = msg.map(super::sb);
        }
    }
    r
}

pub async fn handle(ctx: &Ctx<'_>, req: ProduceRequest) -> Option<ProduceResponse> {
    let acks = req.acks;
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for t in req.topic_data {
        let name = t.name.0.as_str().to_string();
        let mut tr = TopicProduceResponse::default();
        tr.name = topic(name.clone());
        for p in t.partition_data {
            let pr = if (-1..=1).contains(&acks) {
                one(ctx, &name, p.index, p.records).await
            } else {
                let mut pr = PartitionProduceResponse::default();
                pr.index = p.index;
                pr.error_code = codes::INVALID_REQUIRED_ACKS;
                pr.base_offset = -1;
                pr
            };
            tr.partition_responses.push(pr);
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
