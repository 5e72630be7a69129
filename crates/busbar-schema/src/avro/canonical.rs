//! The canonical text of an Avro schema's JSON: what the registry compares for equality and
//! serves back, as Confluent does.

use super::PRIMITIVES;
use serde_json::Value;

/// The canonical text of a schema's JSON: compact, a type object holding only `"type"` written as
/// its name (`{"type":"string"}` → `"string"`, as Confluent serves it), object keys in a fixed
/// order (the ones Avro prints first, then the rest sorted). Two submissions that differ only in
/// whitespace or key order have the same canonical text.
pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out, KEY_ORDER);
    out
}

const KEY_ORDER: &[&str] = &[
    "type",
    "name",
    "namespace",
    "doc",
    "fields",
    "symbols",
    "items",
    "values",
    "size",
    "default",
];

/// A record field's keys, in the order Avro prints them.
const FIELD_ORDER: &[&str] = &["name", "type", "doc", "default", "order", "aliases"];

fn write_canonical(v: &Value, out: &mut String, order: &[&str]) {
    match v {
        Value::Object(obj) => {
            if obj.len() == 1 {
                if let Some(Value::String(t)) = obj.get("type") {
                    if PRIMITIVES.contains(&t.as_str()) {
                        out.push_str(&Value::String(t.clone()).to_string());
                        return;
                    }
                }
            }
            let mut keys: Vec<&String> = obj.keys().collect();
            keys.sort_by_key(|k| {
                let rank = order.iter().position(|o| o == k).unwrap_or(order.len());
                (rank, (*k).clone())
            });
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                match (k.as_str(), &obj[k]) {
                    ("fields", Value::Array(fields)) => write_list(fields, out, FIELD_ORDER),
                    ("type" | "items" | "values", inner) => write_canonical(inner, out, KEY_ORDER),
                    // Data (defaults), docs, symbols: not schemas, never collapsed.
                    (_, inner) => out.push_str(&crate::schema::json_canonical(inner)),
                }
            }
            out.push('}');
        }
        Value::Array(items) => write_list(items, out, KEY_ORDER),
        other => out.push_str(&other.to_string()),
    }
}

fn write_list(items: &[Value], out: &mut String, order: &[&str]) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_canonical(item, out, order);
    }
    out.push(']');
}
