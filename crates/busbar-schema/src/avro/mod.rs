//! Avro schemas by hand (no apache-avro: see docs/decisions.md, issue 17): parsing with the
//! spec's name rules, the canonical text the registry compares and serves, and compatibility by
//! the spec's schema-resolution rules, where a resolution that could fail for some data (Java's
//! and apache-avro's "partial") counts as incompatible.
//!
//! Named types live in [`Avro::named`] and are referred to by full name inside the tree, so
//! recursive types are finite and compatibility memoises each (reader, writer) pair of names.
//! A name may be defined again only identically (a type shared by two references, as Java's
//! parser allows). Field defaults must match their types as Java Avro validates them.
//! Parsing is bounded by the caller's depth limit; a comparison by [`Limits`] (steps, and the
//! depth of named types compared inside one another); nothing here panics on input.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A type in a schema tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    /// Bytes, with a decimal's (precision, scale) when it is one.
    Bytes(Option<(u64, u64)>),
    String,
    Array(Box<Type>),
    Map(Box<Type>),
    Union(Vec<Type>),
    /// A record, enum or fixed, by full name (its definition is in [`Avro::named`]).
    Named(String),
}

/// A record field.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub aliases: Vec<String>,
    pub ty: Type,
    pub has_default: bool,
    /// The default as written in the schema (what encoding a value without the field uses).
    pub default: Option<Value>,
}

/// A named type's definition.
#[derive(Debug, Clone, PartialEq)]
pub enum Named {
    Record {
        fields: Vec<Field>,
    },
    Enum {
        symbols: Vec<String>,
        default: Option<String>,
    },
    /// Fixed of `size` bytes, with a decimal's (precision, scale) when it is one.
    Fixed {
        size: u64,
        decimal: Option<(u64, u64)>,
    },
}

/// A named type with its aliases (full names).
#[derive(Debug, Clone, PartialEq)]
pub struct Def {
    pub aliases: Vec<String>,
    pub kind: Named,
}

/// A parsed schema: its root and every named type it defines or references.
#[derive(Debug, Clone, Default)]
pub struct Avro {
    pub root: Option<Type>,
    pub named: BTreeMap<String, Def>,
}

const PRIMITIVES: &[&str] = &[
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

impl Avro {
    /// Parses `text` with the named types of `known` (its references, already parsed) in scope.
    /// `depth_max` bounds the nesting of types. A name already defined is refused.
    pub fn parse(text: &str, known: &Avro, depth_max: usize) -> Result<Avro, String> {
        Self::parse_with(text, known, depth_max, false)
    }

    /// [`Avro::parse`], but a name already defined (in `known` or earlier in `text`) may be
    /// defined again identically, as Java's `Schema.Parser` allows: a type shared by two
    /// references (a diamond). Only for callers that resolve each reference once; one that
    /// re-resolves every path of a diamond chain would parse exponentially often.
    pub fn parse_shared(text: &str, known: &Avro, depth_max: usize) -> Result<Avro, String> {
        Self::parse_with(text, known, depth_max, true)
    }

    fn parse_with(
        text: &str,
        known: &Avro,
        depth_max: usize,
        redefine: bool,
    ) -> Result<Avro, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let mut out = Avro {
            root: None,
            named: known.named.clone(),
        };
        let mut parser = Parser {
            named: &mut out.named,
            depth_max,
            redefine,
            defining: HashSet::new(),
            defaults: Vec::new(),
        };
        let root = parser.ty(&value, "", 0)?;
        let defaults = std::mem::take(&mut parser.defaults);
        for d in &defaults {
            d.validate(&out.named)?;
        }
        out.root = Some(root);
        Ok(out)
    }

    /// The full name of the root when it is a named type (what RecordNameStrategy uses).
    pub fn root_name(&self) -> Option<&str> {
        match &self.root {
            Some(Type::Named(n)) => Some(n),
            _ => None,
        }
    }
}

struct Parser<'a> {
    named: &'a mut BTreeMap<String, Def>,
    depth_max: usize,
    /// Whether a name may be defined again identically.
    redefine: bool,
    /// Records whose fields are being parsed: defining one again inside itself is refused.
    defining: HashSet<String>,
    /// Every field default met, checked once all named types are complete.
    defaults: Vec<FieldDefault>,
}

/// A field's default, to check against the field's type.
struct FieldDefault {
    record: String,
    field: String,
    ty: Type,
    value: Value,
}

impl FieldDefault {
    /// Java Avro's `Schema.isValidDefault`: refused with 42201 by Confluent.
    fn validate(&self, named: &BTreeMap<String, Def>) -> Result<(), String> {
        if valid_default(named, &self.ty, &self.value) {
            return Ok(());
        }
        let value = crate::shown(&self.value.to_string());
        Err(format!(
            "invalid default for field \"{}\" of {}: {value} is not a {} (a union's default must match its first type)",
            self.field,
            self.record,
            type_name(&self.ty)
        ))
    }
}

/// Whether `v` is a valid default for `ty`, as Java Avro's `Schema.isValidValue` decides.
fn valid_default(named: &BTreeMap<String, Def>, ty: &Type, v: &Value) -> bool {
    match ty {
        Type::Null => v.is_null(),
        Type::Boolean => v.is_boolean(),
        Type::Int => v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
        Type::Long => v.is_i64(),
        Type::Float | Type::Double => v.is_number(),
        Type::Bytes(_) | Type::String => v.is_string(),
        Type::Array(items) => {
            (v.as_array()).is_some_and(|a| a.iter().all(|x| valid_default(named, items, x)))
        }
        Type::Map(values) => {
            (v.as_object()).is_some_and(|o| o.values().all(|x| valid_default(named, values, x)))
        }
        Type::Union(branches) => branches.first().is_some_and(|b| valid_default(named, b, v)),
        Type::Named(n) => match named.get(n).map(|d| &d.kind) {
            Some(Named::Record { fields }) => v.as_object().is_some_and(|o| {
                fields.iter().all(|f| match o.get(&f.name) {
                    Some(x) => valid_default(named, &f.ty, x),
                    // Java uses the field's own default, which is checked on its own.
                    None => f.has_default,
                })
            }),
            Some(Named::Enum { .. } | Named::Fixed { .. }) => v.is_string(),
            None => false,
        },
    }
}

fn full_name(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}.{name}")
    }
}

fn valid_name(full: &str) -> bool {
    full.split('.').all(|part| {
        let mut chars = part.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

fn namespace_of(full: &str) -> &str {
    full.rsplit_once('.').map_or("", |(ns, _)| ns)
}

fn decimal(obj: &Map<String, Value>) -> Result<Option<(u64, u64)>, String> {
    if obj.get("logicalType").and_then(Value::as_str) != Some("decimal") {
        return Ok(None);
    }
    let precision = obj.get("precision").and_then(Value::as_u64);
    let scale = obj.get("scale").and_then(Value::as_u64).unwrap_or(0);
    match precision {
        Some(p) if p > 0 && scale <= p => Ok(Some((p, scale))),
        // Avro ignores an invalid logical type and reads the underlying type.
        _ => Ok(None),
    }
}

impl Parser<'_> {
    fn ty(&mut self, v: &Value, ns: &str, depth: usize) -> Result<Type, String> {
        if depth > self.depth_max {
            return Err(format!(
                "types nested more than {} deep (schema_registry.depth_max)",
                self.depth_max
            ));
        }
        match v {
            Value::String(s) => self.reference(s, ns),
            Value::Array(branches) => self.union(branches, ns, depth),
            Value::Object(obj) => self.complex(obj, ns, depth),
            other => Err(format!(
                "a type must be a string, an object or an array, not {other}"
            )),
        }
    }

    fn reference(&self, s: &str, ns: &str) -> Result<Type, String> {
        if let Some(t) = primitive(s) {
            return Ok(t);
        }
        let full = full_name(s, ns);
        for candidate in [full.as_str(), s] {
            if self.named.contains_key(candidate) {
                return Ok(Type::Named(candidate.to_string()));
            }
        }
        Err(format!("unknown type \"{s}\""))
    }

    fn union(&mut self, branches: &[Value], ns: &str, depth: usize) -> Result<Type, String> {
        let mut out = Vec::with_capacity(branches.len());
        let mut seen = BTreeSet::new();
        for b in branches {
            let t = self.ty(b, ns, depth + 1)?;
            if matches!(t, Type::Union(_)) {
                return Err("a union may not contain a union".into());
            }
            if !seen.insert(type_name(&t)) {
                return Err(format!("duplicate type {} in a union", type_name(&t)));
            }
            out.push(t);
        }
        Ok(Type::Union(out))
    }

    fn complex(
        &mut self,
        obj: &Map<String, Value>,
        ns: &str,
        depth: usize,
    ) -> Result<Type, String> {
        let ty = obj.get("type").ok_or("a type object needs \"type\"")?;
        let name = match ty {
            Value::String(s) => s.as_str(),
            // {"type": {...}} or {"type": [...]}: the inner type.
            other => return self.ty(other, ns, depth + 1),
        };
        match name {
            "record" | "error" | "enum" | "fixed" => self.named_type(name, obj, ns, depth),
            "array" => {
                let items = obj.get("items").ok_or("an array needs \"items\"")?;
                Ok(Type::Array(Box::new(self.ty(items, ns, depth + 1)?)))
            }
            "map" => {
                let values = obj.get("values").ok_or("a map needs \"values\"")?;
                Ok(Type::Map(Box::new(self.ty(values, ns, depth + 1)?)))
            }
            "bytes" => Ok(Type::Bytes(decimal(obj)?)),
            other => self.reference(other, ns),
        }
    }

    fn named_type(
        &mut self,
        kind: &str,
        obj: &Map<String, Value>,
        ns: &str,
        depth: usize,
    ) -> Result<Type, String> {
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("a {kind} needs a string \"name\""))?;
        let ns = match obj.get("namespace") {
            Some(Value::String(s)) => s.as_str(),
            Some(Value::Null) | None => ns,
            Some(_) => return Err("\"namespace\" must be a string".into()),
        };
        let full = full_name(name, ns);
        if !valid_name(&full) {
            return Err(format!("invalid name \"{full}\""));
        }
        let already = format!("the name \"{full}\" is already defined");
        if primitive(&full).is_some() || self.defining.contains(&full) {
            return Err(already);
        }
        let earlier = self.named.get(&full).cloned();
        if earlier.is_some() && !self.redefine {
            return Err(already);
        }
        let inner_ns = namespace_of(&full).to_string();
        let aliases = aliases(obj, &inner_ns)?;
        let kind = match kind {
            "enum" => enumeration(obj)?,
            "fixed" => Named::Fixed {
                size: obj
                    .get("size")
                    .and_then(Value::as_u64)
                    .ok_or("a fixed needs a non-negative integer \"size\"")?,
                decimal: decimal(obj)?,
            },
            _ => self.record(&full, &aliases, earlier.is_none(), obj, depth)?,
        };
        let def = Def { aliases, kind };
        match earlier {
            // A type shared by two references (a diamond) is defined twice, identically.
            Some(earlier) if earlier == def => {}
            Some(_) => return Err(already),
            None => {
                self.named.insert(full.clone(), def);
            }
        }
        Ok(Type::Named(full))
    }

    /// A record's fields; `placeholder` when the name is new, so its fields can refer to it
    /// (recursive types) before it is complete.
    fn record(
        &mut self,
        full: &str,
        aliases: &[String],
        placeholder: bool,
        obj: &Map<String, Value>,
        depth: usize,
    ) -> Result<Named, String> {
        if placeholder {
            let def = Def {
                aliases: aliases.to_vec(),
                kind: Named::Record { fields: vec![] },
            };
            self.named.insert(full.to_string(), def);
        }
        self.defining.insert(full.to_string());
        let fields = self.fields(full, obj, namespace_of(full), depth);
        self.defining.remove(full);
        if fields.is_err() && placeholder {
            self.named.remove(full);
        }
        Ok(Named::Record { fields: fields? })
    }

    fn fields(
        &mut self,
        record: &str,
        obj: &Map<String, Value>,
        ns: &str,
        depth: usize,
    ) -> Result<Vec<Field>, String> {
        let list = obj
            .get("fields")
            .and_then(Value::as_array)
            .ok_or("a record needs an array \"fields\"")?;
        let mut out: Vec<Field> = Vec::with_capacity(list.len());
        let mut names = HashSet::with_capacity(list.len());
        for f in list {
            let f = f.as_object().ok_or("a field must be an object")?;
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or("a field needs a string \"name\"")?;
            if !valid_name(name) || name.contains('.') {
                return Err(format!("invalid field name \"{name}\""));
            }
            if !names.insert(name) {
                return Err(format!("duplicate field \"{name}\""));
            }
            let ty = f
                .get("type")
                .ok_or_else(|| format!("field \"{name}\" needs \"type\""))?;
            let ty = self.ty(ty, ns, depth + 1)?;
            if let Some(value) = f.get("default") {
                self.defaults.push(FieldDefault {
                    record: record.to_string(),
                    field: name.to_string(),
                    ty: ty.clone(),
                    value: value.clone(),
                });
            }
            out.push(Field {
                name: name.to_string(),
                aliases: aliases(f, "")?,
                ty,
                has_default: f.contains_key("default"),
                default: f.get("default").cloned(),
            });
        }
        Ok(out)
    }
}

fn primitive(s: &str) -> Option<Type> {
    Some(match s {
        "null" => Type::Null,
        "boolean" => Type::Boolean,
        "int" => Type::Int,
        "long" => Type::Long,
        "float" => Type::Float,
        "double" => Type::Double,
        "bytes" => Type::Bytes(None),
        "string" => Type::String,
        _ => return None,
    })
}

fn aliases(obj: &Map<String, Value>, ns: &str) -> Result<Vec<String>, String> {
    match obj.get("aliases") {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(|s| full_name(s, ns))
                    .ok_or_else(|| "aliases must be strings".to_string())
            })
            .collect(),
        Some(_) => Err("\"aliases\" must be an array".into()),
    }
}

fn enumeration(obj: &Map<String, Value>) -> Result<Named, String> {
    let symbols = obj
        .get("symbols")
        .and_then(Value::as_array)
        .ok_or("an enum needs an array \"symbols\"")?;
    let mut out: Vec<String> = Vec::with_capacity(symbols.len());
    let mut seen = HashSet::with_capacity(symbols.len());
    for s in symbols {
        let s = s.as_str().ok_or("enum symbols must be strings")?;
        if !valid_name(s) || s.contains('.') || !seen.insert(s) {
            return Err(format!("invalid or duplicate enum symbol \"{s}\""));
        }
        out.push(s.to_string());
    }
    let default = match obj.get("default") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) if out.contains(d) => Some(d.clone()),
        Some(d) => return Err(format!("enum default {d} is not one of its symbols")),
    };
    Ok(Named::Enum {
        symbols: out,
        default,
    })
}

/// A type's name: a named type's full name, else the primitive or complex type's own name. What
/// identifies a union branch (two branches may not share it), what Avro's JSON encoding wraps a
/// union value in, and the record name a primitive root gives RecordNameStrategy.
pub(crate) fn type_name(t: &Type) -> String {
    match t {
        Type::Null => "null".into(),
        Type::Boolean => "boolean".into(),
        Type::Int => "int".into(),
        Type::Long => "long".into(),
        Type::Float => "float".into(),
        Type::Double => "double".into(),
        Type::Bytes(_) => "bytes".into(),
        Type::String => "string".into(),
        Type::Array(_) => "array".into(),
        Type::Map(_) => "map".into(),
        Type::Union(_) => "union".into(),
        Type::Named(n) => n.clone(),
    }
}

pub mod binary;
mod canonical;
mod compat;
pub use binary::CodecLimits;
pub use canonical::canonical;
pub use compat::{can_read, can_read_with, Limits};
