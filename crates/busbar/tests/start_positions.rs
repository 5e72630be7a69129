//! Where each front end starts reading (issue 15 item 12), through the real binary. One rule:
//! consumers that live on the server (HTTP consumer instances, both Server-Sent Events streams,
//! subscriptions) start at `latest` unless told otherwise, as Kafka clients do
//! (`auto.offset.reset=latest`); the CLI's `consume` starts at the beginning, as `kcat -o
//! beginning` does, with or without `--group`, and `--start latest` starts at the end.

mod common;

use busbar_testkit::http::read_stream;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// The two old events as `consume` prints them.
const OLD: &str = "{\"m\":\"old-1\"}\n{\"m\":\"old-2\"}\n";

/// A server with topic `t` (one partition) holding two events, `old-1` and `old-2`.
fn server_with_old_events() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &[],
        &[("BUSBAR_BROKER_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")],
    );
    topics(&s, &[("t", 1), ("copy", 1)]);
    publish(
        &s,
        "t",
        json!([{"value": {"m": "old-1"}}, {"value": {"m": "old-2"}}]),
    );
    (dir, s)
}

/// Opens the SSE stream at `path`, publishes `new` once it is open, and answers what it read.
fn stream_with_new_event(s: &Server, path: &str, new: &str) -> String {
    let addr = s.addr;
    let url = s.url();
    let new_event = new.to_string();
    let publisher = std::thread::spawn(move || {
        // The stream is open once the server has answered its headers; give it that long.
        std::thread::sleep(Duration::from_millis(1500));
        let o = cli_at(
            &url,
            &["produce", "t", &json!({"m": new_event}).to_string()],
            None,
        );
        assert!(o.status.success(), "{}", stderr(&o));
    });
    let got = read_stream(addr, path, Duration::from_secs(20), |got| got.contains(new)).unwrap();
    publisher.join().unwrap();
    got
}

#[test]
fn server_side_consumers_start_at_latest_unless_told() {
    let (_dir, s) = server_with_old_events();
    // A consumer instance without `start`.
    let (st, c) = s.http(
        "POST",
        "/groups/g1/consumers",
        Some(json!({"topics": ["t"]})),
    );
    assert_eq!(st, 201, "{c}");
    let base = format!(
        "/groups/g1/consumers/{}",
        c["consumer_id"].as_str().unwrap()
    );
    publish(&s, "t", json!({"value": {"m": "new-1"}}));
    let (st, v) = s.http("GET", &format!("{base}/events?wait_ms=2000"), None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["events"], json!([v["events"][0].clone()]), "{v}");
    assert_eq!(v["events"][0]["value"]["m"], "new-1", "{v}");
    // The group stream without `start`.
    let got = stream_with_new_event(&s, "/groups/g2/stream?topics=t", "new-2");
    assert!(got.contains("new-2") && !got.contains("old-"), "{got}");
    // The partition stream without `offset` or `start`; `start=earliest` from the log start.
    let got = stream_with_new_event(&s, "/topics/t/partitions/0/stream", "new-3");
    assert!(got.contains("new-3") && !got.contains("old-"), "{got}");
    let got = read_stream(
        s.addr,
        "/topics/t/partitions/0/stream?start=earliest",
        Duration::from_secs(20),
        |got| got.contains("new-3"),
    )
    .unwrap();
    assert!(got.contains("old-1") && got.contains("new-3"), "{got}");
    let (st, v) = s.http("GET", "/topics/t/partitions/0/stream?start=middle", None);
    assert_eq!(st, 400, "{v}");
    // A subscription without `start`.
    subscribe(
        &s,
        json!({"name": "sub", "sources": ["t"], "target": {"topic": "copy"}}),
    );
    publish(&s, "t", json!({"value": {"m": "new-4"}}));
    let end = Instant::now() + WAIT;
    while s.events_stored("copy") < 1 {
        assert!(Instant::now() < end, "nothing delivered");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (_, v) = s.http("GET", "/topics/copy/partitions/0/events", None);
    assert_eq!(v["events"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["events"][0]["value"]["m"], "new-4", "{v}");
    assert_eq!(s.stop(), 0);
}

#[test]
fn the_cli_starts_at_the_beginning_unless_told_latest() {
    let (_dir, s) = server_with_old_events();
    let o = s.cli(&["consume", "t", "-n", "2"]);
    assert_eq!(stdout(&o), OLD, "{}", stderr(&o));
    let o = s.cli(&["consume", "t", "--group", "g", "-n", "2"]);
    assert_eq!(stdout(&o), OLD, "{}", stderr(&o));
    // --start latest without --group: only what arrives after the start.
    let url = s.url();
    let publisher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        let o = cli_at(&url, &["produce", "t", r#"{"m":"new-1"}"#], None);
        assert!(o.status.success(), "{}", stderr(&o));
    });
    let o = s.cli(&["consume", "t", "--start", "latest", "--follow", "-n", "1"]);
    publisher.join().unwrap();
    assert_eq!(stdout(&o), "{\"m\":\"new-1\"}\n", "{}", stderr(&o));
    // The help states the rule.
    let help = stdout(&s.cli(&["consume", "--help"]));
    assert!(help.contains("kcat -o beginning"), "{help}");
    assert!(help.contains("[default: earliest]"), "{help}");
    assert_eq!(s.stop(), 0);
}
