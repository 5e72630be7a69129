//! A Jepsen-style history of queue operations and its checker (shared/spec/reliability.md §3).
//!
//! Tests record every send (with its outcome: ok at an offset, definitely failed, or unknown), every
//! poll (the (partition, offset, value) triples it returned) and every offset commit; values are
//! unique per run. [`check`] then counts the anomalies: lost writes, unseen acknowledged writes,
//! inconsistent offsets, duplicates, aborted reads (G1a), non-monotonic sends and polls, poll skips
//! and committed-offset regressions. `to_jsonl` writes the history for later inspection.
//!
//! Transactions (issue 18): a consume-transform-produce run also records each transaction's
//! writes (input value, output value) with how it ended as its client saw it, and the inputs that
//! must each reach the output exactly once. Polls and the final drain are read_committed reads;
//! the checks are lost-committed-write (a committed transaction's write not there),
//! aborted-read (an aborted transaction's write read), torn-transaction (some of a transaction's
//! writes there, not all), and eos-lost / eos-duplicate (an input in the output zero or several
//! times).

use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A partition: (topic, partition).
pub type Tp = (String, u32);

/// One record as read: (partition, offset, value).
pub type Read = (Tp, u64, u64);

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<T> {
    /// Acknowledged.
    Ok(T),
    /// Definitely not applied (the server refused it).
    Fail,
    /// Unknown (timeout, connection lost, crash).
    Unknown,
}

/// One recorded operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Send {
        process: u64,
        tp: Tp,
        value: u64,
        outcome: Outcome<u64>,
    },
    /// `reset` marks a poll right after (re)assignment or a seek: ordering checks restart there.
    Poll {
        process: u64,
        records: Vec<(Tp, u64, u64)>,
        reset: bool,
    },
    /// `reset` marks an explicit offset reset, which may move the offset back.
    Commit {
        group: String,
        tp: Tp,
        offset: u64,
        outcome: Outcome<()>,
        reset: bool,
    },
    /// A transaction's writes, each (input value, output value), and how it ended.
    Txn {
        process: u64,
        writes: Vec<(u64, u64)>,
        end: TxnEnd,
    },
    /// Inputs each of which must be in the output exactly once (through committed transactions).
    Inputs { values: Vec<u64> },
}

/// How a transaction ended, as its client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnEnd {
    /// The commit was acknowledged.
    Committed,
    /// The client aborted it (acknowledged).
    Aborted,
    /// Unknown (the client or the broker died before an answer).
    Unknown,
}

/// A history, in the order operations completed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub ops: Vec<Op>,
}

/// Anomaly counts, with a few examples each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub counts: BTreeMap<&'static str, usize>,
    pub examples: BTreeMap<&'static str, Vec<String>>,
}

impl Report {
    fn add(&mut self, kind: &'static str, example: String) {
        *self.counts.entry(kind).or_default() += 1;
        let ex = self.examples.entry(kind).or_default();
        if ex.len() < 5 {
            ex.push(example);
        }
    }

    /// The count of one kind (0 when none).
    pub fn count(&self, kind: &str) -> usize {
        self.counts.get(kind).copied().unwrap_or(0)
    }

    /// True when no anomaly was found.
    pub fn is_clean(&self) -> bool {
        self.counts.values().all(|c| *c == 0)
    }
}

/// Every anomaly kind `check` reports.
pub const KINDS: &[&str] = &[
    "lost-write",
    "unseen",
    "inconsistent-offsets",
    "duplicate",
    "G1a",
    "nonmonotonic-send",
    "nonmonotonic-poll",
    "poll-skip",
    "commit-regression",
    "lost-committed-write",
    "aborted-read",
    "torn-transaction",
    "eos-lost",
    "eos-duplicate",
];

impl History {
    pub fn send(&mut self, process: u64, tp: Tp, value: u64, outcome: Outcome<u64>) {
        self.ops.push(Op::Send {
            process,
            tp,
            value,
            outcome,
        });
    }

    pub fn poll(&mut self, process: u64, records: Vec<(Tp, u64, u64)>, reset: bool) {
        self.ops.push(Op::Poll {
            process,
            records,
            reset,
        });
    }

    pub fn commit(&mut self, group: &str, tp: Tp, offset: u64, outcome: Outcome<()>, reset: bool) {
        self.ops.push(Op::Commit {
            group: group.to_string(),
            tp,
            offset,
            outcome,
            reset,
        });
    }

    pub fn txn(&mut self, process: u64, writes: Vec<(u64, u64)>, end: TxnEnd) {
        self.ops.push(Op::Txn {
            process,
            writes,
            end,
        });
    }

    pub fn inputs(&mut self, values: Vec<u64>) {
        self.ops.push(Op::Inputs { values });
    }

    /// The history as JSON lines, one operation per line.
    pub fn to_jsonl(&self) -> String {
        let outcome = |o: &Outcome<u64>| match o {
            Outcome::Ok(off) => json!({"type": "ok", "offset": off}),
            Outcome::Fail => json!({"type": "fail"}),
            Outcome::Unknown => json!({"type": "info"}),
        };
        let mut out = String::new();
        for op in &self.ops {
            let line = match op {
                Op::Send {
                    process,
                    tp,
                    value,
                    outcome: o,
                } => {
                    json!({"f": "send", "process": process, "topic": tp.0, "partition": tp.1, "value": value, "outcome": outcome(o)})
                }
                Op::Poll {
                    process,
                    records,
                    reset,
                } => {
                    json!({"f": "poll", "process": process, "reset": reset, "records": records.iter().map(|(tp, o, v)| json!([tp.0, tp.1, o, v])).collect::<Vec<_>>()})
                }
                Op::Commit {
                    group,
                    tp,
                    offset,
                    outcome: o,
                    reset,
                } => {
                    json!({"f": "commit", "group": group, "topic": tp.0, "partition": tp.1, "offset": offset, "ok": *o == Outcome::Ok(()), "reset": reset})
                }
                Op::Txn {
                    process,
                    writes,
                    end,
                } => {
                    let end = match end {
                        TxnEnd::Committed => "commit",
                        TxnEnd::Aborted => "abort",
                        TxnEnd::Unknown => "info",
                    };
                    json!({"f": "txn", "process": process, "writes": writes, "end": end})
                }
                Op::Inputs { values } => json!({"f": "inputs", "values": values}),
            };
            out.push_str(&line.to_string());
            out.push('\n');
        }
        out
    }
}

/// A history read back from JSON lines in the form [`History::to_jsonl`] writes, plus lines
/// `{"f": "drain", "records": [[topic, partition, offset, value], ...]}` holding the final read of
/// every partition. A send's partition may be -1 when it is unknown. Errors name the line.
pub fn from_jsonl(text: &str) -> Result<(History, Vec<Read>), String> {
    let mut h = History::default();
    let mut drain = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = |what: &str| format!("line {}: {what}", i + 1);
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
        let u = |k: &str| {
            v[k].as_u64()
                .ok_or_else(|| bad(&format!("`{k}` is not a number")))
        };
        let tp = || -> Result<Tp, String> {
            let topic = v["topic"].as_str().ok_or_else(|| bad("`topic` missing"))?;
            Ok((
                topic.to_string(),
                v["partition"].as_i64().unwrap_or(-1) as u32,
            ))
        };
        let records = |k: &str| -> Result<Vec<Read>, String> {
            let arr = v[k]
                .as_array()
                .ok_or_else(|| bad(&format!("`{k}` is not a list")))?;
            arr.iter()
                .map(|r| match r.as_array().map(Vec::as_slice) {
                    Some([t, p, o, val]) => Some((
                        (t.as_str()?.to_string(), p.as_u64()? as u32),
                        o.as_u64()?,
                        val.as_u64()?,
                    )),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("a record is not [topic, partition, offset, value]"))
        };
        match v["f"].as_str() {
            Some("send") => {
                let outcome = match v["outcome"]["type"].as_str() {
                    Some("ok") => Outcome::Ok(
                        v["outcome"]["offset"]
                            .as_u64()
                            .ok_or_else(|| bad("ok send without offset"))?,
                    ),
                    Some("fail") => Outcome::Fail,
                    _ => Outcome::Unknown,
                };
                h.send(u("process")?, tp()?, u("value")?, outcome);
            }
            Some("poll") => {
                let reset = v["reset"].as_bool().unwrap_or(false);
                h.poll(u("process")?, records("records")?, reset);
            }
            Some("commit") => {
                let outcome = if v["ok"].as_bool() == Some(true) {
                    Outcome::Ok(())
                } else {
                    Outcome::Unknown
                };
                let group = v["group"].as_str().ok_or_else(|| bad("`group` missing"))?;
                let reset = v["reset"].as_bool().unwrap_or(false);
                h.commit(group, tp()?, u("offset")?, outcome, reset);
            }
            Some("drain") => drain.extend(records("records")?),
            Some("txn") => {
                let end = match v["end"].as_str() {
                    Some("commit") => TxnEnd::Committed,
                    Some("abort") => TxnEnd::Aborted,
                    _ => TxnEnd::Unknown,
                };
                let writes = (v["writes"].as_array())
                    .ok_or_else(|| bad("`writes` is not a list"))?
                    .iter()
                    .map(|w| match w.as_array().map(Vec::as_slice) {
                        Some([i, o]) => Some((i.as_u64()?, o.as_u64()?)),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("a write is not [input, output]"))?;
                h.txn(u("process")?, writes, end);
            }
            Some("inputs") => {
                let values = (v["values"].as_array())
                    .ok_or_else(|| bad("`values` is not a list"))?
                    .iter()
                    .map(serde_json::Value::as_u64)
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("an input is not a number"))?;
                h.inputs(values);
            }
            _ => return Err(bad("`f` is not send, poll, commit, txn, inputs or drain")),
        }
    }
    Ok((h, drain))
}

/// Checks a history. `drain` is a final full read of every partition after the run (what is
/// stored), or empty when the run had none.
pub fn check(h: &History, drain: &[(Tp, u64, u64)]) -> Report {
    let mut r = Report::default();
    for k in KINDS {
        r.counts.insert(k, 0);
    }
    // What was observed at each offset, and where each value was seen.
    let mut at: HashMap<(Tp, u64), BTreeSet<u64>> = HashMap::new();
    let mut seen_at: HashMap<u64, BTreeSet<(Tp, u64)>> = HashMap::new();
    let polled = h
        .ops
        .iter()
        .filter_map(|op| {
            if let Op::Poll { records, .. } = op {
                Some(records)
            } else {
                None
            }
        })
        .flatten();
    for (tp, off, v) in polled.chain(drain.iter()) {
        at.entry((tp.clone(), *off)).or_default().insert(*v);
        seen_at.entry(*v).or_default().insert((tp.clone(), *off));
    }
    let mut max_seen: HashMap<Tp, u64> = HashMap::new();
    for (tp, off) in at.keys() {
        let m = max_seen.entry(tp.clone()).or_insert(*off);
        *m = (*m).max(*off);
    }
    check_sends(h, &at, &max_seen, &mut r);
    for ((tp, off), values) in &at {
        if values.len() > 1 {
            r.add(
                "inconsistent-offsets",
                format!("{}:{} holds {values:?}", tp.0, tp.1),
            );
        }
        let _ = off;
    }
    for (v, places) in &seen_at {
        if places.len() > 1 {
            r.add("duplicate", format!("value {v} at {places:?}"));
        }
    }
    check_polls(h, &at, &mut r);
    check_commits(h, &mut r);
    check_txns(h, &seen_at, &mut r);
    r
}

/// The transaction checks (see the module docs); `seen_at` holds every value read
/// (read_committed) with where it was read.
fn check_txns(h: &History, seen_at: &HashMap<u64, BTreeSet<(Tp, u64)>>, r: &mut Report) {
    let mut input_of: HashMap<u64, u64> = HashMap::new();
    for op in &h.ops {
        let Op::Txn {
            process,
            writes,
            end,
        } = op
        else {
            continue;
        };
        let there = writes
            .iter()
            .filter(|(_, o)| seen_at.contains_key(o))
            .count();
        let what = || {
            format!(
                "process {process}: {there} of {} writes {writes:?}",
                writes.len()
            )
        };
        if *end == TxnEnd::Committed && there < writes.len() {
            r.add("lost-committed-write", what());
        }
        if *end == TxnEnd::Aborted && there > 0 {
            r.add("aborted-read", what());
        }
        if there > 0 && there < writes.len() {
            r.add("torn-transaction", what());
        }
        input_of.extend(writes.iter().map(|(i, o)| (*o, *i)));
    }
    let mut times: HashMap<u64, usize> = HashMap::new();
    for (out, places) in seen_at {
        if let Some(i) = input_of.get(out) {
            *times.entry(*i).or_default() += places.len();
        }
    }
    for op in &h.ops {
        let Op::Inputs { values } = op else {
            continue;
        };
        for v in values {
            match times.get(v).copied().unwrap_or(0) {
                0 => r.add("eos-lost", format!("input {v} is not in the output")),
                1 => {}
                n => r.add(
                    "eos-duplicate",
                    format!("input {v} is in the output {n} times"),
                ),
            }
        }
    }
}

fn check_sends(
    h: &History,
    at: &HashMap<(Tp, u64), BTreeSet<u64>>,
    max_seen: &HashMap<Tp, u64>,
    r: &mut Report,
) {
    let mut last_send: HashMap<(u64, Tp), u64> = HashMap::new();
    for op in &h.ops {
        let Op::Send {
            process,
            tp,
            value,
            outcome,
        } = op
        else {
            continue;
        };
        match outcome {
            Outcome::Ok(off) => {
                match at.get(&(tp.clone(), *off)) {
                    Some(vals) if !vals.contains(value) => r.add(
                        "inconsistent-offsets",
                        format!("sent {value} to {}:{}@{off}, read {vals:?}", tp.0, tp.1),
                    ),
                    Some(_) => {}
                    None if max_seen.get(tp).is_some_and(|m| m > off) => r.add(
                        "lost-write",
                        format!(
                            "{value} acked at {}:{}@{off}, later offsets were read",
                            tp.0, tp.1
                        ),
                    ),
                    None => r.add(
                        "unseen",
                        format!("{value} acked at {}:{}@{off}", tp.0, tp.1),
                    ),
                }
                if let Some(prev) = last_send.insert((*process, tp.clone()), *off) {
                    if *off <= prev {
                        r.add(
                            "nonmonotonic-send",
                            format!(
                                "process {process} sent to {}:{}@{off} after @{prev}",
                                tp.0, tp.1
                            ),
                        );
                    }
                }
            }
            Outcome::Fail => {
                if at.values().any(|vals| vals.contains(value)) {
                    r.add("G1a", format!("{value} was refused but read"));
                }
            }
            Outcome::Unknown => {}
        }
    }
}

fn check_polls(h: &History, at: &HashMap<(Tp, u64), BTreeSet<u64>>, r: &mut Report) {
    let exists =
        |tp: &Tp, lo: u64, hi: u64| (lo + 1..hi).find(|o| at.contains_key(&(tp.clone(), *o)));
    let mut last: HashMap<(u64, Tp), u64> = HashMap::new();
    for op in &h.ops {
        let Op::Poll {
            process,
            records,
            reset,
        } = op
        else {
            continue;
        };
        if *reset {
            last.retain(|(p, _), _| p != process);
        }
        for (tp, off, _) in records {
            if let Some(prev) = last.insert((*process, tp.clone()), *off) {
                if *off <= prev {
                    r.add(
                        "nonmonotonic-poll",
                        format!(
                            "process {process} read {}:{}@{off} after @{prev}",
                            tp.0, tp.1
                        ),
                    );
                } else if let Some(skipped) = exists(tp, prev, *off) {
                    r.add(
                        "poll-skip",
                        format!(
                            "process {process} jumped {}:{} from @{prev} to @{off} over @{skipped}",
                            tp.0, tp.1
                        ),
                    );
                }
            }
        }
    }
}

fn check_commits(h: &History, r: &mut Report) {
    let mut last: HashMap<(String, Tp), u64> = HashMap::new();
    for op in &h.ops {
        let Op::Commit {
            group,
            tp,
            offset,
            outcome: Outcome::Ok(()),
            reset,
        } = op
        else {
            continue;
        };
        let key = (group.clone(), tp.clone());
        if let Some(prev) = last.get(&key) {
            if offset < prev && !reset {
                r.add(
                    "commit-regression",
                    format!(
                        "group {group} {}:{} committed {offset} after {prev}",
                        tp.0, tp.1
                    ),
                );
            }
        }
        last.insert(key, *offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: u32) -> Tp {
        ("t".to_string(), p)
    }

    /// A clean run: three sends, read in order, committed forwards.
    fn clean() -> History {
        let mut h = History::default();
        for (v, o) in [(10, 0), (11, 1), (12, 2)] {
            h.send(1, tp(0), v, Outcome::Ok(o));
        }
        h.send(1, tp(0), 13, Outcome::Unknown);
        h.poll(2, vec![(tp(0), 0, 10), (tp(0), 1, 11)], true);
        h.poll(2, vec![(tp(0), 2, 12)], false);
        h.commit("g", tp(0), 2, Outcome::Ok(()), false);
        h.commit("g", tp(0), 3, Outcome::Ok(()), false);
        h
    }

    #[test]
    fn jsonl_round_trips_and_bad_lines_are_named() {
        let h = clean();
        let mut text = h.to_jsonl();
        text.push_str("{\"f\": \"drain\", \"records\": [[\"t\", 0, 0, 10]]}\n");
        let (back, drain) = from_jsonl(&text).unwrap();
        assert_eq!(back, h);
        assert_eq!(drain, vec![(tp(0), 0, 10)]);
        assert!(from_jsonl("{}\n").unwrap_err().starts_with("line 1"));
        assert!(from_jsonl("\nnot json").unwrap_err().starts_with("line 2"));
    }

    #[test]
    fn a_clean_history_has_no_anomaly() {
        let r = check(&clean(), &[(tp(0), 0, 10), (tp(0), 1, 11), (tp(0), 2, 12)]);
        assert!(r.is_clean(), "{r:?}");
        assert_eq!(clean().to_jsonl().lines().count(), 8);
    }

    /// Adds an anomaly to a clean history (and its final drain).
    type Plant = Box<dyn Fn(&mut History, &mut Vec<(Tp, u64, u64)>)>;

    #[test]
    fn every_planted_anomaly_is_found() {
        let cases: Vec<(&str, Plant)> = vec![
            (
                "lost-write",
                Box::new(|h, _| {
                    h.send(1, tp(1), 20, Outcome::Ok(5));
                    h.poll(3, vec![(tp(1), 6, 22)], true);
                }),
            ),
            (
                "unseen",
                Box::new(|h, _| h.send(1, tp(0), 21, Outcome::Ok(9))),
            ),
            (
                "inconsistent-offsets",
                Box::new(|h, _| h.poll(3, vec![(tp(0), 1, 99)], true)),
            ),
            (
                "duplicate",
                Box::new(|h, _| h.poll(3, vec![(tp(1), 0, 11)], true)),
            ),
            (
                "G1a",
                Box::new(|h, d| {
                    h.send(1, tp(0), 30, Outcome::Fail);
                    d.push((tp(0), 3, 30));
                }),
            ),
            (
                "nonmonotonic-send",
                Box::new(|h, _| h.send(1, tp(0), 12, Outcome::Ok(2))),
            ),
            (
                "nonmonotonic-poll",
                Box::new(|h, _| h.poll(2, vec![(tp(0), 1, 11)], false)),
            ),
            (
                "poll-skip",
                Box::new(|h, _| h.poll(4, vec![(tp(0), 0, 10), (tp(0), 2, 12)], true)),
            ),
            (
                "commit-regression",
                Box::new(|h, _| h.commit("g", tp(0), 1, Outcome::Ok(()), false)),
            ),
        ];
        for (kind, plant) in cases {
            let mut h = clean();
            let mut drain = vec![(tp(0), 0, 10), (tp(0), 1, 11), (tp(0), 2, 12)];
            plant(&mut h, &mut drain);
            let r = check(&h, &drain);
            assert!(r.count(kind) >= 1, "{kind} not found: {r:?}");
        }
        // An explicit reset may move a committed offset back, and a reset poll may go back.
        let mut h = clean();
        h.commit("g", tp(0), 0, Outcome::Ok(()), true);
        h.poll(2, vec![(tp(0), 0, 10)], true);
        assert!(check(&h, &[]).is_clean());
    }

    fn out(tp_: u32, off: u64, v: u64) -> (Tp, u64, u64) {
        (("out".to_string(), tp_), off, v)
    }

    /// A clean consume-transform-produce run: inputs 1 and 2; attempt A (outputs 101, 102)
    /// committed, attempt B (201, 202) aborted, attempt C (301) of unknown end not there.
    fn txn_run() -> (History, Vec<(Tp, u64, u64)>) {
        let mut h = History::default();
        h.inputs(vec![1, 2]);
        h.txn(1, vec![(1, 101), (2, 102)], TxnEnd::Committed);
        h.txn(1, vec![(1, 201), (2, 202)], TxnEnd::Aborted);
        h.txn(2, vec![(1, 301)], TxnEnd::Unknown);
        (h, vec![out(0, 0, 101), out(0, 2, 102)])
    }

    #[test]
    fn every_planted_transaction_anomaly_is_found() {
        let (h, d) = txn_run();
        assert!(check(&h, &d).is_clean(), "{:?}", check(&h, &d));
        let text = h.to_jsonl();
        assert_eq!(from_jsonl(&text).unwrap().0, h);
        let cases: Vec<(&str, Plant)> = vec![
            ("lost-committed-write", Box::new(|_, d| d.truncate(1))),
            ("aborted-read", Box::new(|_, d| d.push(out(0, 4, 201)))),
            ("torn-transaction", Box::new(|_, d| d.push(out(1, 0, 201)))),
            ("eos-lost", Box::new(|_, d| d.truncate(1))),
            ("eos-duplicate", Box::new(|_, d| d.push(out(1, 0, 301)))),
        ];
        for (kind, plant) in cases {
            let (mut h, mut d) = txn_run();
            plant(&mut h, &mut d);
            let r = check(&h, &d);
            assert!(r.count(kind) >= 1, "{kind} not found: {r:?}");
        }
        // A transaction of unknown end may be there whole.
        let (h, mut d) = txn_run();
        d.retain(|(_, _, v)| *v != 101 && *v != 102);
        d.push(out(1, 0, 301));
        let r = check(&h, &d);
        assert_eq!(r.count("torn-transaction"), 0, "{r:?}");
        assert_eq!(r.count("eos-lost"), 1, "input 2 only: {r:?}");
        assert!(from_jsonl("{\"f\": \"txn\", \"process\": 1, \"writes\": [[1]]}").is_err());
    }
}
