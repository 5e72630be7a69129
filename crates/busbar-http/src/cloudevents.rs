//! CloudEvents 1.0 over HTTP (binary, structured and batch modes), validated as the spec requires
//! (`shared/spec/bus-semantics.md` §2), and stored with the CloudEvents Kafka binding so Kafka
//! consumers read the same event: binary mode keeps `data` as the record value with `ce_<attr>` and
//! `content-type` headers; structured and batch events are stored structured (the JSON event as the
//! value, header `content-type: application/cloudevents+json; charset=UTF-8`).
//! The `partitionkey` extension, when present, becomes the record key; `time` the record timestamp.

use crate::error::{ApiError, ApiResult};
use crate::time::parse_rfc3339;
use axum::http::HeaderMap;
use busbar_broker::Event;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Content type of structured events as stored.
pub const STRUCTURED: &str = "application/cloudevents+json; charset=UTF-8";

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "invalid_cloudevent",
        msg,
    )
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Attributes whose CloudEvents type has a string form only (String, URI, URI-reference,
/// Timestamp): JSON numbers or booleans there are not CloudEvents.
const STRING_ATTRIBUTES: [&str; 8] = [
    "specversion",
    "id",
    "source",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
];

/// A character a CloudEvents String must not hold: C0 and C1 controls, noncharacters.
fn forbidden_char(c: char) -> bool {
    let n = u32::from(c);
    c.is_control() || (0xFDD0..=0xFDEF).contains(&n) || (n & 0xFFFE) == 0xFFFE
}

/// One attribute's value against the CloudEvents type system: strings without forbidden
/// characters, integers in 32 bits, booleans; the string-only attributes as strings.
fn check_value(name: &str, value: &Value, what: &str) -> ApiResult<()> {
    let fail = |why: String| Err(bad(format!("{what}: attribute `{name}` {why}")));
    match value {
        Value::Null => Ok(()),
        Value::String(s) => match s.chars().find(|c| forbidden_char(*c)) {
            Some(c) => fail(format!(
                "holds U+{:04X}, which a CloudEvents string must not contain",
                u32::from(c)
            )),
            None => Ok(()),
        },
        _ if STRING_ATTRIBUTES.contains(&name) => fail("must be a string".into()),
        Value::Bool(_) => Ok(()),
        Value::Number(n) => match n.as_i64().and_then(|i| i32::try_from(i).ok()) {
            Some(_) => Ok(()),
            None => fail(format!(
                "is {n}; a CloudEvents integer is a whole number in 32 bits"
            )),
        },
        Value::Object(_) | Value::Array(_) => fail("must be a string, integer or boolean".into()),
    }
}

/// Checks the context attributes every CloudEvent needs, and every attribute's name and type.
fn check_attributes(attrs: &Map<String, Value>, what: &str) -> ApiResult<()> {
    match attrs.get("specversion") {
        Some(Value::String(v)) if v == "1.0" => {}
        Some(other) => {
            return Err(bad(format!(
                "{what}: specversion must be \"1.0\", got {other}"
            )))
        }
        None => {
            return Err(bad(format!(
                "{what}: required attribute `specversion` is missing"
            )))
        }
    }
    for required in ["id", "source", "type"] {
        match attrs.get(required) {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(Value::String(_)) => {
                return Err(bad(format!(
                    "{what}: attribute `{required}` must not be empty"
                )))
            }
            Some(_) => {
                return Err(bad(format!(
                    "{what}: attribute `{required}` must be a string"
                )))
            }
            None => {
                return Err(bad(format!(
                    "{what}: required attribute `{required}` is missing"
                )))
            }
        }
    }
    for (name, value) in attrs {
        if name == "data" || name == "data_base64" {
            continue;
        }
        if !valid_name(name) {
            return Err(bad(format!(
                "{what}: attribute name `{name}` must be lower-case letters and digits"
            )));
        }
        check_value(name, value, what)?;
        match (name.as_str(), value) {
            (_, Value::Null) => {}
            ("time", Value::String(t)) if parse_rfc3339(t).is_none() => {
                return Err(bad(format!(
                    "{what}: attribute `time` {t:?} is not an RFC 3339 timestamp"
                )))
            }
            ("dataschema" | "subject" | "datacontenttype", Value::String(s)) if s.is_empty() => {
                return Err(bad(format!("{what}: attribute `{name}` must not be empty")))
            }
            _ => {}
        }
    }
    Ok(())
}

fn canonical(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn key_and_time(attrs: &Map<String, Value>) -> (Option<Vec<u8>>, Option<i64>) {
    let key = attrs
        .get("partitionkey")
        .filter(|v| !v.is_null())
        .map(|v| canonical(v).into_bytes());
    let time = attrs
        .get("time")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339);
    (key, time)
}

/// One structured event (a JSON object) to store: checked as decoded, stored as its JSON text
/// as sent (so `data` keeps its bytes: no key reordering, no number rewriting).
fn structured_event(raw: &RawValue, what: &str) -> ApiResult<Event> {
    let v: Value =
        serde_json::from_str(raw.get()).map_err(|e| bad(format!("{what}: malformed JSON: {e}")))?;
    let Value::Object(attrs) = v else {
        return Err(bad(format!("{what}: a CloudEvent must be a JSON object")));
    };
    check_attributes(&attrs, what)?;
    if attrs.contains_key("data") && attrs.contains_key("data_base64") {
        return Err(bad(format!(
            "{what}: `data` and `data_base64` must not both be present"
        )));
    }
    if let Some(Value::String(b64)) = attrs.get("data_base64") {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| bad(format!("{what}: `data_base64` is not base64: {e}")))?;
    }
    let (key, timestamp) = key_and_time(&attrs);
    Ok(Event {
        key,
        value: Some(raw.get().as_bytes().to_vec()),
        headers: vec![("content-type".into(), STRUCTURED.as_bytes().to_vec())],
        timestamp,
        partition: None,
    })
}

/// `application/cloudevents+json`: one event.
pub fn structured(body: &[u8]) -> ApiResult<Vec<Event>> {
    let raw: &RawValue =
        serde_json::from_slice(body).map_err(|e| bad(format!("malformed JSON: {e}")))?;
    Ok(vec![structured_event(raw, "event")?])
}

/// `application/cloudevents-batch+json`: an array of events (possibly empty).
pub fn batch(body: &[u8]) -> ApiResult<Vec<Event>> {
    let raw: &RawValue =
        serde_json::from_slice(body).map_err(|e| bad(format!("malformed JSON: {e}")))?;
    if !raw.get().starts_with('[') {
        return Err(bad("a CloudEvents batch must be a JSON array"));
    }
    let items: Vec<&RawValue> =
        serde_json::from_str(raw.get()).map_err(|e| bad(format!("malformed JSON: {e}")))?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, e)| structured_event(e, &format!("event [{i}]")))
        .collect()
}

/// Undoes the binary-mode header encoding: RFC 7230 quoted-string, then one round of
/// percent-decoding; invalid UTF-8 is refused.
fn decode_header(raw: &[u8], name: &str) -> ApiResult<String> {
    let unquoted: Vec<u8> = if raw.len() >= 2 && raw[0] == b'"' && raw[raw.len() - 1] == b'"' {
        let mut out = Vec::new();
        let mut it = raw[1..raw.len() - 1].iter();
        while let Some(&c) = it.next() {
            out.push(if c == b'\\' {
                *it.next().unwrap_or(&b'\\')
            } else {
                c
            });
        }
        out
    } else {
        raw.to_vec()
    };
    let mut bytes = Vec::with_capacity(unquoted.len());
    let mut i = 0;
    while i < unquoted.len() {
        if unquoted[i] == b'%' {
            let hex = unquoted
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad(format!("header {name}: bad percent-encoding")))?;
            bytes.push(byte);
            i += 3;
        } else {
            bytes.push(unquoted[i]);
            i += 1;
        }
    }
    String::from_utf8(bytes).map_err(|_| bad(format!("header {name}: value is not valid UTF-8")))
}

/// True when the request carries binary-mode CloudEvents headers.
pub fn is_binary(headers: &HeaderMap) -> bool {
    headers.contains_key("ce-specversion")
}

/// Binary mode: `ce-` headers (names case-insensitive, values percent-decoded) are the
/// attributes, the body is `data`, `Content-Type` is `datacontenttype`.
pub fn binary(headers: &HeaderMap, body: &[u8]) -> ApiResult<Vec<Event>> {
    if headers.contains_key("ce-datacontenttype") {
        return Err(bad(
            "binary mode: use Content-Type, not a ce-datacontenttype header",
        ));
    }
    for h in ["ce-data", "ce-data_base64"] {
        if headers.contains_key(h) {
            return Err(bad(format!(
                "binary mode: the body is the data; a {h} header is not an attribute"
            )));
        }
    }
    let mut attrs = Map::new();
    for (name, value) in headers {
        let Some(attr) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        let decoded = decode_header(value.as_bytes(), name.as_str())?;
        if attrs
            .insert(attr.to_string(), Value::String(decoded))
            .is_some()
        {
            return Err(bad(format!("attribute `{attr}` appears more than once")));
        }
    }
    check_attributes(&attrs, "event")?;
    let (key, timestamp) = key_and_time(&attrs);
    let mut out_headers: Vec<(String, Vec<u8>)> = attrs
        .iter()
        .map(|(k, v)| (format!("ce_{k}"), canonical(v).into_bytes()))
        .collect();
    if let Some(ct) = headers.get(axum::http::header::CONTENT_TYPE) {
        out_headers.push(("content-type".into(), ct.as_bytes().to_vec()));
    }
    Ok(vec![Event {
        key,
        value: (!body.is_empty()).then(|| body.to_vec()),
        headers: out_headers,
        timestamp,
        partition: None,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_decode_as_the_spec_says() {
        assert_eq!(
            decode_header(b"Euro%20%E2%82%AC%20%F0%9F%98%80", "h").unwrap(),
            "Euro € 😀"
        );
        assert_eq!(decode_header(b"%e2%82%ac", "h").unwrap(), "€");
        assert_eq!(decode_header(b"\"quoted%20x\"", "h").unwrap(), "quoted x");
        assert!(decode_header(b"%C0%A0", "h").is_err());
        assert!(decode_header(b"%zz", "h").is_err());
    }

    #[test]
    fn structured_events_are_validated() {
        let ok = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"2023-11-14T22:13:20Z","partitionkey":"k","data":{"a":1}}"#;
        let e = &structured(ok).unwrap()[0];
        assert_eq!(
            (e.key.as_deref(), e.timestamp),
            (Some(&b"k"[..]), Some(1_700_000_000_000))
        );
        for (body, needle) in [
            (&br#"{"id":"1","source":"/s","type":"t"}"#[..], "specversion"),
            (br#"{"specversion":"0.3","id":"1","source":"/s","type":"t"}"#, "specversion"),
            (br#"{"specversion":"1.0","source":"/s","type":"t"}"#, "`id`"),
            (br#"{"specversion":"1.0","id":"","source":"/s","type":"t"}"#, "`id`"),
            (br#"{"specversion":"1.0","id":"1","type":"t"}"#, "`source`"),
            (br#"{"specversion":"1.0","id":"1","source":"/s"}"#, "`type`"),
            (br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"noon"}"#, "time"),
            (br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","Bad-Name":"x"}"#, "Bad-Name"),
            (br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":1,"data_base64":"AA=="}"#, "both"),
            (br#"[1]"#, "object"),
            (br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","time":1700000000}"#, "`time` must be a string"),
            (br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","subject":5}"#, "`subject` must be a string"),
            (br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","dataschema":false}"#, "`dataschema` must be a string"),
            (br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":1}"#, "`datacontenttype` must be a string"),
            (br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","ratio":1.5}"#, "`ratio` is 1.5"),
            (br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","big":3000000000}"#, "`big` is 3000000000"),
            (br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","note":"a\u0001b"}"#, "`note` holds U+0001"),
            (br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","note":"\ufdd0"}"#, "`note` holds U+FDD0"),
            (br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","list":[1]}"#, "`list` must be a string, integer or boolean"),
        ] {
            let err = structured(body).unwrap_err();
            assert!(err.message.contains(needle), "{} lacks {needle}", err.message);
        }
        let ok = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","n":-2147483648,"flag":true,"gone":null}"#;
        assert!(structured(ok).is_ok());
        assert_eq!(batch(b"[]").unwrap().len(), 0);
        assert!(batch(br#"{"a":1}"#).is_err());
    }
}
