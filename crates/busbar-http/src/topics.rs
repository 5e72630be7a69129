//! Topic routes: create, list, describe, alter (configs, partitions), delete, delete records
//! (raise a partition's log start, Kafka's DeleteRecords).

use crate::authz::Caller;
use crate::body;
use crate::error::{ApiError, ApiResult};
use crate::App;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use busbar_broker::auth::acl::{Operation, ResourceType, CLUSTER_NAME};
use busbar_broker::TopicDescription;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateTopic {
    name: String,
    /// Default: the broker's `num_partitions`.
    partitions: Option<i64>,
    /// Kafka's config names; values as strings or numbers.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, crate::schemas::ConfigValue>)]
    configs: BTreeMap<String, ConfigValue>,
}

/// Config values may be sent as strings (Kafka's way) or as JSON numbers.
#[derive(Deserialize)]
#[serde(untagged)]
enum ConfigValue {
    Text(String),
    Number(serde_json::Number),
}

impl ConfigValue {
    fn into_string(self) -> String {
        match self {
            ConfigValue::Text(s) => s,
            ConfigValue::Number(n) => n.to_string(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AlterTopic {
    /// A value sets the config; `null` returns it to the default.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, crate::schemas::ConfigChange>)]
    configs: BTreeMap<String, Option<ConfigValue>>,
    /// New total partition count (can only grow).
    partitions: Option<i64>,
}

pub fn describe_json(d: &TopicDescription) -> Value {
    json!({
        "name": d.name,
        "id": d.id,
        "partitions": d.partitions.iter().map(|p| json!({
            "partition": p.partition,
            "log_start_offset": p.log_start,
            "high_watermark": p.high_watermark,
            "size_bytes": p.size_bytes,
            "damaged_ranges": p.damaged_ranges,
        })).collect::<Vec<_>>(),
        "configs": d.configs,
        "overrides": d.overrides,
    })
}

/// Creates a topic.
#[utoipa::path(post, path = "/topics", operation_id = "create_topic", tag = "topics", request_body = CreateTopic, responses(
    (status = 201, description = "Created", body = crate::schemas::Topic),
    (status = 400, description = "Bad name, partitions or config"),
    (status = 409, description = "The topic exists"),
    (status = 413, description = "Body over `http.json_bytes_max`"),
    (status = 415, description = "Not application/json"),
    (status = 503, description = "Shutting down"),
    (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn create(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let req: CreateTopic = body::json_request(&headers, body, app.config.json_bytes_max).await?;
    // Kafka's CreateTopics: CREATE on the cluster, or on the topic.
    if !caller.may(&app, Operation::Create, ResourceType::Cluster, CLUSTER_NAME) {
        caller.require(&app, Operation::Create, ResourceType::Topic, &req.name)?;
    }
    let configs: BTreeMap<String, String> = req
        .configs
        .into_iter()
        .map(|(k, v)| (k, v.into_string()))
        .collect();
    let defaults = &app.broker.config().topic_defaults;
    let weaker = defaults
        .with_overrides(&configs)
        .ok()
        .and_then(|after| defaults.weakening(&after));
    app.broker
        .create_topic(&req.name, req.partitions, configs)
        .await?;
    if let Some(w) = weaker {
        warn_weaker(peer, &req.name, &w);
    }
    let d = app.broker.describe_topic(&req.name)?;
    Ok((StatusCode::CREATED, Json(describe_json(&d))).into_response())
}

/// Lists the topics the caller may DESCRIBE.
#[utoipa::path(get, path = "/topics", operation_id = "list_topics", tag = "topics",
    responses((status = 200, description = "The topics", body = crate::schemas::TopicList)))]
pub async fn list(State(app): State<App>, caller: Caller) -> Json<Value> {
    let topics: Vec<Value> = app
        .broker
        .list_topics()
        .into_iter()
        .filter(|t| caller.may(&app, Operation::Describe, ResourceType::Topic, &t.name))
        .map(|t| json!({"name": t.name, "id": t.id, "partitions": t.partitions}))
        .collect();
    Json(json!({ "topics": topics }))
}

/// Describes a topic: partitions with offsets and size, configs.
#[utoipa::path(get, path = "/topics/{topic}", operation_id = "describe_topic", tag = "topics", params(("topic" = String, Path)),
    responses(
        (status = 200, description = "The topic", body = crate::schemas::Topic),
        (status = 404, description = "No such topic")))]
pub async fn describe(State(app): State<App>, Path(topic): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(describe_json(&app.broker.describe_topic(&topic)?)))
}

/// Durability-weakening config changes are logged with who made them (issue 12 item 19; the
/// security issue puts them behind authorization).
fn warn_weaker(peer: SocketAddr, topic: &str, what: &str) {
    let msg = format!("{peer} weakened the durability of topic {topic:?}: {what}");
    busbar_broker::log::warn("busbar-http", "durability_weakened", &msg, &[]);
}

/// 403 unless the caller may do what `req` asks (`authz.rs`, row `PATCH /topics/{topic}`): ALTER
/// on the topic to give `partitions` (Kafka's CreatePartitions), ALTER_CONFIGS to give
/// `configs`; both for both. Checked before the topic is looked up, as the middleware would.
fn may_alter(app: &App, caller: &Caller, topic: &str, req: &AlterTopic) -> ApiResult<()> {
    if req.partitions.is_some() {
        caller.require(app, Operation::Alter, ResourceType::Topic, topic)?;
    }
    if !req.configs.is_empty() {
        caller.require(app, Operation::AlterConfigs, ResourceType::Topic, topic)?;
    }
    Ok(())
}

/// Alters a topic: configs (`null` returns one to its default) and partitions (can only grow).
#[utoipa::path(patch, path = "/topics/{topic}", operation_id = "alter_topic", tag = "topics", params(("topic" = String, Path)),
    request_body = AlterTopic, responses(
        (status = 200, description = "The topic as altered", body = crate::schemas::Topic),
        (status = 400, description = "Bad config, fewer partitions, or nothing to change"),
        (status = 404, description = "No such topic"),
        (status = 413, description = "Body over `http.json_bytes_max`"),
        (status = 415, description = "Not application/json"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn alter(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(topic): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let req: AlterTopic = body::json_request(&headers, body, app.config.json_bytes_max).await?;
    if req.configs.is_empty() && req.partitions.is_none() {
        return Err(ApiError::bad_request(
            "nothing to change: give `configs` and/or `partitions`",
        ));
    }
    may_alter(&app, &caller, &topic, &req)?;
    // Check everything before changing anything, so a bad half refuses the whole request.
    let current = app.broker.describe_topic(&topic)?;
    let changes: BTreeMap<String, Option<String>> = req
        .configs
        .into_iter()
        .map(|(k, v)| (k, v.map(ConfigValue::into_string)))
        .collect();
    let mut overrides = current.overrides.clone();
    for (k, v) in &changes {
        match v {
            Some(v) => overrides.insert(k.clone(), v.clone()),
            None => overrides.remove(k),
        };
    }
    let after = app
        .broker
        .config()
        .topic_defaults
        .with_overrides(&overrides)?;
    let before = app.broker.topic_config(&topic)?;
    let have = current.partitions.len() as i64;
    if let Some(n) = req.partitions.filter(|n| *n != have) {
        if n < have {
            return Err(ApiError::from(
                busbar_broker::BrokerError::InvalidPartitions(format!(
                    "topic {topic:?} has {have} partitions; the count can only grow"
                )),
            ));
        }
        app.broker.add_partitions(&topic, n).await?;
    }
    if !changes.is_empty() {
        app.broker.alter_configs(&topic, changes).await?;
        if let Some(w) = before.weakening(&after) {
            warn_weaker(peer, &topic, &w);
        }
    }
    Ok(Json(describe_json(&app.broker.describe_topic(&topic)?)))
}

/// Deletes a topic and its events.
#[utoipa::path(delete, path = "/topics/{topic}", operation_id = "delete_topic", tag = "topics", params(("topic" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such topic"),
        (status = 409, description = "A subscription uses it as its dead-letter topic"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn delete(State(app): State<App>, Path(topic): Path<String>) -> ApiResult<StatusCode> {
    app.broker.delete_topic(&topic).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DeleteRecords {
    /// Events before this offset are deleted (the partition's log start moves to it); at most
    /// the high watermark. `-1`: every event now stored (Kafka's convention).
    before_offset: i64,
}

/// Deletes a partition's events before an offset (its log start moves there; Kafka's
/// DeleteRecords). Nothing at or after the offset changes; consumers behind it restart at the new
/// log start (`auto.offset.reset`).
#[utoipa::path(post, path = "/topics/{topic}/partitions/{partition}/delete-records", operation_id = "delete_records",
    tag = "topics", params(("topic" = String, Path), ("partition" = i64, Path)),
    request_body = DeleteRecords, responses(
        (status = 200, description = "The partition's log start after the delete", body = crate::schemas::RecordsDeleted),
        (status = 400, description = "An offset below -1, or a compact-only topic (`policy_violation`)"),
        (status = 416, description = "An offset past the high watermark (`offset_out_of_range`)"),
        (status = 404, description = "No such topic or partition"),
        (status = 413, description = "Body over `http.json_bytes_max`"),
        (status = 415, description = "Not application/json"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn delete_records(
    State(app): State<App>,
    Path((topic, partition)): Path<(String, i64)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let req: DeleteRecords = body::json_request(&headers, body, app.config.json_bytes_max).await?;
    let offset = match req.before_offset {
        // The high watermark (in cluster mode the shared store's, read with the move).
        -1 => None,
        n if n < -1 => {
            return Err(ApiError::bad_request(format!(
                "field `before_offset`: {n} is not an offset (or -1 for the high watermark)"
            )))
        }
        n => Some(n as u64),
    };
    let log_start = app.broker.delete_records(&topic, partition, offset).await?;
    Ok(Json(
        json!({"partition": partition, "log_start_offset": log_start}),
    ))
}
