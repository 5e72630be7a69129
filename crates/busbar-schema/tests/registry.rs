//! The registry through its public API on an in-memory disk: the compatibility vectors of
//! `shared/spec/schema-compat-vectors.json` through registration and the check, global and
//! stable ids, durability across a crash, soft and hard deletes with Confluent's codes, modes,
//! and the limits and hostile inputs (huge, deeply nested, malformed, unknown type).

use busbar_log::disk::MemFs;
use busbar_schema::{Compatibility, Limits, Mode, Registry, SchemaInput};
use serde_json::{json, Value};
use std::sync::Arc;

fn open(fs: &MemFs, limits: Limits) -> Registry {
    Registry::open(
        Arc::new(fs.dir("schemas")),
        Arc::new(busbar_log::SystemClock),
        limits,
    )
    .expect("opens")
}

fn avro(schema: &Value) -> SchemaInput {
    SchemaInput {
        schema: schema.to_string(),
        ..SchemaInput::default()
    }
}

fn record(fields: Value) -> Value {
    json!({"type": "record", "name": "myrecord", "fields": fields})
}

fn vectors() -> Vec<Value> {
    let text = include_str!("data/schema-compat-vectors.json");
    serde_json::from_str(text).expect("vectors parse")
}

async fn run_vector(v: &Value) -> Result<(), String> {
    let fs = MemFs::new();
    let r = open(&fs, Limits::default());
    let id = v["id"].as_str().unwrap();
    let input = |s: &Value| SchemaInput {
        schema: s.to_string(),
        schema_type: Some(v["format"].as_str().unwrap().to_string()),
        ..SchemaInput::default()
    };
    r.set_config(Some("s"), Compatibility::None).await.unwrap();
    for old in v["history"].as_array().unwrap() {
        r.register("s", input(old))
            .await
            .map_err(|e| format!("{id}: history: {e}"))?;
    }
    let level = Compatibility::parse(v["mode"].as_str().unwrap()).unwrap();
    r.set_config(Some("s"), level).await.unwrap();
    let new = input(&v["new_schema"]);
    let messages = r
        .check("s", None, &new)
        .map_err(|e| format!("{id}: check: {e}"))?;
    let registered = r.register("s", new).await;
    let want = v["compatible"].as_bool().unwrap();
    if messages.is_empty() != want {
        return Err(format!(
            "{id}: check said {messages:?}, vector says compatible={want}"
        ));
    }
    match (registered, want) {
        (Ok(_), true) => Ok(()),
        (Err(e), false) if e.code() == 40901 => Ok(()),
        (other, _) => Err(format!(
            "{id}: register answered {other:?}, vector says compatible={want}"
        )),
    }
}

async fn run_format(format: &str) {
    let mut failures = Vec::new();
    let mut n = 0;
    for v in vectors().iter().filter(|v| v["format"] == format) {
        n += 1;
        if let Err(e) = run_vector(v).await {
            failures.push(e);
        }
    }
    assert!(n > 0);
    assert!(
        failures.is_empty(),
        "{} of {n} {format} vectors fail: {failures:#?}",
        failures.len()
    );
}

#[tokio::test]
async fn every_avro_vector_passes_through_the_check_and_registration() {
    run_format("AVRO").await;
}

#[tokio::test]
async fn every_json_vector_passes_through_the_check_and_registration() {
    run_format("JSON").await;
}

#[tokio::test]
async fn ids_are_global_and_stable_and_survive_a_crash() {
    let fs = MemFs::new();
    let r = open(&fs, Limits::default());
    let v1 = record(json!([{"name": "f1", "type": "string"}]));
    let a = r.register("a-value", avro(&v1)).await.unwrap();
    assert_eq!((a.version.id, a.version.version, a.created), (1, 1, true));
    // Same schema, other whitespace and key order, in another subject: same id, its own version.
    let spaced = r#"{ "fields": [{"type": {"type": "string"}, "name": "f1"}], "name": "myrecord", "type": "record" }"#;
    let b = r
        .register(
            "b-value",
            SchemaInput {
                schema: spaced.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((b.version.id, b.version.version), (1, 1));
    // Again in the same subject: the existing version, nothing written.
    let again = r.register("a-value", avro(&v1)).await.unwrap();
    assert_eq!(
        (again.version.id, again.version.version, again.created),
        (1, 1, false)
    );
    let v2 = record(
        json!([{"name": "f1", "type": "string"}, {"name": "f2", "type": "int", "default": 0}]),
    );
    assert_eq!(
        r.register("a-value", avro(&v2)).await.unwrap().version.id,
        2
    );
    // Served canonical: {"type":"string"} reads back as "string".
    assert_eq!(
        r.by_id(1).unwrap().schema,
        r#"{"type":"record","name":"myrecord","fields":[{"name":"f1","type":"string"}]}"#
    );
    fs.crash(None);
    let r = open(&fs, Limits::default());
    assert_eq!(r.subjects(false, ""), vec!["a-value", "b-value"]);
    assert_eq!(r.versions("a-value", false).unwrap(), vec![1, 2]);
    assert_eq!(r.version("a-value", None, false).unwrap().id, 2);
    assert_eq!(
        r.holders(1, false).unwrap(),
        vec![("a-value".to_string(), 1), ("b-value".to_string(), 1)]
    );
}

#[tokio::test]
async fn a_hard_deleted_id_is_never_issued_again_even_after_a_restart() {
    let fs = MemFs::new();
    let r = open(&fs, Limits::default());
    let v1 = record(json!([{"name": "f1", "type": "string"}]));
    assert_eq!(r.register("s", avro(&v1)).await.unwrap().version.id, 1);
    assert_eq!(r.delete_subject("s", false).await.unwrap(), vec![1]);
    assert_eq!(r.delete_subject("s", true).await.unwrap(), vec![1]);
    assert_eq!(r.by_id(1).unwrap_err().code(), 40403);
    fs.crash(None);
    let r = open(&fs, Limits::default());
    let other = record(json!([{"name": "g", "type": "long"}]));
    let again = r.register("t", avro(&other)).await.unwrap();
    assert_eq!(again.version.id, 2, "id 1 was issued before");
}

#[tokio::test]
async fn deletes_follow_confluents_rules_and_codes() {
    let fs = MemFs::new();
    let r = open(&fs, Limits::default());
    let v1 = record(json!([{"name": "f1", "type": "string"}]));
    let v2 = record(
        json!([{"name": "f1", "type": "string"}, {"name": "f2", "type": "int", "default": 1}]),
    );
    r.register("s", avro(&v1)).await.unwrap();
    r.register("s", avro(&v2)).await.unwrap();
    let code = |e: busbar_schema::SchemaError| e.code();
    assert_eq!(
        r.delete_version("s", Some(1), true).await.map_err(code),
        Err(40407)
    );
    assert_eq!(r.delete_version("s", Some(1), false).await, Ok(1));
    assert_eq!(
        r.delete_version("s", Some(1), false).await.map_err(code),
        Err(40406)
    );
    assert_eq!(r.version("s", Some(1), false).map_err(code), Err(40402));
    assert!(r.version("s", Some(1), true).unwrap().deleted);
    assert_eq!(r.versions("s", false).unwrap(), vec![2]);
    assert_eq!(r.versions("s", true).unwrap(), vec![1, 2]);
    // The id of a soft-deleted version still answers (consumers read old data).
    assert!(r.by_id(1).is_ok());
    assert_eq!(r.delete_subject("s", true).await.map_err(code), Err(40405));
    assert_eq!(r.delete_subject("s", false).await, Ok(vec![2]));
    assert_eq!(r.delete_subject("s", false).await.map_err(code), Err(40404));
    assert!(r.subjects(false, "").is_empty());
    assert_eq!(r.subjects(true, ""), vec!["s"]);
    assert_eq!(r.delete_subject("s", true).await, Ok(vec![1, 2]));
    assert_eq!(r.delete_subject("s", false).await.map_err(code), Err(40401));
    assert_eq!(r.versions("nope", true).map_err(code), Err(40401));
    // A new registration starts again at version 1.
    assert_eq!(r.register("s", avro(&v1)).await.unwrap().version.version, 1);
}

#[tokio::test]
async fn levels_and_modes_are_kept_and_enforced() {
    let fs = MemFs::new();
    let r = open(&fs, Limits::default());
    assert_eq!(r.config(None, false).unwrap(), Compatibility::Backward);
    assert_eq!(r.config(Some("s"), false).unwrap_err().code(), 40408);
    assert_eq!(r.config(Some("s"), true).unwrap(), Compatibility::Backward);
    r.set_config(None, Compatibility::Full).await.unwrap();
    r.set_config(Some("s"), Compatibility::None).await.unwrap();
    assert_eq!(r.mode(Some("s"), false).unwrap_err().code(), 40409);
    r.set_mode(Some("ro"), Mode::Readonly, false).await.unwrap();
    let v1 = record(json!([{"name": "f1", "type": "string"}]));
    assert_eq!(r.register("ro", avro(&v1)).await.unwrap_err().code(), 42205);
    // IMPORT with explicit ids; an id naming another schema is 42207.
    r.set_mode(Some("imp"), Mode::Import, false).await.unwrap();
    let with_id = |s: &Value, id: i64| SchemaInput {
        schema: s.to_string(),
        id: Some(id),
        ..Default::default()
    };
    assert_eq!(
        r.register("imp", with_id(&v1, 100))
            .await
            .unwrap()
            .version
            .id,
        100
    );
    let v2 = record(json!([{"name": "x", "type": "int"}]));
    assert_eq!(
        r.register("imp", with_id(&v2, 100))
            .await
            .unwrap_err()
            .code(),
        42207
    );
    // An id outside IMPORT mode is refused.
    assert_eq!(
        r.register("s", with_id(&v2, 7)).await.unwrap_err().code(),
        42205
    );
    // New ids continue above the imported one.
    assert_eq!(r.register("s", avro(&v2)).await.unwrap().version.id, 101);
    fs.crash(None);
    let r = open(&fs, Limits::default());
    assert_eq!(r.config(None, false).unwrap(), Compatibility::Full);
    assert_eq!(r.config(Some("s"), false).unwrap(), Compatibility::None);
    assert_eq!(r.mode(Some("ro"), false).unwrap(), Mode::Readonly);
    assert_eq!(
        r.delete_config(Some("s")).await.unwrap(),
        Compatibility::None
    );
    assert_eq!(r.config(Some("s"), false).unwrap_err().code(), 40408);
}

#[tokio::test]
async fn limits_and_hostile_schemas_answer_422s() {
    let fs = MemFs::new();
    let limits = Limits {
        schema_bytes_max: 4096,
        subjects_max: 2,
        versions_per_subject_max: 2,
        depth_max: 16,
        ..Limits::default()
    };
    let r = open(&fs, limits);
    let code = |i: SchemaInput| async { r.register("s", i).await.unwrap_err().code() };
    let huge = json!({"type": "enum", "name": "e", "symbols": (0..2000).map(|i| format!("S{i}")).collect::<Vec<_>>()});
    assert_eq!(code(avro(&huge)).await, 42209);
    let mut nested = json!("string");
    for _ in 0..40 {
        nested = json!({"type": "array", "items": nested});
    }
    assert_eq!(code(avro(&nested)).await, 42201);
    let malformed = SchemaInput {
        schema: "{\"type\": \"record\", ".into(),
        ..Default::default()
    };
    assert_eq!(code(malformed).await, 42201);
    assert_eq!(code(avro(&json!({"type": "nosuchtype"}))).await, 42201);
    assert_eq!(
        code(avro(
            &json!({"type": "record", "name": "r", "fields": [{"name": "a", "type": "Missing"}]})
        ))
        .await,
        42201
    );
    let bad_type = SchemaInput {
        schema: "\"string\"".into(),
        schema_type: Some("XML".into()),
        ..Default::default()
    };
    assert_eq!(code(bad_type).await, 42201);
    let proto = SchemaInput {
        schema: "syntax = \"proto3\"; message {".into(),
        schema_type: Some("PROTOBUF".into()),
        ..Default::default()
    };
    assert_eq!(code(proto).await, 42201);
    assert_eq!(
        r.register("", avro(&json!("string")))
            .await
            .unwrap_err()
            .code(),
        42208
    );
    // Counting limits.
    r.set_config(None, Compatibility::None).await.unwrap();
    r.register("s", avro(&json!("string"))).await.unwrap();
    r.register("s", avro(&json!("int"))).await.unwrap();
    assert_eq!(code(avro(&json!("long"))).await, 42209);
    r.register("t", avro(&json!("long"))).await.unwrap();
    assert_eq!(
        r.register("u", avro(&json!("long")))
            .await
            .unwrap_err()
            .code(),
        42209
    );
    // A recursive type parses and checks without looping.
    let list = json!({"type": "record", "name": "Node", "fields": [
        {"name": "value", "type": "int"}, {"name": "next", "type": ["null", "Node"]}]});
    r.set_config(Some("t"), Compatibility::Full).await.unwrap();
    assert!(!r.check("t", None, &avro(&list)).unwrap().is_empty());
}

#[tokio::test]
async fn references_resolve_named_types_of_other_subjects() {
    let fs = MemFs::new();
    let r = open(&fs, Limits::default());
    let address = json!({"type": "record", "name": "Address", "namespace": "acme", "fields": [{"name": "city", "type": "string"}]});
    r.register("address", avro(&address)).await.unwrap();
    let order = json!({"type": "record", "name": "Order", "namespace": "acme", "fields": [{"name": "to", "type": "Address"}]});
    let with_ref = SchemaInput {
        schema: order.to_string(),
        references: vec![busbar_schema::Reference {
            name: "acme.Address".into(),
            subject: "address".into(),
            version: 1,
        }],
        ..Default::default()
    };
    let id = r.register("order", with_ref).await.unwrap().version.id;
    assert_eq!(r.referenced_by("address", Some(1)).unwrap(), vec![id]);
    assert_eq!(
        r.delete_version("address", Some(1), false)
            .await
            .unwrap_err()
            .code(),
        42206
    );
    // Without the reference the name is unknown.
    assert_eq!(
        r.register("order2", avro(&order)).await.unwrap_err().code(),
        42201
    );
}

#[tokio::test]
async fn a_damaged_log_refuses_to_open_naming_it() {
    use busbar_log::disk::{MemStorage, Storage};
    let storage = Arc::new(MemStorage::new());
    let clock: Arc<dyn busbar_log::Clock> = Arc::new(busbar_log::SystemClock);
    let r = Registry::open(storage.clone(), clock.clone(), Limits::default()).unwrap();
    r.register("a", avro(&json!("string"))).await.unwrap();
    r.register("b", avro(&json!("long"))).await.unwrap();
    r.close().unwrap();
    drop(r);
    let seg = (storage.list().unwrap().into_iter())
        .find(|n| n.ends_with(".log"))
        .expect("a segment");
    // A flipped byte inside the first batch's records (after the segment's and batch's headers):
    // its CRC no longer matches.
    let len = storage.open(&seg).unwrap().len();
    let mut byte = [0u8; 1];
    let at = (len / 4).max(100);
    busbar_log::disk::read_exact_at(storage.open(&seg).unwrap().as_ref(), at, &mut byte).unwrap();
    storage.corrupt(&seg, at, &[byte[0] ^ 0xff]).unwrap();
    let err = Registry::open(storage, clock, Limits::default()).unwrap_err();
    assert_eq!(err.code(), 50001);
    assert!(
        err.to_string().contains("internal/schemas") && err.to_string().contains("damaged"),
        "{err}"
    );
}

fn with_refs(schema: &Value, refs: &[(&str, &str, i64)]) -> SchemaInput {
    SchemaInput {
        schema: schema.to_string(),
        references: (refs.iter())
            .map(|(name, subject, version)| busbar_schema::Reference {
                name: name.to_string(),
                subject: subject.to_string(),
                version: *version,
            })
            .collect(),
        ..SchemaInput::default()
    }
}

#[tokio::test]
async fn reference_versions_are_pinned_at_registration_and_invalid_ones_refused() {
    let fs = MemFs::new();
    let r = open(&fs, Limits::default());
    let dep = json!({"type": "record", "name": "Dep", "fields": [{"name": "c", "type": "int"}]});
    r.register("dep", avro(&dep)).await.unwrap();
    let user = json!({"type": "record", "name": "U", "fields": [{"name": "d", "type": "Dep"}]});
    for bad in [-5, 0, -2, 1 << 40, 7] {
        let e = r
            .register("user", with_refs(&user, &[("Dep", "dep", bad)]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), 42201, "version {bad}: {e}");
    }
    let v = r
        .register("user", with_refs(&user, &[("Dep", "dep", -1)]))
        .await
        .unwrap()
        .version;
    assert_eq!(
        v.references[0].version, 1,
        "-1 is stored as the latest version"
    );
    assert_eq!(r.referenced_by("dep", Some(1)).unwrap(), vec![v.id]);
    // The same body again (what serializers send) is the same version, also after dep moves on.
    r.set_config(Some("dep"), Compatibility::None)
        .await
        .unwrap();
    let other =
        json!({"type": "record", "name": "Other", "fields": [{"name": "c", "type": "int"}]});
    r.register("dep", avro(&other)).await.unwrap();
    let again = r
        .register("user", with_refs(&user, &[("Dep", "dep", 1)]))
        .await
        .unwrap();
    assert!(!again.created);
    // A record replaced by a string is still refused under BACKWARD.
    let e = r
        .register("user", avro(&json!("string")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), 40901, "{e}");
    assert!(!r
        .check("user", None, &avro(&json!("string")))
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_earlier_version_that_no_longer_parses_fails_the_check_instead_of_passing_it() {
    let fs = MemFs::new();
    let r = open(&fs, Limits::default());
    let mut nested = json!("int");
    for _ in 0..10 {
        nested = json!({"type": "array", "items": nested});
    }
    r.register("s", avro(&nested)).await.unwrap();
    r.close().unwrap();
    drop(r);
    // A lowered depth_max: version 1 no longer parses.
    let r = open(
        &fs,
        Limits {
            depth_max: 4,
            ..Limits::default()
        },
    );
    let e = r.check("s", None, &avro(&json!("int"))).unwrap_err();
    assert_eq!(e.code(), 42201, "{e}");
    assert!(e.to_string().contains("version 1"), "{e}");
    let e = r
        .check("s", Some(Some(1)), &avro(&json!("int")))
        .unwrap_err();
    assert_eq!(e.code(), 42201, "{e}");
    let e = r.register("s", avro(&json!("int"))).await.unwrap_err();
    assert_eq!(e.code(), 42201, "{e}");
    // NONE checks nothing, so it needs no earlier version.
    r.set_config(Some("s"), Compatibility::None).await.unwrap();
    r.register("s", avro(&json!("int"))).await.unwrap();
}

#[tokio::test]
async fn a_reference_to_its_own_subject_is_pinned_and_cannot_make_a_cycle() {
    let fs = MemFs::new();
    let r = open(&fs, Limits::default());
    r.set_config(Some("cyc"), Compatibility::None)
        .await
        .unwrap();
    let t1 = json!({"type": "record", "name": "T1", "fields": [{"name": "c", "type": "int"}]});
    r.register("cyc", avro(&t1)).await.unwrap();
    let t2 = json!({"type": "record", "name": "T2", "fields": [{"name": "t", "type": "T1"}]});
    let body = with_refs(&t2, &[("T1", "cyc", -1)]);
    let v2 = r.register("cyc", body.clone()).await.unwrap().version;
    assert_eq!((v2.version, v2.references[0].version), (2, 1));
    // The body as stored (version 1) is the same version; the -1 body now means v2.
    let pinned = with_refs(&t2, &[("T1", "cyc", 1)]);
    let again = r.register("cyc", pinned).await.unwrap();
    assert_eq!((again.created, again.version.version), (false, 2));
    let u = json!({"type": "record", "name": "U", "fields": [{"name": "t", "type": "T2"}]});
    r.register("user", with_refs(&u, &[("T2", "cyc", -1)]))
        .await
        .expect("a reference to cyc at latest resolves");
    // A reference to a version of the subject that does not exist yet is refused.
    let e = r
        .register("cyc", with_refs(&t2, &[("T1", "cyc", 9)]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), 42201, "{e}");
    // v1 is what v2 uses: protected; v2 is not its own referrer.
    assert_eq!(
        r.delete_version("cyc", Some(1), false)
            .await
            .unwrap_err()
            .code(),
        42206
    );
    assert!(!r.referenced_by("cyc", Some(2)).unwrap().contains(&v2.id));
    // Whatever the -1 body does now, it never references its own new version.
    if let Ok(reg) = r.register("cyc", body).await {
        assert!(reg.version.references[0].version < i64::from(reg.version.version));
        r.delete_version("cyc", Some(reg.version.version), false)
            .await
            .expect("a version is not its own referrer");
    }
}

#[tokio::test]
async fn a_failed_store_write_never_lets_an_id_be_issued_twice() {
    use busbar_log::disk::FaultStorage;
    let fs = MemFs::new();
    let storage = FaultStorage::new(fs.dir("schemas"));
    let plan = storage.plan();
    let r = Registry::open(
        Arc::new(storage),
        Arc::new(busbar_log::SystemClock),
        Limits::default(),
    )
    .unwrap();
    let first = r.register("a", avro(&json!("string"))).await.unwrap();
    assert_eq!(first.version.id, 1);
    // The next write's sync fails: its batch may be on disk all the same.
    let mut failed = false;
    for extra in 0..4 {
        plan.fail_nth(plan.ops() + extra);
        if r.register("b", avro(&json!("long"))).await.is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "an injected fault fails a registration");
    plan.fail_nth(u64::MAX);
    let mut next = None;
    for _ in 0..3 {
        if let Ok(reg) = r.register("c", avro(&json!("int"))).await {
            next = Some(reg.version.id);
            break;
        }
    }
    let next = next.expect("a later registration succeeds");
    assert!(
        next > 2,
        "id 2 went to the failed write, the next got {next}"
    );
}

#[tokio::test]
async fn a_schema_too_big_for_one_stored_row_answers_42209_and_big_subjects_soft_delete() {
    let fs = MemFs::new();
    let r = open(
        &fs,
        Limits {
            schema_bytes_max: 4 << 20,
            ..Limits::default()
        },
    );
    let fields: Vec<Value> = (0..30_000)
        .map(|i| json!({"name": format!("f{i}"), "type": "int"}))
        .collect();
    let big = json!({"type": "record", "name": "Big", "fields": fields});
    let e = r.register("big", avro(&big)).await.unwrap_err();
    assert_eq!(e.code(), 42209, "{e}");
    // Versions totalling more than one batch of the internal log soft delete and hard delete.
    r.set_config(Some("many"), Compatibility::None)
        .await
        .unwrap();
    for n in 0..3 {
        let fields: Vec<Value> = (0..10_000)
            .map(|i| json!({"name": format!("g{n}_{i}"), "type": "int"}))
            .collect();
        let s = json!({"type": "record", "name": "M", "fields": fields});
        r.register("many", avro(&s)).await.unwrap();
    }
    assert_eq!(
        r.delete_subject("many", false).await.unwrap(),
        vec![1, 2, 3]
    );
    assert_eq!(r.delete_subject("many", true).await.unwrap(), vec![1, 2, 3]);
    r.close().unwrap();
    drop(r);
    let r = open(&fs, Limits::default());
    assert_eq!(r.versions("many", true).unwrap_err().code(), 40401);
}

#[tokio::test]
async fn subject_configs_and_modes_count_against_subjects_max() {
    let fs = MemFs::new();
    let r = open(
        &fs,
        Limits {
            subjects_max: 2,
            ..Limits::default()
        },
    );
    r.register("s1", avro(&json!("string"))).await.unwrap();
    r.set_config(Some("c1"), Compatibility::None).await.unwrap();
    let e = r
        .set_config(Some("c2"), Compatibility::None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), 42209, "{e}");
    let e = r
        .set_mode(Some("m1"), Mode::Readonly, false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), 42209, "{e}");
    // Known subjects keep working, and the config-only subject may get versions.
    r.set_config(Some("s1"), Compatibility::Full).await.unwrap();
    r.set_mode(Some("c1"), Mode::Readwrite, false)
        .await
        .unwrap();
    r.register("c1", avro(&json!("int"))).await.unwrap();
    let e = r.register("s3", avro(&json!("int"))).await.unwrap_err();
    assert_eq!(e.code(), 42209, "{e}");
}

#[tokio::test]
async fn import_refuses_the_last_version_and_id_and_versions_never_pass_2_31_minus_1() {
    let fs = MemFs::new();
    let r = open(&fs, Limits::default());
    r.set_mode(Some("vv"), Mode::Import, false).await.unwrap();
    let imported = |id: i64, version: i64, s: &str| SchemaInput {
        schema: s.into(),
        id: Some(id),
        version: Some(version),
        ..SchemaInput::default()
    };
    let max = i32::MAX as i64;
    let e = (r.register("vv", imported(5000, max, "\"string\"")).await).unwrap_err();
    assert_eq!(e.code(), 42209, "{e}");
    let e = (r.register("vv", imported(max, 1, "\"string\"")).await).unwrap_err();
    assert_eq!(e.code(), 42209, "{e}");
    r.register("vv", imported(max - 1, max - 1, "\"string\""))
        .await
        .unwrap();
    r.set_mode(Some("vv"), Mode::Readwrite, false)
        .await
        .unwrap();
    r.set_config(Some("vv"), Compatibility::None).await.unwrap();
    let v = r.register("vv", avro(&json!("int"))).await.unwrap().version;
    assert_eq!((v.version, v.id), (max as u32, max as u32));
    let e = r.register("vv", avro(&json!("long"))).await.unwrap_err();
    assert_eq!(e.code(), 42209, "{e}");
    assert!(r
        .versions("vv", false)
        .unwrap()
        .iter()
        .all(|v| *v <= max as u32));
}

fn json_schema(schema: &Value, refs: &[(&str, &str, i64)]) -> SchemaInput {
    SchemaInput {
        schema_type: Some("JSON".into()),
        ..with_refs(schema, refs)
    }
}

/// A JSON schema is checked with the schemas it references: pointing the same text at a
/// referenced schema that narrows a type is a new version, and BACKWARD refuses it.
#[tokio::test]
async fn json_compatibility_follows_references() {
    let fs = MemFs::new();
    let r = open(&fs, Limits::default());
    r.set_config(Some("addr"), Compatibility::None)
        .await
        .unwrap();
    let loose = json!({"type": "object", "properties": {"zip": {"type": "number"}}});
    let narrow = json!({"type": "object", "properties": {"zip": {"type": "integer"}}});
    r.register("addr", json_schema(&loose, &[])).await.unwrap();
    r.register("addr", json_schema(&narrow, &[])).await.unwrap();
    let person = json!({"type": "object", "properties": {"home": {"$ref": "addr.json"}}});
    r.register("person", json_schema(&person, &[("addr.json", "addr", 1)]))
        .await
        .unwrap();
    let refused = r
        .register("person", json_schema(&person, &[("addr.json", "addr", 2)]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), 40901, "{refused}");
    assert!(refused.to_string().contains("TYPE_NARROWED"), "{refused}");
    // Widening the referenced type again reads everything the first version wrote.
    r.set_config(Some("person"), Compatibility::Forward)
        .await
        .unwrap();
    r.register("person", json_schema(&person, &[("addr.json", "addr", 2)]))
        .await
        .unwrap();
}

/// The check budgets are the registry's limits: one too small to compare two records answers
/// incompatible, naming the limit.
#[tokio::test]
async fn the_check_budget_is_a_limit() {
    let fs = MemFs::new();
    let limits = Limits {
        check_steps_max: 2,
        ..Limits::default()
    };
    let r = open(&fs, limits);
    let fields = |n: usize| {
        (0..n)
            .map(|i| json!({"name": format!("f{i}"), "type": "int"}))
            .collect::<Vec<_>>()
    };
    r.register("s", avro(&record(json!(fields(5)))))
        .await
        .unwrap();
    let refused = r
        .register("s", avro(&record(json!(fields(6)))))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), 40901, "{refused}");
    assert!(refused.to_string().contains("steps"), "{refused}");
}

/// 10,000 subjects (the default `subjects_max`) all register, holding one global id, and the
/// next is refused with 42209; the refusal changes nothing and a restart keeps them all.
#[tokio::test]
async fn ten_thousand_subjects_then_a_clear_refusal() {
    let fs = MemFs::new();
    let r = open(&fs, Limits::default());
    let schema = avro(&record(json!([{"name": "f", "type": "int"}])));
    for i in 0..10_000 {
        let got = r.register(&format!("s-{i}"), schema.clone()).await.unwrap();
        assert_eq!(got.version.id, 1);
    }
    let refused = r.register("one-more", schema.clone()).await.unwrap_err();
    assert_eq!(refused.code(), 42209, "{refused}");
    assert!(refused.to_string().contains("subjects_max"), "{refused}");
    assert_eq!(r.subjects(false, "").len(), 10_000);
    r.close().unwrap();
    let r = open(&fs, Limits::default());
    assert_eq!(r.subjects(false, "").len(), 10_000);
    assert_eq!(
        r.register("one-more", schema).await.unwrap_err().code(),
        42209
    );
}

/// Two reference names for one referenced version both resolve (references are found by name,
/// as Confluent's): a compatible change is not refused for an unresolved `$ref`.
#[tokio::test]
async fn two_reference_names_for_one_version_both_resolve() {
    let fs = MemFs::new();
    let r = open(&fs, Limits::default());
    let addr = json!({"type": "object", "properties": {"zip": {"type": "string"}}});
    r.register("addr", json_schema(&addr, &[])).await.unwrap();
    let refs = [("a.json", "addr", 1), ("b.json", "addr", 1)];
    let person = |title: &str| {
        json!({"title": title, "type": "object", "properties": {
            "home": {"$ref": "a.json"}, "work": {"$ref": "b.json"}}})
    };
    r.register("person", json_schema(&person("v1"), &refs))
        .await
        .unwrap();
    let v2 = r
        .register("person", json_schema(&person("v2"), &refs))
        .await
        .unwrap();
    assert!(v2.created, "{v2:?}");
}
