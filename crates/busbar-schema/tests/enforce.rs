//! The broker-side check (`busbar_schema::enforce::Enforcer`) over a registry on an in-memory
//! disk: a schema id hard-deleted and imported again with other content is checked against the
//! new content, not a cached parse of the old one (found by the adversarial review of issue 17).

use busbar_broker::schema_rules::{Part, PartRule, SchemaChecker, SubjectStrategy, Validation};
use busbar_log::disk::MemFs;
use busbar_schema::enforce::Enforcer;
use busbar_schema::{Limits, Mode, Registry, SchemaInput};
use serde_json::json;
use std::sync::Arc;

fn input(schema: serde_json::Value, id: Option<i64>) -> SchemaInput {
    SchemaInput {
        schema: schema.to_string(),
        id,
        ..SchemaInput::default()
    }
}

fn framed(id: u32, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(body);
    v
}

#[tokio::test]
async fn an_id_imported_again_is_checked_against_its_new_content() {
    let fs = MemFs::default();
    let registry = Arc::new(
        Registry::open(
            Arc::new(fs.dir("schemas")),
            Arc::new(busbar_log::SystemClock),
            Limits::default(),
        )
        .unwrap(),
    );
    let e = Enforcer::new(registry.clone(), Default::default());
    let strict = PartRule {
        validation: Validation::Strict,
        strategy: SubjectStrategy::TopicName,
    };
    registry
        .set_mode(Some("t-value"), Mode::Import, false)
        .await
        .unwrap();
    registry
        .register("t-value", input(json!("string"), Some(7)))
        .await
        .unwrap();
    let a_string = framed(7, b"\x02a");
    let a_long = framed(7, b"\x54");
    assert!(e.check("t", Part::Value, strict, &a_string).is_ok());
    assert!(e.check("t", Part::Value, strict, &a_long).is_err());
    registry.delete_subject("t-value", false).await.unwrap();
    registry.delete_subject("t-value", true).await.unwrap();
    registry
        .set_mode(Some("t-value"), Mode::Import, false)
        .await
        .unwrap();
    registry
        .register("t-value", input(json!("long"), Some(7)))
        .await
        .unwrap();
    // 0x54 is the zig-zag long 42: valid for the new content only.
    assert!(e.check("t", Part::Value, strict, &a_long).is_ok());
    let r = e.check("t", Part::Value, strict, &a_string).unwrap_err();
    assert_eq!(r.reason, "invalid_payload", "{r:?}");
}
