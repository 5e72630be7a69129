//! One client connection: frames (int32 length + header + body), version checks before decoding,
//! one request at a time (as Kafka does: responses in request order), idle timeout, and clean
//! close on anything unparseable. A declared length is never allocated up front: the body buffer
//! grows only as bytes arrive, so a lying length costs nothing.

use crate::api;
use crate::versions;
use crate::Shared;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseHeader};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Encodable};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Bytes read at a time while a frame's body arrives.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Why a connection ends early (for logs only).
#[derive(Debug)]
enum Close {
    Eof,
    Idle,
    Io,
    Bad(String),
}

/// A frame and its share of `request_bytes_max`, held until its answer is written.
type Frame = (Bytes, tokio::sync::OwnedSemaphorePermit);

async fn read_frame(
    sock: &mut tokio::net::tcp::OwnedReadHalf,
    shared: &Shared,
) -> Result<Frame, Close> {
    let mut len = [0u8; 4];
    match tokio::time::timeout(shared.config.idle_timeout, sock.read_exact(&mut len)).await {
        Err(_) => return Err(Close::Idle),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(Close::Eof),
        Ok(Err(_)) => return Err(Close::Io),
        Ok(Ok(_)) => {}
    }
    let declared = i32::from_be_bytes(len);
    let size = usize::try_from(declared)
        .map_err(|_| Close::Bad(format!("negative frame length {declared}")))?;
    let most = shared
        .config
        .frame_bytes_max
        .min(shared.config.request_bytes_max);
    if size > most || size < 8 {
        return Err(Close::Bad(format!(
            "frame length {size} outside [8, {most}]"
        )));
    }
    // Wait (reading nothing more from this socket) until the frame fits in the request budget.
    let permit = shared
        .request_bytes
        .clone()
        .acquire_many_owned(size as u32)
        .await
        .map_err(|_| Close::Io)?;
    let mut body = Vec::with_capacity(size.min(READ_CHUNK_BYTES));
    while body.len() < size {
        let want = (size - body.len()).min(READ_CHUNK_BYTES);
        let start = body.len();
        body.resize(start + want, 0);
        let read = tokio::time::timeout(
            shared.config.idle_timeout,
            sock.read_exact(&mut body[start..]),
        )
        .await;
        match read {
            Err(_) => return Err(Close::Idle),
            Ok(Err(_)) => return Err(Close::Io),
            Ok(Ok(_)) => {}
        }
    }
    Ok((Bytes::from(body), permit))
}

fn encode_response(
    correlation_id: i32,
    version: i16,
    resp: &kafka_protocol::messages::ResponseKind,
) -> Result<Vec<u8>, Close> {
    let mut buf = BytesMut::with_capacity(256);
    buf.extend_from_slice(&[0; 4]);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header
        .encode(&mut buf, resp.header_version(version))
        .map_err(|e| Close::Bad(format!("encode header: {e}")))?;
    resp.encode(&mut buf, version)
        .map_err(|e| Close::Bad(format!("encode response: {e}")))?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.to_vec())
}

/// Decodes one request frame (without its length prefix) of an API and version busbar serves.
/// Errors say what was wrong; nothing here panics or allocates more than the input warrants
/// (apart from kafka-protocol's array pre-allocation, see `crates/busbar-kafka/src/alloc.rs`).
pub fn decode_request(
    key: ApiKey,
    version: i16,
    frame: Bytes,
) -> Result<(kafka_protocol::messages::RequestHeader, RequestKind), String> {
    if !versions::serves(key, version) {
        return Err(format!("{key:?} v{version} is not served"));
    }
    let mut buf = frame;
    let header =
        decode_request_header_from_buffer(&mut buf).map_err(|e| format!("request header: {e}"))?;
    let req = RequestKind::decode(key, &mut buf, version)
        .map_err(|e| format!("{key:?} v{version} body: {e}"))?;
    Ok((header, req))
}

/// Decodes a frame as the server would: the API key and version from its first four bytes.
pub fn decode_frame(frame: Bytes) -> Result<RequestKind, String> {
    if frame.len() < 4 {
        return Err("frame shorter than a request header".into());
    }
    let key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let key = ApiKey::try_from(key_raw).map_err(|_| format!("unknown api key {key_raw}"))?;
    decode_request(key, version, frame).map(|(_, r)| r)
}

/// What a frame needs: an answer known at once (KIP-511 fallback) or a decoded request.
enum Decoded {
    Answer(Vec<u8>),
    Request(Box<(kafka_protocol::messages::RequestHeader, i16, RequestKind)>),
}

/// Decodes one frame; an error closes the connection.
fn decode(frame: Bytes) -> Result<Decoded, Close> {
    if frame.len() < 4 {
        return Err(Close::Bad("frame shorter than a request header".into()));
    }
    let key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let key =
        ApiKey::try_from(key_raw).map_err(|_| Close::Bad(format!("unknown api key {key_raw}")))?;
    if key == ApiKey::ApiVersions && !versions::serves(key, version) {
        // KIP-511: answer in the v0 layout with UNSUPPORTED_VERSION and our ranges, so the client
        // can retry with a version we speak.
        if frame.len() < 8 {
            return Err(Close::Bad("truncated ApiVersions header".into()));
        }
        let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let resp = api::api_versions::unsupported();
        return encode_response(correlation_id, 0, &resp).map(Decoded::Answer);
    }
    let (header, req) = decode_request(key, version, frame).map_err(Close::Bad)?;
    Ok(Decoded::Request(Box::new((header, version, req))))
}

/// A response to write, `None` when none is due (acks=0 produce).
type Reply = Result<Option<Vec<u8>>, Close>;

/// Most produce requests of one connection whose durability is awaited at once. librdkafka with
/// `linger.ms=0` and 1,024 messages unacknowledged keeps about 30-50 small requests in flight;
/// at 16 the rest waited in the socket and W1 ran at 420 k msg/s, at 64 about 650 k (256 was no
/// better). Memory stays bounded by `kafka.request_bytes_max`.
const PIPELINE_MAX: usize = 64;

async fn write(wr: &mut OwnedWriteHalf, reply: Reply, peer: SocketAddr) -> bool {
    match reply {
        Ok(Some(bytes)) => wr.write_all(&bytes).await.is_ok(),
        Ok(None) => true,
        Err(e) => {
            log_close(peer, e);
            false
        }
    }
}

/// Writes every pending response in order; false when the connection must close.
async fn drain(
    pending: &mut VecDeque<JoinHandle<Reply>>,
    wr: &mut OwnedWriteHalf,
    peer: SocketAddr,
) -> bool {
    while let Some(h) = pending.pop_front() {
        let reply = h
            .await
            .unwrap_or_else(|e| Err(Close::Bad(format!("request task: {e}"))));
        if !write(wr, reply, peer).await {
            return false;
        }
    }
    true
}

/// Serves one connection until it closes, fails, idles out, or the server stops.
///
/// Requests are answered in the order they arrive. Produce requests are pipelined: each one's
/// batches are written in arrival order (so a producer's batches keep their order and idempotent
/// sequences hold), and the connection reads and writes the next ones while earlier ones wait for
/// their fsync, so one fsync covers several requests. Any other request waits until every earlier
/// one is answered, then runs alone (as Kafka handles a connection's requests one at a time).
pub async fn run(
    sock: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let (mut rd, mut wr) = sock.into_split();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Frame, Close>>(PIPELINE_MAX);
    let reader_shared = shared.clone();
    let reader = tokio::spawn(async move {
        loop {
            let f = read_frame(&mut rd, &reader_shared).await;
            let end = f.is_err();
            if tx.send(f).await.is_err() || end {
                return;
            }
        }
    });
    serve_frames(&mut rx, &mut wr, peer, &shared, &mut stop).await;
    reader.abort();
}

async fn serve_frames(
    rx: &mut tokio::sync::mpsc::Receiver<Result<Frame, Close>>,
    wr: &mut OwnedWriteHalf,
    peer: SocketAddr,
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
) {
    let mut pending: VecDeque<JoinHandle<Reply>> = VecDeque::new();
    loop {
        let next = tokio::select! {
            biased;
            done = async { pending.front_mut().expect("checked").await }, if !pending.is_empty() => {
                pending.pop_front();
                let reply = done.unwrap_or_else(|e| Err(Close::Bad(format!("request task: {e}"))));
                if !write(wr, reply, peer).await {
                    return;
                }
                continue;
            }
            _ = async { let _ = stop.wait_for(|s| *s).await; }, if pending.is_empty() => return,
            f = rx.recv(), if pending.len() < PIPELINE_MAX => f,
        };
        let Some(Ok((frame, permit))) = next else {
            // The reader stopped: answer what is pending, then close.
            drain(&mut pending, wr, peer).await;
            if let Some(Err(e)) = next {
                log_close(peer, e);
            }
            return;
        };
        let (header, version, req) = match decode(frame) {
            Ok(Decoded::Request(b)) => *b,
            Ok(Decoded::Answer(bytes)) => {
                if !drain(&mut pending, wr, peer).await || !write(wr, Ok(Some(bytes)), peer).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                drain(&mut pending, wr, peer).await;
                log_close(peer, e);
                return;
            }
        };
        let ctx = api::Ctx {
            shared,
            version,
            client_id: header
                .client_id
                .as_ref()
                .map(|c| c.as_str().to_string())
                .unwrap_or_default(),
            peer,
        };
        let id = header.correlation_id;
        if let RequestKind::Produce(r) = req {
            let durable = api::produce::start(&ctx, r).await;
            pending.push_back(tokio::spawn(async move {
                let _held = permit;
                match durable.await {
                    Some(resp) => encode_response(
                        id,
                        version,
                        &kafka_protocol::messages::ResponseKind::Produce(resp),
                    )
                    .map(Some),
                    None => Ok(None),
                }
            }));
            continue;
        }
        if !drain(&mut pending, wr, peer).await {
            return;
        }
        let reply = match api::dispatch(&ctx, req).await {
            Some(resp) => encode_response(id, version, &resp).map(Some),
            None => Ok(None),
        };
        drop(permit);
        if !write(wr, reply, peer).await {
            return;
        }
    }
}

fn log_close(peer: SocketAddr, why: Close) {
    if let Close::Bad(why) = why {
        eprintln!("busbar-kafka: closing connection from {peer}: {why}");
    }
}
