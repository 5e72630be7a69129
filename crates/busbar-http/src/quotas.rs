//! Client quotas over HTTP (Kafka's model, `busbar_broker::quota`): `GET /quotas` lists every
//! entity and its quotas, `PUT /quotas` replaces one entity's, `DELETE /quotas` removes them. An
//! entity is `{"user": "alice"}`, `{"client-id": "app"}` or both; `null` names Kafka's
//! `<default>`. While authentication is on only super users may read or change them (Kafka's
//! DESCRIBE_CONFIGS / ALTER_CONFIGS on the cluster), as over Kafka (48/49).
//!
//! [`enforce`] applies the byte-rate quotas to the event routes per user (the authenticated one,
//! `ANONYMOUS` without authentication; HTTP has no client id, so `clients/<default>` applies
//! too): publishing counts its body against `producer_byte_rate`, reading (partition reads,
//! consumer polls, dead letters) and streaming (the partition and group SSE streams) count their
//! answer against `consumer_byte_rate`. A user over its quota is answered 429 `throttled` with
//! `Retry-After` (seconds) and nothing is stored or read. A publish's `Content-Length` is
//! recorded as it is admitted, under the same lock as the check (taken back if it is refused),
//! so concurrent publishes see each other; a chunked body counts as it is read, an answer as it
//! is produced. A stream is never cut: a chunk that puts the rate over the quota is held for the
//! throttle time before it is sent.

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
    let req: QuotaSet = body::json_request(&headers, body, app.config.json_bytes_max).await?;
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
    let req: QuotaDelete = body::json_request(&headers, body, app.config.json_bytes_max).await?;
    let e = entity(&req.entity)?;
    let quotas = app.broker.quotas();
    if !quotas.list().iter().any(|(x, _)| *x == e) {
        return Err(ApiError::not_found("the entity has no quota"));
    }
    quotas.replace(&e, Values::new()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How an event route is measured.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Metered {
    /// Publishing: its body against the produce rate.
    Publish,
    /// A read answered whole: its answer against the fetch rate.
    Read,
    /// A read streamed (server-sent events): each chunk against the fetch rate, paced.
    Stream,
}

/// The quota an event route is measured against: publish (POST) counts its body against the
/// produce rate, reads and streams count their answer against the fetch rate.
fn metered(method: &Method, path: &str) -> Option<Metered> {
    match (method, path) {
        (&Method::POST, "/topics/{topic}/events") => Some(Metered::Publish),
        (&Method::GET, "/topics/{topic}/partitions/{partition}/events")
        | (&Method::GET, "/groups/{group}/consumers/{consumer}/events")
        | (&Method::GET, "/dead-letters/{topic}") => Some(Metered::Read),
        (&Method::GET, "/topics/{topic}/partitions/{partition}/stream")
        | (&Method::GET, "/groups/{group}/stream") => Some(Metered::Stream),
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
    let path = req.extensions().get::<MatchedPath>().map(|p| p.as_str());
    let how = path.and_then(|p| metered(req.method(), p));
    let Some(how) = how.filter(|_| app.broker.quotas().any()) else {
        return next.run(req).await;
    };
    let user = req
        .extensions()
        .get::<Principal>()
        .map_or(ANONYMOUS.to_string(), |p| p.0.clone());
    let kind = match how {
        Metered::Publish => Kind::Produce,
        Metered::Read | Metered::Stream => Kind::Fetch,
    };
    // A publish's declared length is reserved as it is admitted, so concurrent ones see it.
    let declared = (how == Metered::Publish)
        .then(|| req.body().size_hint().exact())
        .flatten();
    let reserved = declared.unwrap_or(0) as f64;
    if let Err(ms) = app.broker.quotas().admit(&user, "", kind, reserved) {
        return throttled(ms);
    }
    let req = if how == Metered::Publish && declared.is_none() {
        // Chunked: its bytes count as the handler reads them.
        let (parts, body) = req.into_parts();
        Request::from_parts(parts, meter(body, &app, &user, kind, false))
    } else {
        req
    };
    let resp = next.run(req).await;
    let quotas = app.broker.quotas();
    if !resp.status().is_success() {
        // A refused publish stored nothing: its reservation is taken back.
        quotas.record(&user, "", kind, -reserved, true);
        return resp;
    }
    match (how, resp.body().size_hint().exact()) {
        (Metered::Publish, _) => resp,
        (Metered::Read, Some(bytes)) => {
            quotas.record(&user, "", kind, bytes as f64, true);
            resp
        }
        (Metered::Read | Metered::Stream, _) => {
            let (parts, body) = resp.into_parts();
            let paced = how == Metered::Stream;
            Response::from_parts(parts, meter(body, &app, &user, kind, paced))
        }
    }
}

/// `body` with each chunk recorded against `user`'s `kind` quota as it passes; with `pace`, a
/// chunk that puts the rate over the quota is held for the throttle time (a stream slows down
/// rather than failing midway).
fn meter(body: Body, app: &App, user: &str, kind: Kind, pace: bool) -> Body {
    let (app, user) = (app.clone(), user.to_string());
    let stream = body.into_data_stream().then(move |chunk| {
        let ms = match &chunk {
            Ok(b) => app
                .broker
                .quotas()
                .record(&user, "", kind, b.len() as f64, true),
            Err(_) => 0,
        };
        async move {
            if pace && ms > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            chunk
        }
    });
    Body::from_stream(stream)
}
