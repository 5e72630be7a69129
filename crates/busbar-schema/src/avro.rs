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
            branch_key(&self.ty)
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

/// Bounds on one comparison; exceeding one answers `Err` naming it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most type-pair comparisons in one check (default 200,000; large real-world schemas take
    /// a few thousand, as each pair of named types is compared once).
    pub steps_max: usize,
    /// Deepest chain of named types compared inside one another (default 128).
    pub depth_max: usize,
}

impl std::default::Default for Limits {
    fn default() -> Self {
        Limits {
            steps_max: 200_000,
            depth_max: 128,
        }
    }
}

/// Whether data written with `writer` can always be read with `reader`; `Err` says why not.
pub fn can_read(reader: &Avro, writer: &Avro) -> Result<(), Vec<String>> {
    can_read_with(reader, writer, &Limits::default())
}

/// [`can_read`] within explicit limits.
pub fn can_read_with(reader: &Avro, writer: &Avro, limits: &Limits) -> Result<(), Vec<String>> {
    let (Some(r), Some(w)) = (&reader.root, &writer.root) else {
        return Err(vec!["an empty schema".into()]);
    };
    let mut check = Check::new(reader, writer, limits);
    check.types(r, w, "");
    match check.stop {
        Some(Stop::Steps) => Err(vec![format!(
            "the schemas are too complex to compare: the check takes more than {} steps",
            limits.steps_max
        )]),
        Some(Stop::Depth) => Err(vec![format!(
            "the schemas are too deep to compare: named types nest more than {} deep",
            limits.depth_max
        )]),
        None if check.errors.is_empty() => Ok(()),
        None => Err(check.errors),
    }
}

/// Why a comparison stopped before its end.
#[derive(Clone, Copy, Debug)]
enum Stop {
    Steps,
    Depth,
}

/// A (reader, writer) pair of named types' full names.
type Pair<'a> = (&'a str, &'a str);

struct Check<'a> {
    reader: &'a Avro,
    writer: &'a Avro,
    limits: &'a Limits,
    steps: usize,
    stop: Option<Stop>,
    /// Final results of pairs: compatible, or the first reason not.
    memo: HashMap<Pair<'a>, Result<(), String>>,
    /// Pairs being compared, each with its position in the chain: met again, they are taken as
    /// compatible (recursive types).
    active: HashMap<Pair<'a>, usize>,
    /// The earliest active pair the current comparison took as compatible (`usize::MAX`: none).
    /// A compatible result that relied on an earlier pair is provisional and not memoised.
    low: usize,
    errors: Vec<String>,
    /// The comparison stops once it has this many errors (one when trying a union branch).
    errors_cap: usize,
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

/// A reader union's branches by the writer types they can match: named branches by the short
/// names of their name and aliases, the rest in one list (at most ten, one per kind).
struct UnionIndex<'a> {
    by_name: HashMap<&'a str, Vec<usize>>,
    unnamed: Vec<usize>,
}

impl<'a> UnionIndex<'a> {
    fn new(reader: &'a Avro, branches: &'a [Type]) -> Self {
        let mut index = UnionIndex {
            by_name: HashMap::new(),
            unnamed: Vec::new(),
        };
        for (i, b) in branches.iter().enumerate() {
            let Type::Named(n) = b else {
                index.unnamed.push(i);
                continue;
            };
            let aliases = reader.named.get(n).map_or(&[][..], |d| &d.aliases[..]);
            let mut keys: Vec<&str> = aliases.iter().map(|a| short(a)).collect();
            keys.push(short(n));
            keys.sort_unstable();
            keys.dedup();
            for k in keys {
                index.by_name.entry(k).or_default().push(i);
            }
        }
        index
    }

    /// The branches that may match writer type `w`, in union order.
    fn candidates(&self, w: &Type) -> &[usize] {
        match w {
            Type::Named(n) => self.by_name.get(short(n)).map_or(&[], |v| &v[..]),
            _ => &self.unnamed,
        }
    }
}

impl<'a> Check<'a> {
    fn new(reader: &'a Avro, writer: &'a Avro, limits: &'a Limits) -> Self {
        Check {
            reader,
            writer,
            limits,
            steps: 0,
            stop: None,
            memo: HashMap::new(),
            active: HashMap::new(),
            low: usize::MAX,
            errors: Vec::new(),
            errors_cap: usize::MAX,
        }
    }

    fn fail(&mut self, at: &str, msg: String) {
        let at = if at.is_empty() { "/" } else { at };
        self.errors.push(format!("{msg} at {at}"));
    }

    fn stopped(&self) -> bool {
        self.stop.is_some() || self.errors.len() >= self.errors_cap
    }

    /// Spends `n` steps of the budget; false (and stopped) past it.
    fn spend(&mut self, n: usize) -> bool {
        self.steps = self.steps.saturating_add(n);
        if self.steps > self.limits.steps_max {
            self.stop = Some(Stop::Steps);
        }
        self.stop.is_none()
    }

    /// Whether the pair matches, without recording errors (for choosing union branches). What
    /// it learns about named pairs is kept.
    fn matches(&mut self, r: &'a Type, w: &'a Type) -> bool {
        let before = self.errors.len();
        let cap = std::mem::replace(&mut self.errors_cap, before + 1);
        self.types(r, w, "");
        self.errors_cap = cap;
        let ok = self.errors.len() == before && self.stop.is_none();
        self.errors.truncate(before);
        ok
    }

    fn types(&mut self, r: &'a Type, w: &'a Type, at: &str) {
        if self.stopped() || !self.spend(1) {
            return;
        }
        match (r, w) {
            (Type::Union(rs), Type::Union(ws)) => {
                if !self.spend(rs.len()) {
                    return;
                }
                let index = UnionIndex::new(self.reader, rs);
                for (i, wb) in ws.iter().enumerate() {
                    self.in_union(rs, &index, wb, &format!("{at}/writer-union/{i}"));
                }
            }
            (_, Type::Union(ws)) => {
                for (i, wb) in ws.iter().enumerate() {
                    self.types(r, wb, &format!("{at}/writer-union/{i}"));
                }
            }
            (Type::Union(rs), w) => {
                if self.spend(rs.len()) {
                    let index = UnionIndex::new(self.reader, rs);
                    self.in_union(rs, &index, w, at);
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

    /// Writer type `w` against the reader union `rs`: some branch must read it.
    fn in_union(&mut self, rs: &'a [Type], index: &UnionIndex<'_>, w: &'a Type, at: &str) {
        if self.stopped() {
            return;
        }
        let candidates = index.candidates(w);
        let found = candidates.iter().any(|&i| self.matches(&rs[i], w));
        if !found && self.stop.is_none() {
            let why = self.why_not(candidates.first().map(|&i| &rs[i]), w);
            self.fail(
                at,
                format!("reader union lacks writer type {}{why}", branch_key(w)),
            );
        }
    }

    /// Why the same-named reader branch `r` could not read `w`, when known (for the message).
    fn why_not(&self, r: Option<&'a Type>, w: &'a Type) -> String {
        match (r, w) {
            (Some(Type::Named(rn)), Type::Named(wn)) => {
                match self.memo.get(&(rn.as_str(), wn.as_str())) {
                    Some(Err(first)) => format!(" (its type of that name: {first})"),
                    _ => String::new(),
                }
            }
            _ => String::new(),
        }
    }

    /// A pair of named types, each pair compared once: its result is memoised unless it relied
    /// on an enclosing pair still being compared.
    fn named(&mut self, rn: &'a str, wn: &'a str, at: &str) {
        let key = (rn, wn);
        if let Some(result) = self.memo.get(&key) {
            if let Err(first) = result {
                let m = format!("reader type {rn} cannot read writer type {wn} ({first})");
                self.fail(at, m);
            }
            return;
        }
        if let Some(&position) = self.active.get(&key) {
            self.low = self.low.min(position);
            return;
        }
        let position = self.active.len();
        if position >= self.limits.depth_max {
            self.stop = Some(Stop::Depth);
            return;
        }
        self.active.insert(key, position);
        let outer_low = std::mem::replace(&mut self.low, usize::MAX);
        let before = self.errors.len();
        self.named_body(rn, wn, at);
        self.active.remove(&key);
        let low = self.low;
        self.low = if low < position {
            outer_low.min(low)
        } else {
            outer_low
        };
        if self.stop.is_some() {
            return;
        }
        // Incompatible even taking the enclosing pairs as compatible: incompatible for good.
        if let Some(first) = self.errors.get(before) {
            self.memo.insert(key, Err(first.clone()));
        } else if low >= position {
            self.memo.insert(key, Ok(()));
        }
    }

    fn named_body(&mut self, rn: &'a str, wn: &'a str, at: &str) {
        let (reader, writer) = (self.reader, self.writer);
        let (Some(rd), Some(wd)) = (reader.named.get(rn), writer.named.get(wn)) else {
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
            (Named::Record { fields: rf }, Named::Record { fields: wf }) => self.record(rf, wf, at),
            (
                Named::Enum {
                    symbols: rs,
                    default,
                },
                Named::Enum { symbols: ws, .. },
            ) => {
                if default.is_none() {
                    let known: HashSet<&String> = rs.iter().collect();
                    let missing: Vec<&String> = ws.iter().filter(|s| !known.contains(s)).collect();
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

    fn record(&mut self, rf: &'a [Field], wf: &'a [Field], at: &str) {
        if !self.spend(wf.len()) {
            return;
        }
        let by_name: HashMap<&str, usize> = (wf.iter().enumerate())
            .map(|(i, w)| (w.name.as_str(), i))
            .collect();
        for f in rf {
            if self.stopped() {
                return;
            }
            // By name, else the first writer field named by one of the reader field's aliases.
            let found = (by_name.get(f.name.as_str()).copied()).or_else(|| {
                (f.aliases.iter())
                    .filter_map(|a| by_name.get(a.as_str()))
                    .min()
                    .copied()
            });
            match found {
                Some(i) => self.types(&f.ty, &wf[i].ty, &format!("{at}/fields/{}", f.name)),
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
