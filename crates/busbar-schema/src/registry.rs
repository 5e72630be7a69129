//! The registry: reads from the in-memory tables, writes through the internal log. One write at a
//! time (an async mutex whose guard moves into the log write's completion, so a caller that stops
//! waiting cannot let the next write decide on tables its own write has not reached yet); a write
//! is durable before it is applied and answered. Opening replays the log; a damaged log refuses
//! to start (an id mapping lost to a skipped range could hand one id to two schemas).

use crate::avro::Avro;
use crate::error::{Result, SchemaError};
use crate::model::{Compatibility, Limits, Mode, Reference, SchemaInput, SchemaType, Version};
use crate::schema::{self, ContentKey, Parsed};
use crate::store::{Row, Tables};
use busbar_broker::kvlog::KvLog;
use busbar_log::disk::Storage;
use busbar_log::Clock;
use serde_json::Value;
use std::sync::{Arc, RwLock};
use tokio::sync::Mutex;

/// The schema registry.
pub struct Registry {
    log: KvLog,
    tables: Arc<RwLock<Tables>>,
    write: Arc<Mutex<()>>,
    limits: Limits,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A schema found by id.
#[derive(Debug, Clone)]
pub struct IdSchema {
    pub id: u32,
    pub schema_type: SchemaType,
    /// Canonical text.
    pub schema: String,
    pub references: Vec<Reference>,
}

/// A schema checked and parsed for registration or lookup.
struct Prepared {
    parsed: Parsed,
    key: ContentKey,
}

fn key_of(v: &Version) -> ContentKey {
    let canonical = serde_json::from_str::<Value>(&v.schema)
        .map(|value| schema::canonical(v.schema_type, &value))
        .unwrap_or_else(|_| v.schema.clone());
    ContentKey {
        schema_type: v.schema_type,
        canonical,
        references: v.references.clone(),
    }
}

fn store_err(e: impl std::fmt::Display) -> SchemaError {
    SchemaError::Store(e.to_string())
}

impl Registry {
    /// Opens the registry stored in `storage` (the data directory's `internal/schemas`).
    pub fn open(storage: Arc<dyn Storage>, clock: Arc<dyn Clock>, limits: Limits) -> Result<Self> {
        let log = KvLog::open(storage, clock).map_err(store_err)?;
        let mut tables = Tables::default();
        let mut bad = Vec::new();
        let mut damage = log
            .replay(|at, key, value| match Row::decode(key, value) {
                Ok(Some(row)) => tables.apply(row, &key_of),
                Ok(None) => {}
                Err(e) => bad.push(format!("row at offset {at} does not decode: {e}")),
            })
            .map_err(store_err)?;
        damage.extend(bad);
        if !damage.is_empty() {
            return Err(SchemaError::Store(format!(
                "the schema registry's log (internal/schemas) is damaged, refusing to start: {}",
                damage.join("; ")
            )));
        }
        Ok(Self {
            log,
            tables: Arc::new(RwLock::new(tables)),
            write: Arc::default(),
            limits,
        })
    }

    /// Opens the registry in `broker`'s data directory.
    pub fn open_for(broker: &busbar_broker::Broker, limits: Limits) -> Result<Self> {
        let data = broker.config().data();
        let storage = data
            .storage("internal/schemas")
            .map_err(|e| store_err(format!("open {}: {e}", data.describe("internal/schemas"))))?;
        Self::open(storage, broker.config().clock.clone(), limits)
    }

    /// Clean shutdown of the log.
    pub fn close(&self) -> Result<()> {
        self.log.close().map_err(store_err)
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `rows` durably as one batch and applies them; the write lock is released once
    /// they are applied.
    async fn commit(&self, guard: tokio::sync::OwnedMutexGuard<()>, rows: Vec<Row>) -> Result<()> {
        let encoded = rows.iter().map(Row::encode).collect();
        let tables = self.tables.clone();
        let n = rows.len();
        self.log
            .write_whole(encoded, move |offsets| {
                if offsets.len() == n {
                    let mut t = tables.write().unwrap_or_else(|e| e.into_inner());
                    for row in rows {
                        t.apply(row, &key_of);
                    }
                }
                drop(guard);
            })
            .await
            .map_err(store_err)
    }

    /// Subjects with a live version (with `deleted`, soft-deleted ones too), starting with
    /// `prefix`.
    pub fn subjects(&self, deleted: bool, prefix: &str) -> Vec<String> {
        let t = self.read();
        (t.subjects.iter())
            .filter(|(s, vs)| s.starts_with(prefix) && vs.values().any(|v| deleted || !v.deleted))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// The version numbers of `subject`.
    pub fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<u32>> {
        let t = self.read();
        let vs: Vec<u32> = t
            .versions(subject, deleted)
            .iter()
            .map(|v| v.version)
            .collect();
        if vs.is_empty() {
            return Err(SchemaError::SubjectNotFound(crate::shown(subject)));
        }
        Ok(vs)
    }

    /// One version of `subject` (`None`: the latest), with its canonical schema text.
    pub fn version(&self, subject: &str, version: Option<u32>, deleted: bool) -> Result<Version> {
        let t = self.read();
        Self::find(&t, subject, version, deleted).map(|v| Self::served(&t, v))
    }

    fn find<'t>(
        t: &'t Tables,
        subject: &str,
        version: Option<u32>,
        deleted: bool,
    ) -> Result<&'t Version> {
        let vs = t.versions(subject, deleted);
        if vs.is_empty() {
            return Err(SchemaError::SubjectNotFound(crate::shown(subject)));
        }
        let found = match version {
            None => vs.last().copied(),
            Some(n) => vs.iter().find(|v| v.version == n).copied(),
        };
        found.ok_or_else(|| {
            SchemaError::VersionNotFound(version.map_or("latest".into(), |n| n.to_string()))
        })
    }

    fn served(t: &Tables, v: &Version) -> Version {
        let mut out = v.clone();
        if let Some(by_id) = t.ids.get(&v.id) {
            out.schema = by_id.key.canonical.clone();
        }
        out
    }

    /// The schema with `id`.
    pub fn by_id(&self, id: u32) -> Result<IdSchema> {
        let t = self.read();
        let by_id = t
            .ids
            .get(&id)
            .ok_or_else(|| SchemaError::SchemaNotFound(format!("Schema {id} not found")))?;
        Ok(IdSchema {
            id,
            schema_type: by_id.key.schema_type,
            schema: by_id.key.canonical.clone(),
            references: by_id.key.references.clone(),
        })
    }

    /// The (subject, version) pairs holding `id` (with `deleted`, soft-deleted ones too).
    pub fn holders(&self, id: u32, deleted: bool) -> Result<Vec<(String, u32)>> {
        let t = self.read();
        let by_id = t
            .ids
            .get(&id)
            .ok_or_else(|| SchemaError::SchemaNotFound(format!("Schema {id} not found")))?;
        Ok((by_id.holders.iter())
            .filter(|(s, v)| {
                deleted
                    || t.subjects
                        .get(s)
                        .and_then(|m| m.get(v))
                        .is_some_and(|x| !x.deleted)
            })
            .cloned()
            .collect())
    }

    /// The ids of the schemas that reference `subject` version `version`.
    pub fn referenced_by(&self, subject: &str, version: Option<u32>) -> Result<Vec<u32>> {
        let t = self.read();
        let target = Self::find(&t, subject, version, true)?.version;
        Ok(Self::referrers(&t, subject, target))
    }

    fn referrers(t: &Tables, subject: &str, version: u32) -> Vec<u32> {
        let mut ids: Vec<u32> = (t.ids.iter())
            .filter(|(_, b)| {
                b.key.references.iter().any(|r| {
                    r.subject == subject
                        && (r.version == version as i64
                            || (r.version == -1
                                && t.versions(subject, false).last().map(|v| v.version)
                                    == Some(version)))
                })
            })
            .map(|(id, _)| *id)
            .collect();
        ids.dedup();
        ids
    }

    fn prepare(&self, t: &Tables, input: &SchemaInput) -> Result<Prepared> {
        if input.schema.len() > self.limits.schema_bytes_max {
            return Err(SchemaError::TooLarge(format!(
                "Schema of {} bytes is larger than schema_registry.schema_bytes_max ({})",
                input.schema.len(),
                self.limits.schema_bytes_max
            )));
        }
        if input.schema.trim().is_empty() {
            return Err(SchemaError::InvalidSchema("Empty schema".into()));
        }
        let ty = SchemaType::parse(input.schema_type.as_deref())?;
        let mut known = Avro::default();
        for r in &input.references {
            self.resolve(t, r, &mut known, 1)?;
        }
        let (parsed, canonical) = schema::parse(ty, &input.schema, &known, self.limits.depth_max)?;
        Ok(Prepared {
            parsed,
            key: ContentKey {
                schema_type: ty,
                canonical,
                references: input.references.clone(),
            },
        })
    }

    /// Adds the named types of reference `r` (and of its own references) to `known`.
    fn resolve(&self, t: &Tables, r: &Reference, known: &mut Avro, depth: usize) -> Result<()> {
        if depth > self.limits.depth_max {
            return Err(SchemaError::InvalidSchema(format!(
                "references nested more than {} deep (schema_registry.depth_max), or a cycle",
                self.limits.depth_max
            )));
        }
        let version = if r.version == -1 {
            None
        } else {
            u32::try_from(r.version).ok()
        };
        let target = Self::find(t, &r.subject, version, true).map_err(|_| {
            SchemaError::InvalidSchema(format!(
                "reference {:?} to subject {:?} version {} not found",
                crate::shown(&r.name),
                crate::shown(&r.subject),
                r.version
            ))
        })?;
        for inner in &target.references {
            self.resolve(t, inner, known, depth + 1)?;
        }
        if target.schema_type == SchemaType::Avro {
            let parsed =
                Avro::parse(&target.schema, known, self.limits.depth_max).map_err(|e| {
                    SchemaError::InvalidSchema(format!(
                        "reference {:?}: {e}",
                        crate::shown(&r.name)
                    ))
                })?;
            known.named.extend(parsed.named);
        }
        Ok(())
    }

    fn parsed_versions(&self, t: &Tables, subject: &str) -> Vec<(u32, Parsed)> {
        let mut out: Vec<(u32, Parsed)> = t
            .versions(subject, false)
            .into_iter()
            .filter_map(|v| {
                let input = SchemaInput {
                    schema: v.schema.clone(),
                    schema_type: Some(v.schema_type.as_str().into()),
                    references: v.references.clone(),
                    ..SchemaInput::default()
                };
                self.prepare(t, &input).ok().map(|p| (v.version, p.parsed))
            })
            .collect();
        out.reverse();
        out
    }

    /// The compatibility level that applies to `subject`.
    fn level(t: &Tables, subject: &str) -> Compatibility {
        (t.configs.get(&Some(subject.to_string())))
            .or_else(|| t.configs.get(&None))
            .copied()
            .unwrap_or(Compatibility::Backward)
    }

    fn mode_of(t: &Tables, subject: &str) -> Mode {
        (t.modes.get(&Some(subject.to_string())))
            .or_else(|| t.modes.get(&None))
            .copied()
            .unwrap_or(Mode::Readwrite)
    }

    fn writable(t: &Tables, subject: &str) -> Result<Mode> {
        let mode = Self::mode_of(t, subject);
        if mode.read_only() {
            return Err(SchemaError::OperationNotPermitted(format!(
                "Subject {} is in read-only mode",
                crate::shown(subject)
            )));
        }
        Ok(mode)
    }
}

mod write;
pub use write::Registration;
