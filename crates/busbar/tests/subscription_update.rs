//! Changing a subscription through the real binary (issue 15 item 7): `subscription update`
//! changes only the fields given, `PATCH /subscriptions/{name}` merges (JSON merge patch), what
//! `subscription get --output json` prints can be sent back with `update --file`, `PUT` still
//! replaces, and bad input changes nothing.

mod common;

use busbar_testkit::target::Target;
use common::*;
use serde_json::{json, Value};

/// What `GET /subscriptions/{name}` adds to the spec (read-only).
const READ_ONLY: &[&str] = &[
    "state",
    "created",
    "updated",
    "lag",
    "retrying",
    "last_failure",
    "counters",
    "owner",
    "config_file",
];

/// The spec part of a subscription as `GET` answers it.
fn spec_of(v: &Value) -> Value {
    let mut m = v.as_object().unwrap().clone();
    for k in READ_ONLY {
        m.remove(*k);
    }
    Value::Object(m)
}

fn spec(s: &Server, name: &str) -> Value {
    let (st, v) = s.http("GET", &format!("/subscriptions/{name}"), None);
    assert_eq!(st, 200, "{v}");
    spec_of(&v)
}

fn server_with_subscription() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("src", 1), ("out", 1), ("out2", 1), ("dlq", 1)]);
    subscribe(
        &s,
        json!({"name": "s", "sources": ["src"], "target": {"topic": "out"},
               "pattern": {"data": {"kind": ["a"]}},
               "delivery": {"max_attempts": 10, "backoff_initial_ms": 2000},
               "dead_letter_topic": "dlq"}),
    );
    (dir, s)
}

#[test]
fn the_cli_updates_only_the_fields_given() {
    let (_dir, s) = server_with_subscription();
    let before = spec(&s, "s");
    let o = s.cli(&["subscription", "update", "s", "--max-attempts", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let after = spec(&s, "s");
    let mut want = before.clone();
    want["delivery"]["max_attempts"] = json!(3);
    assert_eq!(after, want);
    // The target may change alone too; the rest stays.
    let o = s.cli(&["subscription", "update", "s", "--to-topic", "out2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    want["target"] = json!({"topic": "out2"});
    assert_eq!(spec(&s, "s"), want);
    assert_eq!(s.stop(), 0);
}

#[test]
fn a_subscription_read_as_json_round_trips_through_update() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("src", 1)]);
    let t = Target::ok();
    let o = s.cli(&[
        "subscription",
        "create",
        "hook",
        "--source",
        "src",
        "--to-url",
        &t.url("/h"),
        "--header",
        "x-api-key=secret",
        "--max-attempts",
        "7",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = s.cli(&["--output", "json", "subscription", "get", "hook"]);
    let file = dir.path().join("s.json");
    std::fs::write(&file, &got.stdout).unwrap();
    let before = spec(&s, "hook");
    let arg = format!("@{}", file.display());
    let o = s.cli(&["subscription", "update", "hook", "--file", &arg]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(spec(&s, "hook"), before);
    // The masked header value kept the stored one: deliveries still carry it.
    publish(&s, "src", json!({"value": {"n": 1}}));
    let r = t.wait(WAIT, |r| !r.is_empty());
    assert_eq!(r[0].header("x-api-key"), Some("secret"));
    // An edited file changes what was edited; a flag wins over the file.
    let mut edited: Value = serde_json::from_slice(&got.stdout).unwrap();
    edited["delivery"]["max_attempts"] = json!(4);
    edited["delivery"]["timeout_ms"] = json!(1234);
    std::fs::write(&file, edited.to_string()).unwrap();
    let o = s.cli(&[
        "subscription",
        "update",
        "hook",
        "--file",
        &arg,
        "--timeout-ms",
        "999",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let after = spec(&s, "hook");
    assert_eq!(after["delivery"]["max_attempts"], 4);
    assert_eq!(after["delivery"]["timeout_ms"], 999);
    assert_eq!(after["target"]["headers"]["x-api-key"], "***");
    assert_eq!(s.stop(), 0);
}

#[test]
fn patch_merges_given_fields_and_null_removes_or_resets() {
    let (_dir, s) = server_with_subscription();
    let before = spec(&s, "s");
    let patch = |body: Value| s.http("PATCH", "/subscriptions/s", Some(body));
    let (st, v) = patch(json!({"delivery": {"max_attempts": 5}}));
    assert_eq!(st, 200, "{v}");
    let mut want = before.clone();
    want["delivery"]["max_attempts"] = json!(5);
    assert_eq!(spec_of(&v), want);
    // null removes an optional field and resets a defaulted one.
    let (st, v) = patch(json!({"pattern": null, "delivery": {"backoff_initial_ms": null}}));
    assert_eq!(st, 200, "{v}");
    want.as_object_mut().unwrap().remove("pattern");
    want["delivery"]["backoff_initial_ms"] = json!(1000);
    assert_eq!(spec_of(&v), want);
    // A target of another kind replaces the target; read-only fields are ignored.
    let t = Target::ok();
    let (st, v) = patch(json!({"target": {"url": t.url("/x")}, "state": "paused", "lag": 99}));
    assert_eq!(st, 200, "{v}");
    want["target"] = json!({"url": t.url("/x"), "mode": "binary"});
    assert_eq!(spec_of(&v), want);
    assert_ne!(v["state"], "paused");
    assert_eq!(s.stop(), 0);
}

#[test]
fn a_bad_patch_is_refused_with_the_field_and_changes_nothing() {
    let (_dir, s) = server_with_subscription();
    let before = spec(&s, "s");
    for (body, needle) in [
        (
            json!({"delivery": {"max_attempts": "x"}}),
            "delivery.max_attempts",
        ),
        (
            json!({"delivery": {"max_attempts": 0}}),
            "delivery.max_attempts",
        ),
        (json!({"sources": null}), "sources"),
        (json!({"target": null}), "target"),
        (json!({"name": "other"}), "name"),
        (json!({"colour": "red"}), "colour"),
        (json!({"target": {"topic": "src"}}), "loop"),
        (json!({"target": {"topic": "nope"}}), "unknown topic"),
        (json!([1, 2]), "object"),
    ] {
        let (st, v) = s.http("PATCH", "/subscriptions/s", Some(body.clone()));
        assert_eq!(st, 400, "{body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{body}: {msg}");
        assert_eq!(spec(&s, "s"), before, "{body} changed the subscription");
    }
    let (st, _) = s.http("PATCH", "/subscriptions/nope", Some(json!({})));
    assert_eq!(st, 404);
    assert_eq!(s.stop(), 0);
}

#[test]
fn put_still_replaces_the_whole_spec_and_takes_the_read_form() {
    let (_dir, s) = server_with_subscription();
    let (st, v) = s.http(
        "PUT",
        "/subscriptions/s",
        Some(json!({"sources": ["src"], "target": {"topic": "out"}})),
    );
    assert_eq!(st, 200, "{v}");
    assert!(v.get("pattern").is_none(), "{v}");
    assert_eq!(v["delivery"]["max_attempts"], 20);
    // What GET answers can be PUT back as is.
    let (_, read) = s.http("GET", "/subscriptions/s", None);
    let (st, v) = s.http("PUT", "/subscriptions/s", Some(read.clone()));
    assert_eq!(st, 200, "{v}");
    assert_eq!(spec_of(&v), spec_of(&read));
    assert_eq!(s.stop(), 0);
}

#[test]
fn header_and_mode_without_to_url_are_usage_errors() {
    let (_dir, s) = server_with_subscription();
    let before = spec(&s, "s");
    for args in [
        &["subscription", "update", "s", "--header", "a=b"][..],
        &["subscription", "update", "s", "--mode", "structured"],
        &[
            "subscription",
            "create",
            "x",
            "--source",
            "src",
            "--to-topic",
            "out",
            "--mode",
            "structured",
        ],
    ] {
        let o = s.cli(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("--to-url"), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(spec(&s, "s"), before);
    assert_eq!(s.http("GET", "/subscriptions/x", None).0, 404);
    assert_eq!(s.stop(), 0);
}
