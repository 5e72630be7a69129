//! The bus's HTTP targets through the real binary (issue 14 items 14 and 15): the target policy
//! (`[bus.targets]`) refuses denied hosts when a subscription is created and denied resolved
//! addresses at connect time (dead letter `target_forbidden`, no retries, no network detail in
//! the letter); `allow` overrides `deny`; `https://` targets are verified with the Mozilla roots
//! or a subscription's CA file (a local TLS server with a certificate made by `rcgen`).

mod common;

use busbar_testkit::target::{refused_addr, Target};
use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Creates `spec`, answering (status, error message).
fn create(s: &Server, spec: Value) -> (u16, String) {
    let (st, v) = s.http("POST", "/subscriptions", Some(spec));
    (st, v["error"]["message"].as_str().unwrap_or("").to_string())
}

fn to(name: &str, url: &str) -> Value {
    json!({"name": name, "sources": ["in"], "target": {"url": url}, "dead_letter_topic": "dlq",
           "delivery": {"max_attempts": 2, "backoff_initial_ms": 20, "backoff_max_ms": 40}})
}

/// The dead letters of `sub`, waiting until there are `n`.
fn dead_letters(s: &Server, sub: &str, n: usize) -> Vec<Value> {
    let end = Instant::now() + WAIT;
    loop {
        let path = format!("/dead-letters/dlq?subscription={sub}");
        let (st, v) = s.http("GET", &path, None);
        assert_eq!(st, 200, "{v}");
        let got = v["dead_letters"].as_array().cloned().unwrap_or_default();
        if got.len() >= n {
            return got;
        }
        assert!(Instant::now() < end, "no dead letter for {sub}: {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn denied_hosts_are_refused_when_a_subscription_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("BUSBAR_BUS_TARGETS_DENY", "10.0.0.0/8, *.internal")];
    let s = Server::start(dir.path(), &[], &env);
    topics(&s, &[("in", 1), ("dlq", 1)]);
    for (url, rule) in [
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254/32",
        ),
        ("http://169.254.1.1/", "169.254.0.0/16"),
        ("http://[fe80::1]:8080/", "fe80::/10"),
        ("http://[::ffff:169.254.169.254]/", "169.254.169.254/32"),
        (
            "https://metadata.google.internal/",
            "metadata.google.internal",
        ),
        ("http://0.0.0.0:8080/", "0.0.0.0/8"),
        ("http://[::]:8080/", "::/128"),
        ("http://10.1.2.3/", "10.0.0.0/8"),
        ("http://db.internal./", "*.internal"),
    ] {
        let (st, msg) = create(&s, to("x", url));
        assert_eq!(st, 400, "{url} was accepted");
        assert!(
            msg.contains("target.url") && msg.contains(&format!("deny {rule:?}")),
            "{url}: {msg}"
        );
        assert_eq!(s.http("GET", "/subscriptions/x", None).0, 404, "{url}");
    }
    // Loopback and other names stay allowed by default.
    let t = Target::ok();
    subscribe(&s, to("local", &t.url("/ok")));
    subscribe(&s, to("named", "http://example.com/"));
    // An update is checked too, and leaves the subscription as it was.
    let update = to("local", "http://169.254.169.254/");
    let (st, v) = s.http("PUT", "/subscriptions/local", Some(update));
    assert_eq!(st, 400, "{v}");
    let (_, v) = s.http("GET", "/subscriptions/local", None);
    assert_eq!(v["target"]["url"], t.url("/ok"));
    assert_eq!(s.stop(), 0);
}

#[test]
fn a_name_resolving_to_a_denied_address_is_dead_lettered_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // `localhost` passes the name rules when the subscription is created; the addresses it
    // resolves to are refused when the worker connects.
    let env = [("BUSBAR_BUS_TARGETS_DENY", "127.0.0.1/32,::1/128")];
    let s = Server::start(dir.path(), &[], &env);
    topics(&s, &[("in", 1), ("dlq", 1)]);
    let t = Target::ok();
    let url = format!("http://localhost:{}/x", t.addr.port());
    let mut spec = to("rebound", &url);
    spec["delivery"]["max_attempts"] = json!(10);
    subscribe(&s, spec);
    // The literal address is refused at once.
    let literal = create(&s, to("literal", &t.url("/x")));
    assert_eq!(literal.0, 400, "{}", literal.1);
    publish(&s, "in", json!({"value": {"n": 1}}));
    let d = &dead_letters(&s, "rebound", 1)[0];
    assert_eq!(d["reason"], "target_forbidden", "{d}");
    assert_eq!(d["attempts"], 1, "a forbidden target is not retried: {d}");
    let error = d["error"].as_str().unwrap();
    assert!(error.contains("bus.targets"), "{error}");
    assert!(!error.contains("127.0.0.1"), "no resolved address: {error}");
    assert!(t.received().is_empty(), "the target was reached");
    assert_eq!(s.stop(), 0);
}

#[test]
fn allow_overrides_deny_and_the_most_specific_rule_decides() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("BUSBAR_BUS_TARGETS_DENY", "127.0.0.0/8"),
        ("BUSBAR_BUS_TARGETS_ALLOW", "127.0.0.1/32,169.254.0.0/16"),
    ];
    let s = Server::start(dir.path(), &[], &env);
    topics(&s, &[("in", 1), ("dlq", 1)]);
    let t = Target::ok();
    subscribe(&s, to("allowed", &t.url("/ok")));
    assert_eq!(create(&s, to("other", "http://127.0.0.2:1/")).0, 400);
    // The /16 allowed, the metadata address (its own /32 deny) still not.
    subscribe(&s, to("linklocal", "http://169.254.10.1:1/"));
    let (st, msg) = create(&s, to("meta", "http://169.254.169.254/"));
    assert_eq!(st, 400, "{msg}");
    publish(&s, "in", json!({"value": {"n": 1}}));
    t.wait(WAIT, |r| r.len() == 1);
    assert_eq!(s.stop(), 0);
    let (code, err) = refused_start_with(dir.path(), &[("BUSBAR_BUS_TARGETS_DENY", "10.0.0.0/33")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bus.targets.deny[0]"), "{err}");
}

#[test]
fn connection_failures_are_reported_without_network_detail() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    topics(&s, &[("in", 1), ("dlq", 1)]);
    subscribe(&s, to("down", &format!("http://{}/x", refused_addr())));
    subscribe(&s, to("nowhere", "http://no-such-host.invalid/x"));
    publish(&s, "in", json!({"value": {"n": 1}}));
    let d = &dead_letters(&s, "down", 1)[0];
    assert_eq!(
        (d["reason"].as_str(), d["error"].as_str()),
        (Some("connection"), Some("connection refused")),
        "{d}"
    );
    let d = &dead_letters(&s, "nowhere", 1)[0];
    assert_eq!(d["reason"], "connection", "{d}");
    assert!(!d["error"].as_str().unwrap().contains("os error"), "{d}");
    assert_eq!(s.stop(), 0);
}

/// A one-thread HTTPS server with a certificate for `localhost` and 127.0.0.1, answering 200 to
/// every request it can read; counts the requests.
struct TlsTarget {
    port: u16,
    ca_pem: String,
    requests: Arc<AtomicUsize>,
}

impl TlsTarget {
    fn start() -> TlsTarget {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let ca = rcgen::generate_simple_self_signed(names).unwrap();
        let cert = ca.cert.der().clone();
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ca.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (config, counted) = (config.clone(), counted.clone());
                std::thread::spawn(move || serve_tls(conn, config, &counted));
            }
        });
        TlsTarget {
            port,
            ca_pem: ca.cert.pem(),
            requests,
        }
    }
}

fn serve_tls(conn: std::net::TcpStream, config: Arc<rustls::ServerConfig>, n: &AtomicUsize) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let tls = rustls::ServerConnection::new(config).unwrap();
    let mut reader = BufReader::new(rustls::StreamOwned::new(tls, conn));
    loop {
        let mut len = 0;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line.trim().is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        n.fetch_add(1, Ordering::SeqCst);
        let out = reader.get_mut();
        if out
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .and_then(|_| out.flush())
            .is_err()
        {
            return;
        }
    }
}

#[test]
fn https_targets_are_verified_with_the_subscriptions_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let t = TlsTarget::start();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &t.ca_pem).unwrap();
    let s = Server::start(&dir.path().join("data"), &[], &[]);
    topics(&s, &[("in", 1), ("dlq", 1)]);
    let url = format!("https://localhost:{}/events", t.port);
    let mut trusted = to("trusted", &url);
    trusted["target"]["tls"] = json!({"ca_file": ca});
    subscribe(&s, trusted);
    let mut by_ip = to("by-ip", &format!("https://127.0.0.1:{}/events", t.port));
    by_ip["target"]["tls"] = json!({"ca_file": ca});
    subscribe(&s, by_ip);
    // Without the CA file the Mozilla roots do not know the certificate: retried, then a dead
    // letter saying why.
    subscribe(&s, to("untrusted", &url));
    let mut patient = to("patient", &url);
    patient["delivery"] = json!({"max_attempts": 100, "backoff_initial_ms": 60000});
    subscribe(&s, patient);
    let bad = dir.path().join("not-a-ca.pem");
    std::fs::write(&bad, "hello").unwrap();
    let mut broken = to("broken", &url);
    broken["target"]["tls"] = json!({"ca_file": bad});
    let (st, msg) = create(&s, broken);
    assert_eq!(st, 400, "{msg}");
    assert!(msg.contains("target.tls.ca_file"), "{msg}");
    publish(&s, "in", json!({"value": {"n": 1}}));
    wait_sub(&s, "trusted", |v| v["counters"]["delivered"] == 1);
    wait_sub(&s, "by-ip", |v| v["counters"]["delivered"] == 1);
    let d = &dead_letters(&s, "untrusted", 1)[0];
    assert_eq!(d["reason"], "tls", "{d}");
    assert_eq!(d["exhausted"], "max_attempts", "{d}");
    assert_eq!(d["attempts"], 2, "{d}");
    let error = d["error"].as_str().unwrap();
    assert!(error.contains("certificate"), "{error}");
    // Still retrying: the subscription shows why.
    let v = wait_sub(&s, "patient", |v| v["retrying"] == 1);
    assert_eq!(v["last_failure"]["reason"], "tls", "{v}");
    assert!(
        v["last_failure"]["error"]
            .as_str()
            .unwrap()
            .contains("certificate"),
        "{v}"
    );
    assert_eq!(t.requests.load(Ordering::SeqCst), 2);
    assert_eq!(s.stop(), 0);
}
