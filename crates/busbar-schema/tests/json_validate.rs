//! JSON Schema payload validation through the public API (`json_validate::JsonValidator`):
//! errors name the instance path, `$ref`s resolve inside the schema and to the schema's
//! registry references, nothing else is fetched, draft-07 is the default draft, and hostile
//! schemas (self-referencing `$ref`s) fail or validate without crashing.

use busbar_schema::json_validate::JsonValidator;
use serde_json::{json, Value};

fn order() -> Value {
    json!({
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "items": {"type": "array", "items": {"$ref": "#/definitions/item"}}
        },
        "required": ["id"],
        "definitions": {
            "item": {"type": "object", "properties": {"price": {"type": "number", "minimum": 0}}}
        }
    })
}

#[test]
fn a_valid_value_passes_and_an_invalid_one_names_the_instance_path() {
    let v = JsonValidator::new(&order()).expect("compiles");
    assert_eq!(
        v.validate(&json!({"id": 1, "items": [{"price": 2}]})),
        Ok(())
    );
    let err = v
        .validate(
            &json!({"id": 1, "items": [{"price": 1}, {"price": 1}, {"price": 1}, {"price": -1}]}),
        )
        .expect_err("negative price");
    assert!(err.starts_with("at /items/3/price: "), "{err}");
    assert!(err.contains("minimum"), "{err}");
    let err = v.validate(&json!({"items": []})).expect_err("no id");
    assert!(err.starts_with("at /: "), "{err}");
    assert!(err.contains("\"id\""), "{err}");
    let err = v.validate(&json!("text")).expect_err("not an object");
    assert!(err.starts_with("at /: "), "{err}");
}

#[test]
fn references_resolve_to_the_schemas_given_by_name() {
    let schema = json!({"type": "object", "properties": {
        "customer": {"$ref": "customer.json"},
        "address": {"$ref": "https://example.com/address.json"}
    }});
    let refs = vec![
        (
            "customer.json".to_string(),
            json!({"type": "object", "required": ["name"]}),
        ),
        (
            "https://example.com/address.json".to_string(),
            json!({"type": "string"}),
        ),
    ];
    let v = JsonValidator::with_references(&schema, &refs).expect("compiles");
    assert_eq!(
        v.validate(&json!({"customer": {"name": "a"}, "address": "x"})),
        Ok(())
    );
    let err = v.validate(&json!({"customer": {}})).expect_err("no name");
    assert!(err.starts_with("at /customer: "), "{err}");
    let err = v
        .validate(&json!({"address": 3}))
        .expect_err("not a string");
    assert!(err.starts_with("at /address: "), "{err}");
}

#[test]
fn a_ref_that_is_not_a_reference_is_refused_and_nothing_is_fetched() {
    for target in [
        "other.json",
        "https://example.com/x.json",
        "file:///etc/passwd",
    ] {
        let schema = json!({"properties": {"a": {"$ref": target}}});
        let err = JsonValidator::new(&schema).expect_err("unresolvable");
        assert!(err.contains("cannot be compiled"), "{err}");
        assert!(err.contains("not one of the schema's references"), "{err}");
    }
}

#[test]
fn draft_07_is_the_default_and_schema_picks_another() {
    // Draft-07: an array `items` is a tuple. Draft 2020-12 would refuse it as a schema.
    let tuple = json!({"type": "array", "items": [{"type": "integer"}, {"type": "string"}]});
    let v = JsonValidator::new(&tuple).expect("compiles as draft-07");
    assert_eq!(v.validate(&json!([1, "a"])), Ok(()));
    let err = v.validate(&json!(["a", 1])).expect_err("tuple mismatch");
    assert!(err.starts_with("at /0: "), "{err}");
    let modern = json!({"$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "array", "prefixItems": [{"type": "integer"}]});
    let v = JsonValidator::new(&modern).expect("compiles as 2020-12");
    assert!(v.validate(&json!(["a"])).is_err());
}

#[test]
fn formats_and_patterns_are_checked() {
    let schema = json!({"type": "object", "properties": {
        "when": {"type": "string", "format": "date-time"},
        "code": {"type": "string", "pattern": "^[A-Z]{3}$"}
    }});
    let v = JsonValidator::new(&schema).expect("compiles");
    assert_eq!(
        v.validate(&json!({"when": "2026-01-01T00:00:00Z", "code": "ABC"})),
        Ok(())
    );
    assert!(v.validate(&json!({"when": "yesterday"})).is_err());
    assert!(v.validate(&json!({"code": "abcd"})).is_err());
}

#[test]
fn invalid_and_self_referencing_schemas_do_not_crash() {
    let err = JsonValidator::new(&json!({"type": 5})).expect_err("bad type");
    assert!(err.contains("cannot be compiled"), "{err}");
    for schema in [
        json!({"$ref": "#"}),
        json!({"allOf": [{"$ref": "#"}]}),
        json!({"definitions": {"a": {"$ref": "#/definitions/b"}, "b": {"$ref": "#/definitions/a"}},
               "$ref": "#/definitions/a"}),
    ] {
        if let Ok(v) = JsonValidator::new(&schema) {
            let _ = v.validate(&json!({"x": [1, 2, 3]}));
        }
    }
    // A recursive schema on a deep value: bounded by the value's depth.
    let tree = json!({"type": "object", "properties": {"child": {"$ref": "#"}}});
    let v = JsonValidator::new(&tree).expect("compiles");
    let mut deep = json!({});
    for _ in 0..100 {
        deep = json!({"child": deep});
    }
    assert_eq!(v.validate(&deep), Ok(()));
}

#[test]
fn huge_instances_are_not_echoed_whole_in_errors() {
    let v = JsonValidator::new(&json!({"type": "integer"})).expect("compiles");
    let err = v
        .validate(&json!("x".repeat(100_000)))
        .expect_err("a string");
    assert!(err.len() < 300, "{} bytes", err.len());
}
