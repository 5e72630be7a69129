//! How the diff sees a JSON Schema document: which kind of schema a JSON value is (the way Everit,
//! the loader behind Confluent's diff, classifies it), and where a `$ref` points.
//!
//! A schema object can mean several schemas at once (`{"type": "string", "enum": [..]}` is an
//! `allOf` of a string schema and an enum schema), so a [`Handle`] is a JSON value plus a [`Facet`]
//! naming which of those meanings it stands for. Nothing here recurses over the document except
//! [`Side::new`], which walks it with an explicit stack and refuses documents nested deeper than the
//! limit, so everything later may recurse safely.

use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

/// One side of the comparison: the schema and the documents it may reference, indexed.
pub(crate) struct Side<'a> {
    docs: Vec<Doc<'a>>,
}

struct Doc<'a> {
    /// The reference name (Confluent `references[].name`); `None` for the schema itself.
    name: Option<&'a str>,
    root: &'a Value,
    /// `$id` values (without a trailing `#`) and anchors (`#name`) to the schemas that declare them.
    ids: HashMap<&'a str, &'a Value>,
    anchors: HashMap<String, &'a Value>,
}

/// The JSON nesting of a document is over the limit.
#[derive(Debug)]
pub(crate) struct TooDeep;

impl<'a> Side<'a> {
    /// Indexes `schema` and its named references; `Err` if any is nested deeper than `depth_max`.
    pub(crate) fn new(
        schema: &'a Value,
        references: &'a [(String, Value)],
        depth_max: usize,
    ) -> Result<Self, TooDeep> {
        let mut docs = vec![Doc::index(None, schema, depth_max)?];
        for (name, value) in references {
            docs.push(Doc::index(Some(name), value, depth_max)?);
        }
        Ok(Side { docs })
    }

    /// The handle of the schema itself.
    pub(crate) fn root(&'a self) -> Handle<'a> {
        Handle {
            side: self,
            doc: 0,
            value: self.docs[0].root,
            facet: Facet::Whole,
        }
    }

    /// Resolves `reference` as seen from document `doc`: `#`, `#/json/pointer`, `#anchor`, a `$id`
    /// of any document (optionally followed by a fragment), or a reference name.
    fn resolve(&'a self, doc: usize, reference: &str) -> Option<(usize, &'a Value)> {
        let (base, fragment) = match reference.split_once('#') {
            Some((base, fragment)) => (base, fragment),
            None => (reference, ""),
        };
        let (doc, start) = if base.is_empty() {
            (doc, self.docs[doc].root)
        } else {
            self.find_base(base)?
        };
        if fragment.is_empty() {
            return Some((doc, start));
        }
        if fragment.starts_with('/') {
            return start.pointer(&percent_decode(fragment)?).map(|v| (doc, v));
        }
        let anchor = format!("#{}", percent_decode(fragment)?);
        self.docs[doc]
            .anchors
            .get(&anchor)
            .map(|v| (doc, *v))
            .or_else(|| self.find_anchor(&anchor))
    }

    fn find_base(&'a self, base: &str) -> Option<(usize, &'a Value)> {
        let base = base.trim_end_matches('#');
        let by_id = self
            .docs
            .iter()
            .enumerate()
            .find_map(|(i, d)| d.ids.get(base).map(|v| (i, *v)));
        by_id.or_else(|| {
            self.docs
                .iter()
                .position(|d| d.name == Some(base))
                .map(|i| (i, self.docs[i].root))
        })
    }

    fn find_anchor(&'a self, anchor: &str) -> Option<(usize, &'a Value)> {
        self.docs
            .iter()
            .enumerate()
            .find_map(|(i, d)| d.anchors.get(anchor).map(|v| (i, *v)))
    }
}

impl<'a> Doc<'a> {
    fn index(name: Option<&'a str>, root: &'a Value, depth_max: usize) -> Result<Self, TooDeep> {
        let mut doc = Doc {
            name,
            root,
            ids: HashMap::new(),
            anchors: HashMap::new(),
        };
        let mut stack = vec![(root, 1usize)];
        while let Some((value, depth)) = stack.pop() {
            if depth > depth_max {
                return Err(TooDeep);
            }
            match value {
                Value::Object(map) => {
                    doc.note_ids(map, value);
                    stack.extend(map.values().map(|v| (v, depth + 1)));
                }
                Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
                _ => {}
            }
        }
        Ok(doc)
    }

    fn note_ids(&mut self, map: &'a Map<String, Value>, value: &'a Value) {
        for key in ["$id", "id"] {
            if let Some(Value::String(id)) = map.get(key) {
                if let Some(anchor) = id.strip_prefix('#') {
                    self.anchors.insert(format!("#{anchor}"), value);
                } else {
                    self.ids.entry(id.trim_end_matches('#')).or_insert(value);
                }
            }
        }
        if let Some(Value::String(anchor)) = map.get("$anchor") {
            self.anchors.insert(format!("#{anchor}"), value);
        }
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Which meaning of a JSON value a handle stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Facet {
    /// The value as a whole schema.
    Whole,
    /// Only its type-specific keywords, for one type.
    Type(TypeName),
    /// Its `type` array: an `anyOf` of one [`Facet::Type`] per name.
    TypeList,
    Enum,
    Const,
    Combined(Criterion),
    Not,
    Ref,
}

/// The JSON Schema type names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TypeName {
    String,
    Number,
    Integer,
    Boolean,
    Null,
    Object,
    Array,
}

impl TypeName {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "string" => TypeName::String,
            "number" => TypeName::Number,
            "integer" => TypeName::Integer,
            "boolean" => TypeName::Boolean,
            "null" => TypeName::Null,
            "object" => TypeName::Object,
            "array" => TypeName::Array,
            _ => return None,
        })
    }
}

/// The combination keywords.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Criterion {
    All,
    Any,
    One,
}

impl Criterion {
    pub(crate) fn keyword(self) -> &'static str {
        match self {
            Criterion::All => "allOf",
            Criterion::Any => "anyOf",
            Criterion::One => "oneOf",
        }
    }
}

/// A schema within one side: a JSON value seen through one facet.
#[derive(Clone, Copy)]
pub(crate) struct Handle<'a> {
    side: &'a Side<'a>,
    doc: usize,
    pub(crate) value: &'a Value,
    facet: Facet,
}

/// What a handle is, after following `$ref`s and single-meaning objects.
pub(crate) enum Node<'a> {
    /// `true`, `{}`, or an object with only annotations: accepts everything.
    Empty,
    False,
    String(&'a Map<String, Value>),
    Number(&'a Map<String, Value>, bool),
    Boolean,
    Null,
    Object(&'a Map<String, Value>),
    Array(&'a Map<String, Value>),
    Enum(&'a [Value]),
    Const(&'a Value),
    Combined(Criterion, Vec<Handle<'a>>),
    Not(Handle<'a>),
    /// A `$ref` that resolves nowhere, kept as written.
    Unresolved(&'a str),
    /// A `$ref` chain that loops.
    Cycle,
    /// A value that is no schema (a number where a schema belongs), or an unknown type name.
    Invalid(&'a Value),
}

/// Which nodes the diff treats as the same kind of schema (Everit's classes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Empty,
    False,
    String,
    Number,
    Boolean,
    Null,
    Object,
    Array,
    Enum,
    Const,
    Combined,
    Not,
    Unresolved,
    Cycle,
    Invalid,
}

impl Node<'_> {
    pub(crate) fn class(&self) -> Class {
        match self {
            Node::Empty => Class::Empty,
            Node::False => Class::False,
            Node::String(_) => Class::String,
            Node::Number(..) => Class::Number,
            Node::Boolean => Class::Boolean,
            Node::Null => Class::Null,
            Node::Object(_) => Class::Object,
            Node::Array(_) => Class::Array,
            Node::Enum(_) => Class::Enum,
            Node::Const(_) => Class::Const,
            Node::Combined(..) => Class::Combined,
            Node::Not(_) => Class::Not,
            Node::Unresolved(_) => Class::Unresolved,
            Node::Cycle => Class::Cycle,
            Node::Invalid(_) => Class::Invalid,
        }
    }
}

const STRING_KEYWORDS: &[&str] = &["minLength", "maxLength", "pattern", "format"];
const NUMBER_KEYWORDS: &[&str] = &[
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
];
const OBJECT_KEYWORDS: &[&str] = &[
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "dependencies",
    "dependentRequired",
    "dependentSchemas",
    "minProperties",
    "maxProperties",
    "propertyNames",
    "unevaluatedProperties",
];
const ARRAY_KEYWORDS: &[&str] = &[
    "items",
    "prefixItems",
    "additionalItems",
    "unevaluatedItems",
    "minItems",
    "maxItems",
    "uniqueItems",
    "contains",
    "minContains",
    "maxContains",
];

impl<'a> Handle<'a> {
    /// The same side and document, another value seen whole (a subschema).
    pub(crate) fn child(&self, value: &'a Value) -> Handle<'a> {
        Handle {
            value,
            facet: Facet::Whole,
            ..*self
        }
    }

    fn with_facet(&self, facet: Facet) -> Handle<'a> {
        Handle { facet, ..*self }
    }

    /// Identity for memoisation: the value's address and the facet.
    pub(crate) fn key(&self) -> (usize, Facet) {
        (self.value as *const Value as usize, self.facet)
    }

    /// Follows `$ref`s and objects with a single meaning until a handle with a node of its own;
    /// at most `hops_max` steps (a longer chain is reported as a cycle).
    pub(crate) fn resolve(self, hops_max: usize) -> (Handle<'a>, Node<'a>) {
        let mut handle = self;
        let mut seen = HashSet::new();
        for _ in 0..hops_max {
            if !seen.insert(handle.key()) {
                break;
            }
            match handle.step() {
                Step::Node(node) => return (handle, node),
                Step::Next(next) => handle = next,
            }
        }
        (handle, Node::Cycle)
    }

    fn step(&self) -> Step<'a> {
        let map = match self.value {
            Value::Bool(true) => return Step::Node(Node::Empty),
            Value::Bool(false) => return Step::Node(Node::False),
            Value::Object(map) => map,
            other => return Step::Node(Node::Invalid(other)),
        };
        match self.facet {
            Facet::Whole => self.whole(map),
            Facet::Ref => self.follow(map),
            Facet::Type(name) => Step::Node(typed(name, map)),
            Facet::TypeList => Step::Node(self.type_list(map)),
            Facet::Enum => match map.get("enum") {
                Some(Value::Array(values)) => Step::Node(Node::Enum(values)),
                _ => Step::Node(Node::Empty),
            },
            Facet::Const => Step::Node(map.get("const").map_or(Node::Empty, Node::Const)),
            Facet::Combined(criterion) => Step::Node(self.combined(criterion, map)),
            Facet::Not => Step::Node(match map.get("not") {
                Some(not) => Node::Not(self.child(not)),
                None => Node::Empty,
            }),
        }
    }

    fn whole(&self, map: &'a Map<String, Value>) -> Step<'a> {
        let facets = facets(map);
        match facets.as_slice() {
            [] => Step::Node(Node::Empty),
            [facet] => Step::Next(self.with_facet(*facet)),
            _ => Step::Node(Node::Combined(
                Criterion::All,
                facets.iter().map(|f| self.with_facet(*f)).collect(),
            )),
        }
    }

    fn follow(&self, map: &'a Map<String, Value>) -> Step<'a> {
        let Some(Value::String(reference)) = map.get("$ref") else {
            return Step::Node(Node::Empty);
        };
        match self.side.resolve(self.doc, reference) {
            Some((doc, value)) => Step::Next(Handle {
                side: self.side,
                doc,
                value,
                facet: Facet::Whole,
            }),
            None => Step::Node(Node::Unresolved(reference)),
        }
    }

    fn type_list(&self, map: &'a Map<String, Value>) -> Node<'a> {
        let mut names = Vec::new();
        if let Some(unknown @ Value::String(_)) = map.get("type") {
            return Node::Invalid(unknown);
        }
        if let Some(Value::Array(list)) = map.get("type") {
            for name in list.iter().filter_map(Value::as_str) {
                match TypeName::parse(name) {
                    Some(name) if !names.contains(&name) => names.push(name),
                    Some(_) => {}
                    None => return Node::Invalid(&map["type"]),
                }
            }
        }
        let subs = names
            .into_iter()
            .map(|n| self.with_facet(Facet::Type(n)))
            .collect();
        Node::Combined(Criterion::Any, subs)
    }

    fn combined(&self, criterion: Criterion, map: &'a Map<String, Value>) -> Node<'a> {
        let Some(Value::Array(subs)) = map.get(criterion.keyword()) else {
            return Node::Empty;
        };
        // Duplicates count once (Confluent collects the subschemas into a set).
        let mut unique: Vec<&Value> = Vec::with_capacity(subs.len());
        for sub in subs {
            if !unique.contains(&sub) {
                unique.push(sub);
            }
        }
        Node::Combined(
            criterion,
            unique.into_iter().map(|v| self.child(v)).collect(),
        )
    }
}

enum Step<'a> {
    Node(Node<'a>),
    Next(Handle<'a>),
}

/// The meanings of a schema object, in Everit's order; several make an `allOf`.
fn facets(map: &Map<String, Value>) -> Vec<Facet> {
    let mut facets = Vec::new();
    if matches!(map.get("enum"), Some(Value::Array(_))) {
        facets.push(Facet::Enum);
    }
    if map.contains_key("const") {
        facets.push(Facet::Const);
    }
    for criterion in [Criterion::All, Criterion::Any, Criterion::One] {
        if matches!(map.get(criterion.keyword()), Some(Value::Array(_))) {
            facets.push(Facet::Combined(criterion));
        }
    }
    if map.contains_key("not") {
        facets.push(Facet::Not);
    }
    if matches!(map.get("$ref"), Some(Value::String(_))) {
        facets.push(Facet::Ref);
    }
    type_facets(map, &mut facets);
    facets
}

fn type_facets(map: &Map<String, Value>, facets: &mut Vec<Facet>) {
    match map.get("type") {
        Some(Value::String(name)) => facets.push(match TypeName::parse(name) {
            Some(name) => Facet::Type(name),
            None => Facet::TypeList,
        }),
        Some(Value::Array(list)) if list.len() == 1 => {
            match list[0].as_str().and_then(TypeName::parse) {
                Some(name) => facets.push(Facet::Type(name)),
                None => facets.push(Facet::TypeList),
            }
        }
        Some(Value::Array(_)) => facets.push(Facet::TypeList),
        _ => {
            // No type: each type whose keywords appear constrains values of that type only.
            let has = |keywords: &[&str]| keywords.iter().any(|k| map.contains_key(*k));
            for (keywords, name) in [
                (STRING_KEYWORDS, TypeName::String),
                (NUMBER_KEYWORDS, TypeName::Number),
                (OBJECT_KEYWORDS, TypeName::Object),
                (ARRAY_KEYWORDS, TypeName::Array),
            ] {
                if has(keywords) {
                    facets.push(Facet::Type(name));
                }
            }
        }
    }
}

fn typed(name: TypeName, map: &Map<String, Value>) -> Node<'_> {
    match name {
        TypeName::String => Node::String(map),
        TypeName::Number => Node::Number(map, false),
        TypeName::Integer => Node::Number(map, true),
        TypeName::Boolean => Node::Boolean,
        TypeName::Null => Node::Null,
        TypeName::Object => Node::Object(map),
        TypeName::Array => Node::Array(map),
    }
}

/// Whether `value` is a schema that accepts everything and says so plainly (Everit's `EmptySchema`:
/// `true` or an object without constraining keywords).
pub(crate) fn is_empty_schema(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::Object(map) => facets(map).is_empty(),
        _ => false,
    }
}
