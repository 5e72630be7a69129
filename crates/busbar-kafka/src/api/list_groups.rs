//! ListGroups: every group with live members or committed offsets.

use super::{sb, Ctx};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

pub fn handle(ctx: &Ctx<'_>, req: ListGroupsRequest) -> ListGroupsResponse {
    let filter: Vec<String> = req
        .states_filter
        .iter()
        .map(|s| s.as_str().to_ascii_lowercase())
        .collect();
    let mut r = ListGroupsResponse::default();
    for (group, state) in ctx.shared.broker.list_groups() {
        if !filter.is_empty() && !filter.contains(&state.to_ascii_lowercase()) {
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
        g.group_type = sb("classic");
        r.groups.push(g);
    }
    r
}
