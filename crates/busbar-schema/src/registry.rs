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
use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use tokio::sync::Mutex;

/// The schema registry.
pub struct Registry {
    log: KvLog,
    tables: Arc<RwLock<Tables>>,
    write: Arc<Mutex<()>>,
    limits: Limits,
    /// Bumped by every write (applied or not): readers that cache what an id means start over
    /// (an id hard-deleted and imported again names other content).
    generation: Arc<std::sync::atomic::AtomicU64>,
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
    ContentKey {
        schema_type: v.schema_type,
        canonical: schema::canonical_text(v.schema_type, &v.schema),
        references: v.references.clone(),
    }
}

fn store_err(e: impl std::fmt::Display) -> SchemaError {
    SchemaError::Store(e.to_string())
}

/// The tables `log` holds; a damaged log is refused (an id mapping lost to a skipped range
/// could hand one id to two schemas).
fn replay(log: &KvLog) -> Result<Tables> {
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
    Ok(tables)
}

impl Registry {
    /// Cluster mode: the registry is the shared store's space `schemas` from now on (every
    /// broker the same ids). Each change reloads the space first if it moved and commits only
    /// if no other broker wrote it meanwhile (`busbar_broker::kvlog`), so an id is never given
    /// to two schemas.
    pub async fn share(&self, kv: Arc<dyn busbar_broker::kvlog::SharedKv>) -> Result<()> {
        let _w = self.write.lock().await;
        self.log.share(kv, "schemas").await.map_err(store_err)?;
        self.swap(replay(&self.log)?);
        Ok(())
    }

    /// Cluster mode: loads the space again if another broker changed it.
    pub async fn refresh(&self) -> Result<()> {
        let _w = self.write.lock().await;
        self.reload_locked().await
    }

    /// [`Registry::refresh`] with the write lock held.
    async fn reload_locked(&self) -> Result<()> {
        (self.log)
            .refresh_with(|log| {
                self.swap(replay(log)?);
                Ok::<(), SchemaError>(())
            })
            .await
    }

    fn swap(&self, tables: Tables) {
        *self.tables.write().unwrap_or_else(|e| e.into_inner()) = tables;
        (self.generation).fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// The write lock, with the tables as the cluster last committed them (cluster mode: loaded
    /// again if another broker wrote; a failed load leaves them, and the write is then refused
    /// if they were stale).
    async fn lock_for_write(&self) -> tokio::sync::OwnedMutexGuard<()> {
        let guard = self.write.clone().lock_owned().await;
        let _ = self.reload_locked().await;
        guard
    }

    /// Opens the registry stored in `storage` (the data directory's `internal/schemas`).
    pub fn open(storage: Arc<dyn Storage>, clock: Arc<dyn Clock>, limits: Limits) -> Result<Self> {
        let log = KvLog::open(storage, clock).map_err(store_err)?;
        let tables = replay(&log)?;
        Ok(Self {
            log,
            tables: Arc::new(RwLock::new(tables)),
            write: Arc::default(),
            limits,
            generation: Arc::default(),
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

    /// The stored rows (`busbar cluster import` copies them into the cluster's space
    /// `schemas`).
    pub fn rows(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.log.rows().map_err(store_err)
    }

    /// Clean shutdown of the log.
    pub fn close(&self) -> Result<()> {
        self.log.close().map_err(store_err)
    }

    /// A number that changes whenever the registry's content does (see the field).
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `rows` durably and applies them; the write lock is released once they are
    /// applied. `whole`: one batch, all or nothing (else consecutive batches, each row
    /// idempotent, and the rows of the batches written before a failure are applied). Whatever
    /// the outcome, the in-memory id high-water mark passes every id in `rows`: a failed write's
    /// batch may still be on disk, so its ids are never issued again.
    async fn commit(
        &self,
        guard: tokio::sync::OwnedMutexGuard<()>,
        rows: Vec<Row>,
        whole: bool,
    ) -> Result<()> {
        let encoded = rows.iter().map(Row::encode).collect();
        let tables = self.tables.clone();
        let generation = self.generation.clone();
        let high = rows.iter().filter_map(Row::id).max();
        let apply = move |offsets: Vec<u64>| {
            let mut t = tables.write().unwrap_or_else(|e| e.into_inner());
            for row in rows.into_iter().take(offsets.len()) {
                t.apply(row, &key_of);
            }
            if let Some(id) = high {
                t.apply(Row::IdHigh(id), &key_of);
            }
            generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(guard);
        };
        let written = if whole {
            self.log.write_whole(encoded, apply).await
        } else {
            self.log.write(encoded, apply).await
        };
        if written.is_err() {
            if let Some(id) = high {
                let mut t = self.tables.write().unwrap_or_else(|e| e.into_inner());
                t.apply(Row::IdHigh(id), &key_of);
            }
            // Cluster mode: another broker's write may have refused this one.
            let _w = self.write.lock().await;
            let _ = self.reload_locked().await;
        }
        written.map_err(store_err)
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

    /// The schema id of one version of `subject` (`None`: the latest live one), without
    /// copying its text: what encoding looks up for every event.
    pub fn version_id(&self, subject: &str, version: Option<u32>) -> Result<u32> {
        let t = self.read();
        Self::find(&t, subject, version, false).map(|v| v.id)
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
            out.schema = by_id.served.clone();
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
            schema: by_id.served.clone(),
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
        let references = (input.references.iter())
            .map(|r| Self::pin(t, r))
            .collect::<Result<Vec<_>>>()?;
        self.parse(t, ty, &input.schema, references)
    }

    /// Parses `text` with the named types of `references` (already pinned) known.
    fn parse(
        &self,
        t: &Tables,
        ty: SchemaType,
        text: &str,
        references: Vec<Reference>,
    ) -> Result<Prepared> {
        let mut known = schema::Known::default();
        let mut resolved = HashSet::new();
        for r in &references {
            self.resolve(t, r, &mut known, &mut resolved, 1)?;
        }
        if ty == SchemaType::Json {
            known.json = self.json_references(t, &references)?;
        }
        let (parsed, canonical) = schema::parse(ty, text, &known, self.limits.depth_max)?;
        Ok(Prepared {
            parsed,
            key: ContentKey {
                schema_type: ty,
                canonical,
                references,
            },
        })
    }

    /// `r` with its version made concrete, as Confluent stores it: `-1` becomes the subject's
    /// latest live version; any other version must be in 1..=2^31-1 (42201 otherwise, and when
    /// the subject or version does not exist, like Confluent's unresolvable reference).
    fn pin(t: &Tables, r: &Reference) -> Result<Reference> {
        let version = Self::reference_version(t, r)?;
        Self::find(t, &r.subject, Some(version), true).map_err(|_| {
            SchemaError::InvalidSchema(format!(
                "reference {:?} to subject {:?} version {} not found",
                crate::shown(&r.name),
                crate::shown(&r.subject),
                r.version
            ))
        })?;
        Ok(Reference {
            version: i64::from(version),
            ..r.clone()
        })
    }

    /// The concrete version `r` names (`-1`: the latest live one; a `-1` stored by an older
    /// busbar is read the same way).
    fn reference_version(t: &Tables, r: &Reference) -> Result<u32> {
        let invalid = || {
            SchemaError::InvalidSchema(format!(
                "reference {:?} to subject {:?}: version {} is not valid (allowed: 1 to 2^31-1, or -1 for the latest)",
                crate::shown(&r.name),
                crate::shown(&r.subject),
                r.version
            ))
        };
        if r.version == -1 {
            let latest = t.versions(&r.subject, false).last().map(|v| v.version);
            return latest.ok_or_else(|| {
                SchemaError::InvalidSchema(format!(
                    "reference {:?}: subject {:?} has no live version",
                    crate::shown(&r.name),
                    crate::shown(&r.subject)
                ))
            });
        }
        u32::try_from(r.version)
            .ok()
            .filter(|v| (1..=i32::MAX as u32).contains(v))
            .ok_or_else(invalid)
    }

    /// Adds the named types of reference `r` (and of its own references) to `known`.
    /// Each (subject, version) is resolved once (`resolved`, filled after its own references, so
    /// a cycle still reaches the depth limit), as Confluent's `resolveReferences` does: a diamond
    /// is parsed once, and a chain of diamonds is linear, not exponential.
    fn resolve(
        &self,
        t: &Tables,
        r: &Reference,
        known: &mut schema::Known,
        resolved: &mut HashSet<(String, u32)>,
        depth: usize,
    ) -> Result<()> {
        if depth > self.limits.depth_max {
            return Err(SchemaError::InvalidSchema(format!(
                "references nested more than {} deep (schema_registry.depth_max), or a cycle",
                self.limits.depth_max
            )));
        }
        let version = Self::reference_version(t, r)?;
        if resolved.contains(&(r.subject.clone(), version)) {
            return Ok(());
        }
        let target = Self::find(t, &r.subject, Some(version), true).map_err(|_| {
            SchemaError::InvalidSchema(format!(
                "reference {:?} to subject {:?} version {} not found",
                crate::shown(&r.name),
                crate::shown(&r.subject),
                r.version
            ))
        })?;
        for inner in &target.references {
            self.resolve(t, inner, known, resolved, depth + 1)?;
        }
        match target.schema_type {
            SchemaType::Avro => {
                let parsed = Avro::parse_shared(&target.schema, &known.avro, self.limits.depth_max)
                    .map_err(|e| {
                        SchemaError::InvalidSchema(format!(
                            "reference {:?}: {e}",
                            crate::shown(&r.name)
                        ))
                    })?;
                known.avro.named.extend(parsed.named);
            }
            SchemaType::Protobuf => known.protobuf.push((r.name.clone(), target.schema.clone())),
            // JSON schemas are gathered by name in `parse` (`json_references`).
            SchemaType::Json => {}
        }
        resolved.insert((r.subject.clone(), version));
        Ok(())
    }

    /// The live versions of `subject` that `level` checks a new schema against, newest first,
    /// parsed again (without `schema_bytes_max`: they were accepted under the limit of their
    /// day). A version that does not parse any more (a lowered `depth_max`, a reference gone)
    /// fails the check with 42201 naming it: skipping it would let any schema through.
    fn parsed_versions(
        &self,
        t: &Tables,
        subject: &str,
        level: Compatibility,
    ) -> Result<Vec<(u32, Parsed)>> {
        let take = match level {
            Compatibility::None => 0,
            l if l.transitive() => usize::MAX,
            _ => 1,
        };
        (t.versions(subject, false).into_iter().rev().take(take))
            .map(|v| self.parsed_version(t, v).map(|p| (v.version, p)))
            .collect()
    }

    /// Stored version `v` parsed again (42201 naming it when it no longer parses).
    fn parsed_version(&self, t: &Tables, v: &Version) -> Result<Parsed> {
        let parsed = self.parse(t, v.schema_type, &v.schema, v.references.clone());
        parsed.map(|p| p.parsed).map_err(|e| {
            SchemaError::InvalidSchema(format!(
                "version {} of subject {} no longer parses, so nothing can be checked against it ({e}); \
                 delete that version or set the subject's compatibility to NONE",
                v.version,
                crate::shown(&v.subject)
            ))
        })
    }

    /// Subjects the registry knows: with a version, a level or a mode of their own. Each counts
    /// against `subjects_max`.
    fn known_subjects(t: &Tables) -> usize {
        let extra = |k: &Option<String>| k.as_ref().is_some_and(|s| !t.subjects.contains_key(s));
        let mut only: std::collections::BTreeSet<&String> = Default::default();
        for k in t.configs.keys().chain(t.modes.keys()).filter(|k| extra(k)) {
            only.extend(k.as_ref());
        }
        t.subjects.len() + only.len()
    }

    /// Whether `subject` is known (see [`Self::known_subjects`]).
    fn is_known(t: &Tables, subject: &str) -> bool {
        let key = Some(subject.to_string());
        t.subjects.contains_key(subject)
            || t.configs.contains_key(&key)
            || t.modes.contains_key(&key)
    }

    /// 42209 when `subject` is new and the registry already knows `subjects_max` subjects.
    fn check_subject_room(&self, t: &Tables, subject: &str) -> Result<()> {
        if Self::is_known(t, subject) || Self::known_subjects(t) < self.limits.subjects_max {
            return Ok(());
        }
        Err(SchemaError::TooLarge(format!(
            "The registry holds schema_registry.subjects_max ({}) subjects (with a version, a level or a mode)",
            self.limits.subjects_max
        )))
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

mod by_id;
mod write;

pub use by_id::ParsedById;
pub use write::Registration;

impl busbar_broker::kvlog::SharedTable for Registry {
    fn refresh(&self) -> busbar_broker::shared::BoxFuture<'_, busbar_broker::Result<()>> {
        Box::pin(async move {
            Registry::refresh(self)
                .await
                .map_err(|e| busbar_broker::BrokerError::Storage(e.to_string()))
        })
    }
}
