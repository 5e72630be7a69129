//! A damaged ACL log fails closed: with authentication on, `busbar serve` refuses to start (exit
//! 2) naming the damage and the ways out, instead of serving without the rows after it (an
//! acknowledged DENY would vanish). `--accept-damaged-acls` starts with what remains.

mod common;

use base64::Engine;
use busbar_testkit::http::request;
use common::*;
use serde_json::{json, Value};

const ADMIN: (&str, &str) = ("admin", "admin-secret-1");
const ENV: [(&str, &str); 3] = [
    ("BUSBAR_AUTH_ENABLED", "true"),
    ("BUSBAR_AUTH_SUPER_USERS", "admin"),
    ("BUSBAR_ADMIN_PASSWORD", ADMIN.1),
];

fn call(s: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", ADMIN.0, ADMIN.1));
    let auth = format!("Basic {token}");
    let headers = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
    ];
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let r = request(s.addr, method, path, &headers, &bytes).unwrap();
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

fn acl(op: &str, perm: &str) -> Value {
    json!({"resource_type": "TOPIC", "resource_name": "t", "principal": "User:ANONYMOUS",
           "operation": op, "permission": perm})
}

#[test]
fn a_damaged_acl_log_refuses_to_start_unless_the_loss_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &ENV);
    for a in [acl("ALL", "ALLOW"), acl("DESCRIBE", "DENY")] {
        let (st, v) = call(&s, "POST", "/acls", Some(a));
        assert!(st == 200 || st == 201, "{st} {v}");
    }
    assert_eq!(s.stop(), 0);
    let log = dir.path().join("internal/acls/00000000000000000000.log");
    let mut data = std::fs::read(&log).unwrap();
    let i = data
        .windows(6)
        .rposition(|w| w == b"\"DENY\"")
        .expect("the DENY row is in the log");
    data[i + 2] ^= 1;
    std::fs::write(&log, data).unwrap();

    let (code, err) = refused_start_with(dir.path(), &ENV);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("ACL log"), "names the damaged log: {err}");
    assert!(
        err.contains("--accept-damaged-acls"),
        "names the way out: {err}"
    );

    let s = Server::start(dir.path(), &["--accept-damaged-acls"], &ENV);
    assert!(!s.log_lines("damaged").is_empty(), "still warns");
    let (st, v) = call(&s, "GET", "/acls", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["acls"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(s.stop(), 0);

    // Authentication off: nothing is enforced, so the damage only warns.
    let s = Server::start(dir.path(), &[], &[]);
    assert!(!s.log_lines("damaged").is_empty());
    s.stop();
}
