//! `[schema_registry]`: the schema registry's listener and limits (issue 17). The registry runs
//! with every `busbar serve`: on its own listener (`addr`, empty disables it) and under
//! `/schema-registry/` on the HTTP API.

use anyhow::Result;
use busbar_schema::avro::binary::CodecLimits;
use busbar_schema::Limits;
use serde::{Deserialize, Serialize};

/// `[schema_registry]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistrySection {
    /// Address of the registry's own listener (`schema.registry.url` of Confluent clients);
    /// empty: only under `/schema-registry/` on the HTTP API.
    pub addr: String,
    /// Largest schema text, bytes (42209 past it).
    pub schema_bytes_max: u64,
    /// Most subjects, soft-deleted ones included.
    pub subjects_max: u64,
    /// Most versions of one subject, soft-deleted ones included.
    pub versions_per_subject_max: u64,
    /// Most distinct schemas (ids in use).
    pub schemas_max: u64,
    /// Deepest nesting of types in a schema, and longest chain of references.
    pub depth_max: u64,
    /// Longest subject name, bytes.
    pub subject_bytes_max: u64,
    /// Most comparisons in one compatibility check of two schemas (Avro, JSON Schema).
    pub check_steps_max: u64,
    /// Deepest chain of nested comparisons in one compatibility check.
    pub check_depth_max: u64,
    /// Deepest nesting of values when a payload is decoded or encoded (strict enforcement,
    /// `?schema=`, `?decode=schema`).
    pub codec_depth_max: u64,
    /// Most array items and map entries in one decoded or encoded value.
    pub codec_items_max: u64,
}

impl Default for SchemaRegistrySection {
    fn default() -> Self {
        let l = Limits::default();
        let c = CodecLimits::default();
        Self {
            addr: "127.0.0.1:8081".into(),
            schema_bytes_max: l.schema_bytes_max as u64,
            subjects_max: l.subjects_max as u64,
            versions_per_subject_max: l.versions_per_subject_max as u64,
            schemas_max: l.schemas_max as u64,
            depth_max: l.depth_max as u64,
            subject_bytes_max: l.subject_bytes_max as u64,
            check_steps_max: l.check_steps_max as u64,
            check_depth_max: l.check_depth_max as u64,
            codec_depth_max: c.depth_max as u64,
            codec_items_max: c.items_max as u64,
        }
    }
}

impl SchemaRegistrySection {
    /// Range checks.
    pub fn validate(&self) -> Result<()> {
        if !self.addr.is_empty() {
            crate::config::listen_address("schema_registry.addr", &self.addr)?;
        }
        let checks: &[(&str, u64, u64, u64)] = &[
            (
                "schema_registry.schema_bytes_max",
                self.schema_bytes_max,
                1024,
                1 << 20,
            ),
            (
                "schema_registry.subjects_max",
                self.subjects_max,
                1,
                10_000_000,
            ),
            (
                "schema_registry.versions_per_subject_max",
                self.versions_per_subject_max,
                1,
                1_000_000,
            ),
            (
                "schema_registry.schemas_max",
                self.schemas_max,
                1,
                100_000_000,
            ),
            ("schema_registry.depth_max", self.depth_max, 2, 100),
            (
                "schema_registry.subject_bytes_max",
                self.subject_bytes_max,
                1,
                1 << 20,
            ),
            (
                "schema_registry.check_steps_max",
                self.check_steps_max,
                100,
                100_000_000,
            ),
            (
                "schema_registry.check_depth_max",
                self.check_depth_max,
                2,
                1000,
            ),
            (
                "schema_registry.codec_depth_max",
                self.codec_depth_max,
                1,
                1000,
            ),
            (
                "schema_registry.codec_items_max",
                self.codec_items_max,
                1,
                100_000_000,
            ),
        ];
        crate::config::check_ranges(checks)
    }

    /// The bounds of decoding and encoding one payload.
    pub fn codec_limits(&self) -> CodecLimits {
        CodecLimits {
            depth_max: self.codec_depth_max as usize,
            items_max: self.codec_items_max as usize,
        }
    }

    /// The registry's limits.
    pub fn limits(&self) -> Limits {
        Limits {
            schema_bytes_max: self.schema_bytes_max as usize,
            subjects_max: self.subjects_max as usize,
            versions_per_subject_max: self.versions_per_subject_max as usize,
            schemas_max: self.schemas_max as usize,
            depth_max: self.depth_max as usize,
            subject_bytes_max: self.subject_bytes_max as usize,
            check_steps_max: self.check_steps_max as usize,
            check_depth_max: self.check_depth_max as usize,
        }
    }
}
