//! Client quotas over HTTP (Kafka's model, `busbar_broker::quota`): `GET /quotas` lists every
//! entity and its quotas, `PUT /quotas` replaces one entity's, `DELETE /quotas` removes them. An
//! entity is `{"user": "alice"}`, `{"client-id": "app"}` or both; `null` names Kafka's
//! `<default>`. While authentication is on only super users may read or change them (Kafka's
//! DESCRIBE_CONFIGS / ALTER_CONFIGS on the cluster), as over Kafka (48/49).
//!
//! [`enforce`] applies the byte-rate quotas to the event routes per user (the authenticated one,
//! `ANONYMOUS` without authentication; HTTP has no client id, so `clients/<default>` applies
//! too): publishing counts its body against `producer_byte_rate`, reading counts its answer
//! against `consumer_byte_rate`. A user over its quota is answered 429 `throttled` with
//! `Retry-After` (seconds) and nothing is stored or read.

use crate::auth::Principal;
use crate::body;
use crate::error::{ApiError, ApiResult};
use crate::App;
use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use busbar_broker::auth::acl::ANONYMOUS;
use busbar_broker::quota::{Entity, Kind, Values};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use utoipa::ToSchema;

/// An entity: `"user"` and/or `"client-id"`, each a name or `null` for `<default>`.
pub type EntityJson = BTreeMap<String, Option<String>>;

/// `PUT /quotas` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaSet {
    /// `{"user": "alice"}`, `{"user": null}` (every user without a quota of its own),
    /// `{"user": "alice", "client-id": "app"}`, `{"client-id": null}`, ...
    entity: EntityJson,
    /// `producer_byte_rate`, `consumer_byte_rate` (bytes per second, whole) and
    /// `request_percentage` (percent of one thread); replaces every quota of the entity.
    values: BTreeMap<String, f64>,
}

/// `DELETE /quotas` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaDelete {
    /// The entity whose quotas are removed.
    entity: EntityJson,
}

/// One entity and its quotas.
#[derive(Serialize, ToSchema)]
pub struct Quota {
    entity: EntityJson,
    values: BTreeMap<String, f64>,
}

/// `GET /quotas`.
#[derive(Serialize, ToSchema)]
pub struct QuotaList {
    quotas: Vec<Quota>,
}

fn entity(json: &EntityJson) -> ApiResult<Entity> {
    Entity::from_parts(json.iter().map(|(k, v)| (k.as_str(), v.as_deref())))
        .map_err(|e| ApiError::bad_request(format!("entity: {e}")))
}

fn view(e: &Entity, values: Values) -> Quota {
    let entity = e
        .parts()
        .into_iter()
        .map(|(k, n)| (k.to_string(), n.map(str::to_string)))
        .collect();
    Quota { entity, values }
}

/// Lists every quota entity and its quotas.
#[utoipa::path(get, path = "/quotas", operation_id = "list_quotas", tag = "quotas", responses(
    (status = 200, description = "The quotas", body = QuotaList),
    (status = 403, description = "No DESCRIBE_CONFIGS on the cluster")))]
pub async fn list(State(app): State<App>) -> ApiResult<Json<QuotaList>> {
    let quotas = app.broker.quotas().list();
    let quotas = quotas.into_iter().map(|(e, v)| view(&e, v)).collect();
    Ok(Json(QuotaList { quotas }))
}

/// Replaces one entity's quotas (an empty `values` removes them).
#[utoipa::path(put, path = "/quotas", operation_id = "set_quotas", tag = "quotas",
    request_body = QuotaSet, responses(
        (status = 200, description = "Stored", body = Quota),
        (status = 400, description = "Bad entity, key or value"),
        (status = 403, description = "No ALTER_CONFIGS on the cluster"),
        (status = 413, description = "Body over `http.json_bytes_max`"),
        (status = 415, description = "Not application/json"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn set(State(app): State<App>, headers: HeaderMap, body: Body) -> ApiResult<Json<Quota>> {
    body::require_json(&headers)?;
    let req: QuotaSet = body::json(&body::read(body, app.config.json_bytes_max).await?)?;
    let e = entity(&req.entity)?;
    let values: Values = req.values.into_iter().collect();
    app.broker.quotas().replace(&e, values.clone()).await?;
    Ok(Json(view(&e, values)))
}

/// Removes every quota of one entity.
#[utoipa::path(delete, path = "/quotas", operation_id = "delete_quotas", tag = "quotas",
    request_body = QuotaDelete, responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Bad entity"),
        (status = 403, description = "No ALTER_CONFIGS on the cluster"),
        (status = 404, description = "The entity has no quota"),
        (status = 413, description = "Body over `http.json_bytes_max`"),
        (status = 415, description = "Not application/json"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn delete(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<StatusCode> {
    body::require_json(&headers)?;
    let req: QuotaDelete = body::json(&body::read(body, app.config.json_bytes_max).await?)?;
    let e = entity(&req.entity)?;
    let quotas = app.broker.quotas();
    if !quotas.list().iter().any(|(x, _)| *x == e) {
        return Err(ApiError::not_found("the entity has no quota"));
    }
    quotas.replace(&e, Values::new()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The quota an event route is measured against: publish (POST) counts its body against the
/// produce rate, reads count their answer against the fetch rate.
fn kind_of(method: &Method, path: &str) -> Option<Kind> {
    match (method, path) {
        (&Method::POST, "/topics/{topic}/events") => Some(Kind::Produce),
        (&Method::GET, "/topics/{topic}/partitions/{partition}/events")
        | (&Method::GET, "/groups/{group}/consumers/{consumer}/events") => Some(Kind::Fetch),
        _ => None,
    }
}

/// 429 `throttled` with `Retry-After` (whole seconds, at least 1).
fn throttled(ms: u64) -> Response {
    let secs = ms.div_ceil(1000).max(1);
    let message = format!("over the client quota; retry in {secs} s");
    let mut r = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "throttled", message).into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// The quota middleware of the event routes (see the module documentation).
pub async fn enforce(State(app): State<App>, req: Request, next: Next) -> Response {
    let quotas = app.broker.quotas();
    let path = req.extensions().get::<MatchedPath>().map(|p| p.as_str());
    let kind = path.and_then(|p| kind_of(req.method(), p));
    let Some(kind) = kind.filter(|_| quotas.any()) else {
        return next.run(req).await;
    };
    let user = req
        .extensions()
        .get::<Principal>()
        .map_or(ANONYMOUS.to_string(), |p| p.0.clone());
    let ms = quotas.throttle_now(&user, "", kind);
    if ms > 0 {
        return throttled(ms);
    }
    // The body's bytes as the handler takes them (chunked or not).
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let (parts, body) = req.into_parts();
    let body = body.into_data_stream().inspect(move |chunk| {
        if let Ok(b) = chunk {
            counter.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
    });
    let req = Request::from_parts(parts, Body::from_stream(body));
    let resp = next.run(req).await;
    if resp.status().is_success() {
        let bytes = match kind {
            Kind::Produce => sent.load(Ordering::Relaxed),
            _ => resp.body().size_hint().exact().unwrap_or(0),
        };
        quotas.record(&user, "", kind, bytes as f64, true);
    }
    resp
}
