//! DescribeGroups: state, protocol and members with their metadata and assignments; an unknown
//! group is answered as "Dead" with no members, as Kafka does.

use super::{sb, Ctx};
use crate::authz::{Authz, Op, Res};
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

pub fn handle(ctx: &Ctx<'_>, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let mut r = DescribeGroupsResponse::default();
    let authz = Authz::new(ctx, "DescribeGroups");
    for g in req.groups {
        let mut dg = DescribedGroup::default();
        dg.group_state = sb("Dead");
        if let Err(code) = authz.check(Op::Describe, Res::Group, g.0.as_str()) {
            dg.error_code = code;
            dg.group_state = sb("");
            dg.group_id = g;
            r.groups.push(dg);
            continue;
        }
        if let Ok(d) = ctx.shared.broker.describe_group(g.0.as_str()) {
            dg.group_state = sb(d.state);
            if let Some(live) = d.live {
                dg.protocol_type = sb(live.protocol_type);
                dg.protocol_data = sb(live.protocol);
                dg.members = live
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut dm = DescribedGroupMember::default();
                        dm.member_id = sb(m.member_id);
                        // v4+ carry a static member's instance id (KIP-345).
                        dm.group_instance_id = m.instance_id.filter(|_| ctx.version >= 4).map(sb);
                        dm.client_id = sb(m.client_id);
                        dm.client_host = sb(m.client_host);
                        dm.member_metadata = m.metadata.into();
                        dm.member_assignment = m.assignment.into();
                        dm
                    })
                    .collect();
            }
        }
        dg.group_id = g;
        r.groups.push(dg);
    }
    r
}
