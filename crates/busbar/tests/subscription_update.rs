//! Changing a subscription through the real binary (issue 15 item 7): `subscription update`
//! changes only the fields given, `PATCH /subscriptions/{name}` merges (JSON merge patch), what
//! `subscription get --output json` prints can be sent back with `update --file`, `PUT` still
//! replaces, and bad input changes nothing. Review fixes: stored header values do not follow a
//! target to another origin, a read sent back restarts nothing, read-only fields are not
//! silently ignored, the CLI sends wrong types for the server to refuse, and subscription writes
//! on a full disk answer the documented 507.

mod common;

use busbar_testkit::target::Target;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What `GET /subscriptions/{name}` adds to the spec (read-only).
const READ_ONLY: &[&str] = &[
    "state",
    "guarantee",
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
    // A target of another kind replaces the target; read-only fields that move on their own
    // (lag) are accepted with another value of their shape, and change nothing.
    let t = Target::ok();
    let (st, v) = patch(json!({"target": {"url": t.url("/x")}, "state": "running", "lag": 99}));
    assert_eq!(st, 200, "{v}");
    want["target"] = json!({"url": t.url("/x"), "mode": "binary"});
    assert_eq!(spec_of(&v), want);
    assert_ne!(v["lag"], 99);
    assert_eq!(v["guarantee"], "at_least_once", "an HTTP target: {v}");
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

/// An HTTP subscription `hook` from `src` to `t` with the secret header `x-api-key`.
fn server_with_hook(t: &Target) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("src", 1), ("dlq", 1)]);
    subscribe(
        &s,
        json!({"name": "hook", "sources": ["src"], "dead_letter_topic": "dlq",
               "target": {"url": t.url("/h"), "headers": {"x-api-key": "secret"}}}),
    );
    (dir, s)
}

#[test]
fn stored_header_values_do_not_follow_the_target_to_another_origin() {
    let (t1, t2) = (Target::ok(), Target::ok());
    let (_dir, s) = server_with_hook(&t1);
    let before = spec(&s, "hook");
    // Only a new URL (another port: another origin): the secret would go to the new host.
    for body in [
        json!({"target": {"url": t2.url("/h")}}),
        json!({"target": {"url": t2.url("/h"), "mode": "structured"}}),
        json!({"target": {"url": t2.url("/h"), "headers": {"x-other": "1"}}}),
        json!({"target": {"url": t2.url("/h"), "headers": {"x-api-key": "***"}}}),
    ] {
        let (st, v) = s.http("PATCH", "/subscriptions/hook", Some(body.clone()));
        assert_eq!(st, 400, "{body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("target.headers.x-api-key"), "{body}: {msg}");
        assert_eq!(spec(&s, "hook"), before, "{body} changed the subscription");
    }
    // The CLI's update is a PATCH: refused the same way, exit 1 with the server's message.
    let o = s.cli(&["subscription", "update", "hook", "--to-url", &t2.url("/h")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("target.headers.x-api-key"),
        "{}",
        stderr(&o)
    );
    assert_eq!(spec(&s, "hook"), before);
    // The same origin with another path keeps the stored value.
    let (st, v) = s.http(
        "PATCH",
        "/subscriptions/hook",
        Some(json!({"target": {"url": t1.url("/other")}})),
    );
    assert_eq!(st, 200, "{v}");
    publish(&s, "src", json!({"value": {"n": 1}}));
    let r = t1.wait(WAIT, |r| !r.is_empty());
    assert_eq!(r[0].header("x-api-key"), Some("secret"));
    // Given again for the new origin: that value goes there, never the stored one.
    let body = json!({"target": {"url": t2.url("/h"), "headers": {"x-api-key": "new"}}});
    let (st, v) = s.http("PATCH", "/subscriptions/hook", Some(body));
    assert_eq!(st, 200, "{v}");
    publish(&s, "src", json!({"value": {"n": 2}}));
    let r = t2.wait(WAIT, |r| !r.is_empty());
    assert_eq!(r[0].header("x-api-key"), Some("new"));
    // A PUT replaces the whole target: one without headers sends none.
    let t3 = Target::ok();
    let (st, v) = s.http(
        "PUT",
        "/subscriptions/hook",
        Some(json!({"sources": ["src"], "target": {"url": t3.url("/h")}})),
    );
    assert_eq!(st, 200, "{v}");
    publish(&s, "src", json!({"value": {"n": 3}}));
    let r = t3.wait(WAIT, |r| !r.is_empty());
    assert_eq!(r[0].header("x-api-key"), None);
    assert!(t2
        .received()
        .iter()
        .all(|r| r.header("x-api-key") == Some("new")));
    assert_eq!(s.stop(), 0);
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn a_read_sent_back_as_patch_or_put_restarts_nothing() {
    let t = Target::ok();
    let (_dir, s) = server_with_hook(&t);
    let from = busbar_broker::time::format_rfc3339(now_ms() - 1000);
    let events: Vec<Value> = (0..20).map(|n| json!({"value": {"n": n}})).collect();
    publish(&s, "src", json!(events));
    t.wait(WAIT, |r| r.len() >= 20);
    std::thread::sleep(Duration::from_millis(20));
    let to = busbar_broker::time::format_rfc3339(now_ms());
    // A replay at 2 events a second runs for 10 s; any restart of the worker stops it.
    let (st, v) = s.http(
        "POST",
        "/subscriptions/hook/replays",
        Some(json!({"name": "r", "from": from, "to": to, "rate": 2})),
    );
    assert_eq!(st, 202, "{v}");
    let (_, read) = s.http("GET", "/subscriptions/hook", None);
    assert_eq!(read["target"]["headers"]["x-api-key"], "***", "{read}");
    for method in ["PATCH", "PUT"] {
        let (st, v) = s.http(method, "/subscriptions/hook", Some(read.clone()));
        assert_eq!(st, 200, "{method}: {v}");
        assert_eq!(
            v["updated"], read["updated"],
            "{method} changed the subscription"
        );
        let (_, run) = s.http("GET", "/subscriptions/hook/replays/r", None);
        assert_eq!(
            run["state"], "RUNNING",
            "{method} restarted the worker: {run}"
        );
    }
    // Delivery goes on from where it was, with the stored header value.
    publish(&s, "src", json!({"value": {"n": "after"}}));
    let r = t.wait(WAIT, |r| r.iter().any(|x| x.json()["n"] == "after"));
    let after: Vec<_> = r.iter().filter(|x| x.json()["n"] == "after").collect();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].header("x-api-key"), Some("secret"));
    let (_, run) = s.http("GET", "/subscriptions/hook/replays/r", None);
    assert_eq!(run["state"], "RUNNING", "{run}");
    assert_eq!(s.stop(), 0);
}

#[test]
fn read_only_fields_with_a_value_a_read_could_not_show_are_refused() {
    let (_dir, s) = server_with_subscription();
    let before = spec(&s, "s");
    for (method, body, field) in [
        ("PATCH", json!({"state": "paused"}), "state"),
        ("PATCH", json!({"owner": "config"}), "owner"),
        (
            "PATCH",
            json!({"created": "2020-01-01T00:00:00Z"}),
            "created",
        ),
        (
            "PATCH",
            json!({"config_file": "/etc/busbar.toml"}),
            "config_file",
        ),
        ("PATCH", json!({"counters": "many"}), "counters"),
        ("PATCH", json!({"lag": -1}), "lag"),
        (
            "PUT",
            json!({"sources": ["src"], "target": {"topic": "out"}, "state": "paused"}),
            "state",
        ),
    ] {
        let (st, v) = s.http(method, "/subscriptions/s", Some(body.clone()));
        assert_eq!(st, 400, "{method} {body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(&format!("{field}: read-only")),
            "{body}: {msg}"
        );
        assert_eq!(spec(&s, "s"), before, "{body} changed the subscription");
    }
    let (_, read) = s.http("GET", "/subscriptions/s", None);
    assert_ne!(read["state"], "paused", "{read}");
    // A read sent back is accepted, also while paused (it then says "paused").
    assert_eq!(s.http("PATCH", "/subscriptions/s", Some(read)).0, 200);
    assert_eq!(
        s.http("POST", "/subscriptions/s/pause", Some(json!({}))).0,
        200
    );
    let (_, read) = s.http("GET", "/subscriptions/s", None);
    assert_eq!(read["state"], "paused");
    assert_eq!(s.http("PUT", "/subscriptions/s", Some(read)).0, 200);
    let (st, v) = s.http(
        "PATCH",
        "/subscriptions/s",
        Some(json!({"state": "running"})),
    );
    assert_eq!(st, 400, "{v}");
    assert_eq!(s.http("GET", "/subscriptions/s", None).1["state"], "paused");
    assert_eq!(s.stop(), 0);
}

#[test]
fn the_cli_sends_wrong_types_from_a_file_and_shows_the_servers_refusal() {
    let (dir, s) = server_with_subscription();
    let before = spec(&s, "s");
    let file = dir.path().join("bad.json");
    for (body, field) in [
        (json!({"delivery": 5}), "delivery"),
        (json!({"delivery": "fast"}), "delivery"),
        (json!({"delivery": [1]}), "delivery"),
        (json!({"target": "out2"}), "target"),
        (json!({"sources": "src"}), "sources"),
    ] {
        std::fs::write(&file, body.to_string()).unwrap();
        let arg = format!("@{}", file.display());
        let o = s.cli(&["subscription", "update", "s", "--file", &arg]);
        assert_eq!(o.status.code(), Some(1), "{body}: {}", stderr(&o));
        assert!(stderr(&o).contains(field), "{body}: {}", stderr(&o));
        assert!(stderr(&o).contains("HTTP 400"), "{body}: {}", stderr(&o));
        assert_eq!(spec(&s, "s"), before, "{body} changed the subscription");
    }
    // Flags cannot be merged into a delivery that is not an object: a usage error.
    std::fs::write(&file, json!({"delivery": "fast"}).to_string()).unwrap();
    let arg = format!("@{}", file.display());
    let o = s.cli(&[
        "subscription",
        "update",
        "s",
        "--file",
        &arg,
        "--max-attempts",
        "3",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("delivery"), "{}", stderr(&o));
    assert_eq!(spec(&s, "s"), before);
    assert_eq!(s.stop(), 0);
}

/// Fills the file system of `fs` up to the last few KiB.
fn fill(fs: &busbar_testkit::tmpfs::Tmpfs) {
    use std::io::Write;
    let mut f = std::fs::File::create(fs.join("filler")).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    let small = vec![0u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
}

#[test]
fn subscription_writes_on_a_full_disk_answer_507_as_documented() {
    let Some(fs) = busbar_testkit::tmpfs::Tmpfs::mount(32 << 20) else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root; CI runs as root)");
        return;
    };
    let s = Server::start(&fs.join("data"), &[], &[]);
    topics(&s, &[("src", 1), ("out", 1), ("dlq", 1)]);
    subscribe(
        &s,
        json!({"name": "s", "sources": ["src"], "target": {"topic": "out"}}),
    );
    let before = spec(&s, "s");
    fill(&fs);
    let (_, doc) = s.http("GET", "/openapi.json", None);
    let writes = [
        (
            "POST",
            "/subscriptions/s/pause",
            "/subscriptions/{name}/pause",
            json!({}),
        ),
        (
            "POST",
            "/subscriptions/s/resume",
            "/subscriptions/{name}/resume",
            json!({}),
        ),
        (
            "PATCH",
            "/subscriptions/s",
            "/subscriptions/{name}",
            json!({"delivery": {"max_attempts": 3}}),
        ),
        (
            "PUT",
            "/subscriptions/s",
            "/subscriptions/{name}",
            json!({"sources": ["src"], "target": {"topic": "dlq"}}),
        ),
        (
            "POST",
            "/subscriptions",
            "/subscriptions",
            json!({"name": "t", "sources": ["src"], "target": {"topic": "out"}}),
        ),
    ];
    for (method, path, template, body) in writes {
        let (st, v) = s.http(method, path, Some(body));
        let op = &doc["paths"][template][method.to_lowercase()];
        assert!(
            op["responses"][st.to_string()].is_object(),
            "{method} {path} answered {st}, which /openapi.json does not list: {v}"
        );
        if method == "POST" && path.ends_with("/resume") {
            continue; // not paused: nothing to write
        }
        assert_eq!(st, 507, "{method} {path}: {v}");
        assert_eq!(v["error"]["code"], "storage_error", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("disk full") && !msg.contains("event"), "{msg}");
    }
    assert_eq!(
        spec(&s, "s"),
        before,
        "a refused write changed the subscription"
    );
    assert_ne!(s.http("GET", "/subscriptions/s", None).1["state"], "paused");
    assert_eq!(s.http("GET", "/subscriptions/t", None).0, 404);
    std::fs::remove_file(fs.join("filler")).unwrap();
    let (st, v) = s.http("POST", "/subscriptions/s/pause", Some(json!({})));
    assert_eq!(st, 200, "{v}");
    s.kill9();
}

/// `{"pattern": {"a": {"a": ... ["x"]}}}` nested `depth` objects deep.
fn nested(depth: usize) -> String {
    let mut s = r#"["x"]"#.to_string();
    for _ in 0..depth {
        s = format!(r#"{{"a": {s}}}"#);
    }
    format!(r#"{{"pattern": {s}}}"#)
}

fn raw_patch(s: &Server, body: &[u8]) -> (u16, Value) {
    let r = busbar_testkit::http::request(
        s.addr,
        "PATCH",
        "/subscriptions/s",
        &[("content-type", "application/json")],
        body,
    )
    .unwrap();
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

#[test]
fn hostile_patches_are_refused_and_change_nothing() {
    let (_dir, s) = server_with_subscription();
    let before = spec(&s, "s");
    let t = Target::ok();
    for (body, needle) in [
        (json!({"name": null}), "name"),
        (json!({"target": {"topic": null}}), "target"),
        (json!({"target": {"url": 5}}), "target"),
        (
            json!({"target": {"url": t.url("/"), "headers": {"k": 5}}}),
            "target",
        ),
        (
            json!({"target": {"url": t.url("/"), "headers": ["k"]}}),
            "target",
        ),
        (
            json!({"target": {"url": t.url("/"), "tls": [1]}}),
            "target.tls",
        ),
        (json!({"delivery": [1]}), "delivery"),
        (json!({"delivery": "fast"}), "delivery"),
        (
            json!({"delivery": {"ordering": "sideways"}}),
            "delivery.ordering",
        ),
        (
            json!({"delivery": {"max_attempts": -1}}),
            "delivery.max_attempts",
        ),
        (
            json!({"delivery": {"max_attempts": 1e3}}),
            "delivery.max_attempts",
        ),
        (json!({"sources": [1]}), "sources"),
        (json!({"sources": []}), "sources"),
        (json!({"start": 5}), "start"),
        (json!({"pattern": 5}), "pattern"),
        (json!({"pattern": {"a": []}}), "pattern"),
        (json!({"transform": "x"}), "transform"),
        (json!({"transform": {"template": 5}}), "transform"),
        (json!({"dead_letter_topic": 5}), "dead_letter_topic"),
        (json!({"dead_letter_topic": "src"}), "dead_letter_topic"),
        (json!({"": 1}), "unknown field"),
        (json!(null), "object"),
        (json!("x"), "object"),
    ] {
        let (st, v) = s.http("PATCH", "/subscriptions/s", Some(body.clone()));
        assert_eq!(st, 400, "{body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{body}: {msg}");
        assert_eq!(spec(&s, "s"), before, "{body} changed the subscription");
    }
    // Nesting: past the pattern's depth limit a 400 naming the pattern; past the JSON parser's
    // recursion limit a 400 too; never a crash.
    let (st, v) = raw_patch(&s, nested(40).as_bytes());
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("pattern"),
        "{v}"
    );
    let (st, v) = raw_patch(&s, nested(100_000).as_bytes());
    assert_eq!(st, 400, "{v}");
    // Size: over http.json_bytes_max (1 MiB) a 413; just under it, a pattern over its own
    // limit (64 KiB) is a 400.
    let big = format!(r#"{{"pattern": {{"a": ["{}"]}}}}"#, "x".repeat(1 << 20));
    assert_eq!(raw_patch(&s, big.as_bytes()).0, 413);
    let under = format!(r#"{{"pattern": {{"a": ["{}"]}}}}"#, "x".repeat(1000 << 10));
    let (st, v) = raw_patch(&s, under.as_bytes());
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("pattern"),
        "{v}"
    );
    assert_eq!(spec(&s, "s"), before);
    let (st, _) = s.http("GET", "/subscriptions/s", None);
    assert_eq!(st, 200, "the server still answers");
    assert_eq!(s.stop(), 0);
}

/// The answer of resume says `starting` (not `paused`), so it can be sent back as an update; a
/// null read-only field is ignored, as the OpenAPI document (nullable) says. Failed before: the
/// resume answer said "paused" and its PUT answered 400; `{"lag": null}` answered 400.
#[test]
fn the_answer_of_resume_sent_back_is_accepted_and_null_read_only_fields_are_ignored() {
    let (_dir, s) = server_with_subscription();
    assert_eq!(
        s.http("POST", "/subscriptions/s/pause", Some(json!({}))).0,
        200
    );
    let (st, read) = s.http("POST", "/subscriptions/s/resume", Some(json!({})));
    assert_eq!(st, 200, "{read}");
    assert_ne!(
        read["state"], "paused",
        "resume answered a paused subscription: {read}"
    );
    let (st, v) = s.http("PUT", "/subscriptions/s", Some(read.clone()));
    assert_eq!(st, 200, "PUT of the resume answer: {v}");
    for field in [
        "state",
        "owner",
        "config_file",
        "created",
        "updated",
        "lag",
        "retrying",
        "last_failure",
        "counters",
    ] {
        let (st, v) = s.http("PATCH", "/subscriptions/s", Some(json!({ field: null })));
        assert_eq!(st, 200, "PATCH {{{field:?}: null}}: {v}");
    }
}
