//! The one typed configuration: built-in defaults < `busbar.toml` < `BUSBAR_*` environment < flags,
//! merged as TOML tables, then decoded (unknown keys refused) and validated here, once, at start-up.
//! `busbar.toml.example` at the repository root documents every key with its default and unit.

use crate::config_layers::{env_table, merge};
use anyhow::{anyhow, bail, Context, Result};
use busbar_broker::{BrokerConfig, TopicConfig};
use busbar_bus::{Bus, BusConfig, SubscriptionSpec, TargetPolicy};
use busbar_http::HttpConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::{Table, Value};

pub use crate::auth_config::AuthSection;
pub use crate::kafka_config::Kafka;

/// The whole configuration of `busbar serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where topics, offsets and metadata live.
    pub data_dir: PathBuf,
    pub http: Http,
    pub kafka: Kafka,
    pub broker: Broker,
    pub bus: BusSection,
    pub auth: AuthSection,
    /// `[tls]`: certificate, key and client CA of the TLS listeners and HTTPS.
    pub tls: crate::tls::TlsSection,
    /// `[limits]`: limits of the accept paths.
    pub limits: Limits,
    /// `[audit]`: the audit log's file and rotation.
    pub audit: crate::audit::AuditSection,
    /// `[log]`: the server log's format.
    pub log: LogSection,
    /// `[tracing]`: OpenTelemetry spans over OTLP (off unless `otlp_endpoint` is set).
    pub tracing: crate::otlp::TracingSection,
    /// `[cluster]`: one broker of a cluster on PostgreSQL (off unless `postgres_url` is set).
    pub cluster: crate::cluster_config::ClusterSection,
    /// `[schema_registry]`: the schema registry's listener and limits.
    pub schema_registry: crate::schema_config::SchemaRegistrySection,
    /// Defaults for new topics, by Kafka config name (`"retention.ms" = 604800000`; TOML
    /// integers and booleans are read as their text).
    #[serde(deserialize_with = "crate::config_layers::scalar_texts")]
    pub topic_defaults: BTreeMap<String, String>,
    /// Subscriptions to create or update at start-up (`[[subscriptions]]`, the fields of
    /// `POST /subscriptions`). The file owns them: the API may not change or delete them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<SubscriptionSpec>,
    /// The file this configuration was read from, as an absolute path (none without one). Not a
    /// setting: it names the owner of the `[[subscriptions]]` in the API's answers.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// `[log]`: how the server log on stderr is written (`busbar_broker::log`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `text` (default: the lines busbar always printed) or `json` (one object per line).
    pub format: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: "text".into(),
        }
    }
}

impl LogSection {
    /// `format` is `text` or `json`.
    pub fn validate(&self) -> Result<()> {
        self.format().map(drop)
    }

    /// The format named.
    pub fn format(&self) -> Result<busbar_broker::log::Format> {
        busbar_broker::log::Format::parse(&self.format).ok_or_else(|| {
            anyhow!(
                "log.format: {:?} is not \"text\" or \"json\"",
                self.format.chars().take(100).collect::<String>()
            )
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    /// Address of the HTTP API.
    pub addr: String,
    /// Largest event-publish body, bytes.
    pub publish_bytes_max: u64,
    /// Largest body of other JSON requests, bytes.
    pub json_bytes_max: u64,
    /// On shutdown, how long in-flight requests (long polls, event streams) may take, milliseconds.
    pub shutdown_grace_ms: u64,
    /// Most consumer instances and event streams held at once.
    pub consumers_max: u64,
    /// Serve HTTPS with `[tls]`.
    pub tls: bool,
    /// A request's headers must arrive whole within this, milliseconds (slowloris).
    pub header_read_timeout_ms: u64,
    /// A request's body must arrive whole within this, milliseconds, or it answers 408 and the
    /// connection closes.
    pub body_read_timeout_ms: u64,
    /// A response write that makes no progress for this long closes the connection,
    /// milliseconds (a client that does not read).
    pub write_timeout_ms: u64,
    /// Most open HTTP connections in all; more are closed at once.
    pub connections_max: u64,
    /// Most bytes of request bodies being read at once, across all connections (503 over it).
    pub body_bytes_budget: u64,
}

/// `[limits]`: limits of the accept paths (Kafka and HTTP listeners).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Most open connections from one client address; the Kafka listeners and the HTTP listener
    /// count separately.
    pub connections_per_ip: u64,
}

/// `[bus]`: the routing bus's limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusSection {
    /// Most subscriptions (1..=100,000).
    pub subscriptions_max: u64,
    /// Most bytes of decoded source events the subscriptions of a topic share (0..=16 GiB; 0
    /// turns sharing off).
    pub read_cache_bytes: u64,
    pub targets: Targets,
}

/// `[bus.targets]`: which hosts and addresses HTTP targets may reach. The built-in deny list
/// (link-local, cloud metadata, unspecified addresses) always applies; `deny` adds to it, `allow`
/// overrides it (the most specific rule decides).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// CIDRs, addresses and host names (`*.domain` for names below it) targets may reach.
    pub allow: Vec<String>,
    /// CIDRs, addresses and host names targets may not reach.
    pub deny: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Broker {
    pub default_partitions: u32,
    pub partitions_max: u32,
    pub fetch_wait_max_ms: u64,
    pub fetch_bytes_max: u64,
    pub maintenance_interval_ms: u64,
    pub group_session_timeout_min_ms: u64,
    pub group_session_timeout_max_ms: u64,
    pub group_initial_rebalance_delay_ms: u64,
    pub producers_max: u64,
    pub offset_metadata_bytes_max: u64,
    pub open_files_max: u64,
    pub indexes_max: u64,
    /// Client quotas: samples of a rate, their length, most rates tracked, most quota entities.
    pub quota_window_num: u32,
    pub quota_window_ms: u64,
    pub quota_trackers_max: u64,
    pub quota_entities_max: u64,
    /// Transactions (docs/transactions.md): longest `transaction.timeout.ms` a producer may ask
    /// for, how long an idle transactional id is kept, most ids, most partitions (and offsets) in
    /// one transaction.
    pub transaction_max_timeout_ms: u64,
    pub transactional_id_expiration_ms: u64,
    pub transactional_ids_max: u64,
    pub transaction_partitions_max: u64,
    /// Most series one metric family of `/metrics` holds (docs/metrics.md).
    pub metrics_series_max: u64,
}

impl Default for Config {
    fn default() -> Self {
        let b = BrokerConfig::default();
        let h = HttpConfig::default();
        let k = busbar_kafka::KafkaConfig::default();
        Self {
            data_dir: b.data_dir.clone(),
            http: Http {
                addr: "127.0.0.1:8080".into(),
                publish_bytes_max: h.publish_bytes_max as u64,
                json_bytes_max: h.json_bytes_max as u64,
                shutdown_grace_ms: 10_000,
                consumers_max: h.consumers_max as u64,
                tls: false,
                header_read_timeout_ms: h.header_read_timeout.as_millis() as u64,
                body_read_timeout_ms: h.body_read_timeout.as_millis() as u64,
                write_timeout_ms: h.write_timeout.as_millis() as u64,
                connections_max: h.connections_max as u64,
                body_bytes_budget: h.body_bytes_budget as u64,
            },
            kafka: Kafka::default(),
            broker: Broker {
                default_partitions: b.default_partitions,
                partitions_max: b.partitions_max,
                fetch_wait_max_ms: b.fetch_wait_max.as_millis() as u64,
                fetch_bytes_max: b.fetch_bytes_max as u64,
                maintenance_interval_ms: b.maintenance_interval.as_millis() as u64,
                group_session_timeout_min_ms: b.group_session_timeout_min.as_millis() as u64,
                group_session_timeout_max_ms: b.group_session_timeout_max.as_millis() as u64,
                group_initial_rebalance_delay_ms: b.group_initial_rebalance_delay.as_millis()
                    as u64,
                producers_max: b.producers_max as u64,
                offset_metadata_bytes_max: b.offset_metadata_bytes_max as u64,
                open_files_max: busbar_log::OPEN_FILES_MAX_DEFAULT as u64,
                indexes_max: busbar_log::INDEXES_MAX_DEFAULT as u64,
                quota_window_num: b.quotas.window_num,
                quota_window_ms: b.quotas.window_ms,
                quota_trackers_max: b.quotas.trackers_max as u64,
                quota_entities_max: b.quotas.entities_max as u64,
                transaction_max_timeout_ms: b.transactions.max_timeout_ms as u64,
                transactional_id_expiration_ms: b.transactions.id_expiration_ms as u64,
                transactional_ids_max: b.transactions.ids_max as u64,
                transaction_partitions_max: b.transactions.partitions_max as u64,
                metrics_series_max: b.metrics_series_max as u64,
            },
            bus: BusSection {
                subscriptions_max: BusConfig::default().subscriptions_max as u64,
                read_cache_bytes: BusConfig::default().read_cache_bytes as u64,
                targets: Targets::default(),
            },
            tls: crate::tls::TlsSection::default(),
            limits: Limits {
                connections_per_ip: k.connections_per_ip as u64,
            },
            auth: AuthSection::default(),
            audit: crate::audit::AuditSection::default(),
            log: LogSection::default(),
            tracing: crate::otlp::TracingSection::default(),
            cluster: crate::cluster_config::ClusterSection::default(),
            schema_registry: crate::schema_config::SchemaRegistrySection::default(),
            topic_defaults: TopicConfig::default().entries(),
            subscriptions: Vec::new(),
            file: None,
        }
    }
}

/// A listen address: `IP:port` or `host:port` with a host name that resolves.
pub(crate) fn listen_address(key: &str, addr: &str) -> Result<()> {
    use std::net::ToSocketAddrs;
    match addr.to_socket_addrs().map(|mut found| found.next()) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => bail!("{key} {addr:?} resolves to no address"),
        Err(e) => bail!("{key} {addr:?} is not a HOST:PORT address ({e})"),
    }
}

/// Flags of `busbar serve` that override everything else.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub http_addr: Option<String>,
    pub kafka_addr: Option<String>,
    /// `--schema-registry-addr` (`schema_registry.addr`; empty disables the listener).
    pub schema_registry_addr: Option<String>,
    /// `--cluster URL` (`cluster.postgres_url`).
    pub cluster: Option<String>,
    /// `--node-id N` (`cluster.node_id`).
    pub node_id: Option<u64>,
}

/// Each `(key, value, min, max)` within its bounds, else an error naming the key.
pub fn check_ranges(checks: &[(&str, u64, u64, u64)]) -> Result<()> {
    for &(key, v, min, max) in checks {
        if v < min || v > max {
            bail!("{key} = {v} is outside [{min}, {max}]");
        }
    }
    Ok(())
}

impl Config {
    /// Loads the effective configuration from `flags`, the file and `vars` (the environment).
    pub fn load(flags: &Flags, vars: impl Iterator<Item = (String, String)>) -> Result<Self> {
        let mut table = Table::try_from(Config::default()).context("encode defaults")?;
        let file = flags.config.clone().or_else(|| {
            Path::new("busbar.toml")
                .exists()
                .then(|| "busbar.toml".into())
        });
        if let Some(path) = &file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read config file {}", path.display()))?;
            let over: Table = text
                .parse()
                .map_err(|e| anyhow!("{}: {e}", path.display()))?;
            merge(&mut table, over, "").with_context(|| format!("in {}", path.display()))?;
        }
        merge(&mut table, env_table(vars)?, "").context("in BUSBAR_* environment")?;
        let mut flag_table = Table::new();
        if let Some(d) = &flags.data_dir {
            flag_table.insert("data_dir".into(), Value::String(d.display().to_string()));
        }
        if let Some(a) = &flags.http_addr {
            flag_table.insert(
                "http".into(),
                Value::Table(Table::from_iter([(
                    "addr".to_string(),
                    Value::String(a.clone()),
                )])),
            );
        }
        if let Some(a) = &flags.schema_registry_addr {
            flag_table.insert(
                "schema_registry".into(),
                Value::Table(Table::from_iter([(
                    "addr".to_string(),
                    Value::String(a.clone()),
                )])),
            );
        }
        if let Some(a) = &flags.kafka_addr {
            // `--kafka-addr X` is `listeners = ["PLAINTEXT://X"]`.
            flag_table.insert(
                "kafka".into(),
                Value::Table(Table::from_iter([
                    ("addr".to_string(), Value::String(a.clone())),
                    ("listeners".to_string(), Value::Array(Vec::new())),
                ])),
            );
        }
        let mut cluster = Table::new();
        if let Some(url) = &flags.cluster {
            cluster.insert("postgres_url".into(), Value::String(url.clone()));
        }
        if let Some(id) = flags.node_id {
            cluster.insert(
                "node_id".into(),
                Value::Integer(id.min(i64::MAX as u64) as i64),
            );
        }
        if !cluster.is_empty() {
            flag_table.insert("cluster".into(), Value::Table(cluster));
        }
        merge(&mut table, flag_table, "")?;
        let mut config = Self::decode(table)?;
        config.file = file.map(|f| std::path::absolute(&f).unwrap_or(f));
        Ok(config)
    }

    /// The configuration a `busbar.toml` with `text` gives over the defaults (no environment, no
    /// flags): the file layer alone, as the fuzz target drives it.
    pub fn from_toml(text: &str) -> Result<Self> {
        let mut table = Table::try_from(Config::default()).context("encode defaults")?;
        let over: Table = text.parse().map_err(|e| anyhow!("{e}"))?;
        merge(&mut table, over, "")?;
        Self::decode(table)
    }

    fn decode(table: Table) -> Result<Self> {
        let config: Config =
            serde_path_to_error::deserialize(Value::Table(table)).map_err(|e| {
                let path = e.path().to_string();
                anyhow!(
                    "invalid configuration: `{path}`: {}",
                    e.into_inner().message()
                )
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Range checks that serde cannot express.
    pub fn validate(&self) -> Result<()> {
        listen_address("http.addr", &self.http.addr)?;
        listen_address("kafka.addr", &self.kafka.addr)?;
        let listeners = self.listeners()?;
        if listeners.len() > 1 && self.kafka.advertised_port != 0 {
            bail!("kafka.advertised_port applies to a single listener; leave it 0 with several kafka.listeners");
        }
        let sasl = listeners.iter().find(|l| l.security.sasl());
        if let Some(l) = sasl.filter(|_| !self.auth.enabled) {
            bail!("kafka.listeners has {l} but auth.enabled is false: set auth.enabled = true to authenticate clients");
        }
        self.check_tls(&listeners)?;
        self.kafka.validate()?;
        self.auth.validate()?;
        self.audit.validate()?;
        self.log.validate()?;
        self.tracing.validate()?;
        self.cluster.validate()?;
        self.schema_registry.validate()?;
        let b = &self.broker;
        let checks: &[(&str, u64, u64, u64)] = &[
            (
                "broker.default_partitions",
                b.default_partitions as u64,
                1,
                b.partitions_max as u64,
            ),
            (
                "broker.fetch_wait_max_ms",
                b.fetch_wait_max_ms,
                0,
                3_600_000,
            ),
            ("broker.fetch_bytes_max", b.fetch_bytes_max, 1024, 1 << 30),
            ("broker.producers_max", b.producers_max, 1, 10_000_000),
            (
                "broker.metrics_series_max",
                b.metrics_series_max,
                1,
                10_000_000,
            ),
            (
                "bus.subscriptions_max",
                self.bus.subscriptions_max,
                1,
                100_000,
            ),
            (
                "bus.read_cache_bytes",
                self.bus.read_cache_bytes,
                0,
                16 << 30,
            ),
            ("broker.open_files_max", b.open_files_max, 1, 1_000_000),
            ("broker.indexes_max", b.indexes_max, 1, 1_000_000),
            ("broker.quota_window_num", b.quota_window_num.into(), 2, 100),
            ("broker.quota_window_ms", b.quota_window_ms, 100, 3_600_000),
            (
                "broker.transaction_max_timeout_ms",
                b.transaction_max_timeout_ms,
                1000,
                86_400_000,
            ),
            (
                "broker.transactional_id_expiration_ms",
                b.transactional_id_expiration_ms,
                1000,
                365 * 86_400_000,
            ),
            (
                "broker.transactional_ids_max",
                b.transactional_ids_max,
                1,
                10_000_000,
            ),
            (
                "broker.transaction_partitions_max",
                b.transaction_partitions_max,
                1,
                1_000_000,
            ),
            (
                "broker.quota_trackers_max",
                b.quota_trackers_max,
                1,
                10_000_000,
            ),
            (
                "broker.quota_entities_max",
                b.quota_entities_max,
                1,
                1_000_000,
            ),
            (
                "broker.offset_metadata_bytes_max",
                b.offset_metadata_bytes_max,
                0,
                1 << 20,
            ),
            (
                "broker.maintenance_interval_ms",
                b.maintenance_interval_ms,
                100,
                86_400_000,
            ),
            (
                "http.publish_bytes_max",
                self.http.publish_bytes_max,
                1024,
                1 << 30,
            ),
            (
                "http.json_bytes_max",
                self.http.json_bytes_max,
                1024,
                1 << 30,
            ),
            ("http.consumers_max", self.http.consumers_max, 1, 1_000_000),
            (
                "http.header_read_timeout_ms",
                self.http.header_read_timeout_ms,
                100,
                3_600_000,
            ),
            (
                "http.write_timeout_ms",
                self.http.write_timeout_ms,
                100,
                3_600_000,
            ),
            (
                "http.body_read_timeout_ms",
                self.http.body_read_timeout_ms,
                100,
                3_600_000,
            ),
            (
                "http.connections_max",
                self.http.connections_max,
                1,
                10_000_000,
            ),
            (
                "http.body_bytes_budget",
                self.http.body_bytes_budget,
                65_536,
                1 << 40,
            ),
            (
                "limits.connections_per_ip",
                self.limits.connections_per_ip,
                1,
                10_000_000,
            ),
        ];
        check_ranges(checks)?;
        if b.group_session_timeout_min_ms > b.group_session_timeout_max_ms {
            bail!(
                "broker.group_session_timeout_min_ms exceeds broker.group_session_timeout_max_ms"
            );
        }
        TopicConfig::default()
            .with_overrides(&self.topic_defaults)
            .map_err(|e| anyhow!("topic_defaults: {e}"))?;
        self.target_policy().map_err(|e| anyhow!("{e}"))?;
        for (i, s) in self.subscriptions.iter().enumerate() {
            if self.subscriptions[..i].iter().any(|o| o.name == s.name) {
                bail!("subscriptions[{i}]: name {:?} is used twice", s.name);
            }
            s.clone()
                .compile()
                .map_err(|e| anyhow!("subscriptions[{i}] ({:?}): {e}", s.name))?;
        }
        Ok(())
    }

    /// The broker's settings.
    /// The bus's limits.
    pub fn bus_config(&self) -> BusConfig {
        BusConfig {
            subscriptions_max: self.bus.subscriptions_max as usize,
            read_cache_bytes: self.bus.read_cache_bytes as usize,
            targets: self.target_policy().expect("validated"),
        }
    }

    fn target_policy(&self) -> Result<TargetPolicy, String> {
        TargetPolicy::new(&self.bus.targets.allow, &self.bus.targets.deny)
    }

    pub fn broker_config(&self) -> BrokerConfig {
        let b = &self.broker;
        BrokerConfig {
            data_dir: self.data_dir.clone(),
            topic_defaults: TopicConfig::default()
                .with_overrides(&self.topic_defaults)
                .expect("validated"),
            default_partitions: b.default_partitions,
            partitions_max: b.partitions_max,
            fetch_wait_max: Duration::from_millis(b.fetch_wait_max_ms),
            fetch_bytes_max: b.fetch_bytes_max as usize,
            maintenance_interval: Duration::from_millis(b.maintenance_interval_ms),
            group_session_timeout_min: Duration::from_millis(b.group_session_timeout_min_ms),
            group_session_timeout_max: Duration::from_millis(b.group_session_timeout_max_ms),
            group_initial_rebalance_delay: Duration::from_millis(
                b.group_initial_rebalance_delay_ms,
            ),
            producers_max: b.producers_max as usize,
            offset_metadata_bytes_max: b.offset_metadata_bytes_max as usize,
            quotas: busbar_broker::quota::QuotaConfig {
                window_num: b.quota_window_num,
                window_ms: b.quota_window_ms,
                trackers_max: b.quota_trackers_max as usize,
                entities_max: b.quota_entities_max as usize,
            },
            segment_cache: busbar_log::SegmentCache::new(
                b.open_files_max as usize,
                b.indexes_max as usize,
            ),
            auth: self.auth.broker_config(),
            audit: self.audit.broker_config(),
            transactions: busbar_broker::txn::TxnConfig {
                max_timeout_ms: b.transaction_max_timeout_ms as i64,
                id_expiration_ms: b.transactional_id_expiration_ms as i64,
                ids_max: b.transactional_ids_max as usize,
                partitions_max: b.transaction_partitions_max as usize,
            },
            metrics_series_max: b.metrics_series_max as usize,
            cluster_cache: self.cluster.enabled(),
            ..BrokerConfig::default()
        }
    }

    /// `[tls]` read and checked: TLS listeners and `http.tls` need a certificate.
    fn check_tls(&self, listeners: &[crate::listeners::ListenerSpec]) -> Result<()> {
        let loaded = self.tls.load()?.is_some();
        if let Some(l) = listeners.iter().find(|l| l.security.tls() && !loaded) {
            bail!("kafka.listeners has {l} but [tls] has no certificate: set tls.cert_file and tls.key_file");
        }
        if self.http.tls && !loaded {
            bail!(
                "http.tls is true but [tls] has no certificate: set tls.cert_file and tls.key_file"
            );
        }
        Ok(())
    }

    /// The Kafka listeners to bind (`kafka.listeners`, or PLAINTEXT on `kafka.addr`).
    pub fn listeners(&self) -> Result<Vec<crate::listeners::ListenerSpec>> {
        crate::listeners::resolve(&self.kafka.listeners, &self.kafka.addr)
    }

    /// The HTTP front end's settings.
    pub fn http_config(&self) -> HttpConfig {
        HttpConfig {
            publish_bytes_max: self.http.publish_bytes_max as usize,
            json_bytes_max: self.http.json_bytes_max as usize,
            consumers_max: self.http.consumers_max as usize,
            header_read_timeout: Duration::from_millis(self.http.header_read_timeout_ms),
            connections_per_ip: self.limits.connections_per_ip as usize,
            connections_max: self.http.connections_max as usize,
            body_read_timeout: Duration::from_millis(self.http.body_read_timeout_ms),
            write_timeout: Duration::from_millis(self.http.write_timeout_ms),
            body_bytes_budget: self.http.body_bytes_budget as usize,
            ..HttpConfig::default()
        }
    }

    /// The Kafka listener's settings; the advertised address defaults to the bound one.
    pub fn kafka_config(&self, bound: SocketAddr) -> busbar_kafka::KafkaConfig {
        self.kafka
            .kafka_config(bound, self.limits.connections_per_ip)
    }

    /// One listener's settings; its advertised address defaults to the bound one
    /// (`kafka.advertised_host` applies to every listener, `advertised_port` only to a single one).
    pub fn listener(
        &self,
        security: busbar_kafka::Security,
        bound: SocketAddr,
    ) -> busbar_kafka::Listener {
        let c = self.kafka_config(bound);
        busbar_kafka::Listener {
            security,
            advertised_host: c.advertised_host,
            advertised_port: c.advertised_port,
            place: 0,
        }
    }

    /// Lowers `kafka.connections_max` to what `descriptors` (the open-file limit) leaves after the
    /// reserve for the log and the rest of the process (`busbar_kafka::fds`); returns the
    /// configured value when it was lowered.
    pub fn fit_descriptors(&mut self, descriptors: u64) -> Option<u64> {
        let fits = busbar_kafka::fds::connections_fitting(descriptors).max(1);
        let configured = self.kafka.connections_max;
        (configured > fits).then(|| {
            self.kafka.connections_max = fits;
            configured
        })
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config encodes")
    }
}

/// Creates or updates the configured subscriptions (others are left alone), creating any topic
/// they name that does not exist yet with the defaults; then marks them as owned by the file, so
/// the API may not change or delete them (a subscription dropped from the file is the API's again).
pub async fn apply_subscriptions(bus: &Bus, config: &Config) -> Result<()> {
    let specs = &config.subscriptions;
    for spec in specs {
        for (_, topic) in spec.topics() {
            match bus
                .broker()
                .create_topic(&topic, None, BTreeMap::new())
                .await
            {
                Ok(_) | Err(busbar_broker::BrokerError::TopicExists(_)) => {}
                Err(e) => {
                    return Err(anyhow!(
                        "subscription {:?}: topic {topic:?}: {e}",
                        spec.name
                    ))
                }
            }
        }
        let result = match bus.get(&spec.name).await {
            Ok(v) if v.spec == *spec => continue,
            Ok(_) => bus.update(&spec.name, spec.clone()).await,
            Err(_) => bus.create(spec.clone()).await,
        };
        result.map_err(|e| anyhow!("subscription {:?}: {e}", spec.name))?;
    }
    let file = config
        .file
        .as_deref()
        .unwrap_or(Path::new("the configuration"));
    bus.set_config_owned(
        specs.iter().map(|s| s.name.clone()),
        &file.display().to_string(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("b.toml");
        std::fs::write(&file, "data_dir = \"/from/file\"\n[http]\naddr = \"127.0.0.1:1\"\n[broker]\ndefault_partitions = 4\n").unwrap();
        let flags = Flags {
            config: Some(file),
            http_addr: Some("127.0.0.1:3".into()),
            ..Flags::default()
        };
        let c = Config::load(
            &flags,
            env(&[
                ("BUSBAR_HTTP_ADDR", "127.0.0.1:2"),
                ("BUSBAR_BROKER_DEFAULT_PARTITIONS", "6"),
                ("BUSBAR_TOPIC_RETENTION_MS", "1000"),
            ]),
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));
        assert_eq!(c.http.addr, "127.0.0.1:3", "flags beat env beats file");
        assert_eq!(c.broker.default_partitions, 6);
        assert_eq!(c.topic_defaults["retention.ms"], "1000");
        assert_eq!(
            Config::load(&Flags::default(), env(&[])).unwrap(),
            Config::default()
        );
        // The broker's limits reach it.
        let c = Config::load(
            &Flags::default(),
            env(&[
                ("BUSBAR_BROKER_OPEN_FILES_MAX", "7"),
                ("BUSBAR_BROKER_INDEXES_MAX", "9"),
                ("BUSBAR_BROKER_PRODUCERS_MAX", "11"),
            ]),
        )
        .unwrap();
        let b = c.broker_config();
        assert_eq!(b.segment_cache.open_files_max(), 7);
        assert_eq!(b.segment_cache.indexes_max(), 9);
        assert_eq!(b.producers_max, 11);
    }

    /// Reliability I1 in CI: random and damaged config files load or are refused, never a panic.
    #[test]
    fn random_config_files_are_refused_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.toml");
        let sample =
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../busbar.toml.example"))
                .unwrap();
        busbar_testkit::for_each_seed(10, |seed| {
            let mut rng = busbar_testkit::Rng::new(seed);
            for _ in 0..100 {
                let text = if rng.chance(50) {
                    rng.mutate(&sample)
                } else {
                    let n = rng.below(200) as usize;
                    rng.json_ish(n)
                };
                std::fs::write(&file, &text).unwrap();
                let flags = Flags {
                    config: Some(file.clone()),
                    ..Flags::default()
                };
                let loaded = Config::load(&flags, env(&[]));
                if let Err(e) = &loaded {
                    assert!(!format!("{e:#}").is_empty());
                }
                let parsed = std::str::from_utf8(&text).ok().map(Config::from_toml);
                if let Some(p) = parsed {
                    assert_eq!(p.is_ok(), loaded.is_ok(), "file layer and from_toml agree");
                }
            }
        });
    }

    #[test]
    fn the_sample_file_documents_exactly_the_defaults() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../busbar.toml.example");
        let flags = Flags {
            config: Some(sample.clone()),
            ..Flags::default()
        };
        let loaded = Config::load(&flags, env(&[])).unwrap();
        assert_eq!(
            loaded.file.as_deref(),
            Some(std::path::absolute(&sample).unwrap().as_path())
        );
        assert_eq!(
            Config {
                file: None,
                ..loaded
            },
            Config::default()
        );
        let text = std::fs::read_to_string(sample).unwrap();
        let (mut listed, mut all) = (vec![], vec![]);
        keys(&text.parse::<Table>().unwrap(), "", &mut listed);
        keys(&Table::try_from(Config::default()).unwrap(), "", &mut all);
        let missing: Vec<_> = all.iter().filter(|k| !listed.contains(k)).collect();
        assert!(missing.is_empty(), "busbar.toml.example lacks {missing:?}");
    }

    #[test]
    fn connections_fit_the_descriptor_limit() {
        let mut c = Config::default();
        assert_eq!(c.fit_descriptors(1 << 20), None, "10,000 fits in 2^20");
        assert_eq!(c.kafka.connections_max, 10_000);
        assert_eq!(c.fit_descriptors(4096), Some(10_000));
        assert_eq!(c.kafka.connections_max, 4096 - 1024);
        assert_eq!(c.fit_descriptors(128), Some(3072));
        assert_eq!(c.kafka.connections_max, 64);
        assert_eq!(c.fit_descriptors(1), Some(64));
        assert_eq!(c.kafka.connections_max, 1);
    }

    #[test]
    fn schema_aliases_in_topic_defaults_take_effect() {
        use busbar_broker::schema_rules::Validation;
        let c = Config::from_toml(
            "[topic_defaults]\n\"confluent.value.schema.validation\" = \"TRUE\"\n",
        )
        .unwrap();
        let t = c.broker_config().topic_defaults;
        assert_eq!(t.schema.value.validation, Validation::Id);
        let both = "[topic_defaults]\n\"redpanda.key.schema.id.validation\" = true\n\
                    \"key.schema.validation\" = \"strict\"\n";
        let t = Config::from_toml(both)
            .unwrap()
            .broker_config()
            .topic_defaults;
        assert_eq!(t.schema.key.validation, Validation::Strict);
        let t = Config::from_toml("")
            .unwrap()
            .broker_config()
            .topic_defaults;
        assert_eq!(t.schema.value.validation, Validation::None);
    }

    #[test]
    fn bad_settings_are_refused_with_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("[http]\nadr = \"x\"\n", "adr"),
            ("[http]\naddr = \"nowhere\"\n", "http.addr"),
            ("[broker]\ndefault_partitions = 0\n", "default_partitions"),
            ("[broker]\nopen_files_max = 0\n", "open_files_max"),
            ("[broker]\nquota_window_num = 1\n", "quota_window_num"),
            (
                "[broker]\nfetch_wait_max_ms = \"soon\"\n",
                "fetch_wait_max_ms",
            ),
            (
                "[topic_defaults]\n\"retention.ms\" = \"forever\"\n",
                "retention.ms",
            ),
            ("data_dir = [1\n", "b.toml"),
            ("http = 5\n", "http"),
        ];
        for (text, needle) in cases {
            let file = dir.path().join("b.toml");
            std::fs::write(&file, text).unwrap();
            let err = Config::load(
                &Flags {
                    config: Some(file),
                    ..Flags::default()
                },
                env(&[]),
            )
            .unwrap_err();
            assert!(format!("{err:#}").contains(needle), "{text:?}: {err:#}");
        }
        let err = Config::load(&Flags::default(), env(&[("BUSBAR_COLOUR", "red")])).unwrap_err();
        assert!(err.to_string().contains("BUSBAR_COLOUR"));
        let missing = Flags {
            config: Some("/no/such/busbar.toml".into()),
            ..Flags::default()
        };
        assert!(
            format!("{:#}", Config::load(&missing, env(&[])).unwrap_err())
                .contains("/no/such/busbar.toml")
        );
    }

    /// Every key of a table, dotted (`http.addr`); empty arrays (lists with nothing in them by
    /// default) are not keys to document.
    fn keys(t: &Table, path: &str, out: &mut Vec<String>) {
        for (k, v) in t {
            let here = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match v {
                Value::Table(t) => keys(t, &here, out),
                Value::Array(a) if a.is_empty() => {}
                _ => out.push(here),
            }
        }
    }
}
