//! DescribeConfigs, AlterConfigs (replaces a topic's overrides) and IncrementalAlterConfigs
//! (SET / DELETE per key, APPEND / SUBTRACT for list configs) for topics. The broker resource
//! describes the broker's settings under Kafka's broker config names (`log.retention.ms`,
//! `message.max.bytes`, `num.partitions`...) and is read-only (they come from busbar.toml).
//! Every change is validated as a whole before anything is applied.
//!
//! Sources, as Kafka reports them: a topic override is DYNAMIC_TOPIC_CONFIG; a value busbar.toml
//! sets for every topic is STATIC_BROKER_CONFIG; a built-in default is DEFAULT_CONFIG. With
//! `include_synonyms` each entry lists that chain, most specific first.

use super::{sb, Ctx};
use crate::authz::{Authz, Op, Res};
use crate::codes;
use busbar_broker::auth::acl::CLUSTER_NAME;
use busbar_broker::{BrokerError, TopicConfig};
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncResult;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use std::collections::BTreeMap;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Kafka's `ConfigSource` ids (`DescribeConfigsResponse.ConfigSource`): a client maps them with
/// `forId`, which throws on anything outside 0..=8 (so never -1).
pub const DYNAMIC_TOPIC_CONFIG: i8 = 1;
pub const STATIC_BROKER_CONFIG: i8 = 4;
pub const DEFAULT_CONFIG: i8 = 5;
/// Kafka's INVALID_CONFIG.
const INVALID_CONFIG: i16 = 40;

/// Topic config → the broker config that sets it for every topic (Kafka's names; the two
/// `sync.*` keys are busbar's own and keep a `log.` prefix in the same spirit).
const BROKER_NAMES: &[(&str, &str)] = &[
    ("cleanup.policy", "log.cleanup.policy"),
    ("retention.ms", "log.retention.ms"),
    ("retention.bytes", "log.retention.bytes"),
    ("segment.bytes", "log.segment.bytes"),
    ("segment.ms", "log.roll.ms"),
    ("max.message.bytes", "message.max.bytes"),
    ("delete.retention.ms", "log.cleaner.delete.retention.ms"),
    ("sync.policy", "log.sync.policy"),
    ("sync.interval.ms", "log.sync.interval.ms"),
    (
        "message.timestamp.before.max.ms",
        "log.message.timestamp.before.max.ms",
    ),
    (
        "message.timestamp.after.max.ms",
        "log.message.timestamp.after.max.ms",
    ),
];

fn broker_name(topic_key: &str) -> &str {
    BROKER_NAMES
        .iter()
        .find(|(t, _)| *t == topic_key)
        .map_or(topic_key, |(_, b)| b)
}

/// Configs whose value is a comma-separated list (APPEND / SUBTRACT apply to them only).
fn is_list(key: &str) -> bool {
    matches!(key, "cleanup.policy" | "log.cleanup.policy")
}

fn config_type(key: &str) -> i8 {
    match key {
        k if is_list(k) => 7,                                // LIST
        "sync.policy" | "log.sync.policy" | "log.dirs" => 2, // STRING
        "max.message.bytes"
        | "message.max.bytes"
        | "num.partitions"
        | "default.replication.factor"
        | "min.insync.replicas"
        | "node.id"
        | "broker.id"
        | "group.min.session.timeout.ms"
        | "group.max.session.timeout.ms"
        | "group.initial.rebalance.delay.ms"
        | "offset.metadata.max.bytes"
        | "fetch.max.bytes"
        | "segment.bytes"
        | "log.segment.bytes" => 3, // INT
        "auto.create.topics.enable" => 1,                    // BOOLEAN
        _ => 5,                                              // LONG
    }
}

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    let mut s = DescribeConfigsSynonym::default();
    s.name = sb(name);
    s.value = Some(sb(value));
    s.source = source;
    s
}

fn entry(
    name: &str,
    value: &str,
    read_only: bool,
    chain: Vec<DescribeConfigsSynonym>,
    synonyms: bool,
) -> DescribeConfigsResourceResult {
    let mut c = DescribeConfigsResourceResult::default();
    c.name = sb(name);
    c.value = Some(sb(value));
    c.config_source = chain.first().map_or(DEFAULT_CONFIG, |s| s.source);
    c.read_only = read_only;
    c.config_type = config_type(name);
    if synonyms {
        c.synonyms = chain;
    }
    c
}

/// Where a topic's value of `key` comes from, most specific first: its override, the value
/// busbar.toml sets for every topic (when it differs from the built-in default), the default.
fn topic_chain(
    key: &str,
    overrides: &BTreeMap<String, String>,
    broker_defaults: &BTreeMap<String, String>,
) -> Vec<DescribeConfigsSynonym> {
    let mut chain = Vec::new();
    if let Some(v) = overrides.get(key) {
        chain.push(synonym(key, v, DYNAMIC_TOPIC_CONFIG));
    }
    chain.extend(broker_chain(key, broker_defaults));
    chain
}

/// The broker-level part of a topic config's chain (named by its broker config).
fn broker_chain(
    key: &str,
    broker_defaults: &BTreeMap<String, String>,
) -> Vec<DescribeConfigsSynonym> {
    let builtin = TopicConfig::default().entries();
    let name = broker_name(key);
    let mut chain = Vec::new();
    if let Some(set) = broker_defaults
        .get(key)
        .filter(|v| Some(*v) != builtin.get(key))
    {
        chain.push(synonym(name, set, STATIC_BROKER_CONFIG));
    }
    if let Some(v) = builtin.get(key) {
        chain.push(synonym(name, v, DEFAULT_CONFIG));
    }
    chain
}

/// The source of a topic config's effective value (CreateTopics answers it too).
pub fn topic_source(key: &str, overrides: &BTreeMap<String, String>, ctx: &Ctx<'_>) -> i8 {
    topic_chain(
        key,
        overrides,
        &ctx.shared.broker.config().topic_defaults.entries(),
    )
    .first()
    .map_or(DEFAULT_CONFIG, |s| s.source)
}

/// The broker resource: every topic default under its broker name, then broker-wide settings.
fn broker_entries(ctx: &Ctx<'_>, synonyms: bool) -> Vec<DescribeConfigsResourceResult> {
    let b = ctx.shared.broker.config();
    let k = &ctx.shared.config;
    let defaults = b.topic_defaults.entries();
    let mut out: Vec<DescribeConfigsResourceResult> = defaults
        .iter()
        .map(|(key, v)| {
            entry(
                broker_name(key),
                v,
                true,
                broker_chain(key, &defaults),
                synonyms,
            )
        })
        .collect();
    let builtin = busbar_broker::BrokerConfig::default();
    let builtin_kafka = crate::KafkaConfig::default();
    let ms = |d: std::time::Duration| d.as_millis().to_string();
    let data_dir = std::path::absolute(&b.data_dir).unwrap_or_else(|_| b.data_dir.clone());
    let rows: Vec<(&str, String, String)> = vec![
        (
            "num.partitions",
            b.default_partitions.to_string(),
            builtin.default_partitions.to_string(),
        ),
        ("default.replication.factor", "1".into(), "1".into()),
        ("min.insync.replicas", "1".into(), "1".into()),
        (
            "auto.create.topics.enable",
            k.auto_create_topics.to_string(),
            builtin_kafka.auto_create_topics.to_string(),
        ),
        (
            "node.id",
            k.node_id.to_string(),
            builtin_kafka.node_id.to_string(),
        ),
        (
            "broker.id",
            k.node_id.to_string(),
            builtin_kafka.node_id.to_string(),
        ),
        (
            "log.dirs",
            data_dir.display().to_string(),
            builtin.data_dir.display().to_string(),
        ),
        (
            "group.min.session.timeout.ms",
            ms(b.group_session_timeout_min),
            ms(builtin.group_session_timeout_min),
        ),
        (
            "group.max.session.timeout.ms",
            ms(b.group_session_timeout_max),
            ms(builtin.group_session_timeout_max),
        ),
        (
            "group.initial.rebalance.delay.ms",
            ms(b.group_initial_rebalance_delay),
            ms(builtin.group_initial_rebalance_delay),
        ),
        (
            "offset.metadata.max.bytes",
            b.offset_metadata_bytes_max.to_string(),
            builtin.offset_metadata_bytes_max.to_string(),
        ),
        (
            "fetch.max.bytes",
            b.fetch_bytes_max.to_string(),
            builtin.fetch_bytes_max.to_string(),
        ),
        (
            "socket.request.max.bytes",
            k.frame_bytes_max.to_string(),
            builtin_kafka.frame_bytes_max.to_string(),
        ),
        (
            "connections.max.idle.ms",
            ms(k.idle_timeout),
            ms(builtin_kafka.idle_timeout),
        ),
    ];
    for (name, value, default) in rows {
        let mut chain = Vec::new();
        if value != default {
            chain.push(synonym(name, &value, STATIC_BROKER_CONFIG));
        }
        chain.push(synonym(name, &default, DEFAULT_CONFIG));
        out.push(entry(name, &value, true, chain, synonyms));
    }
    out
}

/// The denial code when the principal may not DESCRIBE_CONFIGS (or, `alter`, ALTER_CONFIGS) the
/// topic (29) or the broker (the cluster, 31). Other resource types are refused elsewhere.
fn denied(authz: &Authz<'_>, resource_type: i8, name: &str, alter: bool) -> Option<i16> {
    let op = if alter {
        Op::AlterConfigs
    } else {
        Op::DescribeConfigs
    };
    match resource_type {
        TOPIC => authz.check(op, Res::Topic, name).err(),
        BROKER => authz.check(op, Res::Cluster, CLUSTER_NAME).err(),
        _ => None,
    }
}

pub fn describe(ctx: &Ctx<'_>, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let broker = &ctx.shared.broker;
    let broker_defaults = broker.config().topic_defaults.entries();
    let mut r = DescribeConfigsResponse::default();
    let authz = Authz::new(ctx, "DescribeConfigs");
    for res in req.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        if let Some(code) = denied(&authz, res.resource_type, res.resource_name.as_str(), false) {
            out.error_code = code;
            r.results.push(out);
            continue;
        }
        let wanted = |k: &str| {
            res.configuration_keys
                .as_ref()
                .is_none_or(|ks| ks.iter().any(|x| x.as_str() == k))
        };
        match res.resource_type {
            TOPIC => match broker.describe_topic(res.resource_name.as_str()) {
                Ok(d) => {
                    out.configs = d
                        .configs
                        .iter()
                        .filter(|(k, _)| wanted(k))
                        .map(|(k, v)| {
                            let chain = topic_chain(k, &d.overrides, &broker_defaults);
                            entry(k, v, false, chain, req.include_synonyms)
                        })
                        .collect();
                }
                Err(e) => {
                    (out.error_code, out.error_message) = (codes::of(&e), Some(sb(e.to_string())))
                }
            },
            BROKER => {
                out.configs = broker_entries(ctx, req.include_synonyms)
                    .into_iter()
                    .filter(|c| wanted(c.name.as_str()))
                    .collect();
            }
            other => {
                out.error_code = codes::INVALID_REQUEST;
                out.error_message = Some(sb(format!("resource type {other} has no configs here")));
            }
        }
        r.results.push(out);
    }
    r
}

/// Applies `changes` (key → value, or None to reset) to a topic, all or nothing.
async fn apply(
    ctx: &Ctx<'_>,
    authz: &Authz<'_>,
    resource_type: i8,
    topic: &str,
    changes: BTreeMap<String, Option<String>>,
    validate_only: bool,
) -> (i16, Option<String>) {
    if let Some(code) = denied(authz, resource_type, topic, true) {
        return (code, None);
    }
    if resource_type != TOPIC {
        return (
            codes::INVALID_REQUEST,
            Some(
                "only topic configs can be altered (broker defaults come from busbar.toml)".into(),
            ),
        );
    }
    let broker = &ctx.shared.broker;
    let result: Result<(), BrokerError> = async {
        let d = broker.describe_topic(topic)?;
        let mut overrides = d.overrides.clone();
        for (k, v) in &changes {
            match v {
                Some(v) => overrides.insert(k.clone(), v.clone()),
                None => overrides.remove(k),
            };
        }
        let after = broker.config().topic_defaults.with_overrides(&overrides)?;
        if !validate_only {
            let before = broker.topic_config(topic)?;
            broker.alter_configs(topic, changes).await?;
            if let Some(w) = before.weakening(&after) {
                let msg = format!(
                    "{} (client {:?}) weakened the durability of topic {topic:?}: {w}",
                    ctx.peer, ctx.client_id
                );
                busbar_broker::log::warn("busbar-kafka", "durability_weakened", &msg, &[]);
            }
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => (codes::NONE, None),
        Err(e) => codes::with_message(&e),
    }
}

pub async fn alter(ctx: &Ctx<'_>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut r = AlterConfigsResponse::default();
    let authz = Authz::new(ctx, "AlterConfigs");
    for res in req.resources {
        let topic = res.resource_name.as_str().to_string();
        // AlterConfigs replaces the whole set: keys not given go back to their defaults.
        let mut changes: BTreeMap<String, Option<String>> =
            match ctx.shared.broker.describe_topic(&topic) {
                Ok(d) => d.overrides.keys().map(|k| (k.clone(), None)).collect(),
                Err(_) => BTreeMap::new(),
            };
        for c in &res.configs {
            changes.insert(
                c.name.as_str().to_string(),
                c.value.as_ref().map(|v| v.as_str().to_string()),
            );
        }
        let (code, msg) = apply(
            ctx,
            &authz,
            res.resource_type,
            &topic,
            changes,
            req.validate_only,
        )
        .await;
        let mut out = AlterConfigsResourceResponse::default();
        out.error_code = code;
        out.error_message = msg.map(sb);
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name;
        r.responses.push(out);
    }
    r
}

/// The value of list config `key` after APPEND (`add`) or SUBTRACT of the comma-separated items
/// of `items`, starting from the topic's effective value. Kafka refuses both for other configs.
fn list_op(key: &str, current: Option<&str>, items: &str, add: bool) -> Result<String, String> {
    if !is_list(key) {
        let op = if add { "append" } else { "subtract" };
        return Err(format!(
            "config value {op} is not allowed for config key: {key} (not a list)"
        ));
    }
    let split = |v: &str| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect()
    };
    let mut list = split(current.unwrap_or(""));
    for item in split(items) {
        if add && !list.contains(&item) {
            list.push(item);
        } else if !add {
            list.retain(|x| *x != item);
        }
    }
    Ok(list.join(","))
}

pub async fn incremental(
    ctx: &Ctx<'_>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut r = IncrementalAlterConfigsResponse::default();
    let authz = Authz::new(ctx, "IncrementalAlterConfigs");
    for res in req.resources {
        let topic = res.resource_name.as_str().to_string();
        let effective = ctx
            .shared
            .broker
            .describe_topic(&topic)
            .map(|d| d.configs)
            .unwrap_or_default();
        let mut changes: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut bad = None;
        for c in &res.configs {
            let key = c.name.as_str().to_string();
            let value = c.value.as_ref().map(|v| v.as_str().to_string());
            match c.config_operation {
                0 => {
                    changes.insert(key, value);
                }
                1 => {
                    changes.insert(key, None);
                }
                op @ (2 | 3) => {
                    // Several operations on one key in a request build on each other.
                    let current = match changes.get(&key) {
                        Some(v) => v.clone(),
                        None => effective.get(&key).cloned(),
                    };
                    match list_op(
                        &key,
                        current.as_deref(),
                        value.as_deref().unwrap_or(""),
                        op == 2,
                    ) {
                        Ok(v) => {
                            changes.insert(key, Some(v));
                        }
                        Err(m) => bad = Some((INVALID_CONFIG, m)),
                    }
                }
                op => {
                    bad = Some((
                        codes::INVALID_REQUEST,
                        format!("unknown config operation {op}"),
                    ))
                }
            }
        }
        let (code, msg) = match bad {
            Some((code, m)) => (code, Some(m)),
            None => {
                apply(
                    ctx,
                    &authz,
                    res.resource_type,
                    &topic,
                    changes,
                    req.validate_only,
                )
                .await
            }
        };
        let mut out = IncResult::default();
        out.error_code = code;
        out.error_message = msg.map(sb);
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name;
        r.responses.push(out);
    }
    r
}
