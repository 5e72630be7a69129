//! The bus through the real binary: subscriptions over HTTP and the CLI, CloudEvents to real HTTP
//! target servers scripted to answer 200, 500, 429 with Retry-After, 410, 400, to hang and to refuse
//! connections; per-key ordering; fan-out; dead letters, redrive and replay; kill -9 during delivery;
//! bad input that creates nothing; subscriptions from the config file.

mod common;

use busbar_testkit::target::{refused_addr, Received, Reply, Target};
use common::*;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn on(path: &str) -> impl Fn(&[Received]) -> usize + '_ {
    move |r: &[Received]| r.iter().filter(|x| x.path == path).count()
}

/// A script answering per path from a list (the last answer repeats).
fn per_path(script: Vec<(&'static str, Vec<Reply>)>) -> Target {
    let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let script: HashMap<&str, Vec<Reply>> = script.into_iter().collect();
    Target::start(move |req, _| {
        let mut c = counts.lock().unwrap();
        let n = c.entry(req.path.clone()).or_default();
        let answers = script.get(req.path.as_str()).cloned().unwrap_or_default();
        let reply = answers
            .get(*n)
            .or(answers.last())
            .cloned()
            .unwrap_or(Reply::Status(200));
        *n += 1;
        reply
    })
}

#[test]
fn http_targets_get_cloudevents_binary_and_structured_with_trace_context() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("orders", 2)]);
    let t = Target::ok();
    subscribe(
        &s,
        json!({"name": "bin", "sources": ["orders"],
               "target": {"url": t.url("/bin"), "headers": {"x-api-key": "secret"}}}),
    );
    subscribe(
        &s,
        json!({"name": "st", "sources": ["orders"], "pattern": {"type": ["order.created"]},
               "target": {"url": t.url("/st"), "mode": "structured"}}),
    );
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = busbar_testkit::http::request(
        s.addr,
        "POST",
        "/topics/orders/events",
        &[
            ("content-type", "application/json"),
            ("ce-specversion", "1.0"),
            ("ce-id", "evt-1"),
            ("ce-source", "/shop"),
            ("ce-type", "order.created"),
            ("traceparent", trace),
        ],
        br#"{"total": 5}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    publish(&s, "orders", json!({"key": "k", "value": {"total": 7}}));
    let got = t.wait(WAIT, |r| on("/bin")(r) == 2 && on("/st")(r) == 1);
    let bin: Vec<&Received> = got.iter().filter(|r| r.path == "/bin").collect();
    let ce = bin
        .iter()
        .find(|r| r.header("ce-id") == Some("evt-1"))
        .unwrap();
    assert_eq!(ce.header("ce-type"), Some("order.created"));
    assert_eq!(ce.header("ce-source"), Some("/shop"));
    assert_eq!(ce.header("ce-specversion"), Some("1.0"));
    assert_eq!(ce.header("content-type"), Some("application/json"));
    assert_eq!(ce.header("x-api-key"), Some("secret"));
    assert_eq!(ce.json(), json!({"total": 5}));
    let tp = ce.header("traceparent").expect("trace context continues");
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{tp}"
    );
    assert_ne!(tp, trace, "the delivery is a new span of the same trace");
    let plain = bin
        .iter()
        .find(|r| r.header("ce-id") != Some("evt-1"))
        .unwrap();
    assert_eq!(plain.header("ce-type"), Some("busbar.event"));
    assert_eq!(plain.header("ce-source"), Some("/topics/orders"));
    assert_eq!(plain.header("ce-partitionkey"), Some("k"));
    assert!(plain.header("ce-id").unwrap().contains('-'));
    assert_eq!(plain.json(), json!({"total": 7}));
    let st = got.iter().find(|r| r.path == "/st").unwrap();
    assert!(st
        .header("content-type")
        .unwrap()
        .starts_with("application/cloudevents+json"));
    let body = st.json();
    assert_eq!(body["id"], "evt-1");
    assert_eq!(body["type"], "order.created");
    assert_eq!(body["data"], json!({"total": 5}));
    let v = wait_sub(&s, "bin", |v| {
        v["counters"]["delivered"] == 2 && v["lag"] == 0
    });
    assert_eq!(v["counters"]["matched"], 2);
    assert_eq!(v["state"], "running");
    assert_eq!(s.stop(), 0);
}

fn dead_letter_of(s: &Server, sub: &str) -> Value {
    let end = Instant::now() + WAIT;
    loop {
        let (st, v) = s.http(
            "GET",
            &format!("/dead-letters/dlq?subscription={sub}"),
            None,
        );
        assert_eq!(st, 200, "{v}");
        if let Some(d) = v["dead_letters"].get(0) {
            return d.clone();
        }
        assert!(Instant::now() < end, "no dead letter for {sub}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn retries_follow_the_policy_and_dead_letters_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("in", 1), ("dlq", 1)]);
    let retry_after = vec![("Retry-After".to_string(), "1".to_string())];
    let t = per_path(vec![
        (
            "/flaky",
            vec![
                Reply::Status(500),
                Reply::StatusWith(429, retry_after),
                Reply::Status(200),
            ],
        ),
        ("/gone", vec![Reply::Status(410)]),
        ("/bad", vec![Reply::Status(400), Reply::Status(200)]),
        ("/hang", vec![Reply::Hang(Duration::from_secs(3))]),
        ("/down", vec![Reply::Status(503)]),
        (
            "/stop",
            vec![Reply::StatusWith(
                503,
                vec![("Retry-After".into(), "-1".into())],
            )],
        ),
    ]);
    let fast = json!({"backoff_initial_ms": 50, "backoff_max_ms": 100, "max_attempts": 5});
    let refused = format!("http://{}/x", refused_addr());
    let subs = [
        ("flaky", t.url("/flaky"), fast.clone()),
        ("gone", t.url("/gone"), fast.clone()),
        ("bad", t.url("/bad"), fast.clone()),
        (
            "hang",
            t.url("/hang"),
            json!({"timeout_ms": 200, "max_attempts": 2, "backoff_initial_ms": 50}),
        ),
        (
            "refused",
            refused,
            json!({"max_attempts": 3, "backoff_initial_ms": 20, "backoff_max_ms": 40}),
        ),
        (
            "aged",
            t.url("/down"),
            json!({"max_age_s": 1, "backoff_initial_ms": 300, "backoff_max_ms": 300, "max_attempts": 1000}),
        ),
        ("stop", t.url("/stop"), fast.clone()),
    ];
    for (name, url, delivery) in &subs {
        subscribe(
            &s,
            json!({"name": name, "sources": ["in"], "pattern": {"data": {"to": [name]}},
                   "target": {"url": url}, "delivery": delivery, "dead_letter_topic": "dlq"}),
        );
    }
    for (name, _, _) in &subs {
        publish(&s, "in", json!({"key": name, "value": {"to": name}}));
    }
    // 500, then 429 with Retry-After: 1 (longer than the 50-100 ms backoff), then 200.
    let got = t.wait(WAIT, |r| on("/flaky")(r) == 3);
    let flaky: Vec<&Received> = got.iter().filter(|r| r.path == "/flaky").collect();
    let waited = flaky[2].at - flaky[1].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After ignored: {waited:?}"
    );
    let v = wait_sub(&s, "flaky", |v| {
        v["counters"]["delivered"] == 1 && v["retrying"] == 0
    });
    assert_eq!(v["counters"]["retried"], 2);

    let expect = [
        ("gone", "http_status", "non_retriable", Some(410), 1),
        ("bad", "http_status", "non_retriable", Some(400), 1),
        ("hang", "timeout", "max_attempts", None, 2),
        ("refused", "connection", "max_attempts", None, 3),
        ("aged", "http_status", "max_age", Some(503), 0),
        ("stop", "http_status", "retry_after_negative", Some(503), 1),
    ];
    for (sub, reason, exhausted, status, attempts) in expect {
        let d = dead_letter_of(&s, sub);
        assert_eq!(d["reason"], reason, "{sub}: {d}");
        assert_eq!(d["exhausted"], exhausted, "{sub}: {d}");
        assert_eq!(d["status"], json!(status), "{sub}: {d}");
        if attempts > 0 {
            assert_eq!(d["attempts"], attempts, "{sub}: {d}");
        } else {
            assert!(d["attempts"].as_u64().unwrap() >= 2, "{sub}: {d}");
        }
        assert_eq!(d["source_topic"], "in");
        assert_eq!(d["event"]["value"], json!({"to": sub}));
        assert_eq!(d["event"]["key"], sub);
        assert!(d["first_attempt"].as_str().unwrap() <= d["last_attempt"].as_str().unwrap());
        wait_sub(&s, sub, |v| {
            v["counters"]["dead_lettered"] == 1 && v["retrying"] == 0
        });
    }
    // Dead letters are ordinary events: the topic reads like any other.
    let (_, evs) = s.http(
        "GET",
        "/topics/dlq/partitions/0/events?offset=0&limit=100",
        None,
    );
    assert_eq!(evs["events"].as_array().unwrap().len(), 6);
    // The CLI lists them, and redrive sends `bad` back through its subscription (now answering 200).
    let out = stdout(&s.cli(&["dlq", "list", "dlq", "--reason", "non_retriable"]));
    assert!(
        out.contains("gone") && out.contains("bad") && !out.contains("hang"),
        "{out}"
    );
    let first_id = got
        .iter()
        .find(|r| r.path == "/bad")
        .unwrap()
        .header("ce-id")
        .unwrap()
        .to_string();
    let o = s.cli(&["dlq", "redrive", "dlq", "--subscription", "bad"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("redriven 1"), "{}", stdout(&o));
    let got = t.wait(WAIT, |r| on("/bad")(r) == 2);
    let again = got.iter().filter(|r| r.path == "/bad").nth(1).unwrap();
    assert_eq!(
        again.header("ce-id"),
        Some(first_id.as_str()),
        "redrive keeps the event id"
    );
    wait_sub(&s, "bad", |v| {
        v["counters"]["delivered"] == 1 && v["retrying"] == 0
    });
    let shown = json_out(&s.cli(&["--output", "json", "dlq", "show", "dlq", "0", "0"]));
    assert!(shown["subscription"].is_string(), "{shown}");
    // Redriving letters of a deleted subscription is refused, naming it.
    assert_eq!(s.http("DELETE", "/subscriptions/gone", None).0, 204);
    let (st, v) = s.http(
        "POST",
        "/dead-letters/dlq/redrive",
        Some(json!({"subscription": "gone"})),
    );
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (404, Some("unknown_subscription")),
        "{v}"
    );
    assert_eq!(s.stop(), 0);
}

#[test]
fn a_failing_key_holds_back_only_that_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("keys", 1)]);
    let red_failures = Arc::new(Mutex::new(0));
    let rf = red_failures.clone();
    let t = Target::start(move |req, _| {
        let mut n = rf.lock().unwrap();
        if req.json()["key"] == "red" && *n < 3 {
            *n += 1;
            return Reply::Status(500);
        }
        Reply::Status(200)
    });
    subscribe(
        &s,
        json!({"name": "ordered", "sources": ["keys"], "target": {"url": t.url("/k")},
               "delivery": {"ordering": "key", "concurrency": 4, "backoff_initial_ms": 200, "backoff_max_ms": 200}}),
    );
    let mut events = Vec::new();
    for i in 0..5 {
        for key in ["red", "blue", "green"] {
            events.push(json!({"key": key, "value": {"key": key, "i": i}}));
        }
    }
    publish(&s, "keys", Value::Array(events));
    let got = t.wait(WAIT, |r| r.len() == 18);
    let seq = |key: &str| -> Vec<i64> {
        got.iter()
            .filter(|r| r.json()["key"] == key)
            .map(|r| r.json()["i"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(seq("red"), vec![0, 0, 0, 0, 1, 2, 3, 4]);
    assert_eq!(seq("blue"), vec![0, 1, 2, 3, 4]);
    assert_eq!(seq("green"), vec![0, 1, 2, 3, 4]);
    let last_other = got.iter().rposition(|r| r.json()["key"] != "red").unwrap();
    let first_red_ok = got
        .iter()
        .enumerate()
        .filter(|(_, r)| r.json()["key"] == "red")
        .nth(3)
        .unwrap()
        .0;
    assert!(last_other < first_red_ok, "other keys waited for red");
    let v = wait_sub(&s, "ordered", |v| v["counters"]["delivered"] == 15);
    assert_eq!(v["counters"]["retried"], 3);
    assert_eq!(s.stop(), 0);
}

#[test]
fn fan_out_to_many_subscriptions_and_a_topic_target() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("fan", 3), ("copied", 2)]);
    let t = Target::ok();
    for g in 0..20 {
        subscribe(
            &s,
            json!({"name": format!("g{g}"), "sources": ["fan"], "pattern": {"data": {"g": [g]}},
                   "target": {"url": t.url(&format!("/g{g}"))}, "delivery": {"ordering": "none"}}),
        );
    }
    subscribe(
        &s,
        json!({"name": "big", "sources": ["fan"],
               "pattern": {"data": {"n": [{"numeric": [">=", 100]}]}},
               "transform": {"paths": {"n": "$.data.n"}, "template": "{\"number\": <n>}"},
               "target": {"topic": "copied"}}),
    );
    let events: Vec<Value> = (0..200)
        .map(|n| json!({"key": format!("k{n}"), "value": {"g": n % 20, "n": n}}))
        .collect();
    publish(&s, "fan", Value::Array(events));
    let got = t.wait(WAIT, |r| r.len() >= 200);
    std::thread::sleep(Duration::from_millis(300));
    let got_all = t.received();
    assert_eq!(
        got_all.len(),
        200,
        "each event to exactly its one subscription"
    );
    for g in 0..20 {
        let path = format!("/g{g}");
        let ns: HashSet<i64> = got
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.json()["n"].as_i64().unwrap())
            .collect();
        assert_eq!(
            ns,
            (0..10).map(|k| k * 20 + g).collect::<HashSet<i64>>(),
            "{path}"
        );
    }
    wait_sub(&s, "big", |v| v["counters"]["delivered"] == 100);
    let mut numbers = Vec::new();
    for p in 0..2 {
        let (_, v) = s.http(
            "GET",
            &format!("/topics/copied/partitions/{p}/events?offset=0&limit=200"),
            None,
        );
        for e in v["events"].as_array().unwrap() {
            numbers.push(e["value"]["number"].as_i64().unwrap());
        }
    }
    numbers.sort();
    assert_eq!(numbers, (100..200).collect::<Vec<i64>>());
    assert_eq!(s.stop(), 0);
}

/// An event routed topic to topic keeps its CloudEvent identity: a reader of the target (here a
/// second subscription) sees the source event's id and source, so copies can be deduplicated.
#[test]
fn topic_targets_keep_the_source_events_identity() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("src", 1), ("dst", 1)]);
    let t = Target::ok();
    for (name, from, target, pattern) in [
        (
            "copy",
            "src",
            json!({"topic": "dst"}),
            json!({"data": {"kind": ["b"]}}),
        ),
        (
            "out",
            "dst",
            json!({"url": t.url("/out")}),
            json!({"data": {"kind": ["b"]}}),
        ),
    ] {
        subscribe(
            &s,
            json!({"name": name, "sources": [from], "start": "earliest", "target": target,
                   "pattern": pattern}),
        );
    }
    publish(
        &s,
        "src",
        json!([{"value": {"kind": "a"}}, {"value": {"kind": "b"}}]),
    );
    let got = t.wait(WAIT, |r| r.len() == 1);
    assert_eq!(
        (got[0].header("ce-id"), got[0].header("ce-source")),
        (Some("0-1"), Some("/topics/src")),
        "{:?}",
        got[0].headers
    );
    assert_eq!(got[0].json()["kind"], "b");
    assert_eq!(s.stop(), 0);
}

/// A transform whose output would pass `transform.output_bytes_max` dead-letters that event at
/// once with reason `transform_too_large`; smaller events are delivered transformed.
#[test]
fn an_oversized_transform_output_is_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("src", 1), ("dst", 1), ("dlq", 1)]);
    subscribe(
        &s,
        json!({"name": "t", "sources": ["src"], "start": "earliest", "target": {"topic": "dst"},
               "dead_letter_topic": "dlq",
               "transform": {"paths": {"v": "$.data.v"}, "template": "<v><v><v>",
                             "output_bytes_max": 100}}),
    );
    publish(
        &s,
        "src",
        json!([{"value": {"v": "y".repeat(40)}}, {"value": {"v": "x"}}]),
    );
    let d = dead_letter_of(&s, "t");
    assert_eq!(d["reason"], "transform_too_large", "{d}");
    let v = wait_sub(&s, "t", |v| v["counters"]["delivered"] == 1);
    assert_eq!(v["counters"]["dead_lettered"], 1, "{v}");
    // Visible once the delivery's transaction commits (at most a commit interval later).
    visible(&s, "dst", 1);
    let (st, got) = s.http(
        "GET",
        "/topics/dst/partitions/0/events?offset=0&limit=10&encoding=utf8",
        None,
    );
    assert_eq!(st, 200, "{got}");
    assert_eq!(got["events"].as_array().unwrap().len(), 1, "{got}");
    assert_eq!(got["events"][0]["value"], "\"x\"\"x\"\"x\"", "{got}");
    assert_eq!(s.stop(), 0);
}

/// Waits until readers of `topic` see `n` events: a topic target's deliveries (counted as they
/// are appended) become visible when the worker commits them with its position.
fn visible(s: &Server, topic: &str, n: u64) {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while s.events_stored(topic) < n {
        assert!(
            std::time::Instant::now() < end,
            "{topic} never showed {n} events"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// With `ordering: key` (the default), events without a key keep partition order, also when
/// routed topic to topic.
#[test]
fn keyless_events_keep_partition_order_topic_to_topic() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("src", 1), ("dst", 1)]);
    subscribe(
        &s,
        json!({"name": "copy", "sources": ["src"], "start": "earliest",
               "target": {"topic": "dst"}, "pattern": {"data": {"n": [{"exists": true}]}}}),
    );
    for chunk in 0..4 {
        let evs: Vec<Value> = (0..50)
            .map(|i| json!({"value": {"n": chunk * 50 + i}}))
            .collect();
        publish(&s, "src", Value::Array(evs));
    }
    wait_sub(&s, "copy", |v| v["counters"]["delivered"] == 200);
    visible(&s, "dst", 200);
    let (_, v) = s.http(
        "GET",
        "/topics/dst/partitions/0/events?offset=0&limit=500",
        None,
    );
    let got: Vec<i64> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(got, (0..200).collect::<Vec<i64>>());
    assert_eq!(s.stop(), 0);
}

#[test]
fn replay_redelivers_a_time_range_marked_and_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("r", 2)]);
    let t = Target::ok();
    subscribe(
        &s,
        json!({"name": "rs", "sources": ["r"], "target": {"url": t.url("/r")}}),
    );
    let from = busbar_http::time::format_rfc3339(now_ms() - 1000);
    publish(
        &s,
        "r",
        Value::Array(
            (0..10)
                .map(|i| json!({"key": format!("{i}"), "value": {"i": i}}))
                .collect(),
        ),
    );
    t.wait(WAIT, |r| r.len() == 10);
    let to = busbar_http::time::format_rfc3339(now_ms());
    let future = busbar_http::time::format_rfc3339(now_ms() + 60_000);
    let (st, v) = s.http(
        "POST",
        "/subscriptions/rs/replays",
        Some(json!({"name": "again", "from": from, "to": to, "rate": 20})),
    );
    assert_eq!(st, 202, "{v}");
    let start = Instant::now();
    let got = t.wait(WAIT, |r| r.len() == 20);
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "rate limit: {:?}",
        start.elapsed()
    );
    let first: HashSet<&str> = got[..10]
        .iter()
        .map(|r| r.header("ce-id").unwrap())
        .collect();
    let replayed: HashSet<&str> = got[10..]
        .iter()
        .map(|r| r.header("ce-id").unwrap())
        .collect();
    assert_eq!(first, replayed, "replays keep event ids");
    assert!(got[..10]
        .iter()
        .all(|r| r.header("ce-busbarreplay").is_none()));
    assert!(got[10..]
        .iter()
        .all(|r| r.header("ce-busbarreplay") == Some("again")));
    let end = Instant::now() + WAIT;
    let run = loop {
        let (_, v) = s.http("GET", "/subscriptions/rs/replays/again", None);
        if v["state"] != "RUNNING" || Instant::now() > end {
            break v;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(run["state"], "COMPLETED", "{run}");
    assert_eq!(run["delivered"], 10);
    for (body, path) in [
        (json!({"name": "x", "from": to, "to": from}), "to"),
        (json!({"name": "x", "from": from, "to": future}), "future"),
        (
            json!({"name": "x", "from": from, "to": to, "rate": 0}),
            "rate",
        ),
        (json!({"name": "x y", "from": from, "to": to}), "name"),
        (json!({"name": "x", "from": "yesterday", "to": to}), "from"),
        (json!({"name": "x", "from": from}), "body"),
    ] {
        let (st, v) = s.http("POST", "/subscriptions/rs/replays", Some(body.clone()));
        assert_eq!(st, 400, "{body} -> {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(path) || path == "body", "{body} -> {msg}");
    }
    let (st, _) = s.http(
        "POST",
        "/subscriptions/nope/replays",
        Some(json!({"name": "x", "from": from, "to": to})),
    );
    assert_eq!(st, 404);
    assert_eq!(s.stop(), 0);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn bad_subscriptions_get_precise_errors_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("a", 1), ("b", 1)]);
    let ok = json!({"name": "s", "sources": ["a"], "target": {"topic": "b"}});
    let with = |k: &str, v: Value| {
        let mut x = ok.clone();
        x[k] = v;
        x
    };
    let cases = [
        (with("name", json!("no spaces")), "name"),
        (with("sources", json!([])), "sources"),
        (
            with("sources", json!(["missing"])),
            "sources[0]: unknown topic",
        ),
        (
            with("target", json!({"topic": "missing"})),
            "target.topic: unknown topic",
        ),
        (with("target", json!({"topic": "a"})), "loop"),
        (with("target", json!({"url": "not a url"})), "target.url"),
        (
            with(
                "target",
                json!({"url": "http://example.com/", "tls": {"ca_file": "/ca.pem"}}),
            ),
            "target.tls: only https:// targets use TLS",
        ),
        (
            with("target", json!({"url": "http://169.254.169.254/"})),
            "target.url: host 169.254.169.254 is forbidden by bus.targets",
        ),
        (with("target", json!({"queue": "x"})), "target"),
        (
            with("pattern", json!({"a": [{"numeric": [">", "x"]}]})),
            "pattern",
        ),
        (with("pattern", json!({"a": "scalar"})), "pattern"),
        (
            with(
                "transform",
                json!({"paths": {"x": "nodollar"}, "template": "<x>"}),
            ),
            "transform",
        ),
        (
            with("transform", json!({"template": "x".repeat(8193)})),
            "transform: template is 8193 bytes; at most 8192",
        ),
        (
            with("transform", json!({"template": "x", "output_bytes_max": 0})),
            "transform.output_bytes_max",
        ),
        (
            with("delivery", json!({"max_attempts": 0})),
            "delivery.max_attempts",
        ),
        (
            with("delivery", json!({"timeout_ms": 999999999})),
            "delivery.timeout_ms",
        ),
        (
            with("delivery", json!({"ordering": "random"})),
            "delivery.ordering",
        ),
        (
            with("delivery", json!({"concurrency": -1})),
            "delivery.concurrency",
        ),
        (
            with("dead_letter_topic", json!("missing")),
            "dead_letter_topic: unknown topic",
        ),
        (with("start", json!("tomorrow")), "start"),
        (with("extra", json!(1)), "extra"),
        (json!({"sources": ["a"], "target": {"topic": "b"}}), "name"),
        (json!([1, 2]), "subscription"),
    ];
    for (body, want) in cases {
        let (st, v) = s.http("POST", "/subscriptions", Some(body.clone()));
        assert_eq!(st, 400, "{body} -> {v}");
        assert_eq!(v["error"]["code"], "invalid_subscription", "{body} -> {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{body}: {msg:?} lacks {want:?}");
    }
    let r = busbar_testkit::http::request(
        s.addr,
        "POST",
        "/subscriptions",
        &[("content-type", "application/json")],
        b"{not json",
    )
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    let huge = vec![b' '; 2 << 20];
    let r = busbar_testkit::http::request(
        s.addr,
        "POST",
        "/subscriptions",
        &[("content-type", "application/json")],
        &huge,
    )
    .unwrap();
    assert_eq!(r.status, 413);
    let (_, list) = s.http("GET", "/subscriptions", None);
    assert_eq!(list["subscriptions"], json!([]), "nothing was created");
    assert!(!s
        .http("GET", "/groups", None)
        .1
        .to_string()
        .contains("busbar-subscription"));
    subscribe(&s, ok.clone());
    let (st, v) = s.http("POST", "/subscriptions", Some(ok.clone()));
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (409, Some("subscription_exists"))
    );
    let (st, v) = s.http("PUT", "/subscriptions/s", Some(with("name", json!("t"))));
    assert_eq!(st, 400, "{v}");
    let (st, v) = s.http(
        "PUT",
        "/subscriptions/s",
        Some(with("delivery", json!({"concurrency": 0}))),
    );
    assert_eq!(st, 400, "{v}");
    let (_, v) = s.http("GET", "/subscriptions/s", None);
    assert_eq!(
        v["delivery"]["concurrency"], 16,
        "a refused update changes nothing"
    );
    for (m, p) in [
        ("GET", "/subscriptions/x"),
        ("DELETE", "/subscriptions/x"),
        ("POST", "/subscriptions/x/pause"),
    ] {
        let (st, v) = s.http(m, p, None);
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (404, Some("unknown_subscription")),
            "{m} {p}"
        );
    }
    let (st, _) = s.http("GET", "/dead-letters/b?limit=0", None);
    assert_eq!(st, 400);
    let (st, _) = s.http("GET", "/dead-letters/b?colour=red", None);
    assert_eq!(st, 400);
    let (st, _) = s.http("GET", "/dead-letters/missing", None);
    assert_eq!(st, 404);
    let (st, _) = s.http(
        "POST",
        "/dead-letters/b/redrive",
        Some(json!({"colour": "red"})),
    );
    assert_eq!(st, 400);
    // The CLI reports the server's refusal with exit code 1.
    let o = s.cli(&[
        "subscription",
        "create",
        "z",
        "--source",
        "missing",
        "--to-topic",
        "b",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("sources[0]: unknown topic"),
        "{}",
        stderr(&o)
    );
    assert_eq!(s.stop(), 0);
}

#[test]
fn pause_resume_update_and_delete_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("src", 1)]);
    let t = Target::ok();
    let url = t.url("/p");
    let o = s.cli(&[
        "subscription",
        "create",
        "life",
        "--source",
        "src",
        "--to-url",
        &url,
        "--pattern",
        r#"{"data": {"kind": ["a"]}}"#,
        "--max-attempts",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&s.cli(&["subscription", "list"])).contains("life"));
    publish(&s, "src", json!({"value": {"kind": "a", "n": 1}}));
    t.wait(WAIT, |r| r.len() == 1);
    assert!(s.cli(&["subscription", "pause", "life"]).status.success());
    publish(&s, "src", json!({"value": {"kind": "a", "n": 2}}));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(t.received().len(), 1, "paused: nothing delivered");
    let v = json_out(&s.cli(&["--output", "json", "subscription", "get", "life"]));
    assert_eq!(
        (v["state"].as_str(), v["lag"].as_u64()),
        (Some("paused"), Some(1)),
        "{v}"
    );
    assert!(s.cli(&["subscription", "resume", "life"]).status.success());
    t.wait(WAIT, |r| r.len() == 2);
    let o = s.cli(&[
        "subscription",
        "update",
        "life",
        "--source",
        "src",
        "--to-url",
        &url,
        "--pattern",
        r#"{"data": {"kind": ["b"]}}"#,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    publish(
        &s,
        "src",
        json!([{"value": {"kind": "a", "n": 3}}, {"value": {"kind": "b", "n": 4}}]),
    );
    let got = t.wait(WAIT, |r| r.len() == 3);
    assert_eq!(got[2].json()["n"], 4);
    assert!(s.cli(&["subscription", "delete", "life"]).status.success());
    assert_eq!(
        s.cli(&["subscription", "get", "life"]).status.code(),
        Some(1)
    );
    assert_eq!(s.stop(), 0);
}

#[test]
fn kill9_during_delivery_loses_nothing_and_keeps_retry_state() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("c", 4)]);
    let slow = Target::start(|_, _| Reply::After(Duration::from_millis(2), 200));
    subscribe(
        &s,
        json!({"name": "bulk", "sources": ["c"], "target": {"url": slow.url("/bulk")},
               "delivery": {"concurrency": 8}}),
    );
    // One event fails once; its retry is due 3 s later, after the crash below.
    let once = Target::start(|_, n| {
        if n == 0 {
            Reply::Status(500)
        } else {
            Reply::Status(200)
        }
    });
    subscribe(
        &s,
        json!({"name": "later", "sources": ["c"], "pattern": {"data": {"later": [true]}},
               "target": {"url": once.url("/later")},
               "delivery": {"backoff_initial_ms": 3000, "backoff_max_ms": 3000}}),
    );
    publish(&s, "c", json!({"key": "x", "value": {"later": true}}));
    const N: usize = 3000;
    for chunk in 0..6 {
        let evs: Vec<Value> = (0..N / 6)
            .map(|i| json!({"key": format!("k{}", chunk * 1000 + i), "value": {"n": chunk * 1000 + i}}))
            .collect();
        publish(&s, "c", Value::Array(evs));
    }
    once.wait(WAIT, |r| r.len() == 1);
    slow.wait(WAIT, |r| r.len() >= 800);
    std::thread::sleep(Duration::from_millis(300)); // positions committed past the failed event
    s.kill9();
    let before = slow.received().len();
    let s = Server::start(dir.path(), &[], &[]);
    let got = slow.wait(Duration::from_secs(60), |r| {
        r.iter()
            .filter_map(|x| x.json()["n"].as_i64())
            .collect::<HashSet<_>>()
            .len()
            >= N
    });
    let ids: Vec<&str> = got.iter().map(|r| r.header("ce-id").unwrap()).collect();
    let distinct: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), N + 1, "every event delivered (stable ids)");
    let dups = ids.len() - distinct.len();
    eprintln!(
        "kill -9 after {before} deliveries: {} deliveries, {dups} duplicates",
        ids.len()
    );
    assert!(dups <= before, "only uncommitted deliveries repeat");
    let later = once.wait(WAIT, |r| r.len() == 2);
    assert_eq!(later[0].header("ce-id"), later[1].header("ce-id"));
    let v = wait_sub(&s, "later", |v| v["retrying"] == 0);
    assert_eq!(v["lag"], 0, "{v}");
    assert_eq!(s.stop(), 0);
}

/// Hot keys with `ordering: key`: the head of every key is in flight (its target hangs) and the
/// rest of each key is parked behind it when the server is killed with -9. After the restart each
/// key's events arrive in order, head first (the parked ones must not overtake the head, which
/// has no retry entry and is read again from the topic).
#[test]
fn kill9_with_hot_keys_keeps_each_keys_order() {
    const KEYS: i64 = 8;
    const PER_KEY: i64 = 10;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("h", 2)]);
    let t = Target::start(|req, n| {
        let ev = req.json()["n"].as_i64().unwrap_or(-1);
        if n < KEYS as usize && ev < KEYS {
            return Reply::Hang(Duration::from_secs(30));
        }
        Reply::Status(200)
    });
    subscribe(
        &s,
        json!({"name": "hot", "sources": ["h"], "start": "earliest", "target": {"url": t.url("/h")},
               "delivery": {"ordering": "key", "concurrency": 32}}),
    );
    let evs: Vec<Value> = (0..KEYS * PER_KEY)
        .map(|n| json!({"key": format!("k{}", n % KEYS), "value": {"n": n}}))
        .collect();
    publish(&s, "h", Value::Array(evs));
    t.wait(WAIT, |r| r.len() == KEYS as usize);
    wait_sub(&s, "hot", |v| v["retrying"] == KEYS * (PER_KEY - 1));
    std::thread::sleep(Duration::from_millis(300)); // positions committed
    s.kill9();
    let s = Server::start(dir.path(), &[], &[]);
    let all = (KEYS * (PER_KEY + 1)) as usize;
    let got = t.wait(WAIT, |r| r.len() >= all);
    wait_sub(&s, "hot", |v| v["lag"] == 0 && v["retrying"] == 0);
    let mut per_key: HashMap<i64, Vec<i64>> = HashMap::new();
    for r in &got[KEYS as usize..] {
        let n = r.json()["n"].as_i64().unwrap();
        per_key.entry(n % KEYS).or_default().push(n);
    }
    for k in 0..KEYS {
        let want: Vec<i64> = (0..PER_KEY).map(|i| k + i * KEYS).collect();
        assert_eq!(per_key[&k], want, "key k{k} after the restart");
    }
    assert_eq!(s.stop(), 0);
}

/// Header values of HTTP targets often carry credentials: they read as `***` over HTTP and in the
/// CLI, the target still gets the real value, and a spec read back and sent again keeps it.
#[test]
fn secret_header_values_are_masked_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("src", 1)]);
    let t = Target::ok();
    let v = subscribe(
        &s,
        json!({"name": "m", "sources": ["src"], "start": "earliest",
               "target": {"url": t.url("/m"), "headers": {"x-api-key": "s3cret"}}}),
    );
    assert_eq!(v["target"]["headers"]["x-api-key"], "***", "{v}");
    let (_, list) = s.http("GET", "/subscriptions", None);
    let o = s.cli(&["--output", "json", "subscription", "get", "m"]);
    for shown in [
        list.to_string(),
        stdout(&o),
        s.http("GET", "/subscriptions/m", None).1.to_string(),
    ] {
        assert!(
            !shown.contains("s3cret") && shown.contains("x-api-key"),
            "{shown}"
        );
    }
    // Read, change one field, send back: the masked value is kept.
    let (_, view) = s.http("GET", "/subscriptions/m", None);
    let fields = ["name", "sources", "start", "target", "delivery"];
    let spec = fields.map(|f| (f.to_string(), view[f].clone()));
    let mut spec = Value::Object(spec.into_iter().collect());
    spec["delivery"]["max_attempts"] = json!(3);
    let (st, v) = s.http("PUT", "/subscriptions/m", Some(spec.clone()));
    assert_eq!(st, 200, "{v}");
    publish(&s, "src", json!({"value": {"n": 1}}));
    let got = t.wait(WAIT, |r| r.len() == 1);
    assert_eq!(got[0].header("x-api-key"), Some("s3cret"));
    spec["target"]["headers"]["x-other"] = json!("***");
    let (st, v) = s.http("PUT", "/subscriptions/m", Some(spec));
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("invalid_subscription")),
        "{v}"
    );
    assert!(v.to_string().contains("target.headers.x-other"), "{v}");
    // A masked value does not follow the target to another host (nobody could read what it
    // would send there), by PUT or by PATCH; the same host with another path keeps it.
    let elsewhere = Target::ok();
    let moved = json!({"target": {"url": elsewhere.url("/m").replace("127.0.0.1", "localhost"),
                                  "headers": {"x-api-key": "***"}}});
    let (st, v) = s.http("PATCH", "/subscriptions/m", Some(moved));
    assert_eq!(st, 400, "{v}");
    assert!(v.to_string().contains("same scheme, host and port"), "{v}");
    let mut put = view.clone();
    put["target"]["url"] = json!(elsewhere.url("/m").replace("127.0.0.1", "localhost"));
    let (st, v) = s.http("PUT", "/subscriptions/m", Some(put));
    assert_eq!(st, 400, "{v}");
    let same = json!({"target": {"url": t.url("/other"), "headers": {"x-api-key": "***"}}});
    let (st, v) = s.http("PATCH", "/subscriptions/m", Some(same));
    assert_eq!(st, 200, "{v}");
    assert!(elsewhere.received().is_empty());
    assert_eq!(s.stop(), 0);
}

/// The number of subscriptions is bounded (`bus.subscriptions_max`): one past it is refused with
/// a clear error and creates nothing; deleting one makes room again.
#[test]
fn subscriptions_are_bounded_by_subscriptions_max() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("BUSBAR_BUS_SUBSCRIPTIONS_MAX", "2")];
    let s = Server::start(dir.path(), &[], &env);
    topics(&s, &[("src", 1)]);
    let spec =
        |n: &str| json!({"name": n, "sources": ["src"], "target": {"url": "http://127.0.0.1:9/"}});
    subscribe(&s, spec("a"));
    subscribe(&s, spec("b"));
    let (st, v) = s.http("POST", "/subscriptions", Some(spec("c")));
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (409, Some("limit_reached")),
        "{v}"
    );
    assert!(v.to_string().contains("bus.subscriptions_max"), "{v}");
    assert_eq!(s.http("GET", "/subscriptions/c", None).0, 404);
    assert_eq!(s.http("DELETE", "/subscriptions/a", None).0, 204);
    subscribe(&s, spec("c"));
    assert_eq!(s.stop(), 0);
    let (code, err) = refused_start_with(dir.path(), &[("BUSBAR_BUS_SUBSCRIPTIONS_MAX", "0")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bus.subscriptions_max"), "{err}");
}

/// DELETE of a topic a subscription dead-letters to answers 409 naming the subscription, and
/// the topic stays; once the subscription is gone it can be deleted (issue 14 item 5).
#[test]
fn a_dead_letter_topic_in_use_is_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("src", 1), ("dlq", 1)]);
    subscribe(
        &s,
        json!({"name": "keeper", "sources": ["src"], "target": {"url": "http://127.0.0.1:9/"},
            "dead_letter_topic": "dlq"}),
    );
    let (st, v) = s.http("DELETE", "/topics/dlq", None);
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (409, Some("topic_in_use")),
        "{v}"
    );
    assert!(v.to_string().contains("keeper"), "{v}");
    assert_eq!(s.http("GET", "/topics/dlq", None).0, 200);
    assert_eq!(s.http("DELETE", "/subscriptions/keeper", None).0, 204);
    assert_eq!(s.http("DELETE", "/topics/dlq", None).0, 204);
    assert_eq!(s.stop(), 0);
}

#[test]
fn subscriptions_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let t = Target::ok();
    let cfg = dir.path().join("busbar.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[[subscriptions]]
name = "from-config"
sources = ["cfg-in"]
start = "earliest"
target = {{ url = "{}" }}
pattern = {{ data = {{ level = ["error"] }} }}
delivery = {{ max_attempts = 3 }}
dead_letter_topic = "cfg-dlq"
"#,
            t.url("/cfg")
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data, &["--config", cfg.to_str().unwrap()], &[]);
    publish(
        &s,
        "cfg-in",
        json!([{"value": {"level": "error"}}, {"value": {"level": "info"}}]),
    );
    let got = t.wait(WAIT, |r| !r.is_empty());
    assert_eq!(got[0].json()["level"], "error");
    let (_, v) = s.http("GET", "/subscriptions/from-config", None);
    assert_eq!(v["delivery"]["max_attempts"], 3);
    assert_eq!(s.stop(), 0);
    // Restarting with the same file changes nothing; a bad subscription stops start-up.
    let s = Server::start(&data, &["--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(
        s.http("GET", "/subscriptions", None).1["subscriptions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.stop(), 0);
    std::fs::write(
        &cfg,
        "[[subscriptions]]\nname = \"x\"\nsources = [\"a\"]\ntarget = { topic = \"b\" }\ndelivery = { concurrency = 0 }\n",
    )
    .unwrap();
    let o = std::process::Command::new(BIN)
        .args(["check-config", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("subscriptions[0]") && err.contains("delivery.concurrency"),
        "{err}"
    );
}

#[test]
fn unordered_delivery_respects_the_concurrency_limit_and_start_time() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("u", 4)]);
    publish(&s, "u", json!([{"value": {"old": true}}]));
    std::thread::sleep(Duration::from_millis(50));
    let start = busbar_http::time::format_rfc3339(now_ms());
    std::thread::sleep(Duration::from_millis(50));
    let t = Target::start(|_, _| Reply::After(Duration::from_millis(300), 200));
    subscribe(
        &s,
        json!({"name": "par", "sources": ["u"], "start": start, "target": {"url": t.url("/u")},
               "delivery": {"ordering": "none", "concurrency": 3}}),
    );
    publish(
        &s,
        "u",
        Value::Array(
            (0..9)
                .map(|i| json!({"key": format!("k{i}"), "value": {"i": i}}))
                .collect(),
        ),
    );
    let got = t.wait(WAIT, |r| r.len() == 9);
    assert!(
        got.iter().all(|r| r.json()["old"].is_null()),
        "start time skips older events"
    );
    // Each answer takes 300 ms: at most 3 requests may arrive within any 300 ms window.
    let most = got
        .iter()
        .map(|a| {
            got.iter()
                .filter(|b| b.at >= a.at && b.at < a.at + Duration::from_millis(290))
                .count()
        })
        .max()
        .unwrap();
    assert_eq!(most, 3, "three in flight at once, never more");
    assert_eq!(s.stop(), 0);
}
