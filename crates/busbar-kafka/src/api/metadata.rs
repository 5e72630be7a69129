//! Metadata: this broker (node, controller, leader of every partition; in cluster mode every live
//! broker, the lowest id as controller, leaders by rendezvous hashing) and the topics asked for,
//! creating unknown ones when the request and the config allow it. An invalid name, or one that
//! collides with an existing topic once `.` and `_` are treated alike, is INVALID_TOPIC_EXCEPTION
//! (17), as in Kafka. Leader epochs are reported as -1 (busbar does not serve
//! OffsetForLeaderEpoch yet, so clients must not validate with it).
//!
//! ACLs: a listing of all topics shows only those the principal may DESCRIBE; a named topic it
//! may not DESCRIBE answers TOPIC_AUTHORIZATION_FAILED (29) whether or not it exists, and
//! auto-creation needs CREATE on the cluster or the topic (else 29).

use super::{sb, topic, topic_id, Ctx};
use crate::authz::{self, Authz, Op, Res};
use crate::codes;
use busbar_broker::BrokerError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

/// Each partition's leader: this broker in single-node mode; in cluster mode the live broker
/// rendezvous hashing picks for the partition (any broker takes any partition's produce and
/// fetch: the leader is where clients go for cache affinity, `busbar_broker::shared`).
fn leader(ctx: &Ctx<'_>, ids: &[i32], topic_id: &str, partition: u32) -> BrokerId {
    let me = ctx.shared.config.node_id;
    BrokerId(busbar_broker::shared::partition_leader(topic_id, partition, ids).unwrap_or(me))
}

fn describe(ctx: &Ctx<'_>, ids: &[i32], name: &str) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.name = Some(topic(name));
    if let Err(e) = busbar_broker::validate_name(name) {
        t.error_code = codes::of(&e); // INVALID_TOPIC_EXCEPTION, as Kafka answers a bad name
        return t;
    }
    let node = BrokerId(ctx.shared.config.node_id);
    match ctx.shared.broker.describe_topic(name) {
        Ok(d) => {
            t.topic_id = topic_id(&d.id);
            t.partitions = d
                .partitions
                .iter()
                .map(|p| {
                    let mut mp = MetadataResponsePartition::default();
                    mp.partition_index = p.partition as i32;
                    let node = if ids.is_empty() {
                        node
                    } else {
                        leader(ctx, ids, &d.id, p.partition)
                    };
                    mp.leader_id = node;
                    mp.leader_epoch = -1;
                    mp.replica_nodes = vec![node];
                    mp.isr_nodes = vec![node];
                    mp
                })
                .collect();
        }
        Err(e) => t.error_code = codes::of(&e),
    }
    t
}

/// TOPIC_AUTHORIZATION_FAILED for `name`.
fn denied(name: &str) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.name = Some(topic(name));
    t.error_code = authz::TOPIC_DENIED;
    t
}

pub async fn handle(ctx: &Ctx<'_>, req: MetadataRequest) -> MetadataResponse {
    let broker = &ctx.shared.broker;
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let authz = Authz::new(ctx, "Metadata");
    // Listing all topics shows only those the principal may DESCRIBE (no audit lines).
    let all = || {
        broker
            .list_topics()
            .into_iter()
            .map(|t| t.name)
            .filter(|n| authz.quietly(Op::Describe, Res::Topic, n))
            .collect()
    };
    let names: Vec<String> = match req.topics {
        None => all(),
        Some(ts) if ts.is_empty() && ctx.version == 0 => all(),
        Some(ts) => ts
            .into_iter()
            .filter_map(|t| t.name.map(|n| n.0.as_str().to_string()))
            .collect(),
    };
    let auto =
        ctx.shared.config.auto_create_topics && (ctx.version < 4 || req.allow_auto_topic_creation);
    // Cluster mode: every live broker (empty in single-node mode).
    let members = broker.shared_log().map(|s| s.members()).unwrap_or_default();
    let ids: Vec<i32> = members.iter().map(|m| m.node_id).collect();
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        // A named topic the principal may not DESCRIBE is 29 whether or not it exists.
        if !authz.allows(Op::Describe, Res::Topic, &name) {
            topics.push(denied(&name));
            continue;
        }
        if auto
            && broker.describe_topic(&name).is_err()
            && busbar_broker::validate_name(&name).is_ok()
        {
            if !authz.may_create_topic(&name) {
                topics.push(denied(&name));
                continue;
            }
            let created = broker.create_topic(&name, None, Default::default()).await;
            if let Err(e @ BrokerError::TopicCollides { .. }) = created {
                let mut t = MetadataResponseTopic::default();
                t.name = Some(topic(name.as_str()));
                t.error_code = codes::of(&e);
                topics.push(t);
                continue;
            }
        }
        topics.push(describe(ctx, &ids, &name));
    }
    let mut b = MetadataResponseBroker::default();
    b.node_id = BrokerId(ctx.shared.config.node_id);
    b.host = sb(ctx.listener.advertised_host.clone());
    b.port = i32::from(ctx.listener.advertised_port);
    let me = ctx.shared.config.node_id;
    let mut r = MetadataResponse::default();
    r.brokers = vec![b];
    // The others as registered (this one as the client reached it, on this listener).
    for m in members.iter().filter(|m| m.node_id != me) {
        let mut b = MetadataResponseBroker::default();
        b.node_id = BrokerId(m.node_id);
        // Its address on the listener this client came through.
        let (host, port) = m.addr(ctx.listener.place, ctx.listener.security.name());
        b.host = sb(host.to_string());
        b.port = i32::from(port);
        r.brokers.push(b);
    }
    r.cluster_id = Some(sb(ctx.shared.config.cluster_id.clone()));
    r.controller_id = BrokerId(ids.iter().copied().min().unwrap_or(me));
    r.topics = topics;
    r
}
