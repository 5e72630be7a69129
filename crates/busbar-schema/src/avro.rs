//! Avro schemas by hand (no apache-avro: see docs/decisions.md, issue 17): parsing with the
//! spec's name rules, the canonical text the registry compares and serves, and compatibility by
//! the spec's schema-resolution rules, where a resolution that could fail for some data (Java's
//! and apache-avro's "partial") counts as incompatible.
//!
//! Named types live in [`Avro::named`] and are referred to by full name inside the tree, so
//! recursive types are finite and compatibility memoises each (reader, writer) pair of names.
//! Parsing is bounded by the caller's depth limit; nothing here panics on input.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

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
    /// `depth_max` bounds the nesting of types.
    pub fn parse(text: &str, known: &Avro, depth_max: usize) -> Result<Avro, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let mut out = Avro {
            root: None,
            named: known.named.clone(),
        };
        let root = Parser {
            named: &mut out.named,
            depth_max,
        }
        .ty(&value, "", 0)?;
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
            if !seen.insert(branch_key(&t)) {
                return Err(format!("duplicate type {} in a union", branch_key(&t)));
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
        if primitive(&full).is_some() || self.named.contains_key(&full) {
            return Err(format!("the name \"{full}\" is already defined"));
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
            _ => {
                // Defined before its fields so they can refer to it (recursive types).
                self.named.insert(
                    full.clone(),
                    Def {
                        aliases: aliases.clone(),
                        kind: Named::Record { fields: vec![] },
                    },
                );
                Named::Record {
                    fields: self.fields(obj, &inner_ns, depth)?,
                }
            }
        };
        self.named.insert(full.clone(), Def { aliases, kind });
        Ok(Type::Named(full))
    }

    fn fields(
        &mut self,
        obj: &Map<String, Value>,
        ns: &str,
        depth: usize,
    ) -> Result<Vec<Field>, String> {
        let list = obj
            .get("fields")
            .and_then(Value::as_array)
            .ok_or("a record needs an array \"fields\"")?;
        let mut out: Vec<Field> = Vec::with_capacity(list.len());
        for f in list {
            let f = f.as_object().ok_or("a field must be an object")?;
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or("a field needs a string \"name\"")?;
            if !valid_name(name) || name.contains('.') {
                return Err(format!("invalid field name \"{name}\""));
            }
            if out.iter().any(|o| o.name == name) {
                return Err(format!("duplicate field \"{name}\""));
            }
            let ty = f
                .get("type")
                .ok_or_else(|| format!("field \"{name}\" needs \"type\""))?;
            out.push(Field {
                name: name.to_string(),
                aliases: aliases(f, "")?,
                ty: self.ty(ty, ns, depth + 1)?,
                has_default: f.contains_key("default"),
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
    for s in symbols {
        let s = s.as_str().ok_or("enum symbols must be strings")?;
        if !valid_name(s) || s.contains('.') || out.iter().any(|o| o == s) {
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

/// What identifies a union branch (two branches may not share it).
fn branch_key(t: &Type) -> String {
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

/// Whether data written with `writer` can always be read with `reader`; `Err` says why not.
pub fn can_read(reader: &Avro, writer: &Avro) -> Result<(), Vec<String>> {
    let (Some(r), Some(w)) = (&reader.root, &writer.root) else {
        return Err(vec!["an empty schema".into()]);
    };
    let mut check = Check {
        reader,
        writer,
        seen: BTreeSet::new(),
        errors: Vec::new(),
    };
    check.types(r, w, "");
    if check.errors.is_empty() {
        Ok(())
    } else {
        Err(check.errors)
    }
}

struct Check<'a> {
    reader: &'a Avro,
    writer: &'a Avro,
    /// (reader name, writer name) pairs being or already checked: recursion ends there.
    seen: BTreeSet<(String, String)>,
    errors: Vec<String>,
}

fn short(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

fn promotable(r: &Type, w: &Type) -> bool {
    use Type::*;
    matches!(
        (w, r),
        (Int, Long | Float | Double)
            | (Long, Float | Double)
            | (Float, Double)
            | (String, Bytes(None))
            | (Bytes(None), String)
    )
}

impl Check<'_> {
    fn fail(&mut self, at: &str, msg: String) {
        let at = if at.is_empty() { "/" } else { at };
        self.errors.push(format!("{msg} at {at}"));
    }

    /// Whether the pair matches, without recording errors (for choosing union branches).
    fn matches(&mut self, r: &Type, w: &Type) -> bool {
        let before = self.errors.len();
        let seen = self.seen.clone();
        self.types(r, w, "");
        let ok = self.errors.len() == before;
        self.errors.truncate(before);
        self.seen = seen;
        ok
    }

    fn types(&mut self, r: &Type, w: &Type, at: &str) {
        match (r, w) {
            (_, Type::Union(ws)) => {
                for (i, wb) in ws.iter().enumerate() {
                    self.types(r, wb, &format!("{at}/writer-union/{i}"));
                }
            }
            (Type::Union(rs), w) => {
                let rs = rs.clone();
                if !rs.iter().any(|rb| self.matches(rb, w)) {
                    self.fail(
                        at,
                        format!("reader union lacks writer type {}", branch_key(w)),
                    );
                }
            }
            (Type::Array(ri), Type::Array(wi)) => self.types(ri, wi, &format!("{at}/items")),
            (Type::Map(rv), Type::Map(wv)) => self.types(rv, wv, &format!("{at}/values")),
            (Type::Bytes(rd), Type::Bytes(wd)) if rd != wd => {
                self.fail(at, "decimal precision or scale differs".into())
            }
            (Type::Named(rn), Type::Named(wn)) => self.named(rn, wn, at),
            (r, w) if r == w || promotable(r, w) => {}
            (r, w) => self.fail(
                at,
                format!(
                    "reader type {} does not match writer type {}",
                    branch_key(r),
                    branch_key(w)
                ),
            ),
        }
    }

    fn named(&mut self, rn: &str, wn: &str, at: &str) {
        if !self.seen.insert((rn.to_string(), wn.to_string())) {
            return;
        }
        let (Some(rd), Some(wd)) = (self.reader.named.get(rn), self.writer.named.get(wn)) else {
            return self.fail(at, format!("undefined type {rn} or {wn}"));
        };
        let same_name =
            short(rn) == short(wn) || rd.aliases.iter().any(|a| a == wn || short(a) == short(wn));
        if !same_name {
            return self.fail(
                at,
                format!("reader type name {rn} does not match writer name {wn}"),
            );
        }
        match (&rd.kind, &wd.kind) {
            (Named::Record { fields: rf }, Named::Record { fields: wf }) => {
                let (rf, wf) = (rf.clone(), wf.clone());
                self.record(&rf, &wf, at)
            }
            (
                Named::Enum {
                    symbols: rs,
                    default,
                },
                Named::Enum { symbols: ws, .. },
            ) => {
                if default.is_none() {
                    let missing: Vec<&String> = ws.iter().filter(|s| !rs.contains(s)).collect();
                    if !missing.is_empty() {
                        let m = format!("reader enum {rn} lacks writer symbols {missing:?}");
                        self.fail(at, m);
                    }
                }
            }
            (
                Named::Fixed {
                    size: rs,
                    decimal: rd,
                },
                Named::Fixed {
                    size: ws,
                    decimal: wd,
                },
            ) => {
                if rs != ws {
                    self.fail(
                        at,
                        format!("fixed size {rs} does not match writer size {ws}"),
                    );
                } else if rd != wd {
                    self.fail(at, "decimal precision or scale differs".into());
                }
            }
            _ => self.fail(
                at,
                format!("reader type {rn} is not the same kind as writer type {wn}"),
            ),
        }
    }

    fn record(&mut self, rf: &[Field], wf: &[Field], at: &str) {
        for f in rf {
            let found = wf
                .iter()
                .find(|w| w.name == f.name)
                .or_else(|| wf.iter().find(|w| f.aliases.contains(&w.name)));
            match found {
                Some(w) => self.types(&f.ty, &w.ty, &format!("{at}/fields/{}", f.name)),
                None if f.has_default => {}
                None => self.fail(
                    at,
                    format!(
                        "reader field \"{}\" has no default value and is missing from the writer",
                        f.name
                    ),
                ),
            }
        }
    }
}
