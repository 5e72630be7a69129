//! Subscription routes: create, list, describe (with counters and lag), update, pause, resume,
//! delete; replay runs; and dead letters (list with filters, redrive). Bodies are validated by the
//! bus, whose errors name the offending field (`invalid_subscription`).

use crate::body;
use crate::error::{ApiError, ApiResult};
use crate::events::query_int;
use crate::render::{Encoding, EventView};
use crate::App;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use busbar_bus::{self as bus, BusError, Filter, ReplaySpec, ResetTo};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;

async fn json_body(app: &App, headers: &HeaderMap, body: Body) -> ApiResult<Value> {
    body::require_json(headers)?;
    body::json(&body::read(body, app.config.json_bytes_max).await?)
}

/// A subscription as answered: header values of an HTTP target are masked (names shown); a PUT
/// may send the mask back to keep a value.
fn view_json(v: &bus::SubscriptionView) -> Value {
    let shown = bus::SubscriptionView {
        spec: v.spec.masked(),
        ..v.clone()
    };
    serde_json::to_value(shown).expect("view encodes")
}

pub async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let spec = bus::spec::from_json(&json_body(&app, &headers, body).await?)?;
    let v = app.bus.create(spec).await?;
    Ok((StatusCode::CREATED, Json(view_json(&v))))
}

pub async fn list(State(app): State<App>) -> Json<Value> {
    let subs: Vec<Value> = app.bus.list().await.iter().map(view_json).collect();
    Json(json!({ "subscriptions": subs }))
}

pub async fn describe(State(app): State<App>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(view_json(&app.bus.get(&name).await?)))
}

/// `PUT` replaces the whole spec; `name` may be left out of the body.
pub async fn update(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let mut v = json_body(&app, &headers, body).await?;
    if let Value::Object(m) = &mut v {
        m.entry("name")
            .or_insert_with(|| Value::String(name.clone()));
    }
    let spec = bus::spec::from_json(&v)?;
    Ok(Json(view_json(&app.bus.update(&name, spec).await?)))
}

pub async fn delete(State(app): State<App>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    app.bus.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn pause(State(app): State<App>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(view_json(&app.bus.set_paused(&name, true).await?)))
}

pub async fn resume(State(app): State<App>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(view_json(&app.bus.set_paused(&name, false).await?)))
}

/// Moves the positions; answers `{"positions": [{topic, partition, offset}]}`.
pub async fn reset(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let v = json_body(&app, &headers, body).await?;
    let to: ResetTo = serde_path_to_error::deserialize(&v).map_err(bad_field)?;
    Ok(Json(
        json!({ "positions": app.bus.reset(&name, to).await? }),
    ))
}

fn bad_field(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    ApiError::from(BusError::InvalidSubscription {
        path: if path == "." { "body".into() } else { path },
        reason: e.inner().to_string(),
    })
}

pub async fn start_replay(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let v = json_body(&app, &headers, body).await?;
    let spec: ReplaySpec = serde_path_to_error::deserialize(&v).map_err(bad_field)?;
    let run = app.bus.start_replay(&name, spec).await?;
    Ok((StatusCode::ACCEPTED, Json(json!(run))))
}

pub async fn replays(State(app): State<App>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "replays": app.bus.replays(&name).await? })))
}

pub async fn replay(
    State(app): State<App>,
    Path((name, run)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(app.bus.replay(&name, &run, false).await?)))
}

pub async fn cancel_replay(
    State(app): State<App>,
    Path((name, run)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(app.bus.replay(&name, &run, true).await?)))
}

fn filter_of(q: &HashMap<String, String>) -> ApiResult<(Filter, usize)> {
    for k in q.keys() {
        if !matches!(
            k.as_str(),
            "subscription"
                | "reason"
                | "partition"
                | "from_offset"
                | "to_offset"
                | "limit"
                | "encoding"
        ) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {k:?}"
            )));
        }
    }
    let filter = Filter {
        subscription: q.get("subscription").cloned(),
        reason: q.get("reason").cloned(),
        partition: query_int(q, "partition", 0, i32::MAX.into())?.map(|p| p as u32),
        from_offset: query_int(q, "from_offset", 0, i64::MAX)?.map(|o| o as u64),
        to_offset: query_int(q, "to_offset", 0, i64::MAX)?.map(|o| o as u64),
    };
    let limit = query_int(q, "limit", 1, bus::DEAD_LETTERS_MAX as i64)?.unwrap_or(100) as usize;
    Ok((filter, limit))
}

/// A dead letter with its event (a struct, not a `Value`, so values keep their JSON text).
#[derive(Serialize)]
struct Letter<'a> {
    #[serde(flatten)]
    letter: &'a bus::DeadLetter,
    event: EventView<'a>,
}

#[derive(Serialize)]
struct Letters<'a> {
    dead_letters: Vec<Letter<'a>>,
}

pub async fn dead_letters(
    State(app): State<App>,
    Path(topic): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let (filter, limit) = filter_of(&q)?;
    let encoding = Encoding::from_query(&q)?;
    let found = app.bus.dead_letters(&topic, &filter, limit).await?;
    let dead_letters = found
        .iter()
        .map(|(letter, ev)| Letter {
            letter,
            event: EventView::new(ev, encoding),
        })
        .collect();
    Ok(Json(Letters { dead_letters }).into_response())
}

pub async fn redrive(
    State(app): State<App>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let mut v = json_body(&app, &headers, body).await?;
    let limit = match v.as_object_mut().and_then(|m| m.remove("limit")) {
        None => bus::DEAD_LETTERS_MAX,
        Some(l) => l
            .as_u64()
            .ok_or_else(|| ApiError::bad_request("limit: must be a positive integer"))?
            as usize,
    };
    let force = match v.as_object_mut().and_then(|m| m.remove("force")) {
        None => false,
        Some(f) => f
            .as_bool()
            .ok_or_else(|| ApiError::bad_request("force: must be true or false"))?,
    };
    let filter: Filter = serde_path_to_error::deserialize(&v)
        .map_err(|e| ApiError::bad_request(format!("{}: {}", e.path(), e.inner())))?;
    if limit == 0 || limit > bus::DEAD_LETTERS_MAX {
        return Err(ApiError::bad_request(format!(
            "limit: {limit} is outside 1..={}",
            bus::DEAD_LETTERS_MAX
        )));
    }
    let summary = app.bus.redrive(&topic, &filter, limit, force).await?;
    Ok(Json(json!(summary)))
}
