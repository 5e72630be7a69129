//! Events are stored as sent (issue 15 items 1-3, the HTTP side), through the real binary: JSON
//! keys and values keep their text (spacing, key order, `1e3`, `1.50`, big integers), CloudEvents in
//! structured mode keep theirs; `text/plain` and `application/octet-stream` bodies are one event
//! (key from `?key=`, headers from `x-busbar-header-*`); reads show JSON as JSON, text as a string,
//! other bytes as base64, and `?encoding=` forces one. (Kafka consumers read the same bytes: kcat in
//! `tests/clients/run.py`, `http_json_and_cloudevents_reach_kafka_as_sent`.)

mod common;

use base64::Engine;
use busbar_testkit::http::{request, Response};
use common::*;
use serde_json::{json, Value};

fn post(s: &Server, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    request(s.addr, "POST", path, headers, body).unwrap()
}

fn get(s: &Server, path: &str) -> (u16, String) {
    let r = request(s.addr, "GET", path, &[], b"").unwrap();
    (r.status, r.text())
}

fn events(s: &Server, path: &str) -> Vec<Value> {
    let (st, body) = get(s, path);
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["events"].as_array().unwrap().clone()
}

fn unbase64(v: &Value) -> String {
    let b = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap();
    String::from_utf8(b).unwrap()
}

const JSON_BODY: &str = r#"[
  {"key": "k", "value": {"b": 1,  "a": 2}},
  {"value": 1e3},
  {"value": 1.50},
  {"value": 12345678901234567890123},
  {"key": {"id": 7}, "value": "text"}
]"#;

const SENT: [&str; 5] = [
    r#"{"b": 1,  "a": 2}"#,
    "1e3",
    "1.50",
    "12345678901234567890123",
    r#""text""#,
];

#[test]
fn json_keys_and_values_are_stored_and_read_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("t", 1)]);
    let json = [("content-type", "application/json")];
    let r = post(&s, "/topics/t/events", &json, JSON_BODY.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());

    // The stored bytes, as a Kafka fetch returns them.
    let evs = events(&s, "/topics/t/partitions/0/events?encoding=base64");
    let stored: Vec<String> = evs.iter().map(|e| unbase64(&e["value_base64"])).collect();
    assert_eq!(stored, SENT);
    assert_eq!(unbase64(&evs[0]["key_base64"]), "k");
    assert_eq!(unbase64(&evs[4]["key_base64"]), r#"{"id": 7}"#);

    // The default read copies the JSON text into the answer.
    let (st, body) = get(&s, "/topics/t/partitions/0/events");
    assert_eq!(st, 200, "{body}");
    for sent in SENT {
        assert!(
            body.contains(&format!(r#""value":{sent}"#)),
            "{sent} in {body}"
        );
    }
    assert!(body.contains(r#""key":{"id": 7}"#), "{body}");

    // Forced text: each value as the string it is.
    let evs = events(&s, "/topics/t/partitions/0/events?encoding=utf8");
    let texts: Vec<&str> = evs.iter().map(|e| e["value"].as_str().unwrap()).collect();
    assert_eq!(texts, SENT);

    // CloudEvents in structured mode and in a batch keep their text too.
    let ce = r#"{"specversion": "1.0", "id": "1", "source": "/s", "type": "t",
                 "data": {"z": 1.50, "a": 1e3}}"#;
    let ct = [("content-type", "application/cloudevents+json")];
    assert_eq!(post(&s, "/topics/t/events", &ct, ce.as_bytes()).status, 200);
    let batch = format!("[{ce} , {ce}]");
    let ct = [("content-type", "application/cloudevents-batch+json")];
    assert_eq!(
        post(&s, "/topics/t/events", &ct, batch.as_bytes()).status,
        200
    );
    let evs = events(&s, "/topics/t/partitions/0/events?offset=5&encoding=base64");
    let stored: Vec<String> = evs.iter().map(|e| unbase64(&e["value_base64"])).collect();
    assert_eq!(stored, [ce, ce, ce]);
    assert_eq!(s.stop(), 0);
}

#[test]
fn plain_bodies_are_one_event_keyed_by_the_query_with_header_headers() {
    let dir = tempfile::tempdir().unwrap();
    let limit = [("BUSBAR_HTTP_PUBLISH_BYTES_MAX", "1024")];
    let s = Server::start(dir.path(), &[], &limit);
    topics(&s, &[("p", 2)]);
    let r = post(
        &s,
        "/topics/p/events?key=k1&partition=1",
        &[
            ("content-type", "text/plain; charset=utf-8"),
            ("x-busbar-header-trace", "t1"),
            ("X-Busbar-Header-Source", "shop"),
        ],
        b"hello  world\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let ct = [("content-type", "application/octet-stream")];
    let r = post(&s, "/topics/p/events?partition=1", &ct, &[0, 1, 2, 255]);
    assert_eq!(r.status, 200, "{}", r.text());
    let evs = events(&s, "/topics/p/partitions/1/events?encoding=utf8");
    assert_eq!(evs[0]["value"], "hello  world\n");
    assert_eq!(evs[0]["key"], "k1");
    assert_eq!(
        evs[0]["headers"],
        json!([{"key": "trace", "value": "t1"}, {"key": "source", "value": "shop"}])
    );
    assert_eq!(evs[1]["value_base64"], "AAEC/w==");
    assert!(evs[1]["value_error"]
        .as_str()
        .unwrap()
        .contains("not UTF-8"));
    assert_eq!(evs[1]["key"], Value::Null);

    // Refused, and nothing stored: other media types, plain-only inputs on JSON bodies, a plain
    // body with ce-* headers but no specversion, a body over the limit, a bad partition.
    let refusals: [(&str, &str, &[u8], u16, &str); 6] = [
        (
            "/topics/p/events",
            "application/xml",
            b"<a/>",
            415,
            "text/plain",
        ),
        (
            "/topics/p/events?key=k",
            "application/json",
            b"{}",
            400,
            "`key`",
        ),
        ("/topics/p/events", "text/plain", b"x", 400, "specversion"),
        ("/topics/p/events", "text/plain", &[b'x'; 1025], 413, "1024"),
        (
            "/topics/p/events?partition=x",
            "text/plain",
            b"x",
            400,
            "`partition`",
        ),
        ("/topics/p/events?nope=1", "text/plain", b"x", 400, "nope"),
    ];
    for (path, ct, body, status, needle) in refusals {
        let mut h = vec![("content-type", ct)];
        if needle == "specversion" {
            h.push(("ce-id", "1"));
        }
        let r = post(&s, path, &h, body);
        assert_eq!(r.status, status, "{path} {ct}: {}", r.text());
        assert!(r.text().contains(needle), "{needle} in {}", r.text());
    }
    assert_eq!(s.events_stored("p"), 2);
    assert_eq!(s.stop(), 0);
}

#[test]
fn reads_show_json_text_or_base64_and_encoding_forces_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("r", 1)]);
    let json = [("content-type", "application/json")];
    let text = [("content-type", "text/plain")];
    let octets = [("content-type", "application/octet-stream")];
    post(
        &s,
        "/topics/r/events",
        &json,
        br#"{"key": 42, "value": {"a":1}}"#,
    );
    post(&s, "/topics/r/events?key=k", &text, b"plain text");
    post(&s, "/topics/r/events", &octets, &[0xff]);
    post(&s, "/topics/r/events", &text, b"null");
    post(&s, "/topics/r/events", &json, br#"{"key": "gone"}"#);
    assert_eq!(s.events_stored("r"), 5);

    let pick = |evs: &[Value], f: &str| evs.iter().map(|e| e[f].clone()).collect::<Vec<_>>();
    let auto = events(&s, "/topics/r/partitions/0/events");
    // JSON as JSON, other text as a string (the stored text `null` too), binary as base64.
    assert_eq!(auto[0]["value"], json!({"a": 1}));
    assert_eq!(auto[1]["value"], "plain text");
    assert_eq!(auto[2]["value_base64"], "/w==");
    assert_eq!(auto[3]["value"], "null");
    assert_eq!(auto[4]["value"], Value::Null, "a tombstone is null");
    assert_eq!(pick(&auto, "key")[..2], [json!(42), json!("k")]);

    let forced = events(&s, "/topics/r/partitions/0/events?encoding=json");
    assert_eq!(forced[0]["value"], json!({"a": 1}));
    assert_eq!(forced[1]["value_base64"], "cGxhaW4gdGV4dA==");
    assert!(forced[1]["value_error"]
        .as_str()
        .unwrap()
        .contains("not a JSON document"));
    assert_eq!(forced[1]["key_base64"], "aw==");

    let forced = events(&s, "/topics/r/partitions/0/events?encoding=utf8");
    assert_eq!(
        pick(&forced, "value")[..2],
        [json!(r#"{"a":1}"#), json!("plain text")]
    );
    assert_eq!(forced[0]["key"], "42");
    assert!(forced[2]["value_error"]
        .as_str()
        .unwrap()
        .contains("not UTF-8"));
    assert_eq!(forced[4]["value"], Value::Null, "a tombstone stays null");

    let (st, body) = get(&s, "/topics/r/partitions/0/events?encoding=hex");
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("auto, json, utf8, base64"), "{body}");

    // Consumer instances take the same parameter.
    let (st, c) = s.http(
        "POST",
        "/groups/g/consumers",
        Some(json!({"topics": ["r"], "start": "earliest"})),
    );
    assert!(st < 300, "{st} {c}");
    let id = c["consumer_id"].as_str().unwrap();
    let evs = events(
        &s,
        &format!("/groups/g/consumers/{id}/events?wait_ms=2000&encoding=base64"),
    );
    assert_eq!(evs.len(), 5);
    assert_eq!(evs[0]["value_base64"], "eyJhIjoxfQ==");
    assert_eq!(s.stop(), 0);
}

/// `busbar produce` sends each JSON argument as typed; `null` is the 4-byte text; `--tombstone`
/// sends a value-less event (issue 15 item 1, the CLI side).
#[test]
fn the_cli_produces_values_as_typed_and_tombstones_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("t", 1)]);
    let args = [
        "produce",
        "t",
        "-k",
        "k",
        r#"{"b": 1,  "a": 2}"#,
        "1e3",
        "1.50",
        "null",
    ];
    let out = s.cli(&args);
    assert!(out.status.success(), "{out:?}");
    let out = s.cli_stdin(&["produce", "t", "--tombstone"], "gone\n");
    assert!(out.status.success(), "{out:?}");
    let out = s.cli(&["produce", "t", "--tombstone", "-k", "also-gone"]);
    assert!(out.status.success(), "{out:?}");
    let evs = events(&s, "/topics/t/partitions/0/events?encoding=base64");
    assert_eq!(evs.len(), 6, "{evs:?}");
    let sent: Vec<String> = evs[..4]
        .iter()
        .map(|e| unbase64(&e["value_base64"]))
        .collect();
    assert_eq!(sent, [r#"{"b": 1,  "a": 2}"#, "1e3", "1.50", "null"]);
    for (e, key) in evs[4..].iter().zip(["gone", "also-gone"]) {
        assert_eq!(unbase64(&e["key_base64"]), key, "{e}");
        assert!(
            e["value"].is_null() && e.get("value_base64").is_none(),
            "{e}"
        );
    }
}

/// `busbar consume` prints each value as stored: JSON as it was sent, text without quotes.
#[test]
fn the_cli_consumes_values_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("t", 1)]);
    let out = s.cli(&[
        "produce",
        "t",
        r#"{"b": 1,  "a": 2}"#,
        "plain words",
        "1.50",
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = s.cli(&["consume", "t", "-n", "3"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, [r#"{"b": 1,  "a": 2}"#, "plain words", "1.50"]);
}

/// The raw text of each event of a read answer, as the server sent it.
fn raw_events(body: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Page<'a> {
        #[serde(borrow)]
        events: Vec<&'a serde_json::value::RawValue>,
    }
    let page: Page = serde_json::from_str(body).unwrap();
    page.events.iter().map(|e| e.get().to_string()).collect()
}

/// `busbar --output json consume` prints each event exactly as the server answered it: numbers
/// keep their text (`1e3`, a 23-digit integer), text shows as a string; with and without a group.
#[test]
fn the_cli_prints_events_as_json_exactly_as_the_server_sent_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("t", 1)]);
    let sent = r#"{"b": 1e3, "n": 12345678901234567890123}"#;
    let out = s.cli(&["produce", "t", "-k", "k1", sent, "plain text"]);
    assert!(out.status.success(), "{out:?}");
    let (st, body) = get(&s, "/topics/t/partitions/0/events?offset=0&limit=10");
    assert_eq!(st, 200, "{body}");
    let want = raw_events(&body);
    assert_eq!(want.len(), 2, "{body}");
    assert!(
        want[0].contains(&format!(r#""value":{sent}"#)),
        "{}",
        want[0]
    );
    assert!(want[1].contains(r#""value":"plain text""#), "{}", want[1]);
    let want = want.join("\n") + "\n";
    let out = s.cli(&["--output", "json", "consume", "t", "-n", "2"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), want);
    let out = s.cli(&[
        "--output", "json", "consume", "t", "--group", "g", "-n", "2",
    ]);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains(&format!(r#""value":{sent}"#)),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains(r#""value":"plain text""#), "{}", lines[1]);
}
