//! Reliability D7 through the real binary: with its data directory on a full file system (a
//! size-limited tmpfs) HTTP publish answers 507 and stores nothing, reads keep working, publishing
//! works again once space is freed, and every acknowledged event survives a kill -9.

mod common;

use busbar_testkit::http::request;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn avail(path: &std::path::Path) -> u64 {
    let df = std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&df.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_full_disk_answers_507_keeps_reads_and_loses_nothing() {
    let Some(fs) = busbar_testkit::tmpfs::Tmpfs::mount(32 << 20) else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root; CI runs as root)");
        return;
    };
    let data = fs.join("data");
    let s = Server::start(&data, &[], &[]);
    assert_eq!(
        s.http(
            "POST",
            "/topics",
            Some(json!({"name": "f", "partitions": 1}))
        )
        .0,
        201
    );
    std::fs::write(fs.join("spare"), vec![0u8; 4 << 20]).unwrap();
    let left = avail(fs.path());
    std::fs::write(fs.join("filler"), vec![0u8; (left - (256 << 10)) as usize]).unwrap();
    let value = "x".repeat(4000);
    let mut acked = 0u64;
    let mut status = 200;
    for _ in 0..1000 {
        let (st, v) = s.http("POST", "/topics/f/events", Some(json!({"value": value})));
        status = st;
        if st != 200 {
            assert_eq!(v["error"]["code"], "storage_error", "{v}");
            break;
        }
        acked += 1;
    }
    assert_eq!(status, 507, "a full disk answers 507 Insufficient Storage");
    // What an operator's dashboard shows (docs/metrics.md, M5 and M7).
    let metrics = request(s.addr, "GET", "/metrics", &[], b"").unwrap();
    let metrics = String::from_utf8_lossy(&metrics.body).to_string();
    let sample = |name: &str| -> f64 {
        let line = (metrics.lines())
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no {name} in {metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let refused =
        "busbar_produce_requests_total{topic=\"f\",api=\"http\",outcome=\"storage_error\"}";
    assert_eq!(sample(refused), 1.0);
    let ok = "busbar_produce_requests_total{topic=\"f\",api=\"http\",outcome=\"ok\"}";
    assert_eq!(sample(ok), acked as f64);
    assert!(
        sample("busbar_disk_free_bytes") < (1 << 20) as f64,
        "the tmpfs is full"
    );
    assert!(
        sample("busbar_storage_quota_bytes") < (32 << 20) as f64,
        "the tmpfs is 32 MiB"
    );
    let (st, v) = s.http(
        "GET",
        "/topics/f/partitions/0/events?offset=0&limit=1000",
        None,
    );
    assert_eq!(st, 200);
    assert_eq!(
        v["events"].as_array().unwrap().len() as u64,
        acked,
        "reads keep working"
    );
    assert_eq!(v["high_watermark"], acked, "the refused event left nothing");
    std::fs::remove_file(fs.join("spare")).unwrap();
    let start = Instant::now();
    loop {
        let (st, _) = s.http("POST", "/topics/f/events", Some(json!({"value": value})));
        if st == 200 {
            acked += 1;
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "no recovery after space returned: {st}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    s.kill9();
    let s = Server::start(&data, &[], &[]);
    let (_, v) = s.http(
        "GET",
        "/topics/f/partitions/0/events?offset=0&limit=1000",
        None,
    );
    assert_eq!(
        v["events"].as_array().unwrap().len() as u64,
        acked,
        "every acknowledged event kept"
    );
    assert_eq!(s.stop(), 0);
}
