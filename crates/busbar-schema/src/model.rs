//! The registry's vocabulary: schema types, compatibility levels, modes, references, a stored
//! version, the limits of `[schema_registry]`, and the checks of a subject name. Plain data with
//! serde forms that match Confluent's JSON (unknown fields ignored on input).

use crate::error::{Result, SchemaError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A schema's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchemaType {
    Avro,
    Json,
    Protobuf,
}

impl SchemaType {
    /// Parses Confluent's `schemaType` (absent means AVRO).
    pub fn parse(s: Option<&str>) -> Result<Self> {
        match s.map(str::to_ascii_uppercase).as_deref() {
            None | Some("AVRO") => Ok(Self::Avro),
            Some("JSON") => Ok(Self::Json),
            Some("PROTOBUF") => Ok(Self::Protobuf),
            Some(other) => Err(SchemaError::InvalidSchema(format!(
                "unknown schemaType {:?}",
                crate::shown(other)
            ))),
        }
    }

    /// The name Confluent uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Avro => "AVRO",
            Self::Json => "JSON",
            Self::Protobuf => "PROTOBUF",
        }
    }
}

/// A compatibility level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compatibility {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl Compatibility {
    /// Parses a level name (case-insensitive, as Confluent).
    pub fn parse(s: &str) -> Result<Self> {
        serde_json::from_value(Value::String(s.to_ascii_uppercase()))
            .map_err(|_| SchemaError::InvalidCompatibility(crate::shown(s)))
    }

    /// The level's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Whether the candidate must be checked against every live version, not only the latest.
    pub fn transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }

    /// (the new schema must read the old one's data, the old one must read the new one's).
    pub fn directions(self) -> (bool, bool) {
        match self {
            Self::None => (false, false),
            Self::Backward | Self::BackwardTransitive => (true, false),
            Self::Forward | Self::ForwardTransitive => (false, true),
            Self::Full | Self::FullTransitive => (true, true),
        }
    }
}

/// A registry or subject mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    Readwrite,
    Readonly,
    ReadonlyOverride,
    Import,
}

impl Mode {
    /// Parses a mode name (case-insensitive).
    pub fn parse(s: &str) -> Result<Self> {
        serde_json::from_value(Value::String(s.to_ascii_uppercase()))
            .map_err(|_| SchemaError::InvalidMode(crate::shown(s)))
    }

    /// The mode's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Readwrite => "READWRITE",
            Self::Readonly => "READONLY",
            Self::ReadonlyOverride => "READONLY_OVERRIDE",
            Self::Import => "IMPORT",
        }
    }

    /// Whether writes are refused.
    pub fn read_only(self) -> bool {
        matches!(self, Self::Readonly | Self::ReadonlyOverride)
    }
}

/// A reference from a schema to a version of another subject.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Reference {
    pub name: String,
    pub subject: String,
    pub version: i64,
}

/// A schema as submitted (a register, lookup or compatibility body).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaInput {
    #[serde(default)]
    pub schema: String,
    #[serde(default)]
    pub schema_type: Option<String>,
    #[serde(default)]
    pub references: Vec<Reference>,
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub rule_set: Option<Value>,
    /// IMPORT mode only.
    #[serde(default)]
    pub id: Option<i64>,
    /// IMPORT mode only.
    #[serde(default)]
    pub version: Option<i64>,
}

/// One stored version of a subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub schema_type: SchemaType,
    /// As submitted.
    pub schema: String,
    #[serde(default)]
    pub references: Vec<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_set: Option<Value>,
    #[serde(default)]
    pub deleted: bool,
}

/// The limits of `[schema_registry]`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest schema text, in bytes (`schema_bytes_max`). Default 1 MiB.
    pub schema_bytes_max: usize,
    /// Most subjects, soft-deleted ones included (`subjects_max`). Default 10,000.
    pub subjects_max: usize,
    /// Most versions of one subject, soft-deleted ones included (`versions_per_subject_max`).
    /// Default 1,000.
    pub versions_per_subject_max: usize,
    /// Most distinct schemas (ids in use) (`schemas_max`). Default 100,000.
    pub schemas_max: usize,
    /// Deepest nesting of types in a schema, and longest chain of references (`depth_max`).
    /// Default 64.
    pub depth_max: usize,
    /// Longest subject name, in bytes (`subject_bytes_max`). Default 255.
    pub subject_bytes_max: usize,
    /// Most type or schema-pair comparisons in one compatibility check of two schemas
    /// (`check_steps_max`; Avro and JSON Schema). Default 200,000: large real-world schemas
    /// take a few thousand; past it the check answers incompatible, naming the limit.
    pub check_steps_max: usize,
    /// Deepest chain of nested comparisons in one compatibility check (`check_depth_max`).
    /// Default 128.
    pub check_depth_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            schema_bytes_max: 1 << 20,
            subjects_max: 10_000,
            versions_per_subject_max: 1_000,
            schemas_max: 100_000,
            depth_max: 64,
            subject_bytes_max: 255,
            check_steps_max: 200_000,
            check_depth_max: 128,
        }
    }
}

/// Refuses an empty subject, one with control characters, or one over the limit (42208).
pub fn check_subject(subject: &str, limits: &Limits) -> Result<()> {
    if subject.is_empty() || subject.chars().any(char::is_control) {
        return Err(SchemaError::InvalidSubject(format!(
            "Invalid subject {:?}: empty or with control characters",
            crate::shown(subject)
        )));
    }
    if subject.len() > limits.subject_bytes_max {
        return Err(SchemaError::InvalidSubject(format!(
            "Subject of {} bytes is longer than schema_registry.subject_bytes_max ({})",
            subject.len(),
            limits.subject_bytes_max
        )));
    }
    Ok(())
}

/// A version in a path or body: a number in 1..=2^31-1, `latest` or `-1` (`None` = latest).
pub fn parse_version(s: &str) -> Result<Option<u32>> {
    if s == "latest" || s == "-1" {
        return Ok(None);
    }
    match s.parse::<u32>() {
        Ok(v) if (1..=i32::MAX as u32).contains(&v) => Ok(Some(v)),
        _ => Err(SchemaError::InvalidVersion(crate::shown(s))),
    }
}
