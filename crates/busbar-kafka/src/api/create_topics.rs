//! CreateTopics: partitions (-1: the default), replication factor -1 or 1 (one node), configs by
//! Kafka name; `validate_only` checks without creating.

use super::{sb, topic_id, Ctx};
use crate::codes;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use std::collections::BTreeMap;

pub async fn handle(ctx: &Ctx<'_>, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let broker = &ctx.shared.broker;
    let mut r = CreateTopicsResponse::default();
    for t in req.topics {
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
        let partitions = (t.num_partitions != -1).then_some(i64::from(t.num_partitions));
        let outcome = if !matches!(t.replication_factor, -1 | 1) {
            Err((
                codes::INVALID_REPLICATION_FACTOR,
                format!(
                    "replication factor {} is not possible on one node",
                    t.replication_factor
                ),
            ))
        } else if req.validate_only {
            busbar_broker::validate_name(&name)
                .and_then(|_| {
                    broker
                        .config()
                        .topic_defaults
                        .with_overrides(&configs)
                        .map(|_| ())
                })
                .and_then(|_| match broker.describe_topic(&name) {
                    Ok(_) => Err(busbar_broker::BrokerError::TopicExists(name.clone())),
                    Err(_) => Ok(()),
                })
                .map_err(|e| (codes::of(&e), e.to_string()))
        } else {
            let weaker = broker
                .config()
                .topic_defaults
                .with_overrides(&configs)
                .ok()
                .and_then(|after| broker.config().topic_defaults.weakening(&after));
            let created = broker
                .create_topic(&name, partitions, configs)
                .await
                .map(|_| ())
                .map_err(|e| (codes::of(&e), e.to_string()));
            if let (Ok(()), Some(w)) = (&created, weaker) {
                eprintln!(
                    "busbar-kafka: warning: {} (client {:?}) created topic {name:?} with weaker \
                     durability than the default: {w}",
                    ctx.peer, ctx.client_id
                );
            }
            created
        };
        match outcome {
            Ok(()) => {
                if let Ok(d) = broker.describe_topic(&name) {
                    res.topic_id = topic_id(&d.id);
                    res.num_partitions = d.partitions.len() as i32;
                    res.replication_factor = 1;
                    res.configs = Some(
                        d.configs
                            .into_iter()
                            .map(|(k, v)| {
                                let mut c = CreatableTopicConfigs::default();
                                c.name = sb(k);
                                c.value = Some(sb(v));
                                c
                            })
                            .collect(),
                    );
                } else {
                    res.num_partitions =
                        partitions.unwrap_or(i64::from(broker.config().default_partitions)) as i32;
                    res.replication_factor = 1;
                }
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
