//! The server log (issue 19), through the real binary: with `log.format = "json"` every line
//! busbar writes on stderr is one JSON object (`ts`, `level`, `source`, `event`, `msg`), the
//! ready line carries the addresses as fields, a subscription's failing target is one
//! `target_failing` line (with its reason and the backoff) however many events fail, a pause
//! is a `subscription_state` line, and shutdown ends with `stopped`. A format that is neither
//! `text` nor `json` stops the start naming the key.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Waits until a logged line satisfies `want`; every line must be a JSON object.
fn wait_line(lines: &Mutex<Vec<String>>, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        for l in lines.lock().unwrap().iter() {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            for key in ["ts", "level", "source", "event", "msg"] {
                assert!(v[key].is_string(), "{key} missing: {l}");
            }
            if want(&v) {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no such line in {:?}",
            lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The server, killed if the test fails before it stops it.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn json_lines_say_ready_failing_targets_state_changes_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Kill(
        serve_command(dir.path(), &["--schema-registry-addr", "127.0.0.1:0"])
            .env("BUSBAR_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let stderr = child.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[busbar] {l}");
            sink.lock().unwrap().push(l);
        }
    });
    let ready = wait_line(&lines, |v| v["event"] == "ready");
    assert_eq!(ready["level"], "info");
    assert_eq!(ready["source"], "busbar");
    assert!(
        ready["msg"].as_str().unwrap().contains(" ready in "),
        "{ready}"
    );
    assert_eq!(
        ready["recovery"], "first start, new data directory",
        "{ready}"
    );
    let http = ready["http"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://");
    let addr = http.parse().unwrap();
    let call = |method: &str, path: &str, body: Option<Value>| {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let ct = [("content-type", "application/json")];
        let r = busbar_testkit::http::request(addr, method, path, &ct, &bytes).unwrap();
        assert!(r.status < 300, "{method} {path}: {} {}", r.status, r.text());
    };
    call(
        "POST",
        "/topics",
        Some(json!({"name": "in", "partitions": 1})),
    );
    // A target nothing listens on: every attempt fails with a connection error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let sub = json!({"name": "down", "sources": ["in"], "target": {"url": format!("http://127.0.0.1:{port}/")},
        "delivery": {"backoff_initial_ms": 200, "backoff_max_ms": 400}});
    call("POST", "/subscriptions", Some(sub));
    let events: Vec<Value> = (0..20)
        .map(|i| json!({"key": format!("k{i}"), "value": i}))
        .collect();
    call("POST", "/topics/in/events", Some(json!(events)));
    let failing = wait_line(&lines, |v| v["event"] == "target_failing");
    assert_eq!(failing["level"], "warn");
    assert_eq!(failing["subscription"], "down");
    assert_eq!(failing["reason"], "connection", "{failing}");
    assert!(failing["retry_in_ms"].as_i64().unwrap() > 0, "{failing}");
    // Twenty events keep failing: still one line, not one per event or per attempt.
    std::thread::sleep(Duration::from_millis(1500));
    let count = |event: &str| {
        let all = lines.lock().unwrap();
        all.iter()
            .filter(|l| l.contains(&format!("\"event\":\"{event}\"")))
            .count()
    };
    assert_eq!(count("target_failing"), 1);
    // A subscription that flips in and out of backpressure with each event (waiting_max 1,
    // each event waits 50 ms for its second and last attempt): a few lines, not one per flip.
    call(
        "POST",
        "/topics",
        Some(json!({"name": "hot", "partitions": 1})),
    );
    call(
        "POST",
        "/topics",
        Some(json!({"name": "hot-dlq", "partitions": 1})),
    );
    let flappy = json!({"name": "flappy", "sources": ["hot"], "dead_letter_topic": "hot-dlq",
        "target": {"url": format!("http://127.0.0.1:{port}/")},
        "delivery": {"waiting_max": 1, "max_attempts": 2, "backoff_initial_ms": 50,
            "backoff_max_ms": 50}});
    call("POST", "/subscriptions", Some(flappy));
    let hot: Vec<Value> = (0..40).map(|i| json!({"value": i})).collect();
    call("POST", "/topics/hot/events", Some(json!(hot)));
    let flips = wait_line(&lines, |v| {
        v["event"] == "subscription_state" && v["subscription"] == "flappy"
    });
    assert_eq!(flips["to"], "backpressure", "{flips}");
    std::thread::sleep(Duration::from_millis(2500));
    let flappy_lines = (lines.lock().unwrap().iter())
        .filter(|l| l.contains("\"subscription_state\"") && l.contains("\"flappy\""))
        .count();
    assert!((1..=2).contains(&flappy_lines), "{flappy_lines} lines");
    call("POST", "/subscriptions/down/pause", None);
    let paused = wait_line(&lines, |v| {
        v["event"] == "subscription_state" && v["subscription"] == "down"
    });
    assert_eq!(
        (&paused["subscription"], &paused["to"]),
        (&json!("down"), &json!("paused"))
    );
    let term = Command::new("kill")
        .arg("-TERM")
        .arg(child.0.id().to_string())
        .status();
    assert!(term.unwrap().success());
    assert!(child.0.wait().unwrap().success());
    let stopped = wait_line(&lines, |v| v["event"] == "stopped");
    assert_eq!(stopped["msg"], "stopped cleanly");
}

#[test]
fn a_log_format_that_is_not_text_or_json_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = refused_start_with(dir.path(), &[("BUSBAR_LOG_FORMAT", "xml")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("log.format"), "{err}");
}
