//! What one delivery sends: the event (as its CloudEvent envelope, transformed if the subscription
//! says so) shaped for the target. HTTP targets get the CloudEvents HTTP binding (binary: `ce-*`
//! headers and `data` as the body; structured: the JSON event), the target's custom headers, and
//! W3C trace context: the event's `traceparent` header continues as the parent of this delivery
//! (same trace id, a new span id), `tracestate` is passed on, and a CloudEvents `traceparent`
//! extension travels unchanged as `ce-traceparent` (the creation context, spec §5). Topic targets get
//! the record itself (key, headers, timestamp), with the transformed value when there is a
//! transform, and the source event's CloudEvent identity as `ce_*` headers unless the record is
//! a structured CloudEvent that travels unchanged. Dead-letter headers of a redriven event are removed before it is delivered again.

use super::decode::Decoder;
use super::deliver::{self, Failure, HttpClient, HttpRequest, Outcome, TopicSink};
use super::envelope::{Envelope, DLQ_PREFIX, REPLAY_ATTR};
use super::spec::{Compiled, EncodeSpec, Mode, Target};
use busbar_broker::event::{Event, StoredEvent};
use busbar_broker::trace::{self, Span};
use busbar_broker::Broker;
use hyper::header::{HeaderName, HeaderValue};
use serde_json::Value;
use std::time::Duration;

/// Media types of structured CloudEvents start with this (compared case-insensitively).
const CE_MEDIA: &[u8] = b"application/cloudevents";

/// Kafka header that marks a replayed event on topic targets.
pub const REPLAY_HEADER: &str = "busbar-replay";

/// The event's envelope after the subscription's transform; a transform whose output passes its
/// cap fails the delivery for good (reason `transform_too_large`). The transform reads the
/// document patterns match: a schema-framed value decoded by `decoder` is its `data`.
fn shaped(
    sub: &Compiled,
    e: &StoredEvent,
    replay: Option<&str>,
    decoder: Option<&Decoder>,
) -> Result<Envelope, Failure> {
    let mut env = Envelope::of(e);
    if let Some(r) = replay {
        env.attrs
            .insert(REPLAY_ATTR.into(), Value::String(r.to_string()));
    }
    if let Some(t) = &sub.transform {
        let mut doc = Envelope::document_with(e, decoder);
        if let (Some(r), Value::Object(m)) = (replay, &mut doc) {
            m.insert(REPLAY_ATTR.into(), Value::String(r.to_string()));
        }
        let out = t
            .apply(&doc)
            .map_err(|e| Failure::new("transform_too_large", None, e.to_string()))?;
        let ct = if serde_json::from_str::<serde::de::IgnoredAny>(&out).is_ok() {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        };
        env.attrs
            .insert("datacontenttype".into(), Value::String(ct.into()));
        env.data = Some(out.into_bytes());
    }
    Ok(env)
}

/// Does the subscription's pattern match this event (a framed value decoded by `decoder`)?
pub fn matches(sub: &Compiled, e: &StoredEvent, decoder: Option<&Decoder>) -> bool {
    sub.pattern
        .as_ref()
        .is_none_or(|p| p.matches(&Envelope::document_with(e, decoder)))
}

/// What one delivery attempt goes through: the broker, the HTTP client, the topic sink of a
/// topic target (when there is one) and the schema hook (when a registry runs).
pub struct Via<'a> {
    pub broker: &'a Broker,
    pub http: &'a HttpClient,
    pub sink: Option<&'a TopicSink>,
    pub decoder: Option<&'a Decoder>,
    /// Which attempt of this event this is (1 = the first; later ones are retries).
    pub attempt: u32,
}

/// Makes one delivery attempt of `e` through `sub` (to a topic through `via.sink` when given),
/// as one span when tracing is on: `deliver <subscription>` for the first attempt, `retry
/// <subscription>` for the others, a child of the event's trace context.
pub async fn attempt(
    via: Via<'_>,
    sub: &Compiled,
    e: &StoredEvent,
    replay: Option<&str>,
) -> Outcome {
    let mut span = attempt_span(sub, e, via.attempt, replay);
    let outcome = attempt_in(via, sub, e, replay, &span).await;
    let (kind, f) = match &outcome {
        Outcome::Delivered => ("delivered", None),
        Outcome::Retry { failure, .. } => ("retry", Some(failure)),
        Outcome::Fatal(f) => ("fatal", Some(f)),
    };
    span.set("busbar.delivery.outcome", kind);
    if let Some(f) = f {
        if let Some(status) = f.status {
            span.set("http.response.status_code", i64::from(status));
        }
        span.set("busbar.delivery.reason", f.reason);
        span.fail(f.error.clone());
    }
    outcome
}

fn attempt_span(sub: &Compiled, e: &StoredEvent, attempt: u32, replay: Option<&str>) -> Span {
    let name = &sub.spec.name;
    let what = if attempt > 1 { "retry" } else { "deliver" };
    let parent = trace::Parent::of_headers(&e.headers);
    trace::start(
        format!("{what} {name}"),
        trace::Kind::Client,
        parent,
        || {
            let mut a = vec![
                ("messaging.system", "busbar".into()),
                ("busbar.subscription", name.clone().into()),
                ("busbar.delivery.attempt", i64::from(attempt).into()),
                ("messaging.source.name", e.topic.clone().into()),
                ("messaging.kafka.offset", (e.offset as i64).into()),
                (
                    "messaging.destination.partition.id",
                    e.partition.to_string().into(),
                ),
            ];
            match &sub.spec.target {
                Target::Topic { topic, .. } => {
                    a.push(("busbar.target.topic", topic.clone().into()))
                }
                Target::Http { .. } => {
                    // Host and port only: a path, query or user info may hold a secret (webhook
                    // tokens live in paths).
                    if let Some(u) = &sub.url {
                        a.push(("server.address", u.host().unwrap_or("").to_string().into()));
                        let https = u.scheme_str() == Some("https");
                        let port = u.port_u16().unwrap_or(if https { 443 } else { 80 });
                        a.push(("server.port", i64::from(port).into()));
                    }
                }
            }
            if let Some(r) = replay {
                a.push(("busbar.replay", r.to_string().into()));
            }
            a
        },
    )
}

async fn attempt_in(
    via: Via<'_>,
    sub: &Compiled,
    e: &StoredEvent,
    replay: Option<&str>,
    span: &Span,
) -> Outcome {
    let Via {
        broker,
        http,
        sink,
        decoder,
        ..
    } = via;
    match &sub.spec.target {
        Target::Topic { topic, .. } => {
            let event = match topic_event(sub, e, replay, decoder) {
                Ok(event) => event,
                Err(f) => return Outcome::Fatal(f),
            };
            match sink {
                Some(s) => s.send(event).await,
                None => deliver::to_topic(broker, topic, event).await,
            }
        }
        Target::Http { headers, mode, .. } => {
            let url = sub.url.clone().expect("HTTP targets have a parsed URL");
            let env = match shaped(sub, e, replay, decoder) {
                Ok(env) => env,
                Err(f) => return Outcome::Fatal(f),
            };
            let mut out = trace_headers(e, span);
            for (k, v) in headers {
                if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v))
                {
                    out.push((k, v));
                }
            }
            out.push(header(
                "user-agent",
                concat!("busbar/", env!("CARGO_PKG_VERSION")),
            ));
            let body = match mode {
                Mode::Binary => binary(&env, &mut out),
                Mode::Structured => {
                    out.push(header(
                        "content-type",
                        "application/cloudevents+json; charset=UTF-8",
                    ));
                    env.structured_body()
                }
            };
            let req = HttpRequest {
                uri: url,
                headers: out,
                body,
                timeout: Duration::from_millis(sub.spec.delivery.timeout_ms),
                ca_file: sub.ca_file().map(Into::into),
            };
            http.post(req).await
        }
    }
}

fn topic_event(
    sub: &Compiled,
    e: &StoredEvent,
    replay: Option<&str>,
    decoder: Option<&Decoder>,
) -> Result<Event, Failure> {
    let mut headers: Vec<(String, Vec<u8>)> = e
        .headers
        .iter()
        .filter(|(k, _)| !k.starts_with(DLQ_PREFIX) && k != REPLAY_HEADER)
        .cloned()
        .collect();
    if let Some(r) = replay {
        headers.push((REPLAY_HEADER.into(), r.as_bytes().to_vec()));
    }
    let env = Envelope::of(e);
    let structured = e.headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("content-type")
            && v.len() >= CE_MEDIA.len()
            && v[..CE_MEDIA.len()].eq_ignore_ascii_case(CE_MEDIA)
    });
    let value = match &sub.transform {
        Some(_) => shaped(sub, e, None, decoder)?.data,
        None => e.value.clone(),
    };
    let encode = match &sub.spec.target {
        Target::Topic {
            topic,
            encode: Some(spec),
        } => Some((topic, spec)),
        _ => None,
    };
    let value = match (encode, value) {
        (Some((topic, spec)), Some(v)) => {
            let json = match sub.transform.is_some() {
                true => serde_json::from_slice(&v).map_err(|err| {
                    format!("the transform's output is not JSON ({err}), so it does not encode")
                }),
                false => data_of(e, decoder),
            };
            let bytes = json.and_then(|j| encoded(decoder, topic, spec, &j));
            let bytes = bytes.map_err(|why| Failure::new("schema_encode_failed", None, why))?;
            // The copy is a binary-mode event with new bytes: the source's media type and
            // schema no longer describe them.
            headers.retain(|(k, _)| {
                !["content-type", "ce_datacontenttype", "ce_dataschema"]
                    .iter()
                    .any(|n| k.eq_ignore_ascii_case(n))
            });
            Some(bytes)
        }
        (_, v) => v,
    };
    if sub.transform.is_some() || encode.is_some() || !structured {
        keep_identity(&mut headers, &env);
    }
    Ok(Event {
        key: e.key.clone(),
        value,
        headers,
        timestamp: Some(super::envelope::origin_time(e)),
        partition: None,
    })
}

/// The event's `data` as JSON: a schema-framed value decoded with its schema, a JSON value, the
/// `data` of a structured CloudEvent.
fn data_of(e: &StoredEvent, decoder: Option<&Decoder>) -> Result<Value, String> {
    match Envelope::document_with(e, decoder) {
        Value::Object(mut m) => m.remove("data"),
        _ => None,
    }
    .ok_or_else(|| "the event's data is not JSON and does not decode with a schema".into())
}

/// `json` encoded with the target's schema (see `spec.rs`).
fn encoded(
    decoder: Option<&Decoder>,
    topic: &str,
    spec: &EncodeSpec,
    json: &Value,
) -> Result<Vec<u8>, String> {
    let enc = decoder
        .ok_or_else(|| "no schema registry runs here to encode with".to_string())?
        .encoder()?;
    let subject = spec.subject_for(topic);
    let id = enc
        .resolve(&subject, &spec.schema)
        .map_err(|e| format!("subject {subject:?} schema {}: {e}", spec.schema))?;
    enc.encode(id, spec.message.as_deref(), json)
        .map_err(|mut e| {
            if e.len() > 1000 {
                let mut end = 1000;
                while !e.is_char_boundary(end) {
                    end -= 1;
                }
                e.truncate(end);
            }
            e
        })
}

/// The source event's CloudEvent identity travels with a copy to a topic (binary mode: `ce_*`
/// headers), so readers of the target see the source's `id` and `source` and can deduplicate,
/// not an id made from the copy's own partition and offset. Headers already there are kept.
fn keep_identity(headers: &mut Vec<(String, Vec<u8>)>, env: &Envelope) {
    for attr in ["specversion", "id", "source", "type", "time", "subject"] {
        let name = format!("ce_{attr}");
        let Some(Value::String(v)) = env.attrs.get(attr) else {
            continue;
        };
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(&name)) {
            headers.push((name, v.as_bytes().to_vec()));
        }
    }
}

fn header(k: &'static str, v: &str) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(k),
        HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("")),
    )
}

/// A `ce-*` header value, percent-encoded as the CloudEvents HTTP binding (§3.1.3.2) says: the
/// UTF-8 bytes of space, `"`, `%` and everything outside U+0021..U+007E, in upper-case hex.
fn ce_value(s: &str) -> HeaderValue {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x21..0x7f).contains(&b) && b != b'%' && b != b'"' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).expect("printable ASCII is a valid header value")
}

fn binary(env: &Envelope, out: &mut Vec<(HeaderName, HeaderValue)>) -> Vec<u8> {
    for name in env.attrs.keys() {
        let value = env.attr(name).unwrap_or_default();
        if name == "datacontenttype" {
            // Content-Type is an HTTP header of its own, not percent-encoded; a media type it
            // cannot carry is left out (the receiver then sees data without a type).
            if let Ok(v) = HeaderValue::from_str(&value) {
                out.push((hyper::header::CONTENT_TYPE, v));
            }
        } else if let Ok(h) = HeaderName::try_from(format!("ce-{name}")) {
            out.push((h, ce_value(&value)));
        }
    }
    env.data.clone().unwrap_or_default()
}

/// A W3C traceparent: (trace id, parent id, flags), checked (spec §5).
fn parse_traceparent(v: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = v.trim().split('-').collect();
    let [version, trace, parent, flags] = parts[..] else {
        return None;
    };
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    valid.then_some((trace, parent, flags))
}

fn span_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    format!("{:016x}", h.finish() | 1)
}

/// `traceparent` for this delivery (a child of the event's: the attempt's span when tracing is
/// on), and `tracestate` passed on.
fn trace_headers(e: &StoredEvent, span: &Span) -> Vec<(HeaderName, HeaderValue)> {
    if let Some((tp, state)) = span.traceparent() {
        let mut out = vec![header("traceparent", &tp)];
        if let Some(state) = state.and_then(|s| HeaderValue::from_str(&s).ok()) {
            out.push((HeaderName::from_static("tracestate"), state));
        }
        return out;
    }
    let get = |n: &str| {
        e.headers
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    };
    let mut out = Vec::new();
    let parent = get("traceparent").or_else(|| get("ce_traceparent"));
    if let Some((trace, _, flags)) = parent.and_then(parse_traceparent) {
        let v = format!("00-{trace}-{}-{flags}", span_id());
        out.push(header("traceparent", &v));
        // Passed on as it came (W3C syntax, not the CloudEvents encoding); one no header can
        // carry is dropped.
        if let Some(state) = get("tracestate").and_then(|s| HeaderValue::from_str(s).ok()) {
            out.push((HeaderName::from_static("tracestate"), state));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_validated() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse_traceparent(ok),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01"))
        );
        for bad in [
            "",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }

    #[test]
    fn ce_header_values_are_percent_encoded() {
        assert_eq!(ce_value("a b").to_str().unwrap(), "a%20b");
        assert_eq!(ce_value("€%\"").to_str().unwrap(), "%E2%82%AC%25%22");
        assert_eq!(
            ce_value("Euro € 😀").to_str().unwrap(),
            "Euro%20%E2%82%AC%20%F0%9F%98%80"
        );
        assert_eq!(ce_value("/a:b?c=d~").to_str().unwrap(), "/a:b?c=d~");
        assert_eq!(ce_value("\t\u{7f}").to_str().unwrap(), "%09%7F");
    }
}
