//! User routes: `POST /users` (create, or change the password of, a user), `GET /users` (names
//! and mechanisms, never a secret), `DELETE /users/{name}`. Users are stored as SCRAM credentials
//! only (`busbar_broker::auth`), shared with Kafka SASL. While authentication is on, listing
//! needs DESCRIBE and changes need ALTER on the cluster (`authz.rs`; super users may do both).

use crate::body;
use crate::error::{ApiError, ApiResult};
use crate::App;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use busbar_broker::auth::AuthError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /users` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    /// 1 to 255 bytes, no `:` or control characters.
    name: String,
    /// 1 to 1024 bytes; kept only as SCRAM-SHA-256 and SCRAM-SHA-512 credentials.
    password: String,
}

/// One credential of a user: its mechanism and PBKDF2 iterations.
#[derive(Serialize, ToSchema)]
pub struct Credential {
    mechanism: String,
    iterations: u32,
}

/// A user: its name and credentials (never a secret).
#[derive(Serialize, ToSchema)]
pub struct User {
    name: String,
    mechanisms: Vec<Credential>,
}

/// `GET /users`.
#[derive(Serialize, ToSchema)]
pub struct UserList {
    users: Vec<User>,
}

/// Maps a user-store error to its answer (the one place for `AuthError`).
pub fn error(e: AuthError) -> ApiError {
    match e {
        AuthError::InvalidName(_)
        | AuthError::InvalidPassword(_)
        | AuthError::Unacceptable(_)
        | AuthError::InvalidAcl(_) => ApiError::bad_request(e.to_string()),
        AuthError::UnknownUser(_)
        | AuthError::UnknownCredential { .. }
        | AuthError::UnknownToken(_) => ApiError::not_found(e.to_string()),
        AuthError::TokenExists(_) => {
            ApiError::new(StatusCode::CONFLICT, "token_exists", e.to_string())
        }
        AuthError::LimitReached { .. } => {
            ApiError::new(StatusCode::CONFLICT, "limit_reached", e.to_string())
        }
        AuthError::Failed { .. } => crate::auth::unauthorized("invalid user name or password"),
        AuthError::Storage(b) => b.into(),
    }
}

fn user(app: &App, name: &str) -> Option<User> {
    let info = app
        .broker
        .auth()
        .list_users()
        .into_iter()
        .find(|u| u.name == name)?;
    Some(view(info))
}

fn view(info: busbar_broker::auth::users::UserInfo) -> User {
    User {
        name: info.name,
        mechanisms: info
            .mechanisms
            .into_iter()
            .map(|(m, iterations)| Credential {
                mechanism: m.name().into(),
                iterations,
            })
            .collect(),
    }
}

/// Creates a user, or changes an existing user's password.
#[utoipa::path(post, path = "/users", operation_id = "create_user", tag = "users",
    request_body = UserCreate, responses(
        (status = 201, description = "Created", body = User),
        (status = 200, description = "The password was changed", body = User),
        (status = 400, description = "Bad name, password or body"),
        (status = 403, description = "No ALTER on the cluster"),
        (status = 413, description = "Body over `http.json_bytes_max`"),
        (status = 415, description = "Not application/json"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<User>)> {
    let req: UserCreate = body::json_request(&headers, body, app.config.json_bytes_max).await?;
    let created = app
        .broker
        .auth()
        .set_password(&req.name, &req.password)
        .await
        .map_err(error)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let u = user(&app, &req.name).ok_or_else(|| ApiError::not_found("user deleted meanwhile"))?;
    Ok((status, Json(u)))
}

/// Lists users: names and mechanisms.
#[utoipa::path(get, path = "/users", operation_id = "list_users", tag = "users", responses(
    (status = 200, description = "The users", body = UserList),
    (status = 403, description = "No DESCRIBE on the cluster")))]
pub async fn list(State(app): State<App>) -> ApiResult<Json<UserList>> {
    let users = app
        .broker
        .auth()
        .list_users()
        .into_iter()
        .map(view)
        .collect();
    Ok(Json(UserList { users }))
}

/// Deletes a user and all its credentials.
#[utoipa::path(delete, path = "/users/{name}", operation_id = "delete_user", tag = "users",
    params(("name" = String, Path)), responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "No ALTER on the cluster"),
        (status = 404, description = "No such user"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn delete(State(app): State<App>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    app.broker.auth().delete_user(&name).await.map_err(error)?;
    Ok(StatusCode::NO_CONTENT)
}
