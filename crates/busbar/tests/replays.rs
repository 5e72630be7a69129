//! Replay runs through the real binary (issue 14 item 11): a run survives kill -9 as
//! `INTERRUPTED` with its counts and `last_replayed_time`, and a new run from that time delivers the
//! rest of the range.

mod common;

use busbar_testkit::target::Target;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn time(ms: i64) -> String {
    busbar_http::time::format_rfc3339(ms)
}

fn run(s: &Server, name: &str) -> Value {
    let (st, v) = s.http("GET", &format!("/subscriptions/s/replays/{name}"), None);
    assert_eq!(st, 200, "{v}");
    v
}

#[test]
fn a_replay_run_survives_kill_9_and_a_new_run_resumes_it() {
    const EVENTS: i64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("src", 1)]);
    let base = now_ms() - 120_000;
    let events: Vec<Value> = (0..EVENTS)
        .map(|i| json!({"value": {"n": i}, "timestamp": base + i * 1000}))
        .collect();
    publish(&s, "src", Value::Array(events));
    // From the latest offset: only replays reach the target.
    let t = Target::ok();
    subscribe(
        &s,
        json!({"name": "s", "sources": ["src"], "start": "latest", "target": {"url": t.url("/")}}),
    );
    let end = base + EVENTS * 1000;
    let body = json!({"name": "r1", "from": time(base), "to": time(end), "rate": 4});
    let (st, v) = s.http("POST", "/subscriptions/s/replays", Some(body));
    assert_eq!(st, 202, "{v}");
    t.wait(WAIT, |r| r.len() >= 8);
    s.kill9();

    let s = Server::start(dir.path(), &[], &[]);
    let r1 = run(&s, "r1");
    assert_eq!(r1["state"], "INTERRUPTED", "{r1}");
    assert!(r1["delivered"].as_u64().unwrap() >= 2, "{r1}");
    let (_, list) = s.http("GET", "/subscriptions/s/replays", None);
    assert_eq!(list["replays"].as_array().unwrap().len(), 1, "{list}");
    let resume = r1["last_replayed_time"]
        .as_str()
        .expect("progress")
        .to_string();

    let body = json!({"name": "r2", "from": resume, "to": time(end), "rate": 100});
    let (st, v) = s.http("POST", "/subscriptions/s/replays", Some(body));
    assert_eq!(st, 202, "{v}");
    let deadline = Instant::now() + WAIT;
    let r2 = loop {
        let v = run(&s, "r2");
        if v["state"] != "RUNNING" {
            break v;
        }
        assert!(Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(r2["state"], "COMPLETED", "{r2}");
    let got: BTreeSet<i64> = (t.received().iter())
        .map(|r| r.json()["n"].as_i64().unwrap())
        .collect();
    assert_eq!(got, (0..EVENTS).collect(), "every event replayed");
    assert_eq!(s.stop(), 0);
}
