//! DescribeConfigs, AlterConfigs (replaces a topic's overrides) and IncrementalAlterConfigs
//! (SET / DELETE per key) for topics; the broker resource describes the topic defaults and is
//! read-only. Every change is validated as a whole before anything is applied.

use super::{sb, Ctx};
use crate::codes;
use busbar_broker::BrokerError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncResult;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use std::collections::BTreeMap;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const DEFAULT_CONFIG: i8 = 5;

fn config_type(key: &str) -> i8 {
    match key {
        "cleanup.policy" => 7,    // LIST
        "sync.policy" => 2,       // STRING
        "max.message.bytes" => 3, // INT
        _ => 5,                   // LONG
    }
}

fn entry(name: &str, value: &str, source: i8, read_only: bool) -> DescribeConfigsResourceResult {
    let mut c = DescribeConfigsResourceResult::default();
    c.name = sb(name);
    c.value = Some(sb(value));
    c.config_source = source;
    c.read_only = read_only;
    c.config_type = config_type(name);
    c
}

pub fn describe(ctx: &Ctx<'_>, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let broker = &ctx.shared.broker;
    let mut r = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
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
                            entry(
                                k,
                                v,
                                if d.overrides.contains_key(k) {
                                    DYNAMIC_TOPIC_CONFIG
                                } else {
                                    DEFAULT_CONFIG
                                },
                                false,
                            )
                        })
                        .collect();
                }
                Err(e) => {
                    (out.error_code, out.error_message) = (codes::of(&e), Some(sb(e.to_string())))
                }
            },
            BROKER => {
                out.configs = broker
                    .config()
                    .topic_defaults
                    .entries()
                    .iter()
                    .filter(|(k, _)| wanted(k))
                    .map(|(k, v)| entry(k, v, DEFAULT_CONFIG, true))
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
    resource_type: i8,
    topic: &str,
    changes: BTreeMap<String, Option<String>>,
    validate_only: bool,
) -> (i16, Option<String>) {
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
                eprintln!(
                    "busbar-kafka: warning: {} (client {:?}) weakened the durability of topic \
                     {topic:?}: {w}",
                    ctx.peer, ctx.client_id
                );
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
        let (code, msg) = apply(ctx, res.resource_type, &topic, changes, req.validate_only).await;
        let mut out = AlterConfigsResourceResponse::default();
        out.error_code = code;
        out.error_message = msg.map(sb);
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name;
        r.responses.push(out);
    }
    r
}

pub async fn incremental(
    ctx: &Ctx<'_>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut r = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let topic = res.resource_name.as_str().to_string();
        let mut changes = BTreeMap::new();
        let mut bad = None;
        for c in &res.configs {
            match c.config_operation {
                0 => changes.insert(
                    c.name.as_str().to_string(),
                    c.value.as_ref().map(|v| v.as_str().to_string()),
                ),
                1 => changes.insert(c.name.as_str().to_string(), None),
                op => {
                    bad = Some(format!(
                        "operation {op} (APPEND/SUBTRACT) is not supported for {}",
                        c.name.as_str()
                    ));
                    None
                }
            };
        }
        let (code, msg) = match bad {
            Some(m) => (codes::INVALID_REQUEST, Some(m)),
            None => apply(ctx, res.resource_type, &topic, changes, req.validate_only).await,
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
