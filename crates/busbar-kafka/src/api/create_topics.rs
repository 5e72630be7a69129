//! CreateTopics: partitions (-1: the default), replication factor -1 or 1 (one node), configs by
//! Kafka name; `validate_only` runs every check creation would (name, collision, partition count,
//! configs, existence) without creating. A name that collides with an existing topic once `.` and
//! `_` are treated alike is refused (17), as Kafka does: the broker decides, under the lock that
//! creates topics, so concurrent creations cannot both pass.
//!
//! The answer carries the topic's configs with a valid `config_source` for each (the Java admin
//! client maps it with `ConfigSource.forId`, which throws on -1).

use super::configs::topic_source;
use super::{sb, topic_id, Ctx};
use crate::authz::{self, Authz};
use crate::codes;
use busbar_broker::BrokerError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use std::collections::BTreeMap;

/// The checks creation makes, in Kafka's order, without creating anything.
fn check(
    ctx: &Ctx<'_>,
    name: &str,
    t: &CreatableTopic,
    configs: &BTreeMap<String, String>,
) -> Result<(), (i16, String)> {
    let broker = &ctx.shared.broker;
    let err = |e: BrokerError| (codes::of(&e), e.to_string());
    busbar_broker::validate_name(name).map_err(err)?;
    if broker.describe_topic(name).is_ok() {
        return Err(err(BrokerError::TopicExists(name.to_string())));
    }
    if let Some(existing) = broker.colliding_topic(name) {
        // Creation checks again under the broker's admin lock; this is for `validate_only`.
        return Err(err(BrokerError::TopicCollides {
            name: name.to_string(),
            existing,
        }));
    }
    let max = broker.config().partitions_max;
    if t.num_partitions != -1 && (t.num_partitions < 1 || t.num_partitions as i64 > max as i64) {
        return Err(err(BrokerError::InvalidPartitions(format!(
            "{} is outside [1, {max}]",
            t.num_partitions
        ))));
    }
    if !matches!(t.replication_factor, -1 | 1) {
        return Err((
            codes::INVALID_REPLICATION_FACTOR,
            format!(
                "replication factor {} is not possible on one node",
                t.replication_factor
            ),
        ));
    }
    broker
        .config()
        .topic_defaults
        .with_overrides(configs)
        .map(|_| ())
        .map_err(err)
}

async fn create(
    ctx: &Ctx<'_>,
    name: &str,
    t: &CreatableTopic,
    configs: BTreeMap<String, String>,
) -> Result<(), (i16, String)> {
    let broker = &ctx.shared.broker;
    let weaker = broker
        .config()
        .topic_defaults
        .with_overrides(&configs)
        .ok()
        .and_then(|after| broker.config().topic_defaults.weakening(&after));
    let partitions = (t.num_partitions != -1).then_some(i64::from(t.num_partitions));
    broker
        .create_topic(name, partitions, configs)
        .await
        .map_err(|e| (codes::of(&e), e.to_string()))?;
    if let Some(w) = weaker {
        let msg = format!(
            "{} (client {:?}) created topic {name:?} with weaker durability than the default: {w}",
            ctx.peer, ctx.client_id
        );
        busbar_broker::log::warn("busbar-kafka", "durability_weakened", &msg, &[]);
    }
    Ok(())
}

pub async fn handle(ctx: &Ctx<'_>, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let broker = &ctx.shared.broker;
    let mut r = CreateTopicsResponse::default();
    let authz = Authz::new(ctx, "CreateTopics");
    for t in &req.topics {
        let name = t.name.0.as_str().to_string();
        let mut res = CreatableTopicResult::default();
        res.name = t.name.clone();
        res.num_partitions = -1;
        res.replication_factor = -1;
        let configs: BTreeMap<String, String> = t
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.as_str().to_string(), v.as_str().to_string()))
            })
            .collect();
        let mut outcome = if authz.may_create_topic(&name) {
            check(ctx, &name, t, &configs)
        } else {
            Err((
                authz::TOPIC_DENIED,
                "CREATE on the cluster or the topic is needed".into(),
            ))
        };
        if outcome.is_ok() && !req.validate_only {
            outcome = create(ctx, &name, t, configs.clone()).await;
        }
        match outcome {
            Ok(()) => {
                res.replication_factor = 1;
                let (partitions, effective, overrides) = match broker.describe_topic(&name) {
                    Ok(d) if !req.validate_only => {
                        res.topic_id = topic_id(&d.id);
                        (d.partitions.len() as i32, d.configs, d.overrides)
                    }
                    _ => {
                        let p = if t.num_partitions == -1 {
                            broker.config().default_partitions as i32
                        } else {
                            t.num_partitions
                        };
                        let effective = broker
                            .config()
                            .topic_defaults
                            .with_overrides(&configs)
                            .map(|c| c.entries())
                            .unwrap_or_default();
                        (p, effective, configs)
                    }
                };
                res.num_partitions = partitions;
                res.configs = Some(
                    effective
                        .into_iter()
                        .map(|(k, v)| {
                            let mut c = CreatableTopicConfigs::default();
                            c.config_source = topic_source(&k, &overrides, ctx);
                            c.read_only = false;
                            c.is_sensitive = false;
                            c.name = sb(k);
                            c.value = Some(sb(v));
                            c
                        })
                        .collect(),
                );
            }
            Err((code, msg)) => {
                res.error_code = code;
                res.error_message = Some(sb(msg));
            }
        }
        r.topics.push(res);
    }
    r
}
