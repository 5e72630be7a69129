//! DescribeCluster: this one node, which is also the controller (in cluster mode: every live
//! broker, the lowest id as controller). No ACL is checked (Kafka checks none: it only fills the
//! authorized operations, which busbar does not report).

use super::{sb, Ctx};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

pub fn handle(ctx: &Ctx<'_>, _req: DescribeClusterRequest) -> DescribeClusterResponse {
    let c = &ctx.shared.config;
    let mut b = DescribeClusterBroker::default();
    b.broker_id = BrokerId(c.node_id);
    b.host = sb(ctx.listener.advertised_host.clone());
    b.port = i32::from(ctx.listener.advertised_port);
    let mut r = DescribeClusterResponse::default();
    r.cluster_id = sb(c.cluster_id.clone());
    r.controller_id = BrokerId(c.node_id);
    r.brokers = vec![b];
    if let Some(shared) = ctx.shared.broker.shared_log() {
        let members = shared.members();
        for m in members.iter().filter(|m| m.node_id != c.node_id) {
            let mut b = DescribeClusterBroker::default();
            b.broker_id = BrokerId(m.node_id);
            let (host, port) = m.addr(ctx.listener.place, ctx.listener.security.name());
            b.host = sb(host.to_string());
            b.port = i32::from(port);
            r.brokers.push(b);
        }
        if let Some(lowest) = members.iter().map(|m| m.node_id).min() {
            r.controller_id = BrokerId(lowest.min(c.node_id));
        }
    }
    r.endpoint_type = 1;
    r
}
