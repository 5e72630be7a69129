//! The audit log through the real binary (issue 16): failed HTTP logins and administrative HTTP
//! requests become JSON lines in `<data-dir>/audit.log`, the file rotates at `audit.max_bytes`
//! under 10,000 failed logins while the server stays responsive, ACL, token, quota and
//! subscription changes write their success lines, `audit.file = "stdout"` writes to standard
//! output, and `auth.metrics_public`. Kafka's side (SASL failures, admin APIs, CreateAcls,
//! DeleteAcls, AlterClientQuotas) is in tests/clients/audit.py.

mod common;

use base64::Engine;
use busbar_testkit::http::request;
use common::{Server, BIN};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const ADMIN_PW: &str = "admin-secret-1";

fn env_on() -> Vec<(&'static str, &'static str)> {
    vec![
        ("BUSBAR_AUTH_ENABLED", "true"),
        ("BUSBAR_AUTH_SUPER_USERS", "admin"),
        ("BUSBAR_ADMIN_PASSWORD", ADMIN_PW),
    ]
}

fn serve(data: &Path, extra: &[(&'static str, &'static str)]) -> Server {
    let mut env = env_on();
    env.extend_from_slice(extra);
    Server::start(data, &[], &env)
}

fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// `method path` with an `Authorization` header (or none): the status.
fn call(s: &Server, method: &str, path: &str, auth: Option<&str>, body: &str) -> u16 {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = auth {
        headers.push(("authorization", a));
    }
    request(s.addr, method, path, &headers, body.as_bytes())
        .unwrap()
        .status
}

fn admin(s: &Server, method: &str, path: &str, body: &str) -> u16 {
    call(s, method, path, Some(&basic("admin", ADMIN_PW)), body)
}

/// The lines of one audit file (none when it does not exist).
fn lines_of(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// Waits until `audit.log` has a line matching `f` (the writer runs behind the answers).
fn wait_line(data: &Path, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = lines_of(&data.join("audit.log"));
        if let Some(l) = lines.iter().find(|l| f(l)) {
            return l.clone();
        }
        assert!(Instant::now() < deadline, "no such line in {lines:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn failed_http_logins_and_admin_requests_are_audit_lines() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let data = dir.path();

    assert_eq!(
        call(&s, "GET", "/topics", Some(&basic("mallory", "guess-1")), ""),
        401
    );
    let l = wait_line(data, |l| l["principal"] == "User:mallory");
    assert_eq!(l["operation"], "authenticate (Basic)");
    assert_eq!(l["resource"], "GET /topics");
    assert_eq!(l["outcome"], "failed");
    assert_eq!(l["listener"], "http");
    assert!(l["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{l}");
    assert!(l["time"].as_str().unwrap().ends_with('Z'), "{l}");
    let raw = std::fs::read_to_string(data.join("audit.log")).unwrap();
    assert!(
        !raw.contains("guess-1"),
        "a password is never written: {raw}"
    );

    assert_eq!(
        call(&s, "GET", "/topics", Some("Bearer not-a-token"), ""),
        401
    );
    let l = wait_line(data, |l| l["operation"] == "authenticate (Bearer)");
    assert_eq!(
        (l["principal"].as_str(), l["outcome"].as_str()),
        (Some(""), Some("failed"))
    );
    assert!(!std::fs::read_to_string(data.join("audit.log"))
        .unwrap()
        .contains("not-a-token"));

    let body = r#"{"name":"orders","partitions":1}"#;
    assert_eq!(admin(&s, "POST", "/topics", body), 201);
    assert_eq!(admin(&s, "POST", "/topics", body), 409);
    assert_eq!(
        admin(
            &s,
            "PATCH",
            "/topics/orders",
            r#"{"configs":{"retention.ms":"1000"}}"#
        ),
        200
    );
    let published = admin(&s, "POST", "/topics/orders/events", r#"[{"value":"x"}]"#);
    assert!(matches!(published, 200 | 201), "{published}");
    assert_eq!(admin(&s, "GET", "/topics/orders", ""), 200);
    assert_eq!(admin(&s, "DELETE", "/topics/orders", ""), 204);
    let l = wait_line(data, |l| l["operation"] == "DELETE /topics/{topic}");
    assert_eq!(l["resource"], "/topics/orders");
    assert_eq!(l["principal"], "User:admin");
    assert_eq!(l["outcome"], "204");
    let admin_lines: Vec<(String, String)> = lines_of(&data.join("audit.log"))
        .iter()
        .filter(|l| l["principal"] == "User:admin")
        .map(|l| {
            (
                l["operation"].as_str().unwrap().into(),
                l["outcome"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = [
        ("POST /topics", "201"),
        ("POST /topics", "409"),
        ("PATCH /topics/{topic}", "200"),
        ("DELETE /topics/{topic}", "204"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(o, c)| (o.to_string(), c.to_string()))
        .collect();
    assert_eq!(admin_lines, want, "reads and publishing are not audited");

    // An offset reset's preview is audited as one, never as the reset.
    assert_eq!(admin(&s, "POST", "/topics", r#"{"name":"t2"}"#), 201);
    let reset = r#"{"topic":"t2","to":"earliest","dry_run":true}"#;
    let status = admin(&s, "POST", "/groups/g/offsets/reset", reset);
    assert_eq!(status, 200);
    let l = wait_line(data, |l| {
        l["operation"] == "POST /groups/{group}/offsets/reset (dry run)"
    });
    assert_eq!(l["outcome"], status.to_string());
    // A refused preview is still a preview.
    let reset = r#"{"topic":"nope","to":"earliest","dry_run":true}"#;
    assert_eq!(admin(&s, "POST", "/groups/g/offsets/reset", reset), 404);
    let l = wait_line(data, |l| {
        l["operation"] == "POST /groups/{group}/offsets/reset (dry run)" && l["outcome"] == "404"
    });
    assert_eq!(l["resource"], "/groups/g/offsets/reset");
    let reset = r#"{"topic":"t2","to":"earliest"}"#;
    let status = admin(&s, "POST", "/groups/g/offsets/reset", reset);
    let l = wait_line(data, |l| {
        l["operation"] == "POST /groups/{group}/offsets/reset"
    });
    assert_eq!(l["outcome"], status.to_string());

    // Users and tokens are administrative too.
    let user = r#"{"name":"alice","password":"alice-secret-1"}"#;
    assert_eq!(admin(&s, "POST", "/users", user), 201);
    let l = wait_line(data, |l| l["operation"] == "POST /users");
    assert_eq!(l["outcome"], "201");
    assert!(!std::fs::read_to_string(data.join("audit.log"))
        .unwrap()
        .contains("alice-secret-1"));
}

#[test]
fn ten_thousand_failed_logins_rotate_the_audit_log_and_the_server_stays_responsive() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(
        dir.path(),
        &[
            ("BUSBAR_AUDIT_MAX_BYTES", "100000"),
            ("BUSBAR_AUDIT_FILES_KEPT", "3"),
            ("BUSBAR_AUTH_BACKOFF_ENTRIES_MAX", "20000"),
        ],
    );
    let started = Instant::now();
    let workers = 64;
    let per = 10_000 / workers + 1;
    let probe_worst = std::thread::scope(|scope| {
        for w in 0..workers {
            let s = &s;
            scope.spawn(move || {
                for i in 0..per {
                    let who = basic(&format!("attacker-{w}-{i}"), "wrong");
                    assert_eq!(call(s, "GET", "/topics", Some(&who), ""), 401);
                }
            });
        }
        // Meanwhile the server answers others at once.
        let mut worst = Duration::ZERO;
        let probe = scope.spawn(|| {
            let mut worst = Duration::ZERO;
            for _ in 0..20 {
                let t = Instant::now();
                assert_eq!(admin(&s, "GET", "/topics", ""), 200);
                worst = worst.max(t.elapsed());
                std::thread::sleep(Duration::from_millis(200));
            }
            worst
        });
        worst = worst.max(probe.join().unwrap());
        worst
    });
    eprintln!("10,000+ failed logins in {:?}", started.elapsed());
    assert!(
        probe_worst < Duration::from_secs(2),
        "an answer took {probe_worst:?}"
    );
    let data = dir.path();
    let rotated = |k: u32| data.join(format!("audit.log.{k}"));
    // The writer is behind at most its queue: wait for the newest failures to land.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !rotated(3).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in [data.join("audit.log"), rotated(1), rotated(2), rotated(3)] {
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0 && len <= 100_000, "{p:?}: {len} bytes");
        for l in lines_of(&p) {
            assert!(l["operation"].as_str().is_some(), "{l}");
        }
    }
    assert!(
        !rotated(4).exists(),
        "only audit.files_kept rotated files stay"
    );
    let (code, metrics) = {
        let r = request(s.addr, "GET", "/metrics", &[], b"").unwrap();
        (r.status, r.text())
    };
    assert_eq!(code, 200);
    let rotations: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("busbar_audit_rotations_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(rotations >= 10, "{rotations} rotations");
}

#[test]
fn metrics_are_public_unless_auth_metrics_public_is_false() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    assert_eq!(call(&s, "GET", "/metrics", None, ""), 200);
    assert_eq!(call(&s, "GET", "/topics", None, ""), 401);
    drop(s);
    let s = serve(dir.path(), &[("BUSBAR_AUTH_METRICS_PUBLIC", "false")]);
    assert_eq!(call(&s, "GET", "/metrics", None, ""), 401);
    assert_eq!(admin(&s, "GET", "/metrics", ""), 200);
    assert_eq!(call(&s, "GET", "/healthz", None, ""), 200);
}

#[test]
fn audit_settings_are_checked_at_start_and_the_file_may_be_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--kafka-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("BUSBAR_AUDIT_MAX_BYTES", "10")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("audit.max_bytes = 10 is outside"), "{err}");

    let elsewhere = dir.path().join("logs/security/audit.jsonl");
    let file = elsewhere.to_str().unwrap().to_string();
    let file: &'static str = Box::leak(file.into_boxed_str());
    let s = serve(&dir.path().join("data"), &[("BUSBAR_AUDIT_FILE", file)]);
    assert_eq!(
        call(&s, "GET", "/topics", Some(&basic("nobody", "x")), ""),
        401
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while lines_of(&elsewhere).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(lines_of(&elsewhere)[0]["principal"], "User:nobody");
    assert!(!dir.path().join("data/audit.log").exists());
}

/// A4: the success lines of ACL, token, quota and subscription changes over HTTP, each naming
/// the route, the path, the principal and the status (Kafka's CreateAcls, DeleteAcls and
/// AlterClientQuotas: tests/clients/audit.py).
#[test]
fn acl_token_quota_and_subscription_changes_are_audit_lines() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let acl = r#"{"resource_type":"TOPIC","resource_name":"orders","principal":"User:alice","operation":"READ","permission":"ALLOW"}"#;
    let quota = r#"{"entity":{"user":"alice"},"values":{"producer_byte_rate":1048576}}"#;
    let sub = r#"{"name":"fwd","sources":["src"],"target":{"topic":"dst"}}"#;
    let steps = [
        ("POST", "/topics", r#"{"name":"src","partitions":1}"#, 201),
        ("POST", "/topics", r#"{"name":"dst","partitions":1}"#, 201),
        ("POST", "/acls", acl, 201),
        ("DELETE", "/acls?principal=User:alice", "", 200),
        ("POST", "/tokens", r#"{"name":"ci","expires_in_s":60}"#, 201),
        ("DELETE", "/tokens/ci", "", 204),
        ("PUT", "/quotas", quota, 200),
        ("DELETE", "/quotas", r#"{"entity":{"user":"alice"}}"#, 204),
        ("POST", "/subscriptions", sub, 201),
        ("DELETE", "/subscriptions/fwd", "", 204),
    ];
    for (method, path, body, status) in steps {
        assert_eq!(admin(&s, method, path, body), status, "{method} {path}");
    }
    let want = [
        ("POST /acls", "/acls", "201"),
        ("DELETE /acls", "/acls", "200"),
        ("POST /tokens", "/tokens", "201"),
        ("DELETE /tokens/{name}", "/tokens/ci", "204"),
        ("PUT /quotas", "/quotas", "200"),
        ("DELETE /quotas", "/quotas", "204"),
        ("POST /subscriptions", "/subscriptions", "201"),
        ("DELETE /subscriptions/{name}", "/subscriptions/fwd", "204"),
    ];
    wait_line(dir.path(), |l| {
        l["operation"] == "DELETE /subscriptions/{name}"
    });
    let got: Vec<(String, String, String)> = lines_of(&dir.path().join("audit.log"))
        .iter()
        .filter(|l| l["principal"] == "User:admin" && l["resource"] != "/topics")
        .map(|l| {
            let field = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            (field("operation"), field("resource"), field("outcome"))
        })
        .collect();
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(o, r, c)| (o.to_string(), r.to_string(), c.to_string()))
        .collect();
    assert_eq!(got, want);
}

/// A5: `audit.file = "stdout"` writes the lines to standard output, and no file.
#[test]
fn audit_file_stdout_writes_the_lines_to_standard_output() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--kafka-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .envs(env_on())
        .env("BUSBAR_AUDIT_FILE", "stdout")
        .env_remove("BUSBAR_SERVER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut ready = String::new();
    while !ready.contains(" ready in ") {
        ready.clear();
        assert!(stderr.read_line(&mut ready).unwrap() > 0, "exited early");
    }
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let addr: std::net::SocketAddr = ready
        .split("http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let status = request(
        addr,
        "GET",
        "/topics",
        &[("authorization", &basic("nobody", "x"))],
        b"",
    )
    .unwrap()
    .status;
    assert_eq!(status, 401);
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("an audit line on stdout");
    let _ = child.kill();
    let _ = child.wait();
    let l: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    assert_eq!(l["principal"], "User:nobody", "{l}");
    assert_eq!(l["outcome"], "failed", "{l}");
    assert!(
        !dir.path().join("audit.log").exists(),
        "no file besides stdout"
    );
    assert!(
        !dir.path().join("stdout").exists(),
        "not a file named stdout"
    );
}
