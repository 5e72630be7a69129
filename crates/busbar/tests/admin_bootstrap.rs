//! R16 review (c): `admin` is made from BUSBAR_ADMIN_PASSWORD only on the first start (a users
//! log never written), not whenever the user table is empty: deleting every user and restarting
//! with the variable set must not hand out a super user.

mod common;

use base64::Engine;
use busbar_testkit::http::request;
use common::Server;

fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

fn status(s: &Server, method: &str, path: &str, user: &str, password: &str) -> u16 {
    let auth = basic(user, password);
    let headers = [("authorization", auth.as_str())];
    request(s.addr, method, path, &headers, b"").unwrap().status
}

#[test]
fn admin_is_not_recreated_after_every_user_was_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let env = |pw: &'static str| {
        vec![
            ("BUSBAR_AUTH_ENABLED", "true"),
            ("BUSBAR_AUTH_SUPER_USERS", "admin"),
            ("BUSBAR_ADMIN_PASSWORD", pw),
        ]
    };
    let s = Server::start(dir.path(), &[], &env("first-pw-1"));
    assert_eq!(status(&s, "GET", "/users", "admin", "first-pw-1"), 200);
    assert_eq!(
        status(&s, "DELETE", "/users/admin", "admin", "first-pw-1"),
        204
    );
    drop(s);
    let s = Server::start(dir.path(), &[], &env("attacker-pw-1"));
    assert_eq!(
        status(&s, "GET", "/users", "admin", "attacker-pw-1"),
        401,
        "admin came back from the environment"
    );
    assert!(!s.log_lines("every user was deleted").is_empty());
}
