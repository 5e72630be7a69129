//! The HTTP API through a real server on a loopback port: topics, events, groups, health, OpenAPI,
//! and bad input on every route (precise status and message, nothing changed).

mod common;

use common::{assert_error, Server};
use serde_json::{json, Value};

#[test]
fn topic_routes_work_end_to_end() {
    let s = Server::start();
    let (st, body) = s.json("POST", "/topics", Some(json!({"name": "orders", "partitions": 3, "configs": {"retention.ms": 60000, "cleanup.policy": "delete"}})));
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["partitions"].as_array().unwrap().len(), 3);
    assert_eq!(body["configs"]["retention.ms"], "60000");
    let (_, list) = s.json("GET", "/topics", None);
    assert_eq!(list["topics"][0]["name"], "orders");
    let (st, d) = s.json(
        "PATCH",
        "/topics/orders",
        Some(
            json!({"partitions": 4, "configs": {"retention.ms": null, "segment.bytes": "1048576"}}),
        ),
    );
    assert_eq!(st, 200, "{d}");
    assert_eq!(d["partitions"].as_array().unwrap().len(), 4);
    assert_eq!(d["configs"]["retention.ms"], "604800000");
    assert_eq!(
        d["overrides"],
        json!({"cleanup.policy": "delete", "segment.bytes": "1048576"})
    );
    assert_eq!(s.json("DELETE", "/topics/orders", None).0, 204);
    assert_error(
        s.json("GET", "/topics/orders", None),
        404,
        "unknown_topic",
        "orders",
    );
}

/// A name equal to an existing topic's once `.` and `_` are treated alike is refused with 409
/// naming the existing topic, as the Kafka front end refuses it (before: HTTP created both).
#[test]
fn topic_names_colliding_on_dot_and_underscore_answer_409() {
    let s = Server::start();
    let (st, body) = s.json("POST", "/topics", Some(json!({"name": "orders.eu"})));
    assert_eq!(st, 201, "{body}");
    assert_error(
        s.json("POST", "/topics", Some(json!({"name": "orders_eu"}))),
        409,
        "topic_collides",
        "collides with existing topic \"orders.eu\"",
    );
    let (_, list) = s.json("GET", "/topics", None);
    assert_eq!(list["topics"].as_array().unwrap().len(), 1, "{list}");
}

#[test]
fn bad_topic_requests_get_precise_errors_and_change_nothing() {
    let s = Server::start();
    s.json(
        "POST",
        "/topics",
        Some(json!({"name": "t", "partitions": 2})),
    );
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            json!({"name": "bad name", "partitions": 1}),
            400,
            "invalid_topic_name",
            "bad name",
        ),
        (
            json!({"name": "..", "partitions": 1}),
            400,
            "invalid_topic_name",
            "..",
        ),
        (
            json!({"name": "x".repeat(250)}),
            400,
            "invalid_topic_name",
            "249",
        ),
        (
            json!({"name": "n", "partitions": 0}),
            400,
            "invalid_partitions",
            "0",
        ),
        (
            json!({"name": "n", "partitions": -3}),
            400,
            "invalid_partitions",
            "-3",
        ),
        (
            json!({"name": "n", "partitions": "two"}),
            400,
            "bad_request",
            "partitions",
        ),
        (json!({"name": 5}), 400, "bad_request", "name"),
        (json!({"partitions": 1}), 400, "bad_request", "name"),
        (
            json!({"name": "n", "colour": "red"}),
            400,
            "bad_request",
            "colour",
        ),
        (
            json!({"name": "n", "configs": {"retention.ms": "soon"}}),
            400,
            "invalid_config",
            "retention.ms",
        ),
        (
            json!({"name": "n", "configs": {"no.such": "1"}}),
            400,
            "invalid_config",
            "no.such",
        ),
        (json!({"name": "t"}), 409, "topic_exists", "t"),
    ];
    for (body, status, code, needle) in cases {
        assert_error(s.json("POST", "/topics", Some(body)), status, code, needle);
    }
    let r = s.call(
        "POST",
        "/topics",
        &[("content-type", "application/json")],
        b"{\"name\": ",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("malformed JSON"), "{}", r.text());
    let r = s.call(
        "POST",
        "/topics",
        &[("content-type", "text/plain")],
        b"name=x",
    );
    assert_eq!(r.status, 415);
    assert_error(
        s.json("PATCH", "/topics/t", Some(json!({"partitions": 1}))),
        400,
        "invalid_partitions",
        "only grow",
    );
    assert_error(
        s.json(
            "PATCH",
            "/topics/t",
            Some(json!({"partitions": 9, "configs": {"segment.bytes": "1"}})),
        ),
        400,
        "invalid_config",
        "segment.bytes",
    );
    assert_error(
        s.json("PATCH", "/topics/t", Some(json!({}))),
        400,
        "bad_request",
        "nothing to change",
    );
    assert_error(
        s.json("PATCH", "/nope/t", Some(json!({}))),
        404,
        "not_found",
        "route",
    );
    assert_error(
        s.json("PUT", "/topics/t", Some(json!({}))),
        405,
        "method_not_allowed",
        "method",
    );
    let (_, list) = s.json("GET", "/topics", None);
    assert_eq!(
        list["topics"].as_array().unwrap().len(),
        1,
        "nothing was created"
    );
    let (_, d) = s.json("GET", "/topics/t", None);
    assert_eq!(
        d["partitions"].as_array().unwrap().len(),
        2,
        "nothing was changed"
    );
}

#[test]
fn events_publish_and_read_back() {
    let s = Server::start();
    s.json(
        "POST",
        "/topics",
        Some(json!({"name": "t", "partitions": 2})),
    );
    let (st, r) = s.json("POST", "/topics/t/events", Some(json!([
        {"key": "a", "value": {"n": 1}, "headers": {"h": "x"}, "partition": 1, "timestamp": 1700000000000i64},
        {"value_base64": "AAEC", "partition": 1, "timestamp": "2023-11-14T22:13:21Z"},
        {"key": "tomb", "value": null, "partition": 1}
    ])));
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        r["offsets"],
        json!([{"partition": 1, "offset": 0}, {"partition": 1, "offset": 1}, {"partition": 1, "offset": 2}])
    );
    let (st, r) = s.json(
        "GET",
        "/topics/t/partitions/1/events?offset=0&limit=10",
        None,
    );
    assert_eq!(st, 200, "{r}");
    let evs = r["events"].as_array().unwrap();
    assert_eq!(evs.len(), 3);
    assert_eq!(evs[0]["value"], json!({"n": 1}));
    assert_eq!(evs[0]["key"], "a");
    assert_eq!(evs[0]["headers"], json!([{"key": "h", "value": "x"}]));
    assert_eq!(evs[0]["time"], "2023-11-14T22:13:20.000Z");
    assert_eq!(evs[1]["value_base64"], "AAEC");
    assert_eq!(evs[2]["value"], Value::Null);
    assert_eq!(r["next_offset"], 3);
    let (_, r) = s.json(
        "GET",
        "/topics/t/partitions/1/events?timestamp=2023-11-14T22:13:20.500Z",
        None,
    );
    assert_eq!(r["events"][0]["offset"], 1);
    let (_, one) = s.json(
        "POST",
        "/topics/t/events",
        Some(json!({"key": "k", "value": "v"})),
    );
    assert_eq!(one["offsets"].as_array().unwrap().len(), 1);
}

#[test]
fn bad_event_requests_get_precise_errors_and_store_nothing() {
    let s = Server::start_with(busbar_http::HttpConfig {
        publish_bytes_max: 4096,
        ..Default::default()
    });
    s.json(
        "POST",
        "/topics",
        Some(json!({"name": "t", "partitions": 1, "configs": {"max.message.bytes": "1000"}})),
    );
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (json!([]), 400, "bad_request", "empty"),
        (json!([1]), 400, "bad_request", "object"),
        (
            json!({"value": 1, "extra": true}),
            400,
            "bad_request",
            "extra",
        ),
        (
            json!({"value": 1, "value_base64": "AA=="}),
            400,
            "bad_request",
            "not both",
        ),
        (
            json!({"value_base64": "***"}),
            400,
            "bad_request",
            "value_base64",
        ),
        (
            json!({"value": 1, "partition": -1}),
            400,
            "bad_request",
            "partition",
        ),
        (
            json!({"value": 1, "partition": 5}),
            404,
            "unknown_partition",
            "5",
        ),
        (
            json!([{"value": 1}, {"value": 2, "timestamp": "noon"}]),
            400,
            "bad_request",
            "[1].timestamp",
        ),
        (
            json!({"value": 1, "timestamp": -5}),
            400,
            "bad_request",
            "timestamp",
        ),
        (
            json!({"key": "k", "key_base64": "aw=="}),
            400,
            "bad_request",
            "key_base64",
        ),
        (
            json!({"value": "x".repeat(2000)}),
            413,
            "too_large",
            "max.message.bytes",
        ),
    ];
    for (body, status, code, needle) in cases {
        assert_error(
            s.json("POST", "/topics/t/events", Some(body)),
            status,
            code,
            needle,
        );
    }
    assert_error(
        s.json("POST", "/topics/nope/events", Some(json!({"value": 1}))),
        404,
        "unknown_topic",
        "nope",
    );
    let big = json!({"value": "x".repeat(5000)}).to_string();
    let r = s.call(
        "POST",
        "/topics/t/events",
        &[("content-type", "application/json")],
        big.as_bytes(),
    );
    assert_eq!(r.status, 413, "{}", r.text());
    let r = s.call(
        "POST",
        "/topics/t/events",
        &[("content-type", "application/xml")],
        b"<e/>",
    );
    assert_eq!(r.status, 415);
    let (_, d) = s.json("GET", "/topics/t", None);
    assert_eq!(
        d["partitions"][0]["high_watermark"], 0,
        "nothing was stored"
    );
    for (q, needle) in [
        ("offset=x", "offset"),
        ("offset=5", "out of range"),
        ("limit=0", "limit"),
        ("bogus=1", "bogus"),
        ("offset=0&timestamp=1", "not both"),
        ("timestamp=later", "timestamp"),
    ] {
        let (st, body) = s.json("GET", &format!("/topics/t/partitions/0/events?{q}"), None);
        assert!(st == 400 || st == 416, "{q}: {st} {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(needle),
            "{q}: {body}"
        );
    }
    assert_error(
        s.json("GET", "/topics/t/partitions/x/events", None),
        400,
        "bad_request",
        "partition",
    );
    assert_error(
        s.json("GET", "/topics/t/partitions/3/events", None),
        404,
        "unknown_partition",
        "3",
    );
}

#[test]
fn cloudevents_in_every_mode() {
    let s = Server::start();
    s.json(
        "POST",
        "/topics",
        Some(json!({"name": "ce", "partitions": 1})),
    );
    let r = s.call(
        "POST",
        "/topics/ce/events",
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/shop"),
            ("ce-type", "order.created"),
            ("ce-subject", "Euro%20%E2%82%AC"),
            ("content-type", "text/plain"),
        ],
        b"hello",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let structured = json!({"specversion": "1.0", "id": "2", "source": "/shop", "type": "order.paid", "data": {"total": 3}});
    let r = s.call(
        "POST",
        "/topics/ce/events",
        &[(
            "content-type",
            "application/cloudevents+json; charset=UTF-8",
        )],
        structured.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let batch =
        json!([structured, {"specversion": "1.0", "id": "3", "source": "/shop", "type": "t"}]);
    let r = s.call(
        "POST",
        "/topics/ce/events",
        &[("content-type", "application/cloudevents-batch+json")],
        batch.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, r) = s.json("GET", "/topics/ce/partitions/0/events", None);
    let evs = r["events"].as_array().unwrap();
    assert_eq!(evs.len(), 4);
    assert_eq!(evs[0]["value"], "hello");
    let h = &evs[0]["headers"];
    assert!(
        h.as_array()
            .unwrap()
            .contains(&json!({"key": "ce_subject", "value": "Euro €"})),
        "{h}"
    );
    assert!(
        h.as_array()
            .unwrap()
            .contains(&json!({"key": "content-type", "value": "text/plain"})),
        "{h}"
    );
    assert_eq!(evs[1]["value"]["data"]["total"], 3);
    // Bad CloudEvents: precise message, nothing stored.
    for (hdrs, needle) in [
        (
            vec![
                ("ce-id", "1"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
                ("ce-specversion", "0.3"),
            ],
            "specversion",
        ),
        (
            vec![
                ("ce-specversion", "1.0"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
            ],
            "`id`",
        ),
        (
            vec![("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-type", "t")],
            "`source`",
        ),
        (
            vec![
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "/s"),
            ],
            "`type`",
        ),
        (
            vec![
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
                ("ce-datacontenttype", "x/y"),
            ],
            "Content-Type",
        ),
        (
            vec![
                ("ce-specversion", "1.0"),
                ("ce-id", "%C0%A0"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
            ],
            "UTF-8",
        ),
    ] {
        let r = s.call("POST", "/topics/ce/events", &hdrs, b"x");
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.text().contains(needle), "{} lacks {needle}", r.text());
    }
    let r = s.call(
        "POST",
        "/topics/ce/events",
        &[("content-type", "application/cloudevents+json")],
        br#"{"specversion":"1.0","id":"1","type":"t"}"#,
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("invalid_cloudevent"));
    let (_, d) = s.json("GET", "/topics/ce", None);
    assert_eq!(d["partitions"][0]["high_watermark"], 4);
}

#[test]
fn groups_list_describe_reset_delete() {
    let s = Server::start();
    s.json(
        "POST",
        "/topics",
        Some(json!({"name": "t", "partitions": 2})),
    );
    s.json(
        "POST",
        "/topics/t/events",
        Some(json!([{"value": 1, "partition": 0}, {"value": 2, "partition": 0}])),
    );
    assert_error(s.json("GET", "/groups/g", None), 404, "unknown_group", "g");
    let (st, r) = s.json(
        "POST",
        "/groups/g/offsets/reset",
        Some(json!({"topic": "t", "to": "latest"})),
    );
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        r["offsets"],
        json!([{"topic": "t", "partition": 0, "offset": 2}, {"topic": "t", "partition": 1, "offset": 0}])
    );
    let (_, d) = s.json("GET", "/groups/g", None);
    assert_eq!(
        (d["state"].as_str(), d["lag"].as_u64()),
        (Some("Empty"), Some(0))
    );
    s.json(
        "POST",
        "/groups/g/offsets/reset",
        Some(json!({"topic": "t", "partitions": [0], "to": {"offset": 1}})),
    );
    let (_, d) = s.json("GET", "/groups/g", None);
    assert_eq!(d["lag"], 1);
    assert_eq!(
        s.json("GET", "/groups", None).1["groups"],
        json!([{"group": "g", "state": "Empty"}])
    );
    for (body, needle) in [
        (json!({"topic": "t", "to": "middle"}), "middle"),
        (json!({"topic": "t"}), "to"),
        (json!({"topic": "t", "to": {"timestamp": "x"}}), "timestamp"),
    ] {
        assert_error(
            s.json("POST", "/groups/g/offsets/reset", Some(body)),
            400,
            "bad_request",
            needle,
        );
    }
    assert_error(
        s.json(
            "POST",
            "/groups/g/offsets/reset",
            Some(json!({"topic": "nope", "to": "earliest"})),
        ),
        404,
        "unknown_topic",
        "nope",
    );
    assert_eq!(s.json("DELETE", "/groups/g", None).0, 204);
    assert_error(
        s.json("DELETE", "/groups/g", None),
        404,
        "unknown_group",
        "g",
    );
}

#[test]
fn rules_test_answers_match_or_says_what_is_wrong() {
    let s = Server::start();
    let event =
        json!({"source": "shop", "detail": {"total": 250, "items": [{"sku": "a"}, {"sku": "b"}]}});
    let (st, r) = s.json("POST", "/rules/test", Some(json!({"pattern": {"source": ["shop"], "detail": {"total": [{"numeric": [">", 100]}]}}, "event": event})));
    assert_eq!((st, r), (200, json!({"match": true})));
    let (_, r) = s.json(
        "POST",
        "/rules/test",
        Some(json!({"pattern": {"detail": {"items": {"sku": [{"prefix": "z"}]}}}, "event": event})),
    );
    assert_eq!(r, json!({"match": false}));
    assert_error(
        s.json(
            "POST",
            "/rules/test",
            Some(
                json!({"pattern": {"detail": {"total": [{"numeric": ["!", 1]}]}}, "event": event}),
            ),
        ),
        400,
        "invalid_pattern",
        "detail.total[0]",
    );
    assert_error(
        s.json(
            "POST",
            "/rules/test",
            Some(json!({"pattern": {"a": "x"}, "event": {}})),
        ),
        400,
        "invalid_pattern",
        "at `a`",
    );
    assert_error(
        s.json(
            "POST",
            "/rules/test",
            Some(json!({"pattern": {"a": ["x"]}})),
        ),
        400,
        "bad_request",
        "event",
    );
}

#[test]
fn random_bodies_never_get_a_server_error() {
    let s = Server::start();
    s.json(
        "POST",
        "/topics",
        Some(json!({"name": "t", "partitions": 1})),
    );
    s.json("POST", "/topics", Some(json!({"name": "u"})));
    let sub = json!({"name": "s", "sources": ["t"], "target": {"topic": "u"}});
    assert_eq!(s.json("POST", "/subscriptions", Some(sub)).0, 201);
    let routes = [
        ("POST", "/subscriptions"),
        ("PUT", "/subscriptions/s"),
        ("POST", "/subscriptions/s/replays"),
        ("POST", "/dead-letters/u/redrive"),
        ("POST", "/topics/t/events"),
        ("POST", "/topics"),
        ("PATCH", "/topics/t"),
        ("POST", "/groups/g/offsets/reset"),
        ("POST", "/rules/test"),
        ("POST", "/groups/g/consumers"),
    ];
    let types = [
        "application/json",
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
        "text/plain",
    ];
    busbar_testkit::for_each_seed(2, |seed| {
        let mut rng = busbar_testkit::Rng::new(seed);
        for i in 0..150 {
            let (method, path) = routes[i % routes.len()];
            let len = rng.below(200) as usize;
            let mut body = rng.bytes(len);
            if rng.chance(50) {
                // JSON-ish noise goes deeper than the first parse error.
                let pool = br#"{}[]:,"0123456789.-eE truefalsenull\u00"#;
                body = body
                    .iter()
                    .map(|b| pool[*b as usize % pool.len()])
                    .collect();
            }
            let ct = types[rng.below(types.len() as u64) as usize];
            let r = s.call(method, path, &[("content-type", ct)], &body);
            assert!(
                r.status < 500,
                "{method} {path} {ct} answered {} to {:?}",
                r.status,
                String::from_utf8_lossy(&body)
            );
        }
    });
    let (_, d) = s.json("GET", "/topics/t", None);
    assert_eq!(d["partitions"].as_array().unwrap().len(), 1);
    let (_, v) = s.json("GET", "/subscriptions", None);
    assert_eq!(v["subscriptions"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["subscriptions"][0]["target"], json!({"topic": "u"}));
}
