//! busbar-kafka: the Kafka wire-protocol front end. Framing and version checks in `conn`, the
//! advertised version table in `versions`, error codes in `codes` (the one place broker errors
//! become Kafka codes), and one file per API under `api/`, each decoding with the `kafka-protocol`
//! crate, calling one `Broker` method, and encoding the answer. Record batches stay opaque bytes.
//! [`serve`] takes an already-bound listener and a shutdown future, so tests bind port 0.
//! Memory is bounded by two shared budgets (`budget`: requests and responses) and the read and
//! write timeouts in `conn`; `fds` holds the descriptor-limit helpers the binary uses at start.
//! Every refused request is logged, rate-limited (`refusals`). Listeners are Kafka's PLAINTEXT,
//! SASL_PLAINTEXT, SSL and SASL_SSL ([`Security`]); on a SASL one, `sasl` authenticates each
//! connection first; on a TLS one, `tls` runs the handshake in the connection's task.

pub mod alloc;
mod api;
mod authz;
mod budget;
mod cluster;
mod codes;
mod conn;
pub mod fds;
mod quota;
mod refusals;
mod sasl;
mod tls;
mod versions;

pub use conn::{decode_frame, decode_request};
pub use tls::{CertPrincipal, Tls};
pub use versions::ADVERTISED;

use busbar_broker::Broker;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// First pause after a failed accept (EMFILE, ENFILE, ENOBUFS...); it doubles up to
/// `ACCEPT_BACKOFF_MAX` while accepts keep failing, so running out of descriptors costs no CPU.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Settings of the Kafka listener.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Host clients are told to connect to (Metadata, FindCoordinator).
    pub advertised_host: String,
    /// Port clients are told to connect to.
    pub advertised_port: u16,
    /// This broker's node id (also the controller and every partition's leader).
    pub node_id: i32,
    /// Cluster id reported in Metadata and DescribeCluster. Empty (the default): the data
    /// directory's own, made once and kept in `<data>/kafka/cluster.id` (see `cluster`).
    pub cluster_id: String,
    /// Largest request frame accepted, bytes; a larger declared length closes the connection
    /// before anything is allocated. Default 100 MiB (Kafka's `socket.request.max.bytes`).
    pub frame_bytes_max: usize,
    /// Most open client connections; further ones are closed at once. Default 10,000 (`busbar
    /// serve` lowers it to fit the descriptor limit, see `fds`).
    pub connections_max: usize,
    /// Most bytes of requests held at once across all connections (being read, handled, or
    /// answered), counted as they arrive: a connection whose next bytes do not fit waits, without
    /// reading its socket, so a flood becomes TCP backpressure instead of memory (Kafka's
    /// `queued.max.request.bytes`). Default 256 MiB; a frame larger than this is refused like one
    /// over `frame_bytes_max`.
    pub request_bytes_max: usize,
    /// Most bytes of responses held at once across all connections (encoded, not yet written).
    /// A Fetch waits for room before reading the log; other answers are counted, never delayed.
    /// Default 256 MiB.
    pub response_bytes_max: usize,
    /// Once a request's length has arrived, the whole request must arrive within this (waiting
    /// for the request budget included), or the connection is closed and its bytes returned. Default 30 s (Kafka clients'
    /// `request.timeout.ms`: a request slower than this is abandoned by its client anyway).
    pub read_timeout: Duration,
    /// A response not fully written within this closes its connection, freeing its memory.
    /// Default 30 s.
    pub write_timeout: Duration,
    /// A connection silent this long is closed. Default 10 minutes (Kafka's
    /// `connections.max.idle.ms`).
    pub idle_timeout: Duration,
    /// Create unknown topics named in Metadata requests that allow it (Kafka's
    /// `auto.create.topics.enable`). Default true.
    pub auto_create_topics: bool,
    /// Largest frame accepted from a client that has not completed SASL authentication yet, bytes
    /// (Kafka's `sasl.server.max.receive.size`). Default 512 KiB.
    pub sasl_bytes_max: usize,
    /// A SASL listener's connection not authenticated within this of its accept is closed (else
    /// it would be held up to `idle_timeout`). Default 10 s (busbar's choice: a client
    /// authenticates in a few round trips; Kafka itself bounds this only by its idle timeout).
    pub sasl_timeout: Duration,
    /// Certificate, key and client verifier of the SSL and SASL_SSL listeners (`[tls]`); `None`
    /// when none is configured (such listeners are then refused at start by `busbar serve`).
    pub tls: Option<Tls>,
    /// A TLS handshake not finished within this of the accept closes its connection. Default
    /// 10 s (busbar's choice, like `sasl_timeout`: a handshake takes two round trips).
    pub tls_handshake_timeout: Duration,
    /// Most open connections from one client address, across all Kafka listeners; further ones
    /// are closed at once (logged, rate-limited). Default 1,000.
    pub connections_per_ip: usize,
}

/// How a listener's clients authenticate and whether the connection is encrypted (Kafka's
/// security protocols).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// No authentication.
    Plaintext,
    /// SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) before any other request.
    SaslPlaintext,
    /// TLS; the principal is the client certificate's mapped name, or anonymous.
    Ssl,
    /// SASL over TLS.
    SaslSsl,
}

impl Security {
    /// Kafka's name (`SASL_PLAINTEXT`).
    pub fn name(self) -> &'static str {
        match self {
            Security::Plaintext => "PLAINTEXT",
            Security::SaslPlaintext => "SASL_PLAINTEXT",
            Security::Ssl => "SSL",
            Security::SaslSsl => "SASL_SSL",
        }
    }

    /// True for the listeners that authenticate with SASL.
    pub fn sasl(self) -> bool {
        matches!(self, Security::SaslPlaintext | Security::SaslSsl)
    }

    /// True for the listeners that speak TLS.
    pub fn tls(self) -> bool {
        matches!(self, Security::Ssl | Security::SaslSsl)
    }
}

/// One listener: how its clients authenticate and the address Metadata and FindCoordinator
/// give to clients that connected through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub security: Security,
    pub advertised_host: String,
    pub advertised_port: u16,
    /// Its place in the broker's list of listeners: in cluster mode, clients are told each
    /// broker's address on the listener at the same place (`Member::addr`).
    pub place: usize,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            node_id: 0,
            cluster_id: String::new(),
            frame_bytes_max: 100 << 20,
            connections_max: 10_000,
            request_bytes_max: 256 << 20,
            response_bytes_max: 256 << 20,
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            auto_create_topics: true,
            sasl_bytes_max: 512 << 10,
            sasl_timeout: Duration::from_secs(10),
            tls: None,
            tls_handshake_timeout: Duration::from_secs(10),
            connections_per_ip: 1_000,
        }
    }
}

/// What each connection shares.
pub(crate) struct Shared {
    pub broker: Arc<Broker>,
    pub config: KafkaConfig,
    /// Bytes of requests held (`request_bytes_max`).
    pub request_bytes: Arc<budget::Requests>,
    /// Bytes of responses held (`response_bytes_max`).
    pub response_bytes: Arc<budget::Responses>,
    /// The rate-limited log of refused requests.
    pub refusals: Arc<refusals::Refusals>,
    /// Open connections per client address (`connections_per_ip`).
    pub per_ip: Arc<tls::PerIp>,
}

/// Serves the Kafka protocol on `listener` until `shutdown` resolves; open connections then finish
/// the request they are on and close. A failed accept is retried after a pause that doubles from
/// `ACCEPT_BACKOFF_MIN` to `ACCEPT_BACKOFF_MAX` (errors of one aborted connection are retried at
/// once); the first failure of a run of them is logged.
pub async fn serve(
    listener: tokio::net::TcpListener,
    broker: Arc<Broker>,
    config: KafkaConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let plain = Listener {
        security: Security::Plaintext,
        advertised_host: config.advertised_host.clone(),
        advertised_port: config.advertised_port,
        place: 0,
    };
    serve_listeners(vec![(listener, plain)], broker, config, shutdown).await
}

/// [`serve`] on several listeners at once, sharing `connections_max` and the memory budgets;
/// each connection is served as its listener says (security, advertised address).
pub async fn serve_listeners(
    listeners: Vec<(tokio::net::TcpListener, Listener)>,
    broker: Arc<Broker>,
    mut config: KafkaConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    if config.cluster_id.is_empty() {
        config.cluster_id = cluster::load_or_create(&broker)?;
    }
    let limit = Arc::new(Semaphore::new(config.connections_max));
    let shared = Arc::new(Shared {
        request_bytes: budget::Requests::new(config.request_bytes_max),
        response_bytes: budget::Responses::new(config.response_bytes_max),
        refusals: Arc::default(),
        per_ip: tls::PerIp::new(config.connections_per_ip),
        broker,
        config,
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|(socket, info)| {
            let accepting = accept(
                socket,
                Arc::new(info),
                shared.clone(),
                limit.clone(),
                stop_rx.clone(),
            );
            tokio::spawn(accepting)
        })
        .collect();
    shutdown.await;
    let _ = stop_tx.send(true);
    for l in loops {
        let _ = l.await;
    }
    Ok(())
}

/// Accepts connections on one listener until `stop`.
async fn accept(
    listener: tokio::net::TcpListener,
    info: Arc<Listener>,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    stop_rx: tokio::sync::watch::Receiver<bool>,
) {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut stopping = stop_rx.clone();
    let shutdown = async move {
        let _ = stopping.wait_for(|s| *s).await;
    };
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if per_connection(&e) => continue,
                Err(e) => {
                    if backoff == ACCEPT_BACKOFF_MIN {
                        let msg = format!("accept failed: {e}; retrying with backoff");
                        busbar_broker::log::error("busbar-kafka", "accept_failed", &msg, &[]);
                    }
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            },
        };
        backoff = ACCEPT_BACKOFF_MIN;
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            drop(socket); // over connections_max: refuse at once
            continue;
        };
        let Some(slot) = shared.per_ip.acquire(peer.ip()) else {
            drop(socket);
            let why = format!(
                "over limits.connections_per_ip ({}); connection closed",
                shared.config.connections_per_ip
            );
            shared.refusals.log(peer, "?", "a connection", &why);
            continue;
        };
        let _ = socket.set_nodelay(true);
        let (shared, stop, info) = (shared.clone(), stop_rx.clone(), info.clone());
        tokio::spawn(async move {
            open(socket, peer, shared, info, stop).await;
            drop((permit, slot));
        });
    }
}

/// Serves one accepted connection: over TLS after a bounded handshake on a TLS listener, else
/// as it is.
async fn open(
    socket: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    shared: Arc<Shared>,
    info: Arc<Listener>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    if !info.security.tls() {
        let (rd, wr) = socket.into_split();
        return conn::run(rd, wr, peer, shared, info, None, stop).await;
    }
    let Some(tls) = shared.config.tls.clone() else {
        return; // refused at start: a TLS listener needs [tls]
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(match info.security {
        Security::SaslSsl => tls.sasl_server.clone(),
        _ => tls.server.clone(),
    });
    let limit = shared.config.tls_handshake_timeout;
    let stream = match tokio::time::timeout(limit, acceptor.accept(socket)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let why = format!("TLS handshake failed: {e}; connection closed");
            return shared.refusals.log(peer, "?", "a connection", &why);
        }
        Err(_) => {
            let why = "TLS handshake not finished within kafka.tls_handshake_timeout_ms; \
                       connection closed";
            return shared.refusals.log(peer, "?", "a connection", why);
        }
    };
    let principal = (info.security == Security::Ssl).then(|| tls.principal_of(stream.get_ref().1));
    let (rd, wr) = tokio::io::split(stream);
    conn::run(rd, wr, peer, shared, info, principal, stop).await;
}

/// Accept errors that concern one connection (already gone), not the listener or the process.
fn per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    )
}
