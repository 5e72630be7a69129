//! Publishing a `text/plain` or `application/octet-stream` body that is not a CloudEvent (no
//! `ce-*` header): one event whose value is the body, byte for byte (an empty body is an empty
//! value, not a tombstone). Its key comes from `?key=`, its partition from `?partition=`, its record
//! headers from `x-busbar-header-NAME: value` request headers (NAME lower-cased, as HTTP header
//! names are case-insensitive; repeated headers give repeated record headers).

use crate::error::{ApiError, ApiResult};
use axum::http::HeaderMap;
use busbar_broker::Event;
use std::collections::HashMap;

/// Request headers whose name starts with this become record headers.
pub const HEADER_PREFIX: &str = "x-busbar-header-";

/// Query parameters a publish accepts (for plain bodies only).
pub const PARAMS: [&str; 2] = ["key", "partition"];

/// True for the media types published as one plain event.
pub fn is_plain(media: &str) -> bool {
    matches!(media, "text/plain" | "application/octet-stream")
}

/// True when the request has any `ce-*` header (then it is a binary-mode CloudEvent).
pub fn has_ce_headers(headers: &HeaderMap) -> bool {
    headers.keys().any(|k| k.as_str().starts_with("ce-"))
}

/// The record headers given as `x-busbar-header-NAME`.
fn record_headers(headers: &HeaderMap) -> ApiResult<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let Some(key) = name.as_str().strip_prefix(HEADER_PREFIX) else {
            continue;
        };
        if key.is_empty() {
            return Err(ApiError::bad_request(format!(
                "header {HEADER_PREFIX}: the record header's name is missing"
            )));
        }
        out.push((key.to_string(), value.as_bytes().to_vec()));
    }
    Ok(out)
}

fn partition(q: &HashMap<String, String>) -> ApiResult<Option<u32>> {
    let Some(raw) = q.get("partition") else {
        return Ok(None);
    };
    raw.parse::<u32>()
        .ok()
        .filter(|p| *p <= i32::MAX as u32)
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "query parameter `partition`: {raw:?} is not a partition number"
            ))
        })
}

/// The one event of a plain body.
pub fn event(headers: &HeaderMap, q: &HashMap<String, String>, body: &[u8]) -> ApiResult<Event> {
    Ok(Event {
        key: q.get("key").map(|k| k.as_bytes().to_vec()),
        value: Some(body.to_vec()),
        headers: record_headers(headers)?,
        timestamp: None,
        partition: partition(q)?,
    })
}

/// Refuses `?key=`, `?partition=` and `x-busbar-header-*` on bodies that carry their own (JSON
/// events, CloudEvents), rather than ignoring them.
pub fn refuse_on_other_bodies(
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    media: &str,
) -> ApiResult<()> {
    let given = PARAMS
        .iter()
        .find(|p| q.contains_key(**p))
        .map(|p| format!("query parameter `{p}`"))
        .or_else(|| {
            headers
                .keys()
                .find(|k| k.as_str().starts_with(HEADER_PREFIX))
                .map(|k| format!("header {k}"))
        });
    match given {
        Some(what) => Err(ApiError::bad_request(format!(
            "{what} applies to text/plain and application/octet-stream bodies only; \
             a {media} body carries its own keys, partitions and headers"
        ))),
        None => Ok(()),
    }
}
