//! ACL routes (Kafka's DescribeAcls, CreateAcls and DeleteAcls over HTTP): `GET /acls` lists
//! the ACLs passing a filter given as query parameters, `POST /acls` adds one ACL or a list (all
//! checked first: one bad ACL refuses the request and changes nothing), `DELETE /acls` deletes
//! those passing a filter (at least one parameter is required, so a bare DELETE cannot wipe
//! every ACL). Names are Kafka's (`TOPIC`, `READ`, `PREFIXED`, `ALLOW`), case-insensitive.
//! Who may call them is in `authz.rs` (DESCRIBE / ALTER on the cluster).
//!
//! While `auth.enabled` is false no ACL is enforced, so every route answers 409
//! `security_disabled` and changes nothing (Kafka's ACL APIs answer SECURITY_DISABLED, 54, then):
//! no one can believe an ACL protects anything, nor store ACLs that would start to apply, unseen,
//! once authentication is turned on.

use crate::body;
use crate::error::{ApiError, ApiResult};
use crate::users::error;
use crate::App;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use busbar_broker::auth::acl::{
    AclBinding, AclFilter, Operation, PatternFilter, PatternType, Permission, ResourceType,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use utoipa::ToSchema;

/// An ACL as the API shows and takes it.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Acl {
    /// `TOPIC`, `GROUP`, `CLUSTER`, `TRANSACTIONAL_ID`, `SUBSCRIPTION` or `SUBJECT`.
    resource_type: String,
    /// The name (`*`: every resource of the type, when LITERAL); `kafka-cluster` for CLUSTER.
    resource_name: String,
    /// `LITERAL` (default) or `PREFIXED`.
    #[serde(default = "literal")]
    pattern_type: String,
    /// `User:<name>`, or `User:*` for everyone.
    principal: String,
    /// `*` (default) or one IP address.
    #[serde(default = "any_host")]
    host: String,
    /// `ALL`, `READ`, `WRITE`, `CREATE`, `DELETE`, `ALTER`, `DESCRIBE`, `CLUSTER_ACTION`,
    /// `DESCRIBE_CONFIGS`, `ALTER_CONFIGS` or `IDEMPOTENT_WRITE`.
    operation: String,
    /// `ALLOW` or `DENY`.
    permission: String,
}

fn literal() -> String {
    PatternType::Literal.name().into()
}

fn any_host() -> String {
    "*".into()
}

/// `GET /acls`, `DELETE /acls` and `POST /acls`'s answers.
#[derive(Serialize, ToSchema)]
pub struct AclList {
    acls: Vec<Acl>,
}

/// `POST /acls`'s body: one ACL or a list.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum AclCreate {
    One(Acl),
    Many(Vec<Acl>),
}

fn view(b: &AclBinding) -> Acl {
    Acl {
        resource_type: b.resource_type.name().into(),
        resource_name: b.resource_name.clone(),
        pattern_type: b.pattern.name().into(),
        principal: b.principal.clone(),
        host: b.host.clone(),
        operation: b.operation.name().into(),
        permission: b.permission.name().into(),
    }
}

/// 409 `security_disabled` while authentication (and so authorization) is off.
fn require_security(app: &App) -> ApiResult<()> {
    if app.broker.auth().enabled() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "security_disabled",
        "ACLs are not in use: auth.enabled is false on this server, so nothing is checked; \
         turn authentication on to manage ACLs",
    ))
}

const DISABLED: &str = "auth.enabled is false: ACLs are not in use (code `security_disabled`); \
    nothing changed";

fn parsed<T>(field: &str, v: &str, f: impl Fn(&str) -> Option<T>) -> ApiResult<T> {
    f(v).ok_or_else(|| ApiError::bad_request(format!("{field}: unknown value {v:?}")))
}

fn binding(a: Acl, at: usize) -> ApiResult<AclBinding> {
    let b = AclBinding {
        resource_type: parsed("resource_type", &a.resource_type, ResourceType::of_name)?,
        resource_name: a.resource_name,
        pattern: parsed("pattern_type", &a.pattern_type, PatternType::of_name)?,
        principal: a.principal,
        host: a.host,
        operation: parsed("operation", &a.operation, Operation::of_name)?,
        permission: parsed("permission", &a.permission, Permission::of_name)?,
    };
    b.validate()
        .map_err(|e| ApiError::bad_request(format!("acls[{at}]: {e}")))?;
    Ok(b)
}

/// `ANY` (or absent) is no constraint.
fn any_or<T>(
    q: &HashMap<String, String>,
    k: &str,
    f: impl Fn(&str) -> Option<T>,
) -> ApiResult<Option<T>> {
    match q.get(k) {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("ANY") => Ok(None),
        Some(v) => parsed(k, v, f).map(Some),
    }
}

const FILTER_KEYS: [&str; 7] = [
    "resource_type",
    "resource_name",
    "pattern_type",
    "principal",
    "host",
    "operation",
    "permission",
];

/// The filter of a query (each parameter absent or `ANY` matches every value; `pattern_type`
/// also takes `MATCH`: every ACL that applies to `resource_name`).
fn filter(q: &HashMap<String, String>) -> ApiResult<AclFilter> {
    if let Some(k) = q.keys().find(|k| !FILTER_KEYS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown parameter {k:?}; filters are {}",
            FILTER_KEYS.join(", ")
        )));
    }
    let pattern = any_or(q, "pattern_type", |p| match p {
        _ if p.eq_ignore_ascii_case("MATCH") => Some(PatternFilter::Match),
        _ => PatternType::of_name(p).map(PatternFilter::Exact),
    })?;
    let principal = q.get("principal").cloned();
    if principal.as_ref().is_some_and(|p| !p.starts_with("User:")) {
        return Err(ApiError::bad_request("principal: must be User:<name>"));
    }
    let host = q.get("host").cloned();
    if host
        .as_ref()
        .is_some_and(|h| h != "*" && h.parse::<IpAddr>().is_err())
    {
        return Err(ApiError::bad_request("host: must be * or an IP address"));
    }
    Ok(AclFilter {
        resource_type: any_or(q, "resource_type", ResourceType::of_name)?,
        resource_name: q.get("resource_name").cloned(),
        pattern,
        principal,
        host,
        operation: any_or(q, "operation", Operation::of_name)?,
        permission: any_or(q, "permission", Permission::of_name)?,
    })
}

/// Lists the ACLs passing the filter.
#[utoipa::path(get, path = "/acls", operation_id = "list_acls", tag = "acls",
    params(
        ("resource_type" = Option<String>, Query, description = "TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID, SUBSCRIPTION, SUBJECT or ANY"),
        ("resource_name" = Option<String>, Query),
        ("pattern_type" = Option<String>, Query, description = "LITERAL, PREFIXED, MATCH (every ACL that applies to resource_name) or ANY"),
        ("principal" = Option<String>, Query, description = "User:<name>"),
        ("host" = Option<String>, Query, description = "* or an IP address"),
        ("operation" = Option<String>, Query), ("permission" = Option<String>, Query)),
    responses(
        (status = 200, description = "The ACLs", body = AclList),
        (status = 400, description = "Bad filter parameter (named), or an answer over `auth.acls_answer_bytes_max`"),
        (status = 409, description = DISABLED)))]
pub async fn list(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<AclList>> {
    require_security(&app)?;
    let f = filter(&q)?;
    let auth = app.broker.auth();
    let set = auth.acls().snapshot();
    let found = set
        .matching_within(&f, auth.config().acls_answer_bytes_max)
        .map_err(|too_big| ApiError::bad_request(too_big.to_string()))?;
    let acls = found.into_iter().map(view).collect();
    Ok(Json(AclList { acls }))
}

/// Adds ACLs (one object or a list); those that exist already are kept.
#[utoipa::path(post, path = "/acls", operation_id = "create_acls", tag = "acls",
    request_body = AclCreate, responses(
        (status = 201, description = "Every ACL given now exists", body = AclList),
        (status = 400, description = "A bad ACL (named) or more than auth.acls_max; nothing changed"),
        (status = 409, description = DISABLED),
        (status = 413, description = "Body over `http.json_bytes_max`"),
        (status = 415, description = "Not application/json"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<AclList>)> {
    require_security(&app)?;
    let given: AclCreate = body::json_request(&headers, body, app.config.json_bytes_max).await?;
    let given = match given {
        AclCreate::One(a) => vec![a],
        AclCreate::Many(l) => l,
    };
    if given.is_empty() {
        return Err(ApiError::bad_request("no ACL given"));
    }
    let acls: Vec<AclBinding> = (given.into_iter().enumerate())
        .map(|(i, a)| binding(a, i))
        .collect::<ApiResult<_>>()?;
    app.broker
        .auth()
        .acls()
        .create(acls.clone())
        .await
        .map_err(error)?;
    let acls = acls.iter().map(view).collect();
    Ok((StatusCode::CREATED, Json(AclList { acls })))
}

/// Deletes the ACLs passing the filter (at least one parameter; `ANY` matches every value).
#[utoipa::path(delete, path = "/acls", operation_id = "delete_acls", tag = "acls",
    params(
        ("resource_type" = Option<String>, Query), ("resource_name" = Option<String>, Query),
        ("pattern_type" = Option<String>, Query), ("principal" = Option<String>, Query),
        ("host" = Option<String>, Query), ("operation" = Option<String>, Query),
        ("permission" = Option<String>, Query)),
    responses(
        (status = 200, description = "The ACLs deleted", body = AclList),
        (status = 400, description = "Bad or no filter parameter; nothing changed"),
        (status = 409, description = DISABLED),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn delete(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<AclList>> {
    require_security(&app)?;
    if q.is_empty() {
        return Err(ApiError::bad_request(
            "give at least one filter parameter (resource_type=ANY matches every ACL)",
        ));
    }
    let f = filter(&q)?;
    let gone = app.broker.auth().acls().delete(&f).await.map_err(error)?;
    let acls = gone.iter().map(view).collect();
    Ok(Json(AclList { acls }))
}
