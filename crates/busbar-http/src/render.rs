//! How reads show an event's key and value (`?encoding=auto|json|utf8|base64`). `auto` (the
//! default) shows bytes that are a JSON document as that JSON, exactly as stored (the text is copied
//! into the answer, never re-encoded, so `1e3` stays `1e3`), other UTF-8 text (no control
//! characters but tab, LF, CR) as a string, and anything else as `value_base64`. A forced encoding an event does not fit gives that event
//! `value_base64` plus `value_error` (never a failed read, so a poll or stream cannot stick on one
//! event). `null` in a read always means "no key" / "no value (tombstone)": in `auto` a stored
//! 4-byte text `null` shows as the string `"null"`.

use crate::error::{ApiError, ApiResult};
use crate::schema_codec::Decoded;
use crate::time::format_rfc3339;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use busbar_broker::StoredEvent;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::HashMap;

/// The `?encoding=` of a read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoding {
    #[default]
    Auto,
    Json,
    Utf8,
    Base64,
}

impl Encoding {
    /// The query parameter's name, for routes' lists of known parameters.
    pub const PARAM: &'static str = "encoding";

    /// `?encoding=` of a request (absent: `auto`); anything else is a 400 naming the choices.
    pub fn from_query(q: &HashMap<String, String>) -> ApiResult<Encoding> {
        match q.get(Self::PARAM).map(String::as_str) {
            None | Some("auto") => Ok(Encoding::Auto),
            Some("json") => Ok(Encoding::Json),
            Some("utf8") => Ok(Encoding::Utf8),
            Some("base64") => Ok(Encoding::Base64),
            Some(other) => Err(ApiError::bad_request(format!(
                "query parameter `encoding`: {other:?} is not one of auto, json, utf8, base64"
            ))),
        }
    }
}

/// How one key or value is shown.
enum Shown<'a> {
    Absent,
    Json(&'a RawValue),
    Text(&'a str),
    Base64,
    /// The forced encoding does not fit: base64 plus the reason.
    Unfit(&'static str),
}

fn as_json(bytes: &[u8]) -> Option<&RawValue> {
    serde_json::from_slice::<&RawValue>(bytes).ok()
}

/// Text for `auto`: UTF-8 without control characters other than tab, line feed and carriage
/// return (bytes such as 00 01 02 are valid UTF-8 but binary, so they show as base64).
fn as_text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok().filter(|t| {
        !t.chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    })
}

/// `auto_text`: whether `auto` shows non-JSON text as a string (keys: yes; values: not yet, see
/// the module doc).
fn shown(bytes: Option<&[u8]>, enc: Encoding, auto_text: bool) -> Shown<'_> {
    let Some(b) = bytes else {
        return Shown::Absent;
    };
    let text = std::str::from_utf8(b).ok();
    match enc {
        Encoding::Auto => match (as_json(b), as_text(b)) {
            (Some(j), _) if j.get() != "null" => Shown::Json(j),
            (_, Some(t)) if auto_text => Shown::Text(t),
            _ => Shown::Base64,
        },
        Encoding::Json => as_json(b).map_or(Shown::Unfit("not a JSON document"), Shown::Json),
        Encoding::Utf8 => text.map_or(Shown::Unfit("not UTF-8 text"), Shown::Text),
        Encoding::Base64 => Shown::Base64,
    }
}

/// Writes `name` (or `name_base64`, and `name_error` when the forced encoding does not fit).
fn entry<M: SerializeMap>(
    m: &mut M,
    name: &str,
    bytes: Option<&[u8]>,
    enc: Encoding,
    auto_text: bool,
) -> Result<(), M::Error> {
    let b64 = || B64.encode(bytes.unwrap_or_default());
    match shown(bytes, enc, auto_text) {
        Shown::Absent => m.serialize_entry(name, &()),
        Shown::Json(j) => m.serialize_entry(name, j),
        Shown::Text(t) => m.serialize_entry(name, t),
        Shown::Base64 => m.serialize_entry(&format!("{name}_base64"), &b64()),
        Shown::Unfit(why) => {
            m.serialize_entry(&format!("{name}_base64"), &b64())?;
            m.serialize_entry(
                &format!("{name}_error"),
                &format!("{why}; shown as {name}_base64"),
            )
        }
    }
}

/// One record header: `value` when UTF-8, `value_base64` otherwise (Kafka allows repeated keys,
/// so headers are a list).
struct Header<'a>(&'a str, &'a [u8]);

impl Serialize for Header<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("key", self.0)?;
        match std::str::from_utf8(self.1) {
            Ok(v) => m.serialize_entry("value", v)?,
            Err(_) => m.serialize_entry("value_base64", &B64.encode(self.1))?,
        }
        m.end()
    }
}

/// An event as a read shows it: topic, partition, offset, timestamp (ms and RFC 3339), key, value,
/// headers.
pub struct EventView<'a> {
    pub event: &'a StoredEvent,
    pub encoding: Encoding,
    /// The key and value decoded with their schemas (`?decode=schema`), shown instead.
    pub decoded: (Decoded, Decoded),
}

impl<'a> EventView<'a> {
    pub fn new(event: &'a StoredEvent, encoding: Encoding) -> Self {
        EventView {
            event,
            encoding,
            decoded: (None, None),
        }
    }

    /// The view as JSON text (for SSE `data:` lines).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an event view encodes")
    }
}

impl Serialize for EventView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.event;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("topic", &e.topic)?;
        m.serialize_entry("partition", &e.partition)?;
        m.serialize_entry("offset", &e.offset)?;
        m.serialize_entry("timestamp", &e.timestamp)?;
        m.serialize_entry("time", &format_rfc3339(e.timestamp))?;
        for (name, bytes, decoded) in [
            ("key", e.key.as_deref(), &self.decoded.0),
            ("value", e.value.as_deref(), &self.decoded.1),
        ] {
            match decoded {
                Some((id, v)) => {
                    m.serialize_entry(name, v)?;
                    m.serialize_entry(&format!("{name}_schema_id"), id)?;
                }
                None => entry(&mut m, name, bytes, self.encoding, true)?,
            }
        }
        let headers: Vec<Header> = e.headers.iter().map(|(k, v)| Header(k, v)).collect();
        m.serialize_entry("headers", &headers)?;
        m.end()
    }
}

/// Views of `events` in one encoding, with their decoded keys and values (`?decode=schema`).
pub fn decoded_views(
    events: &[StoredEvent],
    encoding: Encoding,
    decoded: Vec<(Decoded, Decoded)>,
) -> Vec<EventView<'_>> {
    (events.iter().zip(decoded))
        .map(|(e, d)| EventView {
            decoded: d,
            ..EventView::new(e, encoding)
        })
        .collect()
}

/// Views of `events` in one encoding.
pub fn views(events: &[StoredEvent], encoding: Encoding) -> Vec<EventView<'_>> {
    events.iter().map(|e| EventView::new(e, encoding)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(bytes: &[u8], enc: Encoding) -> String {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::new(&mut out);
        let mut m = ser.serialize_map(None).unwrap();
        entry(&mut m, "value", Some(bytes), enc, true).unwrap();
        SerializeMap::end(m).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn each_encoding_shows_bytes_as_documented() {
        use Encoding::*;
        assert_eq!(show(br#"{"b": 1e3}"#, Auto), r#"{"value":{"b": 1e3}}"#);
        assert_eq!(show(b"hi", Auto), r#"{"value":"hi"}"#);
        assert_eq!(show(b"null", Auto), r#"{"value":"null"}"#);
        assert_eq!(show(&[0xff], Auto), r#"{"value_base64":"/w=="}"#);
        assert_eq!(show(&[0, 1, 2], Auto), r#"{"value_base64":"AAEC"}"#);
        assert_eq!(show(b"a\tb\n", Auto), r#"{"value":"a\tb\n"}"#);
        assert_eq!(show(&[0, 1, 2], Utf8), r#"{"value":"\u0000\u0001\u0002"}"#);
        assert_eq!(show(b"1.50", Json), r#"{"value":1.50}"#);
        assert!(show(b"hi", Json).contains(r#""value_base64":"aGk=","value_error":"not a JSON"#));
        assert_eq!(show(b"[1]", Utf8), r#"{"value":"[1]"}"#);
        assert!(show(&[0xff], Utf8).contains("not UTF-8"));
        assert_eq!(show(b"[1]", Base64), r#"{"value_base64":"WzFd"}"#);
    }
}
