//! DeleteAcls (31): each filter deletes every ACL passing it (see `describe_acls` for filters) and
//! answers those deleted; the valid filters of a request delete in one durable write (all or
//! nothing: over one batch of the ACL log is refused with INVALID_REQUEST, 42). A bad filter
//! answers INVALID_REQUEST and a failed write its error for every valid filter. Needs ALTER on the cluster (else
//! CLUSTER_AUTHORIZATION_FAILED, 31, for every filter).

use super::describe_acls::{filter, RawFilter};
use super::{sb, Ctx};
use crate::authz::{
    acls_disabled, Authz, Op, CLUSTER_DENIED, SECURITY_DISABLED, SECURITY_DISABLED_WHY,
};
use crate::codes;
use busbar_broker::auth::acl::{AclBinding, AclFilter};
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

fn parse(f: &DeleteAclsFilter) -> Result<AclFilter, String> {
    filter(&RawFilter {
        resource_type: f.resource_type_filter,
        resource_name: f.resource_name_filter.as_ref(),
        pattern: f.pattern_type_filter,
        principal: f.principal_filter.as_ref(),
        host: f.host_filter.as_ref(),
        operation: f.operation,
        permission: f.permission_type,
    })
}

/// Deletes what the valid filters match in one write; answers per filter (in order).
async fn delete_all(ctx: &Ctx<'_>, filters: &[DeleteAclsFilter]) -> Vec<DeleteAclsFilterResult> {
    let parsed: Vec<Result<AclFilter, String>> = filters.iter().map(parse).collect();
    let valid: Vec<AclFilter> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
    let store = ctx.shared.broker.auth().acls();
    let snapshot = store.snapshot();
    let outcome = if valid.iter().all(|f| snapshot.matching(f).next().is_none()) {
        Ok(vec![Vec::new(); valid.len()]) // nothing to delete: no write
    } else {
        store.delete_each(&valid).await
    };
    let mut gone = match outcome {
        Ok(per) => Ok(per.into_iter()),
        Err(e) => Err((codes::of_auth(&e), e.to_string())),
    };
    parsed
        .into_iter()
        .map(|p| match (p, &mut gone) {
            (Err(why), _) => failed(codes::INVALID_REQUEST, why),
            (Ok(_), Ok(per)) => deleted(per.next().unwrap_or_default()),
            (Ok(_), Err((code, why))) => failed(*code, why.clone()),
        })
        .collect()
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
    if acls_disabled(ctx) {
        r.filter_results = req
            .filters
            .iter()
            .map(|_| failed(SECURITY_DISABLED, SECURITY_DISABLED_WHY.into()))
            .collect();
        return r;
    }
    if !Authz::new(ctx, "DeleteAcls").cluster(Op::Alter) {
        let why = "ALTER on the cluster is needed to delete ACLs";
        r.filter_results = req
            .filters
            .iter()
            .map(|_| failed(CLUSTER_DENIED, why.into()))
            .collect();
        return r;
    }
    r.filter_results = delete_all(ctx, &req.filters).await;
    r
}
