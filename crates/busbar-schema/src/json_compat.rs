//! JSON Schema compatibility: can a consumer using one schema read every document valid under
//! another? A port of the rules of Confluent's JSON Schema diff (`json-schema-provider` `diff/*`,
//! default STRICT policy), reporting the incompatible changes by Confluent's names and JSON paths.
//!
//! Pure and bounded: no I/O, no panics on any input. Documents nested deeper than
//! [`Limits::depth_max`] are refused before the comparison, the comparison itself recurses at most
//! that deep and performs at most [`Limits::steps_max`] schema-pair comparisons. Recursive schemas
//! (`$ref` cycles) terminate: a pair met again while being compared is taken as compatible, and
//! each pair is compared once (memoised). `$ref` resolves within the document (`#`, JSON pointers,
//! anchors, bundled `$id`s) and to named references the caller supplies.
//!
//! Modes map onto [`can_read`] as Confluent's do: BACKWARD is `can_read(new, old)`, FORWARD is
//! `can_read(old, new)`, FULL both.

mod keywords;
mod kind;
mod model;
mod structure;

use kind::Kind;
use model::{Class, Facet, Handle, Node, Side};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// Bounds on one comparison; exceeding one answers `Err` naming it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deepest JSON nesting of a schema document, and deepest chain of nested schema comparisons
    /// (default 128, serde_json's own parsing limit).
    pub depth_max: usize,
    /// Most schema-pair comparisons in one check (default 200,000; a few thousand for large
    /// real-world schemas).
    pub steps_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            depth_max: 128,
            steps_max: 200_000,
        }
    }
}

/// A schema and the schemas it references by name (Confluent's `references`, as `(name, schema)`).
#[derive(Clone, Copy, Debug)]
pub struct Document<'a> {
    pub schema: &'a Value,
    pub references: &'a [(String, Value)],
}

impl<'a> Document<'a> {
    /// A schema without references.
    pub fn new(schema: &'a Value) -> Self {
        Document {
            schema,
            references: &[],
        }
    }
}

/// Whether a consumer using schema `reader` can read every document valid under `writer`.
/// `Err` lists the incompatibilities, each as `TYPE at #/json/path: explanation`.
pub fn can_read(reader: &Value, writer: &Value) -> Result<(), Vec<String>> {
    can_read_with(
        Document::new(reader),
        Document::new(writer),
        &Limits::default(),
    )
}

/// [`can_read`] with references and explicit limits.
pub fn can_read_with(
    reader: Document<'_>,
    writer: Document<'_>,
    limits: &Limits,
) -> Result<(), Vec<String>> {
    let too_deep = |which: &str| {
        vec![format!(
            "SCHEMA_TOO_DEEP at #/: the {which} schema is nested deeper than {} levels",
            limits.depth_max
        )]
    };
    let reader_side = Side::new(reader.schema, reader.references, limits.depth_max)
        .map_err(|_| too_deep("reader"))?;
    let writer_side = Side::new(writer.schema, writer.references, limits.depth_max)
        .map_err(|_| too_deep("writer"))?;
    // Equal documents always read each other; the recursion below is bounded by the check above.
    if reader.schema == writer.schema && reader.references == writer.references {
        return Ok(());
    }
    let mut checker = Checker::new(limits);
    // Confluent compares (original = writer, update = reader).
    match checker.compare(writer_side.root(), reader_side.root(), 0) {
        Ok(diffs) if diffs.is_empty() => Ok(()),
        Ok(diffs) => Err(render(diffs)),
        Err(Stop::TooDeep) => Err(vec![format!(
            "SCHEMA_TOO_DEEP at #/: comparing the schemas nests deeper than {} levels",
            limits.depth_max
        )]),
        Err(Stop::TooComplex) => Err(vec![format!(
            "SCHEMA_TOO_COMPLEX at #/: comparing the schemas takes more than {} steps",
            limits.steps_max
        )]),
    }
}

fn render(diffs: Vec<Diff>) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for diff in diffs {
        let path: Vec<String> = diff.rpath.iter().rev().map(|s| escape(s)).collect();
        let line = format!(
            "{} at #/{}: {}",
            diff.kind.name(),
            path.join("/"),
            diff.kind.description()
        );
        if seen.insert(line.clone()) {
            out.push(line);
        }
    }
    out
}

/// JSON pointer escaping of one path segment.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// One incompatible change, at a path relative to the pair of schemas that found it.
#[derive(Clone, Debug)]
pub(crate) struct Diff {
    kind: Kind,
    /// Path segments, innermost first (so nesting a diff appends).
    rpath: Vec<String>,
}

impl Diff {
    pub(crate) fn new(kind: Kind) -> Self {
        Diff {
            kind,
            rpath: Vec::new(),
        }
    }

    /// The same change seen from a schema `segments` above.
    pub(crate) fn under(mut self, segments: &[&str]) -> Self {
        self.rpath
            .extend(segments.iter().rev().map(|s| (*s).to_owned()));
        self
    }
}

/// Why a comparison stopped before its end.
#[derive(Debug)]
pub(crate) enum Stop {
    TooDeep,
    TooComplex,
}

pub(crate) type Diffs = Result<Vec<Diff>, Stop>;

type PairKey = ((usize, Facet), (usize, Facet));

/// The state of one comparison: budget, memo and the pairs being compared.
pub(crate) struct Checker<'l> {
    limits: &'l Limits,
    steps: usize,
    memo: HashMap<PairKey, Vec<Diff>>,
    in_progress: HashSet<PairKey>,
    patterns: HashMap<String, Option<regex::Regex>>,
}

impl<'l> Checker<'l> {
    fn new(limits: &'l Limits) -> Self {
        Checker {
            limits,
            steps: 0,
            memo: HashMap::new(),
            in_progress: HashSet::new(),
            patterns: HashMap::new(),
        }
    }

    /// The incompatible changes from `original` (writer) to `update` (reader).
    pub(crate) fn compare(
        &mut self,
        original: Handle<'_>,
        update: Handle<'_>,
        depth: usize,
    ) -> Diffs {
        if depth >= self.limits.depth_max {
            return Err(Stop::TooDeep);
        }
        self.steps += 1;
        if self.steps > self.limits.steps_max {
            return Err(Stop::TooComplex);
        }
        let (o, o_node) = original.resolve(self.limits.depth_max);
        let (u, u_node) = update.resolve(self.limits.depth_max);
        let key = (o.key(), u.key());
        if let Some(diffs) = self.memo.get(&key) {
            return Ok(diffs.clone());
        }
        if !self.in_progress.insert(key) {
            // A recursive schema met the same pair again: compatible unless shown otherwise.
            return Ok(Vec::new());
        }
        let result = self.compare_nodes((o, o_node), (u, u_node), depth + 1);
        self.in_progress.remove(&key);
        if let Ok(diffs) = &result {
            self.memo.insert(key, diffs.clone());
        }
        result
    }

    /// A keyword present on one side only: adding a schema constrains, removing one does not.
    pub(crate) fn compare_optional(
        &mut self,
        original: Option<Handle<'_>>,
        update: Option<Handle<'_>>,
        depth: usize,
    ) -> Diffs {
        match (original, update) {
            (Some(o), Some(u)) => self.compare(o, u, depth),
            (None, Some(_)) => Ok(vec![Diff::new(Kind::SchemaAdded)]),
            _ => Ok(Vec::new()),
        }
    }

    fn compare_nodes<'a>(
        &mut self,
        (o, o_node): (Handle<'a>, Node<'a>),
        (u, u_node): (Handle<'a>, Node<'a>),
        depth: usize,
    ) -> Diffs {
        if self.one_side_combined((o, &o_node), (u, &u_node), depth)? {
            return Ok(Vec::new());
        }
        if o_node.class() != u_node.class() {
            return Ok(mismatch(&o_node, &u_node));
        }
        match (o_node, u_node) {
            (Node::String(a), Node::String(b)) => Ok(keywords::string(a, b)),
            (Node::Number(a, ai), Node::Number(b, bi)) => Ok(keywords::number(a, ai, b, bi)),
            (Node::Enum(a), Node::Enum(b)) => Ok(keywords::enumeration(a, b)),
            (Node::Const(a), Node::Const(b)) => Ok(keywords::constant(a, b)),
            (Node::Combined(ac, a), Node::Combined(bc, b)) => {
                self.combined((ac, &a), (bc, &b), depth)
            }
            (Node::Not(a), Node::Not(b)) => self.not(a, b, depth),
            (Node::Object(a), Node::Object(b)) => self.object((o, a), (u, b), depth),
            (Node::Array(a), Node::Array(b)) => self.array((o, a), (u, b), depth),
            (Node::Unresolved(a), Node::Unresolved(b)) if a != b => {
                Ok(vec![Diff::new(Kind::ReferenceUnresolved)])
            }
            (Node::Invalid(a), Node::Invalid(b)) if a != b => {
                Ok(vec![Diff::new(Kind::TypeChanged)])
            }
            _ => Ok(Vec::new()),
        }
    }

    /// A combination on one side only is compatible when one of its subschemas is: the writer's
    /// schema against one branch of the reader's `anyOf`/`oneOf`, or one part of the writer's
    /// `allOf` against the reader's schema (or a single subschema either way).
    fn one_side_combined<'a>(
        &mut self,
        (o, o_node): (Handle<'a>, &Node<'a>),
        (u, u_node): (Handle<'a>, &Node<'a>),
        depth: usize,
    ) -> Result<bool, Stop> {
        match (o_node, u_node) {
            (Node::Combined(..), Node::Combined(..)) => Ok(false),
            (_, Node::Combined(criterion, subs)) => {
                let any = subs.len() == 1 || *criterion != model::Criterion::All;
                self.any_compatible(subs, |sub| (o, sub), any, depth)
            }
            (Node::Combined(criterion, subs), _) => {
                let any = subs.len() == 1 || *criterion == model::Criterion::All;
                self.any_compatible(subs, |sub| (sub, u), any, depth)
            }
            _ => Ok(false),
        }
    }

    fn any_compatible<'a>(
        &mut self,
        subs: &[Handle<'a>],
        pair: impl Fn(Handle<'a>) -> (Handle<'a>, Handle<'a>),
        enabled: bool,
        depth: usize,
    ) -> Result<bool, Stop> {
        if !enabled {
            return Ok(false);
        }
        for sub in subs {
            let (o, u) = pair(*sub);
            if self.compare(o, u, depth)?.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Schemas of different kinds: compatible only when the writer allows nothing or the reader
/// allows everything.
fn mismatch(original: &Node<'_>, update: &Node<'_>) -> Vec<Diff> {
    if original.class() == Class::False || update.class() == Class::Empty {
        return Vec::new();
    }
    let classes = [original.class(), update.class()];
    let kind = if classes.contains(&Class::Unresolved) {
        Kind::ReferenceUnresolved
    } else if classes.contains(&Class::Cycle) {
        Kind::ReferenceCycle
    } else {
        Kind::TypeChanged
    };
    vec![Diff::new(kind)]
}

#[cfg(test)]
mod tests;
