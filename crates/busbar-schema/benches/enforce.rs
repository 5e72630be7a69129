//! What schema enforcement costs per record on the produce path (issue 17): the broker-side
//! check of one framed Avro and one JSON Schema value under `id` (header and subject only) and
//! `strict` (the payload decoded against its schema), next to encoding the same value from JSON
//! (HTTP publish with `?schema=`). Compare `id` and `strict` with each other and with the
//! produce path's own cost (`cargo bench -p busbar-log --bench append`), not with fixed numbers.
//! `cargo bench -p busbar-schema --bench enforce`

use busbar_broker::schema_rules::{Part, PartRule, SchemaChecker, SubjectStrategy, Validation};
use busbar_log::disk::MemFs;
use busbar_schema::enforce::Enforcer;
use busbar_schema::{Limits, Registry, SchemaInput};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};
use std::hint::black_box;
use std::sync::Arc;

/// An order of ten fields, the kind of event the bus carries.
fn order() -> Value {
    json!({"id": "o-123456", "customer": "c-42", "total": 129.5, "currency": "EUR",
        "items": [{"sku": "a-1", "qty": 2}, {"sku": "b-7", "qty": 1}], "paid": true,
        "created": 1_733_000_000_000_i64, "note": "leave at the door", "priority": 3})
}

fn avro_schema() -> Value {
    let item = json!({"type": "record", "name": "Item",
        "fields": [{"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}]});
    json!({"type": "record", "name": "Order", "namespace": "shop", "fields": [
        {"name": "id", "type": "string"}, {"name": "customer", "type": "string"},
        {"name": "total", "type": "double"}, {"name": "currency", "type": "string"},
        {"name": "items", "type": {"type": "array", "items": item}},
        {"name": "paid", "type": "boolean"}, {"name": "created", "type": "long"},
        {"name": "note", "type": ["null", "string"]}, {"name": "priority", "type": "int"}]})
}

fn json_schema() -> Value {
    json!({"type": "object", "required": ["id", "total"], "properties": {
        "id": {"type": "string"}, "customer": {"type": "string"}, "total": {"type": "number"},
        "currency": {"type": "string", "enum": ["EUR", "USD"]},
        "items": {"type": "array", "items": {"type": "object",
            "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}}},
        "paid": {"type": "boolean"}, "created": {"type": "integer"},
        "note": {"type": ["string", "null"]}, "priority": {"type": "integer"}}})
}

fn registry() -> (Arc<Registry>, u32, u32) {
    let fs = MemFs::default();
    let r = Arc::new(
        Registry::open(
            Arc::new(fs.dir("schemas")),
            Arc::new(busbar_log::SystemClock),
            Limits::default(),
        )
        .unwrap(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let register = |subject: &str, schema: Value, ty: &str| {
        let input = SchemaInput {
            schema: schema.to_string(),
            schema_type: Some(ty.into()),
            ..SchemaInput::default()
        };
        rt.block_on(r.register(subject, input)).unwrap().version.id
    };
    let avro = register("avro-value", avro_schema(), "AVRO");
    let json = register("json-value", json_schema(), "JSON");
    (r, avro, json)
}

fn bench(c: &mut Criterion) {
    let (r, avro, json) = registry();
    let e = Enforcer::new(r, Default::default());
    let rule = |validation| PartRule {
        validation,
        strategy: SubjectStrategy::TopicName,
    };
    let mut g = c.benchmark_group("enforce one record");
    for (topic, id) in [("avro", avro), ("json", json)] {
        let payload = e.encode_json(id, &order(), None).unwrap();
        for (name, validation) in [("id", Validation::Id), ("strict", Validation::Strict)] {
            let rule = rule(validation);
            e.check(topic, Part::Value, rule, &payload).unwrap();
            g.bench_function(format!("{topic} {name}"), |b| {
                b.iter(|| e.check(black_box(topic), Part::Value, rule, black_box(&payload)))
            });
        }
        let value = order();
        g.bench_function(format!("{topic} encode from JSON"), |b| {
            b.iter(|| e.encode_json(id, black_box(&value), None).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
