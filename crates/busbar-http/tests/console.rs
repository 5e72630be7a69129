//! The web console's HTTP side (issue 19; the pages themselves are tested in a real browser by
//! `tests/console/run.py`): `/` redirects to `/ui/`, the assets are served with their types and a
//! strict Content-Security-Policy, other methods and unknown assets are refused; the search the
//! message browser uses (`?pattern=` evaluated on the server, bounded, malformed patterns refused
//! with their reason); and the offset-reset preview (`dry_run`) that moves nothing.

mod common;

use common::{assert_error, Server};
use serde_json::json;

fn header<'a>(r: &'a busbar_testkit::http::Response, name: &str) -> &'a str {
    r.header(name).unwrap_or_default()
}

#[test]
fn the_console_is_served_with_a_strict_policy_and_the_root_redirects_to_it() {
    let s = Server::start();
    let r = s.call("GET", "/", &[], b"");
    assert_eq!((r.status, header(&r, "location")), (303, "/ui/"));
    let r = s.call("GET", "/ui", &[], b"");
    assert_eq!((r.status, header(&r, "location")), (303, "/ui/"));
    for (path, kind) in [
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/favicon.svg", "image/svg+xml"),
    ] {
        let r = s.call("GET", path, &[], b"");
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(header(&r, "content-type"), kind, "{path}");
        let csp = header(&r, "content-security-policy");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert_eq!(header(&r, "x-frame-options"), "DENY");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    }
    let r = s.call("GET", "/ui/../metrics", &[], b"");
    assert_ne!(r.status, 200, "no way out of the assets");
    assert_eq!(s.call("GET", "/ui/nope.js", &[], b"").status, 404);
    assert_error(
        s.json("POST", "/ui/", Some(json!({}))),
        405,
        "method_not_allowed",
        "GET",
    );
    assert_eq!(
        s.call("GET", "/uix", &[], b"").status,
        404,
        "only /ui and below"
    );
}

#[test]
fn a_pattern_search_answers_matching_events_and_how_many_it_read() {
    let s = Server::start();
    s.json("POST", "/topics", Some(json!({"name": "t"})));
    let events: Vec<_> = (0..30)
        .map(|i| json!({"value": {"n": i, "level": if i % 7 == 0 { "error" } else { "info" }}}))
        .collect();
    assert_eq!(
        s.json("POST", "/topics/t/events", Some(json!(events))).0,
        200
    );
    let pattern = "%7B%22data%22%3A%7B%22level%22%3A%5B%22error%22%5D%7D%7D";
    let (st, v) = s.json(
        "GET",
        &format!("/topics/t/partitions/0/events?pattern={pattern}"),
        None,
    );
    assert_eq!(st, 200, "{v}");
    let offsets: Vec<u64> = (v["events"].as_array().unwrap().iter())
        .map(|e| e["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [0, 7, 14, 21, 28]);
    assert_eq!(
        (v["scanned"].as_u64(), v["next_offset"].as_u64()),
        (Some(30), Some(30))
    );
    // A limit stops the scan at the last match; the next page goes on from there.
    let (_, v) = s.json(
        "GET",
        &format!("/topics/t/partitions/0/events?pattern={pattern}&limit=2"),
        None,
    );
    assert_eq!(
        (v["scanned"].as_u64(), v["next_offset"].as_u64()),
        (Some(8), Some(8))
    );
    let (_, v) = s.json(
        "GET",
        &format!("/topics/t/partitions/0/events?pattern={pattern}&offset=8&limit=1"),
        None,
    );
    assert_eq!(v["events"][0]["offset"], 14);
    // Without a pattern the page has no `scanned`.
    let (_, v) = s.json("GET", "/topics/t/partitions/0/events?limit=1", None);
    assert!(v.get("scanned").is_none(), "{v}");
    // Malformed and invalid patterns are refused with their reason.
    assert_error(
        s.json("GET", "/topics/t/partitions/0/events?pattern=%7Bnope", None),
        400,
        "bad_request",
        "not JSON",
    );
    assert_error(
        s.json(
            "GET",
            "/topics/t/partitions/0/events?pattern=%7B%22a%22%3A1%7D",
            None,
        ),
        400,
        "invalid_pattern",
        "pattern",
    );
}

#[test]
fn a_search_reads_at_most_ten_thousand_events_per_request() {
    let s = Server::start();
    s.json("POST", "/topics", Some(json!({"name": "big"})));
    for _ in 0..3 {
        let events: Vec<_> = (0..4000).map(|i| json!({"value": i})).collect();
        assert_eq!(
            s.json("POST", "/topics/big/events", Some(json!(events))).0,
            200
        );
    }
    let never = "%7B%22data%22%3A%5B%22never%22%5D%7D";
    let (st, v) = s.json(
        "GET",
        &format!("/topics/big/partitions/0/events?pattern={never}"),
        None,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["events"].as_array().unwrap().len(), 0);
    assert_eq!(
        (v["scanned"].as_u64(), v["next_offset"].as_u64()),
        (Some(10_000), Some(10_000))
    );
}

#[test]
fn a_search_keeps_at_most_fetch_bytes_max_of_matches() {
    let s = Server::start_custom(Default::default(), |b| busbar_broker::BrokerConfig {
        fetch_bytes_max: 64 << 10,
        ..b
    });
    s.json("POST", "/topics", Some(json!({"name": "fat"})));
    let big = "x".repeat(10_000);
    let events: Vec<_> = (0..30).map(|_| json!({"value": big})).collect();
    assert_eq!(
        s.json("POST", "/topics/fat/events", Some(json!(events))).0,
        200
    );
    let all = "%7B%22specversion%22%3A%5B%221.0%22%5D%7D";
    let (st, v) = s.json(
        "GET",
        &format!("/topics/fat/partitions/0/events?pattern={all}&limit=1000"),
        None,
    );
    assert_eq!(st, 200, "{v}");
    let n = v["events"].as_array().unwrap().len() as u64;
    assert_eq!(
        n, 7,
        "64 KiB of 10 KB values: the 7th passes the limit and ends the page"
    );
    assert_eq!(
        v["next_offset"].as_u64(),
        Some(n),
        "the next page goes on after them"
    );
}

#[test]
fn an_offset_reset_preview_moves_nothing() {
    let s = Server::start();
    s.json(
        "POST",
        "/topics",
        Some(json!({"name": "r", "partitions": 2})),
    );
    let events: Vec<_> = (0..10)
        .map(|i| json!({"key": format!("k{i}"), "value": i}))
        .collect();
    s.json("POST", "/topics/r/events", Some(json!(events)));
    let reset = |dry: bool| {
        s.json(
            "POST",
            "/groups/g/offsets/reset",
            Some(json!({"topic": "r", "to": "latest", "dry_run": dry})),
        )
    };
    let (st, v) = reset(true);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["offsets"].as_array().unwrap().len(), 2);
    assert_error(s.json("GET", "/groups/g", None), 404, "unknown_group", "g");
    let (st, v) = reset(false);
    assert_eq!((st, &v["dry_run"]), (200, &json!(false)), "{v}");
    let (_, g) = s.json("GET", "/groups/g", None);
    assert_eq!(g["lag"], 0, "{g}");
}
