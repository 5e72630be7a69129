//! Client quotas over HTTP (issue 16): the byte-rate quotas of the anonymous user (authentication
//! off) apply to publishing and reading events; over the quota the answer is 429 `throttled` with
//! `Retry-After`, and nothing is stored. `/quotas` sets, lists and removes quotas.

mod common;

use common::*;
use serde_json::{json, Value};

fn publish(s: &Server, n: usize) -> busbar_testkit::http::Response {
    let events: Vec<Value> = (0..n)
        .map(|i| json!({"value": "x".repeat(1000) + &i.to_string()}))
        .collect();
    let body = Value::Array(events).to_string();
    s.call(
        "POST",
        "/topics/q/events",
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
}

fn stored(s: &Server) -> usize {
    let (status, page) = s.json("GET", "/topics/q/partitions/0/events?limit=10000", None);
    assert_eq!(status, 200, "{page}");
    page["events"].as_array().unwrap().len()
}

#[test]
fn over_the_produce_quota_publishing_answers_429_with_retry_after_and_stores_nothing() {
    let s = Server::start();
    assert_eq!(s.json("POST", "/topics", Some(json!({"name": "q"}))).0, 201);
    // 1,000 B/s for every user: a 10 s allowance of ~10 KB.
    let quota = json!({"entity": {"user": null}, "values": {"producer_byte_rate": 1000}});
    assert_eq!(s.json("PUT", "/quotas", Some(quota)).0, 200);
    let first = publish(&s, 20);
    assert_eq!(first.status, 200, "{}", first.text());
    let second = publish(&s, 1);
    assert_eq!(second.status, 429, "{}", second.text());
    let body: Value = serde_json::from_slice(&second.body).unwrap();
    assert_eq!(body["error"]["code"], "throttled", "{body}");
    let retry: u64 = second
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    // ~20 KB over 10 s against 1,000 B/s: about 10 s to wait.
    assert!((5..=11).contains(&retry), "Retry-After {retry}");
    assert_eq!(stored(&s), 20, "the throttled publish stored nothing");
    // Without the quota, publishing works again.
    let gone = json!({"entity": {"user": null}});
    assert_eq!(s.json("DELETE", "/quotas", Some(gone)).0, 204);
    assert_eq!(publish(&s, 1).status, 200);
}

#[test]
fn over_the_consumer_quota_reading_answers_429() {
    let s = Server::start();
    assert_eq!(s.json("POST", "/topics", Some(json!({"name": "q"}))).0, 201);
    assert_eq!(publish(&s, 30).status, 200);
    let quota = json!({"entity": {"client-id": null}, "values": {"consumer_byte_rate": 1000}});
    assert_eq!(s.json("PUT", "/quotas", Some(quota)).0, 200);
    let (status, _) = s.json("GET", "/topics/q/partitions/0/events?limit=10000", None);
    assert_eq!(status, 200, "the first read is within the allowance");
    let r = s.call("GET", "/topics/q/partitions/0/events", &[], b"");
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());
}

#[test]
fn quota_entities_and_values_are_checked() {
    let s = Server::start();
    for bad in [
        json!({"entity": {}, "values": {"producer_byte_rate": 1}}),
        json!({"entity": {"group": "g"}, "values": {"producer_byte_rate": 1}}),
        json!({"entity": {"user": "a"}, "values": {"producer_byte_rate": 1.5}}),
        json!({"entity": {"user": "a"}, "values": {"bogus": 1}}),
        json!({"entity": {"user": "a"}, "values": {"consumer_byte_rate": -1}}),
    ] {
        assert_error(
            s.json("PUT", "/quotas", Some(bad.clone())),
            400,
            "bad_request",
            "",
        );
    }
    let (status, list) = s.json("GET", "/quotas", None);
    assert_eq!((status, list), (200, json!({"quotas": []})));
}
