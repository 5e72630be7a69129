//! DescribeCluster: this one node, which is also the controller. No ACL is checked (Kafka checks
//! none: it only fills the authorized operations, which busbar does not report).

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
    r.endpoint_type = 1;
    r
}
