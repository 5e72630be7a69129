//! Spans for OpenTelemetry tracing (issue 19): HTTP publish, push delivery attempts and their
//! retries, dead-letter writes. This module holds only the span API; the binary installs the SDK
//! and the OTLP exporter (`tracing.otlp_endpoint`) and then calls [`enable`]. Until then every
//! [`start`] returns an inert span at the cost of one atomic load, so a server without tracing
//! pays nothing.
//!
//! Context travels as W3C trace context: a span's parent is the `traceparent` (and `tracestate`)
//! a request or an event's record headers carry, and [`Span::traceparent`] is what a child
//! carries on (record headers of published events, the request to a push target).

use opentelemetry::global::{self, BoxedSpan, BoxedTracer};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue, Value};
use std::sync::OnceLock;

pub use opentelemetry::trace::SpanKind as Kind;

/// Longest span name and string attribute value recorded, bytes (longer ones are cut at a
/// character boundary): a client-chosen text must not make spans large.
pub const TEXT_BYTES_MAX: usize = 256;

/// `s` cut to at most [`TEXT_BYTES_MAX`] bytes.
fn clip(mut s: String) -> String {
    if s.len() > TEXT_BYTES_MAX {
        let mut end = TEXT_BYTES_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn clip_value(v: Value) -> Value {
    match v {
        Value::String(s) if s.as_str().len() > TEXT_BYTES_MAX => {
            Value::String(clip(s.as_str().to_string()).into())
        }
        v => v,
    }
}

/// The tracer once the binary has installed a provider.
static TRACER: OnceLock<BoxedTracer> = OnceLock::new();

/// Makes [`start`] record spans through the globally installed tracer provider (call once, after
/// `opentelemetry::global::set_tracer_provider`).
pub fn enable() {
    let _ = TRACER.set(global::tracer("busbar"));
}

/// Whether spans are recorded (a provider is installed).
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// A W3C parent: the `traceparent` and `tracestate` values, as a request or record carried them.
#[derive(Clone, Copy, Default)]
pub struct Parent<'a> {
    pub traceparent: Option<&'a [u8]>,
    pub tracestate: Option<&'a [u8]>,
}

impl<'a> Parent<'a> {
    /// The parent that record headers name (the last of each name, names compared ignoring case;
    /// a CloudEvents `ce_traceparent` stands in when there is no `traceparent`).
    pub fn of_headers(headers: &'a [(String, Vec<u8>)]) -> Parent<'a> {
        let get = |n: &str| {
            (headers.iter().rev())
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| &v[..])
        };
        Parent {
            traceparent: get("traceparent").or_else(|| get("ce_traceparent")),
            tracestate: get("tracestate"),
        }
    }

    fn context(&self) -> Context {
        match self.traceparent.and_then(|v| parse(v, self.tracestate)) {
            Some(sc) => Context::new().with_remote_span_context(sc),
            None => Context::new(),
        }
    }
}

/// A W3C `traceparent` as a remote span context; `None` when it is not one (version `ff`, wrong
/// lengths, upper-case or non-hex digits, an all-zero id).
fn parse(traceparent: &[u8], tracestate: Option<&[u8]>) -> Option<SpanContext> {
    let v = std::str::from_utf8(traceparent).ok()?.trim();
    let mut parts = v.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let ok = hex(version, 2) && version != "ff" && hex(trace, 32) && hex(span, 16) && hex(flags, 2);
    // Version 00 has exactly four fields; a later version may append more.
    if !ok || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let trace = TraceId::from_hex(trace)
        .ok()
        .filter(|t| *t != TraceId::INVALID)?;
    let span = SpanId::from_hex(span)
        .ok()
        .filter(|s| *s != SpanId::INVALID)?;
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & 1);
    let state = (tracestate.and_then(|s| std::str::from_utf8(s).ok()))
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    Some(SpanContext::new(trace, span, flags, true, state))
}

/// A span, or nothing when tracing is off. Ends when dropped.
pub struct Span(Option<BoxedSpan>);

/// Starts a span named `name` of `kind` under `parent`, with `attrs`.
pub fn start(
    name: String,
    kind: SpanKind,
    parent: Parent<'_>,
    attrs: impl FnOnce() -> Vec<(&'static str, Value)>,
) -> Span {
    let Some(tracer) = TRACER.get() else {
        return Span(None);
    };
    let attributes = (attrs().into_iter()).map(|(k, v)| KeyValue::new(k, clip_value(v)));
    let span = (tracer.span_builder(clip(name)))
        .with_kind(kind)
        .with_attributes(attributes)
        .start_with_context(tracer, &parent.context());
    Span(Some(span))
}

impl Span {
    /// Whether this span is recorded (tracing on, and sampled or kept by the sampler).
    pub fn is_recording(&self) -> bool {
        self.0.as_ref().is_some_and(|s| s.is_recording())
    }

    /// Adds an attribute.
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(s) = &mut self.0 {
            s.set_attribute(KeyValue::new(key, clip_value(value.into())));
        }
    }

    /// Marks the span failed with `message`.
    pub fn fail(&mut self, message: impl Into<String>) {
        if let Some(s) = &mut self.0 {
            s.set_status(Status::error(clip(message.into())));
        }
    }

    /// The `traceparent` (and `tracestate`) a child of this span carries; `None` when tracing is
    /// off or the span's context is invalid.
    pub fn traceparent(&self) -> Option<(String, Option<String>)> {
        let sc = self.0.as_ref()?.span_context();
        if !sc.is_valid() {
            return None;
        }
        let tp = format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        );
        let state = sc.trace_state().header();
        Some((tp, (!state.is_empty()).then_some(state)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_checked() {
        let ok = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let sc = parse(ok, Some(b"a=1,b=2")).expect("valid");
        assert_eq!(
            sc.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(sc.span_id().to_string(), "b7ad6b7169203331");
        assert!(sc.is_sampled() && sc.is_remote());
        assert_eq!(sc.trace_state().get("b"), Some("2"));
        for bad in [
            &b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"[..],
            b"00-00000000000000000000000000000000-b7ad6b7169203331-01",
            b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            b"00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",
            b"\xff\xfe",
            b"",
        ] {
            assert!(
                parse(bad, None).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // A later version may carry more fields.
        assert!(parse(
            b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            None
        )
        .is_some());
    }

    #[test]
    fn a_span_without_a_provider_is_inert() {
        let mut s = start("x".into(), SpanKind::Internal, Parent::default(), Vec::new);
        s.set("k", 1);
        s.fail("no");
        assert!(!s.is_recording());
        assert!(s.traceparent().is_none());
    }

    #[test]
    fn long_texts_are_cut_at_a_character_boundary() {
        let long = "é".repeat(200);
        let cut = clip(long);
        assert!(cut.len() <= TEXT_BYTES_MAX && cut.len() >= TEXT_BYTES_MAX - 1);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(clip("short".into()), "short");
        assert_eq!(
            clip_value(Value::String("x".repeat(1000).into()))
                .as_str()
                .len(),
            TEXT_BYTES_MAX
        );
    }

    #[test]
    fn the_last_record_header_names_the_parent() {
        let h = vec![
            ("traceparent".to_string(), b"a".to_vec()),
            ("TraceParent".to_string(), b"b".to_vec()),
            ("tracestate".to_string(), b"s".to_vec()),
        ];
        let p = Parent::of_headers(&h);
        assert_eq!(p.traceparent, Some(&b"b"[..]));
        assert_eq!(p.tracestate, Some(&b"s"[..]));
        let ce = vec![("ce_traceparent".to_string(), b"c".to_vec())];
        assert_eq!(Parent::of_headers(&ce).traceparent, Some(&b"c"[..]));
    }
}
