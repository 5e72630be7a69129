//! `busbar dlq list|show --output json` through the real binary (issue 15 review): they print the
//! server's JSON as it was sent, as `consume` does, so a dead letter's value keeps its text
//! (`1e3`, a 23-digit integer) instead of being re-encoded from a parsed value.

mod common;

use busbar_testkit::target::{Reply, Target};
use common::*;
use serde_json::{json, Value};

/// The value's text as published; a parsed `Value` would print `1000.0` and `1.2345678901234568e+22`.
const VALUE: &str = r#"{"n": 1e3, "big": 12345678901234567890123, "price": 1.50}"#;

#[test]
fn dlq_list_and_show_print_the_servers_json_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("src", 1), ("dlq", 1)]);
    let t = Target::start(|_, _| Reply::Status(400));
    subscribe(
        &s,
        json!({"name": "s", "sources": ["src"], "target": {"url": t.url("/")},
               "dead_letter_topic": "dlq"}),
    );
    let body = format!(r#"{{"value": {VALUE}}}"#);
    let r = busbar_testkit::http::request(
        s.addr,
        "POST",
        "/topics/src/events",
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let end = std::time::Instant::now() + WAIT;
    while s.events_stored("dlq") < 1 {
        assert!(std::time::Instant::now() < end, "no dead letter");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for args in [
        &["--output", "json", "dlq", "list", "dlq"][..],
        &["--output", "json", "dlq", "show", "dlq", "0", "0"],
    ] {
        let o = s.cli(args);
        let out = stdout(&o);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert!(out.contains(VALUE), "{args:?} re-encoded the value: {out}");
        assert_eq!(out.lines().count(), 1, "{args:?}: one line: {out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        let letter = if args[3] == "list" {
            assert_eq!(v["dead_letters"].as_array().unwrap().len(), 1, "{v}");
            v["dead_letters"][0].clone()
        } else {
            v
        };
        assert_eq!(letter["subscription"], "s", "{letter}");
        assert_eq!(letter["offset"], 0, "{letter}");
    }
    assert_eq!(s.stop(), 0);
}
