//! Kafka frames that declare enormous arrays in a few bytes, against the real binary: each closes
//! only its own connection, and the server keeps serving. Regression test for a crash found while
//! building the reliability battery: kafka-protocol 0.18 pre-allocates `count` elements before
//! reading any, so a 19-byte Metadata request made busbar abort on a 154 GB allocation
//! (`crates/busbar-kafka/src/alloc.rs`).

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// Request header v1 (api key, version, correlation id, client id).
fn header_v1(key: i16, version: i16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&key.to_be_bytes());
    h.extend_from_slice(&version.to_be_bytes());
    h.extend_from_slice(&7i32.to_be_bytes());
    h.extend_from_slice(&1i16.to_be_bytes());
    h.push(b'x');
    h
}

/// Request header v2: v1 plus an empty tagged-field section.
fn header_v2(key: i16, version: i16) -> Vec<u8> {
    let mut h = header_v1(key, version);
    h.push(0);
    h
}

fn closed_without_answer(s: &Server, bytes: &[u8]) -> bool {
    let mut c = TcpStream::connect(s.kafka).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(bytes).unwrap();
    let mut buf = [0u8; 64];
    matches!(c.read(&mut buf), Ok(0) | Err(_))
}

fn api_versions_answers(s: &Server) -> bool {
    let mut c = TcpStream::connect(s.kafka).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(&frame(&header_v1(18, 0))).unwrap();
    let mut len = [0u8; 4];
    c.read_exact(&mut len).is_ok() && i32::from_be_bytes(len) > 0
}

#[test]
fn frames_declaring_huge_arrays_close_their_connection_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // Metadata v1, topics: Array with i32::MAX elements (each ~72 bytes in memory).
    let mut b = header_v1(3, 1);
    b.extend_from_slice(&i32::MAX.to_be_bytes());
    cases.push(("metadata v1, 2^31-1 topics", frame(&b)));
    // Metadata v9 (flexible), topics: CompactArray with varint 0xFFFFFFFF (2^32-2 elements).
    let mut b = header_v2(3, 9);
    b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    cases.push(("metadata v9, 2^32-2 topics", frame(&b)));
    // Produce v8: transactional id null, acks, timeout, then 2^31-1 topics.
    let mut b = header_v1(0, 8);
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&1000i32.to_be_bytes());
    b.extend_from_slice(&i32::MAX.to_be_bytes());
    cases.push(("produce v8, 2^31-1 topics", frame(&b)));
    // OffsetCommit v2: group, generation, member, retention, then 2^31-1 topics.
    let mut b = header_v1(8, 2);
    for part in [
        &b"\x00\x01g"[..],
        &(-1i32).to_be_bytes(),
        b"\x00\x00",
        &(-1i64).to_be_bytes(),
    ] {
        b.extend_from_slice(part);
    }
    b.extend_from_slice(&i32::MAX.to_be_bytes());
    cases.push(("offset commit v2, 2^31-1 topics", frame(&b)));
    for (what, bytes) in cases {
        assert!(
            closed_without_answer(&s, &bytes),
            "{what}: connection stayed open"
        );
        assert!(
            api_versions_answers(&s),
            "{what}: the broker stopped answering"
        );
    }
    assert_eq!(s.http("GET", "/healthz", None).0, 200);
    assert_eq!(s.stop(), 0, "still running and stops cleanly");
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Reliability I4: hundreds of slowloris connections (a byte now and then) and garbage connections
/// cannot starve a well-behaved client, and the idle timeout closes them (file descriptors return).
#[test]
fn slow_and_garbage_connections_do_not_starve_others() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[("BUSBAR_KAFKA_IDLE_TIMEOUT_MS", "1000")]);
    let pid = s.child.id();
    let baseline = open_fds(pid);
    let mut attackers = Vec::new();
    for i in 0..300 {
        let mut c = TcpStream::connect(s.kafka).unwrap();
        if i % 3 == 0 {
            // Garbage: a plausible length, then noise that never completes the frame.
            c.write_all(&[0, 0, 0, 100, 0xde, 0xad, 0xbe, 0xef])
                .unwrap();
        } else {
            c.write_all(&[0]).unwrap(); // the first byte of a length, then silence
        }
        attackers.push(c);
    }
    let start = std::time::Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let t = std::time::Instant::now();
        assert!(
            api_versions_answers(&s),
            "a well-behaved client was starved"
        );
        slowest = slowest.max(t.elapsed());
    }
    eprintln!(
        "50 requests beside 300 hostile connections in {:?}, slowest {slowest:?}",
        start.elapsed()
    );
    // The idle timeout (1 s) closes every hostile connection although its client keeps it open.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while open_fds(pid) > baseline + 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        open_fds(pid) <= baseline + 5,
        "fds: {} vs {baseline}",
        open_fds(pid)
    );
    drop(attackers);
    assert_eq!(s.stop(), 0);
}

#[test]
fn a_flood_of_malformed_connections_is_logged_at_a_bounded_rate() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    // Each declares a negative frame length: closed, and worth a line, but not 100 lines a second.
    let negative = (-1i32).to_be_bytes();
    for _ in 0..100 {
        assert!(closed_without_answer(&s, &negative));
    }
    // 20 a second: at most 40 when the connections straddle a window's end (100 before the fix).
    let closes = s.log_lines("closing connection from").len();
    assert!((1..=40).contains(&closes), "{closes} lines");
    // The next window says how many were left out.
    std::thread::sleep(Duration::from_millis(1100));
    assert!(closed_without_answer(&s, &negative));
    let end = std::time::Instant::now() + WAIT;
    while s.log_lines("closed connections not logged").is_empty() {
        assert!(std::time::Instant::now() < end, "no summary line");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(api_versions_answers(&s));
}
