//! Group consumption over HTTP through a real server: two consumer instances share a topic, a
//! rebalance hands partitions over at committed positions, nothing is lost; Server-Sent Events from
//! a partition and from a group; bad input and unknown instances.

mod common;

use common::{assert_error, Server};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn poll_all(s: &Server, path: &str, seen: &mut Vec<Value>) -> usize {
    let (st, r) = s.json("GET", &format!("{path}/events?max=500&wait_ms=200"), None);
    assert_eq!(st, 200, "{r}");
    let evs = r["events"].as_array().unwrap().clone();
    let n = evs.len();
    seen.extend(evs);
    if n > 0 {
        assert_eq!(s.json("POST", &format!("{path}/commit"), None).0, 200);
    }
    n
}

#[test]
fn two_http_consumers_share_a_group_through_a_rebalance() {
    let s = Server::start();
    s.json(
        "POST",
        "/topics",
        Some(json!({"name": "t", "partitions": 4})),
    );
    let events: Vec<Value> = (0..400)
        .map(|i| json!({"key": format!("k{}", i % 13), "value": i}))
        .collect();
    s.json("POST", "/topics/t/events", Some(json!(events)));

    let (st, a) = s.json(
        "POST",
        "/groups/g/consumers",
        Some(json!({"topics": ["t"], "start": "earliest"})),
    );
    assert_eq!(st, 201, "{a}");
    assert_eq!(a["assignment"].as_array().unwrap().len(), 4);
    let pa = format!("/groups/g/consumers/{}", a["consumer_id"].as_str().unwrap());
    let mut seen = Vec::new();
    let (_, r) = s.json("GET", &format!("{pa}/events?max=50"), None);
    seen.extend(r["events"].as_array().unwrap().clone());
    assert_eq!(seen.len(), 50);
    s.json("POST", &format!("{pa}/commit"), None);

    // The second instance's join completes once the first rejoins (its task heartbeats by itself).
    let (st, b) = s.json(
        "POST",
        "/groups/g/consumers",
        Some(json!({"topics": ["t"], "start": "earliest"})),
    );
    assert_eq!(st, 201, "{b}");
    let pb = format!("/groups/g/consumers/{}", b["consumer_id"].as_str().unwrap());
    assert_eq!(b["assignment"].as_array().unwrap().len(), 2);
    for _ in 0..20 {
        let n = poll_all(&s, &pa, &mut seen) + poll_all(&s, &pb, &mut seen);
        if n == 0 {
            break;
        }
    }
    let offsets: HashSet<(u64, u64)> = seen
        .iter()
        .map(|e| {
            (
                e["partition"].as_u64().unwrap(),
                e["offset"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(offsets.len(), 400, "every event consumed");
    let (_, g) = s.json("GET", "/groups/g", None);
    assert_eq!(g["members"].as_array().unwrap().len(), 2, "{g}");
    assert_eq!(g["lag"], 0, "{g}");
    let (_, d) = s.json("GET", &pb, None);
    assert_eq!(d["assignment"].as_array().unwrap().len(), 2, "{d}");
    assert_eq!(s.json("DELETE", &pb, None).0, 204);
    assert_error(
        s.json("GET", &format!("{pb}/events"), None),
        404,
        "unknown_consumer",
        "no consumer instance",
    );
    let (_, g) = s.json("GET", "/groups/g", None);
    assert_eq!(g["members"].as_array().unwrap().len(), 1);
}

#[test]
fn bad_consumer_requests_are_refused_precisely() {
    let s = Server::start();
    s.json(
        "POST",
        "/topics",
        Some(json!({"name": "t", "partitions": 1})),
    );
    assert_error(
        s.json("POST", "/groups/g/consumers", Some(json!({"topics": []}))),
        400,
        "bad_request",
        "at least one topic",
    );
    assert_error(
        s.json(
            "POST",
            "/groups/g/consumers",
            Some(json!({"topics": ["nope"]})),
        ),
        404,
        "unknown_topic",
        "nope",
    );
    assert_error(
        s.json(
            "POST",
            "/groups/g/consumers",
            Some(json!({"topics": ["t"], "start": "middle"})),
        ),
        400,
        "bad_request",
        "start",
    );
    assert_error(
        s.json("POST", "/groups/g/consumers", Some(json!({"topics": "t"}))),
        400,
        "bad_request",
        "topics",
    );
    assert_error(
        s.json(
            "POST",
            "/groups/g/consumers",
            Some(json!({"topics": ["t"], "session_timeout_ms": 5})),
        ),
        400,
        "invalid_session_timeout",
        "5",
    );
    assert_error(
        s.json("GET", "/groups/g/consumers/zzz/events", None),
        404,
        "unknown_consumer",
        "zzz",
    );
    let (_, c) = s.json(
        "POST",
        "/groups/g/consumers",
        Some(json!({"topics": ["t"]})),
    );
    let path = format!("/groups/g/consumers/{}", c["consumer_id"].as_str().unwrap());
    assert_error(
        s.json("GET", &format!("{path}/events?max=0"), None),
        400,
        "bad_request",
        "max",
    );
    assert_error(
        s.json("GET", &format!("{path}/events?wait_ms=9999999"), None),
        400,
        "bad_request",
        "wait_ms",
    );
    assert_error(
        s.json("GET", "/groups/g/stream", None),
        400,
        "bad_request",
        "topics",
    );
    assert_error(
        s.json("GET", "/topics/t/partitions/0/stream?offset=9", None),
        416,
        "offset_out_of_range",
        "9",
    );
}

#[test]
fn idle_consumer_instances_leave_their_group() {
    // Above the instance task's 500 ms heartbeat tick, so a tick cannot stand in for the timeout.
    let idle = Duration::from_millis(1500);
    let s = Server::start_with(busbar_http::HttpConfig {
        consumer_idle_timeout: idle,
        consumers_max: 1,
        ..Default::default()
    });
    s.json(
        "POST",
        "/topics",
        Some(json!({"name": "t", "partitions": 1})),
    );
    let (_, c) = s.json(
        "POST",
        "/groups/g/consumers",
        Some(json!({"topics": ["t"]})),
    );
    let created = Instant::now();
    assert_error(
        s.json(
            "POST",
            "/groups/g/consumers",
            Some(json!({"topics": ["t"]})),
        ),
        429,
        "too_many_consumers",
        "limit",
    );
    let members = || {
        let (_, g) = s.json("GET", "/groups/g", None);
        g["members"].as_array().unwrap().len()
    };
    // Past several ticks but short of the timeout: still a member (the group route does not use it).
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(members(), 1);
    while members() > 0 {
        assert!(
            created.elapsed() < idle + Duration::from_secs(3),
            "the idle instance is still a member after {:?}",
            created.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        created.elapsed() >= idle,
        "left after {:?}",
        created.elapsed()
    );
    let path = format!("/groups/g/consumers/{}", c["consumer_id"].as_str().unwrap());
    assert_error(
        s.json("GET", &format!("{path}/events"), None),
        404,
        "unknown_consumer",
        "",
    );
    // Its slot is free again.
    let (st, c) = s.json(
        "POST",
        "/groups/g/consumers",
        Some(json!({"topics": ["t"]})),
    );
    assert_eq!(st, 201, "{c}");
}

#[test]
fn server_sent_events_from_a_partition_and_a_group() {
    let s = Server::start();
    s.json(
        "POST",
        "/topics",
        Some(json!({"name": "t", "partitions": 1})),
    );
    s.json(
        "POST",
        "/topics/t/events",
        Some(json!([{"value": "one"}, {"value": "two"}])),
    );
    let got = busbar_testkit::http::read_stream(
        s.addr,
        "/topics/t/partitions/0/stream?offset=0",
        Duration::from_secs(10),
        |t| t.contains("\"two\""),
    )
    .unwrap();
    assert!(got.contains("text/event-stream"), "{got}");
    assert!(
        got.contains("id: t/0/0") && got.contains("\"one\"") && got.contains("\"two\""),
        "{got}"
    );
    // New events arrive on an open stream.
    let addr = s.addr;
    let reader = std::thread::spawn(move || {
        busbar_testkit::http::read_stream(
            addr,
            "/topics/t/partitions/0/stream",
            Duration::from_secs(10),
            |t| t.contains("\"three\""),
        )
        .unwrap()
    });
    std::thread::sleep(Duration::from_millis(300));
    s.json("POST", "/topics/t/events", Some(json!({"value": "three"})));
    assert!(reader.join().unwrap().contains("\"three\""));
    // A group stream commits what it delivered once the next batch is requested.
    // Keep the stream open a while after the batch, so the server asks for the next one (committing).
    let got = busbar_testkit::http::read_stream(
        s.addr,
        "/groups/sse/stream?topics=t&start=earliest",
        Duration::from_millis(2000),
        |_| false,
    )
    .unwrap();
    assert!(
        got.contains("\"one\"") && got.contains("\"three\""),
        "{got}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let (_, g) = s.json("GET", "/groups/sse", None);
    assert_eq!(g["offsets"][0]["committed_offset"], 3, "{g}");
    assert_eq!(
        g["members"].as_array().unwrap().len(),
        0,
        "the stream's member left when it closed: {g}"
    );
}
