//! The schema registry's authorization: THE table of its routes' ACL checks ([`TABLE`], copied
//! into `docs/security.md`, "Schema registry"; a test keeps them equal), the [`Caller`] the
//! handlers use for the checks that filter (lists, schema ids), and which routes change the
//! registry (each of those is an audit line, denied or not).
//!
//! The resource is busbar's `SUBJECT` type (the ACL name is the subject), mapped from
//! Confluent's registry operations: SUBJECT_READ is READ, SUBJECT_WRITE (register) WRITE,
//! SUBJECT_DELETE DELETE, SUBJECT_COMPATIBILITY_WRITE (`/config/{s}`, `/mode/{s}`) ALTER, and
//! GLOBAL_COMPATIBILITY_WRITE ALTER on the CLUSTER. SCHEMA_READ (`/schemas/ids/{id}`) is READ on
//! at least one subject holding the id, as Confluent's ACL authorizer decides it. A route
//! without a row is refused (deny by default). Decides nothing while authentication is off.

use crate::auth::Principal;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::Method;
use busbar_broker::auth::acl::{Operation, ResourceType, ANONYMOUS, CLUSTER_NAME};
use busbar_broker::Broker;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use Operation as O;

/// What a registry route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Credentials only: the route shows nothing of any subject.
    Authenticated,
    /// One of these operations on the SUBJECT of the `{subject}` path parameter.
    Subject(&'static [Operation]),
    /// This operation on the CLUSTER (the registry-wide config and mode).
    Cluster(Operation),
    /// The handler decides (a list shows only what the caller may see; a schema id needs READ
    /// on a subject holding it); the row's `handler` text says how.
    Handler,
}

/// One route's row.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub method: &'static str,
    /// The path as the registry routes it (under `/schema-registry` on the main API too).
    pub path: &'static str,
    pub need: Need,
    /// What the handler checks too (empty: nothing more); read by the docs table only.
    #[cfg_attr(not(test), allow(dead_code))]
    pub handler: &'static str,
    /// Whether the route changes the registry (an audit line per request, denied ones too).
    pub change: bool,
}

const READ: Need = Need::Subject(&[O::Read]);
const DESCRIBE: Need = Need::Subject(&[O::Describe]);
const WRITE: Need = Need::Subject(&[O::Write]);
const DELETE: Need = Need::Subject(&[O::Delete]);
const ALTER: Need = Need::Subject(&[O::Alter]);
/// A compatibility check changes nothing: a reader may ask, and so may a writer about to
/// register (Confluent files it under SUBJECT_WRITE).
const CHECK: Need = Need::Subject(&[O::Read, O::Write]);

const fn row(method: &'static str, path: &'static str, need: Need) -> Row {
    Row {
        method,
        path,
        need,
        handler: "",
        change: false,
    }
}

const fn change(method: &'static str, path: &'static str, need: Need) -> Row {
    Row {
        change: true,
        ..row(method, path, need)
    }
}

const fn also(method: &'static str, path: &'static str, need: Need, h: &'static str) -> Row {
    Row {
        handler: h,
        ..row(method, path, need)
    }
}

const ID: &str = "READ on a subject holding the id (soft-deleted versions count), else 403";
const ID_LIST: &str = "lists the subjects with READ; 403 when it holds none of them";
const REFS: &str = "READ on each subject its references name";
const VERSION: &str = "/subjects/{subject}/versions/{version}";

/// Every registry route's ACL check (method, path as routed, need, handler's checks, change).
pub const TABLE: &[Row] = &[
    row("GET", "/", Need::Authenticated),
    row("POST", "/", Need::Authenticated),
    row("GET", "/schemas/types", Need::Authenticated),
    row("GET", "/contexts", Need::Authenticated),
    also("GET", "/schemas/ids/{id}", Need::Handler, ID),
    also("GET", "/schemas/ids/{id}/schema", Need::Handler, ID),
    also("GET", "/schemas/ids/{id}/subjects", Need::Handler, ID_LIST),
    also("GET", "/schemas/ids/{id}/versions", Need::Handler, ID_LIST),
    also(
        "GET",
        "/subjects",
        Need::Handler,
        "lists the subjects with DESCRIBE",
    ),
    row("POST", "/subjects/{subject}", READ),
    change("DELETE", "/subjects/{subject}", DELETE),
    row("GET", "/subjects/{subject}/versions", READ),
    Row {
        handler: REFS,
        ..change("POST", "/subjects/{subject}/versions", WRITE)
    },
    row("GET", VERSION, READ),
    change("DELETE", VERSION, DELETE),
    row("GET", "/subjects/{subject}/versions/{version}/schema", READ),
    row(
        "GET",
        "/subjects/{subject}/versions/{version}/referencedby",
        READ,
    ),
    row("POST", "/compatibility/subjects/{subject}/versions", CHECK),
    row("POST", "/compatibility/subjects/{subject}/versions/", CHECK),
    row(
        "POST",
        "/compatibility/subjects/{subject}/versions/{version}",
        CHECK,
    ),
    row("GET", "/config", Need::Authenticated),
    change("PUT", "/config", Need::Cluster(O::Alter)),
    change("DELETE", "/config", Need::Cluster(O::Alter)),
    row("GET", "/config/{subject}", DESCRIBE),
    change("PUT", "/config/{subject}", ALTER),
    change("DELETE", "/config/{subject}", ALTER),
    row("GET", "/mode", Need::Authenticated),
    change("PUT", "/mode", Need::Cluster(O::Alter)),
    change("DELETE", "/mode", Need::Cluster(O::Alter)),
    row("GET", "/mode/{subject}", DESCRIBE),
    change("PUT", "/mode/{subject}", ALTER),
    change("DELETE", "/mode/{subject}", ALTER),
];

/// The row of `method` on the routed `path`, if any; `HEAD` has the row of `GET`.
pub fn row_of(method: &Method, path: &str) -> Option<&'static Row> {
    let method = match *method {
        Method::HEAD => "GET",
        ref m => m.as_str(),
    };
    TABLE.iter().find(|r| r.path == path && r.method == method)
}

/// Operation names joined by " or ".
fn ops(list: &[Operation]) -> String {
    let names: Vec<&str> = list.iter().map(|o| o.name()).collect();
    names.join(" or ")
}

/// What `need` needs, in words (the table in `docs/security.md`).
#[cfg(test)]
fn needs(need: Need) -> String {
    match need {
        Need::Authenticated => "credentials only".into(),
        Need::Handler => "see the next column".into(),
        Need::Subject(list) => format!("{} on SUBJECT `{{subject}}`", ops(list)),
        Need::Cluster(op) => format!("{} on CLUSTER", op.name()),
    }
}

#[cfg(test)]
/// [`TABLE`] as the Markdown table `docs/security.md` shows (a test keeps them equal).
pub fn markdown() -> String {
    let mut out =
        String::from("| Route | Needs | Checked by the handler | Audited |\n|---|---|---|---|\n");
    for r in TABLE {
        let h = match r.handler {
            "" => "-",
            h => h,
        };
        let audited = if r.change { "yes" } else { "-" };
        out += &format!(
            "| `{} {}` | {} | {h} | {audited} |\n",
            r.method,
            r.path,
            needs(r.need)
        );
    }
    out
}

/// The resource a row's check names: `SUBJECT:<subject>` or `CLUSTER:kafka-cluster` (audit
/// lines); `None` for rows naming neither.
pub fn resource(need: Need, subject: Option<&str>) -> Option<String> {
    match (need, subject) {
        (Need::Cluster(_), _) => Some(format!("CLUSTER:{CLUSTER_NAME}")),
        (_, Some(s)) => Some(format!("SUBJECT:{s}")),
        _ => None,
    }
}

/// Who asks: the authenticated user (`None` while unauthenticated or auth is off) and address.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: Option<String>,
    pub host: IpAddr,
}

impl Caller {
    /// The caller of a request, from what `auth::check` and the listener put in it.
    pub fn of(ext: &axum::http::Extensions) -> Self {
        Self {
            user: ext.get::<Principal>().map(|p| p.0.clone()),
            host: ext
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.ip()),
        }
    }

    /// `User:<name>` (`User:ANONYMOUS` without one).
    pub fn principal(&self) -> String {
        format!("User:{}", self.user.as_deref().unwrap_or(ANONYMOUS))
    }

    /// Whether the caller may do `op` on `name` of type `ty` (everything while auth is off).
    pub fn may(&self, broker: &Broker, op: Operation, ty: ResourceType, name: &str) -> bool {
        let user = self.user.as_deref();
        (broker.auth().authorize(user, self.host, op, ty, name)).allowed()
    }

    /// Whether the caller may do `op` on subject `subject`.
    pub fn may_subject(&self, broker: &Broker, op: Operation, subject: &str) -> bool {
        self.may(broker, op, ResourceType::Subject, subject)
    }

    /// `Err(message)` unless the caller may do one of `list` on `name` of type `ty`.
    pub fn require(
        &self,
        broker: &Broker,
        list: &[Operation],
        ty: ResourceType,
        name: &str,
    ) -> Result<(), String> {
        if list.iter().any(|&op| self.may(broker, op, ty, name)) {
            return Ok(());
        }
        let what = match ty {
            ResourceType::Cluster => "the CLUSTER".to_string(),
            _ => format!("{} {}", ty.name(), busbar_broker::auth::acl::shown(name)),
        };
        Err(format!(
            "{} may not {} {what} (no ACL allows it)",
            self.principal(),
            ops(list)
        ))
    }

    /// `Err(message)` unless the caller may do what `need` asks on `subject` (the path's, if
    /// any). [`Need::Handler`] and [`Need::Authenticated`] pass: the handler checks, or nothing
    /// is to be checked.
    pub fn check(&self, broker: &Broker, need: Need, subject: Option<&str>) -> Result<(), String> {
        match need {
            Need::Authenticated | Need::Handler => Ok(()),
            Need::Cluster(op) => self.require(broker, &[op], ResourceType::Cluster, CLUSTER_NAME),
            Need::Subject(list) => {
                self.require(broker, list, ResourceType::Subject, subject.unwrap_or(""))
            }
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&parts.extensions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_security_md_shows_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/security.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let want = markdown();
        assert!(
            doc.contains(&want),
            "docs/security.md lacks the table of schema_registry::access::TABLE; paste:\n{want}"
        );
    }

    #[test]
    fn rows_are_unique_and_subject_rows_have_a_subject() {
        for (i, r) in TABLE.iter().enumerate() {
            assert!(
                !TABLE[..i]
                    .iter()
                    .any(|o| o.method == r.method && o.path == r.path),
                "{} {} twice",
                r.method,
                r.path
            );
            if let Need::Subject(_) = r.need {
                assert!(r.path.contains("{subject}"), "{} {}", r.method, r.path);
            }
            if r.need == Need::Handler {
                assert!(!r.handler.is_empty(), "{} {} says how", r.method, r.path);
            }
            // Every change is audited; nothing that only reads is.
            let reads = r.method == "GET"
                || r.path == "/"
                || r.path.starts_with("/compatibility/")
                || (r.method == "POST" && r.path == "/subjects/{subject}");
            assert_eq!(r.change, !reads, "{} {}", r.method, r.path);
        }
    }

    #[test]
    fn head_has_the_row_of_get_and_unknown_routes_have_none() {
        let head = row_of(&Method::HEAD, "/subjects").unwrap();
        assert_eq!(head.method, "GET");
        assert!(row_of(&Method::PATCH, "/subjects").is_none());
        assert!(row_of(&Method::GET, "/nowhere").is_none());
    }
}
