//! Avro compatibility by the spec's schema-resolution rules: can data written with one schema
//! always be read with another? A resolution that could fail for some data (Java's and
//! apache-avro's "partial") counts as incompatible. Each (reader, writer) pair of named types is
//! compared once per check, within [`Limits`].

use super::*;

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
                    type_name(r),
                    type_name(w)
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
                format!("reader union lacks writer type {}{why}", type_name(w)),
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
