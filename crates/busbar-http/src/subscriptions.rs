//! Subscription routes: create, list, describe (with counters and lag), update, pause, resume,
//! delete; replay runs; and dead letters (list with filters, redrive). Bodies are validated by the
//! bus, whose errors name the offending field (`invalid_subscription`).

use crate::authz::Caller;
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
use busbar_broker::auth::acl::{Operation, ResourceType};
use busbar_bus::{self as bus, BusError, Filter, ReplaySpec, ResetTo};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;

async fn json_body(app: &App, headers: &HeaderMap, body: Body) -> ApiResult<Value> {
    body::require_json(headers)?;
    body::json(&body::read(body, app.config.json_bytes_max).await?)
}

/// 403 unless the caller may READ every source of `spec` and WRITE its target topic and its
/// dead-letter topic: a subscription moves events the caller could move itself, no more.
fn may_route(app: &App, caller: &Caller, spec: &bus::SubscriptionSpec) -> ApiResult<()> {
    spec.topics().iter().try_for_each(|(field, topic)| {
        let op = match field.starts_with("sources") {
            true => Operation::Read,
            false => Operation::Write,
        };
        caller.require(app, op, ResourceType::Topic, topic)
    })
}

/// The spec a PUT body would make (as `Bus::replace` reads it), to check before it is applied.
fn replaced_spec(name: &str, body: &Value) -> ApiResult<bus::SubscriptionSpec> {
    let mut v = body.clone();
    if let Value::Object(m) = &mut v {
        m.entry("name")
            .or_insert_with(|| Value::String(name.into()));
    }
    bus::patch::without_view_fields(&mut v);
    Ok(bus::spec::from_json(&v)?)
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

/// Creates a subscription.
#[utoipa::path(post, path = "/subscriptions", operation_id = "create_subscription", tag = "subscriptions",
    request_body = crate::schemas::SubscriptionSpec, responses(
        (status = 201, description = "Created", body = crate::schemas::Subscription),
        (status = 400, description = "Invalid spec (the field is named)"),
        (status = 409, description = "The subscription exists, or a limit is reached"),
        (status = 413, description = "Body over `http.json_bytes_max`"),
        (status = 415, description = "Not application/json"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn create(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let spec = bus::spec::from_json(&json_body(&app, &headers, body).await?)?;
    caller.require(
        &app,
        Operation::Create,
        ResourceType::Subscription,
        &spec.name,
    )?;
    may_route(&app, &caller, &spec)?;
    // With authentication on, it runs as its creator (busbar_bus::Creator).
    let creator = (caller.user.clone())
        .filter(|_| app.broker.auth().enabled())
        .map(|user| bus::Creator {
            user,
            host: caller.host,
        });
    let v = app.bus.create_as(spec, creator).await?;
    Ok((StatusCode::CREATED, Json(view_json(&v))))
}

/// Lists the subscriptions the caller may DESCRIBE, with their state, counters and lag.
#[utoipa::path(get, path = "/subscriptions", operation_id = "list_subscriptions", tag = "subscriptions",
    responses((status = 200, description = "The subscriptions", body = crate::schemas::SubscriptionList)))]
pub async fn list(State(app): State<App>, caller: Caller) -> Json<Value> {
    let subs: Vec<Value> = (app.bus.list().await.iter())
        .filter(|v| {
            let name = &v.spec.name;
            caller.may(&app, Operation::Describe, ResourceType::Subscription, name)
        })
        .map(view_json)
        .collect();
    Json(json!({ "subscriptions": subs }))
}

/// Describes a subscription: spec, state, counters, lag, events waiting for retry.
#[utoipa::path(get, path = "/subscriptions/{name}", operation_id = "describe_subscription", tag = "subscriptions", params(("name" = String, Path)),
    responses(
        (status = 200, description = "The subscription", body = crate::schemas::Subscription),
        (status = 404, description = "No such subscription")))]
pub async fn describe(State(app): State<App>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(view_json(&app.bus.get(&name).await?)))
}

/// `PUT` replaces the whole spec; `name` may be left out of the body, and the read-only fields
/// a `GET` adds (state, counters, ...) are accepted with a value a read could show now and
/// dropped (`busbar_bus::patch::check_view_fields`), so a read can be sent back as it is.
#[utoipa::path(put, path = "/subscriptions/{name}", operation_id = "replace_subscription", tag = "subscriptions", params(("name" = String, Path)),
    description = "Replaces the spec (positions and retry state are kept; a body equal to the \
        current spec, `***` header values resolved, restarts nothing). Read-only fields of a read \
        are accepted only with a value a read could show now.",
    request_body = crate::schemas::SubscriptionReplace, responses(
        (status = 200, description = "The subscription", body = crate::schemas::Subscription),
        (status = 400, description = "Invalid spec (the field is named)"),
        (status = 404, description = "No such subscription"),
        (status = 409, description = "Declared in the configuration file, which owns it"),
        (status = 413, description = "Body over `http.json_bytes_max`"),
        (status = 415, description = "Not application/json"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn update(
    State(app): State<App>,
    Path(name): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let v = json_body(&app, &headers, body).await?;
    if app.broker.auth().enabled() {
        may_route(&app, &caller, &replaced_spec(&name, &v)?)?;
    }
    Ok(Json(view_json(&app.bus.replace(&name, &v).await?)))
}

/// `PATCH` changes the fields the body gives (a JSON merge patch of the spec: objects merge,
/// `null` removes or resets to the default; `busbar_bus::patch`) and keeps the others.
#[utoipa::path(patch, path = "/subscriptions/{name}", tag = "subscriptions", params(("name" = String, Path)),
    description = "Changes the fields given (JSON merge patch, RFC 7396: objects merge field by \
        field, null removes an optional field or resets one to its default; a target of the other \
        kind replaces the target; read-only fields of a read are accepted only with a value a \
        read could show now, so `{\"state\": \"paused\"}` is refused: pause has its own route). \
        A target moved to another scheme, host or port must give each stored header again (or \
        null to remove it). Positions and retry state are kept; a patch that changes nothing \
        restarts nothing.",
    request_body(content(
        (crate::schemas::SubscriptionPatch = "application/json"),
        (crate::schemas::SubscriptionPatch = "application/merge-patch+json"))), responses(
        (status = 200, description = "The subscription", body = crate::schemas::Subscription),
        (status = 400, description = "Invalid patch or result (the field is named); nothing changed"),
        (status = 404, description = "No such subscription"),
        (status = 409, description = "Declared in the configuration file, which owns it"),
        (status = 413, description = "Body over `http.json_bytes_max`"),
        (status = 415, description = "Not application/json or application/merge-patch+json"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn patch(
    State(app): State<App>,
    Path(name): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    if body::media_type(&headers).as_deref() != Some("application/merge-patch+json") {
        body::require_json(&headers)?;
    }
    let v = body::json(&body::read(body, app.config.json_bytes_max).await?)?;
    if !app.broker.auth().enabled() {
        return Ok(Json(view_json(&app.bus.patch(&name, &v).await?)));
    }
    // Checked on the spec the patch makes of the stored one, under the lock that stores it: a
    // concurrent change cannot land between the check and the write.
    let check = |merged: &bus::SubscriptionSpec| may_route(&app, &caller, merged);
    Ok(Json(view_json(
        &app.bus.patch_checked(&name, &v, check).await??,
    )))
}

/// Deletes a subscription, its positions and retry state (dead letters stay).
#[utoipa::path(delete, path = "/subscriptions/{name}", operation_id = "delete_subscription", tag = "subscriptions", params(("name" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such subscription"),
        (status = 409, description = "Declared in the configuration file, which owns it"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn delete(State(app): State<App>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    app.bus.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stops delivering (positions kept).
#[utoipa::path(post, path = "/subscriptions/{name}/pause", operation_id = "pause_subscription", tag = "subscriptions", params(("name" = String, Path)),
    responses(
        (status = 200, description = "The subscription", body = crate::schemas::Subscription),
        (status = 404, description = "No such subscription"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn pause(State(app): State<App>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(view_json(&app.bus.set_paused(&name, true).await?)))
}

/// Starts delivering again.
#[utoipa::path(post, path = "/subscriptions/{name}/resume", operation_id = "resume_subscription", tag = "subscriptions", params(("name" = String, Path)),
    responses(
        (status = 200, description = "The subscription", body = crate::schemas::Subscription),
        (status = 404, description = "No such subscription"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn resume(State(app): State<App>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(view_json(&app.bus.set_paused(&name, false).await?)))
}

/// Moves the positions; answers `{"positions": [{topic, partition, offset}]}`.
#[utoipa::path(post, path = "/subscriptions/{name}/reset", operation_id = "reset_subscription", tag = "subscriptions", params(("name" = String, Path)),
    request_body = crate::schemas::SubscriptionReset, responses(
        (status = 200, description = "The new positions", body = crate::schemas::Positions),
        (status = 400, description = "Bad body (the field is named)"),
        (status = 404, description = "No such subscription"),
        (status = 413, description = "Body over `http.json_bytes_max`"),
        (status = 415, description = "Not application/json"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn reset(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let v = json_body(&app, &headers, body).await?;
    let to: ResetTo = serde_path_to_error::deserialize(&v).map_err(bad_field)?;
    // Not cut short by a client that goes away: in cluster mode a reset pauses the subscription
    // and must see it through (resume it) whatever happens to the request.
    let bus = app.bus.clone();
    let moved = tokio::spawn(async move { bus.reset(&name, to).await })
        .await
        .map_err(|e| BusError::Storage(format!("the reset stopped: {e}")))??;
    Ok(Json(json!({ "positions": moved })))
}

fn bad_field(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    ApiError::from(BusError::InvalidSubscription {
        path: if path == "." { "body".into() } else { path },
        reason: e.inner().to_string(),
    })
}

/// Replays a time range through the subscription, at most `rate` events a second. A `STOPPED`,
/// `INTERRUPTED` or `FAILED` run started again under its name with the same `from` and `to`, while
/// the subscription's spec is unchanged, goes on from its place (its counts too); after a change
/// of the spec it starts over from `from`. Any other request under a finished run's name replaces
/// it. Events gone from the log before the run reaches them are counted as `expired`.
#[utoipa::path(post, path = "/subscriptions/{name}/replays", operation_id = "start_replay", tag = "subscriptions",
    params(("name" = String, Path)), request_body = crate::schemas::ReplayRequest, responses(
        (status = 202, description = "Started", body = crate::schemas::ReplayRun),
        (status = 400, description = "Bad body (the field is named); the subscription is paused; a run of that name is running; or the run's record would exceed 1,000,000 bytes (too many source partitions)"),
        (status = 404, description = "No such subscription"),
        (status = 409, description = "A limit is reached"),
        (status = 413, description = "Body over `http.json_bytes_max`"),
        (status = 415, description = "Not application/json"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
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

/// Lists the subscription's replay runs.
#[utoipa::path(get, path = "/subscriptions/{name}/replays", operation_id = "list_replays", tag = "subscriptions", params(("name" = String, Path)),
    responses(
        (status = 200, description = "The runs", body = crate::schemas::ReplayList),
        (status = 404, description = "No such subscription")))]
pub async fn replays(State(app): State<App>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "replays": app.bus.replays(&name).await? })))
}

/// A replay run's progress.
#[utoipa::path(get, path = "/subscriptions/{name}/replays/{replay}", operation_id = "describe_replay", tag = "subscriptions",
    params(("name" = String, Path), ("replay" = String, Path)), responses(
        (status = 200, description = "The run", body = crate::schemas::ReplayRun),
        (status = 404, description = "No such subscription or run")))]
pub async fn replay(
    State(app): State<App>,
    Path((name, run)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(app.bus.replay(&name, &run, false).await?)))
}

/// Cancels a replay run; answers the run as it ended.
#[utoipa::path(delete, path = "/subscriptions/{name}/replays/{replay}", operation_id = "cancel_replay", tag = "subscriptions",
    params(("name" = String, Path), ("replay" = String, Path)), responses(
        (status = 200, description = "The run", body = crate::schemas::ReplayRun),
        (status = 404, description = "No such subscription or run")))]
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

/// Lists dead letters with their events.
#[utoipa::path(get, path = "/dead-letters/{topic}", operation_id = "list_dead_letters", tag = "subscriptions",
    params(("topic" = String, Path, description = "A dead-letter topic"),
        ("subscription" = Option<String>, Query), ("reason" = Option<String>, Query),
        ("partition" = Option<u32>, Query),
        ("from_offset" = Option<u64>, Query, description = "Inclusive, in each partition"),
        ("to_offset" = Option<u64>, Query, description = "Exclusive, in each partition"),
        ("limit" = Option<u32>, Query, description = "Default 100"),
        ("encoding" = Option<String>, Query, description = "auto (default), json, utf8 or base64")),
    responses(
        (status = 200, description = "The letters", body = crate::schemas::DeadLetters),
        (status = 400, description = "Bad query parameter"),
        (status = 404, description = "No such topic"),
        (status = 500, description = "Stored data that cannot be read")))]
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

/// Delivers dead letters again through their subscriptions, once each unless `force`.
#[utoipa::path(post, path = "/dead-letters/{topic}/redrive", operation_id = "redrive_dead_letters", tag = "subscriptions",
    params(("topic" = String, Path, description = "A dead-letter topic")),
    request_body = crate::schemas::RedriveRequest, responses(
        (status = 200, description = "What was redriven", body = crate::schemas::RedriveSummary),
        (status = 400, description = "Bad body"),
        (status = 404, description = "No such topic"),
        (status = 413, description = "Body over `http.json_bytes_max`"),
        (status = 415, description = "Not application/json"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn redrive(
    State(app): State<App>,
    Path(topic): Path<String>,
    caller: Caller,
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
    // Redriving delivers again through a subscription: ALTER on it (on all without a name).
    let sub = filter.subscription.as_deref().unwrap_or("*");
    caller.require(&app, Operation::Alter, ResourceType::Subscription, sub)?;
    if limit == 0 || limit > bus::DEAD_LETTERS_MAX {
        return Err(ApiError::bad_request(format!(
            "limit: {limit} is outside 1..={}",
            bus::DEAD_LETTERS_MAX
        )));
    }
    let summary = app.bus.redrive(&topic, &filter, limit, force).await?;
    Ok(Json(json!(summary)))
}
