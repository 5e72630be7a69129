//! The bus sees every event as a CloudEvent. A stored record is read with the CloudEvents Kafka
//! binding (`shared/spec/bus-semantics.md` §2.3): structured when its `content-type` header starts
//! with `application/cloudevents`, binary when it has a `ce_specversion` header (header names and
//! the media type compared case-insensitively, attribute names lower-cased). Any other record is
//! given attributes by busbar (decision): `id` = `<partition>-<offset>` (stable across redeliveries),
//! `source` = `/topics/<topic>`, `type` = `busbar.event`, `time` = the record timestamp (a redriven
//! dead letter's: its source event's, from `busbar-dlq-source-time`),
//! `partitionkey` = the key when it is UTF-8, and `datacontenttype` `application/json` when the value
//! parses as JSON (else `application/octet-stream`).
//!
//! Patterns match the structured JSON form: the attributes plus `data` (the value as JSON when it is
//! JSON). So `{"type": ["order.created"], "data": {"total": [{"numeric": [">", 100]}]}}`.
//! With a [`Decoder`] installed, a schema-framed value (Avro, Protobuf, JSON Schema) that decodes
//! is `data` as its decoded JSON, with `dataschema` naming its schema ([`Envelope::document_with`],
//! `decode.rs`).

use crate::decode::{framed_id, Decoder};
use base64::Engine;
use busbar_broker::event::StoredEvent;
use serde_json::{Map, Value};

/// Header names busbar adds to dead letters (all start with this).
pub const DLQ_PREFIX: &str = "busbar-dlq-";
/// Extension attribute (and Kafka header `ce_busbarreplay`) marking replayed events.
pub const REPLAY_ATTR: &str = "busbarreplay";

/// One event as a CloudEvent: context attributes and data bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub attrs: Map<String, Value>,
    pub data: Option<Vec<u8>>,
}

fn header<'a>(e: &'a StoredEvent, name: &str) -> Option<&'a [u8]> {
    e.headers
        .iter()
        .rev()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// Where the event originally came from: a dead letter names its source in its headers, so a
/// redriven event keeps its original id.
pub fn origin(e: &StoredEvent) -> (String, u32, u64) {
    let h =
        |n: &str| header(e, &format!("{DLQ_PREFIX}{n}")).and_then(|v| std::str::from_utf8(v).ok());
    match (
        h("source-topic"),
        h("source-partition").and_then(|p| p.parse().ok()),
        h("source-offset").and_then(|o| o.parse().ok()),
    ) {
        (Some(t), Some(p), Some(o)) => (t.to_string(), p, o),
        _ => (e.topic.clone(), e.partition, e.offset),
    }
}

/// When the event originally happened: a dead letter keeps its source event's time in its
/// headers (its own timestamp is when it was dead-lettered), so a redriven event keeps its time.
pub fn origin_time(e: &StoredEvent) -> i64 {
    header(e, &format!("{DLQ_PREFIX}source-time"))
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(busbar_broker::time::parse_rfc3339)
        .unwrap_or(e.timestamp)
}

impl Envelope {
    /// Reads a stored record as a CloudEvent.
    pub fn of(e: &StoredEvent) -> Envelope {
        let structured = header(e, "content-type").is_some_and(|ct| {
            const CE: &[u8] = b"application/cloudevents";
            ct.len() >= CE.len() && ct[..CE.len()].eq_ignore_ascii_case(CE)
        });
        if structured {
            if let Some(env) = Self::structured(e) {
                return env;
            }
        }
        if header(e, "ce_specversion").is_some() {
            return Self::binary(e);
        }
        let json = e.value.as_deref().map(is_json);
        Self::plain(e, json)
    }

    /// The document patterns match, as `Envelope::of(e).document()`, with the value of a plain
    /// record parsed once (not checked as JSON first and then parsed).
    pub fn document_of(e: &StoredEvent) -> Value {
        if header(e, "content-type").is_some() || header(e, "ce_specversion").is_some() {
            return Self::of(e).document();
        }
        let parsed = e.value.as_deref().map(serde_json::from_slice::<Value>);
        // JSON a `Value` cannot hold (a number past f64) still makes the type JSON.
        let json = match (&parsed, e.value.as_deref()) {
            (Some(Ok(_)), _) => Some(true),
            (Some(Err(_)), Some(v)) => Some(is_json(v)),
            _ => None,
        };
        let mut doc = Self::plain_attrs(e, json);
        if let Some(Ok(d)) = parsed {
            doc.insert("data".into(), d);
        }
        Value::Object(doc)
    }

    /// The document patterns match, with a framed value decoded by `decoder` when there is one
    /// and it decodes (see `decode.rs`); otherwise as [`Envelope::document_of`].
    pub fn document_with(e: &StoredEvent, decoder: Option<&Decoder>) -> Value {
        match decoder.and_then(|d| Self::decoded_document(e, d)) {
            Some(doc) => doc,
            None => Self::document_of(e),
        }
    }

    /// The document of a record whose value is framed and decodes; `None` otherwise. A framed
    /// value (first byte 0) is never JSON, so the record is a binary-mode CloudEvent or plain.
    fn decoded_document(e: &StoredEvent, decoder: &Decoder) -> Option<Value> {
        let value = e.value.as_deref()?;
        framed_id(value)?;
        let (id, data) = decoder.decode(value)?;
        let mut attrs = if header(e, "ce_specversion").is_some() {
            Self::binary_attrs(e)
        } else {
            Self::plain_attrs(e, Some(true))
        };
        let uri = Value::String(decoder.dataschema(id));
        attrs.entry("dataschema").or_insert(uri);
        attrs.insert("data".into(), data);
        Some(Value::Object(attrs))
    }

    fn structured(e: &StoredEvent) -> Option<Envelope> {
        let Value::Object(mut attrs) = serde_json::from_slice(e.value.as_deref()?).ok()? else {
            return None;
        };
        let data = match (attrs.remove("data"), attrs.remove("data_base64")) {
            (Some(Value::String(s)), None) if !is_json_type(&attrs) => Some(s.into_bytes()),
            (Some(d), None) => Some(serde_json::to_vec(&d).expect("JSON encodes")),
            (None, Some(Value::String(b))) => {
                base64::engine::general_purpose::STANDARD.decode(b).ok()
            }
            _ => None,
        };
        Some(Envelope { attrs, data })
    }

    fn binary(e: &StoredEvent) -> Envelope {
        Envelope {
            attrs: Self::binary_attrs(e),
            data: e.value.clone(),
        }
    }

    /// The attributes of a binary-mode record: its `ce_` headers and `content-type`.
    fn binary_attrs(e: &StoredEvent) -> Map<String, Value> {
        let mut attrs = Map::new();
        for (k, v) in &e.headers {
            // Header names are case-insensitive: `CE_ID` and `ce_id` are the attribute `id`.
            let name = match k.get(..3) {
                Some(p) if p.eq_ignore_ascii_case("ce_") && k.len() > 3 => {
                    k[3..].to_ascii_lowercase()
                }
                _ => continue,
            };
            attrs.insert(name, Value::String(String::from_utf8_lossy(v).into_owned()));
        }
        if let Some(ct) = header(e, "content-type") {
            attrs.insert(
                "datacontenttype".into(),
                Value::String(String::from_utf8_lossy(ct).into_owned()),
            );
        }
        attrs
    }

    /// `json`: whether the value (when there is one) is JSON.
    fn plain(e: &StoredEvent, json: Option<bool>) -> Envelope {
        Envelope {
            attrs: Self::plain_attrs(e, json),
            data: e.value.clone(),
        }
    }

    /// The attributes busbar gives a plain record (see the module docs).
    fn plain_attrs(e: &StoredEvent, json: Option<bool>) -> Map<String, Value> {
        let (topic, partition, offset) = origin(e);
        let mut attrs = Map::new();
        let mut put = |k: &str, v: String| {
            attrs.insert(k.to_string(), Value::String(v));
        };
        put("specversion", "1.0".into());
        put("id", format!("{partition}-{offset}"));
        put("source", format!("/topics/{topic}"));
        put("type", "busbar.event".into());
        put("time", busbar_broker::time::format_rfc3339(origin_time(e)));
        if let Some(k) = e.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()) {
            if !k.is_empty() {
                put("partitionkey", k.to_string());
            }
        }
        if let Some(json) = json {
            let ct = if json {
                "application/json"
            } else {
                "application/octet-stream"
            };
            put("datacontenttype", ct.into());
        }
        attrs
    }

    /// The JSON document patterns are matched against: attributes plus `data` when it is JSON.
    pub fn document(&self) -> Value {
        let mut doc = self.attrs.clone();
        if let Some(d) = self
            .data
            .as_deref()
            .and_then(|d| serde_json::from_slice::<Value>(d).ok())
        {
            doc.insert("data".into(), d);
        }
        Value::Object(doc)
    }

    /// The structured-mode JSON body: attributes plus `data` (JSON) or `data_base64`.
    pub fn structured_body(&self) -> Vec<u8> {
        let mut doc = self.attrs.clone();
        if let Some(d) = &self.data {
            match serde_json::from_slice::<Value>(d) {
                Ok(v) if is_json_type(&self.attrs) => {
                    doc.insert("data".into(), v);
                }
                _ => match std::str::from_utf8(d) {
                    Ok(s)
                        if self
                            .attr("datacontenttype")
                            .is_some_and(|c| c.starts_with("text/")) =>
                    {
                        doc.insert("data".into(), Value::String(s.to_string()));
                    }
                    _ => {
                        let b = base64::engine::general_purpose::STANDARD.encode(d);
                        doc.insert("data_base64".into(), Value::String(b));
                    }
                },
            }
        }
        serde_json::to_vec(&Value::Object(doc)).expect("JSON encodes")
    }

    /// An attribute as a string (non-string attributes in their JSON text).
    pub fn attr(&self, name: &str) -> Option<String> {
        self.attrs.get(name).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

fn is_json(v: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(v).is_ok()
}

fn is_json_type(attrs: &Map<String, Value>) -> bool {
    match attrs.get("datacontenttype") {
        None => true,
        Some(Value::String(ct)) => {
            let ct = ct.split(';').next().unwrap_or("").trim();
            ct == "application/json" || ct.ends_with("+json") || ct == "text/json"
        }
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(value: &[u8], headers: &[(&str, &str)]) -> StoredEvent {
        StoredEvent {
            topic: "orders".into(),
            partition: 2,
            offset: 41,
            timestamp: 0,
            key: Some(b"k1".to_vec()),
            value: Some(value.to_vec()),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    #[test]
    fn plain_events_get_stable_attributes() {
        let env = Envelope::of(&stored(br#"{"total":5}"#, &[]));
        assert_eq!(
            env.document(),
            json!({"specversion": "1.0", "id": "2-41", "source": "/topics/orders",
                   "type": "busbar.event", "time": "1970-01-01T00:00:00.000Z", "partitionkey": "k1",
                   "datacontenttype": "application/json", "data": {"total": 5}})
        );
    }

    #[test]
    fn binary_and_structured_bindings_are_read() {
        let b = Envelope::of(&stored(
            b"hi",
            &[
                ("ce_specversion", "1.0"),
                ("ce_id", "x"),
                ("ce_type", "t"),
                ("content-type", "text/plain"),
            ],
        ));
        assert_eq!(b.attr("id").as_deref(), Some("x"));
        assert_eq!(b.attr("datacontenttype").as_deref(), Some("text/plain"));
        assert_eq!(b.data.as_deref(), Some(&b"hi"[..]));
        let s = Envelope::of(&stored(
            br#"{"specversion":"1.0","id":"y","source":"s","type":"t","data":{"a":1}}"#,
            &[(
                "content-type",
                "application/cloudevents+json; charset=UTF-8",
            )],
        ));
        assert_eq!(s.attr("id").as_deref(), Some("y"));
        assert_eq!(s.document()["data"], json!({"a": 1}));
        let body: Value = serde_json::from_slice(&s.structured_body()).unwrap();
        assert_eq!(body["data"], json!({"a": 1}));
    }

    #[test]
    fn ce_headers_and_the_media_type_are_case_insensitive() {
        let b = Envelope::of(&stored(
            b"hi",
            &[("CE_SPECVERSION", "1.0"), ("Ce_Id", "x"), ("ce_TYPE", "t")],
        ));
        assert_eq!(b.attr("id").as_deref(), Some("x"));
        assert_eq!(b.attr("type").as_deref(), Some("t"));
        assert_eq!(b.attr("specversion").as_deref(), Some("1.0"));
        let s = Envelope::of(&stored(
            br#"{"specversion":"1.0","id":"y","source":"s","type":"t"}"#,
            &[("Content-Type", "Application/CloudEvents+JSON")],
        ));
        assert_eq!(s.attr("id").as_deref(), Some("y"));
    }

    #[test]
    fn document_of_is_the_envelopes_document() {
        let structured = [("content-type", "application/cloudevents+json")];
        let cases: Vec<StoredEvent> = vec![
            stored(br#"{"total":5}"#, &[]),
            stored(b"[1e400]", &[]),
            stored(b"not json", &[]),
            stored(b" 7 ", &[("content-type", "text/plain")]),
            stored(b"hi", &[("ce_specversion", "1.0"), ("ce_id", "x")]),
            stored(
                br#"{"specversion":"1.0","id":"y","data":{"a":1}}"#,
                &structured,
            ),
            StoredEvent {
                value: None,
                ..stored(b"", &[])
            },
        ];
        for e in &cases {
            assert_eq!(
                Envelope::document_of(e),
                Envelope::of(e).document(),
                "{e:?}"
            );
        }
    }

    /// A decoder knowing schema id 7 only: its body is `{"qty": <first body byte>}`.
    fn decoder() -> Decoder {
        Decoder::new("http://sr/schemas/ids/", |v: &[u8]| match v {
            [0, 0, 0, 0, 7, q, ..] => Some(json!({"qty": q})),
            _ => None,
        })
    }

    #[test]
    fn a_framed_value_that_decodes_is_data() {
        let e = stored(b"\0\0\0\0\x07\x09", &[]);
        let doc = Envelope::document_with(&e, Some(&decoder()));
        assert_eq!(
            doc,
            json!({"specversion": "1.0", "id": "2-41", "source": "/topics/orders",
                   "type": "busbar.event", "time": "1970-01-01T00:00:00.000Z", "partitionkey": "k1",
                   "datacontenttype": "application/json",
                   "dataschema": "http://sr/schemas/ids/7", "data": {"qty": 9}})
        );
    }

    #[test]
    fn what_does_not_decode_is_matched_as_before() {
        let cases = [
            stored(b"\0\0\0\0\x08\x09", &[]),
            stored(b"\0\0\0", &[]),
            stored(br#"{"qty":9}"#, &[]),
            stored(
                br#"{"specversion":"1.0","id":"y","data":{"qty":9}}"#,
                &[("content-type", "application/cloudevents+json")],
            ),
            StoredEvent {
                value: None,
                ..stored(b"", &[])
            },
        ];
        for e in &cases {
            let doc = Envelope::document_with(e, Some(&decoder()));
            assert_eq!(doc, Envelope::document_of(e), "{e:?}");
            assert_eq!(Envelope::document_with(e, None), doc);
        }
        let unknown = Envelope::document_with(&cases[0], Some(&decoder()));
        assert_eq!(unknown["datacontenttype"], "application/octet-stream");
        assert!(unknown.get("data").is_none());
    }

    #[test]
    fn a_binary_cloudevent_keeps_its_own_dataschema_and_content_type() {
        let e = stored(
            b"\0\0\0\0\x07\x02",
            &[
                ("ce_specversion", "1.0"),
                ("ce_id", "x"),
                ("ce_dataschema", "urn:mine"),
                ("content-type", "application/avro"),
            ],
        );
        let doc = Envelope::document_with(&e, Some(&decoder()));
        assert_eq!(doc["data"], json!({"qty": 2}));
        assert_eq!(doc["dataschema"], "urn:mine");
        assert_eq!(doc["datacontenttype"], "application/avro");
        let e = stored(b"\0\0\0\0\x07\x02", &[("ce_specversion", "1.0")]);
        let doc = Envelope::document_with(&e, Some(&decoder()));
        assert_eq!(doc["dataschema"], "http://sr/schemas/ids/7");
    }

    #[test]
    fn dead_letters_keep_the_original_id() {
        let e = stored(
            b"{}",
            &[
                ("busbar-dlq-source-topic", "orders"),
                ("busbar-dlq-source-partition", "0"),
                ("busbar-dlq-source-offset", "7"),
            ],
        );
        assert_eq!(Envelope::of(&e).attr("id").as_deref(), Some("0-7"));
    }
}
