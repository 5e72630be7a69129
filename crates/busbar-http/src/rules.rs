//! `POST /rules/test`: does an event pattern match an event? Answers `{"match": bool}`, or 400 with
//! the path of the invalid part of the pattern.

use crate::body;
use crate::error::{ApiError, ApiResult};
use crate::App;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use busbar_rules::Pattern;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TestRule {
    pattern: Value,
    event: Value,
}

/// Tests an event pattern (EventBridge syntax) against an event.
#[utoipa::path(post, path = "/rules/test", operation_id = "test_pattern", tag = "rules", request_body = TestRule, responses(
    (status = 200, description = "Whether it matches", body = crate::schemas::RuleMatch),
    (status = 400, description = "Bad body, or an invalid pattern (its path named)"),
    (status = 413, description = "Body over `http.json_bytes_max`"),
    (status = 415, description = "Not application/json")))]
pub async fn test(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let req: TestRule = body::json_request(&headers, body, app.config.json_bytes_max).await?;
    let pattern = Pattern::parse(&req.pattern)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_pattern", e.to_string()))?;
    Ok(Json(json!({ "match": pattern.matches(&req.event) })))
}
