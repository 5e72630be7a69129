//! The Avro checker's bounds and Confluent's parse rules, through the public API: the
//! compatibility check stays fast on schemas built to blow it up (records nested in unions, huge
//! unions) and stops at its step budget; `parse_shared` accepts a type defined again identically
//! (what diamond references need); field defaults must match their types as Java Avro validates
//! them.

use busbar_log::disk::MemFs;
use busbar_schema::avro::{self, Avro};
use busbar_schema::{Compatibility, Limits, Reference, Registry, SchemaInput};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn open(fs: &MemFs) -> Registry {
    Registry::open(
        Arc::new(fs.dir("schemas")),
        Arc::new(busbar_log::SystemClock),
        Limits::default(),
    )
    .expect("opens")
}

fn input(schema: &Value, refs: &[(&str, &str, i64)]) -> SchemaInput {
    SchemaInput {
        schema: schema.to_string(),
        references: (refs.iter())
            .map(|(name, subject, version)| Reference {
                name: name.to_string(),
                subject: subject.to_string(),
                version: *version,
            })
            .collect(),
        ..SchemaInput::default()
    }
}

fn parse(schema: &Value) -> Avro {
    Avro::parse(&schema.to_string(), &Avro::default(), 10_000).expect("parses")
}

/// The review's schema: level i's record has two fields, both `["null", R{i+1}]`.
fn nested(i: usize, n: usize, last_field: &str) -> Value {
    if i == n {
        return json!({"type": "record", "name": format!("R{i}"),
            "fields": [{"name": last_field, "type": "int"}]});
    }
    json!({"type": "record", "name": format!("R{i}"), "fields": [
        {"name": "x", "type": ["null", nested(i + 1, n, last_field)]},
        {"name": "y", "type": ["null", format!("R{}", i + 1)]}]})
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

#[test]
fn records_nested_in_unions_check_in_linear_time() {
    let old = parse(&nested(0, 21, "z"));
    let renamed = parse(&nested(0, 21, "z2"));
    let (same, took) = timed(|| avro::can_read(&old, &old));
    assert_eq!(same, Ok(()));
    assert!(
        took < Duration::from_secs(1),
        "compatible check took {took:?}"
    );
    let (changed, took) = timed(|| avro::can_read(&renamed, &old));
    let messages = changed.expect_err("a renamed field without default cannot read");
    assert!(
        took < Duration::from_secs(1),
        "incompatible check took {took:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("\"z2\" has no default value")),
        "{messages:?}"
    );
}

#[tokio::test]
async fn the_registry_check_of_the_reviews_schema_answers_in_well_under_a_second() {
    let fs = MemFs::new();
    let r = open(&fs);
    r.register("e21", input(&nested(0, 21, "z"), &[]))
        .await
        .unwrap();
    let (messages, took) = timed(|| r.check("e21", None, &input(&nested(0, 21, "z2"), &[])));
    assert!(!messages.unwrap().is_empty(), "incompatible");
    assert!(took < Duration::from_secs(1), "check took {took:?}");
}

fn enums(n: usize, first_symbol: &str) -> Value {
    let branches: Vec<Value> = (0..n)
        .map(|i| json!({"type": "enum", "name": format!("E{i}"), "symbols": [first_symbol]}))
        .collect();
    Value::Array(branches)
}

#[test]
fn a_union_of_thousands_of_named_types_checks_in_linear_time() {
    let old = parse(&enums(6000, "A"));
    let (same, took) = timed(|| avro::can_read(&old, &old));
    assert_eq!(same, Ok(()));
    assert!(took < Duration::from_secs(1), "union check took {took:?}");
    let other = parse(&enums(6000, "B"));
    let (changed, took) = timed(|| avro::can_read(&other, &old));
    assert!(changed.is_err());
    assert!(took < Duration::from_secs(2), "union check took {took:?}");
}

#[test]
fn a_check_past_its_step_budget_is_refused_naming_the_budget() {
    let old = parse(&nested(0, 21, "z"));
    let limits = avro::Limits {
        steps_max: 50,
        ..avro::Limits::default()
    };
    let messages = avro::can_read_with(&old, &old, &limits).expect_err("over budget");
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].contains("more than 50 steps"), "{messages:?}");
    assert_eq!(
        avro::can_read_with(&old, &old, &avro::Limits::default()),
        Ok(())
    );
}

#[test]
fn a_long_chain_of_named_types_is_refused_at_the_depth_limit_not_by_overflowing_the_stack() {
    // R{i} has one field of type R{i-1}, referred to by name: no nesting in the text. The
    // reader's field "a" (with a default) is not compared, so "b" starts at the top of the chain.
    let chain: Vec<Value> = (0..20_000)
        .map(|i| match i {
            0 => json!({"type": "record", "name": "R0", "fields": [{"name": "f", "type": "int"}]}),
            _ => json!({"type": "record", "name": format!("R{i}"),
                "fields": [{"name": "f", "type": format!("R{}", i - 1)}]}),
        })
        .collect();
    let top = |first: &str| {
        json!({"type": "record", "name": "Top", "fields": [
            {"name": first, "type": chain.clone(), "default": {"f": 1}},
            {"name": "b", "type": "R19999"}]})
    };
    let (reader, writer) = (parse(&top("a")), parse(&top("c")));
    let messages = avro::can_read(&reader, &writer).expect_err("too deep");
    assert!(messages[0].contains("more than 128 deep"), "{messages:?}");
}

#[test]
fn recursive_types_are_compared_to_the_end() {
    let list = |tail_field: &str, tail_type: &str| {
        json!({"type": "record", "name": "Node", "fields": [
            {"name": "next", "type": ["null", "Node"]},
            {"name": "kids", "type": {"type": "array", "items": "Node"}},
            {"name": tail_field, "type": tail_type}]})
    };
    let old = parse(&list("v", "int"));
    assert_eq!(avro::can_read(&old, &old), Ok(()));
    assert_eq!(avro::can_read(&parse(&list("v", "long")), &old), Ok(()));
    let narrower = parse(&list("v", "string"));
    assert!(avro::can_read(&narrower, &old).is_err());
}

#[test]
fn a_name_redefined_differently_is_still_refused() {
    let e = |symbols: Value| json!({"type": "enum", "name": "E", "symbols": symbols});
    let same = json!([{"type": "array", "items": e(json!(["A"]))}, {"type": "map", "values": e(json!(["A"]))}]);
    assert!(Avro::parse_shared(&same.to_string(), &Avro::default(), 64).is_ok());
    let err = Avro::parse(&same.to_string(), &Avro::default(), 64).unwrap_err();
    assert!(err.contains("already defined"), "{err}");
    let differs = json!([{"type": "array", "items": e(json!(["A"]))}, {"type": "map", "values": e(json!(["B"]))}]);
    let err = Avro::parse_shared(&differs.to_string(), &Avro::default(), 64).unwrap_err();
    assert!(err.contains("already defined"), "{err}");
    let inner_same_name = json!({"type": "record", "name": "R", "fields": [
        {"name": "r", "type": {"type": "record", "name": "R", "fields": []}}]});
    assert!(Avro::parse_shared(&inner_same_name.to_string(), &Avro::default(), 64).is_err());
    let common =
        json!({"type": "record", "name": "Common", "fields": [{"name": "c", "type": "int"}]});
    let known = parse(&common);
    let again = Avro::parse_shared(&common.to_string(), &known, 64).expect("identical");
    assert_eq!(again.named, known.named);
}

fn field(ty: Value, default: Value) -> Value {
    json!({"type": "record", "name": "X", "fields": [{"name": "n", "type": ty, "default": default}]})
}

#[tokio::test]
async fn field_defaults_must_match_their_types() {
    let fs = MemFs::new();
    let r = open(&fs);
    r.set_config(Some("d"), Compatibility::None).await.unwrap();
    let enum_e = json!({"type": "enum", "name": "E", "symbols": ["A", "B"]});
    let inner = json!({"type": "record", "name": "In", "fields": [
        {"name": "a", "type": "int"}, {"name": "b", "type": "string", "default": "x"}]});
    let bad = [
        field(json!("int"), json!("abc")),
        field(json!(["null", "int"]), json!(5)),
        field(json!(["int", "null"]), json!(null)),
        field(json!("int"), json!(null)),
        field(json!("int"), json!(2_147_483_648_i64)),
        field(json!("int"), json!(1.5)),
        field(json!("long"), json!(u64::MAX)),
        field(json!("boolean"), json!(0)),
        field(json!("string"), json!(1)),
        field(json!({"type": "array", "items": "int"}), json!([1, "a"])),
        field(json!({"type": "map", "values": "int"}), json!({"k": "v"})),
        field(inner.clone(), json!({"b": "y"})),
        field(inner.clone(), json!({"a": "1"})),
        field(enum_e.clone(), json!(1)),
        field(json!("double"), json!("1.0")),
    ];
    for schema in &bad {
        let err = r.register("d", input(schema, &[])).await.unwrap_err();
        assert_eq!(err.code(), 42201, "{schema}: {err}");
        assert!(err.to_string().contains("default"), "{schema}: {err}");
    }
    let good = [
        field(json!("int"), json!(5)),
        field(json!(["null", "int"]), json!(null)),
        field(json!(["int", "null"]), json!(-3)),
        field(json!("long"), json!(9_007_199_254_740_993_i64)),
        field(json!("double"), json!(1)),
        field(json!("float"), json!(1.5)),
        field(json!("bytes"), json!("\u{00ff}")),
        field(
            json!({"type": "fixed", "name": "F", "size": 2}),
            json!("ab"),
        ),
        field(enum_e, json!("B")),
        field(json!({"type": "array", "items": "int"}), json!([1, 2])),
        field(json!({"type": "map", "values": "int"}), json!({"k": 1})),
        field(inner, json!({"a": 1})),
        field(json!("null"), json!(null)),
    ];
    for schema in &good {
        r.register("d", input(schema, &[]))
            .await
            .expect("valid default");
    }
}
#[tokio::test]
async fn diamond_references_share_a_type() {
    let fs = MemFs::new();
    let r = open(&fs);
    let common =
        json!({"type": "record", "name": "Common", "fields": [{"name": "c", "type": "int"}]});
    r.register("common", input(&common, &[])).await.unwrap();
    let a = json!({"type": "record", "name": "A", "fields": [{"name": "c", "type": "Common"}]});
    r.register("ra", input(&a, &[("Common", "common", 1)]))
        .await
        .unwrap();
    let top = json!({"type": "record", "name": "Top", "fields": [
        {"name": "a", "type": "A"}, {"name": "c", "type": "Common"}]});
    for refs in [
        [("Common", "common", 1), ("A", "ra", 1)],
        [("A", "ra", 1), ("Common", "common", 1)],
    ] {
        r.register("top", input(&top, &refs))
            .await
            .expect("diamond");
    }
}

#[tokio::test]
async fn a_chain_of_diamond_references_resolves_each_reference_once() {
    // L{i} references L{i-1} under two names: resolving every path would parse L0 2^n times.
    let fs = MemFs::new();
    let r = open(&fs);
    let l0 = json!({"type": "record", "name": "L0", "fields": [{"name": "c", "type": "int"}]});
    r.register("l0", input(&l0, &[])).await.unwrap();
    let start = Instant::now();
    for i in 1..=18 {
        let prev = format!("l{}", i - 1);
        let schema = json!({"type": "record", "name": format!("L{i}"),
            "fields": [{"name": "p", "type": format!("L{}", i - 1)}]});
        let refs = [("a", prev.as_str(), 1), ("b", prev.as_str(), 1)];
        r.register(&format!("l{i}"), input(&schema, &refs))
            .await
            .expect("registers");
    }
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "18 levels took {took:?}");
}
