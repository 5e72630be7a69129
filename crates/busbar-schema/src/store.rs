//! The registry's durable rows and the in-memory tables rebuilt from them. Rows live in an
//! internal compacted log (`internal/schemas`), keyed like Confluent's `_schemas` topic: one row
//! per subject version (`SCHEMA`), per compatibility level (`CONFIG`) and per mode (`MODE`), plus
//! `ID_HIGH`, the highest id ever issued, so a hard delete never lets an id be issued again,
//! across restarts too. Soft delete rewrites a version with `deleted: true`; hard delete writes
//! its tombstone. Tables are only changed by [`Tables::apply`], in log order.

use crate::model::{Compatibility, Mode, Version};
use crate::schema::ContentKey;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Largest encoded row (key plus value) the registry writes: the internal log's batch limit
/// (1 MiB + 12 bytes, `batch_bytes_max` of busbar-log) less 1 KiB for the batch's and record's
/// framing. A version's row holds its schema text escaped inside JSON, so it is larger than
/// the schema; a version whose row would pass this is refused with 42209 before anything is
/// written.
pub const ROW_BYTES_MAX: usize = (1 << 20) - 1024;

/// One change to the registry's state.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    /// A version written (or `None`: the version of `subject` removed for good).
    Schema(String, u32, Option<Version>),
    /// A compatibility level set (or removed); subject `None` is the global level.
    Config(Option<String>, Option<Compatibility>),
    /// A mode set (or removed); subject `None` is the global mode.
    Mode(Option<String>, Option<Mode>),
    /// The highest id ever issued.
    IdHigh(u32),
}

impl Row {
    /// The row as a log key and value.
    pub fn encode(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        let (key, value) = match self {
            Row::Schema(s, v, version) => (
                json!({"keytype": "SCHEMA", "magic": 1, "subject": s, "version": v}),
                version
                    .as_ref()
                    .map(|v| serde_json::to_value(v).unwrap_or(Value::Null)),
            ),
            Row::Config(s, level) => (
                json!({"keytype": "CONFIG", "magic": 0, "subject": s}),
                level.map(|l| json!({"compatibilityLevel": l.as_str()})),
            ),
            Row::Mode(s, mode) => (
                json!({"keytype": "MODE", "magic": 0, "subject": s}),
                mode.map(|m| json!({"mode": m.as_str()})),
            ),
            Row::IdHigh(id) => (
                json!({"keytype": "ID_HIGH", "magic": 0}),
                Some(json!({"id": id})),
            ),
        };
        (
            crate::schema::json_canonical(&key).into_bytes(),
            value.map(|v| crate::schema::json_canonical(&v).into_bytes()),
        )
    }

    /// The size of the encoded row, key plus value.
    pub fn encoded_len(&self) -> usize {
        let (key, value) = self.encode();
        key.len() + value.map_or(0, |v| v.len())
    }

    /// The schema id the row issues or records, if any.
    pub fn id(&self) -> Option<u32> {
        match self {
            Row::Schema(_, _, Some(v)) => Some(v.id),
            Row::IdHigh(id) => Some(*id),
            _ => None,
        }
    }

    /// Decodes a stored row: `Ok(None)` for a key type this version does not know (kept for a
    /// newer busbar), `Err` for a row that does not decode.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<Row>, String> {
        let key: Value = serde_json::from_slice(key).map_err(|e| format!("key: {e}"))?;
        let value: Option<Value> = value
            .map(serde_json::from_slice)
            .transpose()
            .map_err(|e| format!("value: {e}"))?;
        let subject = || key["subject"].as_str().map(str::to_string);
        let field = |name: &str| {
            value
                .as_ref()
                .and_then(|v| v[name].as_str().map(str::to_string))
        };
        Ok(Some(match key["keytype"].as_str() {
            Some("SCHEMA") => {
                let s = subject().ok_or("SCHEMA key without a subject")?;
                let v = key["version"]
                    .as_u64()
                    .ok_or("SCHEMA key without a version")? as u32;
                let version = value
                    .map(serde_json::from_value::<Version>)
                    .transpose()
                    .map_err(|e| format!("version: {e}"))?;
                Row::Schema(s, v, version)
            }
            Some("CONFIG") => {
                let level = field("compatibilityLevel")
                    .map(|l| Compatibility::parse(&l).map_err(|e| e.to_string()))
                    .transpose()?;
                Row::Config(subject(), level)
            }
            Some("MODE") => {
                let mode = field("mode")
                    .map(|m| Mode::parse(&m).map_err(|e| e.to_string()))
                    .transpose()?;
                Row::Mode(subject(), mode)
            }
            Some("ID_HIGH") => Row::IdHigh(
                value
                    .and_then(|v| v["id"].as_u64())
                    .ok_or("ID_HIGH without an id")? as u32,
            ),
            _ => return Ok(None),
        }))
    }
}

/// A schema by id: its content and how many versions (in any subject) hold it.
#[derive(Debug, Clone)]
pub struct ById {
    pub key: ContentKey,
    /// The text reads answer: the canonical one, but a PROTOBUF schema's as first submitted
    /// (its canonical text is only its identity).
    pub served: String,
    pub holders: BTreeSet<(String, u32)>,
}

/// The registry's state in memory.
#[derive(Debug, Default)]
pub struct Tables {
    pub subjects: BTreeMap<String, BTreeMap<u32, Version>>,
    pub configs: BTreeMap<Option<String>, Compatibility>,
    pub modes: BTreeMap<Option<String>, Mode>,
    pub id_high: u32,
    pub ids: BTreeMap<u32, ById>,
    pub by_content: HashMap<ContentKey, u32>,
    /// Whether two ids ever shared a content key (see `add_version`); until then a removal
    /// need not look for another id of its content.
    pub shared_keys: bool,
}

impl Tables {
    /// Applies one row. `key_of` gives a version's content key (parsing its schema).
    pub fn apply(&mut self, row: Row, key_of: &dyn Fn(&Version) -> ContentKey) {
        match row {
            Row::Schema(s, v, version) => {
                self.remove_version(&s, v);
                if let Some(version) = version {
                    self.add_version(version, key_of);
                }
            }
            Row::Config(s, Some(l)) => _ = self.configs.insert(s, l),
            Row::Config(s, None) => _ = self.configs.remove(&s),
            Row::Mode(s, Some(m)) => _ = self.modes.insert(s, m),
            Row::Mode(s, None) => _ = self.modes.remove(&s),
            Row::IdHigh(id) => self.id_high = self.id_high.max(id),
        }
    }

    fn add_version(&mut self, version: Version, key_of: &dyn Fn(&Version) -> ContentKey) {
        let holder = (version.subject.clone(), version.version);
        let entry = self.ids.entry(version.id).or_insert_with(|| {
            let key = key_of(&version);
            let served = match key.schema_type {
                crate::model::SchemaType::Protobuf => version.schema.clone(),
                _ => key.canonical.clone(),
            };
            ById {
                key,
                served,
                holders: BTreeSet::new(),
            }
        });
        entry.holders.insert(holder);
        // One content, the lowest id: ids stored before identity was normalized further (Avro
        // names, PROTOBUF comments) may share a key now; new registrations reuse the first.
        let first = self
            .by_content
            .entry(entry.key.clone())
            .or_insert(version.id);
        self.shared_keys |= *first != version.id;
        *first = (*first).min(version.id);
        self.id_high = self.id_high.max(version.id);
        (self.subjects.entry(version.subject.clone()).or_default())
            .insert(version.version, version);
    }

    fn remove_version(&mut self, subject: &str, v: u32) {
        let Some(versions) = self.subjects.get_mut(subject) else {
            return;
        };
        let Some(old) = versions.remove(&v) else {
            return;
        };
        if versions.is_empty() {
            self.subjects.remove(subject);
        }
        if let Some(by_id) = self.ids.get_mut(&old.id) {
            by_id.holders.remove(&(subject.to_string(), v));
            if by_id.holders.is_empty() {
                let key = by_id.key.clone();
                self.ids.remove(&old.id);
                if self.by_content.get(&key) == Some(&old.id) {
                    // Another id with the same content (see `add_version`) takes over.
                    let other = (self.ids.iter())
                        .filter(|_| self.shared_keys)
                        .find(|(_, b)| b.key == key)
                        .map(|(id, _)| *id);
                    match other {
                        Some(id) => _ = self.by_content.insert(key, id),
                        None => _ = self.by_content.remove(&key),
                    }
                }
            }
        }
    }

    /// The live (or with `deleted`, all) versions of `subject`, oldest first.
    pub fn versions(&self, subject: &str, deleted: bool) -> Vec<&Version> {
        (self.subjects.get(subject).into_iter())
            .flat_map(|m| m.values())
            .filter(|v| deleted || !v.deleted)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SchemaType;

    fn version(subject: &str, id: u32, schema: &str) -> Version {
        Version {
            subject: subject.into(),
            version: 1,
            id,
            schema_type: SchemaType::Avro,
            schema: schema.into(),
            references: Vec::new(),
            metadata: None,
            rule_set: None,
            deleted: false,
        }
    }

    /// Two ids stored before identity was normalized further may share a key when loaded:
    /// the content maps to the lowest, and when that one goes the other takes over.
    #[test]
    fn ids_sharing_a_content_key_keep_the_lowest_and_hand_over() {
        let key_of = |v: &Version| ContentKey {
            schema_type: v.schema_type,
            canonical: crate::schema::canonical_text(v.schema_type, &v.schema),
            references: Vec::new(),
        };
        let dotted = r#"{"type":"record","name":"a.X","fields":[]}"#;
        let spaced = r#"{"type":"record","name":"X","namespace":"a","fields":[]}"#;
        let mut t = Tables::default();
        t.apply(
            Row::Schema("s2".into(), 1, Some(version("s2", 2, spaced))),
            &key_of,
        );
        t.apply(
            Row::Schema("s1".into(), 1, Some(version("s1", 1, dotted))),
            &key_of,
        );
        let key = key_of(&version("x", 0, spaced));
        assert_eq!(t.by_content.get(&key), Some(&1));
        t.apply(Row::Schema("s1".into(), 1, None), &key_of);
        assert_eq!(t.by_content.get(&key), Some(&2));
        t.apply(Row::Schema("s2".into(), 1, None), &key_of);
        assert_eq!(t.by_content.get(&key), None);
    }
}
