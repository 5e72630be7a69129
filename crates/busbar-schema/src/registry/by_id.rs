//! What schema enforcement asks the registry (`crate::enforce`): whether an id is registered
//! under a subject, and a schema by id parsed with its references resolved (the JSON schemas it
//! references too, for validation). Reads only.

use super::{Registry, Tables};
use crate::error::{Result, SchemaError};
use crate::model::Reference;
use crate::schema::Parsed;
use serde_json::Value;
use std::collections::HashSet;

/// A schema by id, parsed for checking payloads.
#[derive(Debug)]
pub struct ParsedById {
    pub parsed: Parsed,
    /// For a JSON schema: the JSON schemas it references, by reference name, references of
    /// references included.
    pub json_references: Vec<(String, Value)>,
}

impl Registry {
    /// Whether schema `id` is held by a version of `subject` (soft-deleted versions count, as in
    /// Redpanda's check: consumers still read them); `None` when no schema has `id`.
    pub fn id_in_subject(&self, id: u32, subject: &str) -> Option<bool> {
        let t = self.read();
        let by_id = t.ids.get(&id)?;
        Some(by_id.holders.iter().any(|(s, _)| s == subject))
    }

    /// The schema with `id`, parsed with its references resolved.
    pub fn parsed_by_id(&self, id: u32) -> Result<ParsedById> {
        let t = self.read();
        let by_id = t
            .ids
            .get(&id)
            .ok_or_else(|| SchemaError::SchemaNotFound(format!("Schema {id} not found")))?;
        let key = by_id.key.clone();
        let text = by_id.served.clone();
        let prepared = self.parse(&t, key.schema_type, &text, key.references.clone())?;
        let json_references = match &prepared.parsed {
            crate::schema::Parsed::Json { references, .. } => references.clone(),
            _ => Vec::new(),
        };
        Ok(ParsedById {
            parsed: prepared.parsed,
            json_references,
        })
    }

    /// Adds the JSON schema `r` names, and those it references, to `out`.
    /// The JSON schemas `references` name, each once by its reference name (as Confluent
    /// resolves them), a referencing schema before the ones it references in turn: what both
    /// the compatibility check and payload validation resolve `$ref`s with.
    pub(crate) fn json_references(
        &self,
        t: &Tables,
        references: &[Reference],
    ) -> Result<Vec<(String, Value)>> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for r in references {
            self.json_reference(t, r, &mut out, &mut seen, 1)?;
        }
        Ok(out)
    }

    fn json_reference(
        &self,
        t: &Tables,
        r: &Reference,
        out: &mut Vec<(String, Value)>,
        seen: &mut HashSet<String>,
        depth: usize,
    ) -> Result<()> {
        if depth > self.limits.depth_max {
            return Err(SchemaError::InvalidSchema(format!(
                "references nested more than {} deep (schema_registry.depth_max), or a cycle",
                self.limits.depth_max
            )));
        }
        let version = Self::reference_version(t, r)?;
        if !seen.insert(r.name.clone()) {
            return Ok(());
        }
        let target = Self::find(t, &r.subject, Some(version), true)?;
        let value = serde_json::from_str(&target.schema).map_err(|e| {
            SchemaError::InvalidSchema(format!(
                "reference {:?} is not JSON: {e}",
                crate::shown(&r.name)
            ))
        })?;
        out.push((r.name.clone(), value));
        for inner in &target.references {
            self.json_reference(t, inner, out, seen, depth + 1)?;
        }
        Ok(())
    }
}
