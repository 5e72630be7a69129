//! Subscription positions through the real binary: they are the bus's own (not a consumer group
//! that `busbar group` commands can move or delete), move only through the subscription reset API
//! and CLI, follow a source topic that is deleted and created again, and are taken over once from
//! the consumer group where an older busbar kept them.

mod common;

use busbar_testkit::target::Target;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn sub(name: &str, url: &str) -> Value {
    json!({"name": name, "sources": ["src"], "start": "earliest", "target": {"url": url}})
}

fn ns(got: &[busbar_testkit::target::Received]) -> Vec<i64> {
    got.iter()
        .map(|r| r.json()["n"].as_i64().unwrap())
        .collect()
}

fn publish_n(s: &Server, from: i64, to: i64) {
    let events: Vec<Value> = (from..to).map(|n| json!({"value": {"n": n}})).collect();
    publish(s, "src", Value::Array(events));
}

/// Waits a little and asserts nothing more arrived.
fn quiet(t: &Target, n: usize) {
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(t.received().len(), n, "{:?}", ns(&t.received()));
}

#[test]
fn group_commands_cannot_move_a_subscription_and_reset_can() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("src", 1)]);
    let t = Target::ok();
    subscribe(&s, sub("p", &t.url("/p")));
    publish_n(&s, 0, 3);
    t.wait(WAIT, |r| r.len() == 3);
    wait_sub(&s, "p", |v| v["lag"] == 0);
    let (_, groups) = s.http("GET", "/groups", None);
    assert!(
        !groups.to_string().contains("busbar-subscription"),
        "{groups}"
    );
    // What a user of the old layout would try: neither moves nor erases the subscription's place.
    let o = s.cli(&[
        "group",
        "reset-offsets",
        "busbar-subscription-p",
        "--topic",
        "src",
        "--to",
        "earliest",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(s
        .cli(&["group", "delete", "busbar-subscription-p"])
        .status
        .success());
    assert_eq!(s.stop(), 0);
    let s = Server::start(dir.path(), &[], &[]);
    quiet(&t, 3);
    // The subscription API moves it: back to the start, then to one offset.
    let o = s.cli(&["subscription", "reset", "p", "--to", "earliest"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("src"), "{}", stdout(&o));
    t.wait(WAIT, |r| r.len() == 6);
    let (st, v) = s.http(
        "POST",
        "/subscriptions/p/reset",
        Some(json!({"to": "offsets", "offsets": [{"topic": "src", "partition": 0, "offset": 2}]})),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["positions"],
        json!([{"topic": "src", "partition": 0, "offset": 2}])
    );
    let got = t.wait(WAIT, |r| r.len() == 7);
    let mut again = ns(&got[3..6]);
    again.sort();
    assert_eq!((again, ns(&got[6..])), (vec![0, 1, 2], vec![2]));
    let (st, v) = s.http(
        "POST",
        "/subscriptions/p/reset",
        Some(json!({"to": "latest"})),
    );
    assert_eq!(
        (st, v["positions"][0]["offset"].as_u64()),
        (200, Some(3)),
        "{v}"
    );
    quiet(&t, 7);
    assert_eq!(s.stop(), 0);
}

#[test]
fn bad_resets_get_precise_errors_and_move_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("src", 1), ("other", 1)]);
    let t = Target::ok();
    subscribe(&s, sub("p", &t.url("/p")));
    publish_n(&s, 0, 2);
    t.wait(WAIT, |r| r.len() == 2);
    let cases = [
        (json!({"to": "sideways"}), 400, "invalid_subscription"),
        (
            json!({"to": "time", "time": "yesterday"}),
            400,
            "invalid_subscription",
        ),
        (
            json!({"to": "earliest", "extra": 1}),
            400,
            "invalid_subscription",
        ),
        (
            json!({"to": "offsets", "offsets": [{"topic": "other", "partition": 0, "offset": 0}]}),
            400,
            "invalid_subscription",
        ),
        (
            json!({"to": "offsets", "offsets": [{"topic": "src", "partition": 0, "offset": 99}]}),
            400,
            "invalid_subscription",
        ),
        (
            json!({"to": "offsets", "offsets": [{"topic": "src", "partition": 7, "offset": 0}]}),
            404,
            "unknown_partition",
        ),
        (json!([1, 2]), 400, "invalid_subscription"),
    ];
    for (body, status, code) in cases {
        let (st, v) = s.http("POST", "/subscriptions/p/reset", Some(body.clone()));
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {v}"
        );
    }
    let (st, v) = s.http(
        "POST",
        "/subscriptions/nope/reset",
        Some(json!({"to": "earliest"})),
    );
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (404, Some("unknown_subscription"))
    );
    for args in [
        &["subscription", "reset", "p", "--to", "yesterday"][..],
        &["subscription", "reset", "p", "--offset", "src:zero:1"],
        &["subscription", "reset", "p", "--offset", "src:1"],
        &["subscription", "reset", "p"],
    ] {
        let o = s.cli(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    quiet(&t, 2);
    assert_eq!(wait_sub(&s, "p", |v| v["state"] == "running")["lag"], 0);
    assert_eq!(s.stop(), 0);
}

#[test]
fn a_source_topic_created_again_is_read_from_its_beginning() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("src", 1)]);
    let t = Target::ok();
    subscribe(&s, sub("p", &t.url("/p")));
    publish_n(&s, 0, 5);
    t.wait(WAIT, |r| r.len() == 5);
    let (st, _) = s.http("DELETE", "/topics/src", None);
    assert_eq!(st, 204);
    wait_sub(&s, "p", |v| {
        v["state"].as_str().unwrap_or("").starts_with("error")
    });
    topics(&s, &[("src", 2)]);
    publish_n(&s, 100, 103);
    let got = t.wait(WAIT, |r| r.len() == 8);
    let mut fresh = ns(&got[5..]);
    fresh.sort();
    assert_eq!(fresh, [100, 101, 102]);
    wait_sub(&s, "p", |v| v["state"] == "running" && v["lag"] == 0);
    // Without a pause in between (delete and create inside one check interval) as well.
    let (st, _) = s.http("DELETE", "/topics/src", None);
    assert_eq!(st, 204);
    topics(&s, &[("src", 1)]);
    publish_n(&s, 200, 201);
    let got = t.wait(WAIT, |r| r.len() == 9);
    assert_eq!(ns(&got[8..]), [200]);
    assert_eq!(s.stop(), 0);
}

#[test]
fn positions_kept_by_an_older_busbar_in_a_consumer_group_are_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("src", 2)]);
    let t = Target::ok();
    subscribe(&s, sub("old", &t.url("/p")));
    let to = |p: i64, n: i64| json!({"partition": p, "value": {"n": n}});
    publish(
        &s,
        "src",
        json!([
            to(0, 0),
            to(0, 1),
            to(0, 2),
            to(0, 3),
            to(0, 4),
            to(1, 5),
            to(1, 6)
        ]),
    );
    t.wait(WAIT, |r| r.len() == 7);
    assert!(s.cli(&["subscription", "pause", "old"]).status.success());
    assert_eq!(s.stop(), 0);
    // The layout before `internal/positions`: the place is the legacy group's committed offsets.
    std::fs::remove_dir_all(dir.path().join("internal/positions")).unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    let group = "busbar-subscription-old";
    for (p, at) in [("0", "3"), ("1", "2")] {
        let o = s.cli(&[
            "group",
            "reset-offsets",
            group,
            "--topic",
            "src",
            "-p",
            p,
            "--to",
            at,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert!(s.cli(&["subscription", "resume", "old"]).status.success());
    let got = t.wait(WAIT, |r| r.len() == 9);
    let mut taken = ns(&got[7..]);
    taken.sort();
    assert_eq!(taken, [3, 4]);
    // Taken over whole, once: partition 1 saw no traffic since and keeps its place; the legacy
    // group no longer moves anything.
    let o = s.cli(&[
        "group",
        "reset-offsets",
        group,
        "--topic",
        "src",
        "--to",
        "earliest",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(s.stop(), 0);
    let s = Server::start(dir.path(), &[], &[]);
    publish(&s, "src", json!([to(0, 7)]));
    let got = t.wait(WAIT, |r| r.len() == 10);
    assert_eq!(ns(&got[9..]), [7]);
    quiet(&t, 10);
    assert_eq!(s.stop(), 0);
}

fn counters(s: &Server, name: &str) -> Value {
    let (st, v) = s.http("GET", &format!("/subscriptions/{name}"), None);
    assert_eq!(st, 200, "{v}");
    v["counters"].clone()
}

/// Issue 14 item 11, counters: `GET /subscriptions/{name}` counts survive restarts. They are
/// written with the positions: a SIGTERM keeps them exactly; after a kill -9 they are those of
/// the last position commit, and what is delivered again from that position is counted again, so
/// every event is counted at least once and no more often than the target received it.
#[test]
fn counters_survive_a_restart_and_a_kill9_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("src", 1), ("dlq", 1)]);
    // n % 5 == 0 is refused for good (400: dead-lettered); the rest is delivered, slowly.
    let t = Target::start(|r, _| match r.json()["n"].as_i64().unwrap() {
        n if n % 5 == 0 => busbar_testkit::target::Reply::Status(400),
        _ => busbar_testkit::target::Reply::After(Duration::from_millis(15), 200),
    });
    let mut spec = sub("c", &t.url("/c"));
    spec["dead_letter_topic"] = json!("dlq");
    spec["delivery"] = json!({"concurrency": 1});
    subscribe(&s, spec);
    publish_n(&s, 0, 10);
    wait_sub(&s, "c", |v| {
        v["counters"]["delivered"] == 8 && v["counters"]["dead_lettered"] == 2
    });
    let before = counters(&s, "c");
    assert_eq!(before["matched"], 10, "{before}");
    assert_eq!(s.stop(), 0);
    let s = Server::start(dir.path(), &[], &[]);
    let after = counters(&s, "c");
    assert_eq!(after, before, "a clean restart shows the same counts");
    quiet(&t, 10);
    assert_eq!(counters(&s, "c"), before, "nothing delivered again");

    // kill -9 midway through 40 more (32 delivered, 8 dead-lettered).
    publish_n(&s, 10, 50);
    t.wait(WAIT, |r| r.len() >= 25);
    s.kill9();
    let s = Server::start(dir.path(), &[], &[]);
    let restored = counters(&s, "c");
    let v = wait_sub(&s, "c", |v| v["lag"] == 0 && v["retrying"] == 0);
    let got = t.wait(WAIT, |r| {
        let mut seen: Vec<i64> = ns(r);
        seen.sort_unstable();
        seen.dedup();
        seen.len() == 50
    });
    std::thread::sleep(Duration::from_millis(300));
    let end = counters(&s, "c");
    let received = |dead: bool| {
        (got.iter())
            .filter(|r| (r.json()["n"].as_i64().unwrap() % 5 == 0) == dead)
            .count() as u64
    };
    let (delivered, dead) = (
        end["delivered"].as_u64().unwrap(),
        end["dead_lettered"].as_u64().unwrap(),
    );
    assert!(
        (40..=received(false)).contains(&delivered),
        "{v} restored {restored}: delivered {delivered}, the target answered 200 to {}",
        received(false)
    );
    assert!((10..=received(true)).contains(&dead), "{end}");
    assert!(restored["delivered"].as_u64().unwrap() >= 8, "{restored}");
    assert!(end["matched"].as_u64().unwrap() >= 50, "{end}");
    assert_eq!(s.stop(), 0);
}
