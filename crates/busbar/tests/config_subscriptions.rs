//! Subscriptions declared in `busbar.toml` are owned by the file (issue 15 item 17), through the
//! real binary: the API refuses to change or delete them (409 naming the file; the CLI exits 1),
//! `GET` shows `"owner": "config"`, a restart neither re-creates nor redelivers, one taken over by
//! the file keeps its position, and one dropped from the file is the API's again.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

const OWNED: &str = r#"
[[subscriptions]]
name = "owned"
sources = ["cfg-in"]
start = "earliest"
target = { topic = "cfg-out" }
"#;

const ADOPTED: &str = r#"
[[subscriptions]]
name = "adopted"
sources = ["cfg-in"]
start = "earliest"
target = { topic = "adopted-out" }
delivery = { max_attempts = 5 }
"#;

fn start(data: &Path, cfg: &Path) -> Server {
    Server::start(data, &["--config", cfg.to_str().unwrap()], &[])
}

/// Waits until `topic` holds `n` events, then a little longer, and checks it still holds `n`.
fn settles_at(s: &Server, topic: &str, n: u64) {
    let end = Instant::now() + WAIT;
    while s.events_stored(topic) < n {
        assert!(Instant::now() < end, "{topic} never held {n} events");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(s.events_stored(topic), n, "{topic} got events twice");
}

fn error_message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn the_api_cannot_change_or_delete_a_subscription_the_file_declares() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("busbar.toml");
    std::fs::write(&cfg, OWNED).unwrap();
    let data = dir.path().join("data");
    let s = start(&data, &cfg);
    let file = cfg.display().to_string();
    publish(
        &s,
        "cfg-in",
        json!([{"value": 1}, {"value": 2}, {"value": 3}]),
    );
    settles_at(&s, "cfg-out", 3);
    let (st, v) = s.http("GET", "/subscriptions/owned", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["owner"].as_str(), v["config_file"].as_str()),
        (Some("config"), Some(file.as_str()))
    );
    for (method, body) in [
        ("DELETE", None),
        ("PATCH", Some(json!({"delivery": {"max_attempts": 3}}))),
        (
            "PUT",
            Some(json!({"sources": ["cfg-in"], "target": {"topic": "cfg-out"}})),
        ),
    ] {
        let (st, v) = s.http(method, "/subscriptions/owned", body);
        assert_eq!(st, 409, "{method}: {v}");
        assert_eq!(v["error"]["code"], "owned_by_config", "{method}: {v}");
        assert!(error_message(&v).contains(&file), "{method}: {v}");
    }
    for args in [
        &["subscription", "delete", "owned"][..],
        &["subscription", "update", "owned", "--max-attempts", "3"],
    ] {
        let o = s.cli(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(&file), "{args:?}: {}", stderr(&o));
    }
    // Pausing and resuming are not the file's business.
    assert!(s.cli(&["subscription", "pause", "owned"]).status.success());
    assert!(s.cli(&["subscription", "resume", "owned"]).status.success());
    let (_, v) = s.http("GET", "/subscriptions/owned", None);
    assert_eq!(v["delivery"]["max_attempts"], 20, "unchanged: {v}");
    // One made over the API stays the API's.
    topics(&s, &[("cfg-out2", 1)]);
    let v = subscribe(
        &s,
        json!({"name": "mine", "sources": ["cfg-in"], "target": {"topic": "cfg-out2"}}),
    );
    assert_eq!(v["owner"], "api", "{v}");
    assert!(v.get("config_file").is_none(), "{v}");
    assert_eq!(s.http("DELETE", "/subscriptions/mine", None).0, 204);
    assert_eq!(s.stop(), 0);
    // A restart keeps the position: nothing is delivered twice.
    let s = start(&data, &cfg);
    publish(&s, "cfg-in", json!({"value": 4}));
    settles_at(&s, "cfg-out", 4);
    assert_eq!(s.stop(), 0);
}

#[test]
fn the_file_takes_over_an_api_subscription_keeping_its_position_and_lets_go_of_one_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("busbar.toml");
    let data = dir.path().join("data");
    std::fs::write(&cfg, "").unwrap();
    let s = start(&data, &cfg);
    topics(&s, &[("cfg-in", 1), ("adopted-out", 1)]);
    subscribe(
        &s,
        json!({"name": "adopted", "sources": ["cfg-in"], "start": "earliest",
               "target": {"topic": "adopted-out"}}),
    );
    publish(&s, "cfg-in", json!([{"value": 1}, {"value": 2}]));
    settles_at(&s, "adopted-out", 2);
    assert_eq!(s.stop(), 0);
    // Declared in the file (with a changed delivery policy): the file owns it, its position stays.
    std::fs::write(&cfg, ADOPTED).unwrap();
    let s = start(&data, &cfg);
    let (_, v) = s.http("GET", "/subscriptions/adopted", None);
    assert_eq!(
        (v["owner"].as_str(), v["delivery"]["max_attempts"].as_u64()),
        (Some("config"), Some(5)),
        "{v}"
    );
    publish(&s, "cfg-in", json!({"value": 3}));
    settles_at(&s, "adopted-out", 3);
    assert_eq!(s.http("DELETE", "/subscriptions/adopted", None).0, 409);
    assert_eq!(s.stop(), 0);
    // Dropped from the file: kept, and the API's to change or delete.
    std::fs::write(&cfg, "").unwrap();
    let s = start(&data, &cfg);
    let (_, v) = s.http("GET", "/subscriptions/adopted", None);
    assert_eq!(v["owner"], "api", "{v}");
    publish(&s, "cfg-in", json!({"value": 4}));
    settles_at(&s, "adopted-out", 4);
    assert_eq!(s.http("DELETE", "/subscriptions/adopted", None).0, 204);
    assert_eq!(s.stop(), 0);
}

/// A subscription the file declares may `encode` with a subject the registry does not hold yet
/// (a fresh data directory has none, and the file cannot register one): busbar starts, events
/// that do not encode are dead-lettered with `schema_encode_failed`, and once the subject is
/// registered the next events are stored encoded.
#[test]
fn a_declared_encoding_subject_need_not_exist_at_the_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("busbar.toml");
    let declared = r#"
[[subscriptions]]
name = "encoded"
sources = ["enc-in"]
start = "earliest"
target = { topic = "enc-out", encode = { schema = "latest" } }
dead_letter_topic = "enc-dlq"
"#;
    std::fs::write(&cfg, declared).unwrap();
    let s = start(&dir.path().join("data"), &cfg);
    publish(&s, "enc-in", json!([{"value": {"n": 1}}]));
    settles_at(&s, "enc-dlq", 1);
    let (st, v) = s.http("GET", "/dead-letters/enc-dlq", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["dead_letters"][0]["reason"], "schema_encode_failed",
        "{v}"
    );
    let schema = json!({"type": "record", "name": "N", "fields": [{"name": "n", "type": "int"}]});
    let (st, v) = s.http(
        "POST",
        "/schema-registry/subjects/enc-out-value/versions",
        Some(json!({"schema": schema.to_string()})),
    );
    assert_eq!(st, 200, "{v}");
    publish(&s, "enc-in", json!([{"value": {"n": 2}}]));
    settles_at(&s, "enc-out", 1);
    let (st, v) = s.http(
        "GET",
        "/topics/enc-out/partitions/0/events?decode=schema",
        None,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["events"][0]["value"], json!({"n": 2}), "{v}");
}
