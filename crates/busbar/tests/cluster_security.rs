//! Cluster mode (issue 20): users, API tokens, ACLs and quotas are the cluster's, kept in
//! PostgreSQL, not each broker's: what one broker writes holds on every broker (a user made on
//! one logs in on another; an ACL granted on one decides on another; a token made on one works on
//! another and, revoked on a third, stops working everywhere; a deleted user or a changed password
//! stops working on a broker that had the password cached); a broker started on an empty data
//! directory has them all; with the database down a change is refused and nothing changes.
//! Through the real binary and real HTTP, three brokers on a real PostgreSQL.

mod common;

use base64::Engine;
use busbar_testkit::http::request;
use busbar_testkit::postgres::TestPostgres;
use common::cluster::Node;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const ADMIN: (&str, &str) = ("admin", "admin-secret-1");
const ALICE: (&str, &str) = ("alice", "alice-secret-1");

/// How the caller authenticates.
#[derive(Clone, Copy)]
enum Who<'a> {
    Password((&'a str, &'a str)),
    Token(&'a str),
}

fn call(addr: SocketAddr, who: Who, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let auth = match who {
        Who::Password((user, password)) => {
            let b64 = base64::engine::general_purpose::STANDARD;
            format!("Basic {}", b64.encode(format!("{user}:{password}")))
        }
        Who::Token(secret) => format!("Bearer {secret}"),
    };
    let headers = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
    ];
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let r = request(addr, method, path, &headers, &bytes).unwrap();
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

fn admin(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call(addr, Who::Password(ADMIN), method, path, body)
}

/// Waits until `f` holds: another broker's write reaches a broker through the database's
/// notification (milliseconds), or its next poll (5 s) when a notification was lost.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn env() -> Vec<(&'static str, String)> {
    vec![
        ("BUSBAR_AUTH_ENABLED", "true".into()),
        ("BUSBAR_AUTH_SUPER_USERS", "admin".into()),
        ("BUSBAR_ADMIN_PASSWORD", ADMIN.1.into()),
    ]
}

fn alice_acl() -> Value {
    json!([{"resource_type": "TOPIC", "resource_name": "t", "principal": "User:alice",
            "operation": "DESCRIBE", "permission": "ALLOW"}])
}

#[test]
fn users_tokens_acls_and_quotas_are_the_clusters() {
    let pg = TestPostgres::start();
    let url = pg.create_db("sec");
    let mut nodes: Vec<Node> = (1..=3).map(|i| Node::with_env(i, &url, &env())).collect();
    let at: Vec<SocketAddr> = nodes.iter().map(|n| n.http).collect();
    // The admin the first broker made at its first start is everyone's.
    for a in &at {
        assert_eq!(admin(*a, "GET", "/users", None).0, 200);
    }
    // A user made on broker 1 logs in on broker 2; a wrong password does not.
    let alice = json!({"name": ALICE.0, "password": ALICE.1});
    let (st, v) = admin(at[0], "POST", "/users", Some(alice));
    assert_eq!(st, 201, "{v}");
    eventually("alice logs in on broker 2", || {
        call(at[1], Who::Password(ALICE), "GET", "/topics", None).0 == 200
    });
    let wrong = Who::Password((ALICE.0, "not-hers"));
    assert_eq!(call(at[1], wrong, "GET", "/topics", None).0, 401);
    // An ACL granted on broker 2 decides on broker 3.
    let (st, v) = admin(at[0], "POST", "/topics", Some(json!({"name": "t"})));
    assert_eq!(st, 201, "{v}");
    let describe = |a: SocketAddr, who: Who| call(a, who, "GET", "/topics/t", None).0;
    eventually("t is on broker 3", || {
        admin(at[2], "GET", "/topics/t", None).0 == 200
    });
    assert_eq!(describe(at[2], Who::Password(ALICE)), 403);
    let (st, v) = admin(at[1], "POST", "/acls", Some(alice_acl()));
    assert_eq!(st, 201, "{v}");
    eventually("the ACL decides on broker 3", || {
        describe(at[2], Who::Password(ALICE)) == 200
    });
    let (_, listed) = admin(at[0], "GET", "/acls", None);
    assert_eq!(listed["acls"].as_array().map(Vec::len), Some(1), "{listed}");
    // A token made on broker 3 works on broker 1; revoked on broker 2, it stops working there.
    let (st, made) = call(
        at[2],
        Who::Password(ALICE),
        "POST",
        "/tokens",
        Some(json!({"name": "ci"})),
    );
    assert_eq!(st, 201, "{made}");
    let secret = made["token"].as_str().unwrap().to_string();
    eventually("the token works on broker 1", || {
        describe(at[0], Who::Token(&secret)) == 200
    });
    let (st, v) = call(at[1], Who::Password(ALICE), "DELETE", "/tokens/ci", None);
    assert_eq!(st, 204, "{v}");
    eventually("the revoked token fails on broker 1", || {
        describe(at[0], Who::Token(&secret)) == 401
    });
    // A quota set on broker 1 is listed on broker 3.
    let quota = json!({"entity": {"user": "alice"}, "values": {"producer_byte_rate": 1048576}});
    let (st, v) = admin(at[0], "PUT", "/quotas", Some(quota));
    assert_eq!(st, 200, "{v}");
    eventually("the quota is on broker 3", || {
        admin(at[2], "GET", "/quotas", None).1["quotas"]
            .as_array()
            .is_some_and(|q| q.len() == 1)
    });
    // A password changed on broker 2: the old one (checked, so cached, on broker 1 above) fails
    // there; a user deleted on broker 3 fails there too.
    assert_eq!(describe(at[0], Who::Password(ALICE)), 200);
    let changed = json!({"name": ALICE.0, "password": "alice-secret-2"});
    let (st, v) = admin(at[1], "POST", "/users", Some(changed));
    assert!(st == 200 || st == 201, "{st} {v}");
    eventually("the old password fails on broker 1", || {
        describe(at[0], Who::Password(ALICE)) == 401
    });
    let alice2 = Who::Password((ALICE.0, "alice-secret-2"));
    assert_eq!(describe(at[0], alice2), 200);
    let (st, v) = admin(at[2], "DELETE", "/users/alice", None);
    assert_eq!(st, 204, "{v}");
    eventually("the deleted user fails on broker 1", || {
        describe(at[0], alice2) == 401
    });
    // A broker started again on an empty data directory has them all.
    nodes[1].kill9();
    nodes[1].data = tempfile::tempdir().unwrap();
    nodes[1].start();
    let (st, users) = admin(at[1], "GET", "/users", None);
    assert_eq!(st, 200, "{users}");
    assert_eq!(users["users"].as_array().map(Vec::len), Some(1), "{users}");
    let (_, listed) = admin(at[1], "GET", "/acls", None);
    assert_eq!(listed["acls"].as_array().map(Vec::len), Some(1), "{listed}");
    let (_, quotas) = admin(at[1], "GET", "/quotas", None);
    assert_eq!(
        quotas["quotas"].as_array().map(Vec::len),
        Some(1),
        "{quotas}"
    );
    // The database down: a change is refused with a server error and changes nothing anywhere
    // (the cached password of the admin still logs in); back: it is made.
    pg.stop();
    let bob = json!({"name": "bob", "password": "bob-secret-1"});
    let (st, v) = admin(at[0], "POST", "/users", Some(bob.clone()));
    assert!(st >= 500, "{st} {v}");
    pg.restart();
    for a in &at {
        let (_, users) = admin(*a, "GET", "/users", None);
        assert!(!users.to_string().contains("bob"), "{users}");
    }
    eventually("a change is made again", || {
        admin(at[0], "POST", "/users", Some(bob.clone())).0 == 201
    });
    eventually("bob logs in on broker 3", || {
        call(
            at[2],
            Who::Password(("bob", "bob-secret-1")),
            "GET",
            "/topics",
            None,
        )
        .0 == 200
    });
}

/// TLS to PostgreSQL: a database that takes TLS connections only (plain TCP is rejected by its
/// `pg_hba.conf`), with a certificate from `busbar tls dev-certs`. A broker with
/// `sslmode=require` and the CA joins it and serves (a topic made, an event published and read
/// back); the same URL without the CA file (the Mozilla roots) is refused, and so is a plain
/// connection; a CA file that is not PEM, or one without `sslmode=require`, is refused naming
/// the setting before anything starts.
#[test]
fn a_broker_reaches_postgresql_over_tls_with_its_ca() {
    let pki = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["tls", "dev-certs"])
        .arg(pki.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let read = |f: &str| std::fs::read_to_string(pki.path().join(f)).unwrap();
    let pg = TestPostgres::start_tls(&read("server.pem"), &read("server.key"));
    let url = pg.create_db("tls");
    assert!(url.ends_with("?sslmode=require"), "{url}");
    let ca = pki.path().join("ca.pem").display().to_string();
    let node = Node::with_env(1, &url, &[("BUSBAR_CLUSTER_POSTGRES_CA_FILE", ca.clone())]);
    let plain = |method: &str, path: &str, body: Option<Value>| {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let ct = [("content-type", "application/json")];
        let r = request(node.http, method, path, &ct, &bytes).unwrap();
        (
            r.status,
            serde_json::from_slice::<Value>(&r.body).unwrap_or(Value::Null),
        )
    };
    let (st, v) = plain(
        "POST",
        "/topics",
        Some(json!({"name": "t", "partitions": 1})),
    );
    assert_eq!(st, 201, "{v}");
    let (st, v) = plain(
        "POST",
        "/topics/t/events",
        Some(json!([{"value": {"n": 1}}])),
    );
    assert_eq!(st, 200, "{v}");
    let (st, v) = plain("GET", "/topics/t/partitions/0/events?offset=0", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["events"][0]["value"]["n"], 1, "{v}");
    // Without the CA the server's certificate is not trusted: refused, saying why.
    let d = tempfile::tempdir().unwrap();
    let (code, err) =
        common::refused_start_with(d.path(), &[("BUSBAR_CLUSTER_POSTGRES_URL", &url)]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("certificate"), "{err}");
    // Without TLS the server refuses the connection (so the broker above used TLS).
    let no_tls = url.replace("?sslmode=require", "");
    let (code, err) =
        common::refused_start_with(d.path(), &[("BUSBAR_CLUSTER_POSTGRES_URL", &no_tls)]);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("no encryption") || err.contains("pg_hba"),
        "{err}"
    );
    // Bad settings, refused before anything starts.
    let not_pem = pki.path().join("server.key").display().to_string();
    for (env, says) in [
        (
            vec![
                ("BUSBAR_CLUSTER_POSTGRES_URL", url.as_str()),
                ("BUSBAR_CLUSTER_POSTGRES_CA_FILE", not_pem.as_str()),
            ],
            "no PEM certificate",
        ),
        (
            vec![
                ("BUSBAR_CLUSTER_POSTGRES_URL", no_tls.as_str()),
                ("BUSBAR_CLUSTER_POSTGRES_CA_FILE", ca.as_str()),
            ],
            "sslmode=require",
        ),
        (
            vec![("BUSBAR_CLUSTER_POSTGRES_CA_FILE", ca.as_str())],
            "needs cluster.postgres_url",
        ),
    ] {
        let (code, err) = common::refused_start_with(d.path(), &env);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("cluster.postgres_ca_file") && err.contains(says),
            "{says}: {err}"
        );
    }
}

/// TLS client certificates to PostgreSQL: a database whose `pg_hba.conf` asks for one (`cert`:
/// signed by the CA, its common name the user). A broker with `postgres_cert_file` and
/// `postgres_key_file` (`busbar tls dev-certs --client busbar`) joins it and serves; without
/// them, or with a certificate of another name, the database refuses it. One of the two alone,
/// a certificate file without a certificate, a key file without a key, and a certificate
/// without `sslmode=require` are refused naming the setting before anything starts.
#[test]
fn a_broker_presents_its_client_certificate_to_postgresql() {
    let pki = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::BIN)
        .args([
            "tls",
            "dev-certs",
            "--client",
            "busbar",
            "--client",
            "other",
        ])
        .arg(pki.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let read = |f: &str| std::fs::read_to_string(pki.path().join(f)).unwrap();
    let file = |f: &str| pki.path().join(f).display().to_string();
    let pg = TestPostgres::start_tls_client_cert(
        &read("server.pem"),
        &read("server.key"),
        (&read("ca.pem"), "certdb"),
    );
    let url = pg.create_db("certdb");
    let ca = file("ca.pem");
    let with = |cert: &str, key: &str| {
        vec![
            ("BUSBAR_CLUSTER_POSTGRES_CA_FILE", ca.clone()),
            ("BUSBAR_CLUSTER_POSTGRES_CERT_FILE", file(cert)),
            ("BUSBAR_CLUSTER_POSTGRES_KEY_FILE", file(key)),
        ]
    };
    let node = Node::with_env(1, &url, &with("busbar.pem", "busbar.key"));
    let body = json!({"name": "t", "partitions": 1}).to_string();
    let ct = [("content-type", "application/json")];
    let r = request(node.http, "POST", "/topics", &ct, body.as_bytes()).unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    // The database refuses a broker without a certificate, and one with another name's.
    let d = tempfile::tempdir().unwrap();
    let (code, err) = common::refused_start_with(
        d.path(),
        &[
            ("BUSBAR_CLUSTER_POSTGRES_URL", &url),
            ("BUSBAR_CLUSTER_POSTGRES_CA_FILE", &ca),
        ],
    );
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("certificate"), "{err}");
    let mut other: Vec<(&str, String)> = vec![("BUSBAR_CLUSTER_POSTGRES_URL", url.clone())];
    other.extend(with("other.pem", "other.key"));
    let other: Vec<(&str, &str)> = other.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, err) = common::refused_start_with(d.path(), &other);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("certificate authentication failed"), "{err}");
    // Bad settings, refused before anything starts.
    let no_tls = url.replace("?sslmode=require", "");
    let (cert, key) = (file("busbar.pem"), file("busbar.key"));
    for (env, setting, says) in [
        (
            vec![
                ("BUSBAR_CLUSTER_POSTGRES_URL", url.as_str()),
                ("BUSBAR_CLUSTER_POSTGRES_CERT_FILE", cert.as_str()),
            ],
            "cluster.postgres_key_file",
            "go together",
        ),
        (
            vec![
                ("BUSBAR_CLUSTER_POSTGRES_URL", url.as_str()),
                ("BUSBAR_CLUSTER_POSTGRES_CERT_FILE", key.as_str()),
                ("BUSBAR_CLUSTER_POSTGRES_KEY_FILE", key.as_str()),
            ],
            "cluster.postgres_cert_file",
            "no PEM certificate",
        ),
        (
            vec![
                ("BUSBAR_CLUSTER_POSTGRES_URL", url.as_str()),
                ("BUSBAR_CLUSTER_POSTGRES_CERT_FILE", cert.as_str()),
                ("BUSBAR_CLUSTER_POSTGRES_KEY_FILE", cert.as_str()),
            ],
            "cluster.postgres_key_file",
            "no unencrypted PEM private key",
        ),
        (
            vec![
                ("BUSBAR_CLUSTER_POSTGRES_URL", no_tls.as_str()),
                ("BUSBAR_CLUSTER_POSTGRES_CERT_FILE", cert.as_str()),
                ("BUSBAR_CLUSTER_POSTGRES_KEY_FILE", key.as_str()),
            ],
            "cluster.postgres_cert_file",
            "sslmode=require",
        ),
    ] {
        let (code, err) = common::refused_start_with(d.path(), &env);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(setting) && err.contains(says), "{says}: {err}");
    }
}

/// The schema registry is the cluster's: schemas registered concurrently on two brokers get
/// distinct ids (a registration decided on a stale copy is refused with a retriable error and
/// tried again), every id names one schema on every broker, a broker started later on an empty
/// data directory serves them all, and a compatibility level set on one broker applies on
/// another.
#[test]
fn the_schema_registry_is_the_clusters() {
    let pg = TestPostgres::start();
    let url = pg.create_db("schemas");
    let mut nodes: Vec<Node> = (1..=2).map(|i| Node::new(i, &url)).collect();
    let at: Vec<SocketAddr> = nodes.iter().map(|n| n.http).collect();
    let sr = |a: SocketAddr, method: &str, path: &str, body: Option<Value>| {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let ct = [("content-type", "application/vnd.schemaregistry.v1+json")];
        let r = request(a, method, &format!("/schema-registry{path}"), &ct, &bytes).unwrap();
        (
            r.status,
            serde_json::from_slice::<Value>(&r.body).unwrap_or(Value::Null),
        )
    };
    let schema = |i: usize| format!(r#"{{"type":"record","name":"R{i}","fields":[]}}"#);
    // 2 x 15 registrations at once, each on its broker; retried while refused as concurrent.
    let registered: Vec<(usize, u64)> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..2)
            .map(|b| {
                let (sr, schema, a) = (&sr, &schema, at[b]);
                s.spawn(move || {
                    let mut got = Vec::new();
                    for i in (0..15).map(|n| b * 100 + n) {
                        let body = json!({"schema": schema(i)});
                        let path = format!("/subjects/s{i}/versions");
                        let deadline = Instant::now() + Duration::from_secs(20);
                        loop {
                            let (st, v) = sr(a, "POST", &path, Some(body.clone()));
                            if st == 200 {
                                got.push((i, v["id"].as_u64().unwrap()));
                                break;
                            }
                            assert!(st >= 500 && Instant::now() < deadline, "{st} {v}");
                        }
                    }
                    got
                })
            })
            .collect();
        runs.into_iter().flat_map(|r| r.join().unwrap()).collect()
    });
    let ids: std::collections::BTreeSet<u64> = registered.iter().map(|(_, id)| *id).collect();
    assert_eq!(
        ids.len(),
        registered.len(),
        "an id given twice: {registered:?}"
    );
    // A broker started now, on an empty data directory, serves every id as registered.
    nodes.push(Node::new(3, &url));
    let third = nodes[2].http;
    for (i, id) in &registered {
        let (st, v) = sr(third, "GET", &format!("/schemas/ids/{id}"), None);
        assert_eq!(st, 200, "{v}");
        let got: Value = serde_json::from_str(v["schema"].as_str().unwrap()).unwrap();
        assert_eq!(got["name"], format!("R{i}"), "id {id}");
    }
    // A compatibility level set on broker 1 applies on broker 2.
    let (st, v) = sr(
        at[0],
        "PUT",
        "/config/s0",
        Some(json!({"compatibility": "NONE"})),
    );
    assert_eq!(st, 200, "{v}");
    eventually("the level reaches broker 2", || {
        sr(at[1], "GET", "/config/s0", None).1["compatibilityLevel"] == "NONE"
    });
}
