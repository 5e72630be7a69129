//! One client connection: frames (int32 length + header + body), version checks before decoding,
//! requests answered in arrival order, and clean close on anything unparseable.
//!
//! Bounds, so a hostile or broken client costs its own connection and nothing else:
//! - A declared length is never allocated or reserved up front. The body buffer grows in steps
//!   (4 KiB, doubling, at most 1 MiB) as bytes arrive, each step reserved from the request budget
//!   before it is filled (`budget.rs` explains why this cannot deadlock). A frame that declares
//!   100 MiB and sends nothing holds 4 KiB.
//! - Once a frame's length has arrived, the whole frame must arrive within `read_timeout` (waiting
//!   for budget included), and no silence within it may exceed `idle_timeout`, or the connection is
//!   closed and its bytes returned: a stalled or trickling request holds budget for a bounded time.
//!   (Kafka clients abandon a request after `request.timeout.ms`, 30 s by default, so a request
//!   slower than the default `read_timeout` of 30 s has no one waiting for its answer.)
//! - Every response is counted in the response budget until written (`budget.rs`); a Fetch reserves
//!   before it reads the log. A response not fully written within `write_timeout` closes the
//!   connection, which frees its request and response bytes: a client that does not read cannot pin
//!   memory. Responses are encoded once into a buffer sized in advance (Fetch) and written from it.

use crate::api;
use crate::budget;
use crate::quota;
use crate::sasl;
use crate::versions;
use crate::{Listener, Shared};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Encodable};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};

/// First growth step of a frame's body buffer; each later step is the size so far, up to
/// `STEP_MAX_BYTES`, so a connection never holds more than one step it has not been sent.
const STEP_MIN_BYTES: usize = 4 << 10;
const STEP_MAX_BYTES: usize = 1 << 20;

/// Why a connection ends early (for logs only).
#[derive(Debug)]
enum Close {
    Eof,
    Idle,
    Io,
    /// A request not received within `read_timeout`, or a response not taken within
    /// `write_timeout`.
    Slow,
    Bad(String),
}

/// A frame and its share of `request_bytes_max`, held until its answer is written.
type Frame = (Bytes, budget::Frame);

/// Reads one frame. `cap` bounds it further (`kafka.sasl_bytes_max` before SASL authentication,
/// when raw tokens of a few bytes are also valid frames), read once the length has arrived.
async fn read_frame(
    sock: &mut (impl AsyncRead + Unpin),
    shared: &Shared,
    cap: &AtomicUsize,
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
    let cap = cap.load(Ordering::Acquire);
    let most = shared
        .config
        .frame_bytes_max
        .min(shared.config.request_bytes_max)
        .min(cap);
    let least = if cap == usize::MAX { 8 } else { 1 };
    if size > most || size < least {
        return Err(Close::Bad(format!(
            "frame length {size} outside [8, {most}]"
        )));
    }
    let mut grant = shared.request_bytes.frame(size);
    let mut body: Vec<u8> = Vec::new();
    let deadline = Instant::now() + shared.config.read_timeout;
    while body.len() < size {
        if body.len() == body.capacity() {
            let step = (size - body.len()).min(body.len().clamp(STEP_MIN_BYTES, STEP_MAX_BYTES));
            timeout_at(deadline, grant.grow(step))
                .await
                .map_err(|_| Close::Slow)?;
            body.reserve_exact(step);
        }
        let room = (body.capacity() - body.len()).min(size - body.len());
        let mut limited = (&mut *sock).take(room as u64);
        // Silence longer than the idle timeout closes, as between requests; so does the deadline.
        let silence = Instant::now() + shared.config.idle_timeout;
        match timeout_at(deadline.min(silence), limited.read_buf(&mut body)).await {
            Err(_) if silence < deadline => return Err(Close::Idle),
            Err(_) => return Err(Close::Slow),
            Ok(Ok(0)) => return Err(Close::Eof),
            Ok(Err(_)) => return Err(Close::Io),
            Ok(Ok(_)) => {}
        }
    }
    Ok((Bytes::from(body), grant))
}

/// Encodes a response with its length prefix and header, into one buffer.
fn encode_response(correlation_id: i32, version: i16, resp: &ResponseKind) -> Result<Bytes, Close> {
    // A Fetch answer is sized first so its records are copied once, with no regrowth.
    let body_bytes = match resp {
        ResponseKind::Fetch(f) => f.compute_size(version).unwrap_or(0),
        _ => 0,
    };
    let mut buf = BytesMut::with_capacity(body_bytes + 64);
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
    Ok(buf.freeze())
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
    Answer(Bytes),
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

/// An encoded response and its share of the response budget, held until written.
type Out = (Bytes, budget::Held);

/// A response to write, `None` when none is due (acks=0 produce).
type Reply = Result<Option<Out>, Close>;

/// Encodes a response that is counted once built (all but Fetch, which reserves before reading).
fn counted(shared: &Shared, id: i32, version: i16, resp: &ResponseKind) -> Result<Out, Close> {
    let bytes = encode_response(id, version, resp)?;
    let held = shared.response_bytes.charge(bytes.len());
    Ok((bytes, held))
}

/// Most produce requests of one connection whose durability is awaited at once. librdkafka with
/// `linger.ms=0` and 1,024 messages unacknowledged keeps about 30-50 small requests in flight;
/// at 16 the rest waited in the socket and W1 ran at 420 k msg/s, at 64 about 650 k (256 was no
/// better). Memory stays bounded by `kafka.request_bytes_max`.
const PIPELINE_MAX: usize = 64;

/// Writes one reply within `write_timeout`; false when the connection must close.
async fn write<W: AsyncWrite + Unpin>(
    wr: &mut W,
    reply: Reply,
    peer: SocketAddr,
    shared: &Shared,
) -> bool {
    match reply {
        Ok(Some((bytes, _held))) => {
            // Flushed: a TLS stream may hold the tail of a record until flushed (a no-op on TCP).
            let sent = async {
                wr.write_all(&bytes).await?;
                wr.flush().await
            };
            match tokio::time::timeout(shared.config.write_timeout, sent).await {
                Ok(Ok(())) => true,
                Ok(Err(_)) => false,
                Err(_) => {
                    log_close(shared, peer, Close::Slow);
                    false
                }
            }
        }
        Ok(None) => true,
        Err(e) => {
            log_close(shared, peer, e);
            false
        }
    }
}

/// Writes every pending response in order; false when the connection must close.
async fn drain<W: AsyncWrite + Unpin>(
    pending: &mut VecDeque<JoinHandle<Reply>>,
    wr: &mut W,
    peer: SocketAddr,
    shared: &Shared,
) -> bool {
    while let Some(h) = pending.pop_front() {
        let reply = h
            .await
            .unwrap_or_else(|e| Err(Close::Bad(format!("request task: {e}"))));
        if !write(wr, reply, peer, shared).await {
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
///
/// `rd` and `wr` are the two halves of the socket, or of its TLS stream; `tls_principal` is the
/// principal of an SSL listener's connection (its mapped client certificate, or anonymous).
pub async fn run<R, W>(
    mut rd: R,
    mut wr: W,
    peer: SocketAddr,
    shared: Arc<Shared>,
    listener: Arc<Listener>,
    tls_principal: Option<String>,
    mut stop: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Frame, Close>>(PIPELINE_MAX);
    let reader_shared = shared.clone();
    let sasl = listener.security.sasl().then(sasl::Session::default);
    let cap = Arc::new(AtomicUsize::new(if sasl.is_some() {
        shared.config.sasl_bytes_max
    } else {
        usize::MAX
    }));
    let reader_cap = cap.clone();
    // Over a client quota the socket is not read for a while (KIP-219's mute, `quota.rs`).
    let mute = Arc::new(quota::Mute::default());
    let reader_mute = mute.clone();
    let reader = tokio::spawn(async move {
        loop {
            reader_mute.wait().await;
            let f = read_frame(&mut rd, &reader_shared, &reader_cap).await;
            let end = f.is_err();
            if tx.send(f).await.is_err() || end {
                return;
            }
        }
    });
    let mut conn = Conn {
        seq: CONNECTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        peer,
        shared: &shared,
        listener: &listener,
        sasl,
        tls_principal,
        cap: &cap,
        mute: &mute,
    };
    serve_frames(&mut rx, &mut wr, &mut conn, &mut stop).await;
    reader.abort();
}

/// What the frame loop knows of its connection.
/// Numbers connections in the order they were accepted (the transaction coordinator tells a
/// delayed EndTxn by the connection it came on: `busbar_broker` `end_txn_via`).
static CONNECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

struct Conn<'a> {
    /// This connection's number ([`CONNECTIONS`]).
    seq: u64,
    peer: SocketAddr,
    shared: &'a Shared,
    listener: &'a Listener,
    /// `Some` on a SASL listener.
    sasl: Option<sasl::Session>,
    /// `Some` on an SSL listener: the client certificate's mapped name, or anonymous.
    tls_principal: Option<String>,
    /// The reader's frame cap (lifted once authenticated).
    cap: &'a AtomicUsize,
    /// Over a client quota: until when nothing is read or handled.
    mute: &'a quota::Mute,
}

impl Conn<'_> {
    /// True while a SASL listener's client has not authenticated.
    fn unauthenticated(&self) -> bool {
        self.sasl.as_ref().is_some_and(|s| s.principal().is_none())
    }

    /// Who is asking: the SASL user, the SSL listener's certificate principal, or `None` on a
    /// PLAINTEXT listener.
    fn principal(&self) -> Option<&str> {
        match &self.sasl {
            Some(s) => s.principal(),
            None => self.tls_principal.as_deref(),
        }
    }
}

async fn serve_frames<W: AsyncWrite + Unpin>(
    rx: &mut tokio::sync::mpsc::Receiver<Result<Frame, Close>>,
    wr: &mut W,
    conn: &mut Conn<'_>,
    stop: &mut watch::Receiver<bool>,
) {
    let (peer, shared) = (conn.peer, conn.shared);
    let mut pending: VecDeque<JoinHandle<Reply>> = VecDeque::new();
    let mute = conn.mute;
    let sasl_deadline = Instant::now() + shared.config.sasl_timeout;
    loop {
        let next = tokio::select! {
            biased;
            _ = tokio::time::sleep_until(sasl_deadline), if conn.unauthenticated() => {
                let why = "not authenticated within kafka.sasl_timeout_ms; connection closed";
                shared.refusals.log(peer, "?", "a connection", why);
                return;
            }
            done = async { pending.front_mut().expect("checked").await }, if !pending.is_empty() => {
                pending.pop_front();
                let reply = done.unwrap_or_else(|e| Err(Close::Bad(format!("request task: {e}"))));
                if !write(wr, reply, peer, shared).await {
                    return;
                }
                continue;
            }
            _ = async { let _ = stop.wait_for(|s| *s).await; }, if pending.is_empty() => return,
            _ = mute.wait(), if mute.deadline().is_some() => continue,
            f = rx.recv(), if pending.len() < PIPELINE_MAX && mute.deadline().is_none() => f,
        };
        let Some(Ok((frame, permit))) = next else {
            // The reader stopped: answer what is pending, then close.
            drain(&mut pending, wr, peer, shared).await;
            if let Some(Err(e)) = next {
                log_close(shared, peer, e);
            }
            return;
        };
        if conn.unauthenticated() {
            // Nothing is pipelined before authentication, so nothing is pending here.
            drop(permit);
            if !sasl_step(conn, frame, wr).await {
                return;
            }
            continue;
        }
        let client = peek_client_id(&frame);
        let frame_bytes = frame.len();
        let (header, version, req) = match decode(frame) {
            Ok(Decoded::Request(b)) => *b,
            Ok(Decoded::Answer(bytes)) => {
                let held = shared.response_bytes.charge(bytes.len());
                if !drain(&mut pending, wr, peer, shared).await
                    || !write(wr, Ok(Some((bytes, held))), peer, shared).await
                {
                    return;
                }
                continue;
            }
            Err(e) => {
                drain(&mut pending, wr, peer, shared).await;
                match e {
                    Close::Bad(why) => shared.refusals.log(
                        peer,
                        &client,
                        "a request",
                        &format!("{why}; connection closed"),
                    ),
                    e => log_close(shared, peer, e),
                }
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
            conn: conn.seq,
            listener: conn.listener,
            principal: conn.principal(),
        };
        let id = header.correlation_id;
        let key = ApiKey::try_from(header.request_api_key).unwrap_or(ApiKey::ApiVersions);
        let started = Instant::now();
        if let RequestKind::Produce(r) = req {
            let durable = api::produce::start(&ctx, r).await;
            let (throttle, hold) = quota::produced(&ctx, frame_bytes, started.elapsed(), mute);
            let responses = shared.response_bytes.clone();
            let (refusals, client_id) = (shared.refusals.clone(), ctx.client_id.clone());
            let broker = shared.broker.clone();
            pending.push_back(tokio::spawn(async move {
                let _held = permit;
                let answer = durable.await;
                let latency = &broker.metrics().request_latency;
                latency.observe(&["kafka", "Produce"], started.elapsed());
                match answer {
                    Some(resp) => {
                        let mut resp = ResponseKind::Produce(resp);
                        quota::set_throttle(&mut resp, throttle);
                        tokio::time::sleep(hold).await;
                        refusals.answered(peer, &client_id, version, &resp);
                        let bytes = encode_response(id, version, &resp)?;
                        let held = responses.charge(bytes.len());
                        Ok(Some((bytes, held)))
                    }
                    None => Ok(None),
                }
            }));
            continue;
        }
        if !drain(&mut pending, wr, peer, shared).await {
            return;
        }
        let mut hold = std::time::Duration::ZERO;
        let reply = if let RequestKind::Fetch(mut r) = req {
            quota::cap_fetch(&ctx, &mut r);
            // Reserved before the log was read; resized to the encoded answer, whose records
            // are the only copy once the decoded response is dropped here.
            let (mut resp, mut held) = api::fetch::handle(&ctx, r).await;
            let bytes_ms = quota::fetch(&ctx, &mut resp);
            let mut resp = ResponseKind::Fetch(resp);
            // A fetch's wait for data is not request time.
            let no_time = std::time::Duration::ZERO;
            hold = quota::finish(&ctx, key, &mut resp, no_time, bytes_ms, mute);
            shared
                .refusals
                .answered(peer, &ctx.client_id, version, &resp);
            encode_response(id, version, &resp).map(|bytes| {
                held.resize(bytes.len());
                Some((bytes, held))
            })
        } else {
            match api::dispatch(&ctx, req).await {
                Some(mut resp) => {
                    hold = quota::finish(&ctx, key, &mut resp, started.elapsed(), 0, mute);
                    shared
                        .refusals
                        .answered(peer, &ctx.client_id, version, &resp);
                    counted(shared, id, version, &resp).map(Some)
                }
                None => Ok(None),
            }
        };
        drop(permit);
        let latency = &shared.broker.metrics().request_latency;
        latency.observe(&["kafka", crate::codes::api_name(key)], started.elapsed());
        tokio::time::sleep(hold).await;
        if !write(wr, reply, peer, shared).await {
            return;
        }
    }
}

/// One frame before SASL authentication completes: a raw token after a v0 handshake, or
/// ApiVersions, SaslHandshake or SaslAuthenticate. Anything else closes the connection, as does any
/// failure (after its answer, held back by the failed-login backoff). False: close.
async fn sasl_step<W: AsyncWrite + Unpin>(conn: &mut Conn<'_>, frame: Bytes, wr: &mut W) -> bool {
    let (peer, shared, listener) = (conn.peer, conn.shared, conn.listener);
    let auth = shared.broker.auth();
    let Some(session) = conn.sasl.as_mut() else {
        return false;
    };
    if session.raw() {
        let mech = session.mechanism();
        let step = session.authenticate(auth, &frame, peer.ip());
        if let Some(why) = &step.why {
            let who = (mech, session.claimed());
            api::audit::auth_failure(shared, peer, listener, "SaslAuthenticate", who, why);
            tokio::time::sleep(step.delay).await;
            // A v0 exchange cannot carry an error: Kafka closes too.
            shared.refusals.log(
                peer,
                "?",
                "a SASL token",
                &format!("{why}; connection closed"),
            );
            return false;
        }
        if session.principal().is_some() {
            conn.cap.store(usize::MAX, Ordering::Release);
        }
        let mut out = BytesMut::with_capacity(4 + step.token.len());
        out.extend_from_slice(&(step.token.len() as i32).to_be_bytes());
        out.extend_from_slice(&step.token);
        let held = shared.response_bytes.charge(out.len());
        return write(wr, Ok(Some((out.freeze(), held))), peer, shared).await;
    }
    let client = peek_client_id(&frame);
    let (header, version, req) = match decode(frame) {
        Ok(Decoded::Request(b)) => *b,
        Ok(Decoded::Answer(bytes)) => {
            let held = shared.response_bytes.charge(bytes.len());
            return write(wr, Ok(Some((bytes, held))), peer, shared).await;
        }
        Err(Close::Bad(why)) => {
            let why = format!("{why}; connection closed");
            shared.refusals.log(peer, &client, "a request", &why);
            return false;
        }
        Err(e) => {
            log_close(shared, peer, e);
            return false;
        }
    };
    let (resp, keep) = match req {
        RequestKind::ApiVersions(_) => {
            (ResponseKind::ApiVersions(api::api_versions::handle()), true)
        }
        RequestKind::SaslHandshake(r) => {
            let resp = session.handshake(&r, version);
            let ok = resp.error_code == 0;
            if !ok {
                let why = format!(
                    "mechanism {:?} refused (error {})",
                    r.mechanism.as_str(),
                    resp.error_code
                );
                let who = ("unsupported", "");
                api::audit::auth_failure(shared, peer, listener, "SaslHandshake", who, &why);
            }
            (ResponseKind::SaslHandshake(resp), ok)
        }
        RequestKind::SaslAuthenticate(r) => {
            let mech = session.mechanism();
            let step = session.authenticate(auth, &r.auth_bytes, peer.ip());
            if let Some(why) = &step.why {
                let who = (mech, session.claimed());
                api::audit::auth_failure(shared, peer, listener, "SaslAuthenticate", who, why);
                tokio::time::sleep(step.delay).await;
                let why = format!("{why}; connection closed");
                shared.refusals.log(peer, &client, "SaslAuthenticate", &why);
            }
            (
                ResponseKind::SaslAuthenticate(step.response()),
                step.why.is_none(),
            )
        }
        _ => {
            let what = ApiKey::try_from(header.request_api_key)
                .map_or_else(|_| "a request".to_string(), |k| format!("{k:?}"));
            let why = "sent before SASL authentication; connection closed";
            api::audit::auth_failure(shared, peer, listener, &what, ("none", ""), why);
            shared.refusals.log(peer, &client, &what, why);
            return false;
        }
    };
    if session.principal().is_some() {
        conn.cap.store(usize::MAX, Ordering::Release);
    }
    let reply = counted(shared, header.correlation_id, version, &resp).map(Some);
    let written = write(wr, reply, peer, shared).await;
    if written && !keep {
        tokio::time::sleep(sasl::CLOSE_DELAY).await;
    }
    written && keep
}

/// The client id of a request header (v1+: after key, version and correlation id), read without
/// decoding the request, for the log of a request that cannot be decoded; "?" when unreadable.
fn peek_client_id(frame: &[u8]) -> String {
    let Some(len) = frame.get(8..10).map(|b| i16::from_be_bytes([b[0], b[1]])) else {
        return "?".into();
    };
    let end = 10 + len.max(0) as usize;
    match frame.get(10..end.min(10 + 256)) {
        Some(id) if len >= 0 => String::from_utf8_lossy(id).into_owned(),
        _ => "?".into(),
    }
}

/// Logs why a connection is closed (rate-limited with the refusals).
fn log_close(shared: &Shared, peer: SocketAddr, why: Close) {
    match why {
        Close::Bad(why) => {
            let msg = format!("closing connection from {peer}: {why}");
            shared.refusals.line("connection_closed", &msg);
        }
        Close::Slow => {
            let msg = format!(
                "closing connection from {peer}: a request or response was not transferred \
                 within kafka.read_timeout_ms / kafka.write_timeout_ms"
            );
            shared.refusals.line("connection_closed", &msg);
        }
        Close::Eof | Close::Idle | Close::Io => {}
    }
}
