//! PROTOBUF through the registry's public API on an in-memory disk: registration of `.proto`
//! text and base64 descriptors, the same text keeping its id, compatible evolution and a refused
//! incompatible change (40901) under BACKWARD, FORWARD and FULL, references as imports (and a
//! missing one), the kept text surviving a reopen, and hostile schemas answering 42201.

use busbar_log::disk::MemFs;
use busbar_schema::{Compatibility, Limits, Reference, Registry, SchemaInput};
use std::sync::Arc;

fn open(fs: &MemFs) -> Registry {
    Registry::open(
        Arc::new(fs.dir("schemas")),
        Arc::new(busbar_log::SystemClock),
        Limits::default(),
    )
    .expect("opens")
}

fn proto(text: &str) -> SchemaInput {
    SchemaInput {
        schema: text.to_string(),
        schema_type: Some("PROTOBUF".into()),
        ..SchemaInput::default()
    }
}

const V1: &str = "syntax = \"proto3\";\npackage shop;\nmessage Order { string id = 1; }\n";
const V2: &str =
    "syntax = \"proto3\";\npackage shop;\nmessage Order { string id = 1; double amount = 2; }\n";
const V3: &str =
    "syntax = \"proto3\";\npackage shop;\nmessage Order { int32 id = 1; double amount = 2; }\n";

#[tokio::test]
async fn protobuf_schemas_register_evolve_and_refuse_incompatible_changes() {
    let fs = MemFs::new();
    let r = open(&fs);
    let v1 = r.register("orders-value", proto(V1)).await.expect("v1");
    assert!(v1.created);
    assert_eq!(v1.version.version, 1);
    let again = r
        .register("orders-value", proto(V1))
        .await
        .expect("v1 again");
    assert!(!again.created);
    assert_eq!(again.version.id, v1.version.id);
    let v2 = r.register("orders-value", proto(V2)).await.expect("v2");
    assert_eq!(v2.version.version, 2);
    assert!(r.check("orders-value", None, &proto(V3)).unwrap()[0]
        .contains("FIELD_SCALAR_KIND_CHANGED at #/Order/1"));
    let e = r.register("orders-value", proto(V3)).await.unwrap_err();
    assert_eq!(e.code(), 40901, "{e}");
    // The same schema in another subject has the same id; the text is kept as submitted.
    let other = r.register("other", proto(V2)).await.expect("other");
    assert_eq!(other.version.id, v2.version.id);
    assert_eq!(r.by_id(v1.version.id).unwrap().schema, V1);
    r.close().unwrap();
    let r = open(&fs);
    assert_eq!(r.by_id(v2.version.id).unwrap().schema, V2);
    assert_eq!(r.version("orders-value", None, false).unwrap().version, 2);
}

#[tokio::test]
async fn every_level_applies_the_protobuf_rules() {
    let removed = "syntax = \"proto3\";\npackage shop;\nmessage Order { string id = 1; }\nmessage Extra { string x = 1; }\n";
    for (level, old, new, ok) in [
        (Compatibility::Backward, removed, V1, false),
        (Compatibility::Forward, removed, V1, true),
        (Compatibility::Forward, V1, removed, false),
        (Compatibility::Full, V1, V2, true),
        (Compatibility::Full, V1, removed, false),
        (Compatibility::None, V1, V3, true),
        (Compatibility::BackwardTransitive, V1, V3, false),
    ] {
        let fs = MemFs::new();
        let r = open(&fs);
        r.register("s", proto(old)).await.expect("old");
        r.set_config(Some("s"), level).await.unwrap();
        let result = r.register("s", proto(new)).await;
        assert_eq!(result.is_ok(), ok, "{level:?}: {result:?}");
    }
}

#[tokio::test]
async fn references_are_imports_and_base64_descriptors_register() {
    let fs = MemFs::new();
    let r = open(&fs);
    let money = "syntax = \"proto3\";\npackage common;\nmessage Money { int64 units = 1; }\n";
    r.register("money", proto(money)).await.expect("money");
    let order = "syntax = \"proto3\";\npackage shop;\nimport \"common/money.proto\";\nimport \"google/protobuf/timestamp.proto\";\nmessage Order { common.Money total = 1; google.protobuf.Timestamp at = 2; }\n";
    let mut input = proto(order);
    input.references = vec![Reference {
        name: "common/money.proto".into(),
        subject: "money".into(),
        version: 1,
    }];
    r.register("orders", input)
        .await
        .expect("with its reference");
    let e = r.register("orders-2", proto(order)).await.unwrap_err();
    assert_eq!(e.code(), 42201);
    assert!(e.to_string().contains("common/money.proto"), "{e}");
    // A base64 FileDescriptorProto (what confluent-kafka-python sends): field 4 message_type
    // { name "Order", field { name "id", number 1, label optional, type string } }, proto3.
    let descriptor = "CgtvcmRlci5wcm90bxIEc2hvcCITCgVPcmRlchIKCgJpZBgBIAEoCWIGcHJvdG8z";
    let registered = r
        .register("desc", proto(descriptor))
        .await
        .expect("descriptor");
    assert_eq!(r.by_id(registered.version.id).unwrap().schema, descriptor);
    // It compares with the text form: adding a field is compatible, retyping one is not.
    r.register("desc", proto(V2))
        .await
        .expect("compatible text after descriptor");
    assert_eq!(
        r.register("desc", proto(V3)).await.unwrap_err().code(),
        40901
    );
}

#[tokio::test]
async fn hostile_protobuf_schemas_answer_42201() {
    let fs = MemFs::new();
    let r = open(&fs);
    let mut nested = String::from("syntax = \"proto3\";");
    for i in 0..10_000 {
        nested.push_str(&format!("message M{i} {{"));
    }
    nested.push_str(&"}".repeat(10_000));
    for text in [
        nested.as_str(),
        "syntax = \"proto3\"; message {",
        "CgtvcmRlci5wcm90bxIEc2hvcCITCgVPcmRlchIKCgJpZBgBIAEoCWIGcHJvd",
        "////",
        "syntax = \"proto3\"; import \"missing.proto\"; message M { string a = 1; }",
    ] {
        let e = r.register("bad", proto(text)).await.unwrap_err();
        assert_eq!(e.code(), 42201, "{e}");
        assert!(e.to_string().len() < 600, "{e}");
    }
    assert!(r.subjects(false, "").is_empty());
}

/// Comments and spacing do not make another PROTOBUF schema (as in Confluent, whose canonical
/// form is the parse printed again): the same tokens get the existing version and id, also
/// after a restart and with `normalize`; the text served is the one first submitted.
#[tokio::test]
async fn comments_and_spacing_do_not_make_another_protobuf_schema() {
    let fs = MemFs::new();
    let r = open(&fs);
    let first = "syntax = \"proto3\";\npackage shop;\n\n// An order.\nmessage Order {\n  string id = 1;\n}\n";
    let spaced = "syntax=\"proto3\"; package shop; /* same */ message Order{string id=1;}";
    let one = r.register("p-value", proto(first)).await.unwrap();
    let two = r.register("p-value", proto(spaced)).await.unwrap();
    assert!(!two.created);
    assert_eq!((two.version.id, two.version.version), (one.version.id, 1));
    assert_eq!(
        r.lookup("p-value", &proto(spaced), false).unwrap().version,
        1
    );
    assert_eq!(r.by_id(one.version.id).unwrap().schema, first);
    r.close().unwrap();
    let r = open(&fs);
    let again = r.register("p-value", proto(spaced)).await.unwrap();
    assert_eq!((again.created, again.version.id), (false, one.version.id));
    assert_eq!(again.version.schema, first);
    let renamed = "syntax=\"proto3\"; package shop; message Order{string key=1;}";
    assert!(r.register("p-value", proto(renamed)).await.unwrap().created);
}
