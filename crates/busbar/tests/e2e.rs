//! The real binary end to end: `busbar serve` with defaults, the CLI against it, clean and kill -9
//! restarts keeping topics, events and committed offsets, configuration errors, exit codes.

mod common;

use common::*;
use serde_json::{json, Value};
use std::process::Command;

#[test]
fn serve_with_no_arguments_uses_built_in_defaults() {
    let cwd = tempfile::tempdir().unwrap();
    // No flags: only the port is moved off 8080 (through the environment) so tests can run in parallel.
    let mut cmd = Command::new(BIN);
    cmd.arg("serve").current_dir(cwd.path());
    let s = Server::spawn(
        cmd,
        &[
            ("BUSBAR_HTTP_ADDR", "127.0.0.1:0"),
            ("BUSBAR_KAFKA_ADDR", "127.0.0.1:0"),
        ],
        cwd.path(),
    );
    assert!(
        s.ready_line.contains("data busbar-data"),
        "{}",
        s.ready_line
    );
    assert_eq!(s.http("GET", "/healthz", None).0, 200);
    assert!(cwd.path().join("busbar-data/meta").is_dir());
    assert_eq!(s.stop(), 0);
}

#[test]
fn cli_manages_topics_produces_and_consumes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    let o = s.cli(&[
        "topic",
        "create",
        "orders",
        "-p",
        "2",
        "-c",
        "retention.ms=3600000",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line = stdout(&o)
        .lines()
        .find(|l| l.starts_with("retention.ms"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        line.contains("3600000") && line.contains("set"),
        "{}",
        stdout(&o)
    );
    let list = json_out(&s.cli(&["--output", "json", "topic", "list"]));
    assert_eq!(list["topics"][0]["name"], "orders");
    let o = s.cli(&[
        "produce",
        "orders",
        "-k",
        "user-1",
        "-H",
        "source=cli",
        "hello",
        "{\"n\": 1}",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = s.cli_stdin(
        &["produce", "orders", "--key-separator", ":"],
        "a:first\nb:second\nc:{\"x\":true}\n",
    );
    assert!(
        stdout(&o).starts_with("produced 3 events to orders in "),
        "{}",
        stdout(&o)
    );
    let out = stdout(&s.cli(&["consume", "orders", "--print-key"]));
    for want in [
        "user-1\thello",
        "user-1\t{\"n\": 1}", // as typed
        "a\tfirst",
        "b\tsecond",
        "c\t{\"x\":true}",
    ] {
        assert!(out.contains(want), "{want:?} missing from {out:?}");
    }
    let evs: Vec<serde_json::Value> =
        stdout(&s.cli(&["--output", "json", "consume", "orders", "-n", "2"]))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(evs.len(), 2);
    let d = json_out(&s.cli(&[
        "--output",
        "json",
        "topic",
        "alter",
        "orders",
        "-p",
        "3",
        "--reset-config",
        "retention.ms",
    ]));
    assert_eq!(d["partitions"].as_array().unwrap().len(), 3);
    assert_eq!(d["configs"]["retention.ms"], "604800000");
    let o = s.cli(&[
        "group",
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--to",
        "earliest",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let g = json_out(&s.cli(&["--output", "json", "group", "describe", "billing"]));
    assert_eq!(g["lag"], 5);
    assert!(stdout(&s.cli(&["group", "list"])).contains("billing"));
    assert!(s.cli(&["topic", "delete", "orders"]).status.success());
    assert_eq!(s.stop(), 0);
}

#[test]
fn exit_codes_scripts_can_rely_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    let o = s.cli(&["topic", "describe", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown topic \"nope\"") && stderr(&o).contains("404"),
        "{}",
        stderr(&o)
    );
    let o = s.cli(&["topic", "create", "bad name"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid_topic_name"), "{}", stderr(&o));
    assert_eq!(
        s.cli(&["topic", "create", "t", "-c", "novalue"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(s.cli(&["topic", "frobnicate"]).status.code(), Some(2));
    assert_eq!(
        s.cli(&["consume", "t", "--offset", "3"]).status.code(),
        Some(2),
        "--offset needs --partition"
    );
    assert_eq!(
        s.cli(&[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to",
            "someday"
        ])
        .status
        .code(),
        Some(2)
    );
    let o = cli_at("http://127.0.0.1:1", &["topic", "list"], None);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(
        cli_at("ftp://x", &["topic", "list"], None).status.code(),
        Some(2)
    );
    assert_eq!(s.stop(), 0);
}

#[test]
fn restarts_keep_topics_events_and_committed_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    s.http(
        "POST",
        "/topics",
        Some(json!({"name": "t", "partitions": 2})),
    );
    let events: Vec<_> = (0..100)
        .map(|i| json!({"key": format!("k{i}"), "value": i}))
        .collect();
    assert_eq!(
        s.http("POST", "/topics/t/events", Some(json!(events))).0,
        200
    );
    s.http(
        "POST",
        "/groups/g/offsets/reset",
        Some(json!({"topic": "t", "partitions": [0], "to": {"offset": 7}})),
    );
    assert_eq!(s.stop(), 0, "SIGTERM exits cleanly");

    let s = Server::start(dir.path(), &[], &[]);
    let total = s.events_stored("t");
    assert_eq!(total, 100);
    let (_, g) = s.http("GET", "/groups/g", None);
    assert_eq!(g["offsets"][0]["committed_offset"], 7);
    // Acknowledged writes, then kill -9: nothing acknowledged may be lost.
    let more: Vec<_> = (100..150)
        .map(|i| json!({"key": format!("k{i}"), "value": i}))
        .collect();
    assert_eq!(s.http("POST", "/topics/t/events", Some(json!(more))).0, 200);
    s.http(
        "POST",
        "/groups/g/offsets/reset",
        Some(json!({"topic": "t", "partitions": [1], "to": {"offset": 3}})),
    );
    s.kill9();

    let s = Server::start(dir.path(), &[], &[]);
    assert!(
        s.ready_line
            .contains("recovered 2 of 2 partitions after a crash"),
        "{}",
        s.ready_line
    );
    let total = s.events_stored("t");
    assert_eq!(total, 150);
    let (_, g) = s.http("GET", "/groups/g", None);
    let committed: Vec<u64> = g["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["committed_offset"].as_u64().unwrap())
        .collect();
    assert_eq!(committed, vec![7, 3]);
    let mut values = Vec::new();
    for p in 0..2 {
        let (_, r) = s.http(
            "GET",
            &format!("/topics/t/partitions/{p}/events?limit=1000"),
            None,
        );
        values.extend(
            r["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["value"].as_u64().unwrap()),
        );
    }
    values.sort();
    assert_eq!(values, (0..150).collect::<Vec<_>>());
    assert_eq!(s.stop(), 0);
}

#[test]
fn configuration_is_layered_checked_and_printed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("busbar.toml");
    std::fs::write(
        &file,
        "[broker]\ndefault_partitions = 3\n[topic_defaults]\n\"retention.ms\" = \"1000\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&file)
        .env("BUSBAR_BROKER_DEFAULT_PARTITIONS", "5")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("default_partitions = 5"), "{text}");
    assert!(text.contains("\"retention.ms\" = \"1000\""), "{text}");
    std::fs::write(&file, "[http]\nport = 1\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("port"), "{}", stderr(&out));
    let out = Command::new(BIN)
        .args(["serve", "--http-addr", "not-an-address"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("http.addr"), "{}", stderr(&out));
    // A data directory that cannot be used: a clear error, exit 1.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let (code, err) = refused_start(&blocker);
    assert_eq!(code, 1);
    assert!(err.contains("data directory"), "{err}");
    // The configured defaults reach the broker.
    std::fs::write(&file, "[broker]\ndefault_partitions = 3\n").unwrap();
    let s = Server::start(
        &dir.path().join("data"),
        &["--config", file.to_str().unwrap()],
        &[],
    );
    let (_, d) = s.http("POST", "/topics", Some(json!({"name": "x"})));
    assert_eq!(d["partitions"].as_array().map(Vec::len), Some(3));
    assert_eq!(s.stop(), 0);
}

#[test]
fn two_cli_group_consumers_share_a_topic_through_a_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &[],
        &[("BUSBAR_BROKER_GROUP_INITIAL_REBALANCE_DELAY_MS", "200")],
    );
    s.http(
        "POST",
        "/topics",
        Some(json!({"name": "t", "partitions": 4})),
    );
    let events: Vec<_> = (0..400)
        .map(|i| json!({"key": format!("k{i}"), "value": i}))
        .collect();
    s.http("POST", "/topics/t/events", Some(json!(events)));
    let url = s.url();
    // The first member takes some events alone, then a second joins; both read until idle.
    let first = cli_at(
        &url,
        &[
            "--output", "json", "consume", "t", "--group", "g", "-n", "50",
        ],
        None,
    );
    let mut values: Vec<u64> = stdout(&first)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["value"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(values.len(), 50);
    let run = |url: String| {
        std::thread::spawn(move || {
            cli_at(
                &url,
                &["--output", "json", "consume", "t", "--group", "g"],
                None,
            )
        })
    };
    let (a, b) = (run(url.clone()), run(url.clone()));
    for out in [a.join().unwrap(), b.join().unwrap()] {
        assert!(out.status.success(), "{}", stderr(&out));
        values.extend(stdout(&out).lines().map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["value"]
                .as_u64()
                .unwrap()
        }));
    }
    values.sort();
    values.dedup();
    assert_eq!(
        values,
        (0..400).collect::<Vec<_>>(),
        "every event consumed by the group"
    );
    let (_, g) = s.http("GET", "/groups/g", None);
    assert_eq!(g["lag"], 0, "{g}");
    assert_eq!(
        g["members"].as_array().unwrap().len(),
        0,
        "members left when done: {g}"
    );
    assert_eq!(s.stop(), 0);
}

#[test]
fn rule_test_from_the_cli() {
    let run = |args: &[&str]| Command::new(BIN).args(args).output().unwrap();
    let event = r#"{"source": "shop", "detail": {"state": "paid", "total": 12}}"#;
    let o = run(&[
        "rule",
        "test",
        "--pattern",
        r#"{"detail": {"state": ["paid"], "total": [{"numeric": ["<", 20]}]}}"#,
        "--event",
        event,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "match");
    let o = run(&[
        "--output",
        "json",
        "rule",
        "test",
        "--pattern",
        r#"{"source": [{"prefix": "bank"}]}"#,
        "--event",
        event,
    ]);
    assert_eq!(stdout(&o).trim(), r#"{"match":false}"#);
    let o = run(&[
        "rule",
        "test",
        "--pattern",
        r#"{"detail": {"state": "paid"}}"#,
        "--event",
        event,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("detail.state"), "{}", stderr(&o));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("e.json");
    std::fs::write(&file, event).unwrap();
    let o = run(&[
        "rule",
        "test",
        "--pattern",
        r#"{"source": ["shop"]}"#,
        "--event",
        &format!("@{}", file.display()),
    ]);
    assert_eq!(stdout(&o).trim(), "match");
    assert_eq!(
        run(&["rule", "test", "--pattern", "{", "--event", "{}"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn shutdown_does_not_wait_forever_for_open_event_streams() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[("BUSBAR_HTTP_SHUTDOWN_GRACE_MS", "300")]);
    s.http("POST", "/topics", Some(json!({"name": "t"})));
    let addr = s.addr;
    let reader = std::thread::spawn(move || {
        busbar_testkit::http::read_stream(
            addr,
            "/topics/t/partitions/0/stream",
            std::time::Duration::from_secs(20),
            |_| false,
        )
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let start = std::time::Instant::now();
    assert_eq!(s.stop(), 0, "a clean exit even with a stream open");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    let _ = reader.join();
    let s = Server::start(dir.path(), &[], &[]);
    assert!(s.ready_line.contains("clean start"), "{}", s.ready_line);
    assert_eq!(s.stop(), 0);
}

/// HTTP reads are bounded in bytes, not only in events: `limit=10000` of large events answers
/// about `broker.fetch_bytes_max` and a `next_offset` to go on from.
#[test]
fn http_reads_are_bounded_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("BUSBAR_BROKER_FETCH_BYTES_MAX", "1048576")];
    let s = Server::start(dir.path(), &[], &env);
    let (st, _) = s.http(
        "POST",
        "/topics",
        Some(json!({"name": "big", "partitions": 1})),
    );
    assert_eq!(st, 201);
    let blob = "x".repeat(200_000);
    for _ in 0..5 {
        let evs: Vec<Value> = (0..4).map(|_| json!({"value": blob})).collect();
        let (st, v) = s.http("POST", "/topics/big/events", Some(Value::Array(evs)));
        assert_eq!(st, 200, "{v}");
    }
    let (st, v) = s.http(
        "GET",
        "/topics/big/partitions/0/events?offset=0&limit=10000",
        None,
    );
    assert_eq!(st, 200);
    let n = v["events"].as_array().unwrap().len();
    assert!((1..=11).contains(&n), "{n} events of 200 kB in one answer");
    assert_eq!(v["next_offset"], n);
    let mut at = n;
    while at < 20 {
        let (_, v) = s.http(
            "GET",
            &format!("/topics/big/partitions/0/events?offset={at}&limit=10000"),
            None,
        );
        let got = v["events"].as_array().unwrap().len();
        assert!(got >= 1);
        at += got;
    }
    assert_eq!(at, 20);
    assert_eq!(s.stop(), 0);
}
