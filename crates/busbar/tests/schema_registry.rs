//! The schema registry through the real binary (issue 17): its own listener from
//! `--schema-registry-addr` named in the ready line, `""` turning it off, a configured address that
//! cannot be bound stopping the start, and, with `auth.enabled`, the SUBJECT ACLs on both mounts
//! (no credentials 401; READ, WRITE, DELETE and ALTER on the subject, lists and schema ids
//! filtered, 403 with error_code 40301) and the audit line of every change, refused ones too.

mod common;

use base64::Engine;
use busbar_testkit::http::request;
use common::Server;
use serde_json::{json, Value};
use std::net::SocketAddr;

const ADMIN_PW: &str = "admin-secret-1";

fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

fn registry_addr(s: &Server) -> SocketAddr {
    let rest = s
        .ready_line
        .split("schema-registry http://")
        .nth(1)
        .expect("registry address");
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    user: Option<(&str, &str)>,
    body: Option<&Value>,
) -> (u16, Value) {
    let header = user.map(|(u, p)| basic(u, p));
    // busbar's own routes take application/json; the registry's any JSON type.
    let ct = if path == "/users" || path == "/acls" {
        "application/json"
    } else {
        "application/vnd.schemaregistry.v1+json"
    };
    let mut headers = vec![("content-type", ct)];
    if let Some(h) = &header {
        headers.push(("authorization", h.as_str()));
    }
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let r = request(addr, method, path, &headers, &bytes).unwrap();
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

/// `user` may do `op` on the subjects named `name` (`PREFIXED` when `prefixed`).
fn grant(s: &Server, user: &str, name: &str, prefixed: bool, op: &str) {
    let pattern = if prefixed { "PREFIXED" } else { "LITERAL" };
    let body = json!([{"resource_type": "SUBJECT", "resource_name": name, "pattern_type": pattern,
        "principal": format!("User:{user}"), "operation": op, "permission": "ALLOW"}]);
    let made = call(
        s.addr,
        "POST",
        "/acls",
        Some(("admin", ADMIN_PW)),
        Some(&body),
    );
    assert!(made.0 == 200 || made.0 == 201, "{made:?}");
}

fn create_user(s: &Server, name: &str, password: &str) {
    let body = json!({"name": name, "password": password});
    let created = call(
        s.addr,
        "POST",
        "/users",
        Some(("admin", ADMIN_PW)),
        Some(&body),
    );
    assert_eq!(created.0, 201, "{}", created.1);
}

/// A 403 with Confluent's 40301 whose message has `needle`.
fn assert_denied(got: (u16, Value), needle: &str) {
    assert_eq!(
        (got.0, got.1["error_code"].clone()),
        (403, json!(40301)),
        "{}",
        got.1
    );
    let m = got.1["message"].as_str().unwrap_or_default();
    assert!(m.contains(needle), "{m:?} lacks {needle:?}");
}

/// The audit lines of `data` (none when the file does not exist yet).
fn audit_lines(data: &std::path::Path) -> Vec<Value> {
    (std::fs::read_to_string(data.join("audit.log"))
        .unwrap_or_default()
        .lines())
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

/// Waits for an audit line with these fields (the writer runs behind the answers).
fn wait_audit(data: &std::path::Path, want: &[(&str, &str)]) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let lines = audit_lines(data);
        let hit = lines.iter().find(|l| want.iter().all(|(k, v)| l[*k] == *v));
        if let Some(l) = hit {
            return l.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {want:?} in {lines:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn subject_acls_decide_the_registry_routes_on_both_mounts() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("BUSBAR_AUTH_ENABLED", "true"),
        ("BUSBAR_AUTH_SUPER_USERS", "admin"),
        ("BUSBAR_ADMIN_PASSWORD", ADMIN_PW),
    ];
    let s = Server::start(dir.path(), &["--schema-registry-addr", "127.0.0.1:0"], &env);
    let sr = registry_addr(&s);
    let admin = Some(("admin", ADMIN_PW));
    let alice = Some(("alice", "alice-pw-1"));
    let bob = Some(("bob", "bob-pw-1"));
    create_user(&s, "alice", "alice-pw-1");
    create_user(&s, "bob", "bob-pw-1");
    // READ on the prefix orders- through the CLI (`busbar acl create --subject`).
    let out = s.cli(&[
        "--user",
        "admin",
        "--password",
        ADMIN_PW,
        "acl",
        "create",
        "--subject",
        "orders-",
        "--pattern-type",
        "PREFIXED",
        "--principal",
        "User:alice",
        "--operation",
        "READ",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let schema = json!({"schema": "\"string\""});
    let other = json!({"schema": "\"int\""});
    // Schema 1 in orders-value and secret-value, schema 2 only in payments-value.
    for (subject, body) in [
        ("orders-value", &schema),
        ("secret-value", &schema),
        ("payments-value", &other),
    ] {
        let path = format!("/subjects/{subject}/versions");
        assert_eq!(
            call(sr, "POST", &path, admin, Some(body)).0,
            200,
            "{subject}"
        );
    }
    // Compatible with "string" under BACKWARD: a union that reads it.
    let v2 = json!({"schema": "[\"null\",\"string\"]"});
    // The console's public paths are the main listener's only: the registry's root needs
    // credentials there as everywhere else.
    assert_eq!(call(sr, "GET", "/", None, None).0, 401);
    assert_eq!(call(s.addr, "GET", "/", None, None).0, 303, "the console");
    for (addr, prefix) in [(sr, ""), (s.addr, "/schema-registry")] {
        let path = |p: &str| format!("{prefix}{p}");
        let get = |user, p: &str| call(addr, "GET", &path(p), user, None);
        // In the registry's error shape, as Confluent answers it (with the challenge kept).
        let (status, body) = get(None, "/subjects");
        assert_eq!(
            (status, &body["error_code"]),
            (401, &json!(401)),
            "{prefix}"
        );
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        let r = request(addr, "GET", &path("/subjects"), &[], b"").unwrap();
        let h = |n: &str| r.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
        assert!(h("www-authenticate"), "{prefix}");
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("content-type")
                    && v == "application/vnd.schemaregistry.v1+json"),
            "{prefix}: {:?}",
            r.headers
        );
        // The list and the ids show only what alice may READ (DESCRIBE).
        assert_eq!(
            get(alice, "/subjects"),
            (200, json!(["orders-value"])),
            "{prefix}"
        );
        assert_eq!(get(bob, "/subjects"), (200, json!([])), "{prefix}");
        assert_eq!(get(admin, "/subjects").1.as_array().map(Vec::len), Some(3));
        assert_eq!(
            get(alice, "/subjects/orders-value/versions"),
            (200, json!([1]))
        );
        assert_eq!(get(alice, "/schemas/ids/1").1["schema"], "\"string\"");
        assert_eq!(
            get(alice, "/schemas/ids/1/subjects"),
            (200, json!(["orders-value"]))
        );
        assert_denied(get(alice, "/schemas/ids/2"), "schema 2");
        assert_denied(get(bob, "/schemas/ids/1"), "User:bob");
        assert_eq!(get(alice, "/schemas/ids/99").1["error_code"], 40403);
        assert_denied(
            get(alice, "/subjects/payments-value/versions"),
            "READ SUBJECT",
        );
        assert_denied(
            get(alice, "/subjects/payments-value/versions/1"),
            "payments-value",
        );
        // A lookup and a compatibility check only read.
        let looked = call(
            addr,
            "POST",
            &path("/subjects/orders-value"),
            alice,
            Some(&schema),
        );
        assert_eq!(looked.1["version"], 1, "{}", looked.1);
        let check = "/compatibility/subjects/orders-value/versions/latest";
        assert_eq!(
            call(addr, "POST", &path(check), alice, Some(&schema)),
            (200, json!({"is_compatible": true}))
        );
        // READ does not register, delete or configure.
        let register = path("/subjects/orders-value/versions");
        assert_denied(
            call(addr, "POST", &register, alice, Some(&v2)),
            "WRITE SUBJECT \"orders-value\"",
        );
        let config = path("/config/orders-value");
        let full = json!({"compatibility": "NONE"});
        assert_denied(
            call(addr, "PUT", &config, alice, Some(&full)),
            "ALTER SUBJECT",
        );
        assert_denied(
            call(addr, "PUT", &path("/config"), alice, Some(&full)),
            "ALTER the CLUSTER",
        );
        assert_denied(
            call(addr, "DELETE", &path("/subjects/orders-value"), alice, None),
            "DELETE",
        );
    }
    // A lookup in a subject named `versions` is a lookup (READ), not a registration (the
    // interim rule took it for a write by its path).
    grant(&s, "alice", "versions", false, "READ");
    let lookup = call(sr, "POST", "/subjects/versions", alice, Some(&schema));
    assert_eq!(lookup.1["error_code"], 40401, "{}", lookup.1);
    grant(&s, "alice", "orders-value", false, "WRITE");
    let registered = call(
        sr,
        "POST",
        "/subjects/orders-value/versions",
        alice,
        Some(&v2),
    );
    assert_eq!(
        (registered.0, registered.1["version"].clone()),
        (200, json!(2)),
        "{}",
        registered.1
    );
    // WRITE alone does not delete: DELETE does.
    assert_denied(
        call(
            sr,
            "DELETE",
            "/subjects/orders-value/versions/2",
            alice,
            None,
        ),
        "DELETE",
    );
    grant(&s, "alice", "orders-value", false, "ALTER");
    let full = json!({"compatibility": "FULL"});
    let put = call(
        s.addr,
        "PUT",
        "/schema-registry/config/orders-value",
        alice,
        Some(&full),
    );
    assert_eq!(put, (200, json!({"compatibility": "FULL"})));
    assert_eq!(
        call(sr, "GET", "/config/orders-value", alice, None),
        (200, json!({"compatibilityLevel": "FULL"}))
    );
    // Changes, allowed and refused, are audit lines naming the subject.
    let data = dir.path();
    let ok = wait_audit(
        data,
        &[
            ("principal", "User:alice"),
            ("resource", "SUBJECT:orders-value"),
            (
                "operation",
                "POST /schema-registry/subjects/{subject}/versions",
            ),
            ("outcome", "200"),
        ],
    );
    assert_eq!(ok["listener"], "schema-registry");
    assert_eq!(ok["detail"], "version 2, id 3", "{ok}");
    let refused = wait_audit(
        data,
        &[
            ("principal", "User:alice"),
            ("resource", "SUBJECT:orders-value"),
            (
                "operation",
                "DELETE /schema-registry/subjects/{subject}/versions/{version}",
            ),
            ("outcome", "403"),
        ],
    );
    assert!(
        refused["detail"].as_str().unwrap().contains("DELETE"),
        "{refused}"
    );
    let config = wait_audit(
        data,
        &[
            ("resource", "SUBJECT:orders-value"),
            ("operation", "PUT /schema-registry/config/{subject}"),
            ("outcome", "200"),
        ],
    );
    assert_eq!(
        (config["listener"].as_str(), config["detail"].as_str()),
        (Some("http"), Some("compatibility set to FULL"))
    );
    wait_audit(
        data,
        &[
            ("principal", "User:alice"),
            ("resource", "CLUSTER:kafka-cluster"),
            ("operation", "PUT /schema-registry/config"),
            ("outcome", "403"),
        ],
    );
    // Reads are not audited.
    assert!(!audit_lines(data).iter().any(|l| l["operation"]
        .as_str()
        .unwrap_or_default()
        .starts_with("GET /schema-registry")));
}

#[test]
fn the_listener_follows_its_setting_and_a_busy_configured_address_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--schema-registry-addr", ""], &[]);
    assert!(
        s.ready_line.ends_with("schema-registry off"),
        "{}",
        s.ready_line
    );
    // Still served on the HTTP API.
    assert_eq!(
        call(s.addr, "GET", "/schema-registry/subjects", None, None),
        (200, json!([]))
    );
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let other = tempfile::tempdir().unwrap();
    let (code, err) = common::refused_start_with(
        other.path(),
        &[("BUSBAR_SCHEMA_REGISTRY_ADDR", addr.as_str())],
    );
    assert_ne!(code, 0);
    assert!(err.contains("schema_registry.addr"), "{err}");
}
