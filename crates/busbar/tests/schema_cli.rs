//! `busbar schema` (issue 17) through the real binary against a real `busbar serve`: every
//! subcommand in both output styles, the registry's refusals (error_code, message, exit 1), an
//! incompatible check and registration (409), credentials, and bad arguments refused before any
//! request (exit 2, even with no server to reach).

mod common;

use common::{cli_at, json_out, stderr, stdout, Server};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Output;

const V1: &str = r#"{"type": "record", "name": "Order", "namespace": "shop",
  "fields": [{"name": "id", "type": "string"}]}"#;
const V2: &str = r#"{"type": "record", "name": "Order", "namespace": "shop",
  "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "double", "default": 0}]}"#;
/// Incompatible with V2 under BACKWARD: a new field without a default.
const V3: &str = r#"{"type": "record", "name": "Order", "namespace": "shop",
  "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "double", "default": 0},
             {"name": "customer", "type": "string"}]}"#;

/// A server with the registry only under `/schema-registry/` (no second listener to collide on).
fn server(dir: &Path, env: &[(&str, &str)]) -> Server {
    Server::start(dir, &["--schema-registry-addr", ""], env)
}

/// Writes `text` to `name` in `dir`.
fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `busbar schema ARGS` against `s`.
fn schema(s: &Server, args: &[&str]) -> Output {
    s.cli(&[&["schema"], args].concat())
}

/// `busbar --output json schema ARGS` against `s`: its JSON answer.
fn schema_json(s: &Server, args: &[&str]) -> Value {
    json_out(&s.cli(&[&["--output", "json", "schema"], args].concat()))
}

/// Exit code and stderr of a command that must fail.
fn failed(o: &Output) -> (i32, String) {
    assert!(!o.status.success(), "succeeded: {}", stdout(o));
    (o.status.code().unwrap(), stderr(o))
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}", stderr(o));
    stdout(o)
}

#[test]
fn register_get_list_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(&dir.path().join("data"), &[]);
    let v1 = file(dir.path(), "v1.avsc", V1);
    let v2 = file(dir.path(), "v2.avsc", V2);
    let (v1, v2) = (v1.to_str().unwrap(), v2.to_str().unwrap());

    let out = ok(&schema(&s, &["register", "orders-value", "--file", v1]));
    assert_eq!(out.trim(), "orders-value: version 1, id 1");
    let v = schema_json(&s, &["register", "orders-value", "-f", v2, "--normalize"]);
    assert_eq!(
        (v["id"].clone(), v["version"].clone()),
        (json!(2), json!(2)),
        "{v}"
    );
    // The same schema again answers its existing version.
    let out = ok(&schema(&s, &["register", "orders-value", "--file", v1]));
    assert_eq!(out.trim(), "orders-value: version 1, id 1");

    let out = ok(&schema(&s, &["get", "orders-value"]));
    let head = out.lines().next().unwrap();
    assert_eq!(
        head, "subject orders-value  version 2  id 2  type AVRO",
        "{out}"
    );
    assert!(out.contains("\"amount\""), "{out}");
    let text = ok(&schema(
        &s,
        &["get", "orders-value", "--version", "1", "--schema-only"],
    ));
    let parsed: Value = serde_json::from_str(&text).expect("the schema alone");
    assert_eq!(parsed["name"], "Order", "{text}");
    let v = schema_json(&s, &["get", "orders-value", "--version", "latest"]);
    assert_eq!(
        (v["version"].clone(), v["subject"].clone()),
        (json!(2), json!("orders-value"))
    );
    let out = ok(&schema(&s, &["get", "--id", "1"]));
    assert!(
        out.starts_with("id 1  type AVRO  in orders-value v1\n"),
        "{out}"
    );
    let v = schema_json(&s, &["get", "--id", "2"]);
    assert!(v["schema"].as_str().unwrap().contains("amount"), "{v}");

    ok(&schema(&s, &["register", "other", "--file", v1]));
    assert_eq!(ok(&schema(&s, &["list"])), "SUBJECT\norders-value\nother\n");
    assert_eq!(schema_json(&s, &["list"]), json!(["orders-value", "other"]));
    assert_eq!(
        schema_json(&s, &["list", "--prefix", "ord"]),
        json!(["orders-value"])
    );
    let out = ok(&schema(&s, &["list", "orders-value"]));
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["VERSION", "ID", "TYPE", "DELETED"],
            vec!["1", "1", "AVRO", "-"],
            vec!["2", "2", "AVRO", "-"]
        ],
        "{out}"
    );
    assert_eq!(schema_json(&s, &["list", "orders-value"]), json!([1, 2]));

    // Soft, then hard delete of one version; then of the subject.
    let out = ok(&schema(&s, &["delete", "orders-value", "--version", "1"]));
    assert!(
        out.starts_with("orders-value: version 1 deleted (soft"),
        "{out}"
    );
    assert_eq!(schema_json(&s, &["list", "orders-value"]), json!([2]));
    let out = ok(&schema(&s, &["list", "orders-value", "--deleted"]));
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[1], ["1", "1", "AVRO", "yes"], "{out}");
    assert_eq!(rows[2], ["2", "2", "AVRO", "-"], "{out}");
    let (code, err) = failed(&schema(&s, &["get", "orders-value", "--version", "1"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("(40402, HTTP 404)"), "{err}");
    let out = ok(&schema(
        &s,
        &["get", "orders-value", "--version", "1", "--deleted"],
    ));
    assert!(
        out.lines().next().unwrap().ends_with("deleted yes"),
        "{out}"
    );
    let v = schema_json(
        &s,
        &["delete", "orders-value", "--version", "1", "--permanent"],
    );
    assert_eq!(v, json!(1));
    let out = ok(&schema(&s, &["delete", "orders-value"]));
    assert!(
        out.starts_with("orders-value: version 2 deleted (soft"),
        "{out}"
    );
    assert_eq!(schema_json(&s, &["list"]), json!(["other"]));
    let out = ok(&schema(&s, &["list", "--deleted"]));
    assert_eq!(
        out.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        [
            vec!["SUBJECT", "DELETED"],
            vec!["orders-value", "yes"],
            vec!["other", "-"]
        ],
        "{out}"
    );
    let out = ok(&schema(&s, &["delete", "orders-value", "--permanent"]));
    assert_eq!(out.trim(), "orders-value: version 2 permanently deleted");
    assert_eq!(schema_json(&s, &["list", "--deleted"]), json!(["other"]));
    let v = schema_json(&s, &["delete", "other"]);
    assert_eq!(v, json!([1]));

    // --type: a JSON Schema, answered with its schemaType.
    let js = r#"{"type": "object", "properties": {"id": {"type": "string"}}}"#;
    let js = file(dir.path(), "order.json", js);
    let reg = [
        "register",
        "orders-json",
        "--type",
        "json",
        "-f",
        js.to_str().unwrap(),
    ];
    assert_eq!(ok(&schema(&s, &reg)).trim(), "orders-json: version 1, id 3");
    let out = ok(&schema(&s, &["get", "orders-json"]));
    assert!(
        out.starts_with("subject orders-json  version 1  id 3  type JSON\n"),
        "{out}"
    );
    assert_eq!(schema_json(&s, &["get", "--id", "3"])["schemaType"], "JSON");
}

#[test]
fn check_says_why_and_an_incompatible_registration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(&dir.path().join("data"), &[]);
    let v1 = file(dir.path(), "v1.avsc", V1);
    let v2 = file(dir.path(), "v2.avsc", V2);
    let v3 = file(dir.path(), "v3.avsc", V3);
    let (v1, v2, v3) = (
        v1.to_str().unwrap(),
        v2.to_str().unwrap(),
        v3.to_str().unwrap(),
    );
    ok(&schema(&s, &["register", "orders-value", "--file", v1]));

    let out = ok(&schema(&s, &["check", "orders-value", "--file", v2]));
    assert_eq!(
        out.trim(),
        "compatible with orders-value (the versions its compatibility level checks)"
    );
    let out = ok(&schema(
        &s,
        &[
            "check",
            "orders-value",
            "--file",
            v2,
            "--version",
            "1",
            "--verbose",
        ],
    ));
    assert_eq!(
        out,
        "compatible with orders-value (version 1)\nlevel BACKWARD (global)\n"
    );
    ok(&schema(&s, &["register", "orders-value", "--file", v2]));

    // v3 against v2: exit 1 with the registry's reasons.
    let o = schema(
        &s,
        &["check", "orders-value", "--file", v3, "--version", "latest"],
    );
    let (code, err) = failed(&o);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not compatible with orders-value"), "{err}");
    let out = stdout(&o);
    assert!(
        out.starts_with("incompatible with orders-value (version latest)\n"),
        "{out}"
    );
    assert!(
        out.contains("customer"),
        "the reason names the field: {out}"
    );
    let o = s.cli(&[
        "--output",
        "json",
        "schema",
        "check",
        "orders-value",
        "-f",
        v3,
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["is_compatible"], false, "{v}");
    assert!(!v["messages"].as_array().unwrap().is_empty(), "{v}");

    // Registering it: the registry's 409 and 40901, nothing registered.
    let (code, err) = failed(&schema(&s, &["register", "orders-value", "--file", v3]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("(40901, HTTP 409)"), "{err}");
    assert!(err.to_lowercase().contains("incompatible"), "{err}");
    assert_eq!(schema_json(&s, &["list", "orders-value"]), json!([1, 2]));

    // Other refusals keep the registry's code and message.
    let (code, err) = failed(&schema(&s, &["get", "nope"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("(40401, HTTP 404)") && err.contains("nope"),
        "{err}"
    );
    let bad = file(dir.path(), "bad.avsc", r#"{"type": "record", "name": "X"}"#);
    let (code, err) = failed(&schema(
        &s,
        &["register", "x", "--file", bad.to_str().unwrap()],
    ));
    assert_eq!(code, 1);
    assert!(err.contains("(42201, HTTP 422)"), "{err}");
    let (code, err) = failed(&schema(&s, &["get", "--id", "99"]));
    assert_eq!(code, 1);
    assert!(err.contains("(40403, HTTP 404)"), "{err}");
}

#[test]
fn config_and_mode_global_and_per_subject() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(&dir.path().join("data"), &[]);
    let v1 = file(dir.path(), "v1.avsc", V1);
    let v1 = v1.to_str().unwrap();
    ok(&schema(&s, &["register", "orders-value", "--file", v1]));

    assert_eq!(ok(&schema(&s, &["config"])), "global: level BACKWARD\n");
    assert_eq!(
        ok(&schema(&s, &["config", "orders-value"])),
        "orders-value: level BACKWARD (global)\n"
    );
    let out = ok(&schema(
        &s,
        &["config", "orders-value", "--set", "full_transitive"],
    ));
    assert_eq!(out, "orders-value: level set to FULL_TRANSITIVE\n");
    assert_eq!(
        schema_json(&s, &["config", "orders-value"]),
        json!({"compatibilityLevel": "FULL_TRANSITIVE"})
    );
    assert_eq!(
        ok(&schema(&s, &["config", "orders-value", "--delete"])),
        "orders-value: level FULL_TRANSITIVE removed\n"
    );
    let v = schema_json(&s, &["config", "--set", "NONE"]);
    assert_eq!(v, json!({"compatibility": "NONE"}));
    assert_eq!(
        ok(&schema(&s, &["config", "orders-value"])),
        "orders-value: level NONE (global)\n"
    );

    assert_eq!(ok(&schema(&s, &["mode"])), "global: mode READWRITE\n");
    let out = ok(&schema(&s, &["mode", "orders-value", "--set", "READONLY"]));
    assert_eq!(out, "orders-value: mode set to READONLY\n");
    let (code, err) = failed(&schema(&s, &["register", "orders-value", "--file", v1]));
    assert_eq!(code, 1);
    assert!(err.contains("(42205, HTTP 422)"), "{err}");
    assert_eq!(
        ok(&schema(&s, &["mode", "orders-value"])),
        "orders-value: mode READONLY\n"
    );
    let out = ok(&schema(&s, &["mode", "orders-value", "--delete"]));
    assert_eq!(out, "orders-value: mode READONLY removed\n");
    // IMPORT over a subject with schemas needs --force.
    let (code, err) = failed(&schema(&s, &["mode", "orders-value", "--set", "import"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("(42205, HTTP 422)"), "{err}");
    let v = schema_json(&s, &["mode", "orders-value", "--set", "IMPORT", "--force"]);
    assert_eq!(v, json!({"mode": "IMPORT"}));
    assert_eq!(
        schema_json(&s, &["mode", "orders-value"]),
        json!({"mode": "IMPORT"})
    );
}

#[test]
fn references_standard_input_and_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("BUSBAR_AUTH_ENABLED", "true"),
        ("BUSBAR_AUTH_SUPER_USERS", "admin"),
        ("BUSBAR_ADMIN_PASSWORD", "admin-secret-1"),
    ];
    let s = server(&dir.path().join("data"), &env);
    let admin = ["--user", "admin", "--password", "admin-secret-1"];
    let as_admin = |args: &[&str]| s.cli(&[&admin[..], &["schema"], args].concat());

    let (code, err) = failed(&schema(&s, &["list"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("HTTP 401"), "{err}");

    let customer = r#"{"type": "record", "name": "Customer", "namespace": "shop",
        "fields": [{"name": "name", "type": "string"}]}"#;
    let o = s.cli_stdin(
        &[
            &admin[..],
            &["schema", "register", "customer-value", "--file", "-"],
        ]
        .concat(),
        customer,
    );
    assert_eq!(ok(&o).trim(), "customer-value: version 1, id 1");
    let order = r#"{"type": "record", "name": "Order", "namespace": "shop",
        "fields": [{"name": "customer", "type": "shop.Customer"}]}"#;
    let order = file(dir.path(), "order.avsc", order);
    let order = order.to_str().unwrap();
    let refs = ["--reference", "shop.Customer=customer-value:latest"];
    let reg = [&["register", "orders-value", "--file", order][..], &refs].concat();
    assert_eq!(ok(&as_admin(&reg)).trim(), "orders-value: version 1, id 2");
    let out = ok(&as_admin(&["get", "orders-value"]));
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[1], ["REFERENCE", "SUBJECT", "VERSION"], "{out}");
    assert_eq!(lines[2], ["shop.Customer", "customer-value", "1"], "{out}");
    let check = [&["check", "orders-value", "--file", order][..], &refs].concat();
    ok(&as_admin(&check));
    // Without the reference the type is unknown: the registry says so.
    let (code, err) = failed(&as_admin(&["check", "orders-value", "--file", order]));
    assert_eq!(code, 1);
    assert!(err.contains("(42201, HTTP 422)"), "{err}");
}

/// With no server to reach, a request would exit 3: these exit 2, so none was sent.
#[test]
fn bad_arguments_are_refused_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let url = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let good = file(dir.path(), "good.avsc", V1);
    let big = file(dir.path(), "big.avsc", &" ".repeat((1 << 20) + 1));
    let binary = dir.path().join("binary.avsc");
    std::fs::write(&binary, [b'"', 0xff, b'"']).unwrap();
    let empty = file(dir.path(), "empty.avsc", "\n");
    let p = |f: &PathBuf| f.to_str().unwrap().to_string();
    let missing = dir.path().join("missing.avsc");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["register".into(), "s".into(), "--file".into(), p(&missing)],
            "cannot read",
        ),
        (
            vec![
                "register".into(),
                "s".into(),
                "--file".into(),
                p(&dir.path().to_path_buf()),
            ],
            "cannot read",
        ),
        (
            vec!["register".into(), "s".into(), "--file".into(), p(&big)],
            "larger than 1048576 bytes",
        ),
        (
            vec!["check".into(), "s".into(), "--file".into(), p(&binary)],
            "not UTF-8",
        ),
        (
            vec!["register".into(), "s".into(), "--file".into(), p(&empty)],
            "empty",
        ),
        (vec!["register".into(), "s".into()], "--file"),
        (
            vec![
                "register".into(),
                "s".into(),
                "-f".into(),
                p(&good),
                "--reference".into(),
                "Customer".into(),
            ],
            "is not name=subject:version",
        ),
        (
            vec![
                "register".into(),
                "s".into(),
                "-f".into(),
                p(&good),
                "--reference".into(),
                "C=c".into(),
            ],
            "no `:version`",
        ),
        (
            vec![
                "check".into(),
                "s".into(),
                "-f".into(),
                p(&good),
                "--reference".into(),
                "C=c:0".into(),
            ],
            "is not latest or a version",
        ),
        (
            vec![
                "register".into(),
                "s".into(),
                "-f".into(),
                p(&good),
                "--type".into(),
                "XML".into(),
            ],
            "XML",
        ),
        (vec!["get".into()], "--id"),
        (
            vec!["get".into(), "s".into(), "--id".into(), "1".into()],
            "cannot be used with",
        ),
        (vec!["get".into(), "--id".into(), "0".into()], "0"),
        (
            vec!["get".into(), "s".into(), "--version".into(), "0".into()],
            "is not latest or a version",
        ),
        (
            vec!["delete".into(), "s".into(), "--version".into(), "x".into()],
            "is not latest or a version",
        ),
        (
            vec!["list".into(), "s".into(), "--prefix".into(), "p".into()],
            "cannot be used with",
        ),
        (
            vec!["config".into(), "--set".into(), "SIDEWAYS".into()],
            "SIDEWAYS",
        ),
        (
            vec![
                "config".into(),
                "--set".into(),
                "FULL".into(),
                "--delete".into(),
            ],
            "cannot be used with",
        ),
        (vec!["mode".into(), "--force".into()], "--set"),
        (
            vec!["mode".into(), "--set".into(), "WRITEONLY".into()],
            "WRITEONLY",
        ),
    ];
    for (args, says) in cases {
        let args: Vec<&str> = [
            &["schema"][..],
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        ]
        .concat();
        let o = cli_at(&url, &args, None);
        let (code, err) = failed(&o);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // The same good file reaches for the server: exit 3, so the cases above stopped earlier.
    let o = cli_at(
        &url,
        &["schema", "register", "s", "--file", &p(&good)],
        None,
    );
    assert_eq!(failed(&o).0, 3);
}

/// A server that is not busbar: answers every request with 200 and `body`.
fn impostor(body: &'static str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                use std::io::{BufRead, BufReader, Read, Write};
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                let mut length = 0usize;
                while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                // The body read too: closing with it unread would reset the connection before
                // the client reads the answer.
                let mut body_in = vec![0; length];
                let _ = reader.read_exact(&mut body_in);
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    url
}

#[test]
fn a_server_that_is_not_busbar_is_named_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let good = file(dir.path(), "good.avsc", V1);
    let good = good.to_str().unwrap();
    for body in ["", "{}", "\"x\"", "[{}]", "<html>hello</html>"] {
        let url = impostor(body);
        for args in [
            &["list"][..],
            &["list", "s"],
            &["get", "s"],
            &["get", "--id", "1"],
            &["delete", "s"],
            &["register", "s", "--file", good],
            &["check", "s", "--file", good],
            &["config", "s"],
            &["mode", "--set", "READONLY"],
        ] {
            let o = cli_at(&url, &[&["schema"], args].concat(), None);
            let (code, err) = failed(&o);
            assert_eq!(code, 3, "{body:?} {args:?}: {err}");
            assert!(
                err.contains("not a busbar server"),
                "{body:?} {args:?}: {err}"
            );
            assert_eq!(stdout(&o), "", "{body:?} {args:?}");
        }
    }
}
