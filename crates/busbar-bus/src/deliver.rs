//! One delivery attempt to a target, and what its outcome means for the retry policy.
//!
//! HTTP (issue 5, EventBridge's rules): 2xx delivered; 429, 5xx, timeouts and connection errors
//! are retried; any other status (1xx, 3xx, other 4xx) is dead-lettered at once. `Retry-After`
//! (seconds or an HTTP date) is honoured: the next attempt waits for the longer of it and the
//! backoff; a negative value stops retrying. Requests go over HTTP/1.1 with kept-alive connections
//! pooled per host; the whole exchange (connect, send, response head and body) is bounded by the
//! subscription's timeout, and a response body is read to at most 64 KiB, then dropped.
//! `https://` targets go over TLS (`tls.rs`); TLS errors are retried like connection errors
//! (reason `tls`).
//!
//! Every new connection obeys the target policy (`targets.rs`): the host name and each address
//! it resolves to are checked, and the connection goes to a checked address; a refused target is
//! dead-lettered at once with reason `target_forbidden`. Failures are reported with a short
//! reason only (`connection refused`, `connection failed`, a TLS verdict), never the OS error
//! text: dead letters are readable by users who must not learn the network's layout from them.
//!
//! Topic targets: the event is appended to the target topic in the subscription's transaction
//! (durable before the attempt counts as delivered; visible once the worker commits it with its
//! position, `worker/exactly.rs`); a storage error is retried, a vanished or too-small target is
//! dead-lettered. Replays append outside any transaction (at least once).

use crate::targets::{self, Forbidden, TargetPolicy};
use crate::tls;
use busbar_broker::event::Event;
use busbar_broker::txn::producer::TxnProducer;
use busbar_broker::Broker;
use busbar_broker::BrokerError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Uri};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Most bytes of a target's response body read before it is dropped.
const RESPONSE_BYTES_MAX: usize = 64 << 10;
/// Most idle connections kept per target host.
const IDLE_PER_HOST: usize = 64;

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again later (after at least `retry_after_ms`, when the target said so).
    Retry {
        failure: Failure,
        retry_after_ms: Option<i64>,
    },
    /// Never retried: dead-letter now.
    Fatal(Failure),
}

/// Why an attempt failed, as dead-letter headers report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `http_status`, `timeout`, `connection`, `tls`, `target_forbidden`, `storage`,
    /// `target_gone`, `too_large`, `transform_too_large`, `schema_encode_failed`.
    pub reason: &'static str,
    pub status: Option<u16>,
    pub error: String,
}

impl Failure {
    /// The failure's kind for `busbar_delivery_errors_total`: `http_4xx`, `http_5xx`,
    /// `http_other` (another status that is not a success, 1xx or 3xx), `timeout`, `connection`,
    /// `tls`, `storage`, or `refused` (the target refused the event itself: too large, forbidden,
    /// gone, invalid, schema).
    pub fn kind(&self) -> &'static str {
        match (self.reason, self.status) {
            ("http_status", Some(500..=599)) => "http_5xx",
            ("http_status", Some(400..=499)) => "http_4xx",
            ("http_status", _) => "http_other",
            (r @ ("timeout" | "connection" | "tls" | "storage"), _) => r,
            _ => "refused",
        }
    }

    pub(crate) fn new(reason: &'static str, status: Option<u16>, error: impl Into<String>) -> Self {
        Self {
            reason,
            status,
            error: error.into(),
        }
    }
}

/// An HTTP request to a target.
pub struct HttpRequest {
    pub uri: Uri,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Vec<u8>,
    pub timeout: Duration,
    /// For `https://`: trust only the certificates of this PEM file (else the Mozilla roots).
    pub ca_file: Option<PathBuf>,
}

type Sender = SendRequest<Full<Bytes>>;

/// An HTTP/1.1 client with a pool of kept-alive connections per target endpoint, that connects
/// only to addresses the [`TargetPolicy`] allows.
#[derive(Default)]
pub struct HttpClient {
    idle: Mutex<HashMap<String, Vec<Sender>>>,
    policy: TargetPolicy,
}

/// Where a request goes: scheme, host and port, and the trust of its TLS.
struct Endpoint<'a> {
    https: bool,
    host: &'a str,
    port: u16,
    ca_file: Option<&'a Path>,
}

impl<'a> Endpoint<'a> {
    fn of(req: &'a HttpRequest) -> Self {
        let https = req.uri.scheme_str() == Some("https");
        Endpoint {
            https,
            host: req.uri.host().unwrap_or(""),
            port: req.uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
            ca_file: req.ca_file.as_deref(),
        }
    }

    /// The `Host` header.
    fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The pool key: connections are shared only by requests with the same scheme, endpoint and
    /// trust.
    fn key(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let ca = self.ca_file.map(|p| p.display().to_string());
        format!("{scheme}://{}#{}", self.authority(), ca.unwrap_or_default())
    }
}

impl HttpClient {
    /// A client whose connections obey `policy`.
    pub fn new(policy: TargetPolicy) -> Self {
        Self {
            idle: Mutex::default(),
            policy,
        }
    }

    /// POSTs `req`, classifying the answer.
    pub async fn post(&self, req: HttpRequest) -> Outcome {
        let timeout = req.timeout;
        match tokio::time::timeout(timeout, self.exchange(req)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Retry {
                failure: Failure::new(
                    "timeout",
                    None,
                    format!("no complete answer within {} ms", timeout.as_millis()),
                ),
                retry_after_ms: None,
            },
        }
    }

    async fn exchange(&self, req: HttpRequest) -> Outcome {
        let end = Endpoint::of(&req);
        let key = end.key();
        let mut sender = match self.checkout(&key).await {
            Some(s) => s,
            None => match self.connect(&end).await {
                Ok(s) => s,
                Err(outcome) => return outcome,
            },
        };
        let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut builder = Request::post(path).header(hyper::header::HOST, end.authority());
        for (k, v) in req.headers {
            builder = builder.header(k, v);
        }
        let request = match builder.body(Full::new(Bytes::from(req.body))) {
            Ok(r) => r,
            Err(e) => return Outcome::Fatal(Failure::new("connection", None, e.to_string())),
        };
        let response = match sender.send_request(request).await {
            Ok(r) => r,
            Err(_) => {
                return retry(
                    "connection",
                    None,
                    "the connection ended before an answer".into(),
                )
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body_ok = Limited::new(response.into_body(), RESPONSE_BYTES_MAX)
            .collect()
            .await
            .is_ok();
        if body_ok {
            self.checkin(key, sender);
        }
        classify(status, retry_after)
    }

    async fn checkout(&self, key: &str) -> Option<Sender> {
        loop {
            let candidate = {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                idle.get_mut(key).and_then(Vec::pop)
            }?;
            let mut s = candidate;
            if !s.is_closed() && s.ready().await.is_ok() {
                return Some(s);
            }
        }
    }

    fn checkin(&self, key: String, sender: Sender) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(key).or_default();
        if list.len() < IDLE_PER_HOST {
            list.push(sender);
        }
    }

    /// The addresses of `end` the policy allows: its name and every address it resolves to are
    /// checked (any refused one refuses the target); a refusal is final, a failed lookup is
    /// retried. Errors say no more than a short reason (dead letters are readable by users).
    async fn resolve(&self, end: &Endpoint<'_>) -> Result<Vec<SocketAddr>, Outcome> {
        let forbidden =
            |f: Forbidden| Outcome::Fatal(Failure::new("target_forbidden", None, f.to_string()));
        let addrs = match targets::literal(end.host) {
            Some(ip) => vec![SocketAddr::new(ip, end.port)],
            None => {
                self.policy.check_name(end.host).map_err(forbidden)?;
                let found = tokio::net::lookup_host((end.host, end.port)).await;
                match found {
                    Ok(a) => a.collect(),
                    Err(_) => Vec::new(),
                }
            }
        };
        if addrs.is_empty() {
            return Err(retry(
                "connection",
                None,
                format!("{:?} did not resolve", end.host),
            ));
        }
        // Which address and rule refused it is not said: that would map the network.
        if addrs
            .iter()
            .any(|a| self.policy.check_addr(a.ip()).is_err())
        {
            let why = "an address of the target is forbidden by bus.targets";
            return Err(Outcome::Fatal(Failure::new("target_forbidden", None, why)));
        }
        Ok(addrs)
    }

    /// A new connection to an address [`Self::resolve`] checked, with TLS for `https`.
    async fn connect(&self, end: &Endpoint<'_>) -> Result<Sender, Outcome> {
        let addrs = self.resolve(end).await?;
        let mut refused = false;
        let mut stream = None;
        for a in addrs {
            match tokio::net::TcpStream::connect(a).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => refused |= e.kind() == std::io::ErrorKind::ConnectionRefused,
            }
        }
        let Some(stream) = stream else {
            let why = if refused {
                "connection refused"
            } else {
                "connection failed"
            };
            return Err(retry("connection", None, why.into()));
        };
        let _ = stream.set_nodelay(true);
        if !end.https {
            return handshake(stream).await;
        }
        match tls::connect(stream, end.host, end.ca_file).await {
            Ok(s) => handshake(s).await,
            Err(tls::TlsError(e)) => Err(retry("tls", None, e)),
        }
    }
}

async fn handshake<S>(io: S) -> Result<Sender, Outcome>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|_| retry("connection", None, "HTTP handshake failed".into()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn retry(reason: &'static str, status: Option<u16>, error: String) -> Outcome {
    Outcome::Retry {
        failure: Failure::new(reason, status, error),
        retry_after_ms: None,
    }
}

/// Classifies an HTTP status (with its `Retry-After` in ms, if any).
pub fn classify(status: u16, retry_after_ms: Option<i64>) -> Outcome {
    let failure = || {
        Failure::new(
            "http_status",
            Some(status),
            format!("target answered {status}"),
        )
    };
    match status {
        200..=299 => Outcome::Delivered,
        429 | 500..=599 => Outcome::Retry {
            failure: failure(),
            retry_after_ms,
        },
        _ => Outcome::Fatal(failure()),
    }
}

/// `Retry-After` as milliseconds from now: delay-seconds (possibly negative: stop retrying) or an
/// HTTP date.
pub fn parse_retry_after(v: &str) -> Option<i64> {
    let v = v.trim();
    let digits = v.strip_prefix('-').unwrap_or(v);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        // Any length: a number past i64 saturates (and is capped by the policy later).
        let ms = match v.parse::<i128>() {
            Ok(secs) => secs.saturating_mul(1000),
            Err(_) if v.starts_with('-') => i128::MIN,
            Err(_) => i128::MAX,
        };
        return Some(ms.clamp(i64::MIN.into(), i64::MAX.into()) as i64);
    }
    let at = busbar_broker::time::parse_http_date(v)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Some((at - now).max(0))
}

/// Most events appended together by a [`TopicSink`].
const SINK_BATCH_MAX: usize = 1000;

type SinkItem = (Event, tokio::sync::oneshot::Sender<Outcome>);

/// Appends a subscription's deliveries to its target topic in batches: every delivery waiting
/// when the previous append finished goes into the next one, so concurrent deliveries share one
/// append (and fsync) per partition instead of one each. A batch refused as a whole (an event too
/// large) is retried event by event, so only the bad event fails.
///
/// The appends go out in the subscription's transaction ([`TxnProducer`], set by the worker
/// once it has settled the transaction it recorded last): the worker commits it with its
/// position (exactly-once). Without a producer nothing is appended (a retriable failure).
pub struct TopicSink {
    tx: tokio::sync::mpsc::UnboundedSender<SinkItem>,
    producer: Producer,
}

/// The transactional producer a [`TopicSink`] appends through, shared with its worker.
pub type Producer = std::sync::Arc<tokio::sync::Mutex<Option<TxnProducer>>>;

impl TopicSink {
    /// Starts the sink's task; it ends when the sink is dropped.
    pub fn start(broker: std::sync::Arc<Broker>, topic: String) -> TopicSink {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<SinkItem>();
        let producer = Producer::default();
        let txn = producer.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut items = vec![first];
                while items.len() < SINK_BATCH_MAX {
                    match rx.try_recv() {
                        Ok(item) => items.push(item),
                        Err(_) => break,
                    }
                }
                let mut p = txn.lock().await;
                // A delivery abandoned while it waited (its worker started over) is not
                // appended: its position was not kept, and the transaction it would join is
                // the next one.
                items.retain(|(_, reply)| !reply.is_closed());
                if items.is_empty() {
                    continue;
                }
                let (events, replies): (Vec<Event>, Vec<_>) = items.into_iter().unzip();
                let outcome = in_txn(&broker, p.as_mut(), &topic, events.clone()).await;
                if matches!(outcome, Outcome::Fatal(_)) && events.len() > 1 {
                    for (e, reply) in events.into_iter().zip(replies) {
                        let _ = reply.send(in_txn(&broker, p.as_mut(), &topic, vec![e]).await);
                    }
                } else {
                    for reply in replies {
                        let _ = reply.send(outcome.clone());
                    }
                }
            }
        });
        TopicSink { tx, producer }
    }

    /// The transactional producer its appends go through.
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Appends `event` with the next batch.
    pub async fn send(&self, event: Event) -> Outcome {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if self.tx.send((event, reply)).is_err() {
            return retry("storage", None, "target sink stopped".into());
        }
        answer
            .await
            .unwrap_or_else(|_| retry("storage", None, "target sink stopped".into()))
    }
}

/// Appends `events` to `topic` in `p`'s transaction.
async fn in_txn(
    broker: &Broker,
    p: Option<&mut TxnProducer>,
    topic: &str,
    events: Vec<Event>,
) -> Outcome {
    match p {
        Some(p) => outcome_of(broker.publish_txn(p, topic, events).await.map(drop)),
        None => retry("storage", None, "no transaction to deliver in yet".into()),
    }
}

/// Appends `event` to `topic`.
pub async fn to_topic(broker: &Broker, topic: &str, event: Event) -> Outcome {
    to_topic_many(broker, topic, vec![event]).await
}

async fn to_topic_many(broker: &Broker, topic: &str, events: Vec<Event>) -> Outcome {
    outcome_of(broker.publish(topic, events).await.map(drop))
}

/// The outcome of an append to a target topic.
fn outcome_of(r: Result<(), BrokerError>) -> Outcome {
    match r {
        Ok(()) => Outcome::Delivered,
        Err(e @ (BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. })) => {
            Outcome::Fatal(Failure::new("target_gone", None, e.to_string()))
        }
        Err(e @ (BrokerError::MessageTooLarge { .. } | BrokerError::InvalidRecord(_))) => {
            Outcome::Fatal(Failure::new("too_large", None, e.to_string()))
        }
        // The target topic's timestamp window refuses the event: retrying cannot help, and a
        // retry would fail the valid events batched with it.
        Err(e @ BrokerError::InvalidTimestamp(_)) => {
            Outcome::Fatal(Failure::new("invalid_timestamp", None, e.to_string()))
        }
        // The target topic's schema settings refuse the event: as permanent as a bad timestamp
        // (the batch is split and its valid events delivered).
        Err(e @ BrokerError::SchemaRefused { .. }) => {
            Outcome::Fatal(Failure::new("schema_invalid", None, e.to_string()))
        }
        Err(e) => retry("storage", None, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_like_eventbridge() {
        assert_eq!(classify(200, None), Outcome::Delivered);
        assert_eq!(classify(204, None), Outcome::Delivered);
        for s in [429, 500, 502, 503, 599] {
            assert!(matches!(classify(s, None), Outcome::Retry { .. }), "{s}");
        }
        for s in [100, 301, 400, 404, 408, 410, 413] {
            assert!(matches!(classify(s, None), Outcome::Fatal(_)), "{s}");
        }
    }

    #[tokio::test]
    async fn an_event_outside_the_target_timestamp_window_is_fatal_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let b = Broker::open(busbar_broker::BrokerConfig {
            data_dir: dir.path().into(),
            ..Default::default()
        })
        .unwrap();
        b.create_topic("dst", Some(1), Default::default())
            .await
            .unwrap();
        let far = b.config().clock.now_ms() + 2 * 3_600_000;
        let e = Event {
            timestamp: Some(far),
            ..Event::value("v")
        };
        assert!(
            matches!(to_topic(&b, "dst", e).await, Outcome::Fatal(ref f) if f.reason == "invalid_timestamp"),
            "an invalid timestamp must not be retried as a storage error"
        );
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(3000));
        assert_eq!(parse_retry_after("-1"), Some(-1000));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(0));
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("99999999999999999999"), Some(i64::MAX));
        assert_eq!(parse_retry_after(&"9".repeat(60)), Some(i64::MAX));
        assert_eq!(
            parse_retry_after(&format!("-{}", "9".repeat(60))),
            Some(i64::MIN)
        );
        assert_eq!(parse_retry_after("0"), Some(0));
    }
}
