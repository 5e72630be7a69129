//! A submitted schema made ready for the registry: size-checked, parsed for its type (Avro by
//! hand in `avro`, JSON Schema as JSON, PROTOBUF compiled by `protobuf`), its references
//! resolved, and its canonical text computed (what equality and ids are decided on, and what
//! reads answer; a PROTOBUF schema's is its text as submitted). Compatibility between two parsed
//! schemas dispatches here by type; JSON Schema's rules are `json_compat`'s, PROTOBUF's
//! `protobuf`'s.

use crate::avro::{self, Avro};
use crate::error::{Result, SchemaError};
use crate::model::{Compatibility, Reference, SchemaType};
use crate::protobuf::Protobuf;
use serde_json::Value;

/// A parsed schema.
#[derive(Debug, Clone)]
pub enum Parsed {
    Avro(Avro),
    /// A JSON schema and the schemas it references (`(reference name, schema)`).
    Json {
        schema: Value,
        references: Vec<(String, Value)>,
    },
    Protobuf(Protobuf),
}

/// What a schema's resolved references put in scope: Avro's named types, and the files a
/// PROTOBUF schema imports as `(import path, text)`.
#[derive(Debug, Default)]
pub struct Known {
    pub avro: Avro,
    pub protobuf: Vec<(String, String)>,
    /// The JSON schemas a JSON schema references, as `(reference name, schema)`.
    pub json: Vec<(String, Value)>,
}

/// What identifies a schema's content: same key, same id (in any subject).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentKey {
    pub schema_type: SchemaType,
    pub canonical: String,
    pub references: Vec<Reference>,
}

/// The canonical text of `text` of type `ty` (no reference resolution: the text's own form).
pub fn canonical(ty: SchemaType, value: &Value) -> String {
    match ty {
        SchemaType::Avro => avro::canonical(value),
        _ => json_canonical(value),
    }
}

/// The canonical text of stored schema `text` of type `ty`: a PROTOBUF schema's tokens
/// (`protobuf::identity_text`: comments and spacing do not count; the registry serves the
/// text as submitted), a JSON one's [`canonical`] form (the text itself when it is not JSON).
pub fn canonical_text(ty: SchemaType, text: &str) -> String {
    if ty == SchemaType::Protobuf {
        return crate::protobuf::identity_text(text);
    }
    serde_json::from_str::<Value>(text)
        .map(|value| canonical(ty, &value))
        .unwrap_or_else(|_| text.to_string())
}

/// Compact JSON with object keys sorted, whatever serde_json's map order.
pub fn json_canonical(value: &Value) -> String {
    match value {
        Value::Object(obj) => {
            let mut keys: Vec<&String> = obj.keys().collect();
            keys.sort();
            let body: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), json_canonical(&obj[k])))
                .collect();
            format!("{{{}}}", body.join(","))
        }
        Value::Array(items) => {
            let body: Vec<String> = items.iter().map(json_canonical).collect();
            format!("[{}]", body.join(","))
        }
        other => other.to_string(),
    }
}

/// Parses `text` as `ty`, with what `known` (resolved references) holds in scope.
pub fn parse(
    ty: SchemaType,
    text: &str,
    known: &Known,
    depth_max: usize,
) -> Result<(Parsed, String)> {
    match ty {
        SchemaType::Protobuf => {
            let parsed = Protobuf::parse(text, &known.protobuf, depth_max)
                .map_err(SchemaError::InvalidSchema)?;
            Ok((Parsed::Protobuf(parsed), canonical_text(ty, text)))
        }
        SchemaType::Avro => {
            let value = json_of(ty, text)?;
            let parsed =
                Avro::parse(text, &known.avro, depth_max).map_err(SchemaError::InvalidSchema)?;
            Ok((Parsed::Avro(parsed), avro::canonical(&value)))
        }
        SchemaType::Json => {
            let value = json_of(ty, text)?;
            if !matches!(value, Value::Object(_) | Value::Bool(_)) {
                return Err(SchemaError::InvalidSchema(
                    "a JSON schema must be an object or a boolean".into(),
                ));
            }
            if depth(&value) > depth_max {
                return Err(SchemaError::InvalidSchema(format!(
                    "the JSON schema is nested more than {depth_max} deep (schema_registry.depth_max)"
                )));
            }
            let canonical = json_canonical(&value);
            let references = known.json.clone();
            Ok((
                Parsed::Json {
                    schema: value,
                    references,
                },
                canonical,
            ))
        }
    }
}

fn json_of(ty: SchemaType, text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        SchemaError::InvalidSchema(format!("the {} schema is not JSON: {e}", ty.as_str()))
    })
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Whether data written with `writer` can be read with `reader`, within the check budgets of
/// `limits` (`check_steps_max`, `check_depth_max`). JSON schemas are compared with the
/// schemas they reference, so a change inside a referenced schema counts.
pub fn can_read(
    reader: &Parsed,
    writer: &Parsed,
    limits: &crate::Limits,
) -> std::result::Result<(), Vec<String>> {
    match (reader, writer) {
        (Parsed::Avro(r), Parsed::Avro(w)) => {
            let budget = avro::Limits {
                steps_max: limits.check_steps_max,
                depth_max: limits.check_depth_max,
            };
            avro::can_read_with(r, w, &budget)
        }
        (
            Parsed::Json {
                schema: r,
                references: rr,
            },
            Parsed::Json {
                schema: w,
                references: wr,
            },
        ) => {
            let budget = crate::json_compat::Limits {
                steps_max: limits.check_steps_max,
                depth_max: limits.check_depth_max,
            };
            let reader = crate::json_compat::Document {
                schema: r,
                references: rr,
            };
            let writer = crate::json_compat::Document {
                schema: w,
                references: wr,
            };
            crate::json_compat::can_read_with(reader, writer, &budget)
        }
        (Parsed::Protobuf(r), Parsed::Protobuf(w)) => crate::protobuf::can_read(r, w),
        _ => Err(vec!["the schema types differ".into()]),
    }
}

/// The messages of `candidate` against `previous` (newest first) under `level`: empty when
/// compatible. Non-transitive levels look only at the newest.
pub fn check_level(
    level: Compatibility,
    candidate: &Parsed,
    previous: &[(u32, Parsed)],
    limits: &crate::Limits,
) -> Vec<String> {
    let (backward, forward) = level.directions();
    let take = if level.transitive() {
        previous.len()
    } else {
        previous.len().min(1)
    };
    let mut messages = Vec::new();
    for (version, old) in &previous[..take] {
        if backward {
            if let Err(m) = can_read(candidate, old, limits) {
                messages.extend(m.into_iter().map(|m| {
                    format!("the new schema cannot read data written with version {version}: {m}")
                }));
            }
        }
        if forward {
            if let Err(m) = can_read(old, candidate, limits) {
                messages.extend(m.into_iter().map(|m| {
                    format!("version {version} cannot read data written with the new schema: {m}")
                }));
            }
        }
    }
    if !messages.is_empty() {
        messages.push(format!("{{compatibility: '{}'}}", level.as_str()));
    }
    messages
}
