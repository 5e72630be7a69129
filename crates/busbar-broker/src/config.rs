//! Broker and topic configuration. Topic settings use Kafka's config names and string values, so the
//! HTTP API, the Kafka admin APIs and the config file speak one vocabulary; `TopicConfig` is the one
//! place that parses and checks them.

use crate::error::{BrokerError, Result};
use crate::schema_rules::{SchemaRules, SubjectStrategy, Validation};
use busbar_log::{CleanupPolicy, Clock, LogConfig, SegmentCache, SyncPolicy, SystemClock};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Effective settings of one topic (defaults overlaid with its overrides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub cleanup_policy: CleanupPolicy,
    /// `None`: keep forever (Kafka's -1).
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<u64>,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub max_message_bytes: usize,
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio` (Kafka's, default 0.5): the share of a compacted log's bytes
    /// new since its last compaction that starts the next one.
    pub min_cleanable_dirty_ratio: DirtyRatio,
    pub sync: SyncPolicy,
    /// `sync.interval.ms` as set (used when the policy is `interval`); default 1000.
    pub sync_interval_ms: Option<u64>,
    /// `message.timestamp.before.max.ms`: how far before now a produced record's timestamp may be
    /// (default unlimited, as in Kafka).
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far after now (default one hour, Kafka 4's default):
    /// a record stamped far in the future would otherwise hold time retention back.
    pub timestamp_after_max_ms: i64,
    /// `{key,value}.schema.validation` and `{key,value}.subject.name.strategy` (and their
    /// Confluent and Redpanda aliases): what the schema registry checks in produced records.
    pub schema: SchemaRules,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            cleanup_policy: CleanupPolicy::Delete,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            max_message_bytes: 1_048_588,
            delete_retention_ms: 24 * 3600 * 1000,
            min_cleanable_dirty_ratio: DirtyRatio(0.5),
            sync: SyncPolicy::Batch,
            sync_interval_ms: None,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            schema: SchemaRules::default(),
        }
    }
}

/// The topic config keys busbar knows, in the order `describe` lists them.
pub const TOPIC_KEYS: &[&str] = &[
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "max.message.bytes",
    "delete.retention.ms",
    "min.cleanable.dirty.ratio",
    "sync.policy",
    "sync.interval.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.after.max.ms",
    "key.schema.validation",
    "value.schema.validation",
    "key.subject.name.strategy",
    "value.subject.name.strategy",
];

/// Other products' names for the schema keys, accepted so existing topic configs work:
/// Confluent Server's and Redpanda's switches (`true` = `id`, `false` = `none`) and their
/// strategy keys. Stored as given; `describe` lists the effective value under busbar's name.
pub const SCHEMA_KEY_ALIASES: &[(&str, &str)] = &[
    ("confluent.key.schema.validation", "key.schema.validation"),
    (
        "confluent.value.schema.validation",
        "value.schema.validation",
    ),
    ("redpanda.key.schema.id.validation", "key.schema.validation"),
    (
        "redpanda.value.schema.id.validation",
        "value.schema.validation",
    ),
    (
        "confluent.key.subject.name.strategy",
        "key.subject.name.strategy",
    ),
    (
        "confluent.value.subject.name.strategy",
        "value.subject.name.strategy",
    ),
    (
        "redpanda.key.subject.name.strategy",
        "key.subject.name.strategy",
    ),
    (
        "redpanda.value.subject.name.strategy",
        "value.subject.name.strategy",
    ),
];

fn bad(key: &str, reason: impl Into<String>) -> BrokerError {
    BrokerError::InvalidConfig {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// Kafka topic keys whose behaviour busbar has one way of: (key, that value, why no other).
/// Tools set them explicitly (Kafka Streams creates its internal topics with
/// `message.timestamp.type=CreateTime`), so a create or alter may set them to that value (a
/// number compared as a number, a word without regard to case) and DescribeConfigs lists it;
/// any other value is refused, saying why.
pub const FIXED_KEYS: &[(&str, &str, &str)] = &[
    (
        "message.timestamp.type",
        "CreateTime",
        "busbar keeps the producer's timestamps (LogAppendTime is not supported)",
    ),
    (
        "compression.type",
        "producer",
        "busbar stores batches as their producer compressed them",
    ),
    (
        "min.insync.replicas",
        "1",
        "a busbar partition is one copy, made durable by its sync.policy (in a cluster, by \
         PostgreSQL's replication)",
    ),
    (
        "unclean.leader.election.enable",
        "false",
        "a busbar partition has no replicas to elect",
    ),
    (
        "min.compaction.lag.ms",
        "0",
        "compaction may take any record of a settled segment",
    ),
    (
        "max.compaction.lag.ms",
        "9223372036854775807",
        "compaction runs by min.cleanable.dirty.ratio and delete horizons",
    ),
];

/// Checks `v` against the one value of the fixed key `key` (see [`FIXED_KEYS`]).
fn check_fixed(key: &str, v: &str) -> Result<()> {
    let Some((_, want, why)) = FIXED_KEYS.iter().find(|f| f.0 == key) else {
        return Err(bad(key, "unknown config key"));
    };
    let same = match (v.trim().parse::<i64>(), want.parse::<i64>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => v.trim().eq_ignore_ascii_case(want),
    };
    if same {
        Ok(())
    } else {
        Err(bad(key, format!("{v:?}: only {want} is supported ({why})")))
    }
}

/// A `min.cleanable.dirty.ratio`: a number in [0, 1] (never NaN, so equality is total).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DirtyRatio(pub f64);

impl Eq for DirtyRatio {}

fn int(key: &str, v: &str, min: i64, max: i64) -> Result<i64> {
    let n: i64 = v
        .trim()
        .parse()
        .map_err(|_| bad(key, format!("{v:?} is not an integer")))?;
    if n < min || n > max {
        return Err(bad(key, format!("{n} is outside [{min}, {max}]")));
    }
    Ok(n)
}

impl TopicConfig {
    /// This config with one `key = value` applied.
    pub fn set(&mut self, key: &str, v: &str) -> Result<()> {
        match key {
            "cleanup.policy" => {
                let mut parts: Vec<&str> = v.split(',').map(str::trim).collect();
                parts.sort_unstable();
                self.cleanup_policy = match parts.as_slice() {
                    ["delete"] => CleanupPolicy::Delete,
                    ["compact"] => CleanupPolicy::Compact,
                    ["compact", "delete"] => CleanupPolicy::CompactDelete,
                    _ => {
                        return Err(bad(
                            key,
                            format!("{v:?} is not delete, compact or compact,delete"),
                        ))
                    }
                }
            }
            "retention.ms" => {
                let n = int(key, v, -1, i64::MAX)?;
                self.retention_ms = (n >= 0).then_some(n);
            }
            "retention.bytes" => {
                let n = int(key, v, -1, i64::MAX)?;
                self.retention_bytes = (n >= 0).then_some(n as u64);
            }
            "segment.bytes" => self.segment_bytes = int(key, v, 1024, i32::MAX as i64)? as u64,
            "segment.ms" => self.segment_ms = int(key, v, 1, i64::MAX)?,
            "max.message.bytes" => {
                self.max_message_bytes = int(key, v, 64, i32::MAX as i64)? as usize
            }
            "delete.retention.ms" => self.delete_retention_ms = int(key, v, 0, i64::MAX)?,
            "min.cleanable.dirty.ratio" => {
                self.min_cleanable_dirty_ratio = match v.trim().parse::<f64>() {
                    Ok(r) if (0.0..=1.0).contains(&r) => DirtyRatio(r),
                    _ => return Err(bad(key, format!("{v:?} is not a number in [0, 1]"))),
                }
            }
            "sync.policy" => {
                self.sync = match v.trim() {
                    "batch" => SyncPolicy::Batch,
                    "never" => SyncPolicy::Never,
                    "interval" => SyncPolicy::Interval(self.interval_ms()),
                    _ => return Err(bad(key, format!("{v:?} is not batch, interval or never"))),
                }
            }
            "sync.interval.ms" => {
                let ms = int(key, v, 1, 24 * 3600 * 1000)? as u64;
                if let SyncPolicy::Interval(_) = self.sync {
                    self.sync = SyncPolicy::Interval(ms);
                }
                self.sync_interval_ms = Some(ms);
            }
            "message.timestamp.before.max.ms" => {
                self.timestamp_before_max_ms = int(key, v, 0, i64::MAX)?
            }
            "message.timestamp.after.max.ms" => {
                self.timestamp_after_max_ms = int(key, v, 0, i64::MAX)?
            }
            _ if FIXED_KEYS.iter().any(|f| f.0 == key) => check_fixed(key, v)?,
            _ => return self.set_schema(key, v),
        }
        Ok(())
    }

    /// Sets one of the schema keys (or an alias of one).
    fn set_schema(&mut self, key: &str, v: &str) -> Result<()> {
        let alias = SCHEMA_KEY_ALIASES.iter().find(|(a, _)| *a == key);
        let target = alias.map_or(key, |(_, k)| k);
        let rule = match target.split_once('.') {
            Some(("key", _)) => &mut self.schema.key,
            Some(("value", _)) => &mut self.schema.value,
            _ => return Err(bad(key, "unknown config key")),
        };
        match target {
            "key.schema.validation" | "value.schema.validation" if alias.is_some() => {
                // Kafka reads booleans without regard to case.
                rule.validation = match v.trim().to_ascii_lowercase().as_str() {
                    "true" => Validation::Id,
                    "false" => Validation::None,
                    _ => return Err(bad(key, format!("{v:?} is not true or false"))),
                }
            }
            "key.schema.validation" | "value.schema.validation" => {
                rule.validation = Validation::parse(v)
                    .ok_or_else(|| bad(key, format!("{v:?} is not none, id or strict")))?
            }
            "key.subject.name.strategy" | "value.subject.name.strategy" => {
                rule.strategy = SubjectStrategy::parse(v).ok_or_else(|| {
                    bad(
                        key,
                        format!(
                            "{v:?} is not TopicNameStrategy, RecordNameStrategy or \
                             TopicRecordNameStrategy"
                        ),
                    )
                })?
            }
            _ => return Err(bad(key, "unknown config key")),
        }
        Ok(())
    }

    /// What `after` weakens of this config's durability (a sync policy that acknowledges before
    /// data is on disk, or a longer sync interval), as `key: before -> after`; `None` when it keeps
    /// or strengthens it. Front ends log it with the peer's address (issue 12 item 19).
    pub fn weakening(&self, after: &TopicConfig) -> Option<String> {
        fn rank(s: SyncPolicy) -> (u8, u64) {
            match s {
                SyncPolicy::Batch => (0, 0),
                SyncPolicy::Interval(ms) => (1, ms),
                SyncPolicy::Never => (2, 0),
            }
        }
        fn show(s: SyncPolicy) -> String {
            match s {
                SyncPolicy::Batch => "batch".into(),
                SyncPolicy::Interval(ms) => format!("interval ({ms} ms)"),
                SyncPolicy::Never => "never".into(),
            }
        }
        (rank(after.sync) > rank(self.sync))
            .then(|| format!("sync.policy: {} -> {}", show(self.sync), show(after.sync)))
    }

    fn interval_ms(&self) -> u64 {
        self.sync_interval_ms.unwrap_or(1000)
    }

    /// Defaults with `overrides` applied, checked together.
    pub fn with_overrides(&self, overrides: &BTreeMap<String, String>) -> Result<Self> {
        let mut c = self.clone();
        // sync.interval.ms first so `sync.policy=interval` picks it up whatever the map order.
        if let Some(v) = overrides.get("sync.interval.ms") {
            c.set("sync.interval.ms", v)?;
        }
        // Aliases before busbar's own schema keys: with both set, busbar's name wins.
        let alias = |k: &str| SCHEMA_KEY_ALIASES.iter().any(|(a, _)| *a == k);
        let (aliases, own): (Vec<_>, Vec<_>) = overrides
            .iter()
            .filter(|(k, _)| *k != "sync.interval.ms")
            .partition(|(k, _)| alias(k));
        for (k, v) in aliases.into_iter().chain(own) {
            c.set(k, v)?;
        }
        // A batch larger than a segment is refused at produce time (the log's limit is the smaller
        // of max.message.bytes and the segment payload), as Kafka does, so no cross-check here.
        Ok(c)
    }

    /// Every key with its effective value, as Kafka's DescribeConfigs lists them.
    pub fn entries(&self) -> BTreeMap<String, String> {
        let policy = match self.cleanup_policy {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        };
        let sync = match self.sync {
            SyncPolicy::Batch => "batch",
            SyncPolicy::Interval(_) => "interval",
            SyncPolicy::Never => "never",
        };
        let opt = |v: Option<i64>| v.unwrap_or(-1).to_string();
        let fixed = FIXED_KEYS
            .iter()
            .map(|(k, v, _)| (k.to_string(), v.to_string()));
        let mut entries = BTreeMap::from([
            ("cleanup.policy".into(), policy.into()),
            ("retention.ms".into(), opt(self.retention_ms)),
            (
                "retention.bytes".into(),
                opt(self.retention_bytes.map(|b| b as i64)),
            ),
            ("segment.bytes".into(), self.segment_bytes.to_string()),
            ("segment.ms".into(), self.segment_ms.to_string()),
            (
                "max.message.bytes".into(),
                self.max_message_bytes.to_string(),
            ),
            (
                "delete.retention.ms".into(),
                self.delete_retention_ms.to_string(),
            ),
            (
                "min.cleanable.dirty.ratio".into(),
                self.min_cleanable_dirty_ratio.0.to_string(),
            ),
            ("sync.policy".into(), sync.into()),
            ("sync.interval.ms".into(), self.interval_ms().to_string()),
            (
                "message.timestamp.before.max.ms".into(),
                self.timestamp_before_max_ms.to_string(),
            ),
            (
                "message.timestamp.after.max.ms".into(),
                self.timestamp_after_max_ms.to_string(),
            ),
            (
                "key.schema.validation".into(),
                self.schema.key.validation.as_str().into(),
            ),
            (
                "value.schema.validation".into(),
                self.schema.value.validation.as_str().into(),
            ),
            (
                "key.subject.name.strategy".into(),
                self.schema.key.strategy.as_str().into(),
            ),
            (
                "value.subject.name.strategy".into(),
                self.schema.value.strategy.as_str().into(),
            ),
        ]);
        entries.extend(fixed);
        entries
    }

    /// The log settings for a partition of this topic; its sealed segments' files and indexes
    /// are held in `cache` (shared by every partition of the broker).
    pub fn log_config(&self, clock: Arc<dyn Clock>, cache: Arc<SegmentCache>) -> LogConfig {
        LogConfig {
            segment_cache: cache,
            sync: self.sync,
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            batch_bytes_max: self.max_message_bytes,
            cleanup: self.cleanup_policy,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            delete_retention_ms: self.delete_retention_ms,
            min_cleanable_dirty_ratio: self.min_cleanable_dirty_ratio.0,
            clock,
            codec: Some(Arc::new(crate::codec::KafkaCodecs)),
            ..LogConfig::default()
        }
    }
}

/// Settings of the whole broker.
#[derive(Clone)]
pub struct BrokerConfig {
    /// Where topics, offsets and metadata live.
    pub data_dir: PathBuf,
    /// Settings a new topic gets unless it overrides them.
    pub topic_defaults: TopicConfig,
    /// Partitions of a topic created without a count (also auto-created topics).
    pub default_partitions: u32,
    /// Most partitions one topic may have.
    pub partitions_max: u32,
    /// Longest a fetch may wait for data.
    pub fetch_wait_max: Duration,
    /// Largest answer of one fetch.
    pub fetch_bytes_max: usize,
    /// How often retention, compaction and interval syncs run.
    pub maintenance_interval: Duration,
    /// Allowed consumer session timeouts.
    pub group_session_timeout_min: Duration,
    pub group_session_timeout_max: Duration,
    /// How long a new group waits for more members before its first rebalance completes.
    pub group_initial_rebalance_delay: Duration,
    /// How long a group without members and without committed offsets stays listed (and in
    /// memory) after it became Empty; then it is forgotten, as Kafka's periodic group cleanup does.
    pub group_empty_retention: Duration,
    /// Time source for retention, sessions and timestamps.
    pub clock: Arc<dyn Clock>,
    /// Idempotent producers remembered per partition (and producer ids whose epoch is
    /// remembered for KIP-360 bumps); past it the least recently active is forgotten.
    pub producers_max: usize,
    /// Longest metadata string of a committed offset, bytes (Kafka's `offset.metadata.max.bytes`).
    pub offset_metadata_bytes_max: usize,
    /// Open files and loaded indexes of sealed segments, across all partitions (least recently
    /// used closed or dropped past the limits; active segments are not counted).
    pub segment_cache: Arc<SegmentCache>,
    /// Where the data lives when not on the real file system at `data_dir` (power-loss tests
    /// give an in-memory, crashable one).
    pub data: Option<Arc<dyn crate::datadir::DataDir>>,
    /// `[auth]`: whether and how clients authenticate (off by default).
    pub auth: crate::auth::AuthConfig,
    /// Client quota windows and limits (`broker.quota_*`).
    pub quotas: crate::quota::QuotaConfig,
    /// `[audit]`: where the audit log goes and how it rotates.
    pub audit: crate::audit::AuditConfig,
    /// `[transactions]`: the transaction coordinator's limits.
    pub transactions: crate::txn::TxnConfig,
    /// `metrics.series_max`: most series one metric family holds (`metrics.rs`).
    pub metrics_series_max: usize,
    /// Cluster mode (`shared.rs`): the partition logs are a local copy of the shared store,
    /// which holds the durable data, so they are never fsynced for an ack.
    pub cluster_cache: bool,
}

impl BrokerConfig {
    /// The log settings of a partition of a topic with settings `tc`.
    pub fn log_config(&self, tc: &TopicConfig) -> LogConfig {
        let mut lc = tc.log_config(self.clock.clone(), self.segment_cache.clone());
        if self.cluster_cache {
            lc.sync = SyncPolicy::Never;
            // Batches were checked against the topic's limit when produced; a copy applies what
            // was committed whatever the limit is now (`shared::check_new`).
            lc.batch_bytes_max = usize::MAX;
            // Batches come at the shared offsets, with the gaps of compacted objects.
            lc.copied = true;
        }
        lc
    }

    /// The data directory in use.
    pub fn data(&self) -> Arc<dyn crate::datadir::DataDir> {
        self.data
            .clone()
            .unwrap_or_else(|| Arc::new(crate::datadir::FsDataDir::new(self.data_dir.clone())))
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("busbar-data"),
            topic_defaults: TopicConfig::default(),
            default_partitions: 1,
            partitions_max: 10_000,
            fetch_wait_max: Duration::from_secs(30),
            fetch_bytes_max: 50 << 20,
            maintenance_interval: Duration::from_secs(30),
            group_session_timeout_min: Duration::from_millis(6_000),
            group_session_timeout_max: Duration::from_millis(1_800_000),
            group_initial_rebalance_delay: Duration::from_millis(3_000),
            group_empty_retention: Duration::from_secs(600),
            clock: Arc::new(SystemClock),
            producers_max: crate::producers::PRODUCERS_MAX,
            metrics_series_max: crate::metrics::SERIES_MAX_DEFAULT,
            cluster_cache: false,
            offset_metadata_bytes_max: 4096,
            segment_cache: SegmentCache::shared(),
            data: None,
            auth: Default::default(),
            quotas: Default::default(),
            audit: Default::default(),
            transactions: Default::default(),
        }
    }
}

impl std::fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("data_dir", &self.data_dir)
            .field("topic_defaults", &self.topic_defaults)
            .field("default_partitions", &self.default_partitions)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn overrides_parse_and_round_trip() {
        let c = TopicConfig::default()
            .with_overrides(&map(&[
                ("sync.policy", "interval"),
                ("sync.interval.ms", "250"),
                ("cleanup.policy", "delete,compact"),
                ("retention.ms", "-1"),
            ]))
            .unwrap();
        assert_eq!(c.sync, SyncPolicy::Interval(250));
        assert_eq!(c.cleanup_policy, CleanupPolicy::CompactDelete);
        assert_eq!(c.retention_ms, None);
        let again = TopicConfig::default().with_overrides(&c.entries()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn bad_values_name_the_key() {
        for (k, v) in [
            ("retention.ms", "soon"),
            ("segment.bytes", "10"),
            ("sync.policy", "always"),
            ("nope", "1"),
            ("cleanup.policy", "keep"),
        ] {
            let err = TopicConfig::default()
                .with_overrides(&map(&[(k, v)]))
                .unwrap_err();
            assert!(
                matches!(&err, BrokerError::InvalidConfig { key, .. } if key == k),
                "{err}"
            );
        }
    }
}
