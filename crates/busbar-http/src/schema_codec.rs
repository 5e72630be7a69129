//! Schema-encoded publish and decoded reads over HTTP (issue 17).
//!
//! - `POST /topics/{t}/events?schema=latest|<version>|id:<n>[&subject=s][&message=pkg.Msg]`: each
//!   event's `value` is JSON and is stored encoded with that schema of subject `s` (default
//!   `<t>-value`) and framed (magic byte 0, the schema id), so Kafka consumers with Confluent's
//!   deserializers read it: Avro binary from the natural JSON mapping, JSON checked against the
//!   JSON schema, Protobuf from its proto3 JSON mapping (the file's first message, or `message`).
//!   Null values stay null. An event that does not encode refuses the request: 422
//!   `schema_invalid` naming each event's index (at most 100), nothing stored.
//! - `?decode=schema` on reads (`GET /topics/{t}/partitions/{p}/events`, consumer instance polls,
//!   and both SSE streams): a framed key or value whose schema is registered is shown decoded
//!   (`"value": {...}` plus `"value_schema_id": n`); anything else as the `encoding` parameter
//!   says. At most [`DECODE_BYTES_MAX`] payload bytes are decoded per answer or stream batch.

use crate::error::{ApiError, ApiResult};
use crate::App;
use axum::http::StatusCode;
use busbar_broker::schema_rules::{clip, MESSAGE_BYTES_MAX, RECORD_ERRORS_MAX};
use busbar_broker::{Event, StoredEvent};
use busbar_schema::enforce::Enforcer;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// What `?schema=` asked for.
pub struct Encode {
    spec: String,
    subject: Option<String>,
    message: Option<String>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "schema_invalid", message)
}

fn schemas(app: &App) -> ApiResult<Arc<Enforcer>> {
    app.schemas.clone().ok_or_else(|| {
        ApiError::bad_request(
            "no schema registry runs here: `schema` and `decode` are not available",
        )
    })
}

impl Encode {
    /// Takes the encoding parameters out of `q` (`None` without `schema`).
    pub fn take(q: &mut HashMap<String, String>) -> ApiResult<Option<Encode>> {
        let spec = q.remove("schema");
        let subject = q.remove("subject");
        let message = q.remove("message");
        match spec {
            Some(spec) => Ok(Some(Encode {
                spec,
                subject,
                message,
            })),
            None if subject.is_some() || message.is_some() => Err(ApiError::bad_request(
                "`subject` and `message` go with `schema`",
            )),
            None => Ok(None),
        }
    }

    /// Encodes every event's value (see the module docs); on the blocking pool.
    pub async fn apply(self, app: &App, topic: &str, events: Vec<Event>) -> ApiResult<Vec<Event>> {
        let schemas = schemas(app)?;
        let subject = self.subject.unwrap_or_else(|| format!("{topic}-value"));
        let id = schemas
            .resolve(&subject, &self.spec)
            .map_err(|e| invalid(format!("schema={}: {}", clip(&self.spec, 100), e)))?;
        let message = self.message;
        tokio::task::spawn_blocking(move || encode_all(&schemas, id, message.as_deref(), events))
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?
    }
}

fn encode_all(
    schemas: &Enforcer,
    id: u32,
    message: Option<&str>,
    mut events: Vec<Event>,
) -> ApiResult<Vec<Event>> {
    let mut errors = Vec::new();
    let mut refused = 0usize;
    for (i, e) in events.iter_mut().enumerate() {
        let Some(raw) = e.value.take() else { continue };
        let encoded = serde_json::from_slice::<Value>(&raw)
            .map_err(|err| format!("the value is not JSON: {err}"))
            .and_then(|v| schemas.encode_json(id, &v, message));
        match encoded {
            Ok(bytes) => e.value = Some(bytes),
            Err(why) => {
                refused += 1;
                if errors.len() < RECORD_ERRORS_MAX {
                    errors.push(format!("event {i}: {}", clip(&why, MESSAGE_BYTES_MAX)));
                }
            }
        }
    }
    if refused > 0 {
        return Err(invalid(format!(
            "{refused} events do not encode with schema id {id}, nothing stored: {}",
            errors.join("; ")
        )));
    }
    Ok(events)
}

/// Whether `q` asks reads to decode (`decode=schema`); other values are refused.
pub fn take_decode(q: &mut HashMap<String, String>) -> ApiResult<bool> {
    match q.remove("decode").as_deref() {
        None => Ok(false),
        Some("schema") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "query parameter `decode`: {:?} is not `schema`",
            clip(other, 100)
        ))),
    }
}

/// Whether `q` asks reads to decode, without taking the parameter (for routes that check their
/// parameters with `only_params`).
pub fn wants_decode(q: &HashMap<String, String>) -> ApiResult<bool> {
    let mut only = HashMap::new();
    if let Some(v) = q.get("decode") {
        only.insert("decode".to_string(), v.clone());
    }
    take_decode(&mut only)
}

/// `events` as reads show them: decoded with their schemas when `decode` (see the module docs).
pub fn render<'a>(
    app: &App,
    events: &'a [StoredEvent],
    encoding: crate::render::Encoding,
    decode: bool,
) -> ApiResult<Vec<crate::render::EventView<'a>>> {
    Ok(match decode {
        true => crate::render::decoded_views(events, encoding, decode_all(app, events)?),
        false => crate::render::views(events, encoding),
    })
}

/// A key or value decoded with its schema: (schema id, JSON).
pub type Decoded = Option<(u32, Value)>;

/// Most payload bytes one read decodes; later keys and values are shown as stored (decoded JSON
/// takes many times its Avro size in memory).
pub const DECODE_BYTES_MAX: usize = 4 << 20;

/// The decoded key and value of each event (when asked and when framed with a known schema),
/// decoding at most [`DECODE_BYTES_MAX`] bytes of payload.
pub fn decode_all(app: &App, events: &[StoredEvent]) -> ApiResult<Vec<(Decoded, Decoded)>> {
    let schemas = schemas(app)?;
    let mut left = DECODE_BYTES_MAX;
    let mut one = |b: &Option<Vec<u8>>| -> Decoded {
        let b = b.as_deref()?;
        let (id, _) = busbar_schema::enforce::framed(b).ok()?;
        left = left.checked_sub(b.len())?;
        schemas.decode_json(b).ok().map(|v| (id, v))
    };
    Ok(events
        .iter()
        .map(|e| {
            let key = one(&e.key);
            (key, one(&e.value))
        })
        .collect())
}
