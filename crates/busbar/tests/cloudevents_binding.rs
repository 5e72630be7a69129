//! The CloudEvents HTTP and Kafka bindings through the real binary (issue 14 item 23): `ce-*`
//! header values are percent-encoded on delivery as the HTTP binding says and decoded on ingest;
//! ingest refuses attributes of the wrong type and bad extension values, naming the attribute,
//! and stores nothing; `ce_` headers of stored events are read whatever their case.

mod common;

use busbar_testkit::target::Target;
use common::*;
use serde_json::json;

fn post(s: &Server, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let r =
        busbar_testkit::http::request(s.addr, "POST", "/topics/in/events", headers, body).unwrap();
    (r.status, r.text())
}

#[test]
fn ce_header_values_are_percent_encoded_on_delivery_and_decoded_on_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("in", 1)]);
    let t = Target::ok();
    // The pattern sees the decoded subject.
    subscribe(
        &s,
        json!({"name": "euro", "sources": ["in"], "pattern": {"subject": ["Euro € 😀"]},
               "target": {"url": t.url("/euro")}}),
    );
    let (st, body) = post(
        &s,
        &[
            ("content-type", "application/json; charset=utf-8"),
            ("ce-specversion", "1.0"),
            ("ce-id", "e 1"),
            ("ce-source", "/shop"),
            ("ce-type", "order.created"),
            ("ce-subject", "Euro%20%e2%82%ac%20%F0%9F%98%80"),
            ("ce-note", "\"100%25 \\\"sure\\\"\""),
        ],
        br#"{"total": 5}"#,
    );
    assert_eq!(st, 200, "{body}");
    let got = t.wait(WAIT, |r| r.len() == 1);
    let r = &got[0];
    assert_eq!(
        r.header("ce-subject"),
        Some("Euro%20%E2%82%AC%20%F0%9F%98%80")
    );
    assert_eq!(r.header("ce-id"), Some("e%201"));
    assert_eq!(r.header("ce-note"), Some("100%25%20%22sure%22"));
    assert_eq!(r.header("ce-source"), Some("/shop"));
    // Content-Type is not a ce- header: it travels as it is.
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(s.stop(), 0);
}

#[test]
fn ingest_refuses_attributes_of_the_wrong_type_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("in", 1)]);
    let structured = [("content-type", "application/cloudevents+json")];
    let base = r#""specversion":"1.0","id":"1","source":"/s","type":"t""#;
    for (extra, needle) in [
        (r#""time":1700000000"#, "`time` must be a string"),
        (r#""subject":5"#, "`subject` must be a string"),
        (r#""dataschema":true"#, "`dataschema` must be a string"),
        (
            r#""datacontenttype":7"#,
            "`datacontenttype` must be a string",
        ),
        (r#""ratio":0.5"#, "`ratio` is 0.5"),
        (r#""big":4294967296"#, "`big` is 4294967296"),
        (r#""note":"bell\u0007""#, "`note` holds U+0007"),
        (
            r#""tags":["a"]"#,
            "`tags` must be a string, integer or boolean",
        ),
        (r#""Bad_Name":"x""#, "`Bad_Name`"),
    ] {
        let body = format!("{{{base},{extra}}}");
        let (st, text) = post(&s, &structured, body.as_bytes());
        assert_eq!(st, 400, "{body} -> {text}");
        assert!(text.contains(needle), "{body} -> {text}");
    }
    let batch = format!(r#"[{{{base}}},{{{base},"subject":1}}]"#);
    let (st, text) = post(
        &s,
        &[("content-type", "application/cloudevents-batch+json")],
        batch.as_bytes(),
    );
    assert!(
        st == 400 && text.contains("event [1]: attribute `subject`"),
        "{text}"
    );
    let binary = |extra: (&'static str, &'static str)| {
        vec![
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
            extra,
        ]
    };
    for (extra, needle) in [
        (("ce-subject", "a%01b"), "`subject` holds U+0001"),
        (("ce-note", "%C2%85"), "`note` holds U+0085"),
        (("ce-data", "x"), "ce-data"),
        (("ce-bad-name", "x"), "`bad-name`"),
    ] {
        let (st, text) = post(&s, &binary(extra), b"{}");
        assert_eq!(st, 400, "{extra:?} -> {text}");
        assert!(text.contains(needle), "{extra:?} -> {text}");
    }
    assert_eq!(s.events_stored("in"), 0, "a refused event was stored");
    // Extension values of every CloudEvents type are accepted.
    let ok = format!(r#"{{{base},"n":-2147483648,"flag":true,"ref":"https://x/y","none":null}}"#);
    let (st, text) = post(&s, &structured, ok.as_bytes());
    assert_eq!(st, 200, "{text}");
    assert_eq!(s.stop(), 0);
}

#[test]
fn ce_headers_of_stored_events_are_read_whatever_their_case() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("in", 1), ("copy", 1)]);
    let t = Target::ok();
    subscribe(
        &s,
        json!({"name": "typed", "sources": ["in"], "pattern": {"type": ["order.created"]},
               "target": {"url": t.url("/typed")}}),
    );
    subscribe(
        &s,
        json!({"name": "structured", "sources": ["in"], "pattern": {"source": ["/upper"]},
               "target": {"url": t.url("/structured"), "mode": "structured"}}),
    );
    // A Kafka producer may write the binding's headers in any case.
    publish(
        &s,
        "in",
        json!({"value": {"total": 5}, "headers": {
            "CE_SPECVERSION": "1.0", "Ce_Id": "abc", "ce_SOURCE": "/shop",
            "CE_TYPE": "order.created", "content-type": "application/json"}}),
    );
    let event = r#"{"specversion":"1.0","id":"s1","source":"/upper","type":"x","data":{"a":1}}"#;
    publish(
        &s,
        "in",
        json!({"value": serde_json::from_str::<serde_json::Value>(event).unwrap(),
               "headers": {"Content-Type": "Application/CloudEvents+JSON"}}),
    );
    let got = t.wait(WAIT, |r| r.len() == 2);
    let typed = got.iter().find(|r| r.path == "/typed").unwrap();
    assert_eq!(typed.header("ce-id"), Some("abc"));
    assert_eq!(typed.header("ce-source"), Some("/shop"));
    assert_eq!(typed.header("ce-type"), Some("order.created"));
    let st = got.iter().find(|r| r.path == "/structured").unwrap();
    assert_eq!(st.json()["id"], "s1");
    assert_eq!(st.json()["data"], json!({"a": 1}));
    assert_eq!(s.stop(), 0);
}
