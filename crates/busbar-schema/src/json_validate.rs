//! JSON Schema validation of payloads (strict schema enforcement), with the `jsonschema` crate.
//!
//! A [`JsonValidator`] is compiled once from a registered schema (the caller caches it per
//! schema id) and then checks values. `$ref`s resolve inside the schema and to the schema's
//! registry references, given as `(name, schema)` pairs: a `$ref` whose URI is a reference's
//! name (`"other.json"`, or an absolute name such as `"https://example.com/other.json"`) reads
//! that schema; anything else is refused when the validator is built. Nothing is fetched: the
//! crate is built without its HTTP and file resolvers.
//!
//! A schema without `$schema` is read as draft-07, Confluent's default; one with `$schema`
//! uses the draft it names. Validation stops at the first error and names the instance path
//! (`at /items/3/price: ...`); it walks the value, so its cost is bounded by the value's size
//! (serde_json refuses values nested deeper than 128 before they get here).

use jsonschema::{Draft, Retrieve, Uri, Validator};
use serde_json::Value;
use std::collections::HashMap;

/// The base URI of a schema without `$id`: relative `$ref`s resolve against it.
const BASE: &str = "busbar:///";

/// A compiled JSON schema.
pub struct JsonValidator {
    validator: Validator,
}

impl std::fmt::Debug for JsonValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonValidator").finish_non_exhaustive()
    }
}

impl JsonValidator {
    /// Compiles `schema`, which has no references to other subjects.
    pub fn new(schema: &Value) -> Result<Self, String> {
        Self::with_references(schema, &[])
    }

    /// Compiles `schema` with its registry references as `(name, schema)` pairs (Confluent's
    /// `references`, resolved by the caller, references of references included).
    pub fn with_references(schema: &Value, references: &[(String, Value)]) -> Result<Self, String> {
        let mut options = jsonschema::options()
            .with_base_uri(BASE)
            .with_retriever(References::new(references));
        let has_schema = schema
            .as_object()
            .is_some_and(|o| o.contains_key("$schema"));
        if !has_schema {
            options = options.with_draft(Draft::Draft7);
        }
        let validator = options
            .build(schema)
            .map_err(|e| format!("the JSON schema cannot be compiled: {}", e.masked()))?;
        Ok(JsonValidator { validator })
    }

    /// Checks `value`: `Err` names the first failing instance path and why.
    pub fn validate(&self, value: &Value) -> Result<(), String> {
        match self.validator.validate(value) {
            Ok(()) => Ok(()),
            Err(e) => {
                let path = e.instance_path().as_str();
                let path = if path.is_empty() { "/" } else { path };
                Err(format!(
                    "at {}: {}",
                    crate::shown(path),
                    crate::shown(&e.masked().to_string())
                ))
            }
        }
    }
}

/// Resolves `$ref`s to the schema's registry references; everything else is refused.
struct References {
    by_name: HashMap<String, Value>,
}

impl References {
    fn new(references: &[(String, Value)]) -> Self {
        References {
            by_name: references.iter().cloned().collect(),
        }
    }
}

impl Retrieve for References {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let full = uri.as_str();
        let relative = full.strip_prefix(BASE).unwrap_or(full);
        match (self.by_name.get(full)).or_else(|| self.by_name.get(relative)) {
            Some(schema) => Ok(schema.clone()),
            None => Err(format!(
                "\"{}\" is not one of the schema's references (busbar fetches no URL or file)",
                crate::shown(relative)
            )
            .into()),
        }
    }
}
