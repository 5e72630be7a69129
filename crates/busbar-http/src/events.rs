//! Event routes: publish (JSON events, or CloudEvents in binary, structured or batch mode) and read
//! a partition from an offset or a time.

use crate::body;
use crate::cloudevents;
use crate::error::{ApiError, ApiResult};
use crate::time::{format_rfc3339, parse_rfc3339};
use crate::App;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use busbar_broker::{Event, StoredEvent};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEvent {
    key: Option<String>,
    key_base64: Option<String>,
    #[serde(default, deserialize_with = "present")]
    value: Option<Value>,
    value_base64: Option<String>,
    headers: Option<Headers>,
    partition: Option<i64>,
    timestamp: Option<Timestamp>,
}

/// `value` absent and `value: null` both mean a null value (a tombstone).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Ok(Some(Value::deserialize(d)?).filter(|v| !v.is_null()))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Headers {
    Map(std::collections::BTreeMap<String, String>),
    List(Vec<HeaderPair>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderPair {
    key: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Timestamp {
    Millis(i64),
    Text(String),
}

fn decode_b64(field: &str, s: &str) -> ApiResult<Vec<u8>> {
    B64.decode(s)
        .map_err(|e| ApiError::bad_request(format!("field `{field}`: not valid base64: {e}")))
}

fn to_event(e: JsonEvent, at: &str) -> ApiResult<Event> {
    let field = |f: &str| format!("{at}{f}");
    let key = match (e.key, e.key_base64) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(format!(
                "give `{}` or `{}`, not both",
                field("key"),
                field("key_base64")
            )))
        }
        (Some(k), None) => Some(k.into_bytes()),
        (None, Some(b)) => Some(decode_b64(&field("key_base64"), &b)?),
        (None, None) => None,
    };
    let value = match (e.value, e.value_base64) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(format!(
                "give `{}` or `{}`, not both",
                field("value"),
                field("value_base64")
            )))
        }
        (Some(v), None) => Some(serde_json::to_vec(&v).expect("JSON encodes")),
        (None, Some(b)) => Some(decode_b64(&field("value_base64"), &b)?),
        (None, None) => None,
    };
    let partition = match e.partition {
        Some(p) if !(0..=i32::MAX as i64).contains(&p) => {
            return Err(ApiError::bad_request(format!(
                "field `{}`: {p} is not a partition number",
                field("partition")
            )))
        }
        p => p.map(|p| p as u32),
    };
    let timestamp = match e.timestamp {
        Some(Timestamp::Millis(ms)) if ms < 0 => {
            return Err(ApiError::bad_request(format!(
                "field `{}`: {ms} is negative",
                field("timestamp")
            )))
        }
        Some(Timestamp::Millis(ms)) => Some(ms),
        Some(Timestamp::Text(t)) => Some(parse_rfc3339(&t).ok_or_else(|| {
            ApiError::bad_request(format!(
                "field `{}`: {t:?} is neither milliseconds nor an RFC 3339 time",
                field("timestamp")
            ))
        })?),
        None => None,
    };
    let headers = match e.headers {
        None => Vec::new(),
        Some(Headers::Map(m)) => m.into_iter().map(|(k, v)| (k, v.into_bytes())).collect(),
        Some(Headers::List(l)) => l
            .into_iter()
            .map(|h| (h.key, h.value.into_bytes()))
            .collect(),
    };
    Ok(Event {
        key,
        value,
        headers,
        timestamp,
        partition,
    })
}

fn json_events(bytes: &[u8]) -> ApiResult<Vec<Event>> {
    let doc: Value = body::json(bytes)?;
    let one = |v: Value, at: String| -> ApiResult<Event> {
        if !v.is_object() {
            return Err(ApiError::bad_request(format!(
                "{}an event must be a JSON object",
                if at.is_empty() {
                    String::new()
                } else {
                    format!("{at}: ")
                }
            )));
        }
        let e: JsonEvent = serde_path_to_error::deserialize(v).map_err(|err| {
            let path = err.path().to_string();
            ApiError::bad_request(format!(
                "field `{at}{}`: {}",
                if path == "." { String::new() } else { path },
                err.into_inner()
            ))
        })?;
        to_event(e, &at)
    };
    match doc {
        Value::Array(items) if items.is_empty() => {
            Err(ApiError::bad_request("the event array is empty"))
        }
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| one(v, format!("[{i}].")))
            .collect(),
        v => Ok(vec![one(v, String::new())?]),
    }
}

/// The events of a publish body, by its media type: JSON events (one or an array), or CloudEvents
/// in batch, structured or binary mode. Errors name the offending part. (Also the entry point of
/// `fuzz/fuzz_targets/http_publish.rs`.)
pub fn decode_publish(headers: &HeaderMap, bytes: &[u8]) -> ApiResult<Vec<Event>> {
    let media = body::media_type(headers);
    match media.as_deref() {
        Some(m) if m.starts_with("application/cloudevents-batch") => cloudevents::batch(bytes),
        Some(m) if m.starts_with("application/cloudevents") => cloudevents::structured(bytes),
        _ if cloudevents::is_binary(headers) => cloudevents::binary(headers, bytes),
        None | Some("application/json") => json_events(bytes),
        Some(other) => Err(body::unsupported(other)),
    }
}

/// `POST /topics/{topic}/events`
pub async fn publish(
    State(app): State<App>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let bytes = body::read(body, app.config.publish_bytes_max).await?;
    let mut events = decode_publish(&headers, &bytes)?;
    app.broker.describe_topic(&topic)?;
    if events.is_empty() {
        return Ok(Json(json!({"offsets": []})));
    }
    add_trace_context(&headers, &mut events);
    let at = app.broker.publish(&topic, events).await?;
    let offsets: Vec<Value> = at
        .iter()
        .map(|p| json!({"partition": p.partition, "offset": p.offset}))
        .collect();
    Ok(Json(json!({ "offsets": offsets })))
}

/// The request's W3C trace context (`traceparent`, `tracestate`) becomes record headers of every
/// event that does not carry its own, so the trace continues through subscriptions to targets.
fn add_trace_context(headers: &HeaderMap, events: &mut [Event]) {
    for name in ["traceparent", "tracestate"] {
        let Some(v) = headers.get(name) else {
            continue;
        };
        for e in events.iter_mut() {
            if !e.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
                e.headers.push((name.to_string(), v.as_bytes().to_vec()));
            }
        }
    }
}

/// An event as JSON: `value` when the bytes are JSON, `value_base64` otherwise; the same for keys
/// with UTF-8; headers as a list (Kafka allows repeated keys).
pub fn event_json(e: &StoredEvent) -> Value {
    let mut m = Map::new();
    m.insert("topic".into(), json!(e.topic));
    m.insert("partition".into(), json!(e.partition));
    m.insert("offset".into(), json!(e.offset));
    m.insert("timestamp".into(), json!(e.timestamp));
    m.insert("time".into(), json!(format_rfc3339(e.timestamp)));
    match e.key.as_deref().map(std::str::from_utf8) {
        None => m.insert("key".into(), Value::Null),
        Some(Ok(k)) => m.insert("key".into(), json!(k)),
        Some(Err(_)) => m.insert(
            "key_base64".into(),
            json!(B64.encode(e.key.as_deref().unwrap_or_default())),
        ),
    };
    match e.value.as_deref() {
        None => m.insert("value".into(), Value::Null),
        Some(v) => match serde_json::from_slice::<Value>(v) {
            Ok(j) => m.insert("value".into(), j),
            Err(_) => m.insert("value_base64".into(), json!(B64.encode(v))),
        },
    };
    let headers: Vec<Value> = e
        .headers
        .iter()
        .map(|(k, v)| match std::str::from_utf8(v) {
            Ok(s) => json!({"key": k, "value": s}),
            Err(_) => json!({"key": k, "value_base64": B64.encode(v)}),
        })
        .collect();
    m.insert("headers".into(), Value::Array(headers));
    Value::Object(m)
}

/// Parses an integer query parameter with bounds; the error names it.
pub fn query_int(
    q: &HashMap<String, String>,
    name: &str,
    min: i64,
    max: i64,
) -> ApiResult<Option<i64>> {
    let Some(raw) = q.get(name) else {
        return Ok(None);
    };
    let n: i64 = raw.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "query parameter `{name}`: {raw:?} is not an integer"
        ))
    })?;
    if n < min || n > max {
        return Err(ApiError::bad_request(format!(
            "query parameter `{name}`: {n} is outside [{min}, {max}]"
        )));
    }
    Ok(Some(n))
}

/// Refuses query parameters a route does not know.
pub fn only_params(q: &HashMap<String, String>, known: &[&str]) -> ApiResult<()> {
    match q.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad_request(format!(
            "unknown query parameter `{k}`; known: {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// A partition number from the path.
pub fn partition_param(raw: &str) -> ApiResult<i64> {
    raw.parse::<u32>()
        .map(i64::from)
        .map_err(|_| ApiError::bad_request(format!("partition {raw:?} is not a partition number")))
}

/// `GET /topics/{topic}/partitions/{partition}/events?offset=&timestamp=&limit=&wait_ms=`
pub async fn read(
    State(app): State<App>,
    Path((topic, partition)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    only_params(&q, &["offset", "timestamp", "limit", "wait_ms"])?;
    let p = partition_param(&partition)?;
    let (log_start, hw) = app.broker.offsets_of(&topic, p)?;
    let offset = match (query_int(&q, "offset", 0, i64::MAX)?, q.get("timestamp")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give `offset` or `timestamp`, not both",
            ))
        }
        (Some(o), None) => o as u64,
        (None, Some(t)) => {
            let ms = t.parse::<i64>().ok().or_else(|| parse_rfc3339(t)).ok_or_else(|| {
                ApiError::bad_request(format!("query parameter `timestamp`: {t:?} is neither milliseconds nor an RFC 3339 time"))
            })?;
            app.broker.offset_for_timestamp(&topic, p, ms)?
        }
        (None, None) => log_start,
    };
    let limit = query_int(&q, "limit", 1, 10_000)?.unwrap_or(100) as usize;
    let wait_max = app.broker.config().fetch_wait_max.as_millis() as i64;
    let wait = query_int(&q, "wait_ms", 0, wait_max)?.unwrap_or(0);
    let events = app
        .broker
        .read_events(&topic, p, offset, limit, Duration::from_millis(wait as u64))
        .await?;
    let next = events.last().map_or(offset, |e| e.offset + 1);
    let hw = app.broker.offsets_of(&topic, p).map_or(hw, |(_, h)| h);
    Ok(Json(json!({
        "events": events.iter().map(event_json).collect::<Vec<_>>(),
        "next_offset": next,
        "high_watermark": hw,
    })))
}
