//! busbar-http: the HTTP front end. It translates requests into `Broker` calls and answers JSON;
//! it decides nothing itself. Errors map to statuses in `error.rs` only. [`serve`] takes an
//! already-bound listener and a shutdown future, so tests bind port 0.

mod body;
mod cloudevents;
mod consumers;
mod error;
mod events;
mod groups;
mod metrics;
mod openapi;
mod plain;
mod render;
mod rules;
mod subscriptions;
pub use busbar_broker::time;
mod topics;

pub use error::ApiError;
pub use events::{decode_publish, decode_publish_with};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use busbar_broker::Broker;
use busbar_bus::Bus;
use serde_json::json;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Limits of the HTTP front end.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest body of an event publish, in bytes. Default 16 MiB.
    pub publish_bytes_max: usize,
    /// Largest body of any other JSON request, in bytes. Default 1 MiB.
    pub json_bytes_max: usize,
    /// Most consumer instances held at once (more: 429). Default 1000.
    pub consumers_max: usize,
    /// A consumer instance unused this long leaves its group. Default 5 minutes.
    pub consumer_idle_timeout: std::time::Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            publish_bytes_max: 16 << 20,
            json_bytes_max: 1 << 20,
            consumers_max: 1000,
            consumer_idle_timeout: std::time::Duration::from_secs(300),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct App {
    pub broker: Arc<Broker>,
    pub bus: Arc<Bus>,
    pub config: Arc<HttpConfig>,
    consumers: Arc<consumers::Consumers>,
    ready: Arc<AtomicBool>,
}

/// The routes: (method, path, summary). `openapi.json` is generated from this table, and the router
/// below must serve exactly these (a test checks both directions).
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("get", "/healthz", "Liveness: the process answers"),
    (
        "get",
        "/readyz",
        "Readiness: 200 while serving, 503 while starting or shutting down",
    ),
    ("get", "/openapi.json", "This API description"),
    (
        "get",
        "/metrics",
        "Prometheus metrics: per-subscription counters, lag, delivery latency",
    ),
    (
        "post",
        "/topics",
        "Create a topic: {name, partitions, configs}",
    ),
    ("get", "/topics", "List topics"),
    (
        "get",
        "/topics/{topic}",
        "Describe a topic: partitions with offsets and size, configs",
    ),
    (
        "patch",
        "/topics/{topic}",
        "Alter a topic: {configs: {key: value|null}, partitions}",
    ),
    ("delete", "/topics/{topic}", "Delete a topic and its events"),
    (
        "post",
        "/topics/{topic}/events",
        "Publish JSON events (one or an array), CloudEvents (binary, structured, batch) or one \
         text/plain or application/octet-stream event (?key=, ?partition=, x-busbar-header-*)",
    ),
    (
        "get",
        "/topics/{topic}/partitions/{partition}/events",
        "Read events from ?offset= or ?timestamp=, up to ?limit=, waiting up to ?wait_ms=, \
         shown as ?encoding=auto|json|utf8|base64",
    ),
    ("get", "/groups", "List consumer groups"),
    (
        "get",
        "/groups/{group}",
        "Describe a group: members, assignments, committed offsets, lag",
    ),
    (
        "delete",
        "/groups/{group}",
        "Delete a group without members and its offsets",
    ),
    (
        "post",
        "/groups/{group}/offsets/reset",
        "Reset a group's offsets for a topic (group must be empty)",
    ),
    (
        "post",
        "/rules/test",
        "Test an event pattern against an event: {pattern, event} -> {match}",
    ),
    (
        "post",
        "/subscriptions",
        "Create a subscription: {name, sources, start, pattern, transform, target, delivery, dead_letter_topic}",
    ),
    ("get", "/subscriptions", "List subscriptions with their state, counters and lag"),
    (
        "get",
        "/subscriptions/{name}",
        "Describe a subscription: spec, state, counters, lag, events waiting for retry",
    ),
    (
        "put",
        "/subscriptions/{name}",
        "Replace a subscription's spec (positions and retry state are kept)",
    ),
    (
        "delete",
        "/subscriptions/{name}",
        "Delete a subscription, its positions and retry state (dead letters stay)",
    ),
    ("post", "/subscriptions/{name}/pause", "Stop delivering (positions kept)"),
    ("post", "/subscriptions/{name}/resume", "Start delivering again"),
    (
        "post",
        "/subscriptions/{name}/reset",
        "Move the positions: {to: earliest|latest} | {to: time, time} | {to: offsets, offsets: [{topic, partition, offset}]}",
    ),
    (
        "post",
        "/subscriptions/{name}/replays",
        "Replay a time range through the subscription: {name, from, to, rate}",
    ),
    ("get", "/subscriptions/{name}/replays", "List replay runs"),
    ("get", "/subscriptions/{name}/replays/{replay}", "A replay run's progress"),
    (
        "delete",
        "/subscriptions/{name}/replays/{replay}",
        "Cancel a replay run",
    ),
    (
        "get",
        "/dead-letters/{topic}",
        "List dead letters: ?subscription= &reason= &partition= &from_offset= &to_offset= &limit=",
    ),
    (
        "post",
        "/dead-letters/{topic}/redrive",
        "Deliver dead letters again through their subscriptions: {subscription, reason, partition, from_offset, to_offset, limit}",
    ),
];

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(app): State<App>) -> impl IntoResponse {
    if app.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready"})),
        )
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see GET /openapi.json")
}

async fn not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route; see GET /openapi.json",
    )
}

/// The router over `app`.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi::handler))
        .route("/metrics", get(metrics::handler))
        .route("/topics", post(topics::create).get(topics::list))
        .route(
            "/topics/{topic}",
            get(topics::describe)
                .patch(topics::alter)
                .delete(topics::delete),
        )
        .route("/topics/{topic}/events", post(events::publish))
        .route(
            "/topics/{topic}/partitions/{partition}/events",
            get(events::read),
        )
        .route("/groups", get(groups::list))
        .route(
            "/groups/{group}",
            get(groups::describe).delete(groups::delete),
        )
        .route("/groups/{group}/offsets/reset", post(groups::reset))
        .route("/groups/{group}/consumers", post(consumers::create))
        .route(
            "/groups/{group}/consumers/{consumer}",
            get(consumers::describe).delete(consumers::close),
        )
        .route(
            "/groups/{group}/consumers/{consumer}/events",
            get(consumers::poll),
        )
        .route(
            "/groups/{group}/consumers/{consumer}/commit",
            post(consumers::commit),
        )
        .route("/groups/{group}/stream", get(consumers::stream_group))
        .route(
            "/topics/{topic}/partitions/{partition}/stream",
            get(consumers::stream_partition),
        )
        .route("/rules/test", post(rules::test))
        .route(
            "/subscriptions",
            post(subscriptions::create).get(subscriptions::list),
        )
        .route(
            "/subscriptions/{name}",
            get(subscriptions::describe)
                .put(subscriptions::update)
                .delete(subscriptions::delete),
        )
        .route("/subscriptions/{name}/pause", post(subscriptions::pause))
        .route("/subscriptions/{name}/resume", post(subscriptions::resume))
        .route("/subscriptions/{name}/reset", post(subscriptions::reset))
        .route(
            "/subscriptions/{name}/replays",
            post(subscriptions::start_replay).get(subscriptions::replays),
        )
        .route(
            "/subscriptions/{name}/replays/{replay}",
            get(subscriptions::replay).delete(subscriptions::cancel_replay),
        )
        .route("/dead-letters/{topic}", get(subscriptions::dead_letters))
        .route(
            "/dead-letters/{topic}/redrive",
            post(subscriptions::redrive),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(not_allowed)
        .with_state(app)
}

/// Serves the API on `listener` until `shutdown` resolves, then stops accepting, finishes
/// in-flight requests and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    bus: Arc<Bus>,
    config: HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let ready = Arc::new(AtomicBool::new(true));
    let app = App {
        broker: bus.broker().clone(),
        bus,
        config: Arc::new(config),
        consumers: Arc::default(),
        ready: ready.clone(),
    };
    let shutdown = async move {
        shutdown.await;
        ready.store(false, Ordering::SeqCst);
    };
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
