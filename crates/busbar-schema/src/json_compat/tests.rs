//! Unit tests of the JSON Schema diff: one case per rule (both directions where the rule is
//! asymmetric), `$ref` handling, and hostile input (deep nesting, cycles, huge combinations).

use super::*;
use serde_json::json;

/// `reader` reads everything `writer` accepts.
fn compatible(reader: Value, writer: Value) {
    let result = can_read(&reader, &writer);
    assert!(
        result.is_ok(),
        "reader {reader} / writer {writer}: {result:?}"
    );
}

/// `reader` cannot read `writer`, and the first error starts with `expected` (`TYPE at #/path`).
fn incompatible(reader: Value, writer: Value, expected: &str) {
    let errors = can_read(&reader, &writer).expect_err("incompatible");
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&format!("{expected}:"))),
        "expected {expected}, got {errors:?}"
    );
}

#[test]
fn types_change_narrow_and_extend() {
    incompatible(
        json!({"type": "string"}),
        json!({"type": "object"}),
        "TYPE_CHANGED at #/",
    );
    incompatible(
        json!({"type": "integer"}),
        json!({"type": "number"}),
        "TYPE_NARROWED at #/",
    );
    compatible(json!({"type": "number"}), json!({"type": "integer"}));
    compatible(
        json!({"type": ["string", "null"]}),
        json!({"type": "string"}),
    );
    incompatible(
        json!({"type": "string"}),
        json!({"type": ["string", "null"]}),
        "TYPE_CHANGED at #/",
    );
    compatible(json!(true), json!({"type": "string"}));
    compatible(json!({}), json!({"type": "string"}));
    compatible(json!({"type": "string"}), json!(false));
    incompatible(json!(false), json!({}), "TYPE_CHANGED at #/");
    compatible(
        json!({"type": "string", "title": "a"}),
        json!({"type": "string", "title": "b"}),
    );
}

#[test]
fn string_bounds_and_patterns() {
    compatible(
        json!({"type": "string", "maxLength": 12}),
        json!({"type": "string", "maxLength": 10}),
    );
    compatible(
        json!({"type": "string"}),
        json!({"type": "string", "maxLength": 10}),
    );
    incompatible(
        json!({"type": "string", "maxLength": 10}),
        json!({"type": "string"}),
        "MAX_LENGTH_ADDED at #/maxLength",
    );
    incompatible(
        json!({"type": "string", "minLength": 3}),
        json!({"type": "string", "minLength": 2}),
        "MIN_LENGTH_INCREASED at #/minLength",
    );
    compatible(
        json!({"type": "string", "minLength": 1}),
        json!({"type": "string", "minLength": 2}),
    );
    incompatible(
        json!({"type": "string", "pattern": "a"}),
        json!({"type": "string"}),
        "PATTERN_ADDED at #/pattern",
    );
    incompatible(
        json!({"type": "string", "pattern": "a"}),
        json!({"type": "string", "pattern": "b"}),
        "PATTERN_CHANGED at #/pattern",
    );
    compatible(
        json!({"type": "string"}),
        json!({"type": "string", "pattern": "b"}),
    );
}

#[test]
fn number_bounds_and_multiples() {
    let n = |extra: Value| {
        let mut schema = json!({"type": "number"});
        schema
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        schema
    };
    incompatible(
        n(json!({"maximum": 5})),
        n(json!({"maximum": 10})),
        "MAXIMUM_DECREASED at #/maximum",
    );
    compatible(n(json!({"maximum": 10})), n(json!({"maximum": 5})));
    incompatible(
        n(json!({"minimum": 5})),
        n(json!({})),
        "MINIMUM_ADDED at #/minimum",
    );
    incompatible(
        n(json!({"exclusiveMinimum": 5})),
        n(json!({"exclusiveMinimum": 1})),
        "EXCLUSIVE_MINIMUM_INCREASED at #/exclusiveMinimum",
    );
    incompatible(
        n(json!({"exclusiveMaximum": 1})),
        n(json!({"exclusiveMaximum": 5})),
        "EXCLUSIVE_MAXIMUM_DECREASED at #/exclusiveMaximum",
    );
    compatible(n(json!({"multipleOf": 2})), n(json!({"multipleOf": 10})));
    compatible(n(json!({"multipleOf": 0.5})), n(json!({"multipleOf": 1.5})));
    incompatible(
        n(json!({"multipleOf": 20})),
        n(json!({"multipleOf": 10})),
        "MULTIPLE_OF_EXPANDED at #/multipleOf",
    );
    incompatible(
        n(json!({"multipleOf": 11})),
        n(json!({"multipleOf": 10})),
        "MULTIPLE_OF_CHANGED at #/multipleOf",
    );
    incompatible(
        n(json!({"multipleOf": 0})),
        n(json!({"multipleOf": 10})),
        "MULTIPLE_OF_CHANGED at #/multipleOf",
    );
    compatible(n(json!({"maximum": 10})), n(json!({"maximum": 10.0})));
}

#[test]
fn enums_and_consts() {
    compatible(json!({"enum": ["a", "b"]}), json!({"enum": ["a"]}));
    incompatible(
        json!({"enum": ["a"]}),
        json!({"enum": ["a", "b"]}),
        "ENUM_ARRAY_NARROWED at #/enum",
    );
    incompatible(
        json!({"enum": ["a", "c"]}),
        json!({"enum": ["a", "b"]}),
        "ENUM_ARRAY_CHANGED at #/enum",
    );
    compatible(
        json!({"enum": [{"x": 1, "y": 2}]}),
        json!({"enum": [{"y": 2, "x": 1}]}),
    );
    incompatible(
        json!({"const": 1}),
        json!({"const": 2}),
        "ENUM_ARRAY_CHANGED at #/const",
    );
    compatible(
        json!({"type": "string"}),
        json!({"type": "string", "enum": ["red"]}),
    );
    incompatible(
        json!({"type": "string", "enum": ["red"]}),
        json!({"type": "string"}),
        "TYPE_CHANGED at #/",
    );
}

#[test]
fn properties_against_content_models() {
    let open = json!({"type": "object", "properties": {"a": {"type": "string"}}});
    let closed = json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false});
    let open_more =
        json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}});
    let closed_more = json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "additionalProperties": false});
    incompatible(
        open_more.clone(),
        open.clone(),
        "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL at #/properties/b",
    );
    compatible(open.clone(), open_more);
    compatible(closed_more.clone(), closed.clone());
    incompatible(
        closed,
        closed_more,
        "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL at #/properties/b",
    );
    compatible(
        json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {}}}),
        open.clone(),
    );
    compatible(
        json!({"properties": {"a": {"type": "string"}}, "additionalProperties": false}),
        json!({"properties": {"a": {"type": "string"}, "b": false}, "additionalProperties": false}),
    );
    incompatible(
        json!({"properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["b"],
            "additionalProperties": false}),
        json!({"properties": {"a": {"type": "string"}}, "additionalProperties": false}),
        "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL at #/properties/b",
    );
    compatible(
        json!({"properties": {"a": {"type": "string"}, "b": {"type": "string", "default": "x"}},
            "required": ["b"], "additionalProperties": false}),
        json!({"properties": {"a": {"type": "string"}}, "additionalProperties": false}),
    );
    incompatible(
        json!({"properties": {"a": {"type": "integer"}}}),
        json!({"properties": {"a": {"type": "number"}}}),
        "TYPE_NARROWED at #/properties/a",
    );
}

#[test]
fn partially_open_content_models() {
    let partial = json!({"properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}});
    compatible(
        json!({"properties": {"a": {"type": "string"}, "b": {"type": "string"}},
            "additionalProperties": {"type": "string"}}),
        partial.clone(),
    );
    incompatible(
        json!({"properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
            "additionalProperties": {"type": "string"}}),
        partial.clone(),
        "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL at #/properties/b",
    );
    incompatible(
        json!({"additionalProperties": {"type": "string"}}),
        json!({"properties": {"b": {"type": "integer"}}, "additionalProperties": {"type": "string"}}),
        "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL at #/properties/b",
    );
    let patterned =
        json!({"patternProperties": {"^x_": {"type": "integer"}}, "additionalProperties": false});
    compatible(
        json!({"properties": {"x_count": {"type": "number"}},
            "patternProperties": {"^x_": {"type": "integer"}}, "additionalProperties": false}),
        patterned.clone(),
    );
    incompatible(
        json!({"properties": {"x_count": {"type": "string"}},
            "patternProperties": {"^x_": {"type": "integer"}}, "additionalProperties": false}),
        patterned,
        "TYPE_CHANGED at #/properties/x_count",
    );
}

#[test]
fn required_and_additional_properties() {
    let schema =
        |required: Value| json!({"properties": {"a": {"type": "string"}}, "required": required});
    incompatible(
        schema(json!(["a"])),
        schema(json!([])),
        "REQUIRED_ATTRIBUTE_ADDED at #/required/a",
    );
    compatible(schema(json!([])), schema(json!(["a"])));
    compatible(
        json!({"properties": {"a": {"type": "string", "default": "x"}}, "required": ["a"]}),
        schema(json!([])),
    );
    incompatible(
        json!({"properties": {}, "additionalProperties": false}),
        json!({"properties": {}}),
        "ADDITIONAL_PROPERTIES_REMOVED at #/additionalProperties",
    );
    incompatible(
        json!({"properties": {}, "additionalProperties": {"type": "string"}}),
        json!({"properties": {}}),
        "ADDITIONAL_PROPERTIES_NARROWED at #/additionalProperties",
    );
    compatible(
        json!({"properties": {}}),
        json!({"properties": {}, "additionalProperties": {"type": "string"}}),
    );
    incompatible(
        json!({"additionalProperties": {"type": "integer"}}),
        json!({"additionalProperties": {"type": "number"}}),
        "TYPE_NARROWED at #/additionalProperties",
    );
    incompatible(
        json!({"type": "object", "maxProperties": 2}),
        json!({"type": "object", "maxProperties": 3}),
        "MAX_PROPERTIES_DECREASED at #/maxProperties",
    );
    incompatible(
        json!({"type": "object", "minProperties": 2}),
        json!({"type": "object"}),
        "MIN_PROPERTIES_ADDED at #/minProperties",
    );
}

#[test]
fn dependencies() {
    let deps = |d: Value| json!({"type": "object", "dependencies": d});
    incompatible(
        deps(json!({"a": ["b"]})),
        deps(json!({})),
        "DEPENDENCY_ARRAY_ADDED at #/dependencies/a",
    );
    incompatible(
        deps(json!({"a": ["b", "c"]})),
        deps(json!({"a": ["b"]})),
        "DEPENDENCY_ARRAY_EXTENDED at #/dependencies/a",
    );
    compatible(deps(json!({"a": ["b"]})), deps(json!({"a": ["b", "c"]})));
    incompatible(
        deps(json!({"a": {"required": ["b"]}})),
        deps(json!({})),
        "DEPENDENCY_SCHEMA_ADDED at #/dependencies/a",
    );
    compatible(deps(json!({})), deps(json!({"a": {"required": ["b"]}})));
    incompatible(
        json!({"type": "object", "dependentRequired": {"a": ["c"]}}),
        json!({"type": "object", "dependentRequired": {"a": ["b"]}}),
        "DEPENDENCY_ARRAY_CHANGED at #/dependencies/a",
    );
}

#[test]
fn arrays_items_and_tuples() {
    incompatible(
        json!({"type": "array", "items": {"type": "integer"}}),
        json!({"type": "array", "items": {"type": "number"}}),
        "TYPE_NARROWED at #/items",
    );
    incompatible(
        json!({"type": "array", "items": {"type": "integer"}}),
        json!({"type": "array"}),
        "SCHEMA_ADDED at #/items",
    );
    compatible(
        json!({"type": "array"}),
        json!({"type": "array", "items": {"type": "integer"}}),
    );
    let tuple = |items: Value, additional: Value| json!({"type": "array", "items": items, "additionalItems": additional});
    compatible(
        tuple(
            json!([{"type": "string"}, {"type": "string"}]),
            json!(false),
        ),
        tuple(json!([{"type": "string"}]), json!(false)),
    );
    incompatible(
        tuple(json!([{"type": "string"}]), json!(false)),
        tuple(
            json!([{"type": "string"}, {"type": "string"}]),
            json!(false),
        ),
        "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL at #/items/1",
    );
    incompatible(
        json!({"type": "array", "items": [{"type": "string"}, {"type": "integer"}]}),
        json!({"type": "array", "items": [{"type": "string"}]}),
        "ITEM_ADDED_TO_OPEN_CONTENT_MODEL at #/items/1",
    );
    incompatible(
        tuple(
            json!([{"type": "string"}, {"type": "integer"}]),
            json!({"type": "string"}),
        ),
        tuple(json!([{"type": "string"}]), json!({"type": "string"})),
        "ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL at #/items/1",
    );
    incompatible(
        tuple(json!([{"type": "string"}]), json!(false)),
        tuple(json!([{"type": "string"}]), json!(true)),
        "ADDITIONAL_ITEMS_REMOVED at #/additionalItems",
    );
    incompatible(
        json!({"type": "array", "prefixItems": [{"type": "string"}], "items": false}),
        json!({"type": "array", "prefixItems": [{"type": "string"}]}),
        "ADDITIONAL_ITEMS_REMOVED at #/additionalItems",
    );
    incompatible(
        json!({"type": "array", "unevaluatedItems": false}),
        json!({"type": "array"}),
        "UNEVALUATED_ITEMS_REMOVED at #/unevaluatedItems",
    );
    incompatible(
        json!({"type": "array", "maxItems": 2}),
        json!({"type": "array", "maxItems": 3}),
        "MAX_ITEMS_DECREASED at #/maxItems",
    );
    incompatible(
        json!({"type": "array", "minItems": 1}),
        json!({"type": "array"}),
        "MIN_ITEMS_ADDED at #/minItems",
    );
    incompatible(
        json!({"type": "array", "uniqueItems": true}),
        json!({"type": "array"}),
        "UNIQUE_ITEMS_ADDED at #/uniqueItems",
    );
    compatible(
        json!({"type": "array"}),
        json!({"type": "array", "uniqueItems": true}),
    );
}

#[test]
fn combinations() {
    let one_of = |subs: Value| json!({"oneOf": subs});
    compatible(
        one_of(json!([{"type": "string"}, {"type": "integer"}])),
        one_of(json!([{"type": "string"}])),
    );
    incompatible(
        one_of(json!([{"type": "string"}])),
        one_of(json!([{"type": "string"}, {"type": "integer"}])),
        "SUM_TYPE_NARROWED at #/",
    );
    incompatible(
        one_of(json!([{"type": "string"}, {"type": "boolean"}])),
        one_of(json!([{"type": "string"}, {"type": "integer"}])),
        "COMBINED_TYPE_SUBSCHEMAS_CHANGED at #/",
    );
    compatible(
        json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}),
        one_of(json!([{"type": "string"}, {"type": "integer"}])),
    );
    incompatible(
        one_of(json!([{"type": "string"}, {"type": "integer"}])),
        json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}),
        "COMBINED_TYPE_CHANGED at #/",
    );
    incompatible(
        json!({"allOf": [{"type": "string"}, {"maxLength": 3}]}),
        json!({"allOf": [{"type": "string"}]}),
        "PRODUCT_TYPE_EXTENDED at #/",
    );
    compatible(
        one_of(json!([{"type": "string"}, {"type": "integer"}])),
        json!({"type": "string"}),
    );
    compatible(
        json!({"type": "string"}),
        json!({"allOf": [{"type": "string"}, {"maxLength": 3}]}),
    );
    compatible(
        json!({"oneOf": [{"type": "string"}, {"type": "string"}]}),
        json!({"oneOf": [{"type": "string"}]}),
    );
}

#[test]
fn not() {
    compatible(
        json!({"not": {"type": "string"}}),
        json!({"not": {"type": ["string", "null"]}}),
    );
    incompatible(
        json!({"not": {"type": ["string", "null"]}}),
        json!({"not": {"type": "string"}}),
        "NOT_TYPE_EXTENDED at #/not",
    );
}

#[test]
fn references_within_the_document() {
    let with_def = |def: Value| json!({"type": "object", "properties": {"a": {"$ref": "#/definitions/a"}}, "definitions": {"a": def}});
    compatible(
        with_def(json!({"type": "number"})),
        with_def(json!({"type": "integer"})),
    );
    incompatible(
        with_def(json!({"type": "integer"})),
        with_def(json!({"type": "number"})),
        "TYPE_NARROWED at #/properties/a",
    );
    compatible(
        json!({"properties": {"a": {"$ref": "#/$defs/a%20b"}}, "$defs": {"a b": {"type": "number"}}}),
        json!({"properties": {"a": {"type": "number"}}}),
    );
    compatible(
        json!({"properties": {"a": {"$ref": "#num"}}, "$defs": {"n": {"$anchor": "num", "type": "number"}}}),
        json!({"properties": {"a": {"type": "integer"}}}),
    );
    compatible(
        json!({"properties": {"a": {"$ref": "urn:num"}}, "$defs": {"n": {"$id": "urn:num", "type": "number"}}}),
        json!({"properties": {"a": {"type": "integer"}}}),
    );
    incompatible(
        json!({"properties": {"a": {"$ref": "#/nowhere"}}}),
        json!({"properties": {"a": {"type": "integer"}}}),
        "REFERENCE_UNRESOLVED at #/properties/a",
    );
    compatible(json!({"$ref": "other.json"}), json!({"$ref": "other.json"}));
}

#[test]
fn named_references_resolve() {
    let refs_new = vec![("other.json".to_owned(), json!({"type": "number"}))];
    let refs_old = vec![("other.json".to_owned(), json!({"type": "integer"}))];
    let schema = json!({"properties": {"a": {"$ref": "other.json"}}, "title": "new"});
    let old = json!({"properties": {"a": {"$ref": "other.json"}}});
    let doc = |schema, refs| Document {
        schema,
        references: refs,
    };
    let limits = Limits::default();
    assert!(can_read_with(doc(&schema, &refs_new), doc(&old, &refs_old), &limits).is_ok());
    let errors = can_read_with(doc(&schema, &refs_old), doc(&old, &refs_new), &limits).unwrap_err();
    assert!(
        errors[0].starts_with("TYPE_NARROWED at #/properties/a"),
        "{errors:?}"
    );
}

#[test]
fn recursive_schemas_terminate_and_still_find_deep_changes() {
    let list = |value_type: &str| {
        json!({"$ref": "#/definitions/node", "definitions": {"node": {"type": "object", "properties": {
            "value": {"type": value_type}, "next": {"$ref": "#/definitions/node"}}}}})
    };
    compatible(list("number"), list("integer"));
    compatible(list("number"), list("number"));
    incompatible(
        list("integer"),
        list("number"),
        "TYPE_NARROWED at #/properties/value",
    );
    // Mutual recursion across two definitions.
    let pair = |leaf: &str| {
        json!({"$ref": "#/$defs/a", "$defs": {
            "a": {"properties": {"b": {"$ref": "#/$defs/b"}, "leaf": {"type": leaf}}},
            "b": {"properties": {"a": {"$ref": "#/$defs/a"}}}}})
    };
    compatible(pair("number"), pair("integer"));
}

#[test]
fn reference_cycles_without_a_schema_are_reported() {
    let looped = json!({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}});
    incompatible(
        looped.clone(),
        json!({"type": "string"}),
        "REFERENCE_CYCLE at #/",
    );
    let self_ref = json!({"$ref": "#"});
    incompatible(self_ref, json!({"type": "string"}), "REFERENCE_CYCLE at #/");
}

/// A chain `{"properties": {"a": {"properties": {"a": ...}}}}` of `levels` schemas, built without
/// recursion.
fn nested(levels: usize, leaf: Value) -> Value {
    // Not `json!` with the value inside: that clones it at every level.
    let mut value = leaf;
    for _ in 0..levels {
        let properties = serde_json::Map::from_iter([("a".to_owned(), value)]);
        value = Value::Object(serde_json::Map::from_iter([(
            "properties".to_owned(),
            Value::Object(properties),
        )]));
    }
    value
}

/// Runs `f` on a thread with a stack of `bytes`.
fn on_stack<T: Send + 'static>(bytes: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(bytes)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no stack overflow")
}

#[test]
fn deeply_nested_schemas_are_refused_not_overflowed() {
    // Building and dropping a 10,000-deep value recurses in serde_json itself: give it room.
    on_stack(256 << 20, || {
        let deep = nested(10_000, json!({"type": "string"}));
        let deeper = nested(10_000, json!({"type": "integer"}));
        // The check runs on a small stack: it must refuse, not recurse.
        let errors = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn_scoped(scope, || can_read(&deep, &deeper))
                .expect("spawn")
                .join()
                .expect("no stack overflow")
        });
        let errors = errors.expect_err("too deep");
        assert!(errors[0].starts_with("SCHEMA_TOO_DEEP"), "{errors:?}");
    });
}

#[test]
fn nesting_within_the_limit_is_compared() {
    on_stack(8 << 20, || {
        // 60 schema levels are 121 JSON levels, under the default 128.
        compatible(
            nested(60, json!({"type": "number"})),
            nested(60, json!({"type": "integer"})),
        );
        incompatible(
            nested(60, json!({"type": "integer"})),
            nested(60, json!({"type": "number"})),
            &format!("TYPE_NARROWED at #{}", "/properties/a".repeat(60)),
        );
    });
}

#[test]
fn recursion_through_references_is_bounded_by_the_depth_limit() {
    // Each level references a fresh definition: no pair repeats, so only the depth limit stops it.
    let mut defs = serde_json::Map::new();
    for i in 0..500 {
        defs.insert(
            format!("d{i}"),
            json!({"properties": {"a": {"$ref": format!("#/$defs/d{}", i + 1)}}}),
        );
    }
    defs.insert("d500".to_owned(), json!({"type": "string"}));
    let reader = json!({"$ref": "#/$defs/d0", "$defs": defs.clone(), "title": "reader"});
    let writer = json!({"$ref": "#/$defs/d0", "$defs": defs});
    let errors = on_stack(1 << 20, move || can_read(&reader, &writer)).expect_err("too deep");
    assert!(errors[0].starts_with("SCHEMA_TOO_DEEP"), "{errors:?}");
}

#[test]
fn huge_combinations_run_out_of_budget_instead_of_time() {
    let branches: Vec<Value> = (0..1_000)
        .map(|i| json!({"type": "string", "maxLength": i}))
        .collect();
    let reader = json!({"oneOf": branches});
    let mut writer = reader.clone();
    writer["oneOf"][0] = json!({"type": "string", "maxLength": 5000});
    let errors = can_read(&reader, &writer).expect_err("over budget");
    assert!(errors[0].starts_with("SCHEMA_TOO_COMPLEX"), "{errors:?}");
}

#[test]
fn invalid_schema_values_do_not_panic() {
    for (reader, writer) in [
        (json!(5), json!({"type": "string"})),
        (json!({"type": 7}), json!({"type": "string"})),
        (json!({"type": "nope"}), json!({"type": "string"})),
        (json!({"properties": []}), json!({"properties": {"a": 1}})),
        (
            json!({"required": "a", "properties": {"a": {}}}),
            json!({"properties": {"a": {}}}),
        ),
        (
            json!({"patternProperties": {"(": {}}}),
            json!({"properties": {"x": {}}}),
        ),
        (
            json!({"items": 3, "prefixItems": {}}),
            json!({"items": [1, 2]}),
        ),
        (json!({"$ref": 3}), json!({"$ref": "#/%zz"})),
        (json!({"enum": 1, "const": [1]}), json!({"enum": [1]})),
    ] {
        let _ = can_read(&reader, &writer);
        let _ = can_read(&writer, &reader);
    }
}
