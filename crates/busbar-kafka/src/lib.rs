//! busbar-kafka: the Kafka wire-protocol front end. Framing and version checks in `conn`, the
//! advertised version table in `versions`, error codes in `codes` (the one place broker errors
//! become Kafka codes), and one file per API under `api/`, each decoding with the `kafka-protocol`
//! crate, calling one `Broker` method, and encoding the answer. Record batches stay opaque bytes.
//! [`serve`] takes an already-bound listener and a shutdown future, so tests bind port 0.

pub mod alloc;
mod api;
mod codes;
mod conn;
mod versions;

pub use conn::{decode_frame, decode_request};
pub use versions::ADVERTISED;

use busbar_broker::Broker;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Settings of the Kafka listener.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Host clients are told to connect to (Metadata, FindCoordinator).
    pub advertised_host: String,
    /// Port clients are told to connect to.
    pub advertised_port: u16,
    /// This broker's node id (also the controller and every partition's leader).
    pub node_id: i32,
    /// Cluster id reported in Metadata.
    pub cluster_id: String,
    /// Largest request frame accepted, bytes; a larger declared length closes the connection
    /// before anything is allocated. Default 100 MiB (Kafka's `socket.request.max.bytes`).
    pub frame_bytes_max: usize,
    /// Most open client connections; further ones are closed at once. Default 10,000.
    pub connections_max: usize,
    /// Most bytes of requests held at once across all connections (read, being handled, or
    /// answered): a connection whose next frame does not fit waits, without reading its socket,
    /// so a flood becomes TCP backpressure instead of memory (Kafka's `queued.max.request.bytes`).
    /// Default 256 MiB; a frame larger than this is refused like one over `frame_bytes_max`.
    pub request_bytes_max: usize,
    /// A connection silent this long is closed. Default 10 minutes (Kafka's
    /// `connections.max.idle.ms`).
    pub idle_timeout: Duration,
    /// Create unknown topics named in Metadata requests that allow it (Kafka's
    /// `auto.create.topics.enable`). Default true.
    pub auto_create_topics: bool,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            node_id: 0,
            cluster_id: "busbar-cluster".into(),
            frame_bytes_max: 100 << 20,
            connections_max: 10_000,
            request_bytes_max: 256 << 20,
            idle_timeout: Duration::from_secs(600),
            auto_create_topics: true,
        }
    }
}

/// What each connection shares.
pub(crate) struct Shared {
    pub broker: Arc<Broker>,
    pub config: KafkaConfig,
    /// Permits = bytes of requests in flight (`request_bytes_max`).
    pub request_bytes: Arc<Semaphore>,
}

/// Serves the Kafka protocol on `listener` until `shutdown` resolves; open connections then finish
/// the request they are on and close.
pub async fn serve(
    listener: tokio::net::TcpListener,
    broker: Arc<Broker>,
    config: KafkaConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limit = Arc::new(Semaphore::new(config.connections_max));
    let request_bytes = Arc::new(Semaphore::new(config.request_bytes_max));
    let shared = Arc::new(Shared {
        broker,
        config,
        request_bytes,
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            drop(socket); // over connections_max: refuse at once
            continue;
        };
        let _ = socket.set_nodelay(true);
        let (shared, stop) = (shared.clone(), stop_rx.clone());
        tokio::spawn(async move {
            conn::run(socket, peer, shared, stop).await;
            drop(permit);
        });
    }
    let _ = stop_tx.send(true);
    Ok(())
}
