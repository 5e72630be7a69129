//! Unit tests of the audit writer: the line format, rotation, a full queue, failed writes.

use super::*;
use std::time::{Duration, Instant};

fn clock() -> Arc<dyn Clock> {
    busbar_log::ManualClock::new(1_790_000_000_000)
}

fn event(i: usize) -> AuditEvent {
    AuditEvent {
        principal: format!("User:u{i}"),
        peer: Some("127.0.0.1:5000".parse().unwrap()),
        listener: "SASL_PLAINTEXT://127.0.0.1:9092".into(),
        operation: "SaslAuthenticate".into(),
        resource: "USER:u".into(),
        outcome: "failed".into(),
        detail: None,
    }
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn file_config(path: &Path) -> AuditConfig {
    AuditConfig {
        target: AuditTarget::File(path.to_path_buf()),
        ..Default::default()
    }
}

#[test]
fn each_event_is_one_json_line_with_every_field_and_long_fields_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let audit = Audit::start(&AuditConfig::default(), Some(dir.path()), clock()).unwrap();
    audit.record(event(1));
    audit.record(AuditEvent {
        principal: "x".repeat(100_000),
        peer: None,
        detail: Some("é".repeat(5_000)),
        ..event(2)
    });
    audit.flush();
    let got = lines(&dir.path().join("audit.log"));
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0],
        serde_json::json!({"time": "2026-09-21T14:13:20.000Z", "principal": "User:u1",
            "peer": "127.0.0.1:5000", "listener": "SASL_PLAINTEXT://127.0.0.1:9092",
            "operation": "SaslAuthenticate", "resource": "USER:u", "outcome": "failed"})
    );
    assert_eq!(got[1]["principal"].as_str().unwrap().len(), FIELD_BYTES_MAX);
    assert!(got[1]["peer"].is_null());
    assert!(got[1]["detail"].as_str().unwrap().len() <= DETAIL_BYTES_MAX);
    assert_eq!(audit.stats().written, 2);
}

#[test]
fn the_file_rotates_at_max_bytes_keeping_files_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    let config = AuditConfig {
        max_bytes: 2_000,
        files_kept: 3,
        ..file_config(&path)
    };
    let audit = Audit::start(&config, None, clock()).unwrap();
    for i in 0..200 {
        audit.record(event(i));
    }
    audit.flush();
    let rotated = |k: u32| dir.path().join(format!("a.log.{k}"));
    for p in [path.clone(), rotated(1), rotated(2), rotated(3)] {
        let len = std::fs::metadata(&p).unwrap().len();
        assert!(len > 0 && len <= 2_000, "{p:?}: {len} bytes");
    }
    assert!(!rotated(4).exists(), "only files_kept rotated files stay");
    // The newest line is last in audit.log, the ones before it in .1.
    let newest = lines(&path);
    assert_eq!(newest.last().unwrap()["principal"], "User:u199");
    let before = lines(&rotated(1));
    let n = before.last().unwrap()["principal"].as_str().unwrap()[6..].parse::<usize>();
    assert_eq!(n.unwrap() + newest.len(), 199);
    let s = audit.stats();
    assert_eq!((s.written, s.dropped, s.write_errors), (200, 0, 0));
    assert!(s.rotations >= 10, "{s:?}");
}

#[test]
fn a_file_that_grew_past_max_bytes_before_a_restart_rotates_at_the_next_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    std::fs::write(&path, "x".repeat(3_000)).unwrap();
    let config = AuditConfig {
        max_bytes: 2_000,
        ..file_config(&path)
    };
    let audit = Audit::start(&config, None, clock()).unwrap();
    audit.record(event(0));
    audit.flush();
    assert_eq!(lines(&path).len(), 1);
    assert_eq!(
        std::fs::metadata(dir.path().join("audit.log.1"))
            .unwrap()
            .len(),
        3_000
    );
}

#[test]
fn a_full_queue_drops_and_counts_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.unwrap().success());
    // Opened for reading and writing so the writer's open does not wait; never read: the pipe
    // fills and the writer blocks, as on a stuck disk.
    let _held = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let config = AuditConfig {
        queue_max: 10,
        ..file_config(&fifo)
    };
    let audit = Audit::start(&config, None, clock()).unwrap();
    let started = Instant::now();
    for i in 0..5_000 {
        audit.record(event(i));
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let s = audit.stats();
    assert!(s.dropped > 4_000, "{s:?}");
    std::mem::forget(audit); // its writer stays blocked on the pipe
}

#[test]
fn a_failed_write_loses_its_line_and_the_writer_goes_on() {
    let full = Path::new("/dev/full");
    if !full.exists() {
        return;
    }
    let audit = Audit::start(&file_config(full), None, clock()).unwrap();
    for i in 0..3 {
        audit.record(event(i));
    }
    audit.flush();
    let s = audit.stats();
    assert_eq!((s.written, s.write_errors), (0, 3), "{s:?}");
}

#[test]
fn a_file_that_cannot_be_opened_fails_the_start_with_its_path() {
    let err = Audit::start(
        &file_config(Path::new("/proc/nope/audit.log")),
        None,
        clock(),
    );
    let msg = err.err().expect("refused").to_string();
    assert!(msg.contains("/proc/nope"), "{msg}");
}

#[test]
fn off_and_an_injected_data_dir_write_nothing() {
    let audit = Audit::start(&AuditConfig::default(), None, clock()).unwrap();
    assert!(!audit.enabled());
    audit.record(event(0));
    audit.flush();
    assert_eq!(audit.stats(), AuditStats::default());
}
