//! HTTP authentication: with `auth.enabled`, every route but `/healthz` and `/readyz` (and
//! `/metrics` while `auth.metrics_public`, the default) needs
//! `Authorization: Basic` with a user's password, checked against its SCRAM credential (the
//! store Kafka SASL uses) with the shared failed-login backoff, or `Authorization: Bearer` with a
//! live API token (`tokens.rs`), which acts as its user. Without or with bad credentials
//! the answer is 401 `unauthorized` with `WWW-Authenticate: Basic realm="busbar"`. The principal
//! goes into the request's extensions for the routes that check it.

use crate::error::ApiError;
use crate::App;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use busbar_broker::auth::AuthError;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Routes served without credentials (probes).
pub const OPEN: &[&str] = &["/healthz", "/readyz"];
/// Served without credentials while `auth.metrics_public`.
pub const METRICS: &str = "/metrics";

/// Whether `path` is served to anyone, without credentials or ACLs: the probes, and `/metrics`
/// while `auth.metrics_public`.
pub fn public(app: &App, path: &str) -> bool {
    OPEN.contains(&path) || (path == METRICS && app.broker.auth().config().metrics_public)
}

/// The authenticated user of a request.
#[derive(Debug, Clone)]
pub struct Principal(pub String);

/// 401 with `message`.
pub fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

fn challenge(e: ApiError) -> Response {
    let mut r = e.into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"busbar\""),
    );
    r
}

/// Credentials of a request.
enum Credentials {
    Basic(String, String),
    Bearer(String),
}

/// The credentials of the `Authorization` header; `Err` names what is wrong.
fn credentials(headers: &HeaderMap) -> Result<Credentials, &'static str> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or("authentication required: send Authorization: Basic or Bearer")?;
    let value = value
        .to_str()
        .map_err(|_| "malformed Authorization header")?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or("malformed Authorization header")?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Credentials::Bearer(token.trim().to_string()));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err("unsupported Authorization scheme: use Basic or Bearer");
    }
    let decoded = B64
        .decode(token.trim())
        .map_err(|_| "malformed Basic credentials")?;
    let text = String::from_utf8(decoded).map_err(|_| "malformed Basic credentials")?;
    let (user, password) = text.split_once(':').ok_or("malformed Basic credentials")?;
    Ok(Credentials::Basic(user.to_string(), password.to_string()))
}

/// The middleware: passes requests through while authentication is off. The console's calls
/// (`X-Busbar-Console`) get their 401 without `WWW-Authenticate`: the page asks for credentials
/// itself, and the browser's own dialog would ask again.
pub async fn check(state: State<App>, req: Request, next: Next) -> Response {
    let console = req.headers().contains_key(crate::console::CONSOLE_HEADER);
    // The console's assets (no data in them) are public on the main listener only.
    if crate::console::is_console(req.uri().path()) {
        return next.run(req).await;
    }
    let mut r = check_credentials(state, req, next).await;
    if console && r.status() == StatusCode::UNAUTHORIZED {
        r.headers_mut().remove(header::WWW_AUTHENTICATE);
    }
    r
}

/// The schema registry listener's middleware: [`check`] without the console (it serves none).
pub async fn check_registry(state: State<App>, req: Request, next: Next) -> Response {
    check_credentials(state, req, next).await
}

async fn check_credentials(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let auth = app.broker.auth();
    if !auth.enabled() || public(&app, req.uri().path()) {
        return next.run(req).await;
    }
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.ip());
    if !req.headers().contains_key(header::AUTHORIZATION) {
        // mTLS: a verified client certificate stands for its user when no credentials are sent.
        if let Some(crate::accept::ClientCert(user)) = req.extensions().get().cloned() {
            req.extensions_mut().insert(Principal(user));
            return next.run(req).await;
        }
    }
    let (user, password) = match credentials(req.headers()) {
        Ok(Credentials::Basic(user, password)) => (user, password),
        Ok(Credentials::Bearer(token)) => {
            return match auth.authenticate_token(&token) {
                Some(user) => {
                    req.extensions_mut().insert(Principal(user));
                    next.run(req).await
                }
                None => {
                    let why = "invalid, expired or revoked token";
                    crate::audit::auth_failure(&app, &req, "Bearer", "", why);
                    challenge(unauthorized(why))
                }
            };
        }
        Err(why) => {
            if req.headers().contains_key(header::AUTHORIZATION) {
                crate::audit::auth_failure(&app, &req, "Authorization", "", why);
            }
            return challenge(unauthorized(why));
        }
    };
    let broker = app.broker.clone();
    let name = user.clone();
    // PBKDF2 takes milliseconds: off the async threads.
    let checked = tokio::task::spawn_blocking(move || {
        broker.auth().authenticate_password(&name, &password, ip)
    })
    .await;
    match checked {
        Ok(Ok(())) => {
            req.extensions_mut().insert(Principal(user));
            next.run(req).await
        }
        Ok(Err(AuthError::Failed { delay })) => {
            let why = "invalid user name or password";
            crate::audit::auth_failure(&app, &req, "Basic", &user, why);
            tokio::time::sleep(delay).await;
            challenge(unauthorized(why))
        }
        Ok(Err(e)) => {
            crate::audit::auth_failure(&app, &req, "Basic", &user, &e.to_string());
            challenge(unauthorized(&e.to_string()))
        }
        Err(_) => challenge(unauthorized("authentication was interrupted")),
    }
}
