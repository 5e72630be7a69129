//! The diff of object and array schemas, ported from the rules of Confluent's `ObjectSchemaDiff`
//! and `ArraySchemaDiff`: properties and tuple items against the content model (open, closed, or
//! partially open through `patternProperties`/`additionalProperties`/`additionalItems`/
//! `unevaluatedItems`), `required`, dependencies and the counting keywords.

use super::keywords::count_limits;
use super::kind::Kind;
use super::model::{is_empty_schema, Handle};
use super::{Checker, Diff, Diffs};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashSet};

type Schema = Map<String, Value>;

/// The regular expressions of `patternProperties` may be at most this large once compiled.
const PATTERN_BYTES_MAX: usize = 1 << 20;

impl<'a> Checker<'_> {
    pub(super) fn object(
        &mut self,
        (o, original): (Handle<'a>, &'a Schema),
        (u, update): (Handle<'a>, &'a Schema),
        depth: usize,
    ) -> Diffs {
        let mut out = required(original, update);
        let keys: BTreeSet<&String> = properties(original)
            .chain(properties(update))
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            let pair = (property(original, key), property(update, key));
            let diffs = self.property(key, (o, original, pair.0), (u, update, pair.1), depth)?;
            out.extend(diffs.into_iter().map(|d| d.under(&["properties", key])));
        }
        out.extend(self.dependencies(o, original, u, update, depth)?);
        out.extend(self.additional_properties(o, original, u, update, depth)?);
        out.extend(count_limits(
            original,
            update,
            &[
                (
                    "maxProperties",
                    true,
                    Kind::MaxPropertiesAdded,
                    Kind::MaxPropertiesDecreased,
                ),
                (
                    "minProperties",
                    false,
                    Kind::MinPropertiesAdded,
                    Kind::MinPropertiesIncreased,
                ),
            ],
        ));
        Ok(out)
    }

    fn property(
        &mut self,
        key: &str,
        (o, original, before): (Handle<'a>, &'a Schema, Option<&'a Value>),
        (u, update, after): (Handle<'a>, &'a Schema, Option<&'a Value>),
        depth: usize,
    ) -> Diffs {
        match (before, after) {
            (Some(before), Some(after)) => self.compare(o.child(before), u.child(after), depth),
            (Some(before), None) => self.property_removed(key, o.child(before), (u, update), depth),
            (None, Some(after)) => {
                self.property_added(key, (o, original), u.child(after), update, depth)
            }
            (None, None) => Ok(Vec::new()),
        }
    }

    /// A property the reader lacks: its content model must accept the writer's values.
    fn property_removed(
        &mut self,
        key: &str,
        before: Handle<'a>,
        (u, update): (Handle<'a>, &'a Schema),
        depth: usize,
    ) -> Diffs {
        if object_open(update) {
            return Ok(Vec::new());
        }
        if let Some(partial) = self.object_partial(update, key) {
            let mut diffs = self.compare(before, u.child(partial), depth)?;
            if !diffs.is_empty() {
                diffs.push(Diff::new(
                    Kind::PropertyRemovedNotCoveredByPartiallyOpenContentModel,
                ));
            }
            return Ok(diffs);
        }
        if before.value == &Value::Bool(false) {
            Ok(Vec::new())
        } else {
            Ok(vec![Diff::new(Kind::PropertyRemovedFromClosedContentModel)])
        }
    }

    /// A property the writer lacks: the writer's content model must not have allowed other values.
    fn property_added(
        &mut self,
        key: &str,
        (o, original): (Handle<'a>, &'a Schema),
        after: Handle<'a>,
        update: &'a Schema,
        depth: usize,
    ) -> Diffs {
        if object_open(original) {
            return Ok(if is_empty_schema(after.value) {
                Vec::new()
            } else {
                vec![Diff::new(Kind::PropertyAddedToOpenContentModel)]
            });
        }
        let mut out = Vec::new();
        if let Some(partial) = self.object_partial(original, key) {
            out = self.compare(o.child(partial), after, depth)?;
            if !out.is_empty() {
                out.push(Diff::new(
                    Kind::PropertyAddedNotCoveredByPartiallyOpenContentModel,
                ));
            }
        }
        if is_required(update, key) && !has_default(after.value) {
            out.push(Diff::new(Kind::RequiredPropertyAddedToUnopenContentModel));
        }
        Ok(out)
    }

    fn dependencies(
        &mut self,
        o: Handle<'a>,
        original: &'a Schema,
        u: Handle<'a>,
        update: &'a Schema,
        depth: usize,
    ) -> Diffs {
        let mut out = Vec::new();
        let (before, after) = (dependencies(original), dependencies(update));
        let keys: BTreeSet<&str> = before.keys().chain(after.keys()).copied().collect();
        for key in keys {
            let kind = match (before.get(key), after.get(key)) {
                (_, None) => None,
                (None, Some(Dependency::Names(_))) => Some(Kind::DependencyArrayAdded),
                (None, Some(Dependency::Schema(_))) => Some(Kind::DependencySchemaAdded),
                (Some(Dependency::Names(a)), Some(Dependency::Names(b))) => names_change(a, b),
                (Some(Dependency::Schema(a)), Some(Dependency::Schema(b))) => {
                    let diffs = self.compare(o.child(a), u.child(b), depth)?;
                    out.extend(diffs.into_iter().map(|d| d.under(&["dependencies", key])));
                    None
                }
                (Some(_), Some(_)) => Some(Kind::TypeChanged),
            };
            if let Some(kind) = kind {
                out.push(Diff::new(kind).under(&["dependencies", key]));
            }
        }
        Ok(out)
    }

    fn additional_properties(
        &mut self,
        o: Handle<'a>,
        original: &'a Schema,
        u: Handle<'a>,
        update: &'a Schema,
        depth: usize,
    ) -> Diffs {
        let (before, after) = (
            original.get("additionalProperties"),
            update.get("additionalProperties"),
        );
        let diffs = match (permits(before), permits(after)) {
            (true, false) => vec![Diff::new(Kind::AdditionalPropertiesRemoved)],
            (false, true) => Vec::new(),
            _ => match (schema_of(before), schema_of(after)) {
                (None, Some(_)) => vec![Diff::new(Kind::AdditionalPropertiesNarrowed)],
                (Some(a), Some(b)) => self.compare(o.child(a), u.child(b), depth)?,
                _ => Vec::new(),
            },
        };
        Ok(diffs
            .into_iter()
            .map(|d| d.under(&["additionalProperties"]))
            .collect())
    }

    /// The schema a partially open object applies to `key`: the first matching
    /// `patternProperties` entry, else the `additionalProperties` schema.
    fn object_partial(&mut self, schema: &'a Schema, key: &str) -> Option<&'a Value> {
        if let Some(Value::Object(patterns)) = schema.get("patternProperties") {
            for (pattern, value) in patterns {
                if self.pattern_finds(pattern, key) {
                    return Some(value);
                }
            }
        }
        schema_of(schema.get("additionalProperties"))
    }

    /// Whether `pattern` matches somewhere in `text`; a pattern that does not compile (or is too
    /// large) matches nothing.
    fn pattern_finds(&mut self, pattern: &str, text: &str) -> bool {
        let compiled = self.patterns.entry(pattern.to_owned()).or_insert_with(|| {
            regex::RegexBuilder::new(pattern)
                .size_limit(PATTERN_BYTES_MAX)
                .build()
                .ok()
        });
        compiled.as_ref().is_some_and(|r| r.is_match(text))
    }
}

fn required(original: &Schema, update: &Schema) -> Vec<Diff> {
    let mut out = Vec::new();
    for (key, after) in properties(update) {
        if property(original, key).is_some()
            && is_required(update, key)
            && !is_required(original, key)
            && !has_default(after)
        {
            out.push(Diff::new(Kind::RequiredAttributeAdded).under(&["required", key]));
        }
    }
    out
}

fn properties(schema: &Schema) -> impl Iterator<Item = (&String, &Value)> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
}

fn property<'s>(schema: &'s Schema, key: &str) -> Option<&'s Value> {
    schema.get("properties")?.as_object()?.get(key)
}

fn is_required(schema: &Schema, key: &str) -> bool {
    schema
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(|k| k.as_str() == Some(key)))
}

fn has_default(schema: &Value) -> bool {
    schema
        .as_object()
        .is_some_and(|m| m.contains_key("default"))
}

/// Whether additional properties or items are allowed at all (absent, `true` or a schema).
fn permits(keyword: Option<&Value>) -> bool {
    keyword != Some(&Value::Bool(false))
}

/// The schema of `additionalProperties`/`additionalItems` when it is one (not a boolean).
fn schema_of(keyword: Option<&Value>) -> Option<&Value> {
    keyword.filter(|v| v.is_object())
}

fn object_open(schema: &Schema) -> bool {
    let no_patterns = schema
        .get("patternProperties")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    let additional = schema.get("additionalProperties");
    no_patterns && permits(additional) && schema_of(additional).is_none()
}

enum Dependency<'s> {
    Names(HashSet<&'s str>),
    Schema(&'s Value),
}

/// `dependencies` (draft 4–7) and `dependentRequired`/`dependentSchemas` (2019-09 on), merged.
fn dependencies(schema: &Schema) -> std::collections::BTreeMap<&str, Dependency<'_>> {
    let mut out = std::collections::BTreeMap::new();
    for keyword in ["dependencies", "dependentRequired", "dependentSchemas"] {
        let Some(Value::Object(entries)) = schema.get(keyword) else {
            continue;
        };
        for (key, value) in entries {
            let dependency = match value {
                Value::Array(names) => {
                    Dependency::Names(names.iter().filter_map(Value::as_str).collect())
                }
                other => Dependency::Schema(other),
            };
            out.insert(key.as_str(), dependency);
        }
    }
    out
}

fn names_change(before: &HashSet<&str>, after: &HashSet<&str>) -> Option<Kind> {
    if before == after || before.is_superset(after) {
        None
    } else if after.is_superset(before) {
        Some(Kind::DependencyArrayExtended)
    } else {
        Some(Kind::DependencyArrayChanged)
    }
}

/// An array schema's item keywords, whichever draft wrote them.
struct Items<'s> {
    /// `items` as a single schema: every item.
    all: Option<&'s Value>,
    /// The tuple (`prefixItems`, or `items` as an array before 2020-12).
    tuple: &'s [Value],
    /// What follows the tuple (`items` after `prefixItems`, else `additionalItems`).
    additional: Option<&'s Value>,
    unevaluated: Option<&'s Value>,
}

impl<'s> Items<'s> {
    fn of(schema: &'s Schema) -> Self {
        let unevaluated = schema
            .get("unevaluatedItems")
            .filter(|v| v.is_object() || v.is_boolean());
        if let Some(Value::Array(prefix)) = schema.get("prefixItems") {
            return Items {
                all: None,
                tuple: prefix,
                additional: schema.get("items"),
                unevaluated,
            };
        }
        match schema.get("items") {
            Some(Value::Array(tuple)) => Items {
                all: None,
                tuple,
                additional: schema.get("additionalItems"),
                unevaluated,
            },
            all => Items {
                all: all.filter(|v| v.is_object() || v.is_boolean()),
                tuple: &[],
                additional: schema.get("additionalItems"),
                unevaluated,
            },
        }
    }

    fn open(&self) -> bool {
        permits(self.additional)
            && schema_of(self.additional).is_none()
            && self.unevaluated.is_none_or(is_empty_schema)
    }

    /// The schema that items past the tuple must match, when the array is partially open.
    fn partial(&self) -> Option<&'s Value> {
        if let Some(schema) = schema_of(self.additional) {
            return Some(schema);
        }
        let absent = permits(self.additional);
        self.unevaluated
            .filter(|u| absent && **u != Value::Bool(false) && !is_empty_schema(u))
    }
}

impl<'a> Checker<'_> {
    pub(super) fn array(
        &mut self,
        (o, original): (Handle<'a>, &'a Schema),
        (u, update): (Handle<'a>, &'a Schema),
        depth: usize,
    ) -> Diffs {
        let (before, after) = (Items::of(original), Items::of(update));
        let mut out = Vec::new();
        let all = self.compare_optional(
            before.all.map(|v| o.child(v)),
            after.all.map(|v| u.child(v)),
            depth,
        )?;
        out.extend(all.into_iter().map(|d| d.under(&["items"])));
        out.extend(self.tuple(o, &before, u, &after, depth)?);
        out.extend(self.additional_items(o, &before, u, &after, depth)?);
        out.extend(self.unevaluated_items(o, &before, u, &after, depth)?);
        out.extend(count_limits(
            original,
            update,
            &[
                (
                    "maxItems",
                    true,
                    Kind::MaxItemsAdded,
                    Kind::MaxItemsDecreased,
                ),
                (
                    "minItems",
                    false,
                    Kind::MinItemsAdded,
                    Kind::MinItemsIncreased,
                ),
                (
                    "maxContains",
                    true,
                    Kind::MaxContainsAdded,
                    Kind::MaxContainsDecreased,
                ),
                (
                    "minContains",
                    false,
                    Kind::MinContainsAdded,
                    Kind::MinContainsIncreased,
                ),
            ],
        ));
        let unique = |s: &Schema| s.get("uniqueItems") == Some(&Value::Bool(true));
        if unique(update) && !unique(original) {
            out.push(Diff::new(Kind::UniqueItemsAdded).under(&["uniqueItems"]));
        }
        Ok(out)
    }

    fn tuple(
        &mut self,
        o: Handle<'a>,
        before: &Items<'a>,
        u: Handle<'a>,
        after: &Items<'a>,
        depth: usize,
    ) -> Diffs {
        let mut out = Vec::new();
        let longest = before.tuple.len().max(after.tuple.len());
        for index in 0..longest {
            let diffs = match (before.tuple.get(index), after.tuple.get(index)) {
                (Some(a), Some(b)) => self.compare(o.child(a), u.child(b), depth)?,
                (Some(a), None) => self.item_removed(o.child(a), u, after, depth)?,
                (None, Some(b)) => self.item_added(o, before, u.child(b), depth)?,
                (None, None) => Vec::new(),
            };
            let index = index.to_string();
            out.extend(diffs.into_iter().map(|d| d.under(&["items", &index])));
        }
        Ok(out)
    }

    fn item_removed(
        &mut self,
        before: Handle<'a>,
        u: Handle<'a>,
        after: &Items<'a>,
        depth: usize,
    ) -> Diffs {
        if after.open() {
            return Ok(Vec::new());
        }
        if let Some(partial) = after.partial() {
            let mut diffs = self.compare(before, u.child(partial), depth)?;
            if !diffs.is_empty() {
                diffs.push(Diff::new(
                    Kind::ItemRemovedNotCoveredByPartiallyOpenContentModel,
                ));
            }
            return Ok(diffs);
        }
        Ok(if before.value == &Value::Bool(false) {
            Vec::new()
        } else {
            vec![Diff::new(Kind::ItemRemovedFromClosedContentModel)]
        })
    }

    fn item_added(
        &mut self,
        o: Handle<'a>,
        before: &Items<'a>,
        after: Handle<'a>,
        depth: usize,
    ) -> Diffs {
        if before.open() {
            return Ok(if is_empty_schema(after.value) {
                Vec::new()
            } else {
                vec![Diff::new(Kind::ItemAddedToOpenContentModel)]
            });
        }
        let Some(partial) = before.partial() else {
            return Ok(Vec::new());
        };
        let mut diffs = self.compare(o.child(partial), after, depth)?;
        if !diffs.is_empty() {
            diffs.push(Diff::new(
                Kind::ItemAddedNotCoveredByPartiallyOpenContentModel,
            ));
        }
        Ok(diffs)
    }

    fn additional_items(
        &mut self,
        o: Handle<'a>,
        before: &Items<'a>,
        u: Handle<'a>,
        after: &Items<'a>,
        depth: usize,
    ) -> Diffs {
        let diffs = match (permits(before.additional), permits(after.additional)) {
            (true, false) => vec![Diff::new(Kind::AdditionalItemsRemoved)],
            (false, true) => Vec::new(),
            _ => match (schema_of(before.additional), schema_of(after.additional)) {
                (None, Some(_)) => vec![Diff::new(Kind::AdditionalItemsNarrowed)],
                (Some(a), Some(b)) => self.compare(o.child(a), u.child(b), depth)?,
                _ => Vec::new(),
            },
        };
        Ok(diffs
            .into_iter()
            .map(|d| d.under(&["additionalItems"]))
            .collect())
    }

    fn unevaluated_items(
        &mut self,
        o: Handle<'a>,
        before: &Items<'a>,
        u: Handle<'a>,
        after: &Items<'a>,
        depth: usize,
    ) -> Diffs {
        let is_false = |v: &Value| *v == Value::Bool(false);
        let diffs = match (before.unevaluated, after.unevaluated) {
            (None, None) => Vec::new(),
            (None, Some(b)) if is_false(b) => vec![Diff::new(Kind::UnevaluatedItemsRemoved)],
            (None, Some(_)) => vec![Diff::new(Kind::UnevaluatedItemsNarrowed)],
            (Some(_), None) => Vec::new(),
            (Some(a), Some(b)) if is_false(a) || is_empty_schema(b) => Vec::new(),
            (Some(_), Some(b)) if is_false(b) => vec![Diff::new(Kind::UnevaluatedItemsRemoved)],
            (Some(a), Some(_)) if is_empty_schema(a) => {
                vec![Diff::new(Kind::UnevaluatedItemsNarrowed)]
            }
            (Some(a), Some(b)) => self.compare(o.child(a), u.child(b), depth)?,
        };
        Ok(diffs
            .into_iter()
            .map(|d| d.under(&["unevaluatedItems"]))
            .collect())
    }
}
