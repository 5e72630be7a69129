//! `GET /openapi.json`: an OpenAPI 3.0 document generated from `ROUTES`, so it lists exactly the
//! routes the router serves.

use crate::ROUTES;
use axum::Json;
use serde_json::{json, Map, Value};

fn parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect()
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path, summary) in ROUTES {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = json!({
            "summary": summary,
            "parameters": parameters(path),
            "responses": {
                "200": {"description": "success"},
                "default": {"description": "error: {\"error\": {\"code\", \"message\"}}"},
            },
        });
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "busbar", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
    })
}

pub async fn handler() -> Json<Value> {
    Json(document())
}
