//! The input transformer (shared/spec/bus-semantics.md §1.4): variables taken from the event by
//! JSON paths, substituted into a template. Inside template quotes a string value goes in raw
//! (`"state": "<state>"`); outside quotes every value goes in as JSON (`"state": <state>` gives
//! `"state": "paid"`). A path that does not resolve gives `null` outside quotes and nothing inside.

use serde_json::Value;
use std::collections::BTreeMap;

/// Most variables in one transformer (EventBridge's limit).
pub const VARIABLES_MAX: usize = 100;
/// Longest template, in bytes (EventBridge's input template limit is 8,192 characters).
pub const TEMPLATE_BYTES_MAX: usize = 8192;
/// Default cap on one transformed output, in bytes: a template may name a large value many times,
/// so the output is bounded on its own (1 MiB, Kafka's default `max.message.bytes`).
pub const OUTPUT_BYTES_MAX: usize = 1 << 20;

/// A validated input transformer.
#[derive(Debug, Clone, PartialEq)]
pub struct Transform {
    paths: BTreeMap<String, Vec<Step>>,
    template: String,
    output_max: usize,
}

/// A transform whose output would pass its byte cap; nothing is produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transform output is over {max} bytes")]
pub struct OutputTooLarge {
    pub max: usize,
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
        if template.len() > TEMPLATE_BYTES_MAX {
            return Err(format!(
                "template is {} bytes; at most {TEMPLATE_BYTES_MAX}",
                template.len()
            ));
        }
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
            output_max: OUTPUT_BYTES_MAX,
        })
    }

    /// The same transform with another cap on its output (bytes).
    pub fn with_output_max(mut self, max: usize) -> Self {
        self.output_max = max;
        self
    }

    /// The template with every `<var>` replaced from `event`, or an error once the output would
    /// pass the cap. Linear in the template and the output: the next `>` is searched for once
    /// per placeholder candidate, not once per `<`.
    pub fn apply(&self, event: &Value) -> Result<String, OutputTooLarge> {
        let t = self.template.as_str();
        let mut out = String::with_capacity(t.len().min(self.output_max));
        let mut in_quotes = false;
        let (mut at, mut close) = (0, None::<Option<usize>>);
        while let Some(c) = t[at..].chars().next() {
            if c == '<' {
                if close.is_none_or(|found| found.is_some_and(|end| end < at)) {
                    close = Some(t[at..].find('>').map(|i| at + i));
                }
                if let Some(Some(end)) = close {
                    if let Some(steps) = self.paths.get(&t[at + 1..end]) {
                        self.substitute(&mut out, in_quotes, resolve(event, steps))?;
                        at = end + 1;
                        continue;
                    }
                }
            }
            if c == '"' && !out.ends_with('\\') {
                in_quotes = !in_quotes;
            }
            self.push(&mut out, c.encode_utf8(&mut [0; 4]))?;
            at += c.len_utf8();
        }
        Ok(out)
    }

    /// Writes one variable's value: raw text inside quotes, JSON outside.
    fn substitute(
        &self,
        out: &mut String,
        in_quotes: bool,
        v: Option<&Value>,
    ) -> Result<(), OutputTooLarge> {
        match (in_quotes, v) {
            (true, Some(Value::String(s))) => self.push(out, s),
            (true, Some(other)) => self.push(out, &other.to_string()),
            (true, None) => Ok(()),
            (false, Some(v)) => self.push(out, &v.to_string()),
            (false, None) => self.push(out, "null"),
        }
    }

    fn push(&self, out: &mut String, s: &str) -> Result<(), OutputTooLarge> {
        if out.len() + s.len() > self.output_max {
            return Err(OutputTooLarge {
                max: self.output_max,
            });
        }
        out.push_str(s);
        Ok(())
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
        let out: Value = serde_json::from_str(&tr.apply(&event).unwrap()).unwrap();
        assert_eq!(
            out,
            json!({"s": "paid", "j": "paid", "n": 12, "r": "r1", "o": true, "x": null, "y": ""})
        );
        assert_eq!(
            t(&[("s", "$.detail.state")], "order is <s> now")
                .apply(&event)
                .unwrap(),
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
        let long = "x".repeat(TEMPLATE_BYTES_MAX + 1);
        assert!(Transform::new(&m("a", "$.x"), &long)
            .unwrap_err()
            .contains("8192"));
        assert!(Transform::new(&m("a", "$.x"), &long[1..]).is_ok());
    }

    #[test]
    fn output_is_capped_and_placeholders_survive_stray_brackets() {
        let event = json!({"big": "y".repeat(1000)});
        let many = "<v>".repeat(2000);
        let tr = t(&[("v", "$.big")], &many).with_output_max(100_000);
        assert_eq!(tr.apply(&event), Err(OutputTooLarge { max: 100_000 }));
        let tr = t(&[("v", "$.big")], "<v>").with_output_max(1002);
        assert_eq!(tr.apply(&event).unwrap().len(), 1002);
        // `<` without a `>`, and `<` before a `>` that closes a later placeholder.
        let tr = t(&[("v", "$.n")], "a < b <<v> <x> c<");
        assert_eq!(tr.apply(&json!({"n": 1})).unwrap(), "a < b <1 <x> c<");
        // Many `<` and no `>`: one search, not one per `<`.
        let tr = t(&[("v", "$.n")], &"<".repeat(TEMPLATE_BYTES_MAX));
        assert_eq!(tr.apply(&json!({})).unwrap().len(), TEMPLATE_BYTES_MAX);
    }
}
