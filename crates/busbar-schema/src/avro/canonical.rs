//! The canonical text of an Avro schema's JSON: what the registry compares for equality and
//! serves back, as Confluent does.
//!
//! Names are written as Avro's own `Schema.toString()` writes them (what Confluent serves and
//! compares): a named type's `name` is its simple name, with `namespace` only where it differs
//! from the enclosing one (`""` for the null namespace inside another), and a reference to a
//! named type is its simple name in its own namespace, else its full name. So `"name": "a.X"`
//! and `"name": "X", "namespace": "a"` are one schema with one id.

use super::PRIMITIVES;
use serde_json::{Map, Value};

/// The canonical text of a schema's JSON: compact, a type object holding only `"type"` written as
/// its name (`{"type":"string"}` → `"string"`, as Confluent serves it), object keys in a fixed
/// order (the ones Avro prints first, then the rest sorted). Two submissions that differ only in
/// whitespace or key order have the same canonical text.
pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out, KEY_ORDER, None);
    out
}

/// The kinds of named types.
const NAMED: &[&str] = &["record", "error", "enum", "fixed"];

/// The namespace and simple name of a full name (`a.b.X` → (`a.b`, `X`); `X` → no namespace).
fn split(full: &str) -> (Option<&str>, &str) {
    match full.rsplit_once('.') {
        Some((space, name)) => (Some(space).filter(|s| !s.is_empty()), name),
        None => (None, full),
    }
}

/// The full name of `name` declared or referenced in namespace `ns` (a dotted name is full).
fn full_name(name: &str, ns: Option<&str>) -> String {
    match ns {
        Some(ns) if !name.contains('.') => format!("{ns}.{name}"),
        _ => name.to_string(),
    }
}

/// A reference to a named type as Avro writes it inside namespace `ns`.
fn reference(name: &str, ns: Option<&str>) -> String {
    let full = full_name(name, ns);
    match split(&full) {
        (space, simple) if space == ns => simple.to_string(),
        _ => full,
    }
}

/// A named type's object with `name` and `namespace` as Avro writes them inside namespace
/// `ns`, and the namespace it opens; `None` when `obj` is not a named type.
fn renamed(
    obj: &Map<String, Value>,
    ns: Option<&str>,
) -> Option<(Map<String, Value>, Option<String>)> {
    let kind = obj.get("type")?.as_str()?;
    let name = obj.get("name")?.as_str()?;
    if !NAMED.contains(&kind) {
        return None;
    }
    // A null namespace inherits the enclosing one, as the parser (and Java) read it; only
    // `""` is the null namespace.
    let declared = match obj.get("namespace") {
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.as_str()),
        _ => ns,
    };
    let full = full_name(name, declared);
    let (space, simple) = split(&full);
    let mut out = obj.clone();
    out.insert("name".into(), Value::String(simple.to_string()));
    out.remove("namespace");
    if space != ns {
        out.insert(
            "namespace".into(),
            Value::String(space.unwrap_or_default().to_string()),
        );
    }
    Some((out, space.map(str::to_string)))
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

fn write_canonical(v: &Value, out: &mut String, order: &[&str], ns: Option<&str>) {
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
            let named = renamed(obj, ns);
            let (obj, inner_ns) = match &named {
                Some((o, space)) => (o, space.as_deref()),
                None => (obj, ns),
            };
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
                    ("fields", Value::Array(fields)) => {
                        write_list(fields, out, FIELD_ORDER, inner_ns)
                    }
                    // A field's type is in its record's namespace, as are a named type's
                    // items and values; `type` of the named type itself is its kind.
                    ("type", Value::String(t)) if named.is_some() => {
                        out.push_str(&Value::String(t.clone()).to_string())
                    }
                    ("type" | "items" | "values", inner) => {
                        write_canonical(inner, out, KEY_ORDER, inner_ns)
                    }
                    // Data (defaults), docs, symbols: not schemas, never collapsed.
                    (_, inner) => out.push_str(&crate::schema::json_canonical(inner)),
                }
            }
            out.push('}');
        }
        Value::Array(items) => write_list(items, out, KEY_ORDER, ns),
        Value::String(t) if !PRIMITIVES.contains(&t.as_str()) => {
            out.push_str(&Value::String(reference(t, ns)).to_string())
        }
        other => out.push_str(&other.to_string()),
    }
}

fn write_list(items: &[Value], out: &mut String, order: &[&str], ns: Option<&str>) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_canonical(item, out, order, ns);
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::canonical;
    use serde_json::json;

    #[test]
    fn a_dotted_name_and_a_namespace_are_one_schema() {
        let a = json!({"type": "record", "name": "a.X", "fields": [{"name": "f", "type": "int"}]});
        let b = json!({"type": "record", "name": "X", "namespace": "a",
            "fields": [{"name": "f", "type": "int"}]});
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(
            canonical(&a),
            r#"{"type":"record","name":"X","namespace":"a","fields":[{"name":"f","type":"int"}]}"#
        );
    }

    #[test]
    fn a_null_namespace_inherits_and_an_empty_one_does_not() {
        let with = |ns: serde_json::Value| {
            json!({"type": "record", "name": "R", "namespace": "a", "fields": [
                {"name": "x", "type": {"type": "enum", "name": "E", "namespace": ns, "symbols": ["A"]}}]})
        };
        assert_ne!(canonical(&with(json!(null))), canonical(&with(json!(""))));
        let inherited = json!({"type": "record", "name": "R", "namespace": "a", "fields": [
            {"name": "x", "type": {"type": "enum", "name": "E", "symbols": ["A"]}}]});
        assert_eq!(canonical(&with(json!(null))), canonical(&inherited));
    }

    #[test]
    fn nested_names_are_written_relative_to_their_namespace() {
        // The inner record repeats its namespace and is referenced by its full name; an enum
        // leaves for the null namespace (`"E"` then finds it there, as Avro looks a name up in
        // the null namespace when the enclosing one has none of it).
        let v = json!({"type": "record", "name": "Outer", "namespace": "a", "fields": [
            {"name": "i", "type": {"type": "record", "name": "a.Inner", "fields": []}},
            {"name": "j", "type": "a.Inner"},
            {"name": "k", "type": ["null", "Inner"]},
            {"name": "e", "type": {"type": "enum", "name": "E", "namespace": "", "symbols": ["A"]}},
            {"name": "r", "type": "E"},
            {"name": "m", "type": {"type": "map", "values": "b.Other"}}
        ]});
        assert_eq!(
            canonical(&v),
            concat!(
                r#"{"type":"record","name":"Outer","namespace":"a","fields":["#,
                r#"{"name":"i","type":{"type":"record","name":"Inner","fields":[]}},"#,
                r#"{"name":"j","type":"Inner"},{"name":"k","type":["null","Inner"]},"#,
                r#"{"name":"e","type":{"type":"enum","name":"E","namespace":"","symbols":["A"]}},"#,
                r#"{"name":"r","type":"E"},"#,
                r#"{"name":"m","type":{"type":"map","values":"b.Other"}}]}"#
            )
        );
    }
}
