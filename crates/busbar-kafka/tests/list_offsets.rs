//! ListOffsets answers only records readers can see: the largest timestamp (-3) and the first
//! record at or after a time, when DeleteRecords cut a batch (compressed or not) or compaction
//! removed the record that set a batch's maximum timestamp.

mod common;

use common::*;
use kafka_protocol::messages::*;

fn max_ts(s: &Server, topic: &str) -> (i16, i64, i64) {
    let mut p = list_offsets_request::ListOffsetsPartition::default();
    p.partition_index = 0;
    p.current_leader_epoch = -1;
    p.timestamp = -3;
    let mut t = list_offsets_request::ListOffsetsTopic::default();
    t.name = TopicName(sb(topic));
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    req.topics = vec![t];
    let r: ListOffsetsResponse = call(s, ApiKey::ListOffsets, 7, &req);
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

/// Offsets 0-1 in one batch stamped [1000, 10], offset 2 stamped 500; DeleteRecords to 1 removes
/// the 1000. The largest timestamp readers can see is 500 at offset 2.
#[test]
fn max_timestamp_ignores_a_batch_maximum_below_the_log_start() {
    let s = start();
    produce_at(&s, "t", &[1000, 10]); // offsets 0, 1
    produce_at(&s, "t", &[500]); // offset 2
    s.rt.block_on(s.broker.delete_records("t", 0, Some(1)))
        .unwrap();
    assert_eq!(max_ts(&s, "t"), (0, 2, 500));
}

fn by_time(s: &Server, topic: &str, ts: i64) -> (i16, i64, i64) {
    let mut p = list_offsets_request::ListOffsetsPartition::default();
    p.partition_index = 0;
    p.current_leader_epoch = -1;
    p.timestamp = ts;
    let mut t = list_offsets_request::ListOffsetsTopic::default();
    t.name = TopicName(sb(topic));
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    req.topics = vec![t];
    let r: ListOffsetsResponse = call(s, ApiKey::ListOffsets, 7, &req);
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

/// A compressed batch [1000, 10] (offsets 0-1) cut by DeleteRecords to 1, then offset 2 stamped
/// 500: the first record at or after 500 that readers can see is offset 2.
#[test]
fn time_lookup_passes_a_compressed_batch_whose_match_is_below_the_log_start() {
    use busbar_log::batch::{assemble, BatchHeader, NewRecord};
    let s = start();
    let recs: Vec<NewRecord> = [1000, 10]
        .iter()
        .map(|ts| NewRecord {
            value: Some(b"v".to_vec()),
            timestamp: *ts,
            ..NewRecord::default()
        })
        .collect();
    let plain = busbar_log::batch::build(&recs);
    let h = BatchHeader::parse(&plain).unwrap();
    let zipped = busbar_broker::codec::compress(1, &plain[61..]).unwrap();
    let batch = assemble(&BatchHeader { attributes: 1, ..h }, &zipped);
    s.rt.block_on(s.broker.produce("t", 0, batch)).unwrap(); // offsets 0, 1
    produce_at(&s, "t", &[500]); // offset 2
    s.rt.block_on(s.broker.delete_records("t", 0, Some(1)))
        .unwrap();
    assert_eq!(by_time(&s, "t", 500), (0, 2, 500));
    // Resets and replays by time use the same lookup.
    assert_eq!(s.broker.offset_for_timestamp("t", 0, 500).unwrap(), 2);
}

/// A compacted topic: batch A [k1@1000, k2@10] (offsets 0-1), then k1@500 (offset 2) supersedes
/// A's k1. After compaction A keeps only k2@10 (its header still says max 1000); the largest
/// timestamp left is 500 at offset 2.
#[test]
fn max_timestamp_after_compaction_removed_the_batchs_maximum() {
    use busbar_log::batch::{build, NewRecord};
    let s = start();
    let configs = [("cleanup.policy", "compact"), ("segment.bytes", "1024")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s.rt.block_on(s.broker.create_topic("c", Some(1), configs))
        .unwrap();
    let rec = |k: &str, ts: i64, n: usize| NewRecord {
        key: Some(k.as_bytes().to_vec()),
        value: Some(vec![b'v'; n]),
        timestamp: ts,
        ..NewRecord::default()
    };
    let put = |recs: &[NewRecord]| {
        s.rt.block_on(s.broker.produce("c", 0, build(recs)))
            .unwrap()
    };
    put(&[rec("k1", 1000, 8), rec("k2", 10, 8)]); // offsets 0, 1
    put(&[rec("k1", 500, 8)]); // offset 2
    for i in 0..40 {
        put(&[rec(&format!("f{i}"), 1, 200)]); // roll a few segments
    }
    for _ in 0..3 {
        assert!(s.broker.maintain().is_empty());
    }
    let head =
        s.rt.block_on(async { s.broker.read_now("c", 0, 0, 1) })
            .unwrap();
    let first = busbar_log::batch::BatchHeader::parse(&head).unwrap();
    assert_eq!(
        first.record_count, 1,
        "compaction removed k1@1000 from batch A"
    );
    assert_eq!(max_ts(&s, "c"), (0, 2, 500));
}
