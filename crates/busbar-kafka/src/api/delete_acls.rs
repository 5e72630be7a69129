//! DeleteAcls (31): each filter deletes every ACL passing it (see `describe_acls` for filters) in
//! one durable write and answers those deleted; a bad filter answers INVALID_REQUEST (42) and a
//! failed write its error, deleting nothing of that filter. Needs ALTER on the cluster (else
//! CLUSTER_AUTHORIZATION_FAILED, 31, for every filter).

use super::describe_acls::{filter, RawFilter};
use super::{sb, Ctx};
use crate::authz::{Authz, Op, CLUSTER_DENIED};
use crate::codes;
use busbar_broker::auth::acl::AclBinding;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};

fn failed(code: i16, message: String) -> DeleteAclsFilterResult {
    let mut r = DeleteAclsFilterResult::default();
    r.error_code = code;
    r.error_message = Some(sb(message));
    r
}

async fn delete_one(ctx: &Ctx<'_>, f: &DeleteAclsFilter) -> DeleteAclsFilterResult {
    let raw = RawFilter {
        resource_type: f.resource_type_filter,
        resource_name: f.resource_name_filter.as_ref(),
        pattern: f.pattern_type_filter,
        principal: f.principal_filter.as_ref(),
        host: f.host_filter.as_ref(),
        operation: f.operation,
        permission: f.permission_type,
    };
    let parsed = match filter(&raw) {
        Ok(p) => p,
        Err(why) => return failed(codes::INVALID_REQUEST, why),
    };
    let store = ctx.shared.broker.auth().acls();
    if store.snapshot().matching(&parsed).next().is_none() {
        return deleted(Vec::new()); // nothing to delete: no write
    }
    match store.delete(&parsed).await {
        Ok(gone) => deleted(gone),
        Err(e) => failed(codes::of_auth(&e), e.to_string()),
    }
}

/// The answer of a filter that deleted `gone`.
fn deleted(gone: Vec<AclBinding>) -> DeleteAclsFilterResult {
    let mut r = DeleteAclsFilterResult::default();
    r.error_message = None;
    r.matching_acls = gone
        .into_iter()
        .map(|b| {
            let mut m = DeleteAclsMatchingAcl::default();
            m.resource_type = b.resource_type.code();
            m.resource_name = sb(b.resource_name);
            m.pattern_type = b.pattern.code();
            m.principal = sb(b.principal);
            m.host = sb(b.host);
            m.operation = b.operation.code();
            m.permission_type = b.permission.code();
            m.error_message = None;
            m
        })
        .collect();
    r
}

pub async fn handle(ctx: &Ctx<'_>, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let mut r = DeleteAclsResponse::default();
    if !Authz::new(ctx, "DeleteAcls").cluster(Op::Alter) {
        let why = "ALTER on the cluster is needed to delete ACLs";
        r.filter_results = req
            .filters
            .iter()
            .map(|_| failed(CLUSTER_DENIED, why.into()))
            .collect();
        return r;
    }
    for f in &req.filters {
        r.filter_results.push(delete_one(ctx, f).await);
    }
    r
}
