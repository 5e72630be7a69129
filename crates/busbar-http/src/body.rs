//! Reading request bodies: the size limit (413 before the body is buffered past it), the read
//! deadline (`http.body_read_timeout_ms`: [`Deadline`] wraps every request body in the accept
//! path; a body not received in time answers 408 and the connection is closed), the shared budget
//! of body bytes being read (`http.body_bytes_budget`: a body that would pass it answers 503 and
//! the connection is closed, so stalled bodies cannot hold unbounded memory), media types
//! (415), and JSON decoding whose 400 message names the offending field (`serde_path_to_error`).

use crate::error::{ApiError, ApiResult};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use hyper::body::{Frame, SizeHint};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
        if let Some(budget) = over_budget(&e) {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!(
                    "request bodies being read hold the whole http.body_bytes_budget ({} bytes); \
                     retry later",
                    budget.0
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

/// The bodies being read hold the whole shared budget (its size in bytes).
#[derive(Debug, Clone, Copy)]
pub struct BodyOverBudget(pub usize);

impl std::fmt::Display for BodyOverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "request bodies hold the whole budget of {} bytes",
            self.0
        )
    }
}

impl std::error::Error for BodyOverBudget {}

/// The [`BodyTimedOut`] somewhere in `e`'s chain of sources.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> Option<BodyTimedOut> {
    find(e)
}

/// The [`BodyOverBudget`] somewhere in `e`'s chain of sources.
fn over_budget(e: &(dyn std::error::Error + 'static)) -> Option<BodyOverBudget> {
    find(e)
}

/// The first `T` in `e`'s chain of sources.
fn find<T: std::error::Error + Copy + 'static>(e: &(dyn std::error::Error + 'static)) -> Option<T> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(*t);
        }
        next = e.source();
    }
    None
}

/// Bytes of request bodies being read, across all connections (`http.body_bytes_budget`).
#[derive(Clone)]
pub struct Budget {
    bytes: Arc<Semaphore>,
    size: usize,
}

impl Budget {
    /// A budget of `size` bytes.
    pub fn new(size: usize) -> Self {
        let size = size.min(Semaphore::MAX_PERMITS);
        Self {
            bytes: Arc::new(Semaphore::new(size)),
            size,
        }
    }
}

/// A request body that fails with [`BodyTimedOut`] once its deadline passes before its end, and
/// with [`BodyOverBudget`] when a frame does not fit the shared [`Budget`]; the bytes it read stay
/// counted until it is dropped.
pub struct Deadline<B> {
    inner: B,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    budget: Budget,
    held: Option<OwnedSemaphorePermit>,
}

impl<B> Deadline<B> {
    /// `inner`, which must be read whole within `timeout` from now, its bytes counted in `budget`.
    pub fn new(inner: B, timeout: Duration, budget: Budget) -> Self {
        Self {
            inner,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            budget,
            held: None,
        }
    }

    /// Counts `n` more bytes; false when the budget does not have them.
    fn hold(&mut self, n: usize) -> bool {
        let Ok(n) = u32::try_from(n) else {
            return false;
        };
        let Ok(permit) = self.budget.bytes.clone().try_acquire_many_owned(n) else {
            return false;
        };
        match &mut self.held {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
        true
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
            let len = match &frame {
                Some(Ok(f)) => f.data_ref().map_or(0, Bytes::len),
                _ => 0,
            };
            if len > 0 && !this.hold(len) {
                let over = BodyOverBudget(this.budget.size);
                return Poll::Ready(Some(Err(Box::new(over))));
            }
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

/// A JSON request body: `Content-Type: application/json` (else 415), at most `limit` bytes
/// (else 413), parsed into `T` (else 400).
pub async fn json_request<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> ApiResult<T> {
    require_json(headers)?;
    json(&read(body, limit).await?)
}
