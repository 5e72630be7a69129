//! OpenTelemetry tracing (issue 19) through the real binary and a real OTLP/HTTP receiver (the
//! testkit's HTTP server, whose requests are decoded as OTLP protobuf): with
//! `tracing.otlp_endpoint` set, an HTTP publish is a span under the request's W3C `traceparent`;
//! each push delivery attempt is a span under the publish (`deliver`, then `retry`), whose id the
//! target receives as its parent; a dead-letter write is a span too. Without the setting nothing
//! is sent and the trace context still travels. A bad endpoint stops the start naming the key.

mod common;

use busbar_testkit::target::{Received, Reply, Target};
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;
use std::time::Duration;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER: &str = "b7ad6b7169203331";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every span the receiver got so far.
fn spans(otlp: &Target) -> Vec<Span> {
    let mut out = Vec::new();
    for r in otlp.received() {
        assert_eq!(r.path, "/v1/traces");
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
        let req = ExportTraceServiceRequest::decode(&r.body[..]).expect("OTLP protobuf");
        for rs in req.resource_spans {
            let res = rs.resource.expect("resource");
            assert!(res.attributes.iter().any(|a| a.key == "service.name"
                && matches!(&a.value.as_ref().and_then(|v| v.value.clone()), Some(Any::StringValue(s)) if s == "busbar-test")));
            out.extend(rs.scope_spans.into_iter().flat_map(|s| s.spans));
        }
    }
    out
}

fn attr(s: &Span, key: &str) -> Option<Any> {
    (s.attributes.iter())
        .find(|a| a.key == key)
        .and_then(|a| a.value.clone()?.value)
}

fn wait_spans(otlp: &Target, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
    let end = std::time::Instant::now() + WAIT;
    loop {
        let got = spans(otlp);
        if done(&got) {
            return got;
        }
        let names: Vec<&str> = got.iter().map(|s| s.name.as_str()).collect();
        assert!(std::time::Instant::now() < end, "spans so far: {names:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// busbar on `dir`, exporting to `otlp` at `path`, with `extra` settings.
fn traced(dir: &std::path::Path, otlp: &Target, path: &str, extra: &[(&str, &str)]) -> Server {
    let endpoint = otlp.url(path);
    let mut env = vec![("BUSBAR_TRACING_OTLP_ENDPOINT", endpoint.as_str())];
    env.extend_from_slice(extra);
    Server::start(dir, &[], &env)
}

fn publish_traced(s: &Server, topic: &str, body: serde_json::Value) {
    let tp = format!("00-{TRACE}-{CALLER}-01");
    let headers = [
        ("content-type", "application/json"),
        ("traceparent", tp.as_str()),
        ("tracestate", "vendor=1"),
    ];
    let path = format!("/topics/{topic}/events");
    let bytes = body.to_string().into_bytes();
    let r = busbar_testkit::http::request(s.addr, "POST", &path, &headers, &bytes).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn publish_attempts_retries_and_dead_letters_are_spans_of_one_trace() {
    let otlp = Target::ok();
    // The first attempt fails (503), the retry is delivered.
    let target = Target::start(|_, n| Reply::Status(if n == 0 { 503 } else { 200 }));
    let refusing = Target::start(|_, _| Reply::Status(400));
    let dir = tempfile::tempdir().unwrap();
    let s = traced(
        dir.path(),
        &otlp,
        "",
        &[
            ("BUSBAR_TRACING_SERVICE_NAME", "busbar-test"),
            ("BUSBAR_TRACING_EXPORT_INTERVAL_MS", "100"),
        ],
    );
    topics(&s, &[("orders", 1), ("dlq", 1)]);
    let delivery = json!({"backoff_initial_ms": 50, "backoff_max_ms": 50});
    subscribe(
        &s,
        json!({"name": "ship", "sources": ["orders"], "target": {"url": target.url("/hook?token=secret")},
            "delivery": delivery}),
    );
    subscribe(
        &s,
        json!({"name": "audit", "sources": ["orders"], "target": {"url": refusing.url("/")},
            "dead_letter_topic": "dlq", "delivery": delivery}),
    );
    publish_traced(&s, "orders", json!({"key": "k", "value": {"n": 1}}));
    let got = target.wait(WAIT, |r| r.len() == 2);
    let all = wait_spans(&otlp, |all| {
        [
            "publish orders",
            "deliver ship",
            "retry ship",
            "deliver audit",
            "dead_letter audit",
        ]
        .iter()
        .all(|n| all.iter().any(|s| s.name == *n))
    });
    let one = |name: &str| {
        let v: Vec<&Span> = all.iter().filter(|s| s.name == name).collect();
        assert_eq!(v.len(), 1, "{name}: {v:?}");
        v[0].clone()
    };
    // All of one trace: the caller's.
    assert!(all.iter().all(|s| hex(&s.trace_id) == TRACE), "{all:?}");
    let publish = one("publish orders");
    assert_eq!(hex(&publish.parent_span_id), CALLER);
    assert_eq!(publish.trace_state, "vendor=1");
    assert_eq!(
        attr(&publish, "messaging.destination.name"),
        Some(Any::StringValue("orders".into()))
    );
    assert_eq!(
        attr(&publish, "messaging.batch.message_count"),
        Some(Any::IntValue(1))
    );
    // Both attempts are children of the publish; the first failed, the retry did not.
    let (first, retry) = (one("deliver ship"), one("retry ship"));
    for (span, attempt) in [(&first, 1), (&retry, 2)] {
        assert_eq!(hex(&span.parent_span_id), hex(&publish.span_id));
        assert_eq!(
            attr(span, "busbar.delivery.attempt"),
            Some(Any::IntValue(attempt))
        );
        // Host and port only: the path and query may hold a secret.
        assert_eq!(
            attr(span, "server.address"),
            Some(Any::StringValue("127.0.0.1".into()))
        );
        assert_eq!(
            attr(span, "server.port"),
            Some(Any::IntValue(i64::from(target.addr.port())))
        );
        assert!(
            !format!("{span:?}").contains("secret") && !format!("{span:?}").contains("hook"),
            "{span:?}"
        );
    }
    assert_eq!(
        attr(&first, "http.response.status_code"),
        Some(Any::IntValue(503))
    );
    assert_eq!(first.status.as_ref().map(|s| s.code), Some(2), "error");
    assert_eq!(
        attr(&retry, "busbar.delivery.outcome"),
        Some(Any::StringValue("delivered".into()))
    );
    // The target saw each attempt's span as its parent.
    let parent_of = |r: &Received| r.header("traceparent").unwrap().to_string();
    assert_eq!(
        parent_of(&got[0]),
        format!("00-{TRACE}-{}-01", hex(&first.span_id))
    );
    assert_eq!(
        parent_of(&got[1]),
        format!("00-{TRACE}-{}-01", hex(&retry.span_id))
    );
    assert_eq!(got[1].header("tracestate"), Some("vendor=1"));
    // 400 is not retried: one attempt, then the dead letter, both under the publish.
    let (refused, letter) = (one("deliver audit"), one("dead_letter audit"));
    assert_eq!(hex(&refused.parent_span_id), hex(&publish.span_id));
    assert_eq!(hex(&letter.parent_span_id), hex(&publish.span_id));
    assert_eq!(
        attr(&letter, "busbar.dead_letter.reason"),
        Some(Any::StringValue("http_status".into()))
    );
    assert_eq!(
        attr(&letter, "messaging.destination.name"),
        Some(Any::StringValue("dlq".into()))
    );
    // The stored event carries the publish span's context, for Kafka consumers too.
    let (_, page) = s.http("GET", "/topics/orders/partitions/0/events?offset=0", None);
    let headers = &page["events"][0]["headers"];
    assert_eq!(
        headers[0],
        json!({"key": "traceparent", "value": format!("00-{TRACE}-{}-01", hex(&publish.span_id))}),
        "{page}"
    );
    // A publish to a topic that does not exist (a name the client chose, 60,000 bytes long) is
    // a failed span named without it; no text in any span passes 256 bytes.
    let long = "a".repeat(60_000);
    let r = busbar_testkit::http::request(
        s.addr,
        "POST",
        &format!("/topics/{long}/events"),
        &[("content-type", "application/json")],
        b"{\"value\": 1}",
    )
    .unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    let all = wait_spans(&otlp, |all| all.iter().any(|s| s.name == "publish "));
    for span in &all {
        assert!(span.name.len() <= 256, "{}", span.name.len());
        let status = span.status.as_ref().map(|s| s.message.len()).unwrap_or(0);
        assert!(status <= 256, "{status}");
        for a in &span.attributes {
            if let Some(Any::StringValue(v)) = a.value.clone().and_then(|v| v.value) {
                assert!(v.len() <= 256, "{}: {}", a.key, v.len());
            }
        }
    }
    assert_eq!(s.stop(), 0);
}

#[test]
fn without_an_endpoint_nothing_is_sent_and_the_context_still_travels() {
    let target = Target::ok();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("orders", 1)]);
    subscribe(
        &s,
        json!({"name": "ship", "sources": ["orders"], "target": {"url": target.url("/")}}),
    );
    publish_traced(&s, "orders", json!({"value": 1}));
    let got = target.wait(WAIT, |r| r.len() == 1);
    let tp = got[0].header("traceparent").unwrap();
    assert!(tp.starts_with(&format!("00-{TRACE}-")), "{tp}");
    assert!(!tp.contains(CALLER), "a child, not the caller: {tp}");
    assert_eq!(s.stop(), 0);
}

#[test]
fn a_bad_tracing_setting_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (k, v, want) in [
        (
            "BUSBAR_TRACING_OTLP_ENDPOINT",
            "ftp://c:4318",
            "tracing.otlp_endpoint",
        ),
        ("BUSBAR_TRACING_SAMPLE_RATIO", "2", "tracing.sample_ratio"),
        ("BUSBAR_TRACING_QUEUE_MAX", "0", "tracing.queue_max"),
        (
            "BUSBAR_TRACING_SAMPLE_RATIO",
            "half",
            "tracing.sample_ratio",
        ),
        (
            "BUSBAR_TRACING_OTLP_ENDPOINT",
            "http://u:secret@c:4318/#x",
            "tracing.otlp_endpoint",
        ),
    ] {
        let (code, err) = refused_start_with(dir.path(), &[(k, v)]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(want), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }
}

#[test]
fn a_sample_ratio_from_the_environment_may_be_a_fraction_and_the_stop_sends_the_last_spans() {
    // The collector answers slowly; the last spans wait for the stop (no periodic export).
    let otlp = Target::start(|_, _| Reply::After(Duration::from_millis(1500), 200));
    let dir = tempfile::tempdir().unwrap();
    let s = traced(
        dir.path(),
        &otlp,
        "/v1/traces/",
        &[
            ("BUSBAR_TRACING_SERVICE_NAME", "busbar-test"),
            ("BUSBAR_TRACING_SAMPLE_RATIO", "0.5"),
            ("BUSBAR_TRACING_EXPORT_INTERVAL_MS", "600000"),
            ("BUSBAR_TRACING_EXPORT_TIMEOUT_MS", "4000"),
        ],
    );
    topics(&s, &[("orders", 1)]);
    // Sampled by the caller: recorded whatever the ratio.
    publish_traced(&s, "orders", json!({"value": 1}));
    assert!(spans(&otlp).is_empty());
    assert_eq!(s.stop(), 0);
    let all = spans(&otlp);
    assert!(all.iter().any(|s| s.name == "publish orders"), "{all:?}");
}

#[test]
fn a_collector_that_refuses_is_logged_once_not_per_export() {
    let otlp = Target::start(|_, _| Reply::Status(500));
    let dir = tempfile::tempdir().unwrap();
    let s = traced(
        dir.path(),
        &otlp,
        "",
        &[("BUSBAR_TRACING_EXPORT_INTERVAL_MS", "50")],
    );
    topics(&s, &[("orders", 1)]);
    for _ in 0..5 {
        publish_traced(&s, "orders", json!({"value": 1}));
        otlp.wait(WAIT, |r| !r.is_empty());
        std::thread::sleep(Duration::from_millis(120));
    }
    assert!(otlp.received().len() >= 3, "{}", otlp.received().len());
    let lines = s.log_lines("tracing: sending");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("spans to the collector failed"),
        "{lines:?}"
    );
    assert_eq!(s.stop(), 0);
}
