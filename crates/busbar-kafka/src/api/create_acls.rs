//! CreateAcls (30): each creation is checked on its own (a bad one answers INVALID_REQUEST, 42,
//! with the reason: unknown codes, ANY/MATCH where a value is needed, a principal not `User:`, a
//! host neither `*` nor an IP address); the valid ones are stored in one durable write, so a
//! failed write answers its error for each of them and stores none. Needs ALTER on the cluster
//! (else CLUSTER_AUTHORIZATION_FAILED, 31, for every creation).

use super::{sb, Ctx};
use crate::authz::{
    acls_disabled, Authz, Op, CLUSTER_DENIED, SECURITY_DISABLED, SECURITY_DISABLED_WHY,
};
use crate::codes;
use busbar_broker::auth::acl::{AclBinding, Operation, PatternType, Permission, ResourceType};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};

fn need<T>(v: i8, what: &str, of: impl Fn(i8) -> Option<T>) -> Result<T, String> {
    of(v).ok_or_else(|| format!("{what} {v} is not valid in an ACL"))
}

/// The ACL a creation asks for, or why it is invalid.
fn binding(c: &AclCreation) -> Result<AclBinding, String> {
    let b = AclBinding {
        resource_type: need(c.resource_type, "resource type", ResourceType::of_code)?,
        resource_name: c.resource_name.as_str().to_string(),
        pattern: need(
            c.resource_pattern_type,
            "pattern type",
            PatternType::of_code,
        )?,
        principal: c.principal.as_str().to_string(),
        host: c.host.as_str().to_string(),
        operation: need(c.operation, "operation", Operation::of_code)?,
        permission: need(c.permission_type, "permission type", Permission::of_code)?,
    };
    b.validate()?;
    Ok(b)
}

fn result(code: i16, message: Option<String>) -> AclCreationResult {
    let mut r = AclCreationResult::default();
    r.error_code = code;
    r.error_message = message.map(sb);
    r
}

pub async fn handle(ctx: &Ctx<'_>, req: CreateAclsRequest) -> CreateAclsResponse {
    let mut r = CreateAclsResponse::default();
    if acls_disabled(ctx) {
        let why = SECURITY_DISABLED_WHY;
        r.results = req
            .creations
            .iter()
            .map(|_| result(SECURITY_DISABLED, Some(why.into())))
            .collect();
        return r;
    }
    if !Authz::new(ctx, "CreateAcls").cluster(Op::Alter) {
        let why = "ALTER on the cluster is needed to create ACLs";
        r.results = req
            .creations
            .iter()
            .map(|_| result(CLUSTER_DENIED, Some(why.into())))
            .collect();
        return r;
    }
    let parsed: Vec<Result<AclBinding, String>> = req.creations.iter().map(binding).collect();
    let valid: Vec<AclBinding> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
    let stored = if valid.is_empty() {
        Ok(())
    } else {
        ctx.shared.broker.auth().acls().create(valid).await
    };
    let failed = stored
        .err()
        .map(|e| (codes::of_auth(&e), Some(e.to_string())));
    r.results = parsed
        .into_iter()
        .map(|p| match (p, &failed) {
            (Err(why), _) => result(codes::INVALID_REQUEST, Some(why)),
            (Ok(_), Some((code, msg))) => result(*code, msg.clone()),
            (Ok(_), None) => result(codes::NONE, None),
        })
        .collect();
    r
}
