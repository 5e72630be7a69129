//! The input transformer (shared/spec/bus-semantics.md §1.4): variables taken from the event by
//! JSON paths, substituted into a template. Inside template quotes a string value goes in raw
//! (`"state": "<state>"`); outside quotes every value goes in as JSON (`"state": <state>` gives
//! `"state": "paid"`). A path that does not resolve gives `null` outside quotes and nothing inside.

use serde_json::Value;
use std::collections::BTreeMap;

/// Most variables in one transformer (EventBridge's limit).
pub const VARIABLES_MAX: usize = 100;

/// A validated input transformer.
#[derive(Debug, Clone, PartialEq)]
pub struct Transform {
    paths: BTreeMap<String, Vec<Step>>,
    template: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

fn parse_path(p: &str) -> Result<Vec<Step>, String> {
    let rest = p
        .strip_prefix('$')
        .ok_or_else(|| format!("path {p:?} must start with `$`"))?;
    let mut steps = Vec::new();
    let mut chars = rest.char_indices().peekable();
    let bytes = rest;
    while let Some((i, c)) = chars.next() {
        match c {
            '.' => {
                let start = i + 1;
                let mut end = bytes.len();
                while let Some(&(j, c)) = chars.peek() {
                    if c == '.' || c == '[' {
                        end = j;
                        break;
                    }
                    chars.next();
                }
                let key = &bytes[start..end];
                if key.is_empty() {
                    return Err(format!("path {p:?} has an empty field name"));
                }
                steps.push(Step::Key(key.to_string()));
            }
            '[' => {
                let close = bytes[i..]
                    .find(']')
                    .map(|k| i + k)
                    .ok_or_else(|| format!("path {p:?} has an unclosed `[`"))?;
                let inner = &bytes[i + 1..close];
                let step =
                    if let Some(q) = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                        Step::Key(q.to_string())
                    } else {
                        Step::Index(inner.parse().map_err(|_| {
                            format!("path {p:?}: [{inner}] is not an index or a quoted name")
                        })?)
                    };
                steps.push(step);
                while chars.peek().is_some_and(|(j, _)| *j <= close) {
                    chars.next();
                }
            }
            other => return Err(format!("path {p:?}: unexpected {other:?}")),
        }
    }
    Ok(steps)
}

fn resolve<'a>(v: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    steps.iter().try_fold(v, |cur, s| match s {
        Step::Key(k) => cur.get(k.as_str()),
        Step::Index(i) => cur.get(*i),
    })
}

impl Transform {
    /// Validates the paths map and the template's placeholders.
    pub fn new(paths: &BTreeMap<String, String>, template: &str) -> Result<Self, String> {
        if paths.len() > VARIABLES_MAX {
            return Err(format!(
                "at most {VARIABLES_MAX} variables, got {}",
                paths.len()
            ));
        }
        let mut parsed = BTreeMap::new();
        for (name, p) in paths {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
            {
                return Err(format!(
                    "variable name {name:?} must be letters, digits, '_', '-' or '.'"
                ));
            }
            parsed.insert(
                name.clone(),
                parse_path(p).map_err(|e| format!("variable {name:?}: {e}"))?,
            );
        }
        Ok(Self {
            paths: parsed,
            template: template.to_string(),
        })
    }

    /// The template with every `<var>` replaced from `event`.
    pub fn apply(&self, event: &Value) -> String {
        let mut out = String::with_capacity(self.template.len());
        let mut in_quotes = false;
        let mut rest = self.template.as_str();
        while let Some(c) = rest.chars().next() {
            if c == '<' {
                if let Some(end) = rest.find('>') {
                    let name = &rest[1..end];
                    if let Some(steps) = self.paths.get(name) {
                        let v = resolve(event, steps);
                        match (in_quotes, v) {
                            (true, Some(Value::String(s))) => out.push_str(s),
                            (true, Some(other)) => out.push_str(&other.to_string()),
                            (true, None) => {}
                            (false, Some(v)) => out.push_str(&v.to_string()),
                            (false, None) => out.push_str("null"),
                        }
                        rest = &rest[end + 1..];
                        continue;
                    }
                }
            }
            if c == '"' && !out.ends_with('\\') {
                in_quotes = !in_quotes;
            }
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(paths: &[(&str, &str)], template: &str) -> Transform {
        Transform::new(
            &paths
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            template,
        )
        .unwrap()
    }

    #[test]
    fn substitutes_raw_inside_quotes_and_json_outside() {
        let event = json!({"detail": {"state": "paid", "total": 12, "items": ["a", "b"], "odd key": true}, "resources": ["r0", "r1"]});
        let tr = t(
            &[
                ("state", "$.detail.state"),
                ("total", "$.detail.total"),
                ("r", "$.resources[1]"),
                ("odd", "$.detail['odd key']"),
                ("none", "$.nope"),
            ],
            r#"{"s": "<state>", "j": <state>, "n": <total>, "r": "<r>", "o": <odd>, "x": <none>, "y": "<none>"}"#,
        );
        let out: Value = serde_json::from_str(&tr.apply(&event)).unwrap();
        assert_eq!(
            out,
            json!({"s": "paid", "j": "paid", "n": 12, "r": "r1", "o": true, "x": null, "y": ""})
        );
        assert_eq!(
            t(&[("s", "$.detail.state")], "order is <s> now").apply(&event),
            "order is \"paid\" now"
        );
    }

    #[test]
    fn bad_paths_and_names_are_refused() {
        let m = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert!(Transform::new(&m("a", "detail.x"), "")
            .unwrap_err()
            .contains("`$`"));
        assert!(Transform::new(&m("a", "$.x[abc]"), "")
            .unwrap_err()
            .contains("index"));
        assert!(Transform::new(&m("a", "$.x[0"), "")
            .unwrap_err()
            .contains("unclosed"));
        assert!(Transform::new(&m("a b", "$.x"), "").is_err());
        let many: BTreeMap<String, String> = (0..101)
            .map(|i| (format!("v{i}"), "$.x".to_string()))
            .collect();
        assert!(Transform::new(&many, "").unwrap_err().contains("100"));
    }
}
