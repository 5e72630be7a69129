//! Consumer-group routes: list, describe (members, committed offsets, lag), reset offsets, delete.
//! In cluster mode the list and a description are the cluster's: a group another broker
//! coordinates is listed as "Unknown" and described from the database (its committed offsets,
//! their lag and its coordinator; its members are known to the coordinator only).
//! A description shows only the topics the caller may DESCRIBE (offsets, lag and member
//! assignments of other topics are left out), as Kafka's OffsetFetch refuses them per topic.

use crate::authz::Caller;
use crate::body;
use crate::error::{ApiError, ApiResult};
use crate::time::parse_rfc3339;
use crate::App;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use busbar_broker::auth::acl::{Operation, ResourceType};
use busbar_broker::{GroupDescription, ResetTo};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

/// Lists the consumer groups the caller may DESCRIBE.
#[utoipa::path(get, path = "/groups", operation_id = "list_groups", tag = "groups",
    responses((status = 200, description = "The groups", body = crate::schemas::GroupList),
        (status = 507, description = "Cluster mode: the database could not be read")))]
pub async fn list(State(app): State<App>, caller: Caller) -> ApiResult<Json<Value>> {
    let groups: Vec<Value> = app
        .broker
        .list_groups_cluster()
        .await?
        .into_iter()
        .filter(|(g, _)| caller.may(&app, Operation::Describe, ResourceType::Group, g))
        .map(|(g, s)| json!({"group": g, "state": s}))
        .collect();
    Ok(Json(json!({ "groups": groups })))
}

/// `d` without what concerns a topic `visible` refuses: its committed offsets (and so its lag)
/// and its partitions in member assignments.
fn visible_part(d: GroupDescription, visible: impl Fn(&str) -> bool) -> GroupDescription {
    let mut d = d;
    d.offsets.retain(|o| visible(&o.topic));
    for m in d.live.iter_mut().flat_map(|l| l.members.iter_mut()) {
        if let Some(a) = busbar_broker::assignment::decode(&m.assignment) {
            let kept: Vec<_> = a.into_iter().filter(|(t, _)| visible(t)).collect();
            m.assignment = busbar_broker::assignment::encode(&kept);
        }
    }
    d
}

pub fn describe_json(d: &GroupDescription) -> Value {
    let members: Vec<Value> = d
        .live
        .iter()
        .flat_map(|l| l.members.iter())
        .map(|m| {
            json!({
                "member_id": m.member_id,
                "client_id": m.client_id,
                "client_host": m.client_host,
                "assignment": busbar_broker::assignment::decode(&m.assignment)
                    .map(|a| a.into_iter().map(|(t, ps)| json!({"topic": t, "partitions": ps})).collect::<Vec<_>>())
                    .unwrap_or_default(),
            })
        })
        .collect();
    let offsets: Vec<Value> = d
        .offsets
        .iter()
        .map(|o| {
            json!({"topic": o.topic, "partition": o.partition, "committed_offset": o.committed,
                   "high_watermark": o.high_watermark, "lag": o.lag, "metadata": o.metadata})
        })
        .collect();
    let mut out = json!({
        "group": d.group,
        "state": d.state,
        "generation": d.live.as_ref().map_or(0, |l| l.generation),
        "protocol": d.live.as_ref().map(|l| l.protocol.clone()).unwrap_or_default(),
        "members": members,
        "offsets": offsets,
        "lag": d.offsets.iter().map(|o| o.lag).sum::<u64>(),
    });
    if let Some(c) = d.coordinator {
        // Cluster mode: the broker that knows the members.
        out["coordinator"] = json!(c);
    }
    out
}

/// Describes a group: members, assignments, committed offsets, lag.
#[utoipa::path(get, path = "/groups/{group}", operation_id = "describe_group", tag = "groups", params(("group" = String, Path)),
    responses(
        (status = 200, description = "The group", body = crate::schemas::Group),
        (status = 404, description = "No such group"),
        (status = 507, description = "Cluster mode: the database could not be read")))]
pub async fn describe(
    State(app): State<App>,
    Path(group): Path<String>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    let d = app.broker.describe_group_cluster(&group).await?;
    let visible = |t: &str| caller.may(&app, Operation::Describe, ResourceType::Topic, t);
    Ok(Json(describe_json(&visible_part(d, visible))))
}

/// Deletes a group without members, and its offsets.
#[utoipa::path(delete, path = "/groups/{group}", operation_id = "delete_group", tag = "groups", params(("group" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such group"),
        (status = 409, description = "The group has members"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn delete(State(app): State<App>, Path(group): Path<String>) -> ApiResult<StatusCode> {
    app.broker.delete_group(&group).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = GroupReset)]
struct Reset {
    topic: String,
    /// Default: every partition of the topic.
    partitions: Option<Vec<u32>>,
    to: To,
    /// Answer where the offsets would go, changing nothing (a preview).
    #[serde(default)]
    dry_run: bool,
}

/// `"earliest"`, `"latest"`, `{"offset": n}` or `{"timestamp": ms or RFC 3339}`.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = GroupResetTo)]
enum To {
    Named(String),
    Offset { offset: u64 },
    Timestamp { timestamp: Value },
}

/// Resets a group's offsets for a topic (the group must have no members).
#[utoipa::path(post, path = "/groups/{group}/offsets/reset", operation_id = "reset_group_offsets", tag = "groups",
    params(("group" = String, Path)), request_body = Reset, responses(
        (status = 200, description = "The offsets moved to", body = crate::schemas::GroupOffsets),
        (status = 400, description = "Bad body"),
        (status = 404, description = "No such topic or partition"),
        (status = 409, description = "The group has members"),
        (status = 413, description = "Body over `http.json_bytes_max`"),
        (status = 415, description = "Not application/json"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn reset(
    State(app): State<App>,
    Path(group): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let req: Reset = body::json_request(&headers, body, app.config.json_bytes_max).await?;
    let dry_run = req.dry_run;
    let mut answer = match reset_parsed(&app, &group, &caller, req).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    };
    if dry_run {
        // Audited as a preview, refused or not (`audit::Preview`).
        answer.extensions_mut().insert(crate::audit::Preview);
    }
    Ok(answer)
}

/// [`reset`] once its body is read: the offsets moved (or, for a dry run, that would move).
async fn reset_parsed(app: &App, group: &str, caller: &Caller, req: Reset) -> ApiResult<Value> {
    caller.require(app, Operation::Read, ResourceType::Topic, &req.topic)?;
    let to = match req.to {
        To::Named(n) if n == "earliest" => ResetTo::Earliest,
        To::Named(n) if n == "latest" => ResetTo::Latest,
        To::Named(n) => {
            return Err(ApiError::bad_request(format!(
                "field `to`: {n:?} is not \"earliest\", \"latest\", {{\"offset\": n}} or {{\"timestamp\": t}}"
            )))
        }
        To::Offset { offset } => ResetTo::Offset(offset),
        To::Timestamp { timestamp } => {
            let ms = timestamp.as_i64().or_else(|| timestamp.as_str().and_then(parse_rfc3339));
            ResetTo::Timestamp(ms.ok_or_else(|| ApiError::bad_request("field `to.timestamp`: give milliseconds or an RFC 3339 time"))?)
        }
    };
    let moved = if req.dry_run {
        (app.broker)
            .reset_plan(group, &req.topic, req.partitions, to)
            .await?
    } else {
        (app.broker)
            .reset_offsets(group, &req.topic, req.partitions, to)
            .await?
    };
    let offsets: Vec<Value> = moved
        .into_iter()
        .map(|(p, o)| json!({"topic": req.topic, "partition": p, "offset": o}))
        .collect();
    Ok(json!({ "offsets": offsets, "dry_run": req.dry_run }))
}
