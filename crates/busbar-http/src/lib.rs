//! busbar-http: the HTTP front end. It translates requests into `Broker` calls and answers JSON;
//! it decides nothing itself. Errors map to statuses in `error.rs` only. [`serve`] takes an
//! already-bound listener and a shutdown future, so tests bind port 0. With `auth.enabled`, every
//! route but the probes needs HTTP Basic credentials (`auth`) and passes its ACL check
//! (`authz`). The accept path (HTTPS, the header-read timeout, connections per address) is in
//! `accept`.

mod accept;
mod acls;
mod audit;
mod auth;
mod authz;
mod body;
mod cloudevents;
mod console;
mod consumers;
mod error;
mod events;
mod groups;
mod metrics;
mod openapi;
mod plain;
mod quotas;
mod render;
mod rules;
mod schema_codec;
mod schema_registry;
mod schemas;
mod subscriptions;
pub use busbar_broker::time;
mod tokens;
mod topics;
mod users;

pub use accept::{CertPrincipal, HttpTls};
pub use error::ApiError;
pub use events::{decode_publish, decode_publish_with};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use busbar_broker::Broker;
use busbar_bus::Bus;
use busbar_schema::enforce::Enforcer;
use busbar_schema::Registry;
use serde_json::json;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    /// A request's headers (and, with HTTPS, the TLS handshake) must arrive within this; an idle
    /// keep-alive connection is closed after it too. Default 30 s (hyper's own default).
    pub header_read_timeout: std::time::Duration,
    /// Most open connections from one client address. Default 1,000.
    pub connections_per_ip: usize,
    /// Most open HTTP connections in all (`http.connections_max`); more are closed at once.
    /// Default 1,000.
    pub connections_max: usize,
    /// A request's body must arrive whole within this from its headers, or it answers 408 and
    /// the connection closes (`http.body_read_timeout_ms`). Default 30 s.
    pub body_read_timeout: std::time::Duration,
    /// A response write that makes no progress for this long closes the connection
    /// (`http.write_timeout_ms`): a client that does not read cannot pin a task and its
    /// buffers. Default 30 s (as `kafka.write_timeout_ms`).
    pub write_timeout: std::time::Duration,
    /// Most bytes of request bodies being read at once, across all connections
    /// (`http.body_bytes_budget`); a body that would pass it answers 503. Default 256 MiB.
    pub body_bytes_budget: usize,
    /// Serve HTTPS with this (`http.tls`); `None`: plain HTTP.
    pub tls: Option<HttpTls>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            publish_bytes_max: 16 << 20,
            json_bytes_max: 1 << 20,
            consumers_max: 1000,
            consumer_idle_timeout: std::time::Duration::from_secs(300),
            header_read_timeout: std::time::Duration::from_secs(30),
            connections_per_ip: 1_000,
            connections_max: 1_000,
            body_read_timeout: std::time::Duration::from_secs(30),
            write_timeout: std::time::Duration::from_secs(30),
            body_bytes_budget: 256 << 20,
            tls: None,
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
    /// The schema registry's routes, served under `/schema-registry/` (`None`: not running).
    schema_registry: Option<Router>,
    /// Encodes and decodes framed payloads (`?schema=`, `?decode=schema`); `None`: no registry.
    schemas: Option<Arc<Enforcer>>,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "health",
    responses((status = 200, description = "Alive", body = schemas::Health)))]
async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Readiness: 200 while serving, 503 while starting or shutting down.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "health", responses(
    (status = 200, description = "Serving", body = schemas::Health),
    (status = 503, description = "Starting or shutting down", body = schemas::Health)))]
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

fn not_found_response() -> axum::response::Response {
    ApiError::not_found("no such route; see GET /openapi.json").into_response()
}

async fn not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route; see GET /openapi.json",
    )
}

/// Every route, each from its handler's `#[utoipa::path]`: the router and `/openapi.json` are
/// both built from this, so neither can list a route the other lacks. Add routes only here and
/// only with `routes!` (a test reads this file for any other way in).
fn api() -> OpenApiRouter<App> {
    use subscriptions as subs;
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(openapi::handler))
        .routes(routes!(metrics::handler))
        .routes(routes!(topics::create, topics::list))
        .routes(routes!(topics::describe, topics::alter, topics::delete))
        .routes(routes!(topics::delete_records))
        .routes(routes!(events::publish))
        .routes(routes!(events::read))
        .routes(routes!(consumers::stream_partition))
        .routes(routes!(groups::list))
        .routes(routes!(groups::describe, groups::delete))
        .routes(routes!(groups::reset))
        .routes(routes!(consumers::create))
        .routes(routes!(consumers::describe, consumers::close))
        .routes(routes!(consumers::poll))
        .routes(routes!(consumers::commit))
        .routes(routes!(consumers::stream_group))
        .routes(routes!(rules::test))
        .routes(routes!(subs::create, subs::list))
        .routes(routes!(
            subs::describe,
            subs::update,
            subs::patch,
            subs::delete
        ))
        .routes(routes!(subs::pause))
        .routes(routes!(subs::resume))
        .routes(routes!(subs::reset))
        .routes(routes!(subs::start_replay, subs::replays))
        .routes(routes!(subs::replay, subs::cancel_replay))
        .routes(routes!(subs::dead_letters))
        .routes(routes!(subs::redrive))
        .routes(routes!(users::create, users::list))
        .routes(routes!(users::delete))
        .routes(routes!(tokens::create, tokens::list))
        .routes(routes!(tokens::revoke))
        .routes(routes!(quotas::list, quotas::set, quotas::delete))
        .routes(routes!(acls::list, acls::create, acls::delete))
}

/// The OpenAPI document `GET /openapi.json` answers.
pub fn openapi_document() -> &'static serde_json::Value {
    openapi::document()
}

/// What no route serves: the console (`/`, `/ui/`), then the schema registry under
/// `/schema-registry/`, else 404.
async fn fallback(state: axum::extract::State<App>, req: axum::extract::Request) -> Response {
    match console::serve(&req) {
        Some(r) => r,
        None => schema_registry::fallback(state, req).await,
    }
}

/// The router over `app`.
pub fn router(app: App) -> Router {
    let (routes, _) = api().split_for_parts();
    routes
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            quotas::enforce,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            authz::enforce,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            metrics::timed,
        ))
        .fallback(fallback)
        .method_not_allowed_fallback(not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            audit::admin,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::check,
        ))
        .layer(axum::middleware::from_fn(
            schema_registry::confluent_errors_under_prefix,
        ))
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
    serve_with(listener, bus, None, config, shutdown).await
}

fn app(bus: Arc<Bus>, schemas: Option<Arc<Enforcer>>, config: &HttpConfig) -> App {
    let broker = bus.broker().clone();
    App {
        schema_registry: (schemas.as_ref())
            .map(|s| schema_registry::mounted(s.registry().clone(), broker.clone())),
        schemas,
        broker,
        bus,
        config: Arc::new(config.clone()),
        consumers: Arc::default(),
        ready: Arc::new(AtomicBool::new(true)),
    }
}

/// [`serve`] with the schema registry under `/schema-registry/` when `registry` is given (and
/// `?schema=` / `?decode=schema` with the default codec limits).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    bus: Arc<Bus>,
    registry: Option<Arc<Registry>>,
    config: HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let schemas = registry.map(|r| Arc::new(Enforcer::new(r, Default::default())));
    serve_with_schemas(listener, bus, schemas, config, shutdown).await
}

/// [`serve`] with the schema registry of `schemas` under `/schema-registry/`, encoding
/// publishes with `?schema=` and decoding reads with `?decode=schema` through it.
pub async fn serve_with_schemas(
    listener: tokio::net::TcpListener,
    bus: Arc<Bus>,
    schemas: Option<Arc<Enforcer>>,
    config: HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app(bus, schemas, &config);
    let ready = app.ready.clone();
    let shutdown = async move {
        shutdown.await;
        ready.store(false, Ordering::SeqCst);
    };
    accept::serve(listener, router(app), &config, shutdown).await
}

/// Serves the schema registry alone on `listener` (`schema_registry.addr`), with the main API's
/// authentication, audit and connection limits, until `shutdown` resolves.
pub async fn serve_schema_registry(
    listener: tokio::net::TcpListener,
    bus: Arc<Bus>,
    registry: Arc<Registry>,
    config: HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app(bus, None, &config);
    schema_registry::serve(listener, app, registry, shutdown).await
}
