//! Event routes: publish (JSON events, or CloudEvents in binary, structured or batch mode) and read
//! a partition from an offset or a time.

use crate::body;
use crate::cloudevents;
use crate::error::{ApiError, ApiResult};
use crate::plain;
use crate::render::{Encoding, EventView};
use crate::schema_codec;
use crate::time::parse_rfc3339;
use crate::App;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use busbar_broker::trace;
use busbar_broker::Event;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// One JSON event of a publish body. `key` and `value` borrow their JSON text from the request, so
/// a value is stored exactly as it was sent (no reordering, no number rewriting).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEvent<'a> {
    #[serde(borrow, default)]
    key: Option<&'a RawValue>,
    key_base64: Option<String>,
    /// `value` absent and `value: null` both mean a null value (a tombstone).
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
    value_base64: Option<String>,
    headers: Option<Headers>,
    partition: Option<i64>,
    timestamp: Option<Timestamp>,
}

/// A JSON key's bytes: a string key is its text (without the quotes, as Kafka clients key by
/// strings); any other JSON key is its JSON text as sent.
fn key_bytes(raw: &RawValue, field: &str) -> ApiResult<Vec<u8>> {
    if !raw.get().starts_with('"') {
        return Ok(raw.get().as_bytes().to_vec());
    }
    let s: String = serde_json::from_str(raw.get())
        .map_err(|e| ApiError::bad_request(format!("field `{field}`: {e}")))?;
    Ok(s.into_bytes())
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
        (Some(k), None) => Some(key_bytes(k, &field("key"))?),
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
        (Some(v), None) => Some(v.get().as_bytes().to_vec()),
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

/// One event object of a JSON publish body; `at` prefixes field names in errors (`[2].`).
fn json_event(raw: &RawValue, at: &str) -> ApiResult<Event> {
    if !raw.get().starts_with('{') {
        let place = if at.is_empty() {
            String::new()
        } else {
            format!("{at}: ")
        };
        return Err(ApiError::bad_request(format!(
            "{place}an event must be a JSON object"
        )));
    }
    let de = &mut serde_json::Deserializer::from_str(raw.get());
    let e: JsonEvent = serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        ApiError::bad_request(format!(
            "field `{at}{}`: {}",
            if path == "." { String::new() } else { path },
            err.into_inner()
        ))
    })?;
    to_event(e, at)
}

fn json_events(bytes: &[u8]) -> ApiResult<Vec<Event>> {
    let doc: &RawValue = body::json_raw(bytes)?;
    if !doc.get().starts_with('[') {
        return Ok(vec![json_event(doc, "")?]);
    }
    let items: Vec<&RawValue> = serde_json::from_str(doc.get())
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    if items.is_empty() {
        return Err(ApiError::bad_request("the event array is empty"));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| json_event(v, &format!("[{i}].")))
        .collect()
}

/// The events of a publish body, by its media type: JSON events (one or an array), CloudEvents
/// in batch, structured or binary mode, or one plain event (`text/plain`,
/// `application/octet-stream`). Errors name the offending part. (Also the entry point of
/// `fuzz/fuzz_targets/http_publish.rs`.)
pub fn decode_publish(headers: &HeaderMap, bytes: &[u8]) -> ApiResult<Vec<Event>> {
    decode_publish_with(headers, &HashMap::new(), bytes)
}

/// [`decode_publish`] with the request's query (`?key=`, `?partition=` of a plain body).
pub fn decode_publish_with(
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    bytes: &[u8],
) -> ApiResult<Vec<Event>> {
    only_params(q, &plain::PARAMS)?;
    let media = body::media_type(headers);
    let m = media.as_deref().unwrap_or("application/json");
    let plain_body = plain::is_plain(m);
    if plain_body && !plain::has_ce_headers(headers) {
        return Ok(vec![plain::event(headers, q, bytes)?]);
    }
    plain::refuse_on_other_bodies(headers, q, m)?;
    match m {
        m if m.starts_with("application/cloudevents-batch") => cloudevents::batch(bytes),
        m if m.starts_with("application/cloudevents") => cloudevents::structured(bytes),
        _ if plain_body || cloudevents::is_binary(headers) => cloudevents::binary(headers, bytes),
        "application/json" => json_events(bytes),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "content type {other:?} is not supported here; send application/json (events), \
                 application/cloudevents+json, application/cloudevents-batch+json, text/plain or \
                 application/octet-stream (one event whose value is the body)"
            ),
        )),
    }
}

/// `POST /topics/{topic}/events?key=&partition=` (the query only for plain bodies)
#[utoipa::path(post, path = "/topics/{topic}/events", operation_id = "publish", tag = "topics",
    description = "Publishes JSON events (one or an array), CloudEvents (binary mode: `ce-*` \
        headers and any body; structured; batch) or one text/plain or application/octet-stream \
        event. A plain body takes `?key=`, `?partition=` and `x-busbar-header-NAME` headers.",
    params(("topic" = String, Path),
        ("key" = Option<String>, Query, description = "Key of a plain body's event"),
        ("partition" = Option<u32>, Query, description = "Partition of a plain body's event"),
        ("schema" = Option<String>, Query, description = "Encode each JSON value with this \
            schema of the subject (`latest`, a version, or `id:<n>`) and store it framed"),
        ("subject" = Option<String>, Query, description = "Subject of `schema` (default \
            `<topic>-value`)"),
        ("message" = Option<String>, Query, description = "Protobuf message of `schema` (full \
            name; default the file's first)")),
    request_body(content(
        (crate::schemas::PublishBody = "application/json"),
        (crate::schemas::CloudEvent = "application/cloudevents+json"),
        (Vec<crate::schemas::CloudEvent> = "application/cloudevents-batch+json"),
        (String = "text/plain"),
        (String = "application/octet-stream"))),
    responses(
        (status = 200, description = "Stored (durable per the topic's sync.policy)",
            body = crate::schemas::Published),
        (status = 400, description = "Bad event (the field is named) or CloudEvent"),
        (status = 404, description = "No such topic or partition"),
        (status = 413, description = "Body over `http.publish_bytes_max` or an event over \
            max.message.bytes"),
        (status = 415, description = "Another content type"),
        (status = 422, description = "Refused by the topic's `{key,value}.schema.validation` \
            (`schema_invalid`): the message names each refused event's index and why; nothing \
            was stored"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn publish(
    State(app): State<App>,
    Path(topic): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let mut size = 0;
    // A topic that does not exist is named "" in the span: the name is the client's to choose.
    let mut span = publish_span(
        if app.broker.has_topic(&topic) {
            &topic
        } else {
            ""
        },
        &headers,
    );
    let result = publish_events(&app, &topic, q, &headers, body, &mut size, &span).await;
    match &result {
        Ok((_, n)) => span.set("messaging.batch.message_count", *n as i64),
        Err(e) => span.fail(format!("{}: {}", e.code, e.message)),
    }
    // A topic that does not exist is counted under "": its name is the client's to choose.
    let label = if app.broker.has_topic(&topic) {
        &topic[..]
    } else {
        ""
    };
    let (outcome, events) = match &result {
        Ok((_, n)) => ("ok", *n),
        Err(e) => (e.code, 0),
    };
    (app.broker.metrics()).produced(label, "http", outcome, events, size);
    result.map(|(json, _)| json)
}

/// [`publish`]'s work: the answer and the events stored; `size` gets the body's length.
async fn publish_events(
    app: &App,
    topic: &str,
    mut q: HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
    size: &mut u64,
    span: &trace::Span,
) -> ApiResult<(Json<Value>, u64)> {
    let bytes = body::read(body, app.config.publish_bytes_max).await?;
    *size = bytes.len() as u64;
    let encode = schema_codec::Encode::take(&mut q)?;
    let mut events = decode_publish_with(headers, &q, &bytes)?;
    app.broker.describe_topic(topic)?;
    if events.is_empty() {
        return Ok((Json(json!({"offsets": []})), 0));
    }
    if let Some(encode) = encode {
        events = encode.apply(app, topic, events).await?;
    }
    add_trace_context(headers, span, &mut events);
    let at = app.broker.publish(topic, events).await?;
    let offsets: Vec<Value> = at
        .iter()
        .map(|p| json!({"partition": p.partition, "offset": p.offset}))
        .collect();
    Ok((Json(json!({ "offsets": offsets })), at.len() as u64))
}

/// The span of one HTTP publish (recorded when tracing is on), a child of the request's W3C trace
/// context.
fn publish_span(topic: &str, headers: &HeaderMap) -> trace::Span {
    let parent = trace::Parent {
        traceparent: headers.get("traceparent").map(|v| v.as_bytes()),
        tracestate: headers.get("tracestate").map(|v| v.as_bytes()),
    };
    trace::start(
        format!("publish {topic}"),
        trace::Kind::Server,
        parent,
        || {
            vec![
                ("messaging.system", "busbar".into()),
                ("messaging.operation.type", "send".into()),
                ("messaging.destination.name", topic.to_string().into()),
            ]
        },
    )
}

/// W3C trace context becomes record headers of every event that does not carry its own, so the
/// trace continues through subscriptions to targets: the publish span's when tracing is on, else
/// the request's (`traceparent`, `tracestate`) as it came.
fn add_trace_context(headers: &HeaderMap, span: &trace::Span, events: &mut [Event]) {
    let own = span.traceparent();
    let (tp, ts) = match &own {
        Some((tp, ts)) => (Some(tp.as_bytes()), ts.as_ref().map(|s| s.as_bytes())),
        None => (
            headers.get("traceparent").map(|v| v.as_bytes()),
            headers.get("tracestate").map(|v| v.as_bytes()),
        ),
    };
    let Some(tp) = tp else {
        return;
    };
    // An event with its own traceparent keeps its own context whole (no other trace's state).
    for e in events.iter_mut() {
        if !e
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("traceparent"))
        {
            e.headers.push(("traceparent".to_string(), tp.to_vec()));
            let own_state = (e.headers.iter()).any(|(k, _)| k.eq_ignore_ascii_case("tracestate"));
            if let (Some(ts), false) = (ts, own_state) {
                e.headers.push(("tracestate".to_string(), ts.to_vec()));
            }
        }
    }
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

/// A page of a partition read (a struct, not a `Value`, so values keep their JSON text).
#[derive(Serialize)]
struct Page<'a> {
    events: Vec<EventView<'a>>,
    next_offset: u64,
    high_watermark: u64,
    /// With `pattern`: events read to find these.
    #[serde(skip_serializing_if = "Option::is_none")]
    scanned: Option<u64>,
}

/// Most events one `?pattern=` search reads (then it answers what it found, and `next_offset`
/// where to go on). The matches it keeps are bounded too: at most `broker.fetch_bytes_max` bytes of
/// keys, values and headers, as a plain read.
pub const SEARCH_SCAN_MAX: u64 = 10_000;

/// `?pattern=`: an event pattern (EventBridge syntax, JSON) evaluated here, against each event's
/// CloudEvent document as subscriptions see it (`busbar_bus::envelope`).
fn take_pattern(q: &mut HashMap<String, String>) -> ApiResult<Option<busbar_rules::Pattern>> {
    let Some(text) = q.remove("pattern") else {
        return Ok(None);
    };
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| ApiError::bad_request(format!("query parameter `pattern`: not JSON: {e}")))?;
    let pattern = busbar_rules::Pattern::parse(&json).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_pattern",
            format!("query parameter `pattern`: {e}"),
        )
    })?;
    Ok(Some(pattern))
}

/// Reads from `offset` until `limit` events match `pattern`, the partition's end,
/// [`SEARCH_SCAN_MAX`] events read, or `broker.fetch_bytes_max` bytes matched: the matches, the
/// offset to go on from, and how many were read. Each page read yields to other tasks.
async fn search(
    app: &App,
    topic: &str,
    p: i64,
    mut offset: u64,
    limit: usize,
    pattern: &busbar_rules::Pattern,
) -> ApiResult<(Vec<busbar_broker::StoredEvent>, u64, u64)> {
    let decoder = app.bus.decoder();
    let bytes_max = app.broker.config().fetch_bytes_max;
    let (mut found, mut scanned, mut kept) = (Vec::new(), 0u64, 0usize);
    while found.len() < limit && scanned < SEARCH_SCAN_MAX && kept < bytes_max {
        tokio::task::yield_now().await;
        let want = (SEARCH_SCAN_MAX - scanned).min(1000) as usize;
        let (page, next) = (app.broker)
            .read_events_next(topic, p, offset, want, Duration::ZERO)
            .await?;
        if page.is_empty() {
            offset = offset.max(next);
            break;
        }
        for e in page {
            scanned += 1;
            offset = e.offset + 1;
            let doc = busbar_bus::envelope::Envelope::document_with(&e, decoder.as_ref());
            if pattern.matches(&doc) {
                kept += e.key.as_ref().map_or(0, Vec::len)
                    + e.value.as_ref().map_or(0, Vec::len)
                    + e.headers
                        .iter()
                        .map(|(k, v)| k.len() + v.len())
                        .sum::<usize>();
                found.push(e);
                if found.len() == limit || kept >= bytes_max {
                    break;
                }
            }
        }
    }
    Ok((found, offset, scanned))
}

/// `GET /topics/{topic}/partitions/{partition}/events?offset=&timestamp=&limit=&wait_ms=&encoding=`
#[utoipa::path(get, path = "/topics/{topic}/partitions/{partition}/events", operation_id = "read_partition", tag = "topics",
    description = "Reads a partition from `offset` (default: the log start) or the first event \
        at or after `timestamp`.",
    params(("topic" = String, Path), ("partition" = u32, Path),
        ("offset" = Option<u64>, Query),
        ("timestamp" = Option<String>, Query, description = "Milliseconds or RFC 3339"),
        ("limit" = Option<u32>, Query, description = "1..=10000, default 100"),
        ("wait_ms" = Option<u64>, Query,
            description = "Wait for events up to this long (at most broker.fetch_wait_max_ms)"),
        ("encoding" = Option<String>, Query, description = "auto (default), json, utf8 or base64"),
        ("decode" = Option<String>, Query, description = "`schema`: framed keys and values with a \
            registered schema are shown decoded, with `key_schema_id` / `value_schema_id`"),
        ("pattern" = Option<String>, Query, description = "An event pattern (JSON, EventBridge \
            syntax) evaluated on the server against each event as subscriptions see it: only \
            matching events are answered; at most 10,000 events are read (`scanned`) and at \
            most `broker.fetch_bytes_max` bytes of matches kept per request, `next_offset` goes \
            on from there (`wait_ms` is ignored)")),
    responses(
        (status = 200, description = "A page of events", body = crate::schemas::EventPage),
        (status = 400, description = "Bad query parameter"),
        (status = 404, description = "No such topic or partition"),
        (status = 416, description = "Offset out of range"),
        (status = 500, description = "Stored data that cannot be read")))]
pub async fn read(
    State(app): State<App>,
    Path((topic, partition)): Path<(String, String)>,
    Query(mut q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let decode = schema_codec::take_decode(&mut q)?;
    let pattern = take_pattern(&mut q)?;
    only_params(
        &q,
        &["offset", "timestamp", "limit", "wait_ms", Encoding::PARAM],
    )?;
    let encoding = Encoding::from_query(&q)?;
    let p = partition_param(&partition)?;
    app.broker.prepare_read(&topic, p).await;
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
    // Cluster mode: an offset at or past this copy's end may be one another broker acknowledged
    // and this one has not heard of yet (asked of the database at most every 100 ms per
    // partition); failing that, the copy is served as it is.
    let _ = app.broker.catch_up_for_read(&topic, p, offset + 1).await;
    // Caught up, the copy may have started over past the log start read before (retention in
    // the cluster): a read from the start reads from the new one.
    let offset = match (q.contains_key("offset"), q.contains_key("timestamp")) {
        (false, false) => app.broker.offsets_of(&topic, p)?.0.max(offset),
        _ => offset,
    };
    let limit = query_int(&q, "limit", 1, 10_000)?.unwrap_or(100) as usize;
    let wait_max = app.broker.config().fetch_wait_max.as_millis() as i64;
    let wait = query_int(&q, "wait_ms", 0, wait_max)?.unwrap_or(0);
    let (events, next, scanned) = match &pattern {
        Some(pattern) => search(&app, &topic, p, offset, limit, pattern).await?,
        None => {
            let wait = Duration::from_millis(wait as u64);
            let (events, next) = (app.broker)
                .read_events_next(&topic, p, offset, limit, wait)
                .await?;
            (events, next, 0)
        }
    };
    let hw = app.broker.offsets_of(&topic, p).map_or(hw, |(_, h)| h);
    let page = Page {
        events: schema_codec::render(&app, &events, encoding, decode)?,
        next_offset: next,
        high_watermark: hw,
        scanned: pattern.is_some().then_some(scanned),
    };
    Ok(Json(page).into_response())
}
