//! The diff of leaf keywords (strings, numbers, enums, consts) and of `not` and the combinations
//! (`allOf`/`anyOf`/`oneOf`), ported from the rules of Confluent's `StringSchemaDiff`,
//! `NumberSchemaDiff`, `EnumSchemaDiff`, `ConstSchemaDiff`, `NotSchemaDiff` and `CombinedSchemaDiff`.
//! Only incompatible changes are reported (see `kind`).

use super::kind::Kind;
use super::model::{Criterion, Handle};
use super::{Checker, Diff, Diffs};
use serde_json::{Map, Value};
use std::collections::HashSet;

type Schema = Map<String, Value>;

/// Which way a bound tightens.
#[derive(Clone, Copy)]
enum Bound {
    /// A maximum: smaller is tighter.
    Upper,
    /// A minimum: larger is tighter.
    Lower,
}

pub(super) fn string(original: &Schema, update: &Schema) -> Vec<Diff> {
    let mut out = Vec::new();
    let (added, tighter) = (Kind::MaxLengthAdded, Kind::MaxLengthDecreased);
    limit(
        &mut out,
        "maxLength",
        original,
        update,
        Bound::Upper,
        added,
        tighter,
    );
    let (added, tighter) = (Kind::MinLengthAdded, Kind::MinLengthIncreased);
    limit(
        &mut out,
        "minLength",
        original,
        update,
        Bound::Lower,
        added,
        tighter,
    );
    let pattern = |s: &Schema| s.get("pattern").and_then(Value::as_str).map(str::to_owned);
    match (pattern(original), pattern(update)) {
        (None, Some(_)) => out.push(Diff::new(Kind::PatternAdded).under(&["pattern"])),
        (Some(a), Some(b)) if a != b => {
            out.push(Diff::new(Kind::PatternChanged).under(&["pattern"]))
        }
        _ => {}
    }
    out
}

pub(super) fn number(
    original: &Schema,
    original_integer: bool,
    update: &Schema,
    update_integer: bool,
) -> Vec<Diff> {
    let mut out = Vec::new();
    let bounds = [
        (
            "maximum",
            Bound::Upper,
            Kind::MaximumAdded,
            Kind::MaximumDecreased,
        ),
        (
            "minimum",
            Bound::Lower,
            Kind::MinimumAdded,
            Kind::MinimumIncreased,
        ),
        (
            "exclusiveMaximum",
            Bound::Upper,
            Kind::ExclusiveMaximumAdded,
            Kind::ExclusiveMaximumDecreased,
        ),
        (
            "exclusiveMinimum",
            Bound::Lower,
            Kind::ExclusiveMinimumAdded,
            Kind::ExclusiveMinimumIncreased,
        ),
    ];
    for (key, bound, added, tighter) in bounds {
        limit(&mut out, key, original, update, bound, added, tighter);
    }
    if let Some(kind) = multiple_of(
        number_at(original, "multipleOf"),
        number_at(update, "multipleOf"),
    ) {
        out.push(Diff::new(kind).under(&["multipleOf"]));
    }
    if update_integer && !original_integer {
        out.push(Diff::new(Kind::TypeNarrowed));
    }
    out
}

/// `multipleOf` may only be removed or replaced by a divisor of the old value (10 → 2 or 5).
fn multiple_of(original: Option<f64>, update: Option<f64>) -> Option<Kind> {
    match (original, update) {
        (None, Some(_)) => Some(Kind::MultipleOfAdded),
        (Some(a), Some(b)) if a != b => {
            if is_multiple(b, a) {
                Some(Kind::MultipleOfExpanded)
            } else if is_multiple(a, b) {
                None
            } else {
                Some(Kind::MultipleOfChanged)
            }
        }
        _ => None,
    }
}

/// Whether `x` is a whole multiple of `of` (both positive), allowing for binary fractions.
fn is_multiple(x: f64, of: f64) -> bool {
    if !(x > 0.0 && of > 0.0 && x.is_finite() && of.is_finite()) {
        return false;
    }
    let quotient = x / of;
    (quotient - quotient.round()).abs() <= 1e-9 * quotient.abs().max(1.0)
}

fn number_at(schema: &Schema, key: &str) -> Option<f64> {
    // Draft-4 boolean exclusiveMaximum/exclusiveMinimum are not bounds: ignored, as Confluent does.
    schema.get(key).and_then(Value::as_f64)
}

fn limit(
    out: &mut Vec<Diff>,
    key: &str,
    original: &Schema,
    update: &Schema,
    bound: Bound,
    added: Kind,
    tighter: Kind,
) {
    let kind = match (number_at(original, key), number_at(update, key)) {
        (None, Some(_)) => Some(added),
        (Some(a), Some(b)) => match bound {
            Bound::Upper if b < a => Some(tighter),
            Bound::Lower if b > a => Some(tighter),
            _ => None,
        },
        _ => None,
    };
    if let Some(kind) = kind {
        out.push(Diff::new(kind).under(&[key]));
    }
}

/// Attributes of objects and arrays that behave like string bounds (`maxItems`, `minProperties`…).
pub(super) fn count_limits(
    original: &Schema,
    update: &Schema,
    limits: &[(&str, bool, Kind, Kind)],
) -> Vec<Diff> {
    let mut out = Vec::new();
    for &(key, upper, added, tighter) in limits {
        let bound = if upper { Bound::Upper } else { Bound::Lower };
        limit(&mut out, key, original, update, bound, added, tighter);
    }
    out
}

pub(super) fn enumeration(original: &[Value], update: &[Value]) -> Vec<Diff> {
    let original: HashSet<String> = original.iter().map(canonical).collect();
    let update: HashSet<String> = update.iter().map(canonical).collect();
    let kind = if update.is_superset(&original) {
        return Vec::new();
    } else if original.is_superset(&update) {
        Kind::EnumArrayNarrowed
    } else {
        Kind::EnumArrayChanged
    };
    vec![Diff::new(kind).under(&["enum"])]
}

pub(super) fn constant(original: &Value, update: &Value) -> Vec<Diff> {
    if canonical(original) == canonical(update) {
        Vec::new()
    } else {
        vec![Diff::new(Kind::EnumArrayChanged).under(&["const"])]
    }
}

/// A text form equal for equal JSON values whatever the key order of their objects. Recursion is
/// bounded: documents deeper than the limit were refused before the comparison started.
fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for key in keys {
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
                out.push(',');
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for item in items {
                write_canonical(item, out);
                out.push(',');
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

impl Checker<'_> {
    /// `not`: the reader's excluded schema must read the writer's (the roles swap).
    pub(super) fn not(&mut self, original: Handle<'_>, update: Handle<'_>, depth: usize) -> Diffs {
        if self.compare(update, original, depth)?.is_empty() {
            Ok(Vec::new())
        } else {
            Ok(vec![Diff::new(Kind::NotTypeExtended).under(&["not"])])
        }
    }

    /// Two combinations: compatible criteria, and a pairing in which every subschema of the
    /// smaller side is read by (or reads) a distinct one of the other side.
    pub(super) fn combined<'a>(
        &mut self,
        original: (Criterion, &[Handle<'a>]),
        update: (Criterion, &[Handle<'a>]),
        depth: usize,
    ) -> Diffs {
        if !criterion_compatible(original, update) {
            return Ok(vec![Diff::new(Kind::CombinedTypeChanged)]);
        }
        let mut out = Vec::new();
        let (before, after) = (original.1.len(), update.1.len());
        match (before.cmp(&after), update.0) {
            (std::cmp::Ordering::Less, Criterion::All) => {
                out.push(Diff::new(Kind::ProductTypeExtended))
            }
            (std::cmp::Ordering::Greater, Criterion::Any | Criterion::One) => {
                out.push(Diff::new(Kind::SumTypeNarrowed))
            }
            _ => {}
        }
        let mut edges = vec![Vec::new(); before];
        for (i, o) in original.1.iter().enumerate() {
            for (j, u) in update.1.iter().enumerate() {
                if self.compare(*o, *u, depth)?.is_empty() {
                    edges[i].push(j);
                }
            }
        }
        if matching_size(&edges, after) < before.min(after) {
            out.push(Diff::new(Kind::CombinedTypeSubschemasChanged));
        }
        Ok(out)
    }
}

/// allOf/oneOf may become anyOf; a single-subschema anyOf/allOf may become oneOf; single allOf
/// and single anyOf/oneOf interchange.
fn criterion_compatible(
    original: (Criterion, &[Handle<'_>]),
    update: (Criterion, &[Handle<'_>]),
) -> bool {
    let (from, to) = (original.0, update.0);
    from == to
        || to == Criterion::Any
        || (to == Criterion::One && original.1.len() == 1)
        || (to == Criterion::All && original.1.len() == 1 && update.1.len() == 1)
}

/// The size of a maximum bipartite matching (Kuhn's augmenting paths; the sides are small).
fn matching_size(edges: &[Vec<usize>], right: usize) -> usize {
    let mut matched_to: Vec<Option<usize>> = vec![None; right];
    let mut size = 0;
    for left in 0..edges.len() {
        let mut seen = vec![false; right];
        if augment(left, edges, &mut matched_to, &mut seen) {
            size += 1;
        }
    }
    size
}

fn augment(
    left: usize,
    edges: &[Vec<usize>],
    matched_to: &mut [Option<usize>],
    seen: &mut [bool],
) -> bool {
    // An explicit stack would be longer; the depth is at most the number of subschemas, which the
    // step budget bounds (every edge cost one comparison).
    for &right in &edges[left] {
        if seen[right] {
            continue;
        }
        seen[right] = true;
        let free = match matched_to[right] {
            None => true,
            Some(other) => augment(other, edges, matched_to, seen),
        };
        if free {
            matched_to[right] = Some(left);
            return true;
        }
    }
    false
}
