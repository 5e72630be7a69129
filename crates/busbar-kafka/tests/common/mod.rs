//! Helpers for the raw-protocol tests: a broker with the Kafka listener on port 0 in a temporary
//! (or given) data directory, and one-call request/response over a fresh connection.

#![allow(dead_code)] // each test file uses its own subset

use busbar_broker::{Broker, BrokerConfig};
use busbar_kafka::{serve, KafkaConfig};
use busbar_log::batch::{self, NewRecord};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct Server {
    pub addr: SocketAddr,
    pub broker: Arc<Broker>,
    pub rt: tokio::runtime::Runtime,
    _dir: Option<tempfile::TempDir>,
}

/// A server in a new temporary directory with topic `t` (one partition).
pub fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start_at(dir.path().into(), BrokerConfig::default());
    s._dir = Some(dir);
    s.rt.block_on(s.broker.create_topic("t", Some(1), Default::default()))
        .unwrap();
    s
}

/// A server on the data directory `data` (kept when the server is dropped).
pub fn start_at(data: PathBuf, config: BrokerConfig) -> Server {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let broker = Arc::new(
        Broker::open(BrokerConfig {
            data_dir: data,
            ..config
        })
        .unwrap(),
    );
    let listener =
        rt.block_on(async { tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap() });
    let addr = listener.local_addr().unwrap();
    rt.spawn(serve(
        listener,
        broker.clone(),
        KafkaConfig::default(),
        std::future::pending(),
    ));
    Server {
        addr,
        broker,
        rt,
        _dir: None,
    }
}

pub fn connect(s: &Server) -> TcpStream {
    let c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

pub fn frame(key: ApiKey, version: i16, body: &impl Encodable) -> Vec<u8> {
    let mut h = RequestHeader::default();
    h.request_api_key = key as i16;
    h.request_api_version = version;
    h.correlation_id = 7;
    h.client_id = Some(StrBytes::from_static_str("fidelity-test"));
    let mut buf = BytesMut::new();
    h.encode(&mut buf, key.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    let mut out = (buf.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&buf);
    out
}

pub fn read_response(c: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    c.read_exact(&mut len).ok()?;
    let mut body = vec![0; i32::from_be_bytes(len) as usize];
    c.read_exact(&mut body).ok()?;
    Some(Bytes::from(body))
}

/// Sends one request on `c` and decodes its answer; `None` when the server closed the connection.
pub fn call_on<R: Decodable>(
    c: &mut TcpStream,
    key: ApiKey,
    version: i16,
    req: &impl Encodable,
) -> Option<R> {
    c.write_all(&frame(key, version, req)).ok()?;
    let mut resp = read_response(c)?;
    ResponseHeader::decode(&mut resp, key.response_header_version(version)).unwrap();
    Some(R::decode(&mut resp, version).unwrap())
}

/// One request on a new connection; panics when the connection is closed instead.
pub fn call<R: Decodable>(s: &Server, key: ApiKey, version: i16, req: &impl Encodable) -> R {
    call_on(&mut connect(s), key, version, req)
        .unwrap_or_else(|| panic!("{key:?} v{version}: the connection was closed, no answer"))
}

/// Stores one batch of records with these timestamps in `topic` partition 0; its base offset.
pub fn produce_at(s: &Server, topic: &str, timestamps: &[i64]) -> u64 {
    let recs: Vec<NewRecord> = timestamps
        .iter()
        .map(|ts| NewRecord {
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            headers: vec![],
            timestamp: *ts,
        })
        .collect();
    s.rt.block_on(s.broker.produce(topic, 0, batch::build(&recs)))
        .unwrap()
        .base_offset
}

pub fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Stores one batch of one record with a `value_bytes`-byte value in `topic` / `partition`; its
/// base offset.
pub fn produce_sized(s: &Server, topic: &str, partition: i64, value_bytes: usize) -> u64 {
    let rec = NewRecord {
        value: Some(vec![b'x'; value_bytes]),
        timestamp: 1,
        ..NewRecord::default()
    };
    s.rt.block_on(s.broker.produce(topic, partition, batch::build(&[rec])))
        .unwrap()
        .base_offset
}
