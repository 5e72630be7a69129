//! The data directory through the real binary: one server per directory (a second `busbar serve`
//! on it exits 2 naming the holder's pid, and the first keeps its data), the lock is released
//! however the holder ends, and a lost topic document beside topic data stops start-up instead of
//! deleting the topics as orphans.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

fn publish(s: &Server, n: usize) {
    let events: Vec<_> = (0..n).map(|i| json!({"value": {"i": i}})).collect();
    let (status, body) = s.http("POST", "/topics/d/events", Some(json!(events)));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_second_server_on_one_data_directory_exits_2_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(dir.path(), &[], &[]);
    let (status, body) = first.http("POST", "/topics", Some(json!({"name": "d"})));
    assert_eq!(status, 201, "{body}");
    publish(&first, 5);
    let (code, err) = refused_start(dir.path());
    assert_eq!(code, 2, "the second server must refuse: {err}");
    let pid = first.child.id().to_string();
    assert!(
        err.contains("in use") && err.contains(&pid),
        "the message names the holder's pid {pid}: {err}"
    );
    publish(&first, 5);
    assert_eq!(
        first.events_stored("d"),
        10,
        "the first server is untouched"
    );
    // The kernel drops the lock whatever way the holder ends.
    first.kill9();
    let again = Server::start(dir.path(), &[], &[]);
    assert_eq!(again.events_stored("d"), 10);
    assert_eq!(again.stop(), 0);
}

#[test]
fn a_lost_topic_document_stops_start_up_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    let (status, body) = s.http("POST", "/topics", Some(json!({"name": "d"})));
    assert_eq!(status, 201, "{body}");
    publish(&s, 3);
    assert_eq!(s.stop(), 0);
    let doc = dir.path().join("meta/topics.json");
    std::fs::remove_file(&doc).unwrap();
    let (code, err) = refused_start(dir.path());
    assert_ne!(code, 0, "start-up must refuse");
    assert!(
        err.contains("topics.json is missing") && err.contains("holds data of 1 topic"),
        "the error says what is wrong: {err}"
    );
    assert!(
        dir.path().join("topics/d/0").is_dir(),
        "the topic's data was deleted"
    );
    assert!(!doc.exists(), "start-up wrote a metadata document");
}

#[test]
fn a_fresh_data_directory_gets_its_topic_document_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("new");
    let s = Server::start(&data, &[], &[]);
    assert!(data.join("meta/topics.json").is_file());
    assert!(data.join("lock").is_file());
    assert_eq!(s.stop(), 0);
    // A topic directory left by a crash before the topic was recorded is an orphan: removed.
    std::fs::create_dir_all(data.join("topics/half-made/0")).unwrap();
    let s = Server::start(&data, &[], &[]);
    assert!(!data.join("topics/half-made").exists());
    assert_eq!(s.stop(), 0);
}

#[test]
fn weakening_a_topics_durability_is_logged_with_the_peer_address() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    let (status, body) = s.http(
        "POST",
        "/topics",
        Some(json!({"name": "fast", "configs": {"sync.policy": "never"}})),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = s.http("POST", "/topics", Some(json!({"name": "d"})));
    assert_eq!(status, 201, "{body}");
    let (status, body) = s.http(
        "PATCH",
        "/topics/d",
        Some(json!({"configs": {"sync.policy": "interval"}})),
    );
    assert_eq!(status, 200, "{body}");
    // Strengthening is not a warning.
    let (status, body) = s.http(
        "PATCH",
        "/topics/d",
        Some(json!({"configs": {"sync.policy": "batch"}})),
    );
    assert_eq!(status, 200, "{body}");
    std::thread::sleep(Duration::from_millis(200));
    let warned = s.log_lines("weakened the durability");
    assert_eq!(warned.len(), 2, "{warned:?}");
    assert!(warned[0].contains("\"fast\"") && warned[0].contains("batch -> never"));
    assert!(warned[1].contains("\"d\"") && warned[1].contains("batch -> interval"));
    assert!(
        warned.iter().all(|l| l.contains("127.0.0.1:")),
        "{warned:?}"
    );
    assert_eq!(s.stop(), 0);
}
