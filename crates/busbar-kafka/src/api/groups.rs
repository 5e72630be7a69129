//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup: the classic group protocol, decided by the
//! broker's coordinator; this file only maps fields and errors. An empty group id is
//! INVALID_GROUP_ID (24) for all four, as in Kafka.

use super::{sb, Ctx};
use crate::authz::{Authz, Op, Res};
use crate::codes;
use busbar_broker::{BrokerError, JoinRequest};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};

/// Kafka's INVALID_GROUP_ID.
pub const INVALID_GROUP_ID: i16 = 24;
/// Kafka's FENCED_INSTANCE_ID: a static member's old member id after the instance joined again.
pub const FENCED_INSTANCE_ID: i16 = 82;

/// The wire code of `e` for a request naming `instance` (KIP-345): an unknown member id whose
/// instance id another member id holds now is fenced (82), as Kafka answers.
pub fn code_for(
    ctx: &Ctx<'_>,
    e: &BrokerError,
    group: &str,
    instance: Option<&str>,
    member: &str,
) -> i16 {
    match (e, instance) {
        (BrokerError::UnknownMember { .. }, Some(i))
            if !i.is_empty() && ctx.shared.broker.instance_fenced(group, i, member) =>
        {
            FENCED_INSTANCE_ID
        }
        _ => codes::of(e),
    }
}

/// Kafka's `isStaticMemberFenced`, checked before anything else on Heartbeat, SyncGroup and
/// OffsetCommit: the request names an instance id that another member id holds.
pub fn fenced(ctx: &Ctx<'_>, group: &str, instance: Option<&str>, member: &str) -> bool {
    instance.is_some_and(|i| !i.is_empty() && ctx.shared.broker.instance_fenced(group, i, member))
}

/// Kafka's NOT_COORDINATOR: another broker of the cluster coordinates the group (the client
/// asks FindCoordinator again).
pub const NOT_COORDINATOR: i16 = 16;
/// Kafka's COORDINATOR_NOT_AVAILABLE (retriable): the cluster's store did not answer.
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;

/// Cluster mode: NOT_COORDINATOR unless this broker holds (or just took) `group`'s lease,
/// COORDINATOR_NOT_AVAILABLE when that could not be decided; `None` in single-node mode.
pub async fn not_coordinator(ctx: &Ctx<'_>, group: &str) -> Option<i16> {
    if group.is_empty() {
        return None;
    }
    match ctx.shared.broker.coordinates(group).await {
        Ok(true) => None,
        Ok(false) => Some(NOT_COORDINATOR),
        Err(_) => Some(COORDINATOR_NOT_AVAILABLE),
    }
}

/// GROUP_AUTHORIZATION_FAILED (audited) unless the principal may READ `group` (Join, Sync,
/// Heartbeat, Leave; an empty group id is answered INVALID_GROUP_ID first).
pub fn read_denied(ctx: &Ctx<'_>, api: &'static str, group: &str) -> Option<i16> {
    if group.is_empty() {
        return None;
    }
    Authz::new(ctx, api)
        .check(Op::Read, Res::Group, group)
        .err()
}

pub async fn join(ctx: &Ctx<'_>, req: JoinGroupRequest) -> JoinGroupResponse {
    let refused = if req.group_id.is_empty() {
        Some(INVALID_GROUP_ID)
    } else {
        read_denied(ctx, "JoinGroup", req.group_id.0.as_str())
    };
    let refused = match refused {
        None => not_coordinator(ctx, req.group_id.0.as_str()).await,
        r => r,
    };
    if let Some(code) = refused {
        let mut r = JoinGroupResponse::default();
        r.generation_id = -1;
        r.error_code = code;
        r.protocol_name = (ctx.version < 7).then(|| sb(""));
        return r;
    }
    let session = i64::from(req.session_timeout_ms);
    let rebalance = if ctx.version >= 1 {
        i64::from(req.rebalance_timeout_ms)
    } else {
        session
    };
    let jr = JoinRequest {
        group: req.group_id.0.as_str().to_string(),
        member_id: req.member_id.as_str().to_string(),
        client_id: ctx.client_id.clone(),
        client_host: ctx.peer.ip().to_string(),
        protocol_type: req.protocol_type.as_str().to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.as_str().to_string(), p.metadata.to_vec()))
            .collect(),
        session_timeout_ms: session,
        rebalance_timeout_ms: rebalance,
        require_known_member_id: ctx.version >= 4,
    };
    let mut r = JoinGroupResponse::default();
    r.generation_id = -1;
    let instance = req
        .group_instance_id
        .as_ref()
        .filter(|_| ctx.version >= 5)
        .map(|i| i.as_str().to_string());
    // Kafka's clients refuse a group.instance.id that is not a valid name of at most 249
    // characters (JoinGroupRequest.validateGroupInstanceId, the topic-name rules); the broker
    // answers such a request INVALID_REQUEST rather than keep and echo up to 32 KiB per member.
    if instance
        .as_deref()
        .is_some_and(|i| !i.is_empty() && busbar_broker::validate_name(i).is_err())
    {
        r.error_code = codes::INVALID_REQUEST;
        r.protocol_name = (ctx.version < 7).then(|| sb(""));
        return r;
    }
    match ctx.shared.broker.join_group_as(jr, instance.clone()).await {
        Ok(j) => {
            r.generation_id = j.generation;
            r.protocol_type = Some(sb(j.protocol_type));
            r.protocol_name = Some(sb(j.protocol));
            r.leader = sb(j.leader);
            r.member_id = sb(j.member_id);
            r.members = j
                .members
                .into_iter()
                .map(|jm| {
                    let mut m = JoinGroupResponseMember::default();
                    m.member_id = sb(jm.member_id);
                    // KIP-345: the leader's assignor sees which members are static (v5+).
                    m.group_instance_id = jm.instance_id.filter(|_| ctx.version >= 5).map(sb);
                    m.metadata = jm.metadata.into();
                    m
                })
                .collect();
        }
        Err(BrokerError::MemberIdRequired(id)) => {
            r.error_code = 79;
            r.member_id = sb(id);
        }
        Err(e) => {
            r.error_code = code_for(
                ctx,
                &e,
                req.group_id.0.as_str(),
                instance.as_deref(),
                req.member_id.as_str(),
            )
        }
    }
    if ctx.version < 7 {
        r.protocol_type = None;
        r.protocol_name = r.protocol_name.or_else(|| Some(sb("")));
    }
    r
}

pub async fn sync(ctx: &Ctx<'_>, req: SyncGroupRequest) -> SyncGroupResponse {
    let assignments = req
        .assignments
        .iter()
        .map(|a| (a.member_id.as_str().to_string(), a.assignment.to_vec()))
        .collect();
    let group = req.group_id.0.as_str().to_string();
    let mut r = SyncGroupResponse::default();
    if group.is_empty() {
        r.error_code = INVALID_GROUP_ID;
        return r;
    }
    if let Some(code) = read_denied(ctx, "SyncGroup", &group) {
        r.error_code = code;
        return r;
    }
    if let Some(code) = not_coordinator(ctx, &group).await {
        r.error_code = code;
        return r;
    }
    if fenced(
        ctx,
        &group,
        req.group_instance_id.as_deref(),
        req.member_id.as_str(),
    ) {
        r.error_code = FENCED_INSTANCE_ID;
        return r;
    }
    match ctx
        .shared
        .broker
        .sync_group(
            &group,
            req.member_id.as_str(),
            req.generation_id,
            assignments,
        )
        .await
    {
        Ok(a) => {
            r.assignment = a.into();
            if ctx.version >= 5 {
                r.protocol_type = req.protocol_type;
                r.protocol_name = req.protocol_name;
            }
        }
        Err(e) => {
            r.error_code = code_for(
                ctx,
                &e,
                &group,
                req.group_instance_id.as_deref(),
                req.member_id.as_str(),
            )
        }
    }
    r
}

pub async fn heartbeat(ctx: &Ctx<'_>, req: HeartbeatRequest) -> HeartbeatResponse {
    let mut r = HeartbeatResponse::default();
    if req.group_id.is_empty() {
        r.error_code = INVALID_GROUP_ID;
    } else if let Some(code) = read_denied(ctx, "Heartbeat", req.group_id.0.as_str()) {
        r.error_code = code;
    } else if let Some(code) = not_coordinator(ctx, req.group_id.0.as_str()).await {
        r.error_code = code;
    } else if fenced(
        ctx,
        req.group_id.0.as_str(),
        req.group_instance_id.as_deref(),
        req.member_id.as_str(),
    ) {
        r.error_code = FENCED_INSTANCE_ID;
    } else if let Err(e) = ctx.shared.broker.heartbeat(
        req.group_id.0.as_str(),
        req.member_id.as_str(),
        req.generation_id,
    ) {
        r.error_code = code_for(
            ctx,
            &e,
            req.group_id.0.as_str(),
            req.group_instance_id.as_deref(),
            req.member_id.as_str(),
        );
    }
    r
}

pub async fn leave(ctx: &Ctx<'_>, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let group = req.group_id.0.as_str();
    let mut r = LeaveGroupResponse::default();
    if group.is_empty() {
        r.error_code = INVALID_GROUP_ID;
        return r;
    }
    if let Some(code) = read_denied(ctx, "LeaveGroup", group) {
        r.error_code = code;
        return r;
    }
    if let Some(code) = not_coordinator(ctx, group).await {
        r.error_code = code;
        return r;
    }
    if ctx.version < 3 {
        if let Err(e) = ctx.shared.broker.leave_group(group, req.member_id.as_str()) {
            r.error_code = codes::of(&e);
        }
        return r;
    }
    for m in req.members {
        let mut mr = MemberResponse::default();
        let instance = m
            .group_instance_id
            .as_ref()
            .map(|i| i.as_str())
            .filter(|i| !i.is_empty());
        let outcome = match instance {
            // KIP-345: by instance id; the member id may be empty (Kafka's tools leave that way).
            Some(i) => ctx
                .shared
                .broker
                .leave_group_instance(group, i, m.member_id.as_str())
                .map(|held| {
                    if !held {
                        mr.error_code = FENCED_INSTANCE_ID;
                    }
                }),
            None => ctx.shared.broker.leave_group(group, m.member_id.as_str()),
        };
        if let Err(e) = outcome {
            mr.error_code = codes::of(&e);
        }
        mr.member_id = m.member_id;
        mr.group_instance_id = m.group_instance_id;
        r.members.push(mr);
    }
    r
}
