//! HTTP authorization: THE table of every route's ACL check ([`TABLE`]), the middleware that
//! applies it ([`enforce`]) and the [`Caller`] extractor handlers use for the checks whose
//! resource name is in the body (or that filter a list). Each route maps to the resource type and
//! operation of its Kafka counterpart (publish = WRITE topic, read = READ topic, ...); the table
//! is copied into `docs/security.md` ("HTTP and the bus"). A route without a row is refused (403):
//! deny by default, and a test walks the OpenAPI document for routes without one.
//!
//! `HEAD` follows the `GET` row of the same path (axum answers HEAD with the GET handler, body
//! dropped), so it needs exactly what GET needs.
//!
//! The principal is the authenticated user (`auth.rs`'s [`Principal`]), the host the peer's IP
//! address. While authentication is off everything is allowed, as before.

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::App;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use busbar_broker::auth::acl::{Operation, ResourceType, ANONYMOUS, CLUSTER_NAME};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use Operation as O;
use ResourceType as T;

/// Where a checked resource's name comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    /// The path parameter of this name (`{topic}`).
    Path(&'static str),
    /// The cluster (`kafka-cluster`).
    Cluster,
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing, not even credentials (probes).
    Open,
    /// Credentials only: the route touches no resource.
    Authenticated,
    /// `op` on the resource of type `ty` named by `name`, checked before the handler runs.
    Check(ResourceType, Operation, Name),
    /// The handler decides (the name is in the body, or a list shows only what the principal
    /// may DESCRIBE); the row's `handler` text says how.
    Handler,
}

/// One route's row.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    /// What the handler checks too (empty: nothing more).
    pub handler: &'static str,
}

const fn row(method: &'static str, path: &'static str, access: Access) -> Row {
    Row {
        method,
        path,
        access,
        handler: "",
    }
}

const fn also(method: &'static str, path: &'static str, access: Access, h: &'static str) -> Row {
    Row {
        method,
        path,
        access,
        handler: h,
    }
}

const fn on(ty: ResourceType, op: Operation, param: &'static str) -> Access {
    Access::Check(ty, op, Name::Path(param))
}

const fn cluster(op: Operation) -> Access {
    Access::Check(T::Cluster, op, Name::Cluster)
}

const TOPIC_ALTER: &str = "ALTER on the topic to add partitions (Kafka's CreatePartitions), \
    ALTER_CONFIGS on it to change configs; both when the body does both";
const GROUP_TOPICS: &str = "READ on each topic it names";
const GROUP_OFFSETS: &str = "shows the offsets and assignments of the topics with DESCRIBE only";
const SUB_SPEC: &str = "READ on each source, WRITE on the target topic and the dead-letter topic";

/// Every route's ACL check (method, path as routed, access, what the handler checks too).
pub const TABLE: &[Row] = &[
    row("GET", "/healthz", Access::Open),
    row("GET", "/readyz", Access::Open),
    row("GET", "/openapi.json", Access::Authenticated),
    row("POST", "/rules/test", Access::Authenticated),
    also(
        "GET",
        "/metrics",
        Access::Authenticated,
        "open (no credentials) while `auth.metrics_public`, the default",
    ),
    also(
        "POST",
        "/topics",
        Access::Handler,
        "CREATE on CLUSTER or on the topic named",
    ),
    also(
        "GET",
        "/topics",
        Access::Handler,
        "lists the topics with DESCRIBE",
    ),
    row("GET", "/topics/{topic}", on(T::Topic, O::Describe, "topic")),
    also("PATCH", "/topics/{topic}", Access::Handler, TOPIC_ALTER),
    row(
        "DELETE",
        "/topics/{topic}",
        on(T::Topic, O::Delete, "topic"),
    ),
    row(
        "POST",
        "/topics/{topic}/events",
        on(T::Topic, O::Write, "topic"),
    ),
    row(
        "GET",
        "/topics/{topic}/partitions/{partition}/events",
        on(T::Topic, O::Read, "topic"),
    ),
    row(
        "GET",
        "/topics/{topic}/partitions/{partition}/stream",
        on(T::Topic, O::Read, "topic"),
    ),
    row(
        "POST",
        "/topics/{topic}/partitions/{partition}/delete-records",
        on(T::Topic, O::Delete, "topic"),
    ),
    also(
        "GET",
        "/groups",
        Access::Handler,
        "lists the groups with DESCRIBE",
    ),
    also(
        "GET",
        "/groups/{group}",
        on(T::Group, O::Describe, "group"),
        GROUP_OFFSETS,
    ),
    row(
        "DELETE",
        "/groups/{group}",
        on(T::Group, O::Delete, "group"),
    ),
    also(
        "POST",
        "/groups/{group}/offsets/reset",
        on(T::Group, O::Read, "group"),
        "READ on the topic",
    ),
    also(
        "POST",
        "/groups/{group}/consumers",
        on(T::Group, O::Read, "group"),
        GROUP_TOPICS,
    ),
    row(
        "GET",
        "/groups/{group}/consumers/{consumer}",
        on(T::Group, O::Read, "group"),
    ),
    row(
        "DELETE",
        "/groups/{group}/consumers/{consumer}",
        on(T::Group, O::Read, "group"),
    ),
    row(
        "GET",
        "/groups/{group}/consumers/{consumer}/events",
        on(T::Group, O::Read, "group"),
    ),
    row(
        "POST",
        "/groups/{group}/consumers/{consumer}/commit",
        on(T::Group, O::Read, "group"),
    ),
    also(
        "GET",
        "/groups/{group}/stream",
        on(T::Group, O::Read, "group"),
        GROUP_TOPICS,
    ),
    also(
        "POST",
        "/subscriptions",
        Access::Handler,
        "CREATE on the subscription named; READ on each source, WRITE on the target topic and \
         the dead-letter topic",
    ),
    also(
        "GET",
        "/subscriptions",
        Access::Handler,
        "lists the subscriptions with DESCRIBE",
    ),
    row(
        "GET",
        "/subscriptions/{name}",
        on(T::Subscription, O::Describe, "name"),
    ),
    also(
        "PUT",
        "/subscriptions/{name}",
        on(T::Subscription, O::Alter, "name"),
        SUB_SPEC,
    ),
    also(
        "PATCH",
        "/subscriptions/{name}",
        on(T::Subscription, O::Alter, "name"),
        SUB_SPEC,
    ),
    row(
        "DELETE",
        "/subscriptions/{name}",
        on(T::Subscription, O::Delete, "name"),
    ),
    row(
        "POST",
        "/subscriptions/{name}/pause",
        on(T::Subscription, O::Alter, "name"),
    ),
    row(
        "POST",
        "/subscriptions/{name}/resume",
        on(T::Subscription, O::Alter, "name"),
    ),
    row(
        "POST",
        "/subscriptions/{name}/reset",
        on(T::Subscription, O::Alter, "name"),
    ),
    row(
        "POST",
        "/subscriptions/{name}/replays",
        on(T::Subscription, O::Alter, "name"),
    ),
    row(
        "GET",
        "/subscriptions/{name}/replays",
        on(T::Subscription, O::Describe, "name"),
    ),
    row(
        "GET",
        "/subscriptions/{name}/replays/{replay}",
        on(T::Subscription, O::Describe, "name"),
    ),
    row(
        "DELETE",
        "/subscriptions/{name}/replays/{replay}",
        on(T::Subscription, O::Alter, "name"),
    ),
    row(
        "GET",
        "/dead-letters/{topic}",
        on(T::Topic, O::Read, "topic"),
    ),
    also(
        "POST",
        "/dead-letters/{topic}/redrive",
        on(T::Topic, O::Read, "topic"),
        "ALTER on the subscription named in the body (on every subscription, a literal `*` \
         ACL, without one)",
    ),
    row("POST", "/users", cluster(O::Alter)),
    row("GET", "/users", cluster(O::Describe)),
    row("DELETE", "/users/{name}", cluster(O::Alter)),
    also(
        "POST",
        "/tokens",
        Access::Handler,
        "own tokens always; another user's: ALTER on CLUSTER",
    ),
    also(
        "GET",
        "/tokens",
        Access::Handler,
        "own tokens always; another user's: DESCRIBE on CLUSTER",
    ),
    also(
        "DELETE",
        "/tokens/{name}",
        Access::Handler,
        "own tokens always; another user's: ALTER on CLUSTER",
    ),
    row("GET", "/acls", cluster(O::Describe)),
    row("POST", "/acls", cluster(O::Alter)),
    row("DELETE", "/acls", cluster(O::Alter)),
    row("GET", "/quotas", cluster(O::DescribeConfigs)),
    row("PUT", "/quotas", cluster(O::AlterConfigs)),
    row("DELETE", "/quotas", cluster(O::AlterConfigs)),
];

/// The row of `method` on the routed `path`, if any; `HEAD` has the row of `GET`.
pub fn row_of(method: &Method, path: &str) -> Option<&'static Row> {
    let method = match *method {
        Method::HEAD => Method::GET,
        ref m => m.clone(),
    };
    TABLE
        .iter()
        .find(|r| r.path == path && r.method == method.as_str())
}

/// What `access` needs, in words (the table in `docs/security.md`).
fn needs(access: Access) -> String {
    match access {
        Access::Open => "nothing (no credentials)".into(),
        Access::Authenticated => "credentials only".into(),
        Access::Handler => "see the next column".into(),
        Access::Check(ty, op, Name::Cluster) => format!("{} on {}", op.name(), ty.name()),
        Access::Check(ty, op, Name::Path(p)) => format!("{} on {} `{{{p}}}`", op.name(), ty.name()),
    }
}

#[cfg(test)]
/// [`TABLE`] as the Markdown table `docs/security.md` shows (a test keeps them equal).
pub fn markdown() -> String {
    let mut out = String::from("| Route | Needs | Checked by the handler |\n|---|---|---|\n");
    for r in TABLE {
        let route = format!("`{} {}`", r.method, r.path);
        let h = match r.handler {
            "" => "-",
            h => h,
        };
        out += &format!("| {route} | {} | {h} |\n", needs(r.access));
    }
    out
}

/// Documents the 403 of every route that checks an ACL, saying what it needs.
pub fn document(doc: &mut serde_json::Value) {
    for r in TABLE {
        if matches!(r.access, Access::Open | Access::Authenticated) {
            continue;
        }
        let why = match r.access {
            Access::Handler => r.handler.to_string(),
            a if r.handler.is_empty() => needs(a),
            a => format!("{}; {}", needs(a), r.handler),
        };
        let forbidden = serde_json::json!({
            "description": format!("While auth.enabled, an ACL does not allow it (code \
                `forbidden`). Needs: {why}"),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        });
        let op = &mut doc["paths"][r.path][r.method.to_ascii_lowercase()];
        if op.is_object() {
            op["responses"]["403"] = forbidden;
        }
    }
}

/// 403 `forbidden`.
pub fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

/// Who asks: the authenticated user (`None` while unauthenticated or auth is off) and address.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: Option<String>,
    pub host: IpAddr,
}

impl Caller {
    fn of(parts: &axum::http::Extensions) -> Self {
        Self {
            user: parts.get::<Principal>().map(|p| p.0.clone()),
            host: parts
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.ip()),
        }
    }

    /// Whether the caller may do `op` on `name` of type `ty`.
    pub fn may(&self, app: &App, op: Operation, ty: ResourceType, name: &str) -> bool {
        let auth = app.broker.auth();
        auth.authorize(self.user.as_deref(), self.host, op, ty, name)
            .allowed()
    }

    /// 403 unless the caller may do `op` on `name` of type `ty`.
    pub fn require(&self, app: &App, op: Operation, ty: ResourceType, name: &str) -> ApiResult<()> {
        if self.may(app, op, ty, name) {
            return Ok(());
        }
        let denials = &app.broker.metrics().acl_denials;
        denials.add(&[ty.name(), op.name()], 1);
        let who = self.user.as_deref().unwrap_or(ANONYMOUS);
        let what = match ty {
            T::Cluster => "the CLUSTER".to_string(),
            _ => format!("{} {name:?}", ty.name()),
        };
        Err(forbidden(format!(
            "User:{who} may not {} {what} (no ACL allows it)",
            op.name()
        )))
    }

    /// 403 unless the caller may do `op` on the cluster.
    pub fn require_cluster(&self, app: &App, op: Operation) -> ApiResult<()> {
        self.require(app, op, T::Cluster, CLUSTER_NAME)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&parts.extensions))
    }
}

/// The middleware (inside `auth::check`, on matched routes only): applies the route's row.
pub async fn enforce(State(app): State<App>, req: Request, next: Next) -> Response {
    // `/metrics` while auth.metrics_public, and the probes: anyone (H16f, auth.rs).
    if !app.broker.auth().enabled() || crate::auth::public(&app, req.uri().path()) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let path = parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let Some(row) = row_of(&parts.method, &path) else {
        return forbidden(format!(
            "{} {path} has no authorization rule; refused",
            parts.method
        ))
        .into_response();
    };
    if let Access::Check(ty, op, name) = row.access {
        let name = match name {
            Name::Cluster => CLUSTER_NAME.to_string(),
            Name::Path(p) => {
                match Path::<HashMap<String, String>>::from_request_parts(&mut parts, &app).await {
                    Ok(Path(mut params)) => params.remove(p).unwrap_or_default(),
                    Err(e) => return ApiError::bad_request(e.body_text()).into_response(),
                }
            }
        };
        if let Err(e) = Caller::of(&parts.extensions).require(&app, op, ty, &name) {
            return e.into_response();
        }
    }
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deny by default: a route served without a row answers 403 to everyone but super users.
    /// This fails for any documented (so served) operation without a row, and any row without
    /// one.
    #[test]
    fn every_route_has_exactly_one_row() {
        let doc = crate::openapi::document();
        let mut served = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                served.push((method.to_ascii_uppercase(), path.clone()));
            }
        }
        let missing: Vec<_> = (served.iter())
            .filter(|(m, p)| row_of(&m.parse().unwrap(), p).is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "routes without a row in authz::TABLE: {missing:?}"
        );
        let extra: Vec<_> = (TABLE.iter())
            .filter(|r| !served.contains(&(r.method.to_string(), r.path.to_string())))
            .map(|r| (r.method, r.path))
            .collect();
        assert!(extra.is_empty(), "rows of routes not served: {extra:?}");
    }

    #[test]
    fn head_has_the_row_of_get() {
        for path in ["/topics/{topic}", "/users", "/healthz"] {
            let head = row_of(&Method::HEAD, path).unwrap();
            assert_eq!(head.method, "GET");
            assert_eq!(head.access, row_of(&Method::GET, path).unwrap().access);
        }
        assert!(
            row_of(&Method::HEAD, "/tokens/{name}").is_none(),
            "no GET row"
        );
    }

    #[test]
    fn docs_security_md_shows_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/security.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let want = markdown();
        assert!(
            doc.contains(&want),
            "docs/security.md lacks the table of authz::TABLE; paste:\n{want}"
        );
    }

    #[test]
    fn rows_are_unique_and_name_path_parameters_of_their_path() {
        for (i, r) in TABLE.iter().enumerate() {
            assert!(
                !TABLE[..i]
                    .iter()
                    .any(|o| o.method == r.method && o.path == r.path),
                "{} {} twice",
                r.method,
                r.path
            );
            if let Access::Check(_, _, Name::Path(p)) = r.access {
                assert!(
                    r.path.contains(&format!("{{{p}}}")),
                    "{} {}",
                    r.method,
                    r.path
                );
            }
            if r.access == Access::Handler {
                assert!(!r.handler.is_empty(), "{} {} says how", r.method, r.path);
            }
        }
    }
}
