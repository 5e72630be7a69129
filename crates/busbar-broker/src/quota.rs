//! Client quotas, Kafka's model (KIP-13, KIP-55, KIP-124, KIP-546): byte rates of produce and
//! fetch (`producer_byte_rate`, `consumer_byte_rate`, bytes per second) and the share of request
//! time (`request_percentage`, percent of one thread) per user, client id, or both, each name
//! given or `<default>`. The most specific quota that sets a key applies ([`precedence`]); the
//! rate it is measured against is the matched entity's, with defaults standing for the actual
//! names (a `users/<default>` quota is tracked per user).
//!
//! Quotas are stored in the internal compacted log `internal/quotas`, one row per entity (JSON
//! `{"key": value}`; a tombstone when it has none left). Writes are serialised and applied to the
//! table only once durable, so a failed write answers an error and changes nothing. Rates are in
//! memory only ([`rate`]). Front ends (Kafka, HTTP) ask [`Quotas::record`] and decide how to
//! throttle.

pub mod rate;

use crate::error::{BrokerError, Result};
use crate::kvlog::KvLog;
use busbar_log::disk::Storage;
use busbar_log::Clock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// The quota keys busbar enforces.
pub const KEYS: [&str; 3] = [
    "producer_byte_rate",
    "consumer_byte_rate",
    "request_percentage",
];

/// Longest user or client-id name in a quota entity, bytes.
pub const ENTITY_NAME_BYTES_MAX: usize = 255;

/// `[broker]` quota settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaConfig {
    /// Samples of a rate (Kafka's `quota.window.num`). Default 11.
    pub window_num: u32,
    /// Length of one sample, milliseconds (Kafka's `quota.window.size.seconds` × 1000). Default
    /// 1000.
    pub window_ms: u64,
    /// Most rates tracked at once (each keyed by a 32-byte digest of its names, a few hundred
    /// bytes). Ones idle for a whole span are dropped as time passes; past the limit new keys
    /// share one rate. Default 100,000.
    pub trackers_max: usize,
    /// Most quota entities stored. Default 10,000.
    pub entities_max: usize,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            window_num: 11,
            window_ms: 1000,
            trackers_max: 100_000,
            entities_max: 10_000,
        }
    }
}

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Produce request bytes (`producer_byte_rate`).
    Produce,
    /// Fetch response bytes (`consumer_byte_rate`).
    Fetch,
    /// Request handling time in percent-seconds (`request_percentage`).
    Request,
}

impl Kind {
    /// The quota key of this kind.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Produce => KEYS[0],
            Kind::Fetch => KEYS[1],
            Kind::Request => KEYS[2],
        }
    }
}

/// One component of an entity: a given name or `<default>` (Kafka's null entity name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Name {
    Default,
    Named(String),
}

impl Name {
    fn from_opt(name: Option<&str>) -> Self {
        name.map_or(Name::Default, |n| Name::Named(n.to_string()))
    }

    /// The name, `None` for `<default>`.
    pub fn as_opt(&self) -> Option<&str> {
        match self {
            Name::Default => None,
            Name::Named(n) => Some(n),
        }
    }
}

/// A quota entity: a user, a client id, or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entity {
    pub user: Option<Name>,
    pub client_id: Option<Name>,
}

/// An entity type as Kafka names it.
pub const USER: &str = "user";
/// An entity type as Kafka names it.
pub const CLIENT_ID: &str = "client-id";

impl Entity {
    /// An entity from Kafka's `(type, name or None for default)` pairs. Refuses an empty entity,
    /// a type named twice, `ip` (busbar has no connection-rate quotas) and unknown types.
    pub fn from_parts<'a>(
        parts: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<Self> {
        let mut e = Entity {
            user: None,
            client_id: None,
        };
        for (kind, name) in parts {
            if let Some(n) = name {
                if n.len() > ENTITY_NAME_BYTES_MAX {
                    return Err(invalid(format!(
                        "{kind} name longer than {ENTITY_NAME_BYTES_MAX} bytes"
                    )));
                }
            }
            let slot = match kind {
                USER => &mut e.user,
                CLIENT_ID => &mut e.client_id,
                "ip" => return Err(invalid("ip quotas are not supported by busbar")),
                other => return Err(invalid(format!("Unexpected quota entity type {other:?}"))),
            };
            if slot.replace(Name::from_opt(name)).is_some() {
                return Err(invalid(format!("Duplicate {kind} entity type")));
            }
        }
        if e.user.is_none() && e.client_id.is_none() {
            return Err(invalid("Invalid empty client quota entity"));
        }
        Ok(e)
    }

    /// Kafka's `(type, name)` pairs, user first.
    pub fn parts(&self) -> Vec<(&'static str, Option<&str>)> {
        let mut out = Vec::new();
        if let Some(u) = &self.user {
            out.push((USER, u.as_opt()));
        }
        if let Some(c) = &self.client_id {
            out.push((CLIENT_ID, c.as_opt()));
        }
        out
    }

    fn key(&self) -> Vec<u8> {
        let parts: Vec<(&str, Option<&str>)> = self.parts();
        serde_json::to_vec(&parts).expect("entity encodes")
    }

    fn from_key(key: &[u8]) -> Option<Self> {
        let parts: Vec<(String, Option<String>)> = serde_json::from_slice(key).ok()?;
        Self::from_parts(parts.iter().map(|(k, n)| (k.as_str(), n.as_deref()))).ok()
    }
}

fn invalid(why: impl Into<String>) -> BrokerError {
    BrokerError::InvalidRequest(why.into())
}

/// The entities a (user, client id) is looked up in, most specific first (Kafka's order):
/// `users/u/clients/c`, `users/u/clients/<default>`, `users/u`, `users/<default>/clients/c`,
/// `users/<default>/clients/<default>`, `users/<default>`, `clients/c`, `clients/<default>`.
pub fn precedence(user: &str, client: &str) -> [Entity; 8] {
    let u = || Some(Name::Named(user.to_string()));
    let c = || Some(Name::Named(client.to_string()));
    let d = || Some(Name::Default);
    let e = |user, client_id| Entity { user, client_id };
    [
        e(u(), c()),
        e(u(), d()),
        e(u(), None),
        e(d(), c()),
        e(d(), d()),
        e(d(), None),
        e(None, c()),
        e(None, d()),
    ]
}

/// A key's values of an entity.
pub type Values = BTreeMap<String, f64>;

/// One change of an entity's quotas.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Set(String, f64),
    Remove(String),
}

/// Checks a key and its value: a known key; byte rates whole and positive, the percentage
/// positive (Kafka: `Configuration producer_byte_rate must be a Long value`).
pub fn validate(key: &str, value: f64) -> Result<()> {
    if !KEYS.contains(&key) {
        return Err(invalid(format!("Invalid configuration key {key}")));
    }
    if !value.is_finite() || value <= 0.0 {
        return Err(invalid(format!(
            "Configuration {key} must be a positive number, not {value}"
        )));
    }
    if key != "request_percentage" && (value.fract() != 0.0 || value > i64::MAX as f64) {
        return Err(invalid(format!("Configuration {key} must be a Long value")));
    }
    Ok(())
}

/// How a filter component matches an entity's component of its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// This name.
    Exact(String),
    /// `<default>`.
    Default,
    /// Any name or `<default>` (the type must be present).
    Any,
}

/// DescribeClientQuotas' filter: components and `strict` (no other entity types).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub components: Vec<(String, Match)>,
    pub strict: bool,
}

impl Filter {
    /// Refuses a type named twice or unknown.
    pub fn validate(&self) -> Result<()> {
        for (i, (kind, _)) in self.components.iter().enumerate() {
            if ![USER, CLIENT_ID, "ip"].contains(&kind.as_str()) {
                return Err(invalid(format!(
                    "Custom entity type {kind:?} filter component not supported"
                )));
            }
            if self.components[..i].iter().any(|(k, _)| k == kind) {
                return Err(invalid(format!(
                    "Duplicate {kind} filter component entity type"
                )));
            }
        }
        Ok(())
    }

    /// Whether `e` matches.
    pub fn matches(&self, e: &Entity) -> bool {
        let of = |kind: &str| match kind {
            USER => e.user.as_ref(),
            CLIENT_ID => e.client_id.as_ref(),
            _ => None,
        };
        let each = self.components.iter().all(|(kind, m)| match (m, of(kind)) {
            (_, None) => false,
            (Match::Any, Some(_)) => true,
            (Match::Default, Some(n)) => *n == Name::Default,
            (Match::Exact(want), Some(n)) => n.as_opt() == Some(want.as_str()),
        });
        let named = |kind: &str| self.components.iter().any(|(k, _)| k == kind);
        let extra =
            (e.user.is_some() && !named(USER)) || (e.client_id.is_some() && !named(CLIENT_ID));
        each && !(self.strict && extra)
    }
}

/// What a rate is tracked under: the kind and a SHA-256 digest of the matched entity's names
/// (defaults replaced by the actual ones, absent components marked absent), as Kafka's quota
/// metric tags. Fixed-size: a client id can be 32 KiB, and 100,000 trackers must stay small.
type TrackerKey = (Kind, [u8; 32]);

/// The digest of a tracker's names: each component absent (0) or present (1, length, bytes).
fn tracker_digest(user: Option<&str>, client: Option<&str>) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, client] {
        match part {
            None => ctx.update(&[0]),
            Some(name) => {
                ctx.update(&[1]);
                ctx.update(&(name.len() as u64).to_be_bytes());
                ctx.update(name.as_bytes());
            }
        }
    }
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

type Table = BTreeMap<Entity, Values>;

/// The quotas `log` holds, and the damaged ranges it skipped.
fn replay(log: &KvLog) -> Result<(Table, Vec<String>)> {
    let mut table = BTreeMap::new();
    let damage = log.replay(|_, key, value| {
        let Some(e) = Entity::from_key(key) else {
            return;
        };
        match value.and_then(|v| serde_json::from_slice::<Values>(v).ok()) {
            Some(v) if !v.is_empty() => table.insert(e, v),
            _ => table.remove(&e),
        };
    })?;
    Ok((table, damage))
}

/// The quota table, its log, and the rates.
pub struct Quotas {
    log: KvLog,
    table: Arc<RwLock<Table>>,
    /// True while any quota exists: without one nothing is measured.
    any: Arc<AtomicBool>,
    /// Held from an alter's read of the table until its write is applied, even when the caller
    /// stops waiting (the guard moves into the write's completion).
    writing: Arc<tokio::sync::Mutex<()>>,
    trackers: Mutex<rate::Trackers<TrackerKey>>,
    config: QuotaConfig,
    epoch: Instant,
    damage: Vec<String>,
}

/// The quota of a request, when one applies: its value and where its rate is tracked.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub quota: f64,
    pub entity: Entity,
    key: TrackerKey,
}

impl Quotas {
    /// Opens the store in `storage`, replaying its log.
    pub fn open(
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        config: QuotaConfig,
    ) -> Result<Self> {
        let log = KvLog::open(storage, clock)?;
        let (table, damage) = replay(&log)?;
        let shape = rate::Shape {
            window_num: config.window_num.max(2),
            window_ms: config.window_ms.max(1),
        };
        Ok(Self {
            log,
            any: Arc::new(AtomicBool::new(!table.is_empty())),
            table: Arc::new(RwLock::new(table)),
            writing: Default::default(),
            trackers: Mutex::new(rate::Trackers::new(shape, config.trackers_max)),
            config,
            epoch: Instant::now(),
            damage,
        })
    }

    /// Cluster mode: the quotas are those of the shared store's space `quotas` from now on
    /// (each broker measures its own clients' rates against them, as Kafka's brokers do).
    pub async fn share(&self, kv: Arc<dyn crate::kvlog::SharedKv>) -> Result<()> {
        let _w = self.writing.lock().await;
        self.log.share(kv, "quotas").await?;
        self.swap(replay(&self.log)?.0);
        Ok(())
    }

    /// Cluster mode: reads the quotas again if another broker changed them.
    pub async fn refresh(&self) -> Result<()> {
        let _w = self.writing.lock().await;
        self.reload_locked().await
    }

    /// [`Quotas::refresh`] with the write lock held.
    async fn reload_locked(&self) -> Result<()> {
        (self.log)
            .refresh_with(|log| {
                self.swap(replay(log)?.0);
                Ok(())
            })
            .await
    }

    fn swap(&self, table: Table) {
        let mut t = self.table.write().unwrap_or_else(|e| e.into_inner());
        self.any.store(!table.is_empty(), Ordering::Release);
        *t = table;
    }

    /// Damaged ranges of the quotas log skipped when it was opened.
    pub fn damage(&self) -> &[String] {
        &self.damage
    }

    /// The settings.
    pub fn config(&self) -> &QuotaConfig {
        &self.config
    }

    fn table(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Entity, Values>> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether any quota exists (nothing is measured otherwise).
    pub fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// Every entity and its quotas.
    pub fn list(&self) -> Vec<(Entity, Values)> {
        self.table()
            .iter()
            .map(|(e, v)| (e.clone(), v.clone()))
            .collect()
    }

    /// The entities `filter` matches, with their quotas.
    pub fn describe(&self, filter: &Filter) -> Result<Vec<(Entity, Values)>> {
        filter.validate()?;
        Ok(self
            .table()
            .iter()
            .filter(|(e, _)| filter.matches(e))
            .map(|(e, v)| (e.clone(), v.clone()))
            .collect())
    }

    /// The quota of `kind` that applies to (user, client), the most specific that sets it.
    pub fn applied(&self, user: &str, client: &str, kind: Kind) -> Option<Applied> {
        if !self.any() {
            return None;
        }
        let table = self.table();
        precedence(user, client).into_iter().find_map(|e| {
            let quota = *table.get(&e)?.get(kind.key())?;
            let tag = |n: &Option<Name>, actual| n.as_ref().map(|_| actual);
            let key = (
                kind,
                tracker_digest(tag(&e.user, user), tag(&e.client_id, client)),
            );
            Some(Applied {
                quota,
                entity: e,
                key,
            })
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn trackers(&self) -> std::sync::MutexGuard<'_, rate::Trackers<TrackerKey>> {
        self.trackers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `value` (bytes, or percent-seconds for `Request`) for (user, client) and answers
    /// the throttle time, milliseconds (0 without a quota or within it). With `keep_over` false,
    /// a value that goes over the quota is not counted (a throttled fetch sends no data).
    pub fn record(&self, user: &str, client: &str, kind: Kind, value: f64, keep_over: bool) -> u64 {
        let Some(a) = self.applied(user, client, kind) else {
            return 0;
        };
        let now = self.now_ms();
        self.trackers()
            .record(&a.key, now, value, a.quota, keep_over)
    }

    /// Admits a request of (user, client) costing `value` now: `Err(throttle ms)` while over its
    /// quota, else `value` is recorded at once, under the same lock as the check, so concurrent
    /// requests see each other's reservations ([`rate::Trackers::admit`]).
    pub fn admit(&self, user: &str, client: &str, kind: Kind, value: f64) -> Result<(), u64> {
        let Some(a) = self.applied(user, client, kind) else {
            return Ok(());
        };
        let now = self.now_ms();
        self.trackers().admit(&a.key, now, value, a.quota)
    }

    /// The throttle time (ms) of (user, client) for `kind` now, recording nothing.
    pub fn throttle_now(&self, user: &str, client: &str, kind: Kind) -> u64 {
        let Some(a) = self.applied(user, client, kind) else {
            return 0;
        };
        let now = self.now_ms();
        self.trackers().throttle_now(&a.key, now, a.quota)
    }

    /// Most bytes one fetch may answer under (user, client)'s consumer quota: half of Kafka's
    /// `getMaxValueInQuotaWindow` (the quota over `window_num - 1` windows), leaving room for the
    /// answer's own bytes so an answer at the cap is not itself over the quota (and emptied, again
    /// and again). `None` without a quota.
    pub fn fetch_bytes_max(&self, user: &str, client: &str) -> Option<usize> {
        let a = self.applied(user, client, Kind::Fetch)?;
        let windows = f64::from(self.config.window_num.max(2) - 1) / 2.0;
        let bytes = a.quota * windows * self.config.window_ms.max(1) as f64 / 1000.0;
        Some(bytes.clamp(1.0, usize::MAX as f64) as usize)
    }

    /// Applies `ops` to `entity`'s quotas durably (or only checks them, `validate_only`): all or
    /// none. Removing a key not set is no error (as Kafka).
    pub async fn alter(&self, entity: &Entity, ops: &[Op], validate_only: bool) -> Result<()> {
        let held = self.writing.clone().lock_owned().await;
        // Cluster mode: decided on the cluster's latest (a version read when nothing changed);
        // the write is refused if another broker writes meanwhile.
        let _ = self.reload_locked().await;
        let mut next = self.table().get(entity).cloned().unwrap_or_default();
        for (i, op) in ops.iter().enumerate() {
            let key = match op {
                Op::Set(k, v) => {
                    validate(k, *v)?;
                    next.insert(k.clone(), *v);
                    k
                }
                Op::Remove(k) => {
                    if !KEYS.contains(&k.as_str()) {
                        return Err(invalid(format!("Invalid configuration key {k}")));
                    }
                    next.remove(k);
                    k
                }
            };
            let again = ops[..i].iter().any(|o| match o {
                Op::Set(k, _) | Op::Remove(k) => k == key,
            });
            if again {
                return Err(invalid(format!("Duplicate quota key {key}")));
            }
        }
        let fresh = !self.table().contains_key(entity);
        if fresh && !next.is_empty() && self.table().len() >= self.config.entities_max {
            return Err(invalid(format!(
                "at most broker.quota_entities_max ({}) quota entities may exist",
                self.config.entities_max
            )));
        }
        if validate_only || (fresh && next.is_empty()) {
            return Ok(());
        }
        self.write(entity, next, held).await
    }

    /// Replaces `entity`'s quotas by `values` (none: removes it), durably.
    pub async fn replace(&self, entity: &Entity, values: Values) -> Result<()> {
        let current: Vec<String> = self
            .table()
            .get(entity)
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default();
        let mut ops: Vec<Op> = current
            .into_iter()
            .filter(|k| !values.contains_key(k))
            .map(Op::Remove)
            .collect();
        ops.extend(values.into_iter().map(|(k, v)| Op::Set(k, v)));
        self.alter(entity, &ops, false).await
    }

    async fn write(
        &self,
        entity: &Entity,
        values: Values,
        held: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<()> {
        let value = (!values.is_empty()).then(|| serde_json::to_vec(&values).expect("encodes"));
        let row = (entity.key(), value);
        let (table, any, entity) = (self.table.clone(), self.any.clone(), entity.clone());
        // Applied in the write's completion, once durable, so a caller that stops waiting
        // cannot leave the log and the table disagreeing.
        let written = self
            .log
            .write(vec![row], move |written| {
                let _held = held;
                if written.len() != 1 {
                    return;
                }
                let mut t = table.write().unwrap_or_else(|e| e.into_inner());
                if values.is_empty() {
                    t.remove(&entity);
                } else {
                    t.insert(entity, values);
                }
                any.store(!t.is_empty(), Ordering::Release);
            })
            .await;
        if written.is_err() {
            // Cluster mode: another broker's write may have refused this one.
            let _w = self.writing.lock().await;
            let _ = self.reload_locked().await;
        }
        written
    }

    /// The stored rows (`busbar cluster import`).
    pub fn rows(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.log.rows()
    }

    /// Compacts the log.
    pub fn maintain(&self) -> Result<()> {
        self.log.compact()
    }

    /// Clean shutdown.
    pub fn close(&self) -> Result<()> {
        self.log.close()
    }
}

#[cfg(test)]
mod tests;
