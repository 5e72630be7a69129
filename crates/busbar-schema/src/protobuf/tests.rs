//! Unit tests of the PROTOBUF support: each compatibility rule of Confluent's diff in both
//! directions (BACKWARD is `can_read(new, old)`, FORWARD `can_read(old, new)`), parsing of text
//! and base64 descriptors with references, the bounds, the message indexes and the JSON mapping.

use super::*;
use base64::Engine;
use prost_reflect::prost::Message;
use prost_reflect::prost_types::{DescriptorProto, FileDescriptorProto};

fn p(text: &str) -> Protobuf {
    Protobuf::parse(text, &[], 64).unwrap_or_else(|e| panic!("parses: {e}\n{text}"))
}

fn p3(body: &str) -> Protobuf {
    p(&format!("syntax = \"proto3\";\npackage shop;\n{body}"))
}

fn p2(body: &str) -> Protobuf {
    p(&format!("syntax = \"proto2\";\npackage shop;\n{body}"))
}

/// The incompatible kinds found when a consumer of `reader` reads `writer`'s data.
fn kinds(reader: &Protobuf, writer: &Protobuf) -> Vec<String> {
    match can_read(reader, writer) {
        Ok(()) => vec![],
        Err(messages) => messages
            .iter()
            .map(|m| m.split(' ').next().unwrap_or_default().to_string())
            .collect(),
    }
}

/// (BACKWARD kinds, FORWARD kinds) of `old` → `new`.
fn both(old: &Protobuf, new: &Protobuf) -> (Vec<String>, Vec<String>) {
    (kinds(new, old), kinds(old, new))
}

fn none() -> Vec<String> {
    vec![]
}

fn one(kind: &str) -> Vec<String> {
    vec![kind.to_string()]
}

#[test]
fn adding_removing_and_renaming_fields_is_compatible_both_ways() {
    let old = p3("message Order { string id = 1; }");
    let added = p3("message Order { string id = 1; double amount = 2; }");
    let renamed = p3("message Order { string order_id = 1; }");
    assert_eq!(both(&old, &added), (none(), none()));
    assert_eq!(both(&added, &old), (none(), none()));
    assert_eq!(both(&old, &renamed), (none(), none()));
}

#[test]
fn scalar_changes_are_compatible_only_within_a_group() {
    let groups: &[&[&str]] = &[
        &["int32", "int64", "uint32", "uint64", "bool", "Color"],
        &["sint32", "sint64"],
        &["string", "bytes"],
        &["fixed32", "sfixed32"],
        &["fixed64", "sfixed64"],
        &["float"],
        &["double"],
    ];
    let schema = |t: &str| {
        p3(&format!(
            "enum Color {{ RED = 0; }} message M {{ {t} f = 1; }}"
        ))
    };
    for (gi, group) in groups.iter().enumerate() {
        for a in *group {
            for (gj, other) in groups.iter().enumerate() {
                for b in *other {
                    let want = if gi == gj {
                        none()
                    } else {
                        one("FIELD_SCALAR_KIND_CHANGED")
                    };
                    let (back, fwd) = both(&schema(a), &schema(b));
                    assert_eq!(back, want, "{a} -> {b} backward");
                    assert_eq!(fwd, want, "{a} -> {b} forward");
                }
            }
        }
    }
}

#[test]
fn scalar_message_and_map_kinds_do_not_mix() {
    let scalar = p3("message Item { string n = 1; } message M { string f = 1; }");
    let message = p3("message Item { string n = 1; } message M { Item f = 1; }");
    let map = p3("message Item { string n = 1; } message M { map<string, string> f = 1; }");
    let kind = one("FIELD_KIND_CHANGED");
    assert_eq!(both(&scalar, &message), (kind.clone(), kind.clone()));
    assert_eq!(both(&message, &map), (kind.clone(), kind.clone()));
    assert_eq!(both(&scalar, &map), (kind.clone(), kind));
}

#[test]
fn map_keys_and_values_compare_as_fields() {
    let old = p3("message M { map<string, int32> f = 1; }");
    let wider = p3("message M { map<string, int64> f = 1; }");
    let key = p3("message M { map<int32, int32> f = 1; }");
    assert_eq!(both(&old, &wider), (none(), none()));
    let changed = one("FIELD_SCALAR_KIND_CHANGED");
    assert_eq!(both(&old, &key), (changed.clone(), changed));
}

#[test]
fn a_field_of_another_message_type_or_a_changed_one_is_incompatible() {
    let old = p3("message A { string x = 1; } message B { string x = 1; } message M { A f = 1; }");
    let other =
        p3("message A { string x = 1; } message B { string x = 1; } message M { B f = 1; }");
    let named = one("FIELD_NAMED_TYPE_CHANGED");
    assert_eq!(both(&old, &other), (named.clone(), named));
    let changed =
        p3("message A { int32 x = 1; } message B { string x = 1; } message M { A f = 1; }");
    let (back, fwd) = both(&old, &changed);
    assert!(
        back.contains(&"FIELD_SCALAR_KIND_CHANGED".to_string()),
        "{back:?}"
    );
    assert!(
        fwd.contains(&"FIELD_SCALAR_KIND_CHANGED".to_string()),
        "{fwd:?}"
    );
}

#[test]
fn numeric_labels_may_not_change_but_string_labels_may() {
    let old = p2("message M { optional int32 n = 1; optional string s = 2; }");
    let numeric = p2("message M { repeated int32 n = 1; optional string s = 2; }");
    let string = p2("message M { optional int32 n = 1; repeated string s = 2; }");
    let label = one("FIELD_NUMERIC_LABEL_CHANGED");
    assert_eq!(both(&old, &numeric), (label.clone(), label));
    assert_eq!(both(&old, &string), (none(), none()));
}

#[test]
fn required_fields_may_be_neither_added_nor_removed() {
    let old = p2("message M { optional string a = 1; }");
    let new = p2("message M { optional string a = 1; required string b = 2; }");
    assert_eq!(
        both(&old, &new),
        (one("REQUIRED_FIELD_ADDED"), one("REQUIRED_FIELD_REMOVED"))
    );
    let optional = p2("message M { optional string a = 1; optional string b = 2; }");
    assert_eq!(both(&old, &optional), (none(), none()));
}

#[test]
fn a_package_change_is_incompatible() {
    let old = p("syntax = \"proto3\"; package shop; message M { string a = 1; }");
    let new = p("syntax = \"proto3\"; package store; message M { string a = 1; }");
    let changed = one("PACKAGE_CHANGED");
    assert_eq!(both(&old, &new), (changed.clone(), changed));
}

#[test]
fn removing_a_message_is_incompatible_adding_one_is_not() {
    let old = p3("message A { string a = 1; } message B { string b = 1; }");
    let new = p3("message A { string a = 1; }");
    // BACKWARD (new reads old): B was removed; FORWARD (old reads new): the diff from new to
    // old adds B, which is compatible.
    assert_eq!(both(&old, &new), (one("MESSAGE_REMOVED"), none()));
    assert_eq!(both(&new, &old), (none(), one("MESSAGE_REMOVED")));
    let nested_old = p3("message A { message N { string n = 1; } N n = 1; }");
    let nested_new = p3("message A { string x = 2; }");
    assert!(kinds(&nested_new, &nested_old).contains(&"MESSAGE_REMOVED".to_string()));
}

#[test]
fn moving_messages_and_changing_enums_is_compatible() {
    let old = p3("enum E { A = 0; B = 1; } message X { E e = 1; } message Y { string y = 1; }");
    let new = p3("message Y { string y = 1; } enum E { A = 0; C = 2; } message X { E e = 1; } enum F { Z = 0; }");
    assert_eq!(both(&old, &new), (none(), none()));
}

#[test]
fn oneof_rules() {
    let old =
        p3("message M { oneof pick { string a = 1; int32 b = 2; } string c = 3; string d = 4; }");
    // A field added to an existing oneof: compatible; the reverse removes it from the oneof.
    let added = p3(
        "message M { oneof pick { string a = 1; int32 b = 2; bytes e = 5; } string c = 3; string d = 4; }",
    );
    assert_eq!(both(&old, &added), (none(), one("ONEOF_FIELD_REMOVED")));
    // One top-level field moved into a new oneof: compatible; two: incompatible.
    let one_moved = p3(
        "message M { oneof pick { string a = 1; int32 b = 2; } oneof other { string c = 3; } string d = 4; }",
    );
    assert_eq!(kinds(&one_moved, &old), none());
    let two_moved = p3(
        "message M { oneof pick { string a = 1; int32 b = 2; } oneof other { string c = 3; string d = 4; } }",
    );
    assert_eq!(
        kinds(&two_moved, &old),
        one("MULTIPLE_FIELDS_MOVED_TO_ONEOF")
    );
    // A top-level field moved into the existing oneof.
    let into_existing =
        p3("message M { oneof pick { string a = 1; int32 b = 2; string c = 3; } string d = 4; }");
    assert_eq!(
        kinds(&into_existing, &old),
        one("FIELD_MOVED_TO_EXISTING_ONEOF")
    );
    // A oneof field moved to the top level: compatible.
    let to_top =
        p3("message M { oneof pick { string a = 1; } int32 b = 2; string c = 3; string d = 4; }");
    assert_eq!(kinds(&to_top, &old), none());
    // A oneof added or removed whole (its fields new or gone): compatible.
    let no_oneof = p3("message M { string c = 3; string d = 4; }");
    assert_eq!(both(&old, &no_oneof), (none(), none()));
    // A oneof member's type changed incompatibly.
    let retyped =
        p3("message M { oneof pick { string a = 1; double b = 2; } string c = 3; string d = 4; }");
    let scalar = one("FIELD_SCALAR_KIND_CHANGED");
    assert_eq!(both(&old, &retyped), (scalar.clone(), scalar));
}

#[test]
fn proto3_optional_is_not_a_oneof_and_not_a_label_change() {
    let old = p3("message M { int32 n = 1; }");
    let new = p3("message M { optional int32 n = 1; }");
    assert_eq!(both(&old, &new), (none(), none()));
}

#[test]
fn recursive_types_terminate() {
    let old = p3("message Node { string v = 1; repeated Node children = 2; }");
    let new = p3("message Node { string v = 1; repeated Node children = 2; int32 w = 3; }");
    assert_eq!(both(&old, &new), (none(), none()));
    let bad = p3("message Node { int32 v = 1; repeated Node children = 2; }");
    assert!(!kinds(&bad, &old).is_empty());
}

#[test]
fn messages_name_the_change_and_its_path() {
    let old = p3("message Order { string id = 1; }");
    let new = p3("message Order { int32 id = 1; }");
    let messages = can_read(&new, &old).unwrap_err();
    assert_eq!(
        messages,
        vec!["FIELD_SCALAR_KIND_CHANGED at #/Order/1: string became int32, outside its group"]
    );
}

/// `text` compiled and encoded as the base64 `FileDescriptorProto` clients send.
fn base64_of(text: &str) -> String {
    let p = p(text);
    let proto = p.file().file_descriptor_proto().clone();
    base64::engine::general_purpose::STANDARD.encode(proto.encode_to_vec())
}

#[test]
fn a_base64_descriptor_parses_and_compares_like_its_text() {
    let text = "syntax = \"proto3\"; package shop; message Order { string id = 1; int64 n = 2; }";
    let encoded = base64_of(text);
    let from_descriptor = Protobuf::parse(&encoded, &[], 64).expect("descriptor parses");
    assert_eq!(
        from_descriptor.record_name(&[0]).as_deref(),
        Some("shop.Order")
    );
    assert!(can_read(&from_descriptor, &p(text)).is_ok());
    assert!(can_read(&p(text), &from_descriptor).is_ok());
    let changed = p("syntax = \"proto3\"; package shop; message Order { double id = 1; }");
    assert!(can_read(&changed, &from_descriptor).is_err());
}

#[test]
fn references_supply_imports_and_well_known_types_need_none() {
    let dep = "syntax = \"proto3\"; package common; message Money { int64 units = 1; }";
    let text = "syntax = \"proto3\"; package shop; import \"common/money.proto\"; \
                import \"google/protobuf/timestamp.proto\"; \
                message Order { common.Money total = 1; google.protobuf.Timestamp at = 2; }";
    let refs = vec![("common/money.proto".to_string(), dep.to_string())];
    let parsed = Protobuf::parse(text, &refs, 64).expect("parses with its reference");
    assert_eq!(parsed.record_name(&[0]).as_deref(), Some("shop.Order"));
    // The reference may be a base64 descriptor too.
    let refs64 = vec![("common/money.proto".to_string(), base64_of(dep))];
    Protobuf::parse(text, &refs64, 64).expect("parses with a base64 reference");
    let missing = Protobuf::parse(text, &[], 64).unwrap_err();
    assert!(missing.contains("common/money.proto"), "{missing}");
}

#[test]
fn an_import_cycle_through_references_is_refused() {
    let a = "syntax = \"proto3\"; import \"b.proto\"; message A { string a = 1; }";
    let b = "syntax = \"proto3\"; import \"a.proto\"; message B { string b = 1; }";
    let refs = vec![
        ("a.proto".to_string(), a.to_string()),
        ("b.proto".to_string(), b.to_string()),
    ];
    let text = "syntax = \"proto3\"; import \"a.proto\"; message M { string m = 1; }";
    let e = Protobuf::parse(text, &refs, 64).unwrap_err();
    assert!(e.contains("cycle"), "{e}");
}

#[test]
fn malformed_text_names_protox_error_and_position() {
    let e = Protobuf::parse(
        "syntax = \"proto3\";\nmessage M {\n  strin g = 1;\n}",
        &[],
        64,
    )
    .unwrap_err();
    assert!(e.contains("line 3"), "{e}");
    let e =
        Protobuf::parse("syntax = \"proto3\"; message M { Missing m = 1; }", &[], 64).unwrap_err();
    assert!(e.contains("Missing"), "{e}");
    let long = format!("syntax = \"proto3\"; message {} {{ x }}", "N".repeat(5000));
    assert!(Protobuf::parse(&long, &[], 64).unwrap_err().len() < 400);
}

#[test]
fn malformed_descriptors_are_refused_with_a_reason() {
    for (text, want) in [
        ("AAAA", "invalid FileDescriptorProto"),
        ("////", "invalid FileDescriptorProto"),
        ("Zm9v!", "expected"),
        ("Cg", "neither"),
    ] {
        let e = Protobuf::parse(text, &[], 64).unwrap_err();
        assert!(e.contains(want), "{text}: {e}");
    }
    // A message whose field names a type that does not exist.
    let mut proto = p("syntax = \"proto3\"; message M { string a = 1; }")
        .file()
        .file_descriptor_proto()
        .clone();
    proto.message_type[0].field[0].type_name = Some(".nope.Missing".into());
    proto.message_type[0].field[0].r#type = Some(11);
    let encoded = base64::engine::general_purpose::STANDARD.encode(proto.encode_to_vec());
    let e = Protobuf::parse(&encoded, &[], 64).unwrap_err();
    assert!(e.contains("Missing"), "{e}");
}

#[test]
fn ten_thousand_nested_messages_are_refused_quickly() {
    let mut text = String::from("syntax = \"proto3\";");
    for i in 0..10_000 {
        text.push_str(&format!("message M{i} {{"));
    }
    text.push_str(&"}".repeat(10_000));
    let start = std::time::Instant::now();
    let e = Protobuf::parse(&text, &[], 64).unwrap_err();
    assert!(e.contains("nested more than 64"), "{e}");
    assert!(start.elapsed() < std::time::Duration::from_secs(1));
    // The same as a descriptor (building it is the slow part: prost sizes nested messages
    // again at each level).
    let mut inner = DescriptorProto {
        name: Some("M".into()),
        ..Default::default()
    };
    for _ in 0..10_000 {
        inner = DescriptorProto {
            name: Some("M".into()),
            nested_type: vec![inner],
            ..Default::default()
        };
    }
    let proto = FileDescriptorProto {
        message_type: vec![inner],
        ..Default::default()
    };
    let encoded = base64::engine::general_purpose::STANDARD.encode(proto.encode_to_vec());
    let start = std::time::Instant::now();
    let e = Protobuf::parse(&encoded, &[], 64).unwrap_err();
    assert!(e.contains("nested more than 64"), "{e}");
    assert!(start.elapsed() < std::time::Duration::from_secs(1));
}

#[test]
fn too_many_definitions_are_refused_before_decoding() {
    let empty = DescriptorProto::default().encode_to_vec();
    let mut bytes = Vec::new();
    for _ in 0..=DEFINITIONS_MAX {
        bytes.push(0x22); // field 4 (message_type), length-delimited
        bytes.push(u8::try_from(empty.len()).unwrap());
        bytes.extend(&empty);
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let e = Protobuf::parse(&encoded, &[], 64).unwrap_err();
    assert!(e.contains("more than 10000 definitions"), "{e}");
    let mut text = String::from("syntax = \"proto3\";");
    for i in 0..=DEFINITIONS_MAX {
        text.push_str(&format!("message M{i} {{}}"));
    }
    let e = Protobuf::parse(&text, &[], 64).unwrap_err();
    assert!(e.contains("more than 10000 definitions"), "{e}");
}

#[test]
fn message_indexes_follow_the_wire_format() {
    assert_eq!(message_indexes(&[0, 9]), Ok((vec![0], 1)));
    // count 2 (zig-zag 4), then 1 (2) and 3 (6).
    assert_eq!(message_indexes(&[4, 2, 6, 0xff]), Ok((vec![1, 3], 3)));
    assert_eq!(encode_indexes(&[0]), vec![0]);
    assert_eq!(encode_indexes(&[1, 3]), vec![4, 2, 6]);
    assert_eq!(encode_indexes(&[0, 0]), vec![4, 0, 0]);
    assert!(message_indexes(&[]).is_err());
    assert!(message_indexes(&[4, 2]).is_err(), "truncated");
    assert!(message_indexes(&[3]).is_err(), "negative count");
    assert!(
        message_indexes(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err(),
        "huge count"
    );
    assert!(
        message_indexes(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]).is_err(),
        "long varint"
    );
    let many = encode_indexes(&vec![0; INDEXES_MAX + 1]);
    assert!(message_indexes(&many).is_err(), "over INDEXES_MAX");
}

#[test]
fn indexes_name_messages_and_the_json_mapping_round_trips() {
    let s = p3("message A { string a = 1; } message B { message C { int64 n = 1; string s = 2; } C c = 1; }");
    assert_eq!(s.record_name(&[0]).as_deref(), Some("shop.A"));
    assert_eq!(s.record_name(&[1, 0]).as_deref(), Some("shop.B.C"));
    assert_eq!(s.record_name(&[2]), None);
    assert_eq!(s.record_name(&[-1]), None);
    assert_eq!(s.indexes_of("shop.B.C"), Some(vec![1, 0]));
    let value = serde_json::json!({"n": "42", "s": "x"});
    let bytes = s
        .encode_json(Target::Name("shop.B.C"), &value)
        .expect("encodes");
    let (indexes, used) = message_indexes(&bytes).expect("indexes");
    assert_eq!(indexes, vec![1, 0]);
    assert_eq!(s.decode_json(&indexes, &bytes[used..]), Ok(value));
    assert!(s
        .encode_json(Target::Indexes(&[0]), &serde_json::json!({"a": 5}))
        .is_err());
    assert!(s.decode_json(&[0], &[0xff, 0xff]).is_err());
    assert!(s
        .encode_json(Target::Name("shop.Nope"), &serde_json::json!({}))
        .is_err());
}

#[test]
fn the_serialized_form_is_a_descriptor_that_parses_back_to_the_same_schema() {
    let dep = "syntax = \"proto3\"; package common; message Money { int64 units = 1; }";
    let text = "syntax = \"proto3\"; package shop; import \"common/money.proto\"; \
                message Order { common.Money total = 1; string id = 2; }";
    let refs = vec![("common/money.proto".to_string(), dep.to_string())];
    let parsed = Protobuf::parse(text, &refs, 64).expect("parses");
    let serialized = parsed.serialized();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&serialized)
        .expect("base64");
    let proto = FileDescriptorProto::decode(bytes.as_slice()).expect("a FileDescriptorProto");
    assert_eq!(proto.dependency, vec!["common/money.proto".to_string()]);
    let again = Protobuf::parse(&serialized, &refs, 64).expect("parses back");
    assert!(can_read(&again, &parsed).is_ok() && can_read(&parsed, &again).is_ok());
    assert_eq!(again.record_name(&[0]).as_deref(), Some("shop.Order"));
}
