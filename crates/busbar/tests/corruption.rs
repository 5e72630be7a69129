//! Reliability D6 through the real binary: damage the data directory of a stopped busbar (a bit flip
//! in a sealed segment, a garbage index, a damaged metadata document, a damaged offsets log) and
//! restart. Damaged bytes are never served, the damage is reported (error naming the file, a
//! per-partition count in the topic and /metrics), everything else keeps working, and damaged
//! metadata stops start-up with a clear error instead of being reset; a damaged batch of the
//! committed-offsets log is contained (its commits fall back to older ones) and reported.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn flip(path: &Path, at: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[at as usize] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

fn events(s: &Server, offset: u64) -> (u16, Value) {
    s.http(
        "GET",
        &format!("/topics/c/partitions/0/events?offset={offset}&limit=1000"),
        None,
    )
}

#[test]
fn damage_is_never_served_is_reported_and_stops_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data, &[], &[]);
    let (st, v) = s.http(
        "POST",
        "/topics",
        Some(json!({"name": "c", "partitions": 1, "configs": {"segment.bytes": "16384"}})),
    );
    assert_eq!(st, 201, "{v}");
    let pad = "p".repeat(400);
    for b in 0..10 {
        let evs: Vec<Value> = (0..10)
            .map(|i| json!({"value": {"n": b * 10 + i, "pad": pad}}))
            .collect();
        assert_eq!(
            s.http("POST", "/topics/c/events", Some(Value::Array(evs)))
                .0,
            200
        );
    }
    let (st, _) = s.http(
        "POST",
        "/groups/g/offsets/reset",
        Some(json!({"topic": "c", "to": {"offset": 50}})),
    );
    assert_eq!(st, 200);
    assert_eq!(s.stop(), 0);

    let part = data.join("topics/c/0");
    let segments = files(&part, "log");
    assert!(segments.len() >= 3, "{segments:?}");
    let second_base: u64 = segments[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    flip(&segments[0], 16 + 300); // inside the first batch of a sealed segment
    std::fs::write(files(&part, "index")[1].clone(), b"garbage").unwrap();

    let s = Server::start(&data, &[], &[]);
    let (st, v) = events(&s, 0);
    assert_eq!(st, 500, "{v}");
    assert_eq!(v["error"]["code"], "damaged_data");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(".log"),
        "{v}"
    );
    // Everything outside the damaged range is served, byte for byte what was published.
    let (st, v) = events(&s, second_base);
    assert_eq!(st, 200, "{v}");
    let got: Vec<i64> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(got, (second_base as i64..100).collect::<Vec<_>>());
    assert!(v["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["value"]["pad"] == pad));
    let (_, d) = s.http("GET", "/topics/c", None);
    assert!(
        d["partitions"][0]["damaged_ranges"].as_u64().unwrap() >= 1,
        "{d}"
    );
    let m = busbar_testkit::http::request(s.addr, "GET", "/metrics", &[], b"").unwrap();
    assert!(
        m.text()
            .contains("busbar_partition_damaged_ranges{topic=\"c\",partition=\"0\"} 1"),
        "{}",
        m.text()
    );
    // New writes land and read back; committed offsets are intact.
    assert_eq!(
        s.http(
            "POST",
            "/topics/c/events",
            Some(json!({"value": {"n": 100}}))
        )
        .0,
        200
    );
    let (_, v) = events(&s, 100);
    assert_eq!(v["events"][0]["value"]["n"], 100);
    let (_, g) = s.http("GET", "/groups/g", None);
    assert_eq!(g["offsets"][0]["committed_offset"], 50, "{g}");
    assert_eq!(s.stop(), 0);

    // Damaged topic metadata: start-up refused, naming the file; nothing rewritten.
    let meta = data.join("meta/topics.json");
    let good = std::fs::read(&meta).unwrap();
    std::fs::write(&meta, b"{\"version\": 1, \"topi").unwrap();
    let (code, err) = refused_start(&data);
    assert_ne!(code, 0);
    assert!(
        err.contains("topics.json") && err.contains("damaged"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&meta).unwrap(),
        b"{\"version\": 1, \"topi",
        "never overwritten"
    );
    std::fs::write(&meta, good).unwrap();

    // A damaged batch in the committed-offsets log: contained, not fatal. Its commits are lost
    // (the group falls back to an older commit or none: events are delivered again, never
    // skipped), the damage is reported at start, and the broker serves everything else.
    let offsets = files(&data.join("internal/offsets"), "log");
    let len = std::fs::metadata(&offsets[0]).unwrap().len();
    flip(&offsets[0], len - 20);
    let s = Server::start(&data, &[], &[]);
    let warned = s.log_lines("damaged data skipped at start: committed-offsets log");
    assert_eq!(warned.len(), 1, "the damage is reported");
    let (_, g) = s.http("GET", "/groups/g", None);
    let back = g["offsets"][0]["committed_offset"].as_u64();
    assert!(
        back.is_none_or(|o| o <= 50),
        "a lost commit falls back, never forward: {g}"
    );
    let (status, body) = s.http(
        "POST",
        "/groups/g/offsets/reset",
        Some(json!({"topic": "c", "to": {"offset": 7}})),
    );
    assert_eq!(status, 200, "new commits work: {body}");
    assert_eq!(s.stop(), 0);
    let s = Server::start(&data, &[], &[]);
    let (_, g) = s.http("GET", "/groups/g", None);
    assert_eq!(g["offsets"][0]["committed_offset"], 7, "{g}");
    assert_eq!(s.stop(), 0);
}
