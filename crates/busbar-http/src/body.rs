//! Reading request bodies: the size limit (413 before the body is buffered past it), the read
//! deadline (`http.body_read_timeout_ms`: [`Deadline`] wraps every request body in the accept
//! path; a body not received in time answers 408 and the connection is closed), media types
//! (415), and JSON decoding whose 400 message names the offending field (`serde_path_to_error`).

use crate::error::{ApiError, ApiResult};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use hyper::body::{Frame, SizeHint};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Reads at most `limit` bytes of `body`: 413 past the limit, 408 past the read deadline.
pub async fn read(body: Body, limit: usize) -> ApiResult<Bytes> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if let Some(late) = timed_out(&e) {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "request body not received within http.body_read_timeout_ms ({} ms)",
                    late.0.as_millis()
                ),
            );
        }
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body exceeds the limit of {limit} bytes"),
        )
    })
}

/// The read deadline passed before the whole body arrived (the timeout it had).
#[derive(Debug, Clone, Copy)]
pub struct BodyTimedOut(pub Duration);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request body not received within {:?}", self.0)
    }
}

impl std::error::Error for BodyTimedOut {}

/// The [`BodyTimedOut`] somewhere in `e`'s chain of sources.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> Option<BodyTimedOut> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(t) = e.downcast_ref::<BodyTimedOut>() {
            return Some(*t);
        }
        next = e.source();
    }
    None
}

/// A request body that fails with [`BodyTimedOut`] once its deadline passes before its end.
pub struct Deadline<B> {
    inner: B,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl<B> Deadline<B> {
    /// `inner`, which must be read whole within `timeout` from now.
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

impl<B> hyper::body::Body for Deadline<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request's media type, lower-cased, without parameters (`None` when absent).
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)?
        .to_str()
        .ok()?;
    Some(
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Refuses anything but JSON (a missing content type is taken as JSON, as curl -d users expect).
pub fn require_json(headers: &HeaderMap) -> ApiResult<()> {
    match media_type(headers).as_deref() {
        None | Some("application/json") => Ok(()),
        Some(other) => Err(unsupported(other)),
    }
}

/// 415 naming the media type.
pub fn unsupported(media: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("content type {media:?} is not supported here; send application/json"),
    )
}

/// A JSON document's text, checked but not decoded (so values keep their bytes).
pub fn json_raw(bytes: &[u8]) -> ApiResult<&serde_json::value::RawValue> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "request body is empty; a JSON document is required",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))
}

/// Decodes JSON into `T`; the 400 message says which field is wrong and why.
pub fn json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "request body is empty; a JSON document is required",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." || inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("malformed JSON: {inner}"))
        } else {
            ApiError::bad_request(format!("field `{path}`: {inner}"))
        }
    })
}
