//! Leaf conditions: parsing one element of a pattern leaf array, and testing one event value.
//! A leaf matches when any of its conditions matches any of the event's values at that path.

use serde_json::Value;
use std::net::IpAddr;

/// A literal in exact matching and anything-but lists.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

impl Literal {
    pub(crate) fn of(v: &Value) -> Option<Literal> {
        Some(match v {
            Value::String(s) => Literal::Str(s.clone()),
            Value::Number(n) => Literal::Num(n.as_f64()?),
            Value::Bool(b) => Literal::Bool(*b),
            Value::Null => Literal::Null,
            _ => return None,
        })
    }

    fn matches(&self, v: &Value) -> bool {
        match (self, v) {
            (Literal::Str(a), Value::String(b)) => a == b,
            (Literal::Num(a), Value::Number(b)) => b.as_f64() == Some(*a),
            (Literal::Bool(a), Value::Bool(b)) => a == b,
            (Literal::Null, Value::Null) => true,
            _ => false,
        }
    }
}

/// A glob with `*` (zero or more characters), anchored at both ends.
///
/// Kept as the literal pieces between the stars. Matching is linear in the text: the first piece
/// is a prefix, the last a suffix, and each middle piece is found leftmost after the one before
/// (the leftmost choice leaves the most text for the rest, so no backtracking is needed). Each
/// search is the standard library's linear-time substring search, and searches only move forward.
#[derive(Debug, Clone, PartialEq)]
pub struct Wildcard {
    /// The literal pieces between stars; one piece means no star at all.
    pieces: Vec<String>,
}

impl Wildcard {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut pieces = vec![String::new()];
        let mut chars = s.chars();
        let mut after_star = false;
        while let Some(c) = chars.next() {
            let literal = match c {
                '\\' => match chars.next() {
                    Some(e @ ('*' | '\\')) => e,
                    other => {
                        return Err(format!(
                            "wildcard {s:?}: `\\{}` is not an escape (only \\* and \\\\)",
                            other.map(String::from).unwrap_or_default()
                        ))
                    }
                },
                '*' if after_star => {
                    return Err(format!("wildcard {s:?}: consecutive `**` are not allowed"))
                }
                '*' => {
                    after_star = true;
                    pieces.push(String::new());
                    continue;
                }
                c => c,
            };
            after_star = false;
            pieces.last_mut().expect("never empty").push(literal);
        }
        Ok(Self { pieces })
    }

    pub fn matches(&self, text: &str) -> bool {
        let (first, rest) = self.pieces.split_first().expect("never empty");
        let Some((last, middle)) = rest.split_last() else {
            return text == first;
        };
        if text.len() < first.len() + last.len()
            || !text.starts_with(first.as_str())
            || !text.ends_with(last.as_str())
        {
            return false;
        }
        let mut window = &text[first.len()..text.len() - last.len()];
        for piece in middle {
            match window.find(piece.as_str()) {
                Some(at) => window = &window[at + piece.len()..],
                None => return false,
            }
        }
        true
    }
}

/// An IP network for `cidr`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, bits) = s.split_once('/').unwrap_or((s, ""));
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("cidr {s:?}: {addr:?} is not an IP address"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = if bits.is_empty() {
            max
        } else {
            bits.parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("cidr {s:?}: prefix length must be 0..={max}"))?
        };
        Ok(Self { net, bits })
    }

    fn to_u128(ip: &IpAddr) -> u128 {
        match ip {
            IpAddr::V4(v) => u128::from(u32::from(*v)),
            IpAddr::V6(v) => u128::from(*v),
        }
    }

    pub fn contains(&self, text: &str) -> bool {
        let Ok(ip) = text.parse::<IpAddr>() else {
            return false;
        };
        if ip.is_ipv4() != self.net.is_ipv4() {
            return false;
        }
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let shift = width - u32::from(self.bits);
        let (a, b) = (Self::to_u128(&ip), Self::to_u128(&self.net));
        shift >= 128 || (a >> shift) == (b >> shift)
    }
}

/// The exclusions of an `anything-but`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AnythingBut {
    pub values: Vec<Literal>,
    pub prefixes: Vec<String>,
    pub suffixes: Vec<String>,
    pub ignore_case: Vec<String>,
    pub wildcards: Vec<Wildcard>,
}

/// One condition of a leaf.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Exact(Literal),
    Prefix {
        text: String,
        ignore_case: bool,
    },
    Suffix {
        text: String,
        ignore_case: bool,
    },
    EqualsIgnoreCase(String),
    Wildcard(Wildcard),
    AnythingBut(AnythingBut),
    /// Lower and upper bounds (value, inclusive).
    Numeric {
        lower: Option<(f64, bool)>,
        upper: Option<(f64, bool)>,
    },
    Cidr(Cidr),
    Exists(bool),
}

fn upper(s: &str) -> String {
    s.to_uppercase()
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{what} takes strings"))
            })
            .collect(),
        _ => Err(format!(
            "{what} takes a string or a non-empty list of strings"
        )),
    }
}

fn finite(v: &Value) -> Result<f64, String> {
    v.as_f64()
        .filter(|f| f.is_finite())
        .ok_or_else(|| format!("numeric bound {v} is not a finite number"))
}

fn parse_numeric(v: &Value) -> Result<Condition, String> {
    let items = v
        .as_array()
        .filter(|a| !a.is_empty() && a.len() % 2 == 0)
        .ok_or("numeric takes [op, number] or [op, number, op, number]")?;
    let (mut lower, mut upper) = (None, None);
    for pair in items.chunks(2) {
        let op = pair[0]
            .as_str()
            .ok_or("numeric operators are strings: = < <= > >=")?;
        let n = finite(&pair[1])?;
        match op {
            "=" if items.len() == 2 => (lower, upper) = (Some((n, true)), Some((n, true))),
            ">" | ">=" if lower.is_none() => lower = Some((n, op == ">=")),
            "<" | "<=" if upper.is_none() => upper = Some((n, op == "<=")),
            _ => return Err(format!("numeric: operator {op:?} is unknown or repeated (a range is one lower and one upper bound)")),
        }
    }
    if let (Some((lo, _)), Some((hi, _))) = (lower, upper) {
        if lo > hi {
            return Err(format!("numeric: the range {lo} .. {hi} is empty"));
        }
    }
    Ok(Condition::Numeric { lower, upper })
}

fn parse_ignore_case_pair(v: &Value, what: &str) -> Result<(String, bool), String> {
    match v {
        Value::String(s) => Ok((s.clone(), false)),
        Value::Object(m) if m.len() == 1 => match m.get("equals-ignore-case") {
            Some(Value::String(s)) => Ok((s.clone(), true)),
            _ => Err(format!(
                "{what} takes a string or {{\"equals-ignore-case\": string}}"
            )),
        },
        _ => Err(format!(
            "{what} takes a string or {{\"equals-ignore-case\": string}}"
        )),
    }
}

fn parse_anything_but(v: &Value) -> Result<Condition, String> {
    let mut ab = AnythingBut::default();
    match v {
        Value::Array(items) if !items.is_empty() => {
            let all_str = items.iter().all(Value::is_string);
            let all_num = items.iter().all(Value::is_number);
            if !(all_str || all_num) {
                return Err("anything-but list must be all strings or all numbers".into());
            }
            ab.values = items.iter().filter_map(Literal::of).collect();
        }
        Value::Object(m) if m.len() == 1 => {
            let (k, inner) = m.iter().next().expect("one entry");
            match k.as_str() {
                "prefix" => ab.prefixes = strings(inner, "anything-but prefix")?,
                "suffix" => ab.suffixes = strings(inner, "anything-but suffix")?,
                "equals-ignore-case" => ab.ignore_case = strings(inner, "anything-but equals-ignore-case")?.iter().map(|s| upper(s)).collect(),
                "wildcard" => ab.wildcards = strings(inner, "anything-but wildcard")?.iter().map(|s| Wildcard::parse(s)).collect::<Result<_, _>>()?,
                other => return Err(format!("anything-but does not take {other:?}")),
            }
        }
        Value::String(_) | Value::Number(_) => ab.values = vec![Literal::of(v).ok_or("bad number")?],
        _ => return Err("anything-but takes a value, a list, or {prefix|suffix|equals-ignore-case|wildcard: ...}".into()),
    }
    Ok(Condition::AnythingBut(ab))
}

impl Condition {
    /// Parses one element of a leaf array.
    pub fn parse(v: &Value) -> Result<Condition, String> {
        let Value::Object(m) = v else {
            return Literal::of(v)
                .map(Condition::Exact)
                .ok_or_else(|| "a leaf holds literals or operator objects, not arrays".into());
        };
        if m.len() != 1 {
            return Err(format!(
                "an operator object has exactly one key, this one has {}",
                m.len()
            ));
        }
        let (op, arg) = m.iter().next().expect("one entry");
        match op.as_str() {
            "prefix" => parse_ignore_case_pair(arg, "prefix").map(|(text, ic)| Condition::Prefix {
                text: if ic { upper(&text) } else { text },
                ignore_case: ic,
            }),
            "suffix" => parse_ignore_case_pair(arg, "suffix").map(|(text, ic)| Condition::Suffix {
                text: if ic { upper(&text) } else { text },
                ignore_case: ic,
            }),
            "equals-ignore-case" => arg
                .as_str()
                .map(|s| Condition::EqualsIgnoreCase(upper(s)))
                .ok_or_else(|| "equals-ignore-case takes a string".into()),
            "wildcard" => arg
                .as_str()
                .ok_or_else(|| "wildcard takes a string".to_string())
                .and_then(Wildcard::parse)
                .map(Condition::Wildcard),
            "anything-but" => parse_anything_but(arg),
            "numeric" => parse_numeric(arg),
            "cidr" => arg
                .as_str()
                .ok_or_else(|| "cidr takes a string".to_string())
                .and_then(Cidr::parse)
                .map(Condition::Cidr),
            "exists" => arg
                .as_bool()
                .map(Condition::Exists)
                .ok_or_else(|| "exists takes true or false".into()),
            "exactly" => Literal::of(arg)
                .map(Condition::Exact)
                .ok_or_else(|| "exactly takes a literal".into()),
            other => Err(format!("unknown operator {other:?}")),
        }
    }

    /// True when `v` (one present, non-array value) satisfies the condition.
    pub fn matches(&self, v: &Value) -> bool {
        match self {
            Condition::Exact(l) => l.matches(v),
            Condition::Prefix { text, ignore_case } => v.as_str().is_some_and(|s| {
                if *ignore_case {
                    upper(s).starts_with(text.as_str())
                } else {
                    s.starts_with(text.as_str())
                }
            }),
            Condition::Suffix { text, ignore_case } => v.as_str().is_some_and(|s| {
                if *ignore_case {
                    upper(s).ends_with(text.as_str())
                } else {
                    s.ends_with(text.as_str())
                }
            }),
            Condition::EqualsIgnoreCase(t) => v.as_str().is_some_and(|s| upper(s) == *t),
            Condition::Wildcard(w) => v.as_str().is_some_and(|s| w.matches(s)),
            Condition::AnythingBut(ab) => !excluded(ab, v),
            Condition::Numeric { lower, upper } => {
                v.is_number()
                    && v.as_f64().is_some_and(|n| {
                        lower.is_none_or(|(lo, inc)| if inc { n >= lo } else { n > lo })
                            && upper.is_none_or(|(hi, inc)| if inc { n <= hi } else { n < hi })
                    })
            }
            Condition::Cidr(c) => v.as_str().is_some_and(|s| c.contains(s)),
            Condition::Exists(want) => *want,
        }
    }
}

fn excluded(ab: &AnythingBut, v: &Value) -> bool {
    if ab.values.iter().any(|l| l.matches(v)) {
        return true;
    }
    let Some(s) = v.as_str() else { return false };
    ab.prefixes.iter().any(|p| s.starts_with(p.as_str()))
        || ab.suffixes.iter().any(|p| s.ends_with(p.as_str()))
        || ab.ignore_case.iter().any(|p| upper(s) == *p)
        || ab.wildcards.iter().any(|w| w.matches(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_anchored_and_escapes_checked() {
        let w = Wildcard::parse("d*f").unwrap();
        assert!(w.matches("df") && w.matches("deeef") && !w.matches("deeeefx"));
        assert!(Wildcard::parse("xy*").unwrap().matches("xy"));
        assert!(Wildcard::parse("a\\*b").unwrap().matches("a*b"));
        assert!(!Wildcard::parse("a\\*b").unwrap().matches("axb"));
        assert!(Wildcard::parse("a**b").is_err() && Wildcard::parse("a\\nb").is_err());
        assert!(Wildcard::parse("*/lib/*").unwrap().matches("/usr/lib/x"));
    }

    /// Reference glob matcher by dynamic programming over (pattern, text) prefixes.
    fn reference(pattern: &[Option<char>], text: &[char]) -> bool {
        let mut m = vec![vec![false; text.len() + 1]; pattern.len() + 1];
        m[0][0] = true;
        for (i, p) in pattern.iter().enumerate() {
            for j in 0..=text.len() {
                m[i + 1][j] = match p {
                    None => m[i][j] || (j > 0 && m[i + 1][j - 1]),
                    Some(c) => j > 0 && m[i][j - 1] && text[j - 1] == *c,
                };
            }
        }
        m[pattern.len()][text.len()]
    }

    /// Every string over {a, b} up to `len` characters.
    fn words(alphabet: &[char], len: usize) -> Vec<Vec<char>> {
        let mut all = vec![vec![]];
        let mut last = vec![vec![]];
        for _ in 0..len {
            last = last
                .iter()
                .flat_map(|w: &Vec<char>| {
                    alphabet.iter().map(move |c| {
                        let mut w = w.clone();
                        w.push(*c);
                        w
                    })
                })
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn wildcards_agree_with_a_reference_matcher_on_every_small_case() {
        for p in words(&['a', 'b', '*'], 5) {
            let glob: String = p.iter().collect();
            let Ok(w) = Wildcard::parse(&glob) else {
                assert!(glob.contains("**"), "{glob:?} refused");
                continue;
            };
            let pattern: Vec<Option<char>> = p.iter().map(|c| (*c != '*').then_some(*c)).collect();
            for t in words(&['a', 'b'], 7) {
                let text: String = t.iter().collect();
                assert_eq!(
                    w.matches(&text),
                    reference(&pattern, &t),
                    "{glob:?} vs {text:?}"
                );
            }
        }
    }

    #[test]
    fn cidrs_cover_v4_and_v6() {
        let c = Cidr::parse("10.0.0.0/24").unwrap();
        assert!(
            c.contains("10.0.0.255")
                && !c.contains("10.0.1.0")
                && !c.contains("::1")
                && !c.contains("nope")
        );
        assert!(Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8:1::5"));
        assert!(Cidr::parse("10.0.0.0/33").is_err() && Cidr::parse("x/8").is_err());
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8"));
    }
}
