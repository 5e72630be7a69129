//! Many rules matched against one event at a cost that grows with the event, not with the number
//! of rules: rules are indexed by an anchor (a path whose conditions are all exact literals, which
//! every matching event must hold); an event's (path, value) pairs select the candidate rules, and
//! only those (plus rules without an anchor) are checked in full.

use crate::condition::Literal;
use crate::pattern::Pattern;
use serde_json::Value;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Str(String),
    Num(u64),
    Bool(bool),
    Null,
}

fn num_key(f: f64) -> u64 {
    (f + 0.0).to_bits() // -0.0 and 0.0 index alike
}

impl Key {
    fn of_literal(l: &Literal) -> Key {
        match l {
            Literal::Str(s) => Key::Str(s.clone()),
            Literal::Num(n) => Key::Num(num_key(*n)),
            Literal::Bool(b) => Key::Bool(*b),
            Literal::Null => Key::Null,
        }
    }

    fn of_value(v: &Value) -> Option<Key> {
        Some(match v {
            Value::String(s) => Key::Str(s.clone()),
            Value::Number(n) => Key::Num(num_key(n.as_f64()?)),
            Value::Bool(b) => Key::Bool(*b),
            Value::Null => Key::Null,
            _ => return None,
        })
    }
}

/// A set of named rules.
pub struct RuleSet<T> {
    rules: Vec<(T, Pattern)>,
    /// Path (segments joined by NUL) → literal → rule indexes.
    index: HashMap<String, HashMap<Key, Vec<usize>>>,
    unanchored: Vec<usize>,
}

impl<T> Default for RuleSet<T> {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            index: HashMap::new(),
            unanchored: Vec::new(),
        }
    }
}

/// Calls `out` with each leaf and its path: the keys from the top joined by `\0`, as patterns
/// are indexed (`depth` says whether a separator goes before the next key, so an empty key
/// still counts as a component).
fn walk<'a>(v: &'a Value, path: &mut String, depth: usize, out: &mut impl FnMut(&str, &'a Value)) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let len = path.len();
                if depth > 0 {
                    path.push('\0');
                }
                path.push_str(k);
                walk(child, path, depth + 1, out);
                path.truncate(len);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| walk(i, path, depth, out)),
        leaf => out(path, leaf),
    }
}

impl<T> RuleSet<T> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule.
    pub fn add(&mut self, name: T, pattern: Pattern) {
        let i = self.rules.len();
        match pattern.anchor() {
            Some((path, literals)) => {
                let by_value = self.index.entry(path.join("\0")).or_default();
                for l in literals {
                    let ids = by_value.entry(Key::of_literal(&l)).or_default();
                    if ids.last() != Some(&i) {
                        ids.push(i);
                    }
                }
            }
            None => self.unanchored.push(i),
        }
        self.rules.push((name, pattern));
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when the set holds no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules that match `event`, in the order they were added.
    pub fn matching(&self, event: &Value) -> Vec<&T> {
        let mut candidates: Vec<usize> = self.unanchored.clone();
        let mut path = String::new();
        walk(event, &mut path, 0, &mut |p, v| {
            if let (Some(by_value), Some(k)) = (self.index.get(p), Key::of_value(v)) {
                if let Some(ids) = by_value.get(&k) {
                    candidates.extend_from_slice(ids);
                }
            }
        });
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .filter(|i| self.rules[*i].1.matches(event))
            .map(|i| &self.rules[i].0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_index_never_changes_an_answer() {
        let patterns = [
            json!({"source": ["a", "b"]}),
            json!({"detail": {"n": [1]}}),
            json!({"detail": {"n": [{"numeric": [">", 0]}]}}),
            json!({"x": [{"prefix": "p"}], "source": ["a"]}),
            json!({"$or": [{"source": ["b"]}, {"detail": {"n": [2]}}]}),
            json!({"list": {"k": ["v"]}}),
        ];
        let mut set = RuleSet::new();
        for (i, p) in patterns.iter().enumerate() {
            set.add(i, Pattern::parse(p).unwrap());
        }
        let events = [
            json!({"source": "a", "x": "pq", "detail": {"n": 1.0}}),
            json!({"source": "b", "detail": {"n": 2}}),
            json!({"list": [{"k": "w"}, {"k": "v"}], "detail": {"n": -0.0}}),
            json!({}),
        ];
        for e in &events {
            let want: Vec<usize> = patterns
                .iter()
                .enumerate()
                .filter(|(_, p)| Pattern::parse(p).unwrap().matches(e))
                .map(|(i, _)| i)
                .collect();
            let got: Vec<usize> = set.matching(e).into_iter().copied().collect();
            assert_eq!(got, want, "{e}");
        }
    }

    #[test]
    fn an_empty_top_level_key_is_indexed_like_the_event_walks_it() {
        // Shared reads match with the RuleSet; a worker passes what it does not return.
        // A structured CloudEvent may carry any attribute name, including "".
        let p = json!({"": {"b": ["v"]}});
        let mut set = RuleSet::new();
        set.add(0, Pattern::parse(&p).unwrap());
        let e = json!({"specversion": "1.0", "": {"b": "v"}});
        assert!(
            Pattern::parse(&p).unwrap().matches(&e),
            "the pattern matches"
        );
        assert_eq!(set.matching(&e), vec![&0], "the index must not drop it");
    }
}
