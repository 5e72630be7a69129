//! API token routes: `POST /tokens` makes a named, expiring token for a user (the secret is in
//! this answer only), `GET /tokens` lists a user's live tokens, `DELETE /tokens/{name}` revokes
//! one. A token is sent as `Authorization: Bearer <token>` and acts as its user (`auth.rs`). The
//! user is the caller by default, whose own tokens need no ACL; naming another (`"user"` in the
//! body, `?user=` in the query) needs ALTER on the cluster (DESCRIBE to list), or authentication
//! off (where the user must be named).

use crate::authz::Caller;
use crate::body;
use crate::error::{ApiError, ApiResult};
use crate::users::error;
use crate::App;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use busbar_broker::auth::acl::Operation;
use busbar_broker::auth::tokens::TokenInfo;
use busbar_broker::time::format_rfc3339;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;
use utoipa::ToSchema;

/// Life of a token created without `expires_in_s`: one day.
const TTL_DEFAULT: Duration = Duration::from_secs(86_400);

/// `POST /tokens` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    /// 1 to 128 bytes, unique among the user's tokens.
    name: String,
    /// Seconds the token works; default 86400, at most `auth.token_ttl_max_s`.
    expires_in_s: Option<u64>,
    /// The token's user; default the caller.
    user: Option<String>,
}

/// A token (never its secret, except in the answer that made it).
#[derive(Serialize, ToSchema)]
pub struct Token {
    name: String,
    user: String,
    /// RFC 3339.
    created: String,
    /// RFC 3339; the token stops working then.
    expires: String,
    /// The secret for `Authorization: Bearer`, only in the answer to `POST /tokens`.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

/// `GET /tokens`.
#[derive(Serialize, ToSchema)]
pub struct TokenList {
    tokens: Vec<Token>,
}

fn view(t: TokenInfo, secret: Option<String>) -> Token {
    Token {
        name: t.name,
        user: t.user,
        created: format_rfc3339(t.created_ms),
        expires: format_rfc3339(t.expires_ms),
        token: secret,
    }
}

/// The user a request acts on: `named`, or the caller. The caller's own tokens need no ACL;
/// another user's need `op` on the cluster.
fn subject(app: &App, caller: &Caller, named: Option<String>, op: Operation) -> ApiResult<String> {
    match (named, &caller.user) {
        (Some(n), Some(c)) if &n == c => Ok(n),
        (Some(n), Some(_)) => caller.require_cluster(app, op).map(|_| n),
        (Some(n), None) => Ok(n),
        (None, Some(c)) => Ok(c.clone()),
        (None, None) => Err(ApiError::bad_request(
            "authentication is off: name the token's user (`user`)",
        )),
    }
}

/// Creates an API token.
#[utoipa::path(post, path = "/tokens", operation_id = "create_token", tag = "users",
    request_body = TokenCreate, responses(
        (status = 201, description = "Created; `token` is the secret, shown only here", body = Token),
        (status = 400, description = "Bad name, life or body; no such user"),
        (status = 403, description = "Another user's token, without ALTER on the cluster"),
        (status = 409, description = "The user has a token of that name (`token_exists`), or \
            `auth.tokens_per_user_max` live tokens, or all users `auth.tokens_max` \
            (`limit_reached`); nothing stored"),
        (status = 413, description = "Body over `http.json_bytes_max`"),
        (status = 415, description = "Not application/json"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn create(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Token>)> {
    let req: TokenCreate = body::json_request(&headers, body, app.config.json_bytes_max).await?;
    let user = subject(&app, &caller, req.user, Operation::Alter)?;
    let ttl = req.expires_in_s.map_or(TTL_DEFAULT, Duration::from_secs);
    let made = app
        .broker
        .auth()
        .create_token(&user, &req.name, ttl)
        .await
        .map_err(|e| match e {
            busbar_broker::auth::AuthError::UnknownUser(_) => ApiError::bad_request(e.to_string()),
            e => error(e),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(view(made.info, Some(made.secret))),
    ))
}

/// Lists a user's live tokens.
#[utoipa::path(get, path = "/tokens", operation_id = "list_tokens", tag = "users",
    params(("user" = Option<String>, Query, description = "Default: the caller")),
    responses(
        (status = 200, description = "The tokens", body = TokenList),
        (status = 400, description = "No user named while authentication is off"),
        (status = 403, description = "Another user's tokens, without DESCRIBE on the cluster")))]
pub async fn list(
    State(app): State<App>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<TokenList>> {
    let user = subject(&app, &caller, q.get("user").cloned(), Operation::Describe)?;
    let tokens = app.broker.auth().tokens().list(&user);
    let tokens = tokens.into_iter().map(|t| view(t, None)).collect();
    Ok(Json(TokenList { tokens }))
}

/// Revokes a token.
#[utoipa::path(delete, path = "/tokens/{name}", operation_id = "revoke_token", tag = "users",
    params(("name" = String, Path),
        ("user" = Option<String>, Query, description = "Default: the caller")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "No user named while authentication is off"),
        (status = 403, description = "Another user's token, without ALTER on the cluster"),
        (status = 404, description = "No such token"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn revoke(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<StatusCode> {
    let user = subject(&app, &caller, q.get("user").cloned(), Operation::Alter)?;
    app.broker
        .auth()
        .tokens()
        .revoke(&user, &name)
        .await
        .map_err(error)?;
    Ok(StatusCode::NO_CONTENT)
}
