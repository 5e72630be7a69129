//! Schema enforcement: the [`Enforcer`] the binary installs in the broker
//! (`Broker::set_schema_checker`), which checks the key or value of each record produced to a
//! topic with `{key,value}.schema.validation` set (see `busbar_broker::schema_rules`).
//!
//! - `id`: the payload is in the wire format (magic byte 0, then a big-endian 4-byte schema id),
//!   the id is registered, and a version of the record's subject holds it (soft-deleted versions
//!   count). The subject follows the topic's strategy: `<topic>-<key|value>`, the record's name,
//!   or `<topic>-<record name>`. The record name is the Avro root's full name (a primitive root:
//!   its type name), the JSON schema's `title`, or the Protobuf message the payload's message
//!   indexes name.
//! - `strict`: also the rest of the payload decodes against that schema: Avro binary (exactly all
//!   bytes), JSON validated by the schema, Protobuf as the message its indexes name.
//!
//! Parsed schemas are cached per id, at most [`CACHE_MAX`] of them, and dropped whenever the
//! registry changes (a hard-deleted id can be imported again with other content).
//! Checks never write and never panic on input; their cost is bounded by the payload's size and
//! the codec limits.

use crate::avro::binary::{self, CodecLimits};
use crate::avro::Avro;
use crate::json_validate::JsonValidator;
use crate::protobuf::{self, Protobuf};
use crate::registry::Registry;
use crate::schema::Parsed;
use busbar_broker::schema_rules::{
    Part, PartRule, Refusal, SchemaChecker, SubjectStrategy, Validation,
};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Most parsed schemas kept for checks; past it the cache starts over.
pub const CACHE_MAX: usize = 1000;

/// A schema made ready to check payloads.
enum Compiled {
    Avro(Avro),
    Json {
        title: Option<String>,
        /// `Err`: the schema cannot be compiled for validation (said when strict needs it).
        validator: Result<JsonValidator, String>,
    },
    Protobuf(Protobuf),
}

/// The broker's schema check, over the registry.
pub struct Enforcer {
    registry: Arc<Registry>,
    cache: Mutex<Cache>,
    codec: CodecLimits,
}

/// Parsed schemas by id, valid for one registry generation.
#[derive(Default)]
struct Cache {
    generation: u64,
    by_id: HashMap<u32, Arc<Compiled>>,
}

fn refusal(reason: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        message: message.into(),
    }
}

/// The schema id and the bytes after the wire header.
pub fn framed(payload: &[u8]) -> Result<(u32, &[u8]), String> {
    match payload {
        [0, a, b, c, d, rest @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        [m, ..] if payload.len() >= 5 => Err(format!(
            "not in the schema registry's wire format: magic byte {m:#04x}, expected 0x00"
        )),
        _ => Err(format!(
            "not in the schema registry's wire format: {} bytes, expected a magic byte 0 and a \
             4-byte schema id first",
            payload.len()
        )),
    }
}

impl Enforcer {
    /// An enforcer over `registry`, decoding within `codec`'s limits.
    pub fn new(registry: Arc<Registry>, codec: CodecLimits) -> Self {
        Self {
            registry,
            cache: Mutex::default(),
            codec,
        }
    }

    fn compiled(&self, id: u32) -> Result<Arc<Compiled>, Refusal> {
        // Read before parsing: a write landing meanwhile leaves a stale generation in the cache,
        // which the next lookup clears.
        let generation = self.registry.generation();
        if let Some(c) = self.lock(generation).by_id.get(&id) {
            return Ok(c.clone());
        }
        let p = self.registry.parsed_by_id(id).map_err(|e| match e {
            crate::SchemaError::SchemaNotFound(_) => {
                refusal("unknown_id", format!("schema id {id} is not registered"))
            }
            e => refusal(
                "invalid_payload",
                format!("schema id {id} cannot be read: {e}"),
            ),
        })?;
        let compiled = Arc::new(match p.parsed {
            Parsed::Avro(a) => Compiled::Avro(a),
            Parsed::Json { schema: v, .. } => Compiled::Json {
                title: v.get("title").and_then(Value::as_str).map(str::to_string),
                validator: JsonValidator::with_references(&v, &p.json_references),
            },
            Parsed::Protobuf(p) => Compiled::Protobuf(p),
        });
        let mut cache = self.lock(generation);
        if cache.by_id.len() >= CACHE_MAX {
            // One out, not all: a client cycling through more ids than fit misses on a few
            // records, not on every one.
            let victim = cache.by_id.keys().next().copied();
            victim.map(|v| cache.by_id.remove(&v));
        }
        if cache.generation == generation {
            cache.by_id.insert(id, compiled.clone());
        }
        Ok(compiled)
    }

    /// The cache, emptied first when the registry changed since it was filled.
    fn lock(&self, generation: u64) -> std::sync::MutexGuard<'_, Cache> {
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.generation != generation {
            c.by_id.clear();
            c.generation = generation;
        }
        c
    }

    /// The subject the record must be registered under.
    fn subject(
        &self,
        topic: &str,
        part: Part,
        strategy: SubjectStrategy,
        id: u32,
        body: &[u8],
    ) -> Result<String, Refusal> {
        if strategy == SubjectStrategy::TopicName {
            return Ok(format!("{topic}-{}", part.as_str()));
        }
        let name = record_name(&*self.compiled(id)?, body).map_err(|why| {
            refusal(
                "wrong_subject",
                format!(
                    "schema id {id}: {why}, so {} names no subject",
                    strategy.as_str()
                ),
            )
        })?;
        Ok(match strategy {
            SubjectStrategy::RecordName => name,
            _ => format!("{topic}-{name}"),
        })
    }

    fn decode(&self, c: &Compiled, body: &[u8]) -> Result<(), String> {
        match c {
            Compiled::Avro(a) => binary::decode(a, body, &self.codec).map(drop),
            Compiled::Json { validator, .. } => {
                let validator = validator.as_ref().map_err(Clone::clone)?;
                let value: Value = serde_json::from_slice(body)
                    .map_err(|e| format!("the payload is not JSON: {e}"))?;
                validator.validate(&value)
            }
            Compiled::Protobuf(p) => {
                let (indexes, used) = protobuf::message_indexes(body)?;
                p.decode_json(&indexes, &body[used..]).map(drop)
            }
        }
    }
}

impl Enforcer {
    /// The JSON of a framed payload (magic byte 0, schema id, body), decoded with its schema:
    /// what `?decode=schema` reads answer and what subscription patterns match. `Err` says why
    /// it is not a decodable framed payload.
    pub fn decode_json(&self, payload: &[u8]) -> Result<Value, String> {
        let (id, body) = framed(payload)?;
        let c = self.compiled(id).map_err(|r| r.message)?;
        match &*c {
            Compiled::Avro(a) => binary::decode(a, body, &self.codec),
            Compiled::Json { .. } => serde_json::from_slice(body)
                .map_err(|e| format!("the payload of schema id {id} is not JSON: {e}")),
            Compiled::Protobuf(p) => {
                let (indexes, used) = protobuf::message_indexes(body)?;
                p.decode_json(&indexes, &body[used..])
            }
        }
    }

    /// `value` (JSON) encoded with schema `id` and framed (magic byte 0, the id, the body): Avro
    /// binary from the natural JSON mapping, JSON checked against the JSON schema, Protobuf from
    /// its proto3 JSON mapping as the file's first message (or `message`, a full name). What HTTP
    /// publish with `?schema=` stores.
    pub fn encode_json(
        &self,
        id: u32,
        value: &Value,
        message: Option<&str>,
    ) -> Result<Vec<u8>, String> {
        let c = self.compiled(id).map_err(|r| r.message)?;
        let mut out = vec![0];
        out.extend_from_slice(&id.to_be_bytes());
        match &*c {
            Compiled::Avro(a) => out.extend(binary::encode(a, value, &self.codec)?),
            Compiled::Json { validator, .. } => {
                validator.as_ref().map_err(Clone::clone)?.validate(value)?;
                out.extend(value.to_string().into_bytes());
            }
            Compiled::Protobuf(p) => {
                let target = match message {
                    Some(name) => protobuf::Target::Name(name),
                    None => protobuf::Target::Indexes(&[0]),
                };
                out.extend(p.encode_json(target, value)?)
            }
        }
        Ok(out)
    }

    /// The schema id `spec` names for `subject`: `latest`, a version number, or `id:<n>` (any
    /// registered id; a topic that enforces schemas still checks it is the subject's).
    pub fn resolve(&self, subject: &str, spec: &str) -> Result<u32, String> {
        if let Some(n) = spec.strip_prefix("id:") {
            let id: u32 = n
                .parse()
                .map_err(|_| format!("{spec:?}: {n:?} is not a schema id"))?;
            return match self.registry.id_in_subject(id, subject) {
                None => Err(format!("schema id {id} is not registered")),
                Some(_) => Ok(id),
            };
        }
        let version = match spec {
            "latest" | "-1" => None,
            n => Some(
                n.parse::<u32>()
                    .map_err(|_| format!("{spec:?} is not latest, a version number or id:<n>"))?,
            ),
        };
        self.registry
            .version_id(subject, version)
            .map_err(|e| e.to_string())
    }

    /// Whether values can be encoded with schema `id` as `message` (a Protobuf message's full
    /// name; only Protobuf schemas take one): the schema compiles and names that message.
    pub fn check_encoding(&self, id: u32, message: Option<&str>) -> Result<(), String> {
        let c = self.compiled(id).map_err(|r| r.message)?;
        match (&*c, message) {
            (Compiled::Protobuf(p), Some(name)) => p
                .indexes_of(name)
                .map(drop)
                .ok_or_else(|| format!("schema id {id} has no message {:?}", crate::shown(name))),
            (_, Some(_)) => Err(format!(
                "schema id {id} is not PROTOBUF: `message` names a Protobuf message"
            )),
            (Compiled::Json { validator, .. }, None) => {
                validator.as_ref().map(drop).map_err(Clone::clone)
            }
            (_, None) => Ok(()),
        }
    }

    /// The registry this enforcer reads.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }
}

/// The record name RecordNameStrategy uses (see the module docs).
fn record_name(c: &Compiled, body: &[u8]) -> Result<String, String> {
    match c {
        Compiled::Avro(a) => avro_name(a).ok_or_else(|| "the Avro schema has no root".into()),
        Compiled::Json { title, .. } => title
            .clone()
            .ok_or_else(|| "the JSON schema has no \"title\"".into()),
        Compiled::Protobuf(p) => {
            let (indexes, _) = protobuf::message_indexes(body)?;
            p.record_name(&indexes)
                .ok_or_else(|| format!("message indexes {indexes:?} name no message"))
        }
    }
}

/// The Avro root's full name, or a primitive or complex root's type name.
fn avro_name(a: &Avro) -> Option<String> {
    a.root.as_ref().map(crate::avro::type_name)
}

impl SchemaChecker for Enforcer {
    fn check(
        &self,
        topic: &str,
        part: Part,
        rule: PartRule,
        payload: &[u8],
    ) -> Result<(), Refusal> {
        let (id, body) = framed(payload).map_err(|m| refusal("unframed", m))?;
        let subject = self.subject(topic, part, rule.strategy, id, body)?;
        match self.registry.id_in_subject(id, &subject) {
            None => {
                return Err(refusal(
                    "unknown_id",
                    format!("schema id {id} is not registered"),
                ))
            }
            Some(false) => {
                return Err(refusal(
                    "wrong_subject",
                    format!(
                        "schema id {id} is not registered under subject {:?}",
                        crate::shown(&subject)
                    ),
                ))
            }
            Some(true) => {}
        }
        if rule.validation == Validation::Strict {
            let c = self.compiled(id)?;
            self.decode(&c, body).map_err(|why| {
                refusal(
                    "invalid_payload",
                    format!("does not match schema id {id}: {why}"),
                )
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_header_is_read_or_refused_precisely() {
        assert_eq!(framed(&[0, 0, 0, 1, 2, 9]), Ok((258, &[9u8][..])));
        assert_eq!(framed(&[0, 0, 0, 0, 7]), Ok((7, &[][..])));
        let e = framed(&[1, 0, 0, 0, 7]).unwrap_err();
        assert!(e.contains("magic byte 0x01"), "{e}");
        let e = framed(b"{}").unwrap_err();
        assert!(e.contains("2 bytes"), "{e}");
        assert!(framed(&[]).is_err());
    }
}
