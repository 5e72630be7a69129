//! The decode hook: how subscription patterns see schema-framed events by their content.
//!
//! A value in the schema registry's wire format (magic byte `0`, a big-endian 4-byte schema id,
//! then the Avro, Protobuf or JSON body) is bytes to the bus. The binary installs a [`Decoder`]
//! ([`crate::Bus::set_decoder`]) that turns such a value into JSON with its schema (the
//! registry's enforcer); busbar-bus itself knows nothing of schemas and stays free of the
//! registry's dependencies.
//!
//! In the document patterns match, a framed value that decodes is `data` (the decoded JSON),
//! with `datacontenttype` `application/json` (the media type of that `data`) and `dataschema`
//! the URI of its schema in the registry (`<schema_uri><id>`; a binary-mode CloudEvent keeps
//! the `dataschema` and `datacontenttype` its producer gave). A value that is not framed, or
//! does not decode (an unknown id, a body its schema does not read), is matched as before:
//! no `data` unless the bytes are JSON. Decoding never fails a delivery: the event is still
//! routed by its other attributes. See docs/decisions.md (issue 17).
//!
//! The same hook may carry an encoder ([`Decoder::with_encoder`]): a topic target with `encode`
//! stores each delivered value encoded with a schema of a registry subject (the event's `data`,
//! or the transform's output, as JSON; `request.rs`).

use serde_json::Value;
use std::sync::Arc;

/// Decodes a framed value to JSON (`None`: not decodable).
pub type DecodeFn = dyn Fn(&[u8]) -> Option<Value> + Send + Sync;

/// What encodes JSON with a schema of the registry (the binary gives the registry's enforcer).
pub trait Encode: Send + Sync {
    /// The schema id `schema` (`latest`, a version number, `id:<n>`) names in `subject`.
    fn resolve(&self, subject: &str, schema: &str) -> Result<u32, String>;
    /// Whether values can be encoded with schema `id` as `message` (checked when a
    /// subscription is created or changed).
    fn check(&self, id: u32, message: Option<&str>) -> Result<(), String>;
    /// `value` encoded with schema `id` (as Protobuf message `message`, else the file's first)
    /// and framed (magic byte 0, the id, the body).
    fn encode(&self, id: u32, message: Option<&str>, value: &Value) -> Result<Vec<u8>, String>;
}

/// The wire format's header: magic byte and schema id.
pub const FRAME_HEADER: usize = 5;

/// The hook the bus decodes schema-framed values with.
#[derive(Clone)]
pub struct Decoder {
    decode: Arc<DecodeFn>,
    encode: Option<Arc<dyn Encode>>,
    schema_uri: Arc<str>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("schema_uri", &self.schema_uri)
            .finish_non_exhaustive()
    }
}

/// The schema id of a value in the wire format (magic byte 0 and at least the 4 id bytes).
pub fn framed_id(value: &[u8]) -> Option<u32> {
    match value {
        [0, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

impl Decoder {
    /// A decoder calling `decode` for framed values; `schema_uri` followed by the schema id is
    /// the `dataschema` of a decoded event (e.g. `http://127.0.0.1:8081/schemas/ids/`).
    pub fn new(
        schema_uri: impl Into<String>,
        decode: impl Fn(&[u8]) -> Option<Value> + Send + Sync + 'static,
    ) -> Self {
        Self {
            decode: Arc::new(decode),
            encode: None,
            schema_uri: Arc::from(schema_uri.into()),
        }
    }

    /// This decoder with an encoder for topic targets that re-encode (see the module docs).
    pub fn with_encoder(mut self, encode: Arc<dyn Encode>) -> Self {
        self.encode = Some(encode);
        self
    }

    /// The encoder, or why there is none.
    pub fn encoder(&self) -> Result<&dyn Encode, String> {
        match &self.encode {
            Some(e) => Ok(e.as_ref()),
            None => Err("no schema registry runs here to encode with".into()),
        }
    }

    /// The schema id and decoded JSON of `value`, when it is framed and decodes.
    pub fn decode(&self, value: &[u8]) -> Option<(u32, Value)> {
        let id = framed_id(value)?;
        (self.decode)(value).map(|v| (id, v))
    }

    /// The `dataschema` URI of schema `id`.
    pub fn dataschema(&self, id: u32) -> String {
        format!("{}{id}", self.schema_uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_framed_values_reach_the_hook() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = calls.clone();
        let d = Decoder::new("s:", move |_: &[u8]| {
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Some(json!({"qty": 1}))
        });
        for v in [
            &b""[..],
            b"\0",
            b"\0\0\0\0",
            b"\x01\0\0\0\x07",
            br#"{"qty":1}"#,
        ] {
            assert_eq!(d.decode(v), None, "{v:?}");
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 0);
        assert_eq!(d.decode(b"\0\0\0\x01\x07"), Some((263, json!({"qty": 1}))));
        assert_eq!(d.dataschema(263), "s:263");
    }

    #[test]
    fn encoding_needs_an_encoder() {
        struct Echo;
        impl Encode for Echo {
            fn resolve(&self, subject: &str, schema: &str) -> Result<u32, String> {
                Ok((subject.len() + schema.len()) as u32)
            }
            fn check(&self, _: u32, _: Option<&str>) -> Result<(), String> {
                Ok(())
            }
            fn encode(&self, id: u32, _: Option<&str>, v: &Value) -> Result<Vec<u8>, String> {
                Ok(format!("{id}/{v}").into_bytes())
            }
        }
        let d = Decoder::new("s:", |_: &[u8]| None);
        let err = d.encoder().err().unwrap();
        assert!(err.contains("no schema registry"), "{err}");
        let d = d.with_encoder(Arc::new(Echo));
        let e = d.encoder().unwrap();
        assert_eq!(e.resolve("t-value", "2"), Ok(8));
        assert_eq!(e.encode(8, None, &json!(1)).unwrap(), b"8/1");
    }

    #[test]
    fn a_value_the_hook_refuses_is_not_decoded() {
        let d = Decoder::new("s:", |_: &[u8]| None);
        assert_eq!(d.decode(b"\0\0\0\0\x09\x02"), None);
    }
}
