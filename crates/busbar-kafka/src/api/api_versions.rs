//! ApiVersions: the advertised table; for a version we do not speak, UNSUPPORTED_VERSION in the v0
//! layout with the table, so the client retries lower (KIP-511).

use crate::codes;
use crate::versions::ADVERTISED;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsResponse, ResponseKind};

fn table() -> Vec<ApiVersion> {
    ADVERTISED
        .iter()
        .map(|(k, lo, hi)| {
            let mut v = ApiVersion::default();
            v.api_key = *k as i16;
            v.min_version = *lo;
            v.max_version = *hi;
            v
        })
        .collect()
}

pub fn handle() -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.api_keys = table();
    r
}

pub fn unsupported() -> ResponseKind {
    let mut r = handle();
    r.error_code = codes::UNSUPPORTED_VERSION;
    ResponseKind::ApiVersions(r)
}
