//! The schema registry through the real binary (issue 17): its own listener from
//! `--schema-registry-addr` named in the ready line, `""` turning it off, a configured address that
//! cannot be bound stopping the start, and, with `auth.enabled`, the interim rule on both mounts
//! (no credentials 401; reads for any authenticated user; changes need ALTER on the CLUSTER, else
//! 403 with error_code 40301).

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
    let ct = if path == "/users" {
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

#[test]
fn with_auth_reads_need_a_user_and_changes_need_alter_on_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("BUSBAR_AUTH_ENABLED", "true"),
        ("BUSBAR_AUTH_SUPER_USERS", "admin"),
        ("BUSBAR_ADMIN_PASSWORD", ADMIN_PW),
    ];
    let s = Server::start(dir.path(), &["--schema-registry-addr", "127.0.0.1:0"], &env);
    let sr = registry_addr(&s);
    let admin = Some(("admin", ADMIN_PW));
    let bob = Some(("bob", "bob-pw-1"));
    let created = call(
        s.addr,
        "POST",
        "/users",
        admin,
        Some(&json!({"name": "bob", "password": "bob-pw-1"})),
    );
    assert_eq!(created.0, 201, "{}", created.1);
    let schema = json!({"schema": "\"string\""});
    for (addr, prefix) in [(sr, ""), (s.addr, "/schema-registry")] {
        let path = |p: &str| format!("{prefix}{p}");
        assert_eq!(
            call(addr, "GET", &path("/subjects"), None, None).0,
            401,
            "{prefix}"
        );
        let refused = call(
            addr,
            "POST",
            &path("/subjects/s/versions"),
            bob,
            Some(&schema),
        );
        assert_eq!(refused.0, 403, "{prefix}: {}", refused.1);
        assert_eq!(refused.1["error_code"], 40301, "{}", refused.1);
        assert!(refused.1["message"]
            .as_str()
            .unwrap()
            .contains("ALTER on the CLUSTER"));
        assert_eq!(
            call(
                addr,
                "PUT",
                &path("/config"),
                bob,
                Some(&json!({"compatibility": "NONE"}))
            )
            .0,
            403
        );
        let registered = call(
            addr,
            "POST",
            &path("/subjects/s/versions"),
            admin,
            Some(&schema),
        );
        assert_eq!(
            (registered.0, registered.1["id"].clone()),
            (200, json!(1)),
            "{}",
            registered.1
        );
        assert_eq!(
            call(addr, "GET", &path("/subjects"), bob, None),
            (200, json!(["s"]))
        );
        // A lookup and a compatibility check only read.
        assert_eq!(
            call(addr, "POST", &path("/subjects/s"), bob, Some(&schema)).1["version"],
            1
        );
        let check = call(
            addr,
            "POST",
            &path("/compatibility/subjects/s/versions/latest"),
            bob,
            Some(&schema),
        );
        assert_eq!(check, (200, json!({"is_compatible": true})));
    }
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
