//! DescribeAcls (29): the ACLs passing one filter, grouped by resource pattern. Needs DESCRIBE on
//! the cluster (else CLUSTER_AUTHORIZATION_FAILED, 31). A filter is Kafka's: ANY (1) for any
//! value of a code, MATCH (2) for every pattern that applies to the named resource, null for any
//! name, principal or host. An unknown code or a type busbar has no ACLs for answers
//! INVALID_REQUEST (42) saying which; the same parsing serves DeleteAcls. A filter whose answer
//! would pass `auth.acls_answer_bytes_max` also answers INVALID_REQUEST, saying how many match.

use super::{sb, Ctx};
use crate::authz::{
    acls_disabled, Authz, Op, CLUSTER_DENIED, SECURITY_DISABLED, SECURITY_DISABLED_WHY,
};
use crate::codes;
use busbar_broker::auth::acl::{
    AclBinding, AclFilter, Operation, PatternFilter, PatternType, Permission, ResourceType,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;

/// Kafka's ANY in every ACL enum.
const ANY: i8 = 1;
/// Kafka's MATCH pattern type (filters only).
const MATCH: i8 = 2;

/// The raw fields of a DescribeAcls or DeleteAcls filter.
pub struct RawFilter<'a> {
    pub resource_type: i8,
    pub resource_name: Option<&'a StrBytes>,
    pub pattern: i8,
    pub principal: Option<&'a StrBytes>,
    pub host: Option<&'a StrBytes>,
    pub operation: i8,
    pub permission: i8,
}

fn code<T>(v: i8, what: &str, of: impl Fn(i8) -> Option<T>) -> Result<Option<T>, String> {
    if v == ANY {
        return Ok(None);
    }
    of(v).map(Some).ok_or_else(|| format!("unknown {what} {v}"))
}

/// The filter `raw` describes, or why it is invalid.
pub fn filter(raw: &RawFilter<'_>) -> Result<AclFilter, String> {
    let pattern = match raw.pattern {
        ANY => None,
        MATCH => Some(PatternFilter::Match),
        p => Some(PatternFilter::Exact(
            PatternType::of_code(p).ok_or_else(|| format!("unknown pattern type {p}"))?,
        )),
    };
    let s = |v: Option<&StrBytes>| v.map(|s| s.as_str().to_string());
    Ok(AclFilter {
        resource_type: code(raw.resource_type, "resource type", ResourceType::of_code)?,
        resource_name: s(raw.resource_name),
        pattern,
        principal: s(raw.principal),
        host: s(raw.host),
        operation: code(raw.operation, "operation", Operation::of_code)?,
        permission: code(raw.permission, "permission type", Permission::of_code)?,
    })
}

/// `acls` grouped by resource pattern, as DescribeAcls answers them.
fn grouped<'b>(acls: impl Iterator<Item = &'b AclBinding>) -> Vec<DescribeAclsResource> {
    let mut by: BTreeMap<(ResourceType, &str, PatternType), Vec<AclDescription>> = BTreeMap::new();
    for b in acls {
        let mut d = AclDescription::default();
        d.principal = sb(b.principal.clone());
        d.host = sb(b.host.clone());
        d.operation = b.operation.code();
        d.permission_type = b.permission.code();
        by.entry((b.resource_type, &b.resource_name, b.pattern))
            .or_default()
            .push(d);
    }
    by.into_iter()
        .map(|((ty, name, pattern), acls)| {
            let mut r = DescribeAclsResource::default();
            r.resource_type = ty.code();
            r.resource_name = sb(name);
            r.pattern_type = pattern.code();
            r.acls = acls;
            r
        })
        .collect()
}

pub fn handle(ctx: &Ctx<'_>, req: DescribeAclsRequest) -> DescribeAclsResponse {
    let mut r = DescribeAclsResponse::default();
    r.error_message = None;
    if acls_disabled(ctx) {
        r.error_code = SECURITY_DISABLED;
        r.error_message = Some(sb(SECURITY_DISABLED_WHY));
        return r;
    }
    if !Authz::new(ctx, "DescribeAcls").cluster(Op::Describe) {
        r.error_code = CLUSTER_DENIED;
        r.error_message = Some(sb("DESCRIBE on the cluster is needed to describe ACLs"));
        return r;
    }
    let raw = RawFilter {
        resource_type: req.resource_type_filter,
        resource_name: req.resource_name_filter.as_ref(),
        pattern: req.pattern_type_filter,
        principal: req.principal_filter.as_ref(),
        host: req.host_filter.as_ref(),
        operation: req.operation,
        permission: req.permission_type,
    };
    match filter(&raw) {
        Ok(f) => {
            let auth = ctx.shared.broker.auth();
            let acls = auth.acls().snapshot();
            match acls.matching_within(&f, auth.config().acls_answer_bytes_max) {
                Ok(found) => r.resources = grouped(found.into_iter()),
                Err(too_big) => {
                    r.error_code = codes::INVALID_REQUEST;
                    r.error_message = Some(sb(too_big.to_string()));
                }
            }
        }
        Err(why) => {
            r.error_code = codes::INVALID_REQUEST;
            r.error_message = Some(sb(why));
        }
    }
    r
}
