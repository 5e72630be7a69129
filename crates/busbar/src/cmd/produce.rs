//! `busbar produce`: events from arguments or from standard input (one per line), sent in batches.
//! A value that parses as JSON is sent as its JSON text exactly as typed (spacing, key order and
//! number spelling kept: the server stores it byte for byte); anything else as its raw bytes. The
//! text `null` is the 4 bytes `null`, not a tombstone: `--tombstone` sends events without a value
//! (deletes for compacted topics). `--schema` has the server encode each JSON value with a
//! registered schema (Avro, JSON Schema or Protobuf, framed). Prints a summary
//! (`--verbose`: each event's partition and offset first); a progress line on a terminal.

use crate::client::{enc, outln, CliError, CliResult, Client, Output};
use crate::cmd::topic::pairs;
use crate::progress::Progress;
use base64::Engine;
use clap::Args;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::io::BufRead;
use std::time::Instant;

#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    topic: String,
    /// Values to publish; without any, lines are read from standard input.
    values: Vec<String>,
    /// Key of every event (with --key-separator, keys come from each line instead).
    #[arg(short, long)]
    key: Option<String>,
    /// Split each stdin line at the first SEP into key and value.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// A header `name=value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// A fixed partition.
    #[arg(short, long)]
    partition: Option<u32>,
    /// Events per request when reading standard input.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Print each event's partition and offset before the summary (table output).
    #[arg(short, long)]
    verbose: bool,
    /// Send tombstones (no value; a delete on a compacted topic) instead of values: one per key
    /// given with --key, or per stdin line read as a key.
    #[arg(long, conflicts_with_all = ["values", "key_separator"])]
    tombstone: bool,
    /// Encode each value (JSON) with a registered schema before it is stored, framed for
    /// Confluent's deserializers: `latest`, a version number or `id:N` of --subject.
    #[arg(long, conflicts_with = "tombstone")]
    schema: Option<String>,
    /// The subject of --schema (default: TOPIC-value).
    #[arg(long, requires = "schema")]
    subject: Option<String>,
    /// The Protobuf message type of --schema (default: the schema's first message).
    #[arg(long, requires = "schema")]
    message: Option<String>,
}

/// The request path: the topic's events, with the encoding parameters when --schema is given.
fn events_path(a: &ProduceArgs) -> String {
    let mut path = format!("/topics/{}/events", enc(&a.topic));
    if let Some(schema) = &a.schema {
        path.push_str(&format!("?schema={}", enc(schema)));
        for (k, v) in [("subject", &a.subject), ("message", &a.message)] {
            if let Some(v) = v {
                path.push_str(&format!("&{k}={}", enc(v)));
            }
        }
    }
    path
}

/// One event of the request body; its value is the argument's own JSON text.
#[derive(Serialize)]
struct Out<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Val<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    headers: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<u32>,
}

/// A value as typed, or `null` (a tombstone).
#[derive(Serialize)]
#[serde(untagged)]
enum Val<'a> {
    Raw(&'a RawValue),
    Tombstone(()),
}

/// The JSON text of one event: a value that parses as JSON (other than `null`) goes as typed,
/// anything else base64-encoded; `None` is a tombstone.
fn event(
    value: Option<&str>,
    key: Option<&str>,
    headers: &Map<String, Value>,
    partition: Option<u32>,
) -> String {
    let raw = value
        .filter(|v| v.trim() != "null")
        .and_then(|v| serde_json::from_str::<&RawValue>(v.trim()).ok());
    let out = Out {
        value: match value {
            None => Some(Val::Tombstone(())),
            Some(_) => raw.map(Val::Raw),
        },
        value_base64: match (value, raw) {
            (Some(v), None) => Some(base64::engine::general_purpose::STANDARD.encode(v)),
            _ => None,
        },
        key,
        headers,
        partition,
    };
    serde_json::to_string(&out).expect("an event encodes")
}

fn send(c: &Client, path: &str, events: Vec<String>) -> CliResult<Vec<Value>> {
    let body = format!("[{}]", events.join(","));
    let r = c.call("POST", path, Some(("application/json", body.into_bytes())))?;
    Ok(r["offsets"].as_array().cloned().unwrap_or_default())
}

pub fn run(c: &Client, a: ProduceArgs) -> CliResult<()> {
    let headers: Map<String, Value> = pairs(&a.headers, "--header")?
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    if a.batch == 0 {
        return Err(CliError::Usage("--batch must be at least 1".into()));
    }
    let started = Instant::now();
    let path = events_path(&a);
    let mut offsets = Vec::new();
    if a.tombstone && a.key.is_some() {
        let e = event(None, a.key.as_deref(), &headers, a.partition);
        offsets = send(c, &path, vec![e])?;
    } else if !a.values.is_empty() {
        let events = a
            .values
            .iter()
            .map(|v| event(Some(v), a.key.as_deref(), &headers, a.partition))
            .collect();
        offsets = send(c, &path, events)?;
    } else {
        let progress = Progress::new("events produced", true);
        let mut pending = Vec::new();
        for line in std::io::stdin().lock().lines() {
            let line = line.map_err(|e| CliError::Usage(format!("reading standard input: {e}")))?;
            let (key, value) = match &a.key_separator {
                Some(sep) => match line.split_once(sep.as_str()) {
                    Some((k, v)) => (Some(k.to_string()), v.to_string()),
                    None => {
                        return Err(CliError::Usage(format!(
                            "line {:?} has no key separator {sep:?}",
                            line
                        )))
                    }
                },
                None if a.tombstone => (Some(line), String::new()),
                None => (a.key.clone(), line),
            };
            let value = (!a.tombstone).then_some(value.as_str());
            pending.push(event(value, key.as_deref(), &headers, a.partition));
            if pending.len() >= a.batch {
                let sent = send(c, &path, std::mem::take(&mut pending))?;
                progress.add(sent.len() as u64);
                offsets.extend(sent);
            }
        }
        if !pending.is_empty() {
            offsets.extend(send(c, &path, pending)?);
        }
    }
    match c.output {
        Output::Json => outln!("{}", json!({ "offsets": offsets })),
        Output::Table => {
            if a.verbose {
                for o in &offsets {
                    outln!("partition {} offset {}", o["partition"], o["offset"]);
                }
            }
            outln!(
                "produced {} events to {} in {:.1} s",
                offsets.len(),
                a.topic,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}
