//! Failed-login backoff on HTTP Basic through the real binary (issue 16, H7/T14): wrong passwords
//! for one user from one address are answered later and later (up to `auth.backoff_max_ms`) and
//! slow down that pair only, not the same user from another address nor another user; 10,000
//! parallel failed logins of one pair keep it blocked (even its right password fails, unchecked)
//! while the server answers everyone else at once. A client that waits for each answer is never
//! blocked, only slowed: the answer comes when the delay has passed.
//! Another source address is 127.0.0.2 (curl `--interface`), which reaches the 127.0.0.1
//! listener over loopback. Kafka's side of the backoff is in tests/clients/sasl.py.

mod common;

use base64::Engine;
use busbar_testkit::http::request;
use common::Server;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const ADMIN_PW: &str = "admin-secret-1";
const ALICE_PW: &str = "alice-secret-1";

fn serve(data: &Path, backoff_max_ms: &'static str) -> Server {
    let env = [
        ("BUSBAR_AUTH_ENABLED", "true"),
        ("BUSBAR_AUTH_SUPER_USERS", "admin"),
        ("BUSBAR_ADMIN_PASSWORD", ADMIN_PW),
        ("BUSBAR_AUTH_ALLOW_IF_NO_ACL", "true"),
        ("BUSBAR_AUTH_BACKOFF_MAX_MS", backoff_max_ms),
    ];
    let s = Server::start(data, &[], &env);
    for (name, pw) in [("alice", ALICE_PW), ("bob", "bob-secret-1")] {
        let body = format!(r#"{{"name":"{name}","password":"{pw}"}}"#);
        assert_eq!(get_as(s.addr, "admin", ADMIN_PW, "POST", &body).0, 201);
    }
    s
}

fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// `method /users` (POST) or `GET /topics` as `user` from 127.0.0.1: the status and how long
/// the answer took.
fn get_as(addr: SocketAddr, user: &str, pw: &str, method: &str, body: &str) -> (u16, Duration) {
    let path = if method == "POST" {
        "/users"
    } else {
        "/topics"
    };
    let auth = basic(user, pw);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let t = Instant::now();
    let status = request(addr, method, path, &headers, body.as_bytes())
        .unwrap()
        .status;
    (status, t.elapsed())
}

fn get(addr: SocketAddr, user: &str, pw: &str) -> (u16, Duration) {
    get_as(addr, user, pw, "GET", "")
}

/// `GET /topics` as `user` from 127.0.0.2 (curl): the status and how long the answer took.
fn get_from_other_address(addr: SocketAddr, user: &str, pw: &str) -> (u16, Duration) {
    let t = Instant::now();
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--interface",
            "127.0.0.2",
        ])
        .args(["-u", &format!("{user}:{pw}")])
        .arg(format!("http://{addr}/topics"))
        .output()
        .expect("curl runs");
    let code = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
    (code, t.elapsed())
}

#[test]
fn wrong_passwords_slow_down_only_their_user_and_address() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), "800");
    // alice from 127.0.0.1: each failure is held back twice as long, 100 ms up to 800 ms.
    let mut took = Vec::new();
    for _ in 0..6 {
        let (status, t) = get(s.addr, "alice", "guess");
        assert_eq!(status, 401);
        took.push(t);
    }
    let ms: Vec<u128> = took.iter().map(Duration::as_millis).collect();
    for (i, want) in [100, 200, 400, 800, 800, 800].iter().enumerate() {
        assert!(
            ms[i] >= want * 9 / 10,
            "failure {i} took {ms:?}, want {want} ms"
        );
    }
    assert!(
        ms[0] < 700,
        "the first failure is not held for long: {ms:?}"
    );
    // alice from another address, and bob from this one, are not slowed.
    let (status, t) = get_from_other_address(s.addr, "alice", ALICE_PW);
    assert_eq!(status, 200, "alice from 127.0.0.2");
    assert!(
        t < Duration::from_millis(700),
        "alice from 127.0.0.2 took {t:?}"
    );
    let (status, t) = get(s.addr, "bob", "bob-guess");
    assert_eq!(status, 401);
    assert!(
        t < Duration::from_millis(700),
        "bob's first failure took {t:?}"
    );
    assert_eq!(get(s.addr, "bob", "bob-secret-1").0, 200, "after 100 ms");
    // Once the delay has passed, alice's right password works here again and clears the pair.
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(get(s.addr, "alice", ALICE_PW).0, 200);
    let (status, t) = get(s.addr, "alice", "guess");
    assert_eq!(status, 401);
    assert!(
        t < Duration::from_millis(700),
        "the count started again: {t:?}"
    );
}

#[test]
fn ten_thousand_failed_logins_of_one_user_back_off_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    // A short maximum keeps 10,000 attempts within seconds; every answer is still held back.
    let s = serve(dir.path(), "200");
    let workers = 200;
    let per = 10_000 / workers;
    let started = Instant::now();
    let (fastest, probe_worst, right_password_refused) = std::thread::scope(|scope| {
        let attackers: Vec<_> = (0..workers)
            .map(|w| {
                let addr = s.addr;
                scope.spawn(move || {
                    let mut fastest = Duration::MAX;
                    for i in 0..per {
                        let (status, t) = get(addr, "alice", &format!("guess-{w}-{i}"));
                        assert_eq!(status, 401);
                        if i > 0 {
                            fastest = fastest.min(t);
                        }
                    }
                    fastest
                })
            })
            .collect();
        // Meanwhile: the admin (same address) and alice from 127.0.0.2 are answered at once,
        // and alice's right password from the attacked address is refused.
        std::thread::sleep(Duration::from_millis(500));
        let mut worst = Duration::ZERO;
        let mut refused = 0;
        for _ in 0..10 {
            let (status, t) = get(s.addr, "admin", ADMIN_PW);
            assert_eq!(status, 200);
            worst = worst.max(t);
            let (status, t) = get_from_other_address(s.addr, "alice", ALICE_PW);
            assert_eq!(status, 200, "alice from 127.0.0.2 during the flood");
            worst = worst.max(t);
            if get(s.addr, "alice", ALICE_PW).0 == 401 {
                refused += 1;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let fastest = attackers
            .into_iter()
            .map(|a| a.join().unwrap())
            .min()
            .unwrap();
        (fastest, worst, refused)
    });
    let took = started.elapsed();
    eprintln!("10,000 failed logins in {took:?}; fastest failure {fastest:?}; worst probe {probe_worst:?}");
    assert!(
        fastest >= Duration::from_millis(90),
        "every failure answer is held back: {fastest:?}"
    );
    assert!(
        took >= Duration::from_millis(10_000 / workers as u64 * 90),
        "{took:?}"
    );
    assert_eq!(
        right_password_refused, 10,
        "blocked while the flood goes on"
    );
    assert!(
        probe_worst < Duration::from_secs(2),
        "a probe took {probe_worst:?}"
    );
}
