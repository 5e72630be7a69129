//! The registry's writes (register, deletes, compatibility levels, modes) and the reads that
//! decide like a write would (lookup, compatibility check). Each write decides under the write
//! lock on the tables as they are, then commits its rows (see `registry.rs`).

use super::{Prepared, Registry};
use crate::error::{Result, SchemaError};
use crate::model::{check_subject, Compatibility, Mode, SchemaInput, Version};
use crate::schema;
use crate::store::{Row, Tables, ROW_BYTES_MAX};

/// The outcome of a registration.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The version (new, or the existing one holding the same schema), schema text canonical.
    pub version: Version,
    /// Whether anything was written.
    pub created: bool,
}

/// Runs CPU-bound work (parsing, compatibility checks) where it does not hold up other tasks:
/// `block_in_place` on a multi-threaded runtime (the worker hands its other tasks over), inline
/// elsewhere (a current-thread runtime, no runtime).
pub(crate) fn cpu_bound<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl Registry {
    /// Registers `input` under `subject`: the existing version when the subject already holds
    /// the same schema, else a new version after the compatibility check (40901 when refused).
    pub async fn register(&self, subject: &str, input: SchemaInput) -> Result<Registration> {
        check_subject(subject, &self.limits)?;
        let guard = self.lock_for_write().await;
        // Parsing and the compatibility check are CPU work (bounded by the limits): off the
        // async workers. `Err(existing)`: the subject holds the schema already.
        let planned = cpu_bound(|| -> Result<std::result::Result<_, Registration>> {
            let t = self.read();
            let mode = Self::writable(&t, subject)?;
            let prepared = self.prepare(&t, &input)?;
            if let Some(v) = Self::holding(&t, subject, &prepared, false) {
                return Ok(Err(Registration {
                    version: Self::served(&t, v),
                    created: false,
                }));
            }
            self.plan_register(&t, subject, &input, prepared, mode)
                .map(Ok)
        })?;
        let (version, rows) = match planned {
            Ok(planned) => planned,
            Err(existing) => return Ok(existing),
        };
        self.commit(guard, rows, true).await?;
        let t = self.read();
        let version = Self::served(&t, &version);
        Ok(Registration {
            version,
            created: true,
        })
    }

    fn holding<'t>(
        t: &'t Tables,
        subject: &str,
        p: &Prepared,
        deleted: bool,
    ) -> Option<&'t Version> {
        // By content, not by the key's id: a subject may hold an older id of the same content.
        t.versions(subject, deleted)
            .into_iter()
            .rev()
            .find(|v| t.ids.get(&v.id).is_some_and(|b| b.key == p.key))
    }

    fn plan_register(
        &self,
        t: &Tables,
        subject: &str,
        input: &SchemaInput,
        prepared: Prepared,
        mode: Mode,
    ) -> Result<(Version, Vec<Row>)> {
        let import = mode == Mode::Import;
        if !import && (input.id.is_some_and(|i| i >= 0) || input.version.is_some_and(|v| v >= 0)) {
            return Err(SchemaError::OperationNotPermitted(
                "An id or a version may only be given in IMPORT mode".into(),
            ));
        }
        if import {
            Self::check_import_room(input)?;
        }
        if !import {
            let level = Self::level(t, subject);
            let previous = self.parsed_versions(t, subject, level)?;
            let messages = schema::check_level(level, &prepared.parsed, &previous, &self.limits);
            if !messages.is_empty() {
                return Err(SchemaError::Incompatible {
                    subject: crate::shown(subject),
                    messages,
                });
            }
        }
        self.check_room(t, subject, &prepared)?;
        let id = self.pick_id(t, input, &prepared, import)?;
        let all = t.versions(subject, true);
        let version = match input.version.filter(|_| import) {
            Some(v) => {
                let v = u32::try_from(v)
                    .ok()
                    .filter(|v| (1..=i32::MAX as u32).contains(v))
                    .ok_or_else(|| SchemaError::InvalidVersion(v.to_string()))?;
                if all.iter().any(|x| x.version == v) {
                    return Err(SchemaError::IdMismatch(format!(
                        "Version {v} of subject {} already holds another schema",
                        crate::shown(subject)
                    )));
                }
                v
            }
            None => Self::next_version(subject, &all)?,
        };
        let v = Version {
            subject: subject.to_string(),
            version,
            id,
            schema_type: prepared.key.schema_type,
            schema: input.schema.clone(),
            references: prepared.key.references.clone(),
            metadata: input.metadata.clone(),
            rule_set: input.rule_set.clone(),
            deleted: false,
        };
        let row = Row::Schema(subject.to_string(), version, Some(v.clone()));
        if row.encoded_len() > ROW_BYTES_MAX {
            return Err(SchemaError::TooLarge(format!(
                "Schema of {} bytes takes {} bytes stored (its text escaped inside the version's \
                 JSON), more than one row of the registry's internal log holds ({ROW_BYTES_MAX})",
                input.schema.len(),
                row.encoded_len()
            )));
        }
        let mut rows = vec![row];
        if id > t.id_high {
            rows.push(Row::IdHigh(id));
        }
        Ok((v, rows))
    }

    /// The version after the last of `all` (1 for none); 42209 past 2^31-1, the largest version
    /// Confluent's clients can address.
    fn next_version(subject: &str, all: &[&Version]) -> Result<u32> {
        let next = all.last().map_or(1, |v| v.version + 1);
        if next > i32::MAX as u32 {
            return Err(SchemaError::TooLarge(format!(
                "Subject {} holds version 2^31-1, the last one",
                crate::shown(subject)
            )));
        }
        Ok(next)
    }

    /// IMPORT may not take version or id 2^31-1, the last one: nothing could follow it
    /// (42209).
    fn check_import_room(input: &SchemaInput) -> Result<()> {
        let last = i64::from(i32::MAX);
        if input.version == Some(last) || input.id == Some(last) {
            return Err(SchemaError::TooLarge(
                "IMPORT of version or id 2^31-1 refused: no version or id could follow it; \
                 at most 2^31-2"
                    .into(),
            ));
        }
        Ok(())
    }

    fn check_room(&self, t: &Tables, subject: &str, p: &Prepared) -> Result<()> {
        let l = &self.limits;
        let versions = t.subjects.get(subject).map_or(0, |m| m.len());
        self.check_subject_room(t, subject)?;
        if versions >= l.versions_per_subject_max {
            return Err(SchemaError::TooLarge(format!(
                "Subject {} holds schema_registry.versions_per_subject_max ({}) versions",
                crate::shown(subject),
                l.versions_per_subject_max
            )));
        }
        if !t.by_content.contains_key(&p.key) && t.ids.len() >= l.schemas_max {
            return Err(SchemaError::TooLarge(format!(
                "The registry holds schema_registry.schemas_max ({}) schemas",
                l.schemas_max
            )));
        }
        Ok(())
    }

    fn pick_id(&self, t: &Tables, input: &SchemaInput, p: &Prepared, import: bool) -> Result<u32> {
        let existing = t.by_content.get(&p.key).copied();
        let wanted = input.id.filter(|i| *i >= 0 && import);
        match (wanted, existing) {
            (None, Some(id)) => Ok(id),
            (None, None) => t
                .id_high
                .checked_add(1)
                .filter(|id| *id <= i32::MAX as u32)
                .ok_or_else(|| SchemaError::TooLarge("Every schema id is used".into())),
            (Some(w), _) => {
                let w = u32::try_from(w)
                    .ok()
                    .filter(|w| *w >= 1 && *w <= i32::MAX as u32)
                    .ok_or_else(|| SchemaError::IdMismatch(format!("Invalid id {w}")))?;
                match (t.ids.get(&w), existing) {
                    (Some(b), _) if b.key != p.key => Err(SchemaError::IdMismatch(format!(
                        "Overwrite new schema with id {w} failed: the id already names another schema"
                    ))),
                    (None, Some(e)) => Err(SchemaError::IdMismatch(format!(
                        "The schema already has id {e}, not {w}"
                    ))),
                    _ => Ok(w),
                }
            }
        }
    }

    /// The version of `subject` holding `input` (40401 no subject, 40403 not there).
    pub fn lookup(&self, subject: &str, input: &SchemaInput, deleted: bool) -> Result<Version> {
        cpu_bound(|| self.lookup_now(subject, input, deleted))
    }

    fn lookup_now(&self, subject: &str, input: &SchemaInput, deleted: bool) -> Result<Version> {
        let t = self.read();
        if t.versions(subject, deleted).is_empty() {
            return Err(SchemaError::SubjectNotFound(crate::shown(subject)));
        }
        let prepared = self.prepare(&t, input)?;
        Self::holding(&t, subject, &prepared, deleted)
            .map(|v| Self::served(&t, v))
            .ok_or_else(|| SchemaError::SchemaNotFound("Schema not found".into()))
    }

    /// Checks `input` against `subject`: with `version` `None`, the versions its level implies
    /// (compatible when the subject has none); with `Some(v)`, version `v` (`Some(None)`: the
    /// latest) in the level's directions. Answers the incompatibilities (empty: compatible).
    pub fn check(
        &self,
        subject: &str,
        version: Option<Option<u32>>,
        input: &SchemaInput,
    ) -> Result<Vec<String>> {
        cpu_bound(|| self.check_now(subject, version, input))
    }

    fn check_now(
        &self,
        subject: &str,
        version: Option<Option<u32>>,
        input: &SchemaInput,
    ) -> Result<Vec<String>> {
        let t = self.read();
        let prepared = self.prepare(&t, input)?;
        let level = Self::level(&t, subject);
        let Some(version) = version else {
            let previous = self.parsed_versions(&t, subject, level)?;
            return Ok(schema::check_level(
                level,
                &prepared.parsed,
                &previous,
                &self.limits,
            ));
        };
        let target = Self::find(&t, subject, version, false)?;
        let one = vec![(target.version, self.parsed_version(&t, target)?)];
        let level = match level {
            Compatibility::BackwardTransitive => Compatibility::Backward,
            Compatibility::ForwardTransitive => Compatibility::Forward,
            Compatibility::FullTransitive => Compatibility::Full,
            other => other,
        };
        Ok(schema::check_level(
            level,
            &prepared.parsed,
            &one,
            &self.limits,
        ))
    }

    /// Deletes a version: soft (flagged; 40406 if it already is), or with `permanent` for good
    /// (40407 unless soft deleted first). 42206 while another schema references it.
    pub async fn delete_version(
        &self,
        subject: &str,
        version: Option<u32>,
        permanent: bool,
    ) -> Result<u32> {
        let guard = self.lock_for_write().await;
        let (row, n) = {
            let t = self.read();
            Self::writable(&t, subject)?;
            let v = match (version, permanent) {
                (None, _) => Self::find(&t, subject, None, false)?,
                (Some(n), _) => Self::find(&t, subject, Some(n), true)?,
            };
            let refs = Self::referrers(&t, subject, v.version);
            if !refs.is_empty() {
                return Err(SchemaError::ReferenceExists(format!(
                    "One or more references exist to the schema {{subject={}, version={}}}: ids {refs:?}",
                    crate::shown(subject), v.version
                )));
            }
            let row = match (permanent, v.deleted) {
                (false, true) => {
                    return Err(SchemaError::VersionSoftDeleted(
                        crate::shown(subject),
                        v.version,
                    ))
                }
                (true, false) => {
                    return Err(SchemaError::VersionNotSoftDeleted(
                        crate::shown(subject),
                        v.version,
                    ))
                }
                (false, false) => {
                    let mut d = v.clone();
                    d.deleted = true;
                    Row::Schema(subject.to_string(), v.version, Some(d))
                }
                (true, true) => Row::Schema(subject.to_string(), v.version, None),
            };
            (row, v.version)
        };
        self.commit(guard, vec![row], true).await?;
        Ok(n)
    }

    /// Deletes a subject: soft (every live version flagged; 40404 if none is live), or with
    /// `permanent` every version and its level and mode for good (40405 unless soft deleted).
    pub async fn delete_subject(&self, subject: &str, permanent: bool) -> Result<Vec<u32>> {
        let guard = self.lock_for_write().await;
        let (rows, versions) = {
            let t = self.read();
            Self::writable(&t, subject)?;
            let all = t.versions(subject, true);
            if all.is_empty() {
                return Err(SchemaError::SubjectNotFound(crate::shown(subject)));
            }
            let live: Vec<&Version> = all.iter().copied().filter(|v| !v.deleted).collect();
            for v in &all {
                let refs = Self::referrers(&t, subject, v.version);
                if !refs.is_empty() {
                    return Err(SchemaError::ReferenceExists(format!(
                        "One or more references exist to the schema {{subject={}, version={}}}: ids {refs:?}",
                        crate::shown(subject), v.version
                    )));
                }
            }
            match (permanent, live.is_empty()) {
                (false, true) => {
                    return Err(SchemaError::SubjectSoftDeleted(crate::shown(subject)))
                }
                (true, false) => {
                    return Err(SchemaError::SubjectNotSoftDeleted(crate::shown(subject)))
                }
                (false, false) => {
                    let rows = live.iter().map(|v| {
                        let mut d = (*v).clone();
                        d.deleted = true;
                        Row::Schema(subject.to_string(), v.version, Some(d))
                    });
                    (
                        rows.collect::<Vec<_>>(),
                        live.iter().map(|v| v.version).collect::<Vec<_>>(),
                    )
                }
                (true, true) => {
                    let mut rows: Vec<Row> = all
                        .iter()
                        .map(|v| Row::Schema(subject.to_string(), v.version, None))
                        .collect();
                    rows.push(Row::Config(Some(subject.to_string()), None));
                    rows.push(Row::Mode(Some(subject.to_string()), None));
                    (rows, all.iter().map(|v| v.version).collect())
                }
            }
        };
        self.commit(guard, rows, false).await?;
        Ok(versions)
    }

    /// The level of `subject` (`None`: global). A subject without its own answers 40408 unless
    /// `default_to_global`.
    pub fn config(&self, subject: Option<&str>, default_to_global: bool) -> Result<Compatibility> {
        let t = self.read();
        match subject {
            None => Ok(t
                .configs
                .get(&None)
                .copied()
                .unwrap_or(Compatibility::Backward)),
            Some(s) => match t.configs.get(&Some(s.to_string())) {
                Some(l) => Ok(*l),
                None if default_to_global => Ok(Self::level(&t, s)),
                None => Err(SchemaError::NoSubjectConfig(crate::shown(s))),
            },
        }
    }

    /// Sets the level of `subject` (`None`: global). Like Confluent, a subject without versions
    /// may have one; it then counts against `subjects_max` (42209 past it).
    pub async fn set_config(&self, subject: Option<&str>, level: Compatibility) -> Result<()> {
        if let Some(s) = subject {
            check_subject(s, &self.limits)?;
        }
        let guard = self.lock_for_write().await;
        if let Some(s) = subject {
            self.check_subject_room(&self.read(), s)?;
        }
        self.commit(
            guard,
            vec![Row::Config(subject.map(str::to_string), Some(level))],
            true,
        )
        .await
    }

    /// Removes the level of `subject` (`None`: the global one, back to BACKWARD); answers the
    /// level it had. A subject with no level of its own answers 40401 when it has no versions
    /// either (Confluent's answer for a subject it does not know), else 40408.
    pub async fn delete_config(&self, subject: Option<&str>) -> Result<Compatibility> {
        let guard = self.lock_for_write().await;
        let old = match self.config(subject, subject.is_none()) {
            Err(SchemaError::NoSubjectConfig(shown)) => {
                let s = subject.unwrap_or_default();
                return Err(match self.read().versions(s, true).is_empty() {
                    true => SchemaError::SubjectNotFound(shown),
                    false => SchemaError::NoSubjectConfig(shown),
                });
            }
            r => r?,
        };
        self.commit(
            guard,
            vec![Row::Config(subject.map(str::to_string), None)],
            true,
        )
        .await?;
        Ok(old)
    }

    /// The mode of `subject` (`None`: global); 40409 for a subject without its own unless
    /// `default_to_global`.
    pub fn mode(&self, subject: Option<&str>, default_to_global: bool) -> Result<Mode> {
        let t = self.read();
        match subject {
            None => Ok(t.modes.get(&None).copied().unwrap_or(Mode::Readwrite)),
            Some(s) => match t.modes.get(&Some(s.to_string())) {
                Some(m) => Ok(*m),
                None if default_to_global => Ok(Self::mode_of(&t, s)),
                None => Err(SchemaError::NoSubjectMode(crate::shown(s))),
            },
        }
    }

    /// Sets the mode of `subject` (`None`: global). IMPORT needs no schemas in scope unless
    /// `force` (42205). A subject without versions counts against `subjects_max` (42209).
    pub async fn set_mode(&self, subject: Option<&str>, mode: Mode, force: bool) -> Result<()> {
        if let Some(s) = subject {
            check_subject(s, &self.limits)?;
        }
        let guard = self.lock_for_write().await;
        if let Some(s) = subject {
            self.check_subject_room(&self.read(), s)?;
        }
        if mode == Mode::Import && !force {
            let t = self.read();
            let occupied = match subject {
                None => !t.subjects.is_empty(),
                Some(s) => t.subjects.contains_key(s),
            };
            if occupied {
                return Err(SchemaError::OperationNotPermitted(
                    "Cannot import since found existing subjects (set force=true to override)"
                        .into(),
                ));
            }
        }
        self.commit(
            guard,
            vec![Row::Mode(subject.map(str::to_string), Some(mode))],
            true,
        )
        .await
    }

    /// Removes the mode of `subject` (`None`: global, back to READWRITE); answers the old one.
    pub async fn delete_mode(&self, subject: Option<&str>) -> Result<Mode> {
        let guard = self.lock_for_write().await;
        let old = self.mode(subject, subject.is_none())?;
        self.commit(
            guard,
            vec![Row::Mode(subject.map(str::to_string), None)],
            true,
        )
        .await?;
        Ok(old)
    }
}
