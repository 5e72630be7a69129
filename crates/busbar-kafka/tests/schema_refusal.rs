//! Produce answers for records a topic's schema settings refuse (issue 17), on the wire:
//! INVALID_RECORD (87) with the error message, and from Produce v8 `RecordErrors` naming each
//! bad record's index in its batch (KIP-467); below v8 the field does not exist and the answer
//! still encodes. A gzip batch is decompressed for the check; nothing of a refused batch is
//! stored and the same connection's next good batch is. The schema registry itself is a layer
//! above this crate: the check here is a stand-in that accepts values starting with the magic
//! byte 0 (the real registry's checks run through the binary in
//! tests/clients/schema_enforcement.py).

mod common;

use busbar_broker::schema_rules::{Part, PartRule, Refusal, SchemaChecker};
use busbar_log::batch::{self, BatchHeader, NewRecord};
use bytes::Bytes;
use common::{call_on, connect, sb, start, Server};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use std::sync::Arc;

/// Accepts payloads starting with 0.
struct MagicOnly;

impl SchemaChecker for MagicOnly {
    fn check(&self, _: &str, _: Part, _: PartRule, payload: &[u8]) -> Result<(), Refusal> {
        if payload.first() == Some(&0) {
            return Ok(());
        }
        Err(Refusal {
            reason: "unframed",
            message: "no magic byte".into(),
        })
    }
}

fn checked_topic() -> Server {
    let s = start();
    s.broker.set_schema_checker(Arc::new(MagicOnly));
    let cfg = [("value.schema.validation".to_string(), "id".to_string())].into();
    s.rt.block_on(s.broker.create_topic("s", Some(1), cfg))
        .unwrap();
    s
}

fn records(values: &[&[u8]]) -> Vec<NewRecord> {
    values
        .iter()
        .map(|v| NewRecord {
            value: Some(v.to_vec()),
            timestamp: 1,
            ..NewRecord::default()
        })
        .collect()
}

/// The same records in one gzip batch.
fn gzip_batch(values: &[&[u8]]) -> Vec<u8> {
    let plain = batch::build(&records(values));
    let mut h = BatchHeader::parse(&plain).unwrap();
    let section = busbar_broker::codec::compress(1, &plain[batch::HEADER_BYTES..]).unwrap();
    h.attributes |= 1;
    batch::assemble(&h, &section)
}

fn request(batch: Vec<u8>) -> ProduceRequest {
    let mut pd = PartitionProduceData::default();
    pd.index = 0;
    pd.records = Some(Bytes::from(batch));
    let mut td = TopicProduceData::default();
    td.name = TopicName(sb("s"));
    td.partition_data = vec![pd];
    let mut r = ProduceRequest::default();
    r.acks = -1;
    r.timeout_ms = 5000;
    r.topic_data = vec![td];
    r
}

fn stored(s: &Server) -> u64 {
    s.broker.offsets_of("s", 0).unwrap().1
}

#[test]
fn refused_records_are_named_from_v8_and_nothing_is_stored() {
    let s = checked_topic();
    let mut c = connect(&s);
    let bad = batch::build(&records(&[b"\0ok", b"bad", b"\0ok", b"also bad"]));
    let r: ProduceResponse = call_on(&mut c, ApiKey::Produce, 8, &request(bad)).unwrap();
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 87);
    assert_eq!(p.base_offset, -1);
    let listed: Vec<(i32, String)> = (p.record_errors.iter())
        .map(|e| {
            let m = e.batch_index_error_message.as_ref().unwrap();
            (e.batch_index, m.to_string())
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (1, "value: no magic byte".to_string()),
            (3, "value: no magic byte".to_string())
        ]
    );
    let message = p.error_message.as_ref().unwrap().to_string();
    assert!(
        message.starts_with("2 records refused by the schema registry, nothing stored"),
        "{message}"
    );
    assert_eq!(stored(&s), 0);
    // The same connection's next good batch is stored.
    let good = batch::build(&records(&[b"\0a", b"\0b"]));
    let r: ProduceResponse = call_on(&mut c, ApiKey::Produce, 8, &request(good)).unwrap();
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(stored(&s), 2);
}

#[test]
fn below_v8_the_answer_has_no_record_errors_and_still_encodes() {
    let s = checked_topic();
    let mut c = connect(&s);
    let bad = batch::build(&records(&[b"bad"]));
    for version in [3, 7] {
        let r: ProduceResponse =
            call_on(&mut c, ApiKey::Produce, version, &request(bad.clone())).unwrap();
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 87, "v{version}");
        assert!(p.record_errors.is_empty(), "v{version}");
    }
    assert_eq!(stored(&s), 0);
}

#[test]
fn a_compressed_batch_with_one_bad_record_is_refused_whole() {
    let s = checked_topic();
    let mut c = connect(&s);
    let bad = gzip_batch(&[b"\0a", b"\0b", b"bad", b"\0c"]);
    let r: ProduceResponse = call_on(&mut c, ApiKey::Produce, 9, &request(bad)).unwrap();
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 87);
    assert_eq!(p.record_errors.len(), 1);
    assert_eq!(p.record_errors[0].batch_index, 2);
    assert_eq!(stored(&s), 0);
    let good = gzip_batch(&[b"\0a", b"\0b"]);
    let r: ProduceResponse = call_on(&mut c, ApiKey::Produce, 9, &request(good)).unwrap();
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(stored(&s), 2);
    let failures = s.broker.schema_failures();
    assert_eq!(failures, vec![("s".to_string(), "unframed", 1)]);
}

#[test]
fn the_refusal_detail_of_one_answer_is_bounded() {
    let s = checked_topic();
    let values: Vec<&[u8]> = vec![b"x"; 100];
    let bad = batch::build(&records(&values));
    let mut req = request(bad);
    let entry = req.topic_data[0].partition_data[0].clone();
    req.topic_data[0].partition_data = vec![entry; 400];
    let r: ProduceResponse = call_on(&mut connect(&s), ApiKey::Produce, 8, &req).unwrap();
    let parts = &r.responses[0].partition_responses;
    assert_eq!(parts.len(), 400);
    assert!(parts.iter().all(|p| p.error_code == 87));
    let detail: usize = (parts.iter())
        .map(|p| {
            let listed: usize = (p.record_errors.iter())
                .map(|e| 4 + e.batch_index_error_message.as_ref().map_or(0, |m| m.len()))
                .sum();
            listed + p.error_message.as_ref().map_or(0, |m| m.len())
        })
        .sum();
    // Unbounded, 400 refusals of 100 records each would carry about 4 MB of detail.
    assert!(detail <= (1 << 20) + 400 * 400, "{detail} bytes of detail");
    assert!(
        parts[0].record_errors.len() == 100,
        "the first answers are whole"
    );
    assert!(parts[399].record_errors.is_empty(), "the last are cut");
    assert_eq!(stored(&s), 0);
}
