//! The web console at `/ui/` (issue 19): a dependency-free single-page front end
//! (`crates/busbar-http/console/`: one HTML page, one script, one style sheet and an icon, embedded in the
//! binary; no Node build step) over busbar's own HTTP API, with the API's credentials. `GET /`
//! redirects to it.
//!
//! The assets hold no data, so they are served without credentials; every call the page makes
//! goes through the API's authentication and ACLs. They are served with a Content-Security-Policy
//! that allows only the console's own script, style and API calls (no inline script, no other
//! origin), `X-Frame-Options: DENY` and `nosniff`. A request carrying `X-Busbar-Console` gets its
//! 401 without `WWW-Authenticate`, so the browser leaves sign-in to the page instead of its own
//! dialog (`auth.rs`).

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

/// The request header the console's API calls carry.
pub const CONSOLE_HEADER: &str = "x-busbar-console";

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/app.js");
const STYLE: &str = include_str!("../console/app.css");
const ICON: &str = include_str!("../console/favicon.svg");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
    img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Whether `path` is the console's (served without credentials: it holds no data).
pub fn is_console(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

/// The console's answer to `req`, or `None` when the path is not the console's.
pub fn serve(req: &Request) -> Option<Response> {
    let path = req.uri().path();
    if !is_console(path) {
        return None;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Some(
            crate::error::ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "the console is served to GET only",
            )
            .into_response(),
        );
    }
    let (body, kind) = match path {
        "/" | "/ui" => return Some(Redirect::to("/ui/").into_response()),
        "/ui/" | "/ui/index.html" => (INDEX, "text/html; charset=utf-8"),
        "/ui/app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "/ui/app.css" => (STYLE, "text/css; charset=utf-8"),
        "/ui/favicon.svg" => (ICON, "image/svg+xml"),
        _ => return Some(crate::not_found_response()),
    };
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_assets() {
        assert!(INDEX.contains("src=\"/ui/app.js\"") && INDEX.contains("href=\"/ui/app.css\""));
        assert!(
            !INDEX.contains("<script>"),
            "no inline script: the CSP forbids it"
        );
        assert!(
            !INDEX.contains("style=\""),
            "no inline style: the CSP forbids it"
        );
        assert!(
            SCRIPT.contains(CONSOLE_HEADER),
            "the script's API calls say they are the console's"
        );
        assert!(
            !SCRIPT.contains("innerHTML"),
            "server values reach the page as text only"
        );
    }
}
