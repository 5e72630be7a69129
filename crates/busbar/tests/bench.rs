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
    let o = cli_at(
        "http://127.0.0.1:1",
        &["bench", "produce", "--kafka", "127.0.0.1:1"],
        None,
    );
    assert_eq!(o.status.code(), Some(3), "server unreachable");
    assert!(stderr(&o).contains("connect"), "{}", stderr(&o));
}
