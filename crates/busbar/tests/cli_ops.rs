//! Commands the runbooks use (issue 19), each through the real binary against a real server:
//! `quota list|set|delete` (and the refusals of a bad entity or value), `subscription
//! cancel-replay`, `subscription get` showing the last failed attempt, `dlq list` naming the
//! source partition, `produce --schema` storing values encoded with a registered schema, and
//! `topic delete-records` (with its refusals).

mod common;

use busbar_testkit::target::{Reply, Target};
use common::*;
use serde_json::json;

#[test]
fn quotas_are_set_listed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    let o = s.cli(&[
        "quota",
        "set",
        "--entity-user",
        "alice",
        "--producer-byte-rate",
        "1048576",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        "set producer_byte_rate=1048576.0 for user=alice"
    );
    let o = s.cli(&[
        "quota",
        "set",
        "--entity-client-id-default",
        "--request-percentage",
        "50",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let listed = stdout(&s.cli(&["quota", "list"]));
    assert!(listed.contains("user=alice"), "{listed}");
    assert!(listed.contains("client-id=<default>"), "{listed}");
    let v = json_out(&s.cli(&["--output", "json", "quota", "list"]));
    assert_eq!(v["quotas"].as_array().unwrap().len(), 2, "{v}");
    // Refusals: no entity (usage, 2), no value (usage), a bad value (the server's 400, exit 1).
    let o = s.cli(&["quota", "set", "--producer-byte-rate", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("name the entity"), "{}", stderr(&o));
    let o = s.cli(&["quota", "set", "--entity-user", "bob"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = s.cli(&[
        "quota",
        "set",
        "--entity-user",
        "bob",
        "--producer-byte-rate=-5",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = s.cli(&["quota", "delete", "--entity-user", "alice"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "deleted the quotas of user=alice");
    let o = s.cli(&["quota", "delete", "--entity-user", "alice"]);
    assert_eq!(o.status.code(), Some(1), "a second delete: {}", stderr(&o));
    let v = json_out(&s.cli(&["--output", "json", "quota", "list"]));
    assert_eq!(v["quotas"].as_array().unwrap().len(), 1, "{v}");
}

#[test]
fn a_replay_is_cancelled_and_a_failing_target_shows_in_get_and_dlq_list() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    // The target refuses everything: the first attempts fail and wait, then end as dead letters.
    let target = Target::start(|_, _| Reply::Status(503));
    topics(&s, &[("orders", 3), ("dlq", 1)]);
    subscribe(
        &s,
        json!({"name": "ship", "sources": ["orders"], "target": {"url": target.url("/")},
            "dead_letter_topic": "dlq",
            "delivery": {"max_attempts": 2, "backoff_initial_ms": 1500, "backoff_max_ms": 1500}}),
    );
    publish(
        &s,
        "orders",
        json!([{"key": "a", "value": 1, "partition": 2}]),
    );
    wait_sub(&s, "ship", |v| v["last_failure"].is_object());
    let got = stdout(&s.cli(&["subscription", "get", "ship"]));
    assert!(
        got.contains("last failure http_status 503 at ") && got.contains("target answered 503"),
        "{got}"
    );
    wait_sub(&s, "ship", |v| v["counters"]["dead_lettered"] == 1);
    let listed = stdout(&s.cli(&["dlq", "list", "dlq"]));
    let header = listed.lines().next().unwrap();
    assert!(header.contains("SOURCE_PARTITION"), "{listed}");
    let row = listed.lines().nth(1).unwrap();
    assert!(row.split_whitespace().any(|c| c == "2"), "{listed}");
    // A slow replay of many events, stopped while it runs.
    let many: Vec<_> = (0..200).map(|i| json!({"value": i})).collect();
    publish(&s, "orders", json!(many));
    let o = s.cli(&[
        "subscription",
        "replay",
        "ship",
        "--run",
        "slow",
        "--from",
        "1h",
        "--to",
        "0s",
        "--rate",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = s.cli(&[
        "--output",
        "json",
        "subscription",
        "cancel-replay",
        "ship",
        "slow",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let run = json_out(&o);
    assert_eq!(run["name"], "slow", "{run}");
    assert_ne!(run["state"], "running", "{run}");
    let o = s.cli(&["subscription", "cancel-replay", "ship", "no-such-run"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

#[test]
fn produce_with_schema_stores_values_encoded_with_the_registered_schema() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--schema-registry-addr", ""], &[]);
    topics(&s, &[("orders", 1)]);
    let schema =
        json!({"type": "record", "name": "Order", "fields": [{"name": "n", "type": "int"}]});
    let (st, v) = s.http(
        "POST",
        "/schema-registry/subjects/orders-value/versions",
        Some(json!({"schema": schema.to_string()})),
    );
    assert_eq!(st, 200, "{v}");
    let id = v["id"].as_u64().unwrap();
    let o = s.cli(&["produce", "orders", "--schema", "latest", r#"{"n": 7}"#]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Stored framed: magic byte 0, the id, then Avro's zig-zag 7 (14).
    let (_, page) = s.http(
        "GET",
        "/topics/orders/partitions/0/events?offset=0&encoding=base64",
        None,
    );
    let b64 = page["events"][0]["value_base64"]
        .as_str()
        .unwrap()
        .to_string();
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(
        bytes,
        [vec![0], (id as u32).to_be_bytes().to_vec(), vec![14]].concat()
    );
    // A value the schema refuses: nothing stored, the server's reason.
    let o = s.cli(&["produce", "orders", "--schema", "latest", r#"{"n": "x"}"#]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("do not encode"), "{}", stderr(&o));
    let o = s.cli(&["produce", "orders", "--subject", "x", "1"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "--subject needs --schema: {}",
        stderr(&o)
    );
    assert_eq!(s.events_stored("orders"), 1);
}

#[test]
fn delete_records_moves_a_partitions_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("t", 2)]);
    let events: Vec<_> = (0..10)
        .map(|i| json!({"value": i, "partition": 1}))
        .collect();
    publish(&s, "t", json!(events));
    let o = s.cli(&["topic", "delete-records", "t", "-p", "1", "--before", "4"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "partition 1 of t now starts at offset 4");
    let (_, d) = s.http("GET", "/topics/t", None);
    assert_eq!(d["partitions"][1]["log_start_offset"], 4, "{d}");
    assert_eq!(d["partitions"][0]["log_start_offset"], 0, "{d}");
    let (st, page) = s.http("GET", "/topics/t/partitions/1/events?offset=0", None);
    assert_eq!(st, 416, "below the log start: {page}");
    let (_, page) = s.http("GET", "/topics/t/partitions/1/events?offset=4", None);
    assert_eq!(page["events"][0]["value"], 4, "{page}");
    // Past the high watermark, a bad offset, an unknown partition: refused, nothing changed.
    for (args, code) in [
        (
            &["topic", "delete-records", "t", "-p", "1", "--before", "11"][..],
            1,
        ),
        (
            &["topic", "delete-records", "t", "-p", "1", "--before", "x"],
            2,
        ),
        (
            &["topic", "delete-records", "t", "-p", "7", "--before", "1"],
            1,
        ),
    ] {
        let o = s.cli(args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
    }
    for (offset, status) in [(-2, 400), (11, 416)] {
        let (st, v) = s.http(
            "POST",
            "/topics/t/partitions/1/delete-records",
            Some(json!({ "before_offset": offset })),
        );
        assert_eq!(st, status, "{offset}: {v}");
    }
    let (_, d) = s.http("GET", "/topics/t", None);
    assert_eq!(d["partitions"][1]["log_start_offset"], 4, "{d}");
    let o = s.cli(&[
        "--output",
        "json",
        "topic",
        "delete-records",
        "t",
        "-p",
        "1",
        "--before",
        "end",
    ]);
    assert_eq!(json_out(&o)["log_start_offset"], 10);
    // A compact-only topic refuses it (Kafka's POLICY_VIOLATION).
    let (st, v) = s.http(
        "POST",
        "/topics",
        Some(json!({"name": "c", "configs": {"cleanup.policy": "compact"}})),
    );
    assert_eq!(st, 201, "{v}");
    let (st, v) = s.http(
        "POST",
        "/topics/c/partitions/0/delete-records",
        Some(json!({"before_offset": 0})),
    );
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("policy_violation")),
        "{v}"
    );
}
