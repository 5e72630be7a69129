//! Fetch: READ on each topic (else TOPIC_AUTHORIZATION_FAILED, 29, for its partitions); whole
//! stored batches per partition (the one holding the offset first), long-polling until
//! `min_bytes` or `max_wait_ms`. A full response lists exactly the requested partitions. No fetch
//! sessions (session id 0 = none). Batch leader epochs are rewritten to -1 on the way out (see
//! metadata.rs).
//!
//! Limits as Kafka applies them (KIP-74, `ReplicaManager.readFromLocalLog`): partitions are read in
//! request order, each up to the smaller of its `partition_max_bytes` and what is left of
//! `max_bytes`; the first partition that has data returns at least one batch however large, and
//! after it no partition goes past its limit (a batch that does not fit is left for a later fetch;
//! clients rotate their partition order, so each gets its turn first).
//!
//! A damaged range (a batch that fails its checks on read) answers CORRUPT_MESSAGE (2), as Kafka
//! answers a corrupt read: the Java consumer raises it from `poll()` and librdkafka reports a
//! consumer error, so the application learns of it and can seek past, instead of a retriable
//! KAFKA_STORAGE_ERROR (56) that clients retry forever.
//!
//! Transactions: `isolation_level` 1 (read_committed) answers only batches below the last stable
//! offset, with the aborted transactions that overlap them (from the partition state read after
//! the last stable offset, `busbar_broker::txn`); both levels report the last stable offset, and
//! a read_committed long poll waits for it to move.
//!
//! Memory: each read of the log first reserves what it may return from the response budget
//! (`budget.rs`): as much of the request's limit as is free, waiting until at least
//! `FETCH_BYTES_LEAST` (or the whole limit, if smaller) is. The reservation is held with the answer
//! until it is written; nothing is held while a long poll waits.

use super::{topic, Ctx};
use crate::authz::{Authz, Op, Res};
use crate::budget::Held;
use crate::codes;
use busbar_broker::txn::IsolatedRead;
use busbar_broker::{BrokerError, Isolation};
use kafka_protocol::messages::fetch_response::AbortedTransaction;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::ProducerId;
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use std::time::Duration;

/// Sets every batch's partitionLeaderEpoch (bytes 12..16, outside the CRC) to -1.
fn clear_epochs(data: &mut [u8]) {
    let mut pos = 0;
    while pos + 61 <= data.len() {
        let len =
            i32::from_be_bytes([data[pos + 8], data[pos + 9], data[pos + 10], data[pos + 11]]);
        data[pos + 12..pos + 16].copy_from_slice(&(-1i32).to_be_bytes());
        pos += 12 + len.max(49) as usize;
    }
}

/// The newest `max_timestamp` of the batches in `data` (none when it holds no whole batch).
fn newest_timestamp(data: &[u8]) -> Option<i64> {
    let mut pos = 0;
    let mut newest = None;
    while pos + 61 <= data.len() {
        let h = busbar_log::batch::BatchHeader::parse(&data[pos..]).ok()?;
        newest = newest.max(Some(h.max_timestamp));
        pos += 12 + (h.batch_length.max(49) as usize);
    }
    newest
}

/// Records the age of a partition's answered records (`busbar_fetch_delivery_age_seconds`).
fn record_age(ctx: &Ctx<'_>, data: &[u8]) {
    let Some(ts) = newest_timestamp(data).filter(|ts| *ts >= 0) else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let age = &ctx.shared.broker.metrics().fetch_delivery_age;
    age.observe_seconds(now.saturating_sub(ts) as f64 / 1000.0);
}

/// Kafka's CORRUPT_MESSAGE.
const CORRUPT_MESSAGE: i16 = 2;

struct Slot {
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: i32,
    /// TOPIC_AUTHORIZATION_FAILED when the principal may not READ the topic (or, in cluster
    /// mode, the error of a copy that could not catch up): answered without reading.
    denied: Option<i16>,
    answer: Option<PartitionData>,
}

fn read_once(ctx: &Ctx<'_>, slots: &mut [Slot], total_max: usize, iso: Isolation) -> usize {
    let mut total = 0usize;
    for s in slots.iter_mut() {
        let mut pd = PartitionData::default();
        pd.partition_index = s.partition;
        pd.preferred_read_replica = kafka_protocol::messages::BrokerId(-1);
        pd.high_watermark = -1;
        pd.last_stable_offset = -1;
        pd.log_start_offset = -1;
        if let Some(code) = s.denied {
            pd.error_code = code;
            pd.records = Some(bytes::Bytes::new());
            s.answer = Some(pd);
            continue;
        }
        let broker = &ctx.shared.broker;
        // Until a partition has answered data the limits may be passed by one batch (`read_now`
        // returns at least one); after that a partition's answer must fit.
        let first = total == 0;
        let budget = (s.max_bytes.max(1) as usize)
            .min(total_max.saturating_sub(total))
            .max(usize::from(first));
        let result = if s.offset < 0 {
            Err(BrokerError::OffsetOutOfRange {
                offset: 0,
                start: 0,
                end: 0,
            })
        } else if budget == 0 {
            let (topic, index) = (&s.topic, s.partition as i64);
            broker.offsets_of(topic, index).and_then(|(l, h)| {
                let lso = broker.last_stable_offset(topic, index)?;
                Ok(IsolatedRead {
                    high_watermark: h,
                    log_start: l,
                    last_stable: lso,
                    ..Default::default()
                })
            })
        } else {
            broker
                .offsets_of(&s.topic, s.partition as i64)
                .and_then(|(l, h)| {
                    let at = s.offset as u64;
                    if at < l || at > h {
                        return Err(BrokerError::OffsetOutOfRange {
                            offset: at,
                            start: l,
                            end: h,
                        });
                    }
                    broker
                        .read_isolated(&s.topic, s.partition as i64, at, budget, iso)
                        .map(|mut r| {
                            if !first && r.data.len() > budget {
                                r.data = Vec::new();
                                r.aborted.clear();
                            }
                            r
                        })
                })
        };
        match result {
            Ok(r) => {
                let mut data = r.data;
                clear_epochs(&mut data);
                total += data.len();
                pd.high_watermark = r.high_watermark as i64;
                pd.last_stable_offset = r.last_stable as i64;
                pd.log_start_offset = r.log_start as i64;
                if iso == Isolation::ReadCommitted {
                    let aborted = r.aborted.iter().map(|a| {
                        let mut t = AbortedTransaction::default();
                        t.producer_id = ProducerId(a.producer_id);
                        t.first_offset = a.first as i64;
                        t
                    });
                    pd.aborted_transactions = Some(aborted.collect());
                }
                pd.records = Some(bytes::Bytes::from(data));
            }
            Err(e) => {
                pd.error_code = match e {
                    BrokerError::Damaged(_) => CORRUPT_MESSAGE,
                    e => codes::of(&e),
                };
                if let Ok((l, h)) = broker.offsets_of(&s.topic, s.partition as i64) {
                    pd.high_watermark = h as i64;
                    pd.log_start_offset = l as i64;
                }
                pd.records = Some(bytes::Bytes::new());
            }
        }
        s.answer = Some(pd);
    }
    total
}

/// Least of the response budget a Fetch waits for before reading (when it asks for more): under
/// pressure consumers get smaller answers instead of waiting for their whole limit.
const FETCH_BYTES_LEAST: usize = 1 << 20;

/// Reserves what a read may return and reads; the answer's total bytes and the reservation.
async fn read_reserved(
    ctx: &Ctx<'_>,
    slots: &mut [Slot],
    total_max: usize,
    iso: Isolation,
) -> (usize, Held) {
    let mut held = ctx
        .shared
        .response_bytes
        .reserve(FETCH_BYTES_LEAST, total_max)
        .await;
    let got = read_once(ctx, slots, held.bytes(), iso);
    held.resize(got);
    (got, held)
}

/// Answers a Fetch; the second value holds the answer's share of the response budget.
pub async fn handle(ctx: &Ctx<'_>, req: FetchRequest) -> (FetchResponse, Held) {
    let authz = Authz::new(ctx, "Fetch");
    let mut slots: Vec<Slot> = req
        .topics
        .iter()
        .flat_map(|t| {
            let denied = authz.check(Op::Read, Res::Topic, t.topic.0.as_str()).err();
            t.partitions.iter().map(move |p| Slot {
                topic: t.topic.0.as_str().to_string(),
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                denied,
                answer: None,
            })
        })
        .collect();
    let total_max = (req.max_bytes.max(1) as usize).min(ctx.shared.broker.config().fetch_bytes_max);
    // Kafka's isolation_level: 1 is read_committed.
    let iso = if req.isolation_level == 1 {
        Isolation::ReadCommitted
    } else {
        Isolation::ReadUncommitted
    };
    // Cluster mode: an offset past this broker's copy may be one another broker acknowledged.
    // A copy that cannot catch up answers a retriable KAFKA_STORAGE_ERROR, never
    // OFFSET_OUT_OF_RANGE for an offset that may exist.
    for s in slots
        .iter_mut()
        .filter(|s| s.denied.is_none() && s.offset >= 0)
    {
        let broker = &ctx.shared.broker;
        let (topic, partition) = (&s.topic, s.partition as i64);
        if let Err(e) = broker
            .catch_up_for_read(topic, partition, s.offset as u64)
            .await
        {
            s.denied = Some(codes::of(&e));
        }
    }
    let (mut got, mut held) = read_reserved(ctx, &mut slots, total_max, iso).await;
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64)
        .min(ctx.shared.broker.config().fetch_wait_max);
    let deadline = tokio::time::Instant::now() + wait;
    let min_bytes = req.min_bytes.max(1) as usize;
    // Under `min_bytes`: wait for appends past what each partition has now, read again, until
    // enough has arrived or `max_wait_ms` is over (Kafka's DelayedFetch).
    while got < min_bytes {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let parts: Vec<(String, i64, u64)> = slots
            .iter()
            .filter_map(|s| {
                let a = s.answer.as_ref()?;
                (a.error_code == 0 && s.offset >= 0).then(|| {
                    // What this isolation level can read up to now: wait for it to move.
                    let readable = match iso {
                        Isolation::ReadCommitted => a.last_stable_offset,
                        Isolation::ReadUncommitted => a.high_watermark,
                    };
                    let end = readable.max(s.offset) as u64;
                    (s.topic.clone(), s.partition as i64, end)
                })
            })
            .collect();
        if parts.is_empty() || left.is_zero() {
            break;
        }
        drop(held); // under `min_bytes`: little or nothing, not worth holding while waiting
        ctx.shared.broker.wait_for_data(&parts, left, iso).await;
        (got, held) = read_reserved(ctx, &mut slots, total_max, iso).await;
    }
    let mut responses: Vec<FetchableTopicResponse> = Vec::new();
    for s in slots {
        if responses
            .last()
            .is_none_or(|r| r.topic.0.as_str() != s.topic)
        {
            let mut tr = FetchableTopicResponse::default();
            tr.topic = topic(s.topic.clone());
            responses.push(tr);
        }
        let last = responses.last_mut().expect("pushed");
        let answer = s.answer.unwrap_or_default();
        if let Some(data) = &answer.records {
            record_age(ctx, data);
        }
        last.partitions.push(answer);
    }
    let mut r = FetchResponse::default();
    r.responses = responses;
    (r, held)
}
