//! The schema registry's REST API through both mounts of the real HTTP front end (its own
//! listener and `/schema-registry/` on the main API): Confluent's media type, paths (`%2F` in
//! subjects, the trailing-slash compatibility path), Python's `True`/`False` booleans, the
//! `compatibilityLevel`/`compatibility` pair, error bodies and codes, unknown fields ignored and
//! `metadata` kept, deletes, and malformed or oversized bodies.

use busbar_broker::{Broker, BrokerConfig};
use busbar_bus::Bus;
use busbar_http::HttpConfig;
use busbar_schema::{Limits, Registry};
use busbar_testkit::http::request;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;

struct Server {
    main: SocketAddr,
    sr: SocketAddr,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(limits: Limits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let broker = Arc::new(
                    Broker::open(BrokerConfig {
                        data_dir: data,
                        ..Default::default()
                    })
                    .unwrap(),
                );
                let registry = Arc::new(Registry::open_for(&broker, limits).unwrap());
                let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let sr = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send((main.local_addr().unwrap(), sr.local_addr().unwrap()))
                    .unwrap();
                let bus = Arc::new(Bus::open(broker.clone()).unwrap());
                let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                let one = busbar_http::serve_schema_registry(
                    sr,
                    bus.clone(),
                    registry.clone(),
                    HttpConfig::default(),
                    wait(stopped.clone()),
                );
                let two = busbar_http::serve_with(
                    main,
                    bus.clone(),
                    Some(registry.clone()),
                    HttpConfig::default(),
                    wait(stopped),
                );
                let (a, b) = tokio::join!(one, two);
                a.unwrap();
                b.unwrap();
                registry.close().unwrap();
                bus.close().await.unwrap();
                broker.close().unwrap();
            });
        });
        let (main, sr) = rx.recv().unwrap();
        Self {
            main,
            sr,
            _dir: dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// A request to the registry's own listener (`main` false) or under `/schema-registry`.
    fn call(&self, main: bool, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (addr, path) = if main {
            (self.main, format!("/schema-registry{path}"))
        } else {
            (self.sr, path.to_string())
        };
        let ct = [("content-type", "application/vnd.schemaregistry.v1+json")];
        let headers: &[(&str, &str)] = if body.is_some() { &ct } else { &[] };
        let r = request(addr, method, &path, headers, body.unwrap_or("").as_bytes()).unwrap();
        let media = r
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.clone());
        assert_eq!(
            media.as_deref(),
            Some("application/vnd.schemaregistry.v1+json"),
            "{method} {path}"
        );
        let v =
            serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON: {}", r.text()));
        (r.status, v)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn schema_body(schema: &Value, extra: Value) -> String {
    let mut body = json!({"schema": schema.to_string()});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body.to_string()
}

fn v(fields: Value) -> Value {
    json!({"type": "record", "name": "R", "fields": fields})
}

fn code(got: (u16, Value)) -> (u16, u64) {
    (got.0, got.1["error_code"].as_u64().unwrap_or(0))
}

#[test]
fn both_mounts_answer_confluents_api() {
    let s = Server::start(Limits::default());
    let v1 = v(json!([{"name": "a", "type": "string"}]));
    // Registered on the registry's listener, with fields a newer client sends and one unknown.
    let extra = json!({"schemaType": "AVRO", "references": [], "metadata": {"properties": {"owner": "shop"}},
        "ruleSet": null, "someFutureField": 1});
    let (st, reg) = s.call(
        false,
        "POST",
        "/subjects/team%2Forders/versions?normalize=False",
        Some(&schema_body(&v1, extra)),
    );
    assert_eq!(
        (st, reg["id"].clone(), reg["version"].clone()),
        (200, json!(1), json!(1)),
        "{reg}"
    );
    // Read back under /schema-registry/ on the main API, the subject's '/' sent as %2F.
    let (st, got) = s.call(true, "GET", "/subjects/team%2Forders/versions/latest", None);
    assert_eq!(st, 200, "{got}");
    assert_eq!(got["subject"], "team/orders");
    assert_eq!(got["metadata"]["properties"]["owner"], "shop");
    assert!(got.get("schemaType").is_none(), "AVRO is not named: {got}");
    assert_eq!(
        s.call(true, "GET", "/subjects", None),
        (200, json!(["team/orders"]))
    );
    assert_eq!(
        s.call(false, "GET", "/schemas/types", None).1,
        json!(["JSON", "PROTOBUF", "AVRO"])
    );
    let (_, by_id) = s.call(false, "GET", "/schemas/ids/1?subject=team%2Forders", None);
    assert_eq!(
        by_id["schema"],
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#
    );
    // Lookup, and the compatibility check with and without a version, trailing slash, verbose=True.
    assert_eq!(
        s.call(
            false,
            "POST",
            "/subjects/team%2Forders",
            Some(&schema_body(&v1, json!({})))
        )
        .1["version"],
        1
    );
    let v3 = v(json!([{"name": "a", "type": "string"}, {"name": "b", "type": "int"}]));
    for path in [
        "/compatibility/subjects/team%2Forders/versions/",
        "/compatibility/subjects/team%2Forders/versions",
        "/compatibility/subjects/team%2Forders/versions/latest?verbose=True",
    ] {
        let (st, c) = s.call(false, "POST", path, Some(&schema_body(&v3, json!({}))));
        assert_eq!(
            (st, c["is_compatible"].clone()),
            (200, json!(false)),
            "{path}: {c}"
        );
    }
    let (_, c) = s.call(
        false,
        "POST",
        "/compatibility/subjects/team%2Forders/versions/1?verbose=true",
        Some(&schema_body(&v3, json!({}))),
    );
    assert!(c["messages"][0].as_str().unwrap().contains("\"b\""), "{c}");
    assert_eq!(
        code(s.call(
            false,
            "POST",
            "/subjects/team%2Forders/versions",
            Some(&schema_body(&v3, json!({})))
        )),
        (409, 40901)
    );
    // Config: read compatibilityLevel, write compatibility; defaultToGlobal as Python sends it.
    assert_eq!(
        s.call(false, "GET", "/config", None).1,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    assert_eq!(
        code(s.call(false, "GET", "/config/team%2Forders", None)),
        (404, 40408)
    );
    assert_eq!(
        s.call(
            false,
            "GET",
            "/config/team%2Forders?defaultToGlobal=True",
            None
        )
        .1,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    assert_eq!(
        s.call(
            true,
            "PUT",
            "/config/team%2Forders",
            Some(r#"{"compatibility":"none"}"#)
        )
        .1,
        json!({"compatibility": "NONE"})
    );
    assert_eq!(
        code(s.call(
            false,
            "PUT",
            "/config",
            Some(r#"{"compatibility":"SIDEWAYS"}"#)
        )),
        (422, 42203)
    );
    assert_eq!(
        s.call(
            false,
            "POST",
            "/subjects/team%2Forders/versions",
            Some(&schema_body(&v3, json!({})))
        )
        .1["id"],
        2
    );
    assert_eq!(
        code(s.call(false, "PUT", "/mode", Some(r#"{"mode":"SOMETIMES"}"#))),
        (422, 42204)
    );
    // Errors.
    assert_eq!(
        code(s.call(false, "GET", "/subjects/nope/versions", None)),
        (404, 40401)
    );
    assert_eq!(
        code(s.call(false, "GET", "/subjects/team%2Forders/versions/9", None)),
        (404, 40402)
    );
    assert_eq!(
        code(s.call(false, "GET", "/subjects/team%2Forders/versions/0", None)),
        (422, 42202)
    );
    assert_eq!(
        code(s.call(false, "GET", "/schemas/ids/77", None)),
        (404, 40403)
    );
    assert_eq!(
        code(s.call(
            false,
            "POST",
            "/subjects/x/versions",
            Some(r#"{"schema":"{\"type\":\"nope\"}"}"#)
        )),
        (422, 42201)
    );
    assert_eq!(
        code(s.call(false, "POST", "/subjects/x/versions", Some("{not json"))),
        (400, 400)
    );
    assert_eq!(s.call(true, "GET", "/no/such/route", None).0, 404);
    // Deletes: soft, then permanent; version numbers answered.
    assert_eq!(
        code(s.call(
            false,
            "DELETE",
            "/subjects/team%2Forders?permanent=true",
            None
        )),
        (404, 40405)
    );
    assert_eq!(
        s.call(false, "DELETE", "/subjects/team%2Forders/versions/2", None),
        (200, json!(2))
    );
    assert_eq!(
        s.call(
            false,
            "GET",
            "/subjects/team%2Forders/versions?deleted=True",
            None
        )
        .1,
        json!([1, 2])
    );
    assert_eq!(
        s.call(false, "DELETE", "/subjects/team%2Forders", None),
        (200, json!([1]))
    );
    assert_eq!(
        s.call(
            false,
            "DELETE",
            "/subjects/team%2Forders?permanent=True",
            None
        ),
        (200, json!([1, 2]))
    );
    assert_eq!(
        s.call(false, "GET", "/subjects?deleted=true", None).1,
        json!([])
    );
}

#[test]
fn oversized_and_hostile_bodies_answer_422() {
    let s = Server::start(Limits {
        schema_bytes_max: 2048,
        depth_max: 16,
        ..Limits::default()
    });
    let big = json!({"type": "enum", "name": "E", "symbols": (0..500).map(|i| format!("S{i}")).collect::<Vec<_>>()});
    assert_eq!(
        code(s.call(
            false,
            "POST",
            "/subjects/s/versions",
            Some(&schema_body(&big, json!({})))
        )),
        (422, 42209)
    );
    let mut nested = json!("int");
    for _ in 0..60 {
        nested = json!({"type": "array", "items": nested});
    }
    assert_eq!(
        code(s.call(
            false,
            "POST",
            "/subjects/s/versions",
            Some(&schema_body(&nested, json!({})))
        )),
        (422, 42201)
    );
    assert_eq!(
        code(s.call(
            false,
            "POST",
            "/subjects/s/versions",
            Some(r#"{"schema": 5}"#)
        )),
        (422, 42201)
    );
    assert_eq!(
        code(s.call(
            false,
            "POST",
            "/subjects/s/versions",
            Some(r#"{"schema":"\"int\"","schemaType":"XML"}"#)
        )),
        (422, 42201)
    );
    assert_eq!(s.call(false, "GET", "/subjects", None), (200, json!([])));
}

/// Errors other layers make answer in the registry's shape on both mounts: a body over axum's
/// 2 MB limit (413), a subject that is not UTF-8 once percent-decoded (400), and the config of
/// a subject the registry does not know (40401, as Confluent; 40408 for one it knows).
#[test]
fn errors_of_other_layers_answer_in_the_registrys_shape() {
    let s = Server::start(Limits::default());
    let big = format!(r#"{{"schema": "{}"}}"#, "x".repeat(3 << 20));
    for main in [false, true] {
        let (status, body) = s.call(main, "POST", "/subjects/s/versions", Some(&big));
        assert_eq!((status, &body["error_code"]), (413, &json!(413)), "{body}");
        let (status, body) = s.call(main, "GET", "/subjects/%FF%FE/versions", None);
        assert_eq!((status, &body["error_code"]), (400, &json!(400)), "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert_eq!(
            code(s.call(main, "DELETE", "/config/nobody", None)),
            (404, 40401)
        );
    }
    let v1 = v(json!([{"name": "a", "type": "string"}]));
    let body = schema_body(&v1, json!({}));
    assert_eq!(
        s.call(false, "POST", "/subjects/known/versions", Some(&body))
            .0,
        200
    );
    assert_eq!(
        code(s.call(false, "DELETE", "/config/known", None)),
        (404, 40408)
    );
    assert_eq!(
        s.call(
            false,
            "PUT",
            "/config/known",
            Some(r#"{"compatibility":"FULL"}"#)
        )
        .0,
        200
    );
    assert_eq!(
        s.call(true, "DELETE", "/config/known", None),
        (200, json!({"compatibilityLevel": "FULL"}))
    );
    assert_eq!(
        s.call(false, "GET", "/subjects", None),
        (200, json!(["known"]))
    );
    // The registry's requests are timed by route template, the same on both mounts.
    assert_eq!(s.call(true, "GET", "/subjects/known/versions", None).0, 200);
    let metrics = request(s.main, "GET", "/metrics", &[], b"").unwrap().text();
    let count = |route: &str| {
        let series = format!(
            "busbar_request_latency_seconds_count{{api=\"schema_registry\",request=\"{route}\"}} "
        );
        (metrics.lines())
            .find_map(|l| l.strip_prefix(series.as_str()))
            .map(|v| v.trim().to_string())
    };
    // Two refused bodies (413, one per mount) and one registration.
    let posts = count("POST /subjects/{subject}/versions");
    assert_eq!(posts.as_deref(), Some("3"), "{metrics}");
    // Two paths that are not UTF-8 (400) and one read.
    let reads = count("GET /subjects/{subject}/versions");
    assert_eq!(reads.as_deref(), Some("3"));
    assert_eq!(count("DELETE /config/{subject}").as_deref(), Some("4"));
}

/// Avro names are compared as Avro writes them: a dotted name and a name with its namespace
/// are one schema (one id, one version), served in Avro's form.
#[test]
fn avro_full_names_decide_identity() {
    let s = Server::start(Limits::default());
    let dotted = json!({"type": "record", "name": "a.X", "fields": [{"name": "f", "type": "int"}]});
    let spaced = json!({"type": "record", "name": "X", "namespace": "a",
        "fields": [{"name": "f", "type": "int"}]});
    let (st, one) = s.call(
        false,
        "POST",
        "/subjects/s/versions",
        Some(&schema_body(&dotted, json!({}))),
    );
    assert_eq!(st, 200, "{one}");
    let (st, two) = s.call(
        false,
        "POST",
        "/subjects/s/versions",
        Some(&schema_body(&spaced, json!({}))),
    );
    assert_eq!((st, &two["id"]), (200, &one["id"]), "{two}");
    let (st, found) = s.call(
        false,
        "POST",
        "/subjects/s",
        Some(&schema_body(&spaced, json!({}))),
    );
    assert_eq!((st, &found["version"]), (200, &json!(1)), "{found}");
    assert_eq!(
        s.call(false, "GET", "/subjects/s/versions", None).1,
        json!([1])
    );
    let (_, latest) = s.call(false, "GET", "/subjects/s/versions/latest", None);
    assert_eq!(
        latest["schema"],
        r#"{"type":"record","name":"X","namespace":"a","fields":[{"name":"f","type":"int"}]}"#
    );
}

/// Null optional fields read as absent, as Confluent's entities do: `"references": null` and
/// `"schemaType": null` register an Avro schema without references.
#[test]
fn null_optional_fields_read_as_absent() {
    let s = Server::start(Limits::default());
    let v1 = v(json!([{"name": "a", "type": "string"}]));
    let extra = json!({"schemaType": null, "references": null, "metadata": null});
    let (st, reg) = s.call(
        false,
        "POST",
        "/subjects/nulls/versions",
        Some(&schema_body(&v1, extra)),
    );
    assert_eq!((st, reg["id"].clone()), (200, json!(1)), "{reg}");
    let (st, got) = s.call(false, "GET", "/subjects/nulls/versions/1", None);
    assert_eq!(st, 200, "{got}");
    assert!(got.get("schemaType").is_none(), "AVRO: {got}");
    assert!(got.get("references").is_none(), "{got}");
}
