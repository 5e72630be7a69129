//! `/openapi.json` against the real router, both ways: a walk calls every documented operation
//! (in an order that gives each something to act on) and checks that each answer's status is
//! documented for it and its body matches the documented schema, and that every request body
//! sent matches the documented request schema; at the end every documented operation must have
//! answered a documented 2xx. Methods a documented path does not list answer 405, unknown paths
//! 404, and the router is built only from annotated routes.

mod common;

use busbar_testkit::http::request;
use common::Server;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// A minimal JSON Schema check for the keywords utoipa emits (`$ref`, `type` incl. lists,
/// `properties`, `required`, `additionalProperties`, `items`, `oneOf`, `allOf`, `enum`,
/// `minimum`). An error names the JSON path.
fn check(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        let target = &doc["components"]["schemas"][name];
        assert!(!target.is_null(), "unresolved {r}");
        return check(doc, target, v, at);
    }
    if let Some(all) = schema["allOf"].as_array() {
        for s in all {
            check(doc, s, v, at)?;
        }
    }
    if let Some(one) = schema["oneOf"].as_array() {
        let errors: Vec<String> = one
            .iter()
            .filter_map(|s| check(doc, s, v, at).err())
            .collect();
        match one.len() - errors.len() {
            1 => {}
            0 => return Err(format!("{at}: matches no oneOf: {}", errors.join("; "))),
            n => return Err(format!("{at}: matches {n} of oneOf: {v}")),
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !types.iter().any(|t| type_fits(t, v)) {
            return Err(format!("{at}: {v} is not {types:?}"));
        }
    }
    if let Some(e) = schema["enum"].as_array() {
        if !e.contains(v) {
            return Err(format!("{at}: {v} is not one of {e:?}"));
        }
    }
    if let (Some(min), Some(n)) = (schema["minimum"].as_f64(), v.as_f64()) {
        if n < min {
            return Err(format!("{at}: {n} < minimum {min}"));
        }
    }
    if let (Some(items), Some(a)) = (schema.get("items"), v.as_array()) {
        for (i, x) in a.iter().enumerate() {
            check(doc, items, x, &format!("{at}[{i}]"))?;
        }
    }
    if let Some(o) = v.as_object() {
        check_object(doc, schema, o, at)?;
    }
    Ok(())
}

fn check_object(
    doc: &Value,
    schema: &Value,
    o: &serde_json::Map<String, Value>,
    at: &str,
) -> Result<(), String> {
    let props = schema["properties"].as_object();
    for r in schema["required"].as_array().into_iter().flatten() {
        let r = r.as_str().unwrap();
        if !o.contains_key(r) {
            return Err(format!("{at}: required `{r}` missing"));
        }
    }
    for (k, x) in o {
        match (
            props.and_then(|p| p.get(k)),
            schema.get("additionalProperties"),
        ) {
            (Some(s), _) => check(doc, s, x, &format!("{at}.{k}"))?,
            (None, Some(Value::Bool(false))) => {
                return Err(format!("{at}: `{k}` is not a documented property"))
            }
            (None, Some(s @ Value::Object(_))) => check(doc, s, x, &format!("{at}.{k}"))?,
            (None, _) => {}
        }
    }
    Ok(())
}

fn type_fits(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => panic!("unknown type {t}"),
    }
}

/// A request body: content type and bytes.
enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

/// Walks the API, checking each answer against the document.
struct Walk {
    server: Server,
    doc: Value,
    /// (method, path template) → the statuses it answered.
    seen: BTreeMap<(String, String), BTreeSet<u16>>,
}

impl Walk {
    fn operation(&self, method: &str, template: &str) -> &Value {
        let op = &self.doc["paths"][template][method];
        assert!(op.is_object(), "{method} {template} is not documented");
        op
    }

    /// Calls `method path` (`template` is its documented path) and expects `status`; answers
    /// the parsed JSON body (or Null).
    fn call(&mut self, method: &str, template: &str, path: &str, body: Body, status: u16) -> Value {
        let op = self.operation(method, template).clone();
        let (ctype, bytes) = match &body {
            Body::None => (None, vec![]),
            Body::Json(v) => (Some("application/json"), v.to_string().into_bytes()),
            Body::Raw(c, b) => (Some(*c), b.clone()),
        };
        if let (Body::Json(v), true) = (&body, status < 300) {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            assert!(
                !schema.is_null(),
                "{method} {template}: no JSON request body documented"
            );
            check(&self.doc, schema, v, "request").unwrap_or_else(|e| {
                panic!("{method} {template}: the request {v} does not fit: {e}")
            });
        }
        let headers: Vec<(&str, &str)> = ctype.map(|c| ("content-type", c)).into_iter().collect();
        let r = request(
            self.server.addr,
            &method.to_uppercase(),
            path,
            &headers,
            &bytes,
        )
        .unwrap();
        assert_eq!(
            r.status,
            status,
            "{method} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let answer = &op["responses"][status.to_string()];
        assert!(
            answer.is_object(),
            "{method} {template} answered {status}, which is not documented"
        );
        self.seen
            .entry((method.into(), template.into()))
            .or_default()
            .insert(status);
        let ct = r.header("content-type").unwrap_or_default().to_string();
        let documented = answer["content"].as_object();
        if r.body.is_empty() {
            assert!(
                documented.is_none(),
                "{method} {template} {status}: empty body"
            );
            return Value::Null;
        }
        let media = ct.split(';').next().unwrap().trim().to_string();
        let content = documented
            .and_then(|c| c.get(&media))
            .unwrap_or_else(|| panic!("{method} {template} {status}: {media} is not documented"));
        if media != "application/json" {
            return Value::Null;
        }
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        check(&self.doc, &content["schema"], &v, "answer").unwrap_or_else(|e| {
            panic!("{method} {template} {status}: the answer does not fit its schema: {e}\n{v}")
        });
        v
    }

    /// A Server-Sent Events route: only the status line and headers are read.
    fn stream(&mut self, template: &str, path: &str, status: u16) {
        let op = self.operation("get", template).clone();
        let mut s = std::net::TcpStream::connect(self.server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).unwrap(), 1, "closed before the headers");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_lowercase();
        let got: u16 = head[9..12].parse().unwrap();
        assert_eq!(got, status, "GET {path}: {head}");
        assert!(
            op["responses"][status.to_string()].is_object(),
            "GET {template} {status} undocumented"
        );
        if status == 200 {
            assert!(head.contains("content-type: text/event-stream"), "{head}");
            assert!(op["responses"]["200"]["content"]["text/event-stream"].is_object());
        }
        self.seen
            .entry(("get".into(), template.into()))
            .or_default()
            .insert(status);
    }
}

fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(method).is_some() {
                ops.insert((method.to_string(), path.clone()));
            }
        }
    }
    ops
}

fn walk_topics_and_events(w: &mut Walk) {
    w.call("get", "/healthz", "/healthz", Body::None, 200);
    w.call("get", "/readyz", "/readyz", Body::None, 200);
    w.call("get", "/openapi.json", "/openapi.json", Body::None, 200);
    w.call("get", "/metrics", "/metrics", Body::None, 200);
    let create = json!({"name": "t", "partitions": 2, "configs": {"retention.ms": 86400000}});
    w.call(
        "post",
        "/topics",
        "/topics",
        Body::Json(create.clone()),
        201,
    );
    w.call("post", "/topics", "/topics", Body::Json(create), 409);
    w.call(
        "post",
        "/topics",
        "/topics",
        Body::Json(json!({"name": "u", "nope": 1})),
        400,
    );
    w.call(
        "post",
        "/topics",
        "/topics",
        Body::Raw("text/plain", b"t".to_vec()),
        415,
    );
    w.call("get", "/topics", "/topics", Body::None, 200);
    w.call("get", "/topics/{topic}", "/topics/t", Body::None, 200);
    w.call("get", "/topics/{topic}", "/topics/nope", Body::None, 404);
    let alter =
        json!({"configs": {"retention.ms": null, "segment.ms": "3600000"}, "partitions": 3});
    w.call(
        "patch",
        "/topics/{topic}",
        "/topics/t",
        Body::Json(alter),
        200,
    );
    let events = "/topics/{topic}/events";
    let batch = json!([{"key": "k", "value": {"a": 1}}, {"value": 2, "partition": 0,
        "headers": {"h": "v"}, "timestamp": "2026-01-01T00:00:00Z"}]);
    w.call("post", events, "/topics/t/events", Body::Json(batch), 200);
    let plain = Body::Raw("text/plain", b"hello".to_vec());
    w.call(
        "post",
        events,
        "/topics/t/events?key=k&partition=0",
        plain,
        200,
    );
    let ce = br#"{"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": {"x": 1}}"#;
    let ce = Body::Raw("application/cloudevents+json", ce.to_vec());
    w.call("post", events, "/topics/t/events", ce, 200);
    w.call(
        "post",
        events,
        "/topics/t/events",
        Body::Raw("image/png", vec![1]),
        415,
    );
    w.call(
        "post",
        events,
        "/topics/nope/events",
        Body::Json(json!({"value": 1})),
        404,
    );
    let read = "/topics/{topic}/partitions/{partition}/events";
    w.call(
        "get",
        read,
        "/topics/t/partitions/0/events?offset=0",
        Body::None,
        200,
    );
    let base64 = "/topics/t/partitions/0/events?encoding=base64";
    w.call("get", read, base64, Body::None, 200);
    w.call(
        "get",
        read,
        "/topics/t/partitions/0/events?offset=99",
        Body::None,
        416,
    );
    w.call(
        "get",
        read,
        "/topics/t/partitions/0/events?bogus=1",
        Body::None,
        400,
    );
    let stream = "/topics/{topic}/partitions/{partition}/stream";
    w.stream(stream, "/topics/t/partitions/0/stream?offset=0", 200);
    w.stream(stream, "/topics/nope/partitions/0/stream", 404);
    w.stream(stream, "/topics/t/partitions/0/stream?offset=99", 416);
    let delete = "/topics/{topic}/partitions/{partition}/delete-records";
    let at = |n: i64| Body::Json(json!({ "before_offset": n }));
    let path = "/topics/t/partitions/0/delete-records";
    w.call("post", delete, path, at(0), 200);
    w.call("post", delete, path, at(999), 416);
    w.call("post", delete, path, at(-2), 400);
    let nope = "/topics/nope/partitions/0/delete-records";
    w.call("post", delete, nope, at(0), 404);
}

fn walk_groups(w: &mut Walk) {
    let reset = "/groups/{group}/offsets/reset";
    let to = json!({"topic": "t", "to": "earliest"});
    w.call(
        "post",
        reset,
        "/groups/g/offsets/reset",
        Body::Json(to),
        200,
    );
    let to = json!({"topic": "t", "partitions": [0], "to": {"offset": 1}});
    w.call(
        "post",
        reset,
        "/groups/g/offsets/reset",
        Body::Json(to),
        200,
    );
    let to = json!({"topic": "nope", "to": "latest"});
    w.call(
        "post",
        reset,
        "/groups/g/offsets/reset",
        Body::Json(to),
        404,
    );
    w.call("get", "/groups", "/groups", Body::None, 200);
    w.call("get", "/groups/{group}", "/groups/g", Body::None, 200);
    w.call("get", "/groups/{group}", "/groups/nope", Body::None, 404);
    let join = json!({"topics": ["t"], "start": "earliest", "client_id": "walk"});
    let made = w.call(
        "post",
        "/groups/{group}/consumers",
        "/groups/g2/consumers",
        Body::Json(join),
        201,
    );
    let id = made["consumer_id"].as_str().unwrap();
    let one = "/groups/{group}/consumers/{consumer}";
    let base = format!("/groups/g2/consumers/{id}");
    w.call("get", one, &base, Body::None, 200);
    w.call("get", "/groups/{group}", "/groups/g2", Body::None, 200);
    let poll = "/groups/{group}/consumers/{consumer}/events";
    w.call(
        "get",
        poll,
        &format!("{base}/events?max=10"),
        Body::None,
        200,
    );
    w.call(
        "get",
        poll,
        &format!("{base}/events?encoding=x"),
        Body::None,
        400,
    );
    let commit = "/groups/{group}/consumers/{consumer}/commit";
    w.call("post", commit, &format!("{base}/commit"), Body::None, 200);
    w.call("delete", "/groups/{group}", "/groups/g2", Body::None, 409);
    w.call("delete", one, &base, Body::None, 204);
    w.call("get", one, &base, Body::None, 404);
    w.call("post", commit, &format!("{base}/commit"), Body::None, 404);
    w.call("get", poll, &format!("{base}/events"), Body::None, 404);
    w.call("delete", one, &base, Body::None, 404);
    let stream = "/groups/{group}/stream";
    w.stream(stream, "/groups/g3/stream?topics=t&start=earliest", 200);
    w.stream(stream, "/groups/g3/stream", 400);
    w.call("delete", "/groups/{group}", "/groups/g", Body::None, 204);
    w.call("delete", "/groups/{group}", "/groups/g", Body::None, 404);
    let rule = json!({"pattern": {"data": {"a": [1]}}, "event": {"data": {"a": 1}}});
    w.call("post", "/rules/test", "/rules/test", Body::Json(rule), 200);
    let bad = json!({"pattern": {"a": 1}, "event": {}});
    w.call("post", "/rules/test", "/rules/test", Body::Json(bad), 400);
}

fn walk_subscriptions(w: &mut Walk) {
    for t in ["dlq", "out"] {
        w.call(
            "post",
            "/topics",
            "/topics",
            Body::Json(json!({"name": t})),
            201,
        );
    }
    let spec = json!({"name": "s", "sources": ["t"], "start": "earliest",
        "pattern": {"data": {"a": [1]}}, "transform": {"paths": {"a": "$.data.a"}, "template": "<a>"},
        "target": {"topic": "out"}, "delivery": {"max_attempts": 3, "ordering": "none"},
        "dead_letter_topic": "dlq"});
    w.call(
        "post",
        "/subscriptions",
        "/subscriptions",
        Body::Json(spec.clone()),
        201,
    );
    w.call(
        "post",
        "/subscriptions",
        "/subscriptions",
        Body::Json(spec),
        409,
    );
    let bad = json!({"name": "x", "sources": ["t"], "target": {"topic": "out"}, "nope": 1});
    w.call(
        "post",
        "/subscriptions",
        "/subscriptions",
        Body::Json(bad),
        400,
    );
    // An HTTP target answering 404 (this server): each event is dead-lettered at once.
    let url = format!("http://{}/nope", w.server.addr);
    let failing = json!({"name": "bad", "sources": ["t"], "start": "earliest",
        "target": {"url": url, "headers": {"x-k": "v"}, "mode": "structured"},
        "dead_letter_topic": "dlq"});
    w.call(
        "post",
        "/subscriptions",
        "/subscriptions",
        Body::Json(failing),
        201,
    );
    w.call("get", "/subscriptions", "/subscriptions", Body::None, 200);
    let one = "/subscriptions/{name}";
    w.call("get", one, "/subscriptions/s", Body::None, 200);
    w.call("get", one, "/subscriptions/nope", Body::None, 404);
    let replace = json!({"sources": ["t"], "target": {"topic": "out"}, "dead_letter_topic": "dlq"});
    w.call(
        "put",
        one,
        "/subscriptions/s",
        Body::Json(replace.clone()),
        200,
    );
    w.call("put", one, "/subscriptions/nope", Body::Json(replace), 404);
    // A read sent back (read-only fields as read, header values masked) fits the documented
    // bodies and is accepted; a read-only field with a value a read could not show is a 400.
    let read = w.call("get", one, "/subscriptions/bad", Body::None, 200);
    w.call(
        "put",
        one,
        "/subscriptions/bad",
        Body::Json(read.clone()),
        200,
    );
    w.call("patch", one, "/subscriptions/bad", Body::Json(read), 200);
    let paused = json!({"state": "paused"});
    w.call("patch", one, "/subscriptions/s", Body::Json(paused), 400);
    let patch = json!({"delivery": {"max_attempts": 5}});
    w.call(
        "patch",
        one,
        "/subscriptions/s",
        Body::Json(patch.clone()),
        200,
    );
    let bad = json!({"sources": null});
    w.call("patch", one, "/subscriptions/s", Body::Json(bad), 400);
    w.call("patch", one, "/subscriptions/nope", Body::Json(patch), 404);
    w.call(
        "post",
        "/subscriptions/{name}/pause",
        "/subscriptions/s/pause",
        Body::None,
        200,
    );
    w.call(
        "post",
        "/subscriptions/{name}/resume",
        "/subscriptions/s/resume",
        Body::None,
        200,
    );
    w.call(
        "post",
        "/subscriptions/{name}/pause",
        "/subscriptions/nope/pause",
        Body::None,
        404,
    );
    let reset = "/subscriptions/{name}/reset";
    w.call(
        "post",
        reset,
        "/subscriptions/s/reset",
        Body::Json(json!({"to": "earliest"})),
        200,
    );
    let to = json!({"to": "offsets", "offsets": [{"topic": "t", "partition": 0, "offset": 1}]});
    w.call("post", reset, "/subscriptions/s/reset", Body::Json(to), 200);
    w.call(
        "post",
        reset,
        "/subscriptions/s/reset",
        Body::Json(json!({"to": "x"})),
        400,
    );
    let replays = "/subscriptions/{name}/replays";
    let run = json!({"name": "r1", "from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z", "rate": 1000});
    w.call(
        "post",
        replays,
        "/subscriptions/s/replays",
        Body::Json(run),
        202,
    );
    w.call("get", replays, "/subscriptions/s/replays", Body::None, 200);
    let replay = "/subscriptions/{name}/replays/{replay}";
    w.call(
        "get",
        replay,
        "/subscriptions/s/replays/r1",
        Body::None,
        200,
    );
    w.call(
        "delete",
        replay,
        "/subscriptions/s/replays/r1",
        Body::None,
        200,
    );
    w.call(
        "get",
        replay,
        "/subscriptions/s/replays/nope",
        Body::None,
        404,
    );
    walk_dead_letters(w);
    w.call("delete", "/topics/{topic}", "/topics/dlq", Body::None, 409);
    w.call("delete", one, "/subscriptions/s", Body::None, 204);
    w.call("delete", one, "/subscriptions/s", Body::None, 404);
    w.call("delete", "/topics/{topic}", "/topics/out", Body::None, 204);
    w.call("delete", "/topics/{topic}", "/topics/out", Body::None, 404);
}

fn walk_dead_letters(w: &mut Walk) {
    let list = "/dead-letters/{topic}";
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = w.call(
            "get",
            list,
            "/dead-letters/dlq?subscription=bad",
            Body::None,
            200,
        );
        if !got["dead_letters"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no dead letter from subscription `bad`"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    w.call("get", list, "/dead-letters/dlq?bogus=1", Body::None, 400);
    w.call("get", list, "/dead-letters/nope", Body::None, 404);
    let redrive = "/dead-letters/{topic}/redrive";
    let body = json!({"subscription": "bad", "limit": 10});
    w.call(
        "post",
        redrive,
        "/dead-letters/dlq/redrive",
        Body::Json(body),
        200,
    );
    let body = json!({"subscription": "bad", "force": 1});
    w.call(
        "post",
        redrive,
        "/dead-letters/dlq/redrive",
        Body::Json(body),
        400,
    );
}

/// Authentication is off here, so the ACL routes answer 409 `security_disabled` and change
/// nothing; their 2xx answers (with authentication on) are walked by busbar's tests/acls.rs.
fn walk_acls(w: &mut Walk) {
    let acl = json!({"resource_type": "TOPIC", "resource_name": "t", "principal": "User:alice",
                     "operation": "READ", "permission": "ALLOW"});
    let v = w.call("post", "/acls", "/acls", Body::Json(acl), 409);
    assert_eq!(v["error"]["code"], "security_disabled", "{v}");
    w.call(
        "get",
        "/acls",
        "/acls?principal=User:alice",
        Body::None,
        409,
    );
    w.call(
        "delete",
        "/acls",
        "/acls?resource_type=ANY",
        Body::None,
        409,
    );
}

/// Operations that cannot answer 2xx in this walk (authentication off): see [`walk_acls`].
const NO_2XX_WITHOUT_AUTH: [(&str, &str); 3] =
    [("get", "/acls"), ("post", "/acls"), ("delete", "/acls")];

fn walk_users(w: &mut Walk) {
    let alice = json!({"name": "alice", "password": "secret-1"});
    w.call("post", "/users", "/users", Body::Json(alice.clone()), 201);
    w.call("post", "/users", "/users", Body::Json(alice), 200);
    let bad = json!({"name": "a:b", "password": "x"});
    w.call("post", "/users", "/users", Body::Json(bad), 400);
    let listed = w.call("get", "/users", "/users", Body::None, 200);
    assert_eq!(listed["users"][0]["name"], "alice");
    assert!(!listed.to_string().contains("secret-1"));
    // Tokens: with authentication off the user is named.
    let ci = json!({"name": "ci", "user": "alice", "expires_in_s": 60});
    let made = w.call("post", "/tokens", "/tokens", Body::Json(ci.clone()), 201);
    assert!(
        made["token"].as_str().is_some_and(|t| t.len() >= 40),
        "{made}"
    );
    w.call("post", "/tokens", "/tokens", Body::Json(ci), 409);
    let nobody = json!({"name": "x"});
    w.call("post", "/tokens", "/tokens", Body::Json(nobody), 400);
    let listed = w.call("get", "/tokens", "/tokens?user=alice", Body::None, 200);
    assert_eq!(listed["tokens"][0]["name"], "ci");
    assert!(
        listed["tokens"][0].get("token").is_none(),
        "the secret is shown once"
    );
    w.call("get", "/tokens", "/tokens", Body::None, 400);
    let one = "/tokens/{name}";
    w.call("delete", one, "/tokens/ci?user=alice", Body::None, 204);
    w.call("delete", one, "/tokens/ci?user=alice", Body::None, 404);
    w.call("delete", "/users/{name}", "/users/alice", Body::None, 204);
    w.call("delete", "/users/{name}", "/users/alice", Body::None, 404);
}

fn walk_quotas(w: &mut Walk) {
    let alice = json!({"entity": {"user": "alice"}, "values": {"producer_byte_rate": 1048576.0}});
    let set = w.call("put", "/quotas", "/quotas", Body::Json(alice), 200);
    assert_eq!(set["values"]["producer_byte_rate"], 1048576.0);
    let bad = json!({"entity": {"ip": "10.0.0.1"}, "values": {"producer_byte_rate": 1.0}});
    w.call("put", "/quotas", "/quotas", Body::Json(bad), 400);
    let listed = w.call("get", "/quotas", "/quotas", Body::None, 200);
    assert_eq!(listed["quotas"][0]["entity"]["user"], "alice");
    let gone = json!({"entity": {"user": "alice"}});
    w.call(
        "delete",
        "/quotas",
        "/quotas",
        Body::Json(gone.clone()),
        204,
    );
    w.call("delete", "/quotas", "/quotas", Body::Json(gone), 404);
}

#[test]
fn every_documented_operation_answers_as_documented_and_nothing_else_is_served() {
    let server = Server::start();
    let (status, served) = server.json("GET", "/openapi.json", None);
    assert_eq!(status, 200);
    assert_eq!(&served, busbar_http::openapi_document());
    assert_eq!(served["openapi"], "3.1.0");
    let mut w = Walk {
        server,
        doc: served,
        seen: BTreeMap::new(),
    };
    walk_topics_and_events(&mut w);
    walk_groups(&mut w);
    walk_subscriptions(&mut w);
    walk_users(&mut w);
    walk_acls(&mut w);
    walk_quotas(&mut w);
    for op in documented_operations(&w.doc) {
        if NO_2XX_WITHOUT_AUTH.contains(&(op.0.as_str(), op.1.as_str())) {
            continue;
        }
        let statuses = w.seen.get(&op).cloned().unwrap_or_default();
        assert!(
            statuses.iter().any(|s| (200..300).contains(s)),
            "{} {} was never answered with a 2xx in the walk (saw {statuses:?})",
            op.0,
            op.1
        );
    }
    for (path, item) in w.doc["paths"].as_object().unwrap() {
        let concrete = path.replace("{partition}", "0").replace(['{', '}'], "");
        for method in METHODS.iter().filter(|m| item.get(**m).is_none()) {
            let r = request(w.server.addr, &method.to_uppercase(), &concrete, &[], b"").unwrap();
            assert_eq!(
                r.status, 405,
                "{method} {path} is served but not documented"
            );
        }
    }
    let r = request(w.server.addr, "GET", "/no/such/route", &[], b"").unwrap();
    assert_eq!(r.status, 404);
}

#[test]
fn every_operation_has_an_id_a_tag_and_documented_bodies() {
    let doc = busbar_http::openapi_document();
    let mut ids = BTreeSet::new();
    for (method, path) in documented_operations(doc) {
        let op = &doc["paths"][&path][&method];
        let id = op["operationId"].as_str().unwrap();
        assert!(ids.insert(id.to_string()), "operationId {id} twice");
        assert!(
            op["tags"].as_array().is_some_and(|t| !t.is_empty()),
            "{method} {path}: no tag"
        );
        for (status, answer) in op["responses"].as_object().unwrap() {
            let code: u16 = status.parse().unwrap();
            if code >= 400 {
                let schema = &answer["content"]["application/json"]["schema"]["$ref"];
                assert!(
                    schema == "#/components/schemas/ErrorBody" || path == "/readyz",
                    "{method} {path} {status}: no error body"
                );
            }
            if code != 204 && code < 400 {
                assert!(
                    answer["content"].is_object(),
                    "{method} {path} {status}: no body"
                );
            }
        }
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        for name in path.split('/').filter_map(|s| s.strip_prefix('{')) {
            let name = name.trim_end_matches('}');
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path"),
                "{method} {path}: path parameter {name} undocumented"
            );
        }
    }
    // The routes the hand-kept table missed.
    for (method, path) in [
        ("post", "/groups/{group}/consumers"),
        ("get", "/groups/{group}/consumers/{consumer}"),
        ("delete", "/groups/{group}/consumers/{consumer}"),
        ("get", "/groups/{group}/consumers/{consumer}/events"),
        ("post", "/groups/{group}/consumers/{consumer}/commit"),
        ("get", "/groups/{group}/stream"),
        ("get", "/topics/{topic}/partitions/{partition}/stream"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
}

#[test]
fn the_router_is_built_only_from_annotated_routes() {
    // `api()` registers each handler with utoipa-axum's `routes!`, which reads its
    // `#[utoipa::path]`; a plain `.route(...)` would serve a route the document lacks.
    let lib = include_str!("../src/lib.rs");
    for plain in [
        ".route(",
        ".route_service(",
        ".nest(",
        ".nest_service(",
        ".merge(",
    ] {
        assert!(
            !lib.contains(plain),
            "lib.rs registers a route with {plain}"
        );
    }
    assert!(lib.contains(".routes(routes!("));
}

/// Every request body has a schema with its fields (not a bare `object`: the PATCH body is a
/// merge patch of the subscription's fields), and the `Subscription` schema has every field a read
/// adds to the spec (`busbar_bus::patch::VIEW_FIELDS`: `owner`, `config_file`, ...).
#[test]
fn request_bodies_and_subscriptions_have_their_fields_described() {
    let doc = busbar_http::openapi_document();
    for (method, path) in documented_operations(doc) {
        let content = &doc["paths"][&path][&method]["requestBody"]["content"];
        for (ct, c) in content.as_object().into_iter().flatten() {
            assert_ne!(
                c["schema"],
                json!({"type": "object"}),
                "{method} {path} {ct}: body schema without fields"
            );
        }
    }
    let patch = &doc["paths"]["/subscriptions/{name}"]["patch"]["requestBody"]["content"];
    assert_eq!(
        patch["application/merge-patch+json"]["schema"]["$ref"],
        "#/components/schemas/SubscriptionPatch"
    );
    let fields = &doc["components"]["schemas"]["SubscriptionPatch"]["properties"];
    for f in [
        "name",
        "sources",
        "start",
        "pattern",
        "transform",
        "target",
        "delivery",
    ] {
        assert!(fields[f].is_object(), "SubscriptionPatch lacks {f}");
    }
    for schema in ["Subscription", "SubscriptionReplace", "SubscriptionPatch"] {
        let sub = &doc["components"]["schemas"][schema];
        let text = sub.to_string();
        for f in busbar_bus::patch::VIEW_FIELDS {
            assert!(
                text.contains(&format!("\"{f}\":")),
                "{schema} lacks {f}: {sub}"
            );
        }
    }
}

/// Every route that writes subscription state (create, PUT, PATCH, delete, pause, resume, reset,
/// replay, redrive) documents 507 (not stored durably: disk full or storage offline, as those
/// writes answer; busbar's `subscription_update` test fills a disk and checks the answers) and
/// 503 (shutting down) apart. Pause and resume listed neither; the others called a full disk 503.
#[test]
fn subscription_writes_document_507_for_storage_and_503_for_shutting_down() {
    let doc = busbar_http::openapi_document();
    let writes = documented_operations(doc).into_iter().filter(|(m, p)| {
        m != "get"
            && (p.starts_with("/subscriptions") || p.starts_with("/dead-letters"))
            && !(m == "delete" && p.contains("/replays/"))
    });
    let mut checked = 0;
    for (method, path) in writes {
        let responses = &doc["paths"][&path][&method]["responses"];
        let storage = responses["507"]["description"].as_str().unwrap_or_default();
        assert!(
            storage.contains("disk full"),
            "{method} {path}: 507 {storage:?}"
        );
        let down = responses["503"]["description"].as_str().unwrap_or_default();
        assert_eq!(down, "Shutting down", "{method} {path}: 503");
        checked += 1;
    }
    assert_eq!(
        checked, 9,
        "create, PUT, PATCH, delete, pause, resume, reset, replay, redrive"
    );
}
