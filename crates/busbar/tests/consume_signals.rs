//! `busbar consume --group G --follow` stopped by a signal, against the real binary: the CLI
//! leaves its group before it exits (128 + the signal's number), having committed exactly what it
//! printed, so the next member of the group gets every remaining event at once instead of finding
//! a ghost member holding the partitions.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn values(lines: &str) -> Vec<u64> {
    let mut v: Vec<u64> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["value"]
                .as_u64()
                .unwrap()
        })
        .collect();
    v.sort();
    v
}

fn publish(s: &Server, range: std::ops::Range<u64>) {
    let events: Vec<Value> = range
        .map(|i| json!({"key": format!("k{i}"), "value": i}))
        .collect();
    assert_eq!(
        s.http("POST", "/topics/t/events", Some(json!(events))).0,
        200
    );
}

/// Follows group `g`, stops the CLI with `signal` once it printed the first 20 events, and checks
/// the exit code, the group and what the next member reads.
fn group_follower_stopped_by(signal: &str, code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &[],
        &[("BUSBAR_BROKER_GROUP_INITIAL_REBALANCE_DELAY_MS", "100")],
    );
    s.http(
        "POST",
        "/topics",
        Some(json!({"name": "t", "partitions": 2})),
    );
    publish(&s, 0..20);

    let mut child = Command::new(BIN)
        .args(["--server", &s.url(), "--output", "json"])
        .args(["consume", "t", "--group", "g", "--follow"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed = String::new();
    for _ in 0..20 {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the follower prints the first 20 events");
        printed.push_str(&line);
        printed.push('\n');
    }
    assert_eq!(values(&printed), (0..20).collect::<Vec<_>>());

    let sent = Instant::now();
    let st = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(st.success());
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if sent.elapsed() > Duration::from_secs(3) {
            let _ = child.kill();
            panic!("busbar consume did not exit within 3 s of SIG{signal}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(
        status.code(),
        Some(code),
        "SIG{signal} exits {code} after leaving the group: {status:?}, stderr {err:?}"
    );
    assert!(err.contains(&format!("SIG{signal}")), "{err}");
    assert!(rx.try_recv().is_err(), "nothing printed after the signal");

    // Well before any session or idle timeout: no member left behind, everything printed committed.
    let (_, g) = s.http("GET", "/groups/g", None);
    assert_eq!(g["members"].as_array().unwrap().len(), 0, "{g}");
    assert_eq!(g["lag"], 0, "{g}");

    // The next member of the group gets exactly the events published since.
    publish(&s, 20..30);
    let next = s.cli(&["--output", "json", "consume", "t", "--group", "g"]);
    assert!(next.status.success(), "{}", stderr(&next));
    assert_eq!(values(&stdout(&next)), (20..30).collect::<Vec<_>>());
    let (_, g) = s.http("GET", "/groups/g", None);
    assert_eq!(g["lag"], 0, "{g}");
    assert_eq!(s.stop(), 0);
}

#[test]
fn sigint_leaves_the_group_and_exits_130() {
    group_follower_stopped_by("INT", 130);
}

#[test]
fn sigterm_leaves_the_group_and_exits_143() {
    group_follower_stopped_by("TERM", 143);
}

#[test]
fn sighup_leaves_the_group_and_exits_129() {
    group_follower_stopped_by("HUP", 129);
}
