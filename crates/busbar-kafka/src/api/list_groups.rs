//! ListGroups: every group with live members or committed offsets. v4 filters by state, v5 by type
//! (busbar's groups are all `classic`; KIP-848 `consumer` groups are not served), both
//! case-insensitive as in Kafka.

use super::{sb, Ctx};
use crate::authz::{Authz, Op, Res};
use busbar_broker::auth::acl::CLUSTER_NAME;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

/// The type of every group busbar runs.
const GROUP_TYPE: &str = "classic";

pub fn handle(ctx: &Ctx<'_>, req: ListGroupsRequest) -> ListGroupsResponse {
    let lower = |v: &[kafka_protocol::protocol::StrBytes]| -> Vec<String> {
        v.iter().map(|s| s.as_str().to_ascii_lowercase()).collect()
    };
    let states = lower(&req.states_filter);
    let types = lower(&req.types_filter);
    let mut r = ListGroupsResponse::default();
    // All groups with DESCRIBE on the cluster, else those the principal may DESCRIBE.
    let authz = Authz::new(ctx, "ListGroups");
    let all = authz.quietly(Op::Describe, Res::Cluster, CLUSTER_NAME);
    if !types.is_empty() && !types.iter().any(|t| t == GROUP_TYPE) {
        return r;
    }
    for (group, state) in ctx.shared.broker.list_groups() {
        if !states.is_empty() && !states.contains(&state.to_ascii_lowercase()) {
            continue;
        }
        if !all && !authz.quietly(Op::Describe, Res::Group, &group) {
            continue;
        }
        let protocol_type = ctx
            .shared
            .broker
            .describe_group(&group)
            .ok()
            .and_then(|d| d.live)
            .map(|l| l.protocol_type)
            .unwrap_or_else(|| "consumer".into());
        let mut g = ListedGroup::default();
        g.group_id = GroupId(sb(group));
        g.protocol_type = sb(protocol_type);
        g.group_state = sb(state);
        g.group_type = sb(GROUP_TYPE);
        r.groups.push(g);
    }
    r
}
