//! `busbar bench` against the real binary: every workload reports what it did (checked against
//! the server's own counts), and bad flags are refused.

mod common;

use common::*;
use serde_json::Value;

fn bench(s: &Server, args: &[&str]) -> Value {
    let kafka = s.kafka.to_string();
    let mut all = vec!["--output", "json", "bench"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--kafka", &kafka]);
    let o = s.cli(&all);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    serde_json::from_str(stdout(&o).trim()).unwrap()
}

#[test]
fn every_workload_reports_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    let r = bench(
        &s,
        &[
            "produce",
            "--count",
            "5000",
            "--partitions",
            "3",
            "--size",
            "200",
        ],
    );
    assert_eq!(r["messages"], 5000);
    assert_eq!(r["bytes"], 5000 * 200);
    assert_eq!(
        s.events_stored("bench-produce"),
        5000,
        "the server holds what was acknowledged"
    );
    let l = &r["latency"];
    assert!(l["p50_us"].as_u64().unwrap() <= l["p99_us"].as_u64().unwrap());
    assert!(l["p99_us"].as_u64().unwrap() <= l["max_us"].as_u64().unwrap());
    assert_eq!(l["samples"], 5000);
    let r = bench(
        &s,
        &[
            "consume",
            "--topic",
            "bench-produce",
            "--count",
            "5000",
            "--partitions",
            "3",
        ],
    );
    assert_eq!(r["messages"], 5000);
    let r = bench(&s, &["e2e", "--duration", "2", "--rate", "500"]);
    assert_eq!(r["details"]["lost"], 0, "{r}");
    assert!(r["latency"]["samples"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["messages"], s.events_stored("bench-e2e"));
    // Several producer connections: the count is split, every message acknowledged once.
    let r = bench(
        &s,
        &[
            "produce",
            "--topic",
            "bench-many",
            "--count",
            "3001",
            "--producers",
            "4",
            "--batch",
            "50",
        ],
    );
    assert_eq!(r["messages"], 3001, "{r}");
    assert_eq!(r["latency"]["samples"], 3001, "{r}");
    assert_eq!(r["details"]["producers"], 4, "{r}");
    assert_eq!(s.events_stored("bench-many"), 3001);
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("bench-{codec}");
        let r = bench(
            &s,
            &[
                "produce",
                "--topic",
                &topic,
                "--count",
                "1000",
                "--compression",
                codec,
            ],
        );
        assert_eq!(r["messages"], 1000, "{codec}");
        // Stored compressed as sent, and readable (decompressed) over HTTP.
        let (_, v) = s.http(
            "GET",
            &format!("/topics/{topic}/partitions/0/events?offset=0&limit=1000"),
            None,
        );
        assert_eq!(v["events"].as_array().unwrap().len(), 1000, "{codec}");
        let r = bench(&s, &["consume", "--topic", &topic, "--count", "1000"]);
        assert_eq!(r["messages"], 1000, "{codec}");
    }
    let r = bench(&s, &["fanout", "--count", "2000", "--consumers", "3"]);
    assert_eq!(r["messages"], 6000, "every reader got every message");
    assert_eq!(s.stop(), 0);
}

#[test]
fn bad_flags_and_no_server_are_refused() {
    let o = cli_at(
        "http://127.0.0.1:1",
        &["bench", "produce", "--size", "4"],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "bad usage");
    assert!(stderr(&o).contains("--size"), "{}", stderr(&o));
    let o = cli_at(
        "http://127.0.0.1:1",
        &["bench", "produce", "--acks", "2"],
        None,
    );
    assert!(!o.status.success());
    for bad in ["0", "1025"] {
        let o = cli_at(
            "http://127.0.0.1:1",
            &["bench", "produce", "--producers", bad],
            None,
        );
        assert_eq!(o.status.code(), Some(2), "bad usage");
        assert!(stderr(&o).contains("--producers"), "{}", stderr(&o));
    }
    // Schema framing and topic configs: checked before any connection.
    for (bad, says) in [
        (
            &["--topic-config", "value.schema.validation"][..],
            "--topic-config",
        ),
        (&["--topic-config", "=id"][..], "--topic-config"),
        (&["--schema-id", "0"][..], "--schema-id"),
        (&["--schema-id", "2147483648"][..], "--schema-id"),
        (&["--schema-id", "x"][..], "--schema-id"),
        (&["--schema-id", "1", "--size", "13"][..], "at least 14"),
        (&["--schema-id", "1", "--size", "70"][..], "use 69 or 71"),
    ] {
        let mut args = vec!["bench", "produce", "--kafka", "127.0.0.1:1"];
        args.extend_from_slice(bad);
        let o = cli_at("http://127.0.0.1:1", &args, None);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{bad:?}: {}", stderr(&o));
    }
    let o = cli_at(
        "http://127.0.0.1:1",
        &["bench", "produce", "--kafka", "127.0.0.1:1"],
        None,
    );
    assert_eq!(o.status.code(), Some(3), "server unreachable");
    assert!(stderr(&o).contains("connect"), "{}", stderr(&o));
}

/// Registers the Avro schema `"bytes"` under `subject` through the HTTP API's registry mount;
/// answers its id.
fn register_bytes(s: &Server, subject: &str) -> u64 {
    let (status, v) = s.http(
        "POST",
        &format!("/schema-registry/subjects/{subject}/versions"),
        Some(serde_json::json!({"schema": "\"bytes\""})),
    );
    assert_eq!(status, 200, "{v}");
    v["id"].as_u64().unwrap()
}

#[test]
fn framed_payloads_pass_topics_that_enforce_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--schema-registry-addr", ""], &[]);
    let kafka = s.kafka.to_string();
    for mode in ["id", "strict"] {
        let topic = format!("bench-{mode}");
        let id = register_bytes(&s, &format!("{topic}-value")).to_string();
        let config = format!("value.schema.validation={mode}");
        let flags = ["--topic", &topic, "--topic-config", &config];
        let mut args = vec!["produce", "--count", "2000", "--schema-id", &id];
        args.extend_from_slice(&flags);
        let r = bench(&s, &args);
        assert_eq!(r["messages"], 2000, "{mode}: {r}");
        assert_eq!(s.events_stored(&topic), 2000, "{mode}");
        // Plain payloads, and an id the registry does not have, are refused by the topic.
        for extra in [&[][..], &["--schema-id", "999"][..]] {
            let mut args = vec!["--output", "json", "bench", "produce", "--count", "10"];
            args.extend_from_slice(&["--topic", &topic, "--kafka", &kafka]);
            args.extend_from_slice(extra);
            let o = s.cli(&args);
            assert_eq!(o.status.code(), Some(1), "{mode} {extra:?}");
            assert!(stderr(&o).contains("Kafka error 87"), "{}", stderr(&o));
        }
    }
    // e2e finds its timestamp after the framing.
    let id = register_bytes(&s, "bench-e2e-strict-value").to_string();
    let r = bench(
        &s,
        &[
            "e2e",
            "--duration",
            "2",
            "--rate",
            "500",
            "--topic",
            "bench-e2e-strict",
            "--topic-config",
            "value.schema.validation=strict",
            "--schema-id",
            &id,
        ],
    );
    assert_eq!(r["details"]["lost"], 0, "{r}");
    assert!(r["latency"]["samples"].as_u64().unwrap() > 0, "{r}");
    // A config the server refuses names itself; one given for an existing topic is not applied.
    let o = s.cli(&[
        "bench",
        "produce",
        "--topic",
        "bench-bad-config",
        "--topic-config",
        "value.schema.validation=sometimes",
        "--kafka",
        &kafka,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("value.schema.validation"),
        "{}",
        stderr(&o)
    );
    let o = s.cli(&[
        "bench",
        "produce",
        "--count",
        "10",
        "--topic",
        "bench-id",
        "--topic-config",
        "value.schema.validation=none",
        "--kafka",
        &kafka,
    ]);
    assert_eq!(o.status.code(), Some(1), "still id: plain payloads refused");
    assert!(stderr(&o).contains("not applied"), "{}", stderr(&o));
    assert_eq!(s.stop(), 0);
}
