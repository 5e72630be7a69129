//! Patterns: the object tree of a parsed pattern, its validation (with the path of the offending
//! part in every error, and limits on size and `$or` expansion), and array-consistent matching.

use crate::condition::{Condition, Literal};
use serde_json::{Map, Value};

/// Limits that bound the work a pattern can ask for.
pub struct Limits {
    /// Most bytes of pattern JSON.
    pub pattern_bytes_max: usize,
    /// Most nesting levels of pattern objects.
    pub depth_max: usize,
    /// Most conditions in all leaves together.
    pub conditions_max: usize,
    /// Most combinations `$or` may expand to (the product of the `$or` array sizes), as EventBridge.
    pub or_combinations_max: usize,
}

/// The limits in force.
pub const LIMITS: Limits = Limits {
    pattern_bytes_max: 64 * 1024,
    depth_max: 32,
    conditions_max: 1000,
    or_combinations_max: 1000,
};

/// Why a pattern is invalid; `path` points at the offending part (`detail.state[1]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("at `{path}`: ") })]
pub struct PatternError {
    pub path: String,
    pub message: String,
}

/// Keys that make an object an operator, so `$or` alternatives may not use them as field names.
const RESERVED: &[&str] = &[
    "exactly",
    "prefix",
    "suffix",
    "equals-ignore-case",
    "anything-but",
    "exists",
    "wildcard",
    "numeric",
    "cidr",
    "=",
    "<",
    "<=",
    ">",
    ">=",
];

#[derive(Debug, Clone, PartialEq)]
enum Child {
    Leaf(Vec<Condition>),
    Object(Node),
}

#[derive(Debug, Clone, PartialEq, Default)]
struct Node {
    fields: Vec<(String, Child)>,
    /// Each `$or` group: alternatives, one of which must match the same object.
    ors: Vec<Vec<Node>>,
}

/// A parsed, validated event pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    root: Node,
}

struct Parser {
    conditions: usize,
    combinations: usize,
}

fn err(path: &str, message: impl Into<String>) -> PatternError {
    PatternError {
        path: path.to_string(),
        message: message.into(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn is_or_group(key: &str, v: &Value) -> bool {
    key == "$or"
        && v.as_array().is_some_and(|alts| {
            alts.len() >= 2
                && alts.iter().all(|a| {
                    a.as_object().is_some_and(|o| {
                        !o.is_empty() && o.keys().all(|k| !RESERVED.contains(&k.as_str()))
                    })
                })
        })
}

impl Parser {
    fn node(
        &mut self,
        m: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Result<Node, PatternError> {
        if depth > LIMITS.depth_max {
            return Err(err(
                path,
                format!("nested deeper than {} levels", LIMITS.depth_max),
            ));
        }
        if m.is_empty() {
            return Err(err(
                path,
                "an empty object matches nothing; name at least one field",
            ));
        }
        let mut node = Node::default();
        for (k, v) in m {
            let here = join(path, k);
            if is_or_group(k, v) {
                let alts = v.as_array().expect("checked");
                self.combinations = self.combinations.saturating_mul(alts.len());
                if self.combinations > LIMITS.or_combinations_max {
                    return Err(err(
                        &here,
                        format!(
                            "$or expands to more than {} combinations",
                            LIMITS.or_combinations_max
                        ),
                    ));
                }
                let group = alts
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        self.node(
                            a.as_object().expect("checked"),
                            &format!("{here}[{i}]"),
                            depth + 1,
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                node.ors.push(group);
                continue;
            }
            let child = match v {
                Value::Object(inner) => Child::Object(self.node(inner, &here, depth + 1)?),
                Value::Array(items) => Child::Leaf(self.leaf(items, &here)?),
                other => {
                    return Err(err(
                        &here,
                        format!("a pattern leaf must be an array of conditions, not {other}"),
                    ))
                }
            };
            node.fields.push((k.clone(), child));
        }
        Ok(node)
    }

    fn leaf(&mut self, items: &[Value], path: &str) -> Result<Vec<Condition>, PatternError> {
        if items.is_empty() {
            return Err(err(path, "an empty condition list matches nothing"));
        }
        self.conditions += items.len();
        if self.conditions > LIMITS.conditions_max {
            return Err(err(
                path,
                format!(
                    "the pattern has more than {} conditions",
                    LIMITS.conditions_max
                ),
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, v)| Condition::parse(v).map_err(|m| err(&format!("{path}[{i}]"), m)))
            .collect()
    }
}

impl Pattern {
    /// Parses and validates a pattern.
    pub fn parse(v: &Value) -> Result<Pattern, PatternError> {
        let size = v.to_string().len();
        if size > LIMITS.pattern_bytes_max {
            return Err(err(
                "",
                format!(
                    "pattern of {size} bytes exceeds {} bytes",
                    LIMITS.pattern_bytes_max
                ),
            ));
        }
        let Value::Object(m) = v else {
            return Err(err("", "a pattern must be a JSON object"));
        };
        let mut p = Parser {
            conditions: 0,
            combinations: 1,
        };
        Ok(Pattern {
            root: p.node(m, "", 0)?,
        })
    }

    /// Parses a pattern from JSON text.
    pub fn parse_str(text: &str) -> Result<Pattern, PatternError> {
        if text.len() > LIMITS.pattern_bytes_max {
            return Err(err(
                "",
                format!(
                    "pattern of {} bytes exceeds {} bytes",
                    text.len(),
                    LIMITS.pattern_bytes_max
                ),
            ));
        }
        let v: Value = serde_json::from_str(text).map_err(|e| err("", format!("not JSON: {e}")))?;
        Self::parse(&v)
    }

    /// True when `event` matches.
    pub fn matches(&self, event: &Value) -> bool {
        match_node(&self.root, event)
    }

    /// A leaf reachable through plain object fields whose conditions are all exact literals: any
    /// matching event holds one of these literals at this path (used to index rule sets).
    pub(crate) fn anchor(&self) -> Option<(Vec<String>, Vec<Literal>)> {
        fn walk(node: &Node, path: &mut Vec<String>) -> Option<(Vec<String>, Vec<Literal>)> {
            for (k, child) in &node.fields {
                path.push(k.clone());
                let found = match child {
                    Child::Leaf(conds) => {
                        let lits: Option<Vec<Literal>> = conds
                            .iter()
                            .map(|c| {
                                if let Condition::Exact(l) = c {
                                    Some(l.clone())
                                } else {
                                    None
                                }
                            })
                            .collect();
                        lits.map(|l| (path.clone(), l))
                    }
                    Child::Object(inner) => walk(inner, path),
                };
                path.pop();
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        walk(&self.root, &mut Vec::new())
    }
}

/// A pattern object against an event value: an object must satisfy every field (and one
/// alternative of each `$or`) by itself; an array matches when one element does (array
/// consistency: fields are never satisfied from different elements).
fn match_node(node: &Node, v: &Value) -> bool {
    match v {
        Value::Array(items) => items.iter().any(|e| match_node(node, e)),
        Value::Object(obj) => {
            node.fields
                .iter()
                .all(|(k, child)| match (child, obj.get(k)) {
                    (Child::Leaf(conds), found) => match_leaf(conds, found),
                    (Child::Object(inner), Some(c)) => match_node(inner, c),
                    (Child::Object(inner), None) => matches_absent(inner),
                })
                && node
                    .ors
                    .iter()
                    .all(|alts| alts.iter().any(|a| match_node(a, v)))
        }
        // A scalar where the pattern nests has none of the nested fields.
        _ => matches_absent(node),
    }
}

/// A pattern object against a path the event does not have at all: as event-ruler matches the
/// event's flattened field paths, it matches only when every leaf below matches absence
/// (`{"a": {"b": [{"exists": false}]}}` matches `{"c": 1}`).
fn matches_absent(node: &Node) -> bool {
    node.fields.iter().all(|(_, child)| match child {
        Child::Leaf(conds) => match_leaf(conds, None),
        Child::Object(inner) => matches_absent(inner),
    }) && node.ors.iter().all(|alts| alts.iter().any(matches_absent))
}

/// Every leaf value at a path: arrays (also nested) are crushed into their elements.
fn leaf_values<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| leaf_values(i, out)),
        other => out.push(other),
    }
}

fn match_leaf(conds: &[Condition], v: Option<&Value>) -> bool {
    let mut values = Vec::new();
    if let Some(v) = v {
        leaf_values(v, &mut values);
    }
    // An object-valued field is not a leaf: it does not "exist" for `exists`.
    values.retain(|x| !x.is_object());
    conds.iter().any(|c| match c {
        Condition::Exists(want) => *want != values.is_empty(),
        c => values.iter().any(|x| c.matches(x)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exists_false_matches_a_missing_parent() {
        let p = Pattern::parse(&json!({"a": {"b": [{"exists": false}]}})).unwrap();
        for (event, want) in [
            (json!({"c": 1}), true),
            (json!({"a": {"c": 1}}), true),
            (json!({"a": 5}), true),
            (json!({"a": {"b": 1}}), false),
            (json!({"a": [{"b": 1}]}), false),
        ] {
            assert_eq!(p.matches(&event), want, "{event}");
        }
        let both = json!({"a": {"b": [{"exists": false}], "c": ["x"]}});
        let p = Pattern::parse(&both).unwrap();
        assert!(!p.matches(&json!({"d": 1})), "a.c must be present");
    }

    #[test]
    fn errors_point_at_the_offending_part() {
        let cases = [
            (json!({"a": "x"}), "a", "array of conditions"),
            (json!({"a": {"b": [{"prefix": 5}]}}), "a.b[0]", "prefix"),
            (
                json!({"a": [{"numeric": [">", 5, ">", 6]}]}),
                "a[0]",
                "repeated",
            ),
            (
                json!({"a": [{"numeric": [">", 9, "<", 1]}]}),
                "a[0]",
                "empty",
            ),
            (json!({"a": [{"wildcard": "a**"}]}), "a[0]", "**"),
            (
                json!({"a": [{"anything-but": [1, "x"]}]}),
                "a[0]",
                "all strings or all numbers",
            ),
            (
                json!({"a": [{"cidr": "1.2.3.4/40"}]}),
                "a[0]",
                "prefix length",
            ),
            (json!({"a": [{"bogus": 1}]}), "a[0]", "unknown operator"),
            (json!({"a": []}), "a", "empty condition list"),
            (json!({}), "", "empty object"),
            (json!([1]), "", "JSON object"),
            (json!({"a": [[1]]}), "a[0]", "not arrays"),
        ];
        for (p, path, needle) in cases {
            let e = Pattern::parse(&p).unwrap_err();
            assert_eq!(e.path, path, "{p}: {e}");
            assert!(e.message.contains(needle), "{p}: {e}");
        }
    }

    #[test]
    fn limits_are_enforced() {
        let alts: Vec<Value> = (0..11).map(|i| json!({format!("f{i}"): [i]})).collect();
        let p = json!({"$or": alts.clone(), "x": {"$or": alts.clone(), "y": {"$or": alts}}});
        assert!(Pattern::parse(&p)
            .unwrap_err()
            .message
            .contains("combinations"));
        let big: Vec<Value> = (0..1001).map(|i| json!(i)).collect();
        assert!(Pattern::parse(&json!({"a": big}))
            .unwrap_err()
            .message
            .contains("conditions"));
        let mut deep = json!({"leaf": [1]});
        for _ in 0..40 {
            deep = json!({ "n": deep });
        }
        assert!(Pattern::parse(&deep)
            .unwrap_err()
            .message
            .contains("deeper"));
        assert!(Pattern::parse_str(&"x".repeat(70_000))
            .unwrap_err()
            .message
            .contains("exceeds"));
    }

    #[test]
    fn a_one_element_or_is_an_ordinary_field() {
        let p = Pattern::parse(&json!({"$or": [{"a": [1]}]})).unwrap_err();
        assert!(
            p.message.contains("array of conditions") || p.path.starts_with("$or"),
            "{p}"
        );
    }
}
