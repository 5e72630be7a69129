//! Authentication through the real binary: `[kafka] listeners` and `[auth]` at start-up (TLS
//! listeners refused for now, a SASL listener needs auth.enabled, the first admin from
//! BUSBAR_ADMIN_PASSWORD), HTTP Basic on every route but the probes, users over HTTP and the CLI,
//! kept across a restart. Kafka SASL with real clients is in tests/clients/run.py.

mod common;

use base64::Engine;
use busbar_testkit::http::request;
use common::{stderr, stdout, Server, BIN};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const ADMIN_PW: &str = "admin-secret-1";

fn env_on() -> Vec<(&'static str, &'static str)> {
    vec![
        ("BUSBAR_AUTH_ENABLED", "true"),
        ("BUSBAR_AUTH_SUPER_USERS", "admin"),
        ("BUSBAR_ADMIN_PASSWORD", ADMIN_PW),
        (
            "BUSBAR_KAFKA_LISTENERS",
            "SASL_PLAINTEXT://127.0.0.1:0,PLAINTEXT://127.0.0.1:0",
        ),
    ]
}

/// `busbar serve` without `--kafka-addr` (which would replace the listeners).
fn serve(data: &Path, env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(data)
        .args(["--http-addr", "127.0.0.1:0"]);
    Server::spawn(cmd, env, data)
}

/// `busbar serve` that must refuse to start: its exit code and stderr.
fn refused(data: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(BIN)
        .envs(env.iter().copied())
        .env_remove("BUSBAR_ADMIN_PASSWORD")
        .args(["serve", "--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = out.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// `method path` with optional credentials: status and JSON body.
fn call(
    s: &Server,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
    body: Option<Value>,
) -> (u16, Value) {
    let header = auth.map(|(u, p)| basic(u, p));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(h) = &header {
        headers.push(("authorization", h.as_str()));
    }
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let r = request(s.addr, method, path, &headers, &bytes).unwrap();
    if r.status == 401 {
        assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"busbar\""));
    }
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

fn cli(s: &Server, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--server", &s.url()])
        .args(args)
        .env_remove("BUSBAR_USER")
        .env_remove("BUSBAR_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn tls_listeners_without_tls_and_sasl_without_auth_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for tls in ["SSL://127.0.0.1:0", "SASL_SSL://127.0.0.1:0"] {
        let env = [
            ("BUSBAR_KAFKA_LISTENERS", tls),
            ("BUSBAR_AUTH_ENABLED", "true"),
        ];
        let (code, err) = refused(dir.path(), &env);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("[tls] has no certificate"), "{err}");
    }
    let sasl = [("BUSBAR_KAFKA_LISTENERS", "SASL_PLAINTEXT://127.0.0.1:0")];
    let (code, err) = refused(dir.path(), &sasl);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("auth.enabled"), "{err}");
    let (code, err) = refused(
        dir.path(),
        &[("BUSBAR_KAFKA_LISTENERS", "NOPE://127.0.0.1:0")],
    );
    assert_eq!(code, 2, "{err}");
}

#[test]
fn auth_on_without_users_needs_the_admin_password() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = refused(dir.path(), &[("BUSBAR_AUTH_ENABLED", "true")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("BUSBAR_ADMIN_PASSWORD"), "{err}");
}

#[test]
fn every_listener_is_served_and_named_in_the_ready_line() {
    let dir = tempfile::tempdir().unwrap();
    // The CLI's credentials in the environment are not settings of `serve`.
    let mut env = env_on();
    env.extend([("BUSBAR_USER", "admin"), ("BUSBAR_PASSWORD", "x")]);
    let s = serve(dir.path(), &env);
    let listed = s.ready_line.split(" listeners ").nth(1).unwrap();
    let listed = listed.split_whitespace().next().unwrap();
    let urls: Vec<&str> = listed.split(',').collect();
    assert_eq!(urls.len(), 2, "{}", s.ready_line);
    assert_eq!(urls[0], format!("SASL_PLAINTEXT://{}", s.kafka));
    let plain: std::net::SocketAddr = urls[1]
        .strip_prefix("PLAINTEXT://")
        .unwrap()
        .parse()
        .unwrap();
    std::net::TcpStream::connect(plain).unwrap();
    std::net::TcpStream::connect(s.kafka).unwrap();
    assert_eq!(s.stop(), 0);
}

#[test]
fn http_basic_is_checked_against_the_users_which_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &env_on());
    let admin = Some(("admin", ADMIN_PW));
    assert_eq!(call(&s, "GET", "/healthz", None, None).0, 200);
    assert_eq!(call(&s, "GET", "/readyz", None, None).0, 200);
    let (status, body) = call(&s, "GET", "/topics", None, None);
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(
        call(&s, "GET", "/topics", Some(("admin", "wrong")), None).0,
        401
    );
    assert_eq!(
        call(&s, "GET", "/topics", Some(("nobody", "x")), None).0,
        401
    );
    assert_eq!(call(&s, "GET", "/topics", admin, None).0, 200);
    let bob = json!({"name": "bob", "password": "bob-pw-1"});
    let (status, created) = call(&s, "POST", "/users", admin, Some(bob));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["mechanisms"][0]["mechanism"], "SCRAM-SHA-256");
    assert_eq!(created["mechanisms"][1]["mechanism"], "SCRAM-SHA-512");
    assert_eq!(
        call(&s, "GET", "/topics", Some(("bob", "bob-pw-1")), None).0,
        200
    );
    let carol = json!({"name": "carol", "password": "x"});
    let (status, body) = call(&s, "POST", "/users", Some(("bob", "bob-pw-1")), Some(carol));
    assert_eq!(status, 403, "only super users manage users: {body}");
    let (status, list) = call(&s, "GET", "/users", admin, None);
    assert_eq!(status, 200);
    let names: Vec<&str> = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "bob"]);
    assert!(!list.to_string().contains("bob-pw-1") && !list.to_string().contains("salt"));
    assert_eq!(s.stop(), 0);
    // Users are durable; the admin password is only read when no user exists.
    let mut env = env_on();
    env.retain(|(k, _)| *k != "BUSBAR_ADMIN_PASSWORD");
    let s = serve(dir.path(), &env);
    assert_eq!(
        call(&s, "GET", "/topics", Some(("bob", "bob-pw-1")), None).0,
        200
    );
    assert_eq!(call(&s, "DELETE", "/users/bob", admin, None).0, 204);
    assert_eq!(
        call(&s, "GET", "/topics", Some(("bob", "bob-pw-1")), None).0,
        401
    );
    assert_eq!(call(&s, "DELETE", "/users/bob", admin, None).0, 404);
    assert_eq!(s.stop(), 0);
}

/// `method path` with a Bearer token: the status.
fn bearer(s: &Server, method: &str, path: &str, token: &str) -> u16 {
    let auth = format!("Bearer {token}");
    let headers = [("authorization", auth.as_str())];
    request(s.addr, method, path, &headers, b"").unwrap().status
}

#[test]
fn api_tokens_expire_are_revoked_and_act_as_their_user() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &env_on());
    let admin = Some(("admin", ADMIN_PW));
    let bob_pw = Some(("bob", "bob-pw-1"));
    let bob = json!({"name": "bob", "password": "bob-pw-1"});
    assert_eq!(call(&s, "POST", "/users", admin, Some(bob)).0, 201);
    let short = json!({"name": "short", "expires_in_s": 1});
    let (status, made) = call(&s, "POST", "/tokens", bob_pw, Some(short));
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["user"], "bob");
    let short = made["token"].as_str().unwrap().to_string();
    assert_eq!(bearer(&s, "GET", "/topics", &short), 200);
    let (status, made) = call(&s, "POST", "/tokens", bob_pw, Some(json!({"name": "ci"})));
    assert_eq!(status, 201, "{made}");
    let ci = made["token"].as_str().unwrap().to_string();
    // A token acts as its user: bob is no super user.
    let (status, _) = call(&s, "GET", "/users", None, None);
    assert_eq!(status, 401);
    assert_eq!(bearer(&s, "GET", "/users", &ci), 403);
    let theirs = json!({"name": "x", "user": "admin"});
    assert_eq!(call(&s, "POST", "/tokens", bob_pw, Some(theirs)).0, 403);
    let too_long = json!({"name": "y", "expires_in_s": 7776001});
    assert_eq!(call(&s, "POST", "/tokens", bob_pw, Some(too_long)).0, 400);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(bearer(&s, "GET", "/topics", &short), 401, "expired");
    let (_, listed) = call(&s, "GET", "/tokens", bob_pw, None);
    let names: Vec<&str> = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ci"]);
    assert!(
        !listed.to_string().contains(&ci),
        "the secret is shown once"
    );
    assert_eq!(bearer(&s, "GET", "/topics", "not-a-token"), 401);
    assert_eq!(s.stop(), 0);
    // Tokens are durable; revoking one, or deleting its user, ends it.
    let mut env = env_on();
    env.retain(|(k, _)| *k != "BUSBAR_ADMIN_PASSWORD");
    let s = serve(dir.path(), &env);
    assert_eq!(bearer(&s, "GET", "/topics", &ci), 200);
    assert_eq!(bearer(&s, "DELETE", "/tokens/ci", &ci), 204);
    assert_eq!(bearer(&s, "GET", "/topics", &ci), 401, "revoked");
    let (_, made) = call(
        &s,
        "POST",
        "/tokens",
        bob_pw,
        Some(json!({"name": "again"})),
    );
    let again = made["token"].as_str().unwrap().to_string();
    // Prefixed: never taken for an option on a command line, findable by secret scanners.
    assert!(again.starts_with("bb_"), "{again}");
    assert_eq!(bearer(&s, "GET", "/topics", &again), 200);
    let out = cli(&s, &["--token", &again, "topic", "list"]);
    assert!(
        out.status.success(),
        "the CLI sends --token: {}",
        stderr(&out)
    );
    let out = cli(&s, &["--token", "nope", "topic", "list"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(call(&s, "DELETE", "/users/bob", admin, None).0, 204);
    assert_eq!(
        bearer(&s, "GET", "/topics", &again),
        401,
        "its user is gone"
    );
    assert_eq!(s.stop(), 0);
}

#[test]
fn the_cli_manages_users_with_its_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &env_on());
    let me = ["--user", "admin", "--password", ADMIN_PW];
    let out = cli(
        &s,
        &[
            &me[..],
            &["user", "create", "carol", "--new-password", "carol-pw"],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("SCRAM-SHA-512"), "{}", stdout(&out));
    let out = cli(&s, &[&me[..], &["user", "list"]].concat());
    assert!(stdout(&out).contains("carol"), "{}", stdout(&out));
    assert_eq!(
        call(&s, "GET", "/topics", Some(("carol", "carol-pw")), None).0,
        200
    );
    let out = cli(&s, &["user", "list"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("unauthorized"), "{}", stderr(&out));
    let out = cli(&s, &["--user", "admin", "user", "list"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--user without --password: {}",
        stderr(&out)
    );
    let out = Command::new(BIN)
        .args(["--server", &s.url(), "user", "delete", "carol"])
        .env("BUSBAR_USER", "admin")
        .env("BUSBAR_PASSWORD", ADMIN_PW)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        call(&s, "GET", "/topics", Some(("carol", "carol-pw")), None).0,
        401
    );
    assert_eq!(s.stop(), 0);
}

const ALICE_PW: &str = "alice-pw-1";

/// A server with authentication on, user `alice` (no ACL yet) and topics `t` and `hidden`.
fn with_alice(data: &Path, extra: &[(&'static str, &'static str)]) -> Server {
    let mut env = env_on();
    env.extend_from_slice(extra);
    let s = serve(data, &env);
    let admin = Some(("admin", ADMIN_PW));
    let alice = json!({"name": "alice", "password": ALICE_PW});
    assert_eq!(call(&s, "POST", "/users", admin, Some(alice)).0, 201);
    for t in ["t", "hidden"] {
        let (st, v) = call(&s, "POST", "/topics", admin, Some(json!({"name": t})));
        assert_eq!(st, 201, "{v}");
    }
    s
}

/// Grants alice `op` on topic `name` (admin).
fn grant_alice(s: &Server, name: &str, op: &str) {
    let acl = json!({"resource_type": "TOPIC", "resource_name": name, "principal": "User:alice",
                     "operation": op, "permission": "ALLOW"});
    let (st, v) = call(s, "POST", "/acls", Some(("admin", ADMIN_PW)), Some(acl));
    assert_eq!(st, 201, "{v}");
}

fn revoke_alice(s: &Server) {
    let path = "/acls?principal=User:alice";
    let (st, v) = call(s, "DELETE", path, Some(("admin", ADMIN_PW)), None);
    assert_eq!(st, 200, "{v}");
}

#[test]
fn api_tokens_are_capped_per_user_and_in_all() {
    let dir = tempfile::tempdir().unwrap();
    let caps = [
        ("BUSBAR_AUTH_TOKENS_PER_USER_MAX", "2"),
        ("BUSBAR_AUTH_TOKENS_MAX", "3"),
    ];
    let s = with_alice(dir.path(), &caps);
    let alice = Some(("alice", ALICE_PW));
    let admin = Some(("admin", ADMIN_PW));
    for n in ["a1", "a2"] {
        let (st, v) = call(&s, "POST", "/tokens", alice, Some(json!({"name": n})));
        assert_eq!(st, 201, "{v}");
    }
    let (st, v) = call(&s, "POST", "/tokens", alice, Some(json!({"name": "a3"})));
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["error"]["code"], "limit_reached", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("auth.tokens_per_user_max"), "{msg}");
    let (_, listed) = call(&s, "GET", "/tokens", alice, None);
    assert_eq!(
        listed["tokens"].as_array().unwrap().len(),
        2,
        "nothing stored"
    );
    // Another user still may, up to the total.
    let (st, v) = call(&s, "POST", "/tokens", admin, Some(json!({"name": "b1"})));
    assert_eq!(st, 201, "{v}");
    let (st, v) = call(&s, "POST", "/tokens", admin, Some(json!({"name": "b2"})));
    assert_eq!(st, 409, "{v}");
    assert!(v.to_string().contains("auth.tokens_max"), "{v}");
    // Revoking one makes room again.
    assert_eq!(call(&s, "DELETE", "/tokens/a1", alice, None).0, 204);
    let (st, v) = call(&s, "POST", "/tokens", alice, Some(json!({"name": "a3"})));
    assert_eq!(st, 201, "{v}");
    assert_eq!(s.stop(), 0);
}

#[test]
fn head_needs_what_get_needs() {
    let dir = tempfile::tempdir().unwrap();
    let s = with_alice(dir.path(), &[]);
    let alice = Some(("alice", ALICE_PW));
    assert_eq!(call(&s, "HEAD", "/healthz", None, None).0, 200);
    assert_eq!(call(&s, "HEAD", "/topics/t", None, None).0, 401);
    assert_eq!(call(&s, "HEAD", "/topics/t", alice, None).0, 403);
    grant_alice(&s, "t", "DESCRIBE");
    assert_eq!(call(&s, "HEAD", "/topics/t", alice, None).0, 200);
    assert_eq!(call(&s, "GET", "/topics/t", alice, None).0, 200);
    assert_eq!(call(&s, "HEAD", "/topics", alice, None).0, 200);
    let admin = Some(("admin", ADMIN_PW));
    assert_eq!(call(&s, "HEAD", "/users", admin, None).0, 200);
    assert_eq!(call(&s, "HEAD", "/users", alice, None).0, 403);
    assert_eq!(s.stop(), 0);
}

#[test]
fn adding_partitions_needs_alter_and_configs_need_alter_configs() {
    let dir = tempfile::tempdir().unwrap();
    let s = with_alice(dir.path(), &[]);
    let alice = Some(("alice", ALICE_PW));
    let grow = |n: u32| Some(json!({"partitions": n}));
    let configs = Some(json!({"configs": {"segment.ms": "3600000"}}));
    let both = Some(json!({"partitions": 3, "configs": {"segment.ms": "7200000"}}));
    grant_alice(&s, "t", "ALTER_CONFIGS");
    let (st, v) = call(&s, "PATCH", "/topics/t", alice, grow(2));
    assert_eq!(st, 403, "ALTER_CONFIGS does not add partitions: {v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("ALTER"),
        "{v}"
    );
    assert_eq!(
        call(&s, "PATCH", "/topics/t", alice, configs.clone()).0,
        200
    );
    assert_eq!(call(&s, "PATCH", "/topics/t", alice, both.clone()).0, 403);
    revoke_alice(&s);
    grant_alice(&s, "t", "ALTER");
    assert_eq!(call(&s, "PATCH", "/topics/t", alice, configs).0, 403);
    assert_eq!(call(&s, "PATCH", "/topics/t", alice, both.clone()).0, 403);
    let (st, v) = call(&s, "PATCH", "/topics/t", alice, grow(2));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["partitions"].as_array().unwrap().len(), 2, "{v}");
    grant_alice(&s, "t", "ALTER_CONFIGS");
    let (st, v) = call(&s, "PATCH", "/topics/t", alice, both);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["partitions"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(s.stop(), 0);
}

#[test]
fn a_group_description_shows_only_topics_the_caller_may_describe() {
    let dir = tempfile::tempdir().unwrap();
    let s = with_alice(dir.path(), &[]);
    let admin = Some(("admin", ADMIN_PW));
    let alice = Some(("alice", ALICE_PW));
    for t in ["t", "hidden"] {
        let reset = json!({"topic": t, "to": "earliest"});
        let (st, v) = call(&s, "POST", "/groups/g/offsets/reset", admin, Some(reset));
        assert_eq!(st, 200, "{v}");
    }
    let acl = json!({"resource_type": "GROUP", "resource_name": "g", "principal": "User:alice",
                     "operation": "DESCRIBE", "permission": "ALLOW"});
    assert_eq!(call(&s, "POST", "/acls", admin, Some(acl)).0, 201);
    grant_alice(&s, "t", "DESCRIBE");
    let topics = |v: &Value| -> Vec<String> {
        let mut t: Vec<String> = (v["offsets"].as_array().unwrap().iter())
            .map(|o| o["topic"].as_str().unwrap().to_string())
            .collect();
        t.dedup();
        t
    };
    let (st, all) = call(&s, "GET", "/groups/g", admin, None);
    assert_eq!(st, 200, "{all}");
    assert_eq!(topics(&all), ["hidden", "t"], "{all}");
    let (st, mine) = call(&s, "GET", "/groups/g", alice, None);
    assert_eq!(st, 200, "{mine}");
    assert_eq!(topics(&mine), ["t"], "{mine}");
    assert!(!mine.to_string().contains("hidden"), "{mine}");
    assert_eq!(s.stop(), 0);
}

#[test]
fn acl_routes_answer_security_disabled_while_auth_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let acl = json!({"resource_type": "TOPIC", "resource_name": "t", "principal": "User:alice",
                     "operation": "READ", "permission": "ALLOW"});
    for (method, path, body) in [
        ("POST", "/acls", Some(acl)),
        ("GET", "/acls", None),
        ("DELETE", "/acls?resource_type=ANY", None),
    ] {
        let (st, v) = call(&s, method, path, None, body);
        assert_eq!(st, 409, "{method} {path}: {v}");
        assert_eq!(v["error"]["code"], "security_disabled", "{v}");
        assert!(v.to_string().contains("auth.enabled"), "{v}");
    }
    assert_eq!(s.stop(), 0);
}

#[test]
fn a_deleted_users_tokens_stay_dead_across_a_restart_and_a_new_user_of_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let s = with_alice(dir.path(), &[]);
    let admin = Some(("admin", ADMIN_PW));
    let alice = Some(("alice", ALICE_PW));
    let (_, made) = call(&s, "POST", "/tokens", alice, Some(json!({"name": "ci"})));
    let secret = made["token"].as_str().unwrap().to_string();
    assert_eq!(bearer(&s, "GET", "/topics", &secret), 200);
    assert_eq!(call(&s, "DELETE", "/users/alice", admin, None).0, 204);
    assert_eq!(bearer(&s, "GET", "/topics", &secret), 401);
    s.kill9();
    let mut env = env_on();
    env.retain(|(k, _)| *k != "BUSBAR_ADMIN_PASSWORD");
    let s = serve(dir.path(), &env);
    assert_eq!(
        bearer(&s, "GET", "/topics", &secret),
        401,
        "after a restart"
    );
    let again = json!({"name": "alice", "password": "another-pw"});
    assert_eq!(call(&s, "POST", "/users", admin, Some(again)).0, 201);
    assert_eq!(bearer(&s, "GET", "/topics", &secret), 401, "a new alice");
    let (_, listed) = call(&s, "GET", "/tokens", Some(("alice", "another-pw")), None);
    assert_eq!(listed["tokens"], json!([]), "{listed}");
    assert_eq!(s.stop(), 0);
}

#[test]
fn users_are_capped_by_auth_users_max() {
    let dir = tempfile::tempdir().unwrap();
    // admin and alice exist: a third user is one too many.
    let s = with_alice(dir.path(), &[("BUSBAR_AUTH_USERS_MAX", "2")]);
    let admin = Some(("admin", ADMIN_PW));
    let body = json!({"name": "carol", "password": "carol-password"});
    let (st, v) = call(&s, "POST", "/users", admin, Some(body));
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["error"]["code"], "limit_reached", "{v}");
    assert!(v.to_string().contains("auth.users_max"), "{v}");
    let (_, listed) = call(&s, "GET", "/users", admin, None);
    assert!(
        !listed.to_string().contains("carol"),
        "nothing stored: {listed}"
    );
    // Changing an existing user's password is no new user.
    let body = json!({"name": "alice", "password": "another-password"});
    let (st, v) = call(&s, "POST", "/users", admin, Some(body));
    assert!(st == 200 || st == 201, "{st} {v}");
    assert_eq!(call(&s, "DELETE", "/users/alice", admin, None).0, 204);
    let body = json!({"name": "carol", "password": "carol-password"});
    assert_eq!(call(&s, "POST", "/users", admin, Some(body)).0, 201);
}

/// The console's assets are public (they hold no data); its API calls need credentials like
/// any other, and get their 401 without `WWW-Authenticate` (the page asks, not the browser).
#[test]
fn the_console_is_public_and_its_api_calls_are_not_challenged_by_the_browser() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &env_on());
    for path in ["/ui/", "/ui/app.js", "/ui/app.css"] {
        let r = request(s.addr, "GET", path, &[], b"").unwrap();
        assert_eq!(r.status, 200, "{path}");
    }
    let r = request(s.addr, "GET", "/", &[], b"").unwrap();
    assert_eq!((r.status, r.header("location")), (303, Some("/ui/")));
    let console = [("x-busbar-console", "1")];
    let r = request(s.addr, "GET", "/topics", &console, b"").unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        None,
        "the page signs in, not the browser"
    );
    let r = request(s.addr, "GET", "/topics", &[], b"").unwrap();
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"busbar\""));
    let auth = basic("admin", ADMIN_PW);
    let r = request(
        s.addr,
        "GET",
        "/topics",
        &[("x-busbar-console", "1"), ("authorization", auth.as_str())],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(s.stop(), 0);
}
