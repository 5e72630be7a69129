//! ACLs on the HTTP API and the bus, through the real binary with authentication on: every row of
//! the route table (`busbar-http` `authz.rs`) refused (403 `forbidden`) without its ACL and
//! allowed with it; lists showing only what the principal may DESCRIBE; `/acls` round trips and
//! bad input (400, nothing changed); a subscription running as its creator pausing as
//! `unauthorized` when READ is revoked and resuming, nothing skipped, when it is granted again;
//! `busbar acl create|list|delete`.

mod common;

use base64::Engine;
use busbar_testkit::http::request;
use common::{stderr, stdout, Server};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const ADMIN: (&str, &str) = ("admin", "admin-secret-1");
const ALICE: (&str, &str) = ("alice", "alice-secret-1");

fn start(dir: &std::path::Path) -> Server {
    let env = [
        ("BUSBAR_AUTH_ENABLED", "true"),
        ("BUSBAR_AUTH_SUPER_USERS", "admin"),
        ("BUSBAR_ADMIN_PASSWORD", ADMIN.1),
    ];
    let s = Server::start(dir, &[], &env);
    let (st, v) = call(
        &s,
        ADMIN,
        "POST",
        "/users",
        Some(json!({"name": ALICE.0, "password": ALICE.1})),
    );
    assert_eq!(st, 201, "{v}");
    s
}

fn basic((user, password): (&str, &str)) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// `method path` as `who`: status and JSON body.
fn call(
    s: &Server,
    who: (&str, &str),
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let auth = basic(who);
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

/// The status of a streaming GET (Server-Sent Events), read from its status line only.
fn stream_status(s: &Server, who: (&str, &str), path: &str) -> u16 {
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        basic(who)
    );
    c.write_all(req.as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(c).read_line(&mut line).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn acl(ty: &str, name: &str, op: &str) -> Value {
    json!({"resource_type": ty, "resource_name": name, "principal": "User:alice",
           "operation": op, "permission": "ALLOW"})
}

fn grant(s: &Server, acls: &[Value]) {
    let (st, v) = call(s, ADMIN, "POST", "/acls", Some(Value::Array(acls.to_vec())));
    assert_eq!(st, 201, "{v}");
}

fn revoke_all(s: &Server) {
    let (st, v) = call(s, ADMIN, "DELETE", "/acls?principal=User:alice", None);
    assert_eq!(st, 200, "{v}");
}

fn acl_count(s: &Server) -> usize {
    let (st, v) = call(s, ADMIN, "GET", "/acls", None);
    assert_eq!(st, 200, "{v}");
    v["acls"].as_array().unwrap().len()
}

/// One row's case: the request, the ACLs it needs, the status it answers when allowed.
struct Case {
    method: &'static str,
    path: String,
    body: Option<Value>,
    needs: Vec<Value>,
    allowed: u16,
}

fn case(
    method: &'static str,
    path: &str,
    body: Option<Value>,
    needs: Vec<Value>,
    allowed: u16,
) -> Case {
    Case {
        method,
        path: path.to_string(),
        body,
        needs,
        allowed,
    }
}

/// Without its ACLs: 403 `forbidden`; with all of them: `allowed`; then the ACLs go again.
fn check(s: &Server, c: &Case) -> Value {
    let stream = c.path.ends_with("/stream") || c.path.contains("/stream?");
    let what = format!("{} {}", c.method, c.path);
    if stream {
        assert_eq!(stream_status(s, ALICE, &c.path), 403, "{what} without ACLs");
    } else {
        let (st, v) = call(s, ALICE, c.method, &c.path, c.body.clone());
        assert_eq!(st, 403, "{what} without ACLs: {v}");
        assert_eq!(v["error"]["code"], "forbidden", "{what}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("User:alice"),
            "{v}"
        );
    }
    // Each ACL is needed: with all but one, still refused.
    if c.needs.len() > 1 {
        grant(s, &c.needs[1..]);
        if !stream {
            let (st, v) = call(s, ALICE, c.method, &c.path, c.body.clone());
            assert_eq!(st, 403, "{what} with all but {}: {v}", c.needs[0]);
        }
    }
    grant(s, &c.needs);
    let got = if stream {
        assert_eq!(
            stream_status(s, ALICE, &c.path),
            c.allowed,
            "{what} allowed"
        );
        Value::Null
    } else {
        let (st, v) = call(s, ALICE, c.method, &c.path, c.body.clone());
        assert_eq!(st, c.allowed, "{what} with {:?}: {v}", c.needs);
        v
    };
    revoke_all(s);
    got
}

fn admin_ok(s: &Server, method: &str, path: &str, body: Option<Value>) -> Value {
    let (st, v) = call(s, ADMIN, method, path, body);
    assert!((200..300).contains(&st), "admin {method} {path}: {st} {v}");
    v
}

#[test]
fn every_route_is_refused_without_its_acl_and_allowed_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    for t in ["t", "out", "dlq", "gone"] {
        admin_ok(
            &s,
            "POST",
            "/topics",
            Some(json!({"name": t, "partitions": 1})),
        );
    }
    admin_ok(&s, "POST", "/topics/t/events", Some(json!([{"value": 1}])));
    let reset = json!({"topic": "t", "to": "earliest"});
    admin_ok(&s, "POST", "/groups/g/offsets/reset", Some(reset.clone()));
    admin_ok(&s, "POST", "/groups/old/offsets/reset", Some(reset.clone()));
    let topic = |n: &str, op: &str| acl("TOPIC", n, op);
    let group = |n: &str, op: &str| acl("GROUP", n, op);
    let sub = |op: &str| acl("SUBSCRIPTION", "s1", op);
    let cluster = |op: &str| acl("CLUSTER", "kafka-cluster", op);
    let spec = json!({"name": "s1", "sources": ["t"], "target": {"topic": "out"},
                      "dead_letter_topic": "dlq", "start": "earliest"});
    let routing = || {
        vec![
            topic("t", "READ"),
            topic("out", "WRITE"),
            topic("dlq", "WRITE"),
        ]
    };
    let with = |mut v: Vec<Value>, more: Value| {
        v.insert(0, more);
        v
    };
    let run = json!({"name": "r1", "from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00Z"});
    let cases = vec![
        case(
            "POST",
            "/topics",
            Some(json!({"name": "made"})),
            vec![topic("made", "CREATE")],
            201,
        ),
        case("GET", "/topics/t", None, vec![topic("t", "DESCRIBE")], 200),
        case(
            "PATCH",
            "/topics/t",
            Some(json!({"configs": {"segment.ms": "3600000"}})),
            vec![topic("t", "ALTER_CONFIGS")],
            200,
        ),
        case(
            "POST",
            "/topics/t/events",
            Some(json!([{"value": 2}])),
            vec![topic("t", "WRITE")],
            200,
        ),
        case(
            "GET",
            "/topics/t/partitions/0/events",
            None,
            vec![topic("t", "READ")],
            200,
        ),
        case(
            "GET",
            "/topics/t/partitions/0/stream",
            None,
            vec![topic("t", "READ")],
            200,
        ),
        case(
            "DELETE",
            "/topics/gone",
            None,
            vec![topic("gone", "DELETE")],
            204,
        ),
        case("GET", "/groups/g", None, vec![group("g", "DESCRIBE")], 200),
        case(
            "POST",
            "/groups/g/offsets/reset",
            Some(reset),
            vec![topic("t", "READ"), group("g", "READ")],
            200,
        ),
        case(
            "DELETE",
            "/groups/old",
            None,
            vec![group("old", "DELETE")],
            204,
        ),
        case(
            "GET",
            "/groups/g/stream?topics=t",
            None,
            vec![topic("t", "READ"), group("g", "READ")],
            200,
        ),
        case(
            "POST",
            "/subscriptions",
            Some(spec.clone()),
            with(routing(), sub("CREATE")),
            201,
        ),
        case("GET", "/subscriptions/s1", None, vec![sub("DESCRIBE")], 200),
        case(
            "PUT",
            "/subscriptions/s1",
            Some(spec.clone()),
            with(routing(), sub("ALTER")),
            200,
        ),
        case(
            "PATCH",
            "/subscriptions/s1",
            Some(json!({"delivery": {"concurrency": 2}})),
            with(routing(), sub("ALTER")),
            200,
        ),
        case(
            "POST",
            "/subscriptions/s1/pause",
            None,
            vec![sub("ALTER")],
            200,
        ),
        case(
            "POST",
            "/subscriptions/s1/resume",
            None,
            vec![sub("ALTER")],
            200,
        ),
        case(
            "POST",
            "/subscriptions/s1/reset",
            Some(json!({"to": "earliest"})),
            vec![sub("ALTER")],
            200,
        ),
        case(
            "POST",
            "/subscriptions/s1/replays",
            Some(run),
            vec![sub("ALTER")],
            202,
        ),
        case(
            "GET",
            "/subscriptions/s1/replays",
            None,
            vec![sub("DESCRIBE")],
            200,
        ),
        case(
            "GET",
            "/subscriptions/s1/replays/r1",
            None,
            vec![sub("DESCRIBE")],
            200,
        ),
        case(
            "DELETE",
            "/subscriptions/s1/replays/r1",
            None,
            vec![sub("ALTER")],
            200,
        ),
        case(
            "GET",
            "/dead-letters/dlq",
            None,
            vec![topic("dlq", "READ")],
            200,
        ),
        case(
            "POST",
            "/dead-letters/dlq/redrive",
            Some(json!({"subscription": "s1"})),
            vec![topic("dlq", "READ"), sub("ALTER")],
            200,
        ),
        case(
            "POST",
            "/users",
            Some(json!({"name": "carol", "password": "carol-pw"})),
            vec![cluster("ALTER")],
            201,
        ),
        case("GET", "/users", None, vec![cluster("DESCRIBE")], 200),
        case("DELETE", "/users/carol", None, vec![cluster("ALTER")], 204),
        case(
            "POST",
            "/tokens",
            Some(json!({"name": "ci", "user": "admin"})),
            vec![cluster("ALTER")],
            201,
        ),
        case(
            "GET",
            "/tokens?user=admin",
            None,
            vec![cluster("DESCRIBE")],
            200,
        ),
        case(
            "DELETE",
            "/tokens/ci?user=admin",
            None,
            vec![cluster("ALTER")],
            204,
        ),
        case(
            "GET",
            "/quotas",
            None,
            vec![cluster("DESCRIBE_CONFIGS")],
            200,
        ),
        case(
            "PUT",
            "/quotas",
            Some(json!({"entity": {"user": "bob"}, "values": {"producer_byte_rate": 1048576}})),
            vec![cluster("ALTER_CONFIGS")],
            200,
        ),
        case(
            "DELETE",
            "/quotas",
            Some(json!({"entity": {"user": "bob"}})),
            vec![cluster("ALTER_CONFIGS")],
            204,
        ),
        case("GET", "/acls", None, vec![cluster("DESCRIBE")], 200),
        case(
            "POST",
            "/acls",
            Some(acl("TOPIC", "x", "READ")),
            vec![cluster("ALTER")],
            201,
        ),
        case(
            "DELETE",
            "/acls?resource_name=x",
            None,
            vec![cluster("ALTER")],
            200,
        ),
        case(
            "DELETE",
            "/subscriptions/s1",
            None,
            vec![sub("DELETE")],
            204,
        ),
    ];
    for c in cases.iter().filter(|c| !c.needs.is_empty()) {
        check(&s, c);
    }
    // Routes that need credentials only, and a user's own tokens.
    for (m, p, b, want) in [
        ("GET", "/metrics", None, 200),
        ("GET", "/openapi.json", None, 200),
        (
            "POST",
            "/rules/test",
            Some(json!({"pattern": {"a": [1]}, "event": {"a": 1}})),
            200,
        ),
        ("POST", "/tokens", Some(json!({"name": "mine"})), 201),
        ("GET", "/tokens", None, 200),
        ("DELETE", "/tokens/mine", None, 204),
    ] {
        let (st, v) = call(&s, ALICE, m, p, b);
        assert_eq!(st, want, "{m} {p}: {v}");
    }
    consumer_instance_routes(&s);
}

/// The consumer-instance routes: READ on the group (and the topics to join).
fn consumer_instance_routes(s: &Server) {
    let base = "/groups/g2/consumers";
    let join = json!({"topics": ["t"], "start": "earliest"});
    let fake = format!("{base}/c-0");
    for (m, p) in [
        ("GET", fake.clone()),
        ("DELETE", fake.clone()),
        ("GET", format!("{fake}/events")),
        ("POST", format!("{fake}/commit")),
    ] {
        let (st, v) = call(s, ALICE, m, &p, None);
        assert_eq!(st, 403, "{m} {p}: {v}");
    }
    let made = check(
        s,
        &case(
            "POST",
            base,
            Some(join),
            vec![acl("TOPIC", "t", "READ"), acl("GROUP", "g2", "READ")],
            201,
        ),
    );
    let one = format!("{base}/{}", made["consumer_id"].as_str().unwrap());
    // Polls and commits read the assigned partitions: READ on topic `t` too (Kafka's Fetch).
    let reads = vec![acl("GROUP", "g2", "READ"), acl("TOPIC", "t", "READ")];
    for (m, p, want, needs) in [
        ("GET", one.clone(), 200, vec![acl("GROUP", "g2", "READ")]),
        ("GET", format!("{one}/events?max=1"), 200, reads.clone()),
        ("POST", format!("{one}/commit"), 200, reads),
        ("DELETE", one.clone(), 204, vec![acl("GROUP", "g2", "READ")]),
    ] {
        check(s, &case(m, &p, None, needs, want));
    }
}

#[test]
fn lists_show_only_what_the_principal_may_describe() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    for t in ["secret", "orders-1", "orders-2"] {
        admin_ok(
            &s,
            "POST",
            "/topics",
            Some(json!({"name": t, "partitions": 1})),
        );
        admin_ok(
            &s,
            "POST",
            &format!("/groups/g-{t}/offsets/reset"),
            Some(json!({"topic": t, "to": "earliest"})),
        );
        let spec = json!({"name": format!("s-{t}"), "sources": [t], "target": {"topic": "secret"}});
        if t != "secret" {
            admin_ok(&s, "POST", "/subscriptions", Some(spec));
        }
    }
    let names = |path: &str, list: &str, field: &str| -> Vec<String> {
        let (st, v) = call(&s, ALICE, "GET", path, None);
        assert_eq!(st, 200, "{v}");
        let mut n: Vec<String> = v[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x[field].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    assert!(names("/topics", "topics", "name").is_empty());
    assert!(names("/groups", "groups", "group").is_empty());
    assert!(names("/subscriptions", "subscriptions", "name").is_empty());
    let mut prefixed = acl("TOPIC", "orders-", "READ");
    prefixed["pattern_type"] = json!("PREFIXED");
    grant(
        &s,
        &[
            prefixed,
            acl("GROUP", "g-orders-2", "DESCRIBE"),
            acl("SUBSCRIPTION", "s-orders-1", "ALTER"),
        ],
    );
    assert_eq!(names("/topics", "topics", "name"), ["orders-1", "orders-2"]);
    assert_eq!(names("/groups", "groups", "group"), ["g-orders-2"]);
    assert_eq!(
        names("/subscriptions", "subscriptions", "name"),
        ["s-orders-1"]
    );
    // DENY wins over the prefix ALLOW.
    let mut deny = acl("TOPIC", "orders-2", "DESCRIBE");
    deny["permission"] = json!("DENY");
    grant(&s, &[deny]);
    assert_eq!(names("/topics", "topics", "name"), ["orders-1"]);
}

#[test]
fn acls_round_trip_and_bad_input_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let a = acl("TOPIC", "t", "READ");
    let mut b = acl("GROUP", "g", "READ");
    b["pattern_type"] = json!("prefixed");
    b["host"] = json!("10.0.0.1");
    let (st, v) = call(&s, ADMIN, "POST", "/acls", Some(json!([a, b])));
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["acls"][1]["pattern_type"], "PREFIXED");
    let (_, one) = call(&s, ADMIN, "POST", "/acls", Some(acl("TOPIC", "u", "WRITE")));
    assert_eq!(one["acls"][0]["host"], "*");
    assert_eq!(acl_count(&s), 3);
    let bad = |field: &str, value: Value| {
        let mut x = acl("TOPIC", "v", "READ");
        x[field] = value;
        json!([acl("TOPIC", "fine", "READ"), x])
    };
    for (body, says) in [
        (bad("operation", json!("FLY")), "operation"),
        (bad("principal", json!("alice")), "User:"),
        (bad("host", json!("example.com")), "host"),
        (bad("resource_type", json!("TABLE")), "resource_type"),
        (bad("permission", json!("MAYBE")), "permission"),
        (bad("resource_name", json!("")), "resource name"),
        (json!([]), "no ACL"),
        (json!({"resource_type": "TOPIC"}), ""),
    ] {
        let (st, v) = call(&s, ADMIN, "POST", "/acls", Some(body.clone()));
        assert_eq!(st, 400, "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{v}"
        );
        assert_eq!(acl_count(&s), 3, "{body} changed nothing");
    }
    for q in [
        "operation=FLY",
        "principal=alice",
        "host=nowhere",
        "bogus=1",
        "pattern_type=X",
    ] {
        let (st, v) = call(&s, ADMIN, "GET", &format!("/acls?{q}"), None);
        assert_eq!(st, 400, "GET {q}: {v}");
        let (st, v) = call(&s, ADMIN, "DELETE", &format!("/acls?{q}"), None);
        assert_eq!(st, 400, "DELETE {q}: {v}");
        assert_eq!(acl_count(&s), 3);
    }
    let (st, v) = call(&s, ADMIN, "DELETE", "/acls", None);
    assert_eq!((st, acl_count(&s)), (400, 3), "a bare DELETE: {v}");
    let (_, v) = call(
        &s,
        ADMIN,
        "GET",
        "/acls?resource_type=GROUP&pattern_type=MATCH&resource_name=gx",
        None,
    );
    assert_eq!(v["acls"].as_array().unwrap().len(), 1, "{v}");
    let (st, v) = call(
        &s,
        ADMIN,
        "DELETE",
        "/acls?resource_type=TOPIC&operation=READ",
        None,
    );
    assert_eq!(st, 200);
    assert_eq!(v["acls"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(acl_count(&s), 2);
    // Durable: a restart keeps them.
    s.stop();
    let env = [
        ("BUSBAR_AUTH_ENABLED", "true"),
        ("BUSBAR_AUTH_SUPER_USERS", "admin"),
    ];
    let s = Server::start(dir.path(), &[], &env);
    assert_eq!(acl_count(&s), 2);
}

fn cli(s: &Server, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--user", ADMIN.0, "--password", ADMIN.1];
    all.extend_from_slice(args);
    s.cli(&all)
}

#[test]
fn the_acl_cli_creates_lists_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let out = cli(
        &s,
        &[
            "acl",
            "create",
            "--principal",
            "User:alice",
            "--operation",
            "READ",
            "--operation",
            "DESCRIBE",
            "--topic",
            "orders",
            "--pattern-type",
            "PREFIXED",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("created 2 ACLs"), "{}", stdout(&out));
    let out = cli(
        &s,
        &[
            "--output",
            "json",
            "acl",
            "list",
            "--principal",
            "User:alice",
        ],
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["acls"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["acls"][0]["pattern_type"], "PREFIXED");
    let (st, _) = call(&s, ALICE, "GET", "/topics/orders-eu", None);
    assert_eq!(st, 404, "allowed (the topic does not exist)");
    let out = cli(
        &s,
        &[
            "acl",
            "create",
            "--principal",
            "alice",
            "--operation",
            "READ",
            "--topic",
            "x",
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("User:"), "{}", stderr(&out));
    let out = cli(&s, &["acl", "delete"]);
    assert!(!out.status.success(), "a bare delete is refused");
    let out = cli(
        &s,
        &[
            "acl",
            "delete",
            "--principal",
            "User:alice",
            "--operation",
            "READ",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("deleted 1 ACLs"), "{}", stdout(&out));
    let out = cli(&s, &["acl", "list", "--topic", "orders"]);
    assert!(
        stdout(&out).contains("DESCRIBE") && !stdout(&out).contains("READ"),
        "{}",
        stdout(&out)
    );
    let out = s.cli(&["--user", ALICE.0, "--password", ALICE.1, "acl", "list"]);
    assert!(!out.status.success(), "alice may not DESCRIBE the cluster");
    assert!(
        stderr(&out).contains("403") || stderr(&out).contains("forbidden"),
        "{}",
        stderr(&out)
    );
}

fn wait_state(s: &Server, name: &str, done: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = call(s, ADMIN, "GET", &format!("/subscriptions/{name}"), None);
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < end, "{name} never got there: {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The events a reader of `topic` sees, read as the admin.
fn stored(s: &Server, topic: &str) -> u64 {
    common::visible_events(topic, |path| call(s, ADMIN, "GET", path, None))
}

fn metric(s: &Server, line: &str) -> bool {
    let r = request(
        s.addr,
        "GET",
        "/metrics",
        &[("authorization", &basic(ADMIN))],
        b"",
    )
    .unwrap();
    r.text().lines().any(|l| l == line)
}

#[test]
fn a_subscription_runs_as_its_creator_and_pauses_unauthorized_without_skipping() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    for t in ["src", "dst"] {
        admin_ok(
            &s,
            "POST",
            "/topics",
            Some(json!({"name": t, "partitions": 1})),
        );
    }
    let read = acl("TOPIC", "src", "READ");
    grant(
        &s,
        &[
            acl("SUBSCRIPTION", "fwd", "ALL"),
            read.clone(),
            acl("TOPIC", "dst", "WRITE"),
        ],
    );
    let spec =
        json!({"name": "fwd", "sources": ["src"], "target": {"topic": "dst"}, "start": "earliest"});
    let (st, v) = call(&s, ALICE, "POST", "/subscriptions", Some(spec));
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["creator"]["user"], "alice", "{v}");
    admin_ok(
        &s,
        "POST",
        "/topics/src/events",
        Some(json!([{"value": 1}, {"value": 2}])),
    );
    wait_state(&s, "fwd", |v| {
        v["state"] == "running" && v["counters"]["delivered"] == 2
    });
    wait_stored(&s, "dst", 2);
    // READ revoked: the worker stops within about a second; nothing is delivered or skipped.
    let (st, _) = call(
        &s,
        ADMIN,
        "DELETE",
        "/acls?resource_name=src&operation=READ",
        None,
    );
    assert_eq!(st, 200);
    wait_state(&s, "fwd", |v| v["state"] == "unauthorized");
    assert!(metric(
        &s,
        "busbar_subscription_state{subscription=\"fwd\",state=\"unauthorized\"} 1"
    ));
    admin_ok(
        &s,
        "POST",
        "/topics/src/events",
        Some(json!([{"value": 3}, {"value": 4}, {"value": 5}])),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let v = wait_state(&s, "fwd", |v| v["state"] == "unauthorized");
    assert_eq!(v["lag"], 3, "positions stay: {v}");
    assert_eq!(stored(&s, "dst"), 2, "nothing delivered while unauthorized");
    let audited = |outcome: &str| {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap_or_default();
            if audit
                .lines()
                .any(|l| l.contains("SUBSCRIPTION:fwd") && l.contains(outcome))
            {
                return;
            }
            assert!(Instant::now() < end, "no {outcome} audit line: {audit}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    audited("\"denied\"");
    // Granted again: delivery resumes where it stopped, every event once.
    grant(&s, &[read]);
    wait_state(&s, "fwd", |v| {
        v["state"] == "running" && v["counters"]["delivered"] == 5
    });
    wait_stored(&s, "dst", 5);
    audited("\"allowed\"");
    let (_, got) = call(&s, ADMIN, "GET", "/topics/dst/partitions/0/events", None);
    let values: Vec<&Value> = got["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["value"])
        .collect();
    assert_eq!(
        values,
        [&json!(1), &json!(2), &json!(3), &json!(4), &json!(5)]
    );
    // The creator is durable.
    s.stop();
    let env = [
        ("BUSBAR_AUTH_ENABLED", "true"),
        ("BUSBAR_AUTH_SUPER_USERS", "admin"),
    ];
    let s = Server::start(dir.path(), &[], &env);
    let v = wait_state(&s, "fwd", |v| v["state"] == "running");
    assert_eq!(v["creator"]["user"], "alice");
}

#[test]
fn with_auth_off_subscriptions_have_no_creator_and_nothing_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    common::topics(&s, &[("a", 1), ("b", 1)]);
    let v = common::subscribe(
        &s,
        json!({"name": "x", "sources": ["a"], "target": {"topic": "b"}}),
    );
    assert!(v.get("creator").is_none(), "{v}");
    // As Kafka answers SECURITY_DISABLED: no ACL is stored that nothing would enforce.
    let (st, v) = s.http("POST", "/acls", Some(acl("TOPIC", "a", "READ")));
    assert_eq!(
        (st, &v["error"]["code"]),
        (409, &json!("security_disabled")),
        "{v}"
    );
    let (st, _) = s.http("GET", "/users", None);
    assert_eq!(st, 200);
}

/// The shell example of docs/security.md "HTTP and the bus", run as written (the server's
/// address in place of 127.0.0.1:8080): it leaves alice's prefixed READ on `orders`.
#[test]
fn the_guide_example_runs() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/security.md"
    ))
    .unwrap();
    let start = doc.find("\n## HTTP and the bus\n").expect("the section");
    let section = &doc[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let body = &section[section.find("```sh\n").expect("a sh block") + 6..];
    let script = &body[..body.find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("BUSBAR_AUTH_ENABLED", "true"),
        ("BUSBAR_AUTH_SUPER_USERS", "admin"),
        ("BUSBAR_ADMIN_PASSWORD", "change-me"),
    ];
    let s = Server::start(dir.path(), &[], &env);
    let script = script.replace("http://127.0.0.1:8080", &s.url());
    let bin_dir = std::path::Path::new(common::BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let out = std::process::Command::new("sh")
        .args(["-e", "-c", &script])
        .env("PATH", path)
        .env("BUSBAR_SERVER", s.url())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("User:bob"), "{}", stdout(&out));
    let (_, v) = call(&s, ("admin", "change-me"), "GET", "/acls", None);
    let mut want = acl("TOPIC", "orders", "READ");
    want["pattern_type"] = json!("PREFIXED");
    want["host"] = json!("*");
    assert_eq!(v["acls"], json!([want]));
}

/// A replay run delivers as the subscription's creator too: it waits, delivering nothing, while
/// the creator may not READ the sources, and completes once it may.
#[test]
fn a_replay_waits_while_the_creator_may_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    for t in ["src", "dst"] {
        admin_ok(
            &s,
            "POST",
            "/topics",
            Some(json!({"name": t, "partitions": 1})),
        );
    }
    let read = acl("TOPIC", "src", "READ");
    grant(
        &s,
        &[
            acl("SUBSCRIPTION", "fwd", "ALL"),
            read.clone(),
            acl("TOPIC", "dst", "WRITE"),
        ],
    );
    let spec =
        json!({"name": "fwd", "sources": ["src"], "target": {"topic": "dst"}, "start": "earliest"});
    let (st, v) = call(&s, ALICE, "POST", "/subscriptions", Some(spec));
    assert_eq!(st, 201, "{v}");
    admin_ok(
        &s,
        "POST",
        "/topics/src/events",
        Some(json!([{"value": 1}, {"value": 2}, {"value": 3}])),
    );
    wait_state(&s, "fwd", |v| v["counters"]["delivered"] == 3);
    let (st, _) = call(
        &s,
        ADMIN,
        "DELETE",
        "/acls?resource_name=src&operation=READ",
        None,
    );
    assert_eq!(st, 200);
    wait_state(&s, "fwd", |v| v["state"] == "unauthorized");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let to = busbar_broker::time::format_rfc3339(now);
    let run = json!({"name": "r1", "from": "2020-01-01T00:00:00Z", "to": to, "rate": 1000});
    let (st, v) = call(&s, ADMIN, "POST", "/subscriptions/fwd/replays", Some(run));
    assert_eq!(st, 202, "{v}");
    std::thread::sleep(Duration::from_millis(1500));
    let (_, v) = call(&s, ADMIN, "GET", "/subscriptions/fwd/replays/r1", None);
    assert_eq!(
        (v["state"].as_str(), v["delivered"].as_u64()),
        (Some("RUNNING"), Some(0)),
        "{v}"
    );
    wait_stored(&s, "dst", 3);
    grant(&s, &[read]);
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = call(&s, ADMIN, "GET", "/subscriptions/fwd/replays/r1", None);
        if v["state"] == "COMPLETED" {
            assert_eq!(v["delivered"], 3, "{v}");
            break;
        }
        assert!(Instant::now() < end, "{v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_stored(&s, "dst", 6);
}

const BOB: (&str, &str) = ("bob", "bob-secret-1");

fn add_bob(s: &Server) {
    let body = json!({"name": BOB.0, "password": BOB.1});
    let (st, v) = call(s, ADMIN, "POST", "/users", Some(body));
    assert_eq!(st, 201, "{v}");
}

/// Opens a Server-Sent Events stream as `who` (status 200 checked); the reader of its lines.
fn open_stream(s: &Server, who: (&str, &str), path: &str) -> BufReader<TcpStream> {
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        basic(who)
    );
    c.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(c);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.contains(" 200 "), "{path}: {line}");
    r
}

/// Reads a stream until its `event: error` (the stream's end): the error's data line, and
/// how long it took. Panics when the stream ends, or runs 15 s, without one.
fn until_error(r: &mut BufReader<TcpStream>) -> (String, Duration) {
    let t = Instant::now();
    let mut error = false;
    loop {
        let mut line = String::new();
        let n = r
            .read_line(&mut line)
            .expect("the stream ends with an error event");
        assert!(n > 0, "the stream closed without an error event");
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "no error event in 15 s"
        );
        if line.trim() == "event: error" {
            error = true;
        } else if error && line.starts_with("data:") {
            return (line, t.elapsed());
        }
    }
}

#[test]
fn a_consumer_instance_answers_only_its_creator() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    add_bob(&s);
    admin_ok(
        &s,
        "POST",
        "/topics",
        Some(json!({"name": "t", "partitions": 1})),
    );
    let both = |u: &str| {
        [("TOPIC", "t"), ("GROUP", "g")].map(|(ty, n)| {
            json!({"resource_type": ty, "resource_name": n, "principal": format!("User:{u}"),
                   "operation": "READ", "permission": "ALLOW"})
        })
    };
    grant(&s, &[both("alice"), both("bob")].concat());
    let join = json!({"topics": ["t"], "start": "earliest"});
    let (st, made) = call(&s, ALICE, "POST", "/groups/g/consumers", Some(join));
    assert_eq!(st, 201, "{made}");
    let one = format!(
        "/groups/g/consumers/{}",
        made["consumer_id"].as_str().unwrap()
    );
    for (m, p) in [
        ("GET", one.clone()),
        ("GET", format!("{one}/events")),
        ("POST", format!("{one}/commit")),
        ("DELETE", one.clone()),
    ] {
        let (st, v) = call(&s, BOB, m, &p, None);
        assert_eq!(st, 404, "bob {m} {p}: {v}");
        assert_eq!(v["error"]["code"], "unknown_consumer", "{v}");
    }
    let (st, v) = call(&s, ALICE, "GET", &format!("{one}/events"), None);
    assert_eq!(st, 200, "the creator still polls: {v}");
    let (st, _) = call(&s, ALICE, "DELETE", &one, None);
    assert_eq!(st, 204);
}

#[test]
fn revoked_read_stops_polls_commits_and_streams() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    admin_ok(
        &s,
        "POST",
        "/topics",
        Some(json!({"name": "t", "partitions": 1})),
    );
    admin_ok(&s, "POST", "/topics/t/events", Some(json!([{"value": 1}])));
    let reads = ["g", "g2"].map(|g| acl("GROUP", g, "READ"));
    grant(&s, &[acl("TOPIC", "t", "READ")]);
    grant(&s, &reads);
    let join = json!({"topics": ["t"], "start": "earliest"});
    let (st, made) = call(&s, ALICE, "POST", "/groups/g/consumers", Some(join));
    assert_eq!(st, 201, "{made}");
    let one = format!(
        "/groups/g/consumers/{}",
        made["consumer_id"].as_str().unwrap()
    );
    let mut part = open_stream(&s, ALICE, "/topics/t/partitions/0/stream?start=earliest");
    let mut group = open_stream(&s, ALICE, "/groups/g2/stream?topics=t&start=earliest");
    std::thread::sleep(Duration::from_millis(500));
    // Only the topic's READ goes: the route table's GROUP check still passes.
    revoke_all(&s);
    grant(&s, &reads);
    for p in [format!("{one}/events"), format!("{one}/commit")] {
        let m = if p.ends_with("commit") { "POST" } else { "GET" };
        let (st, v) = call(&s, ALICE, m, &p, None);
        assert_eq!(st, 403, "{m} {p} after the revoke: {v}");
    }
    for r in [&mut part, &mut group] {
        let (data, took) = until_error(r);
        assert!(data.contains("forbidden"), "{data}");
        assert!(took < Duration::from_secs(5), "ended after {took:?}");
    }
}

#[test]
fn a_deleted_users_stream_ends() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    admin_ok(
        &s,
        "POST",
        "/topics",
        Some(json!({"name": "t", "partitions": 1})),
    );
    // ACLs stay after the user goes (Kafka keeps them too): only the deletion ends the stream.
    grant(&s, &[acl("TOPIC", "t", "READ")]);
    let mut part = open_stream(&s, ALICE, "/topics/t/partitions/0/stream");
    std::thread::sleep(Duration::from_millis(300));
    let (st, v) = call(&s, ADMIN, "DELETE", "/users/alice", None);
    assert!(st == 204 || st == 200, "{st} {v}");
    let (data, took) = until_error(&mut part);
    assert!(data.contains("no longer exists"), "{data}");
    assert!(took < Duration::from_secs(5), "ended after {took:?}");
}

#[test]
fn a_redrive_reads_only_a_subscriptions_own_dead_letter_topic() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    for t in ["src", "dst", "dl", "scratch"] {
        admin_ok(
            &s,
            "POST",
            "/topics",
            Some(json!({"name": t, "partitions": 1})),
        );
    }
    let sub = json!({"name": "fwd", "sources": ["src"], "target": {"topic": "dst"},
                     "dead_letter_topic": "dl"});
    admin_ok(&s, "POST", "/subscriptions", Some(sub));
    // Letters are events with busbar-dlq-* headers: anyone who may write a topic can forge one.
    let forged = |sub: &str| {
        json!([{"value": {"forged": true}, "headers": {"busbar-dlq-subscription": sub,
            "busbar-dlq-source-topic": "src", "busbar-dlq-source-partition": "0",
            "busbar-dlq-source-offset": "0"}}])
    };
    admin_ok(&s, "POST", "/topics/scratch/events", Some(forged("fwd")));
    for body in [json!({"subscription": "fwd"}), json!({})] {
        let (st, v) = call(
            &s,
            ADMIN,
            "POST",
            "/dead-letters/scratch/redrive",
            Some(body),
        );
        assert_eq!(
            st, 400,
            "a redrive of a topic no subscription dead-letters to: {v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("dead_letter_topic"),
            "{v}"
        );
    }
    // In fwd's own dead-letter topic, a letter naming another subscription is left alone.
    let other = json!({"name": "other", "sources": ["src"], "target": {"topic": "scratch"},
                       "dead_letter_topic": "scratch"});
    admin_ok(&s, "POST", "/subscriptions", Some(other));
    admin_ok(&s, "POST", "/topics/dl/events", Some(forged("other")));
    let (st, v) = call(
        &s,
        ADMIN,
        "POST",
        "/dead-letters/dl/redrive",
        Some(json!({})),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["redriven"], 0, "{v}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(stored(&s, "dst"), 0);
}

/// Waits for an audit line about subscription `sub` holding every one of `needles`.
fn audited(dir: &std::path::Path, sub: &str, needles: &[&str]) {
    let end = Instant::now() + Duration::from_secs(10);
    let resource = format!("SUBSCRIPTION:{sub}");
    loop {
        let audit = std::fs::read_to_string(dir.join("audit.log")).unwrap_or_default();
        if (audit.lines()).any(|l| l.contains(&resource) && needles.iter().all(|n| l.contains(n))) {
            return;
        }
        assert!(
            Instant::now() < end,
            "no audit line with {needles:?}: {audit}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Makes topics `names` (one partition each) as admin.
fn make_topics(s: &Server, names: &[&str]) {
    for t in names {
        let body = json!({"name": t, "partitions": 1});
        admin_ok(s, "POST", "/topics", Some(body));
    }
}

fn publish(s: &Server, topic: &str, values: &[i64]) {
    let events: Vec<Value> = values.iter().map(|v| json!({"value": v})).collect();
    let path = format!("/topics/{topic}/events");
    admin_ok(s, "POST", &path, Some(Value::Array(events)));
}

/// The values stored in partition 0 of `topic`.
/// Waits (up to 10 s) until `topic` holds `n` visible events: a topic target's deliveries are
/// counted when appended and visible once their transaction commits, about 100 ms later.
fn wait_stored(s: &Server, topic: &str, n: u64) {
    let end = Instant::now() + Duration::from_secs(10);
    while stored(s, topic) != n && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stored(s, topic), n);
}

/// As [`wait_stored`], for the values of partition 0.
fn wait_values<const N: usize>(s: &Server, topic: &str, want: [Value; N]) {
    let end = Instant::now() + Duration::from_secs(10);
    while values(s, topic) != want && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(values(s, topic), want);
}

fn values(s: &Server, topic: &str) -> Vec<Value> {
    let path = format!("/topics/{topic}/partitions/0/events");
    let (_, got) = call(s, ADMIN, "GET", &path, None);
    let events = got["events"].as_array().cloned().unwrap_or_default();
    events.into_iter().map(|e| e["value"].clone()).collect()
}

/// A subscription's creator needs WRITE on its target topic as well as READ on its sources:
/// once WRITE is revoked deliveries pause (`unauthorized`, metric, audit line naming WRITE),
/// nothing is delivered or skipped, and they resume in order when it is granted again.
#[test]
fn a_subscription_pauses_unauthorized_while_its_creator_may_not_write_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    make_topics(&s, &["src", "dst"]);
    let write = acl("TOPIC", "dst", "WRITE");
    let needs = [
        acl("SUBSCRIPTION", "fwd", "ALL"),
        acl("TOPIC", "src", "READ"),
        write.clone(),
    ];
    grant(&s, &needs);
    let spec =
        json!({"name": "fwd", "sources": ["src"], "target": {"topic": "dst"}, "start": "earliest"});
    let (st, v) = call(&s, ALICE, "POST", "/subscriptions", Some(spec));
    assert_eq!(st, 201, "{v}");
    publish(&s, "src", &[1, 2]);
    wait_state(&s, "fwd", |v| v["counters"]["delivered"] == 2);
    let (st, _) = call(
        &s,
        ADMIN,
        "DELETE",
        "/acls?resource_name=dst&operation=WRITE",
        None,
    );
    assert_eq!(st, 200);
    wait_state(&s, "fwd", |v| v["state"] == "unauthorized");
    assert!(metric(
        &s,
        "busbar_subscription_state{subscription=\"fwd\",state=\"unauthorized\"} 1"
    ));
    audited(dir.path(), "fwd", &["\"denied\"", "TOPIC:dst", "WRITE"]);
    publish(&s, "src", &[3, 4, 5]);
    std::thread::sleep(Duration::from_millis(1500));
    let v = wait_state(&s, "fwd", |v| v["state"] == "unauthorized");
    assert_eq!(v["lag"], 3, "positions stay: {v}");
    assert_eq!(stored(&s, "dst"), 2, "nothing delivered while unauthorized");
    grant(&s, &[write]);
    wait_state(&s, "fwd", |v| {
        v["state"] == "running" && v["counters"]["delivered"] == 5
    });
    audited(dir.path(), "fwd", &["\"allowed\"", "TOPIC:dst"]);
    wait_values(&s, "dst", [1, 2, 3, 4, 5].map(|n| json!(n)));
}

/// Without WRITE on its dead-letter topic the creator's subscription pauses too: events that
/// would be dead-lettered are neither written there nor dropped, and are dead-lettered once
/// WRITE is granted again.
#[test]
fn a_subscription_pauses_unauthorized_while_its_creator_may_not_write_the_dead_letter_topic() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    make_topics(&s, &["src", "dlq"]);
    let write = acl("TOPIC", "dlq", "WRITE");
    let needs = [
        acl("SUBSCRIPTION", "fwd", "ALL"),
        acl("TOPIC", "src", "READ"),
        write.clone(),
    ];
    grant(&s, &needs);
    // Nothing listens on port 9: every delivery fails and, after one attempt, is dead-lettered.
    let spec = json!({"name": "fwd", "sources": ["src"], "target": {"url": "http://127.0.0.1:9/"},
                      "delivery": {"max_attempts": 1}, "dead_letter_topic": "dlq",
                      "start": "earliest"});
    let (st, v) = call(&s, ALICE, "POST", "/subscriptions", Some(spec));
    assert_eq!(st, 201, "{v}");
    publish(&s, "src", &[1]);
    wait_state(&s, "fwd", |v| v["counters"]["dead_lettered"] == 1);
    let (st, _) = call(
        &s,
        ADMIN,
        "DELETE",
        "/acls?resource_name=dlq&operation=WRITE",
        None,
    );
    assert_eq!(st, 200);
    wait_state(&s, "fwd", |v| v["state"] == "unauthorized");
    audited(dir.path(), "fwd", &["\"denied\"", "TOPIC:dlq", "WRITE"]);
    publish(&s, "src", &[2, 3]);
    std::thread::sleep(Duration::from_millis(1500));
    let v = wait_state(&s, "fwd", |v| v["state"] == "unauthorized");
    assert_eq!(
        stored(&s, "dlq"),
        1,
        "no letter written while unauthorized: {v}"
    );
    assert_eq!(v["counters"]["dropped"], 0, "{v}");
    grant(&s, &[write]);
    let v = wait_state(&s, "fwd", |v| v["counters"]["dead_lettered"] == 3);
    assert_eq!(v["counters"]["dropped"], 0, "{v}");
    assert_eq!(values(&s, "dlq"), [1, 2, 3].map(|n| json!(n)));
}

/// A subscription whose creator is deleted (DELETE /users/{name}) pauses `unauthorized`, though
/// its ACLs stay (as in Kafka), and resumes, nothing skipped, if the user is created again.
/// A super user's subscription runs on whether or not the super user is a stored user.
#[test]
fn a_subscription_pauses_unauthorized_once_its_creator_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    make_topics(&s, &["src", "dst", "dst2"]);
    let needs = [
        acl("SUBSCRIPTION", "fwd", "ALL"),
        acl("TOPIC", "src", "READ"),
        acl("TOPIC", "dst", "WRITE"),
    ];
    grant(&s, &needs);
    let spec =
        json!({"name": "fwd", "sources": ["src"], "target": {"topic": "dst"}, "start": "earliest"});
    let (st, v) = call(&s, ALICE, "POST", "/subscriptions", Some(spec));
    assert_eq!(st, 201, "{v}");
    let spec = json!({"name": "sup", "sources": ["src"], "target": {"topic": "dst2"},
                      "start": "earliest"});
    let (st, v) = call(&s, ADMIN, "POST", "/subscriptions", Some(spec));
    assert_eq!(st, 201, "{v}");
    publish(&s, "src", &[1, 2]);
    wait_state(&s, "fwd", |v| v["counters"]["delivered"] == 2);
    let (st, v) = call(&s, ADMIN, "DELETE", "/users/alice", None);
    assert!(st == 200 || st == 204, "{st} {v}");
    wait_state(&s, "fwd", |v| v["state"] == "unauthorized");
    audited(dir.path(), "fwd", &["\"denied\"", "User:alice", "deleted"]);
    publish(&s, "src", &[3]);
    std::thread::sleep(Duration::from_millis(1500));
    let v = wait_state(&s, "fwd", |v| v["state"] == "unauthorized");
    assert_eq!(v["lag"], 1, "positions stay: {v}");
    assert_eq!(stored(&s, "dst"), 2, "nothing delivered while unauthorized");
    wait_state(&s, "sup", |v| {
        v["state"] == "running" && v["counters"]["delivered"] == 3
    });
    let body = json!({"name": ALICE.0, "password": ALICE.1});
    let (st, v) = call(&s, ADMIN, "POST", "/users", Some(body));
    assert_eq!(st, 201, "{v}");
    wait_state(&s, "fwd", |v| {
        v["state"] == "running" && v["counters"]["delivered"] == 3
    });
    wait_values(&s, "dst", [1, 2, 3].map(|n| json!(n)));
}
