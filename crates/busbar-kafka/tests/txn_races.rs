//! Transactions over raw Kafka frames, where a client library cannot be made to misbehave: the
//! delayed-EndTxn race (Jepsen's finding in Kafka and Bufstream), a transactional batch naming
//! another id's producer, and the bus's reserved transactional ids.
//!
//! The delayed EndTxn is replayed as a fault proxy would deliver it: the client's first connection
//! carries the transaction and its EndTxn, which the "network" holds back; the client retries on
//! a new connection, commits, and starts the next transaction there; only then does the held
//! EndTxn arrive, on the old connection.

mod common;

use busbar_log::batch::{self, BatchHeader, NewRecord};
use bytes::Bytes;
use common::*;
use kafka_protocol::messages::*;
use std::net::TcpStream;
use std::time::Duration;

const ID: &str = "etl";

fn init(c: &mut TcpStream, id: &str) -> InitProducerIdResponse {
    let mut r = InitProducerIdRequest::default();
    r.transactional_id = Some(TransactionalId(sb(id)));
    r.transaction_timeout_ms = 60_000;
    (r.producer_id, r.producer_epoch) = (ProducerId(-1), -1);
    call_on(c, ApiKey::InitProducerId, 1, &r).expect("an answer")
}

fn add_partition(c: &mut TcpStream, pid: i64, epoch: i16) -> i16 {
    let mut t = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default();
    (t.name, t.partitions) = (TopicName(sb("t")), vec![0]);
    let mut r = AddPartitionsToTxnRequest::default();
    r.v3_and_below_transactional_id = TransactionalId(sb(ID));
    (r.v3_and_below_producer_id, r.v3_and_below_producer_epoch) = (ProducerId(pid), epoch);
    r.v3_and_below_topics = vec![t];
    let a: AddPartitionsToTxnResponse =
        call_on(c, ApiKey::AddPartitionsToTxn, 1, &r).expect("an answer");
    a.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

/// A transactional batch of one record `value` from `pid` at `epoch`, sequence `seq`.
fn txn_batch(pid: i64, epoch: i16, seq: i32, value: &str) -> Vec<u8> {
    let plain = batch::build(&[NewRecord {
        value: Some(value.as_bytes().to_vec()),
        timestamp: 1,
        ..NewRecord::default()
    }]);
    let mut h = BatchHeader::parse(&plain).unwrap();
    h.attributes |= 0x10;
    (h.producer_id, h.producer_epoch, h.base_sequence) = (pid, epoch, seq);
    batch::assemble(&h, &plain[batch::HEADER_BYTES..])
}

fn produce(c: &mut TcpStream, txn: &str, batch: Vec<u8>) -> i16 {
    let mut p = produce_request::PartitionProduceData::default();
    p.records = Some(Bytes::from(batch));
    let mut t = produce_request::TopicProduceData::default();
    (t.name, t.partition_data) = (TopicName(sb("t")), vec![p]);
    let mut r = ProduceRequest::default();
    (r.acks, r.timeout_ms, r.topic_data) = (-1, 5000, vec![t]);
    r.transactional_id = Some(TransactionalId(sb(txn)));
    let a: ProduceResponse = call_on(c, ApiKey::Produce, 7, &r).expect("an answer");
    a.responses[0].partition_responses[0].error_code
}

fn end_txn(c: &mut TcpStream, pid: i64, epoch: i16, commit: bool) -> i16 {
    let mut r = EndTxnRequest::default();
    r.transactional_id = TransactionalId(sb(ID));
    (r.producer_id, r.producer_epoch, r.committed) = (ProducerId(pid), epoch, commit);
    let a: EndTxnResponse = call_on(c, ApiKey::EndTxn, 1, &r).expect("an answer");
    a.error_code
}

/// The values a read_committed reader sees in `t`-0 (busbar's own reads are read committed).
fn committed_values(s: &Server) -> Vec<String> {
    let read = s.broker.read_events("t", 0, 0, 1000, Duration::ZERO);
    let events = s.rt.block_on(read).unwrap();
    events
        .into_iter()
        .map(|e| String::from_utf8(e.value.unwrap_or_default()).unwrap())
        .collect()
}

#[test]
fn a_delayed_end_txn_cannot_end_the_next_transaction() {
    let s = start();
    let mut old = connect(&s);
    let ip = init(&mut old, ID);
    let (pid, epoch) = (ip.producer_id.0, ip.producer_epoch);
    assert_eq!(ip.error_code, 0);
    // Transaction 1 on the first connection; its EndTxn is "held by the network".
    assert_eq!(add_partition(&mut old, pid, epoch), 0);
    assert_eq!(produce(&mut old, ID, txn_batch(pid, epoch, 0, "one")), 0);
    // The client gives up on the first connection and retries on a new one: committed.
    let mut new = connect(&s);
    assert_eq!(end_txn(&mut new, pid, epoch, true), 0);
    // Transaction 2 starts on the new connection.
    assert_eq!(add_partition(&mut new, pid, epoch), 0);
    assert_eq!(produce(&mut new, ID, txn_batch(pid, epoch, 1, "two")), 0);
    // The held EndTxn arrives at last, on the old connection: it must not commit transaction 2.
    assert_eq!(end_txn(&mut old, pid, epoch, true), 48, "INVALID_TXN_STATE");
    assert_eq!(
        committed_values(&s),
        vec!["one"],
        "transaction 2 is still open"
    );
    // Nor abort it.
    assert_eq!(end_txn(&mut old, pid, epoch, false), 48);
    // The client's own EndTxn, on the connection it uses, ends transaction 2 as it chooses.
    assert_eq!(end_txn(&mut new, pid, epoch, false), 0);
    assert_eq!(committed_values(&s), vec!["one"], "transaction 2 aborted");
    // A retry of that EndTxn on a newer connection is answered from the state.
    assert_eq!(end_txn(&mut connect(&s), pid, epoch, false), 0);
    // With no transaction open, an old connection's EndTxn is an ordinary (refused) call.
    assert_eq!(end_txn(&mut old, pid, epoch, true), 48, "nothing to commit");
}

#[test]
fn a_transactional_batch_must_come_from_its_own_ids_producer() {
    let s = start();
    let mut c = connect(&s);
    let a = init(&mut c, ID);
    let b = init(&mut c, "other");
    assert_eq!((a.error_code, b.error_code), (0, 0));
    let (pid, epoch) = (a.producer_id.0, a.producer_epoch);
    assert_eq!(add_partition(&mut c, pid, epoch), 0);
    // `other`'s request carrying `etl`'s producer id: refused, nothing stored.
    let bad = txn_batch(pid, epoch, 0, "smuggled");
    assert_eq!(produce(&mut c, "other", bad), 53);
    assert_eq!(s.broker.offsets_of("t", 0).unwrap(), (0, 0));
    assert_eq!(produce(&mut c, ID, txn_batch(pid, epoch, 0, "mine")), 0);
    assert_eq!(end_txn(&mut c, pid, epoch, true), 0);
    assert_eq!(committed_values(&s), vec!["mine"]);
}

#[test]
fn the_bus_transactional_ids_are_no_clients() {
    let s = start();
    let mut c = connect(&s);
    let r = init(&mut c, "__busbar.subscription.copy");
    assert_eq!(r.error_code, 53, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED");
    let mut r = EndTxnRequest::default();
    r.transactional_id = TransactionalId(sb("__busbar.subscription.copy"));
    let a: EndTxnResponse = call_on(&mut c, ApiKey::EndTxn, 1, &r).unwrap();
    assert_eq!(a.error_code, 53);
    // An id that only looks alike is a client's.
    assert_eq!(init(&mut c, "busbar.subscription.copy").error_code, 0);
}

/// The connection check holds within one transaction only: a standby that fenced the producer
/// of the open transaction ends its own transactions on its (older) connection.
#[test]
fn a_producer_that_fenced_another_ends_its_transactions_on_an_older_connection() {
    let s = start();
    let mut standby = connect(&s);
    // Served once before the active producer connects: numbered first (the older connection).
    assert_eq!(init(&mut standby, "other").error_code, 0);
    let mut active = connect(&s);
    let a = init(&mut active, ID);
    let (pid, old) = (a.producer_id.0, a.producer_epoch);
    assert_eq!(add_partition(&mut active, pid, old), 0);
    assert_eq!(
        produce(&mut active, ID, txn_batch(pid, old, 0, "zombie")),
        0
    );
    // The standby takes over: its InitProducerId aborts the open transaction.
    let b = init(&mut standby, ID);
    let (pid, epoch) = (b.producer_id.0, b.producer_epoch);
    assert!(epoch > old);
    assert_eq!(add_partition(&mut standby, pid, epoch), 0);
    assert_eq!(
        produce(&mut standby, ID, txn_batch(pid, epoch, 0, "standby")),
        0
    );
    assert_eq!(end_txn(&mut standby, pid, epoch, true), 0);
    assert_eq!(committed_values(&s), vec!["standby"]);
    // The fenced producer can end nothing.
    assert_eq!(
        end_txn(&mut active, pid, old, true),
        47,
        "INVALID_PRODUCER_EPOCH"
    );
}

/// A plain idempotent batch carrying the producer id of the bus's own transactions is refused:
/// its sequence numbers would be taken from under the bus.
#[test]
fn no_client_writes_with_the_bus_producer_id() {
    let s = start();
    let id = "__busbar.subscription.copy";
    s.rt.block_on(s.broker.txn_producer(id)).unwrap();
    let pid = (0..64)
        .find(|p| s.broker.transactional_id_of(*p).as_deref() == Some(id))
        .expect("the bus's producer id");
    let mut b = BatchHeader::parse(&txn_batch(pid, 0, 0, "x")).unwrap();
    b.attributes &= !0x10;
    let plain = batch::build(&[NewRecord {
        value: Some(b"x".to_vec()),
        timestamp: 1,
        ..NewRecord::default()
    }]);
    let idempotent = batch::assemble(&b, &plain[batch::HEADER_BYTES..]);
    let mut c = connect(&s);
    let mut p = produce_request::PartitionProduceData::default();
    p.records = Some(Bytes::from(idempotent));
    let mut t = produce_request::TopicProduceData::default();
    (t.name, t.partition_data) = (TopicName(sb("t")), vec![p]);
    let mut r = ProduceRequest::default();
    (r.acks, r.timeout_ms, r.topic_data) = (-1, 5000, vec![t]);
    let a: ProduceResponse = call_on(&mut c, ApiKey::Produce, 7, &r).expect("an answer");
    assert_eq!(a.responses[0].partition_responses[0].error_code, 53);
    assert_eq!(
        s.broker.offsets_of("t", 0).unwrap(),
        (0, 0),
        "nothing stored"
    );
}
