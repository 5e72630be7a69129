//! The Kafka-protocol client `busbar bench` drives busbar with: one TCP connection, requests
//! pipelined up to a window, responses matched in order (Kafka answers a connection's requests in
//! the order sent). Only what the bench needs: CreateTopics, Metadata, Produce (acks -1/1/0) and
//! Fetch, encoded with the `kafka-protocol` crate.

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse,
    MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::collections::VecDeque;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub const PRODUCE_VERSION: i16 = 8;
pub const FETCH_VERSION: i16 = 11;
const METADATA_VERSION: i16 = 9;
const CREATE_TOPICS_VERSION: i16 = 4;

/// The writing half: encodes and sends requests.
pub struct Sender {
    w: Box<dyn AsyncWrite + Unpin + Send>,
    next_id: i32,
    buf: BytesMut,
}

/// The reading half: reads response frames in order.
pub struct Receiver {
    r: Box<dyn AsyncRead + Unpin + Send>,
}

/// Connects to `addr`: over TLS with `--tls`, authenticated first with `--sasl`
/// (`super::secure`).
pub async fn connect(addr: &str) -> Result<(Sender, Receiver)> {
    let s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to busbar's Kafka listener at {addr}"))?;
    s.set_nodelay(true)?;
    let security = super::secure::get();
    let (r, w): (
        Box<dyn AsyncRead + Unpin + Send>,
        Box<dyn AsyncWrite + Unpin + Send>,
    ) = match security.and_then(|s| s.tls.clone()) {
        None => {
            let (r, w) = s.into_split();
            (Box::new(r), Box::new(w))
        }
        Some(config) => {
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string();
            let name = rustls::pki_types::ServerName::try_from(host)
                .map_err(|e| anyhow!("--kafka {addr}: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, s)
                .await
                .with_context(|| format!("TLS handshake with {addr}"))?;
            let (r, w) = tokio::io::split(tls);
            (Box::new(r), Box::new(w))
        }
    };
    let mut sender = Sender {
        w,
        next_id: 1,
        buf: BytesMut::with_capacity(1 << 16),
    };
    let mut receiver = Receiver { r };
    if let Some(sasl) = security.and_then(|s| s.sasl.as_ref()) {
        super::secure::authenticate(&mut sender, &mut receiver, sasl).await?;
    }
    Ok((sender, receiver))
}

impl Sender {
    /// Sends one request; answers its correlation id.
    pub async fn send(&mut self, key: ApiKey, version: i16, body: &impl Encodable) -> Result<i32> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let mut h = RequestHeader::default();
        h.request_api_key = key as i16;
        h.request_api_version = version;
        h.correlation_id = id;
        h.client_id = Some(StrBytes::from_static_str("busbar-bench"));
        self.buf.clear();
        self.buf.extend_from_slice(&[0; 4]);
        h.encode(&mut self.buf, key.request_header_version(version))?;
        body.encode(&mut self.buf, version)?;
        let len = (self.buf.len() - 4) as i32;
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        self.w.write_all(&self.buf).await?;
        self.w.flush().await?;
        Ok(id)
    }
}

impl Receiver {
    /// Reads the next response of `key`; checks its correlation id.
    pub async fn recv<T: Decodable>(&mut self, key: ApiKey, version: i16, id: i32) -> Result<T> {
        let mut len = [0u8; 4];
        self.r
            .read_exact(&mut len)
            .await
            .context("busbar closed the connection")?;
        let mut body = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
        self.r.read_exact(&mut body).await?;
        let mut b = Bytes::from(body);
        let h = ResponseHeader::decode(&mut b, key.response_header_version(version))?;
        if h.correlation_id != id {
            bail!("response {} arrived for request {id}", h.correlation_id);
        }
        T::decode(&mut b, version).map_err(|e| anyhow!("decode {key:?} response: {e}"))
    }
}

/// One request/response exchange on a fresh pair.
async fn call<T: Decodable>(
    addr: &str,
    key: ApiKey,
    version: i16,
    body: &impl Encodable,
) -> Result<T> {
    let (mut s, mut r) = connect(addr).await?;
    let id = s.send(key, version, body).await?;
    r.recv(key, version, id).await
}

/// Creates `topic` with `partitions` and `configs` (an existing topic is fine, and keeps its
/// configs: said on stderr when some were asked for); answers its partition count.
pub async fn ensure_topic(
    addr: &str,
    topic: &str,
    partitions: i32,
    configs: &[(String, String)],
) -> Result<i32> {
    let mut t = CreatableTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.num_partitions = partitions;
    t.replication_factor = 1;
    t.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut c = CreatableTopicConfig::default();
            c.name = StrBytes::from_string(k.clone());
            c.value = Some(StrBytes::from_string(v.clone()));
            c
        })
        .collect();
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 10_000;
    let resp: CreateTopicsResponse =
        call(addr, ApiKey::CreateTopics, CREATE_TOPICS_VERSION, &req).await?;
    let (code, why) = resp.topics.first().map_or((0, None), |t| {
        (
            t.error_code,
            t.error_message.as_ref().map(|m| m.to_string()),
        )
    });
    if code == 36 && !configs.is_empty() {
        eprintln!("topic {topic:?} exists: --topic-config not applied, it keeps its own configs");
    }
    if code != 0 && code != 36 {
        let why = why.map_or_else(String::new, |m| format!(": {m}"));
        bail!("creating topic {topic:?} failed with Kafka error {code}{why}");
    }
    let mut m = MetadataRequest::default();
    let mut mt = kafka_protocol::messages::metadata_request::MetadataRequestTopic::default();
    mt.name = Some(TopicName(StrBytes::from_string(topic.to_string())));
    m.topics = Some(vec![mt]);
    let resp: MetadataResponse = call(addr, ApiKey::Metadata, METADATA_VERSION, &m).await?;
    let n = resp.topics.first().map_or(0, |t| t.partitions.len());
    if n == 0 {
        bail!("topic {topic:?} has no partitions");
    }
    Ok(n as i32)
}

/// A Produce request of one batch to one partition.
pub fn produce(topic: &str, partition: i32, acks: i16, batch: Bytes) -> ProduceRequest {
    let mut pd = PartitionProduceData::default();
    pd.index = partition;
    pd.records = Some(batch);
    let mut td = TopicProduceData::default();
    td.name = TopicName(StrBytes::from_string(topic.to_string()));
    td.partition_data = vec![pd];
    let mut r = ProduceRequest::default();
    r.acks = acks;
    r.timeout_ms = 30_000;
    r.topic_data = vec![td];
    r
}

/// The error code and base offset of a one-partition Produce response.
pub fn produce_result(r: &ProduceResponse) -> (i16, i64) {
    r.responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .map_or((-1, -1), |p| (p.error_code, p.base_offset))
}

/// Most characters of a server's error message the bench repeats (a refusal can list every
/// record of a batch).
const ERROR_MESSAGE_CHARS_MAX: usize = 300;

/// The error message of a one-partition Produce response, as `": <message>"` (or nothing), cut
/// at [`ERROR_MESSAGE_CHARS_MAX`] characters.
pub fn produce_error(r: &ProduceResponse) -> String {
    let Some(m) = (r.responses.first())
        .and_then(|t| t.partition_responses.first())
        .and_then(|p| p.error_message.as_ref())
    else {
        return String::new();
    };
    let cut: String = m.chars().take(ERROR_MESSAGE_CHARS_MAX).collect();
    let more = if cut.len() < m.len() { " ..." } else { "" };
    format!(": {cut}{more}")
}

/// A Fetch request for `positions` ((partition, offset)) of `topic`.
pub fn fetch(topic: &str, positions: &[(i32, i64)], max_wait_ms: i32) -> FetchRequest {
    let mut t = FetchTopic::default();
    t.topic = TopicName(StrBytes::from_string(topic.to_string()));
    t.partitions = positions
        .iter()
        .map(|(p, o)| {
            let mut fp = FetchPartition::default();
            fp.partition = *p;
            fp.fetch_offset = *o;
            fp.partition_max_bytes = 4 << 20;
            fp
        })
        .collect();
    let mut r = FetchRequest::default();
    r.replica_id = kafka_protocol::messages::BrokerId(-1);
    r.max_wait_ms = max_wait_ms;
    r.min_bytes = 1;
    r.max_bytes = 16 << 20;
    r.isolation_level = 0;
    r.topics = vec![t];
    r
}

/// (partition, records data) of every partition in a Fetch response, or the first error.
pub fn fetched(r: &FetchResponse) -> Result<Vec<(i32, Bytes)>> {
    let mut out = Vec::new();
    for t in &r.responses {
        for p in &t.partitions {
            if p.error_code != 0 {
                bail!(
                    "fetch of partition {} failed with Kafka error {}",
                    p.partition_index,
                    p.error_code
                );
            }
            if let Some(data) = p.records.as_ref().filter(|d| !d.is_empty()) {
                out.push((p.partition_index, data.clone()));
            }
        }
    }
    Ok(out)
}

/// Correlation ids of requests sent and not yet answered, oldest first, with what each carried.
pub type Window<T> = VecDeque<(i32, T)>;
