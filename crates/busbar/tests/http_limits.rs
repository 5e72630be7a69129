//! The HTTP accept path's limits through the real binary: a request whose body stalls is answered
//! 408 and closed after `http.body_read_timeout_ms`, and connections over `http.connections_max`
//! (in all, whatever their addresses) are closed at once while a normal request is served after.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Everything `s` sends until it closes (or `within` passes: then `None`).
fn read_until_closed(s: &mut TcpStream, within: Duration) -> Option<String> {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while start.elapsed() < within {
        match s.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(String::from_utf8_lossy(&got).into_owned())
            }
            Err(_) => {}
        }
    }
    None
}

#[test]
fn a_stalled_request_body_is_answered_408_and_closed_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &[],
        &[("BUSBAR_HTTP_BODY_READ_TIMEOUT_MS", "1000")],
    );
    let mut stalled = TcpStream::connect(s.addr).unwrap();
    let started = Instant::now();
    stalled
        .write_all(
            b"POST /topics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"na",
        )
        .unwrap();
    let answer = read_until_closed(&mut stalled, Duration::from_secs(6))
        .expect("a stalled body held its connection past the timeout");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("http.body_read_timeout_ms"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // A whole request is still served, and nothing was created.
    let (code, topics) = s.http("GET", "/topics", None);
    assert_eq!(code, 200);
    assert!(!topics.to_string().contains("\"na"), "{topics}");
}

#[test]
fn connections_over_http_connections_max_are_closed_and_a_freed_place_serves() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[("BUSBAR_HTTP_CONNECTIONS_MAX", "3")]);
    std::thread::sleep(Duration::from_millis(300)); // the readiness probe's connection is gone
    let open: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(s.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut over = TcpStream::connect(s.addr).unwrap();
    let _ = over.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer = read_until_closed(&mut over, Duration::from_secs(2))
        .expect("a connection over the cap was kept open");
    assert!(answer.is_empty(), "served over the cap: {answer}");
    let logged = Instant::now();
    while s.log_lines("http.connections_max").is_empty() {
        assert!(
            logged.elapsed() < Duration::from_secs(3),
            "the close was not logged"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(open);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.http("GET", "/healthz", None).0, 200);
}

/// One request on a new connection: (status line, the whole answer).
fn one_request(s: &Server, head: &str, body: &[u8]) -> String {
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(body).unwrap();
    read_until_closed(&mut c, Duration::from_secs(5)).expect("answered and closed")
}

#[test]
fn bodies_being_read_share_http_body_bytes_budget() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &[],
        &[("BUSBAR_HTTP_BODY_BYTES_BUDGET", "1048576")],
    );
    // A stalled body holds 900,000 bytes of the budget of 1 MiB.
    let mut stalled = TcpStream::connect(s.addr).unwrap();
    stalled
        .write_all(
            b"POST /topics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 1000000\r\n\r\n",
        )
        .unwrap();
    stalled.write_all(&vec![b' '; 900_000]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut body = br#"{"name": "fits"}"#.to_vec();
    body.resize(200_000, b' ');
    let head = format!(
        "POST /topics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let answer = one_request(&s, &head, &body);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("http.body_bytes_budget"), "{answer}");
    assert_eq!(
        s.http("GET", "/topics/fits", None).0,
        404,
        "nothing created"
    );
    // Once the stalled body is gone its bytes are free again.
    drop(stalled);
    std::thread::sleep(Duration::from_millis(300));
    let answer = one_request(&s, &head, &body);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
}
