//! The HTTP API's audit lines (`busbar_broker::audit`): failed authentications (`auth.rs` calls
//! [`auth_failure`]) and, from one middleware ([`admin`]), every administrative request: any
//! method but GET/HEAD/OPTIONS on a route not in [`DATA_ROUTES`] (topics, configs, groups,
//! offsets, subscriptions, replays, redrives, users, tokens, and any route added later), with
//! `METHOD /route/{param}` as the operation, the request path as the resource and the answer's
//! status as the outcome. HTTP lines name the listener `http`.

use crate::auth::Principal;
use crate::App;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use busbar_broker::audit::{AuditEvent, AuditStats};
use std::fmt::Write;
use std::net::SocketAddr;

/// Non-GET routes that move data rather than administer: publishing, consuming, committing and
/// the rule dry run. Not audited.
pub const DATA_ROUTES: &[(&str, &str)] = &[
    ("POST", "/topics/{topic}/events"),
    ("POST", "/groups/{group}/consumers"),
    ("DELETE", "/groups/{group}/consumers/{consumer}"),
    ("POST", "/groups/{group}/consumers/{consumer}/commit"),
    ("POST", "/rules/test"),
];

/// Marks an answer that changed nothing (a `dry_run` preview): its audit line's operation ends
/// ` (dry run)`, so a preview is never read as the change.
#[derive(Clone, Copy)]
pub struct Preview;

/// The listener HTTP audit lines name.
pub const LISTENER: &str = "http";

fn peer(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// Whether `method` on the route `path` is audited as administrative.
pub fn is_admin(method: &Method, path: &str) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        && !DATA_ROUTES
            .iter()
            .any(|(m, p)| *m == method.as_str() && *p == path)
}

/// The middleware: records administrative requests with their status (runs inside `auth::check`,
/// so the principal is known; a request refused there is not an administrative change).
pub async fn admin(State(app): State<App>, req: Request, next: Next) -> Response {
    let audit = app.broker.audit();
    let Some(route) = req.extensions().get::<MatchedPath>().cloned() else {
        return next.run(req).await;
    };
    if !audit.enabled() || !is_admin(req.method(), route.as_str()) {
        return next.run(req).await;
    }
    let principal = match req.extensions().get::<Principal>() {
        Some(Principal(user)) => format!("User:{user}"),
        None => "User:ANONYMOUS".to_string(),
    };
    let mut operation = format!("{} {}", req.method(), route.as_str());
    let resource = req.uri().path().to_string();
    let peer = peer(&req);
    let resp = next.run(req).await;
    let status = resp.status();
    if resp.extensions().get::<Preview>().is_some() {
        operation.push_str(" (dry run)");
    }
    audit.record(AuditEvent {
        principal,
        peer,
        listener: LISTENER.into(),
        operation,
        resource,
        outcome: status.as_u16().to_string(),
        detail: None,
    });
    resp
}

/// Records a failed HTTP authentication of `req`: `user` as sent (empty for a token), `scheme`
/// `Basic` or `Bearer`, `why` the reason given (never the password or token).
pub fn auth_failure(app: &App, req: &Request, scheme: &'static str, user: &str, why: &str) {
    app.broker.metrics().auth_failures.add(&["http", scheme], 1);
    let audit = app.broker.audit();
    if !audit.enabled() {
        return;
    }
    audit.record(AuditEvent {
        principal: if user.is_empty() {
            String::new()
        } else {
            format!("User:{user}")
        },
        peer: peer(req),
        listener: LISTENER.into(),
        operation: format!("authenticate ({scheme})"),
        resource: format!("{} {}", req.method(), req.uri().path()),
        outcome: "failed".into(),
        detail: Some(why.to_string()),
    });
}

/// The audit writer's counters for `/metrics`.
pub fn metrics(out: &mut String, s: AuditStats) {
    for (name, help, v) in [
        ("written", "Audit lines written", s.written),
        (
            "dropped",
            "Audit lines dropped because the queue (audit.queue_max) was full",
            s.dropped,
        ),
        (
            "write_errors",
            "Audit lines lost to a failed write, open or rotation",
            s.write_errors,
        ),
        ("rotations", "Audit log rotations", s.rotations),
    ] {
        let m = format!("busbar_audit_{name}_total");
        let _ = writeln!(out, "# HELP {m} {help}.");
        let _ = writeln!(out, "# TYPE {m} counter");
        let _ = writeln!(out, "{m} {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_admin_except_the_data_routes() {
        assert!(is_admin(&Method::POST, "/topics"));
        assert!(is_admin(&Method::DELETE, "/topics/{topic}"));
        assert!(is_admin(&Method::PATCH, "/subscriptions/{name}"));
        assert!(is_admin(&Method::POST, "/users"));
        assert!(!is_admin(&Method::GET, "/users"));
        assert!(!is_admin(&Method::POST, "/topics/{topic}/events"));
        assert!(!is_admin(&Method::POST, "/rules/test"));
    }
}
