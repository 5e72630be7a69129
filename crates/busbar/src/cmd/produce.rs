//! `busbar produce`: events from arguments or from standard input (one per line), sent in batches.
//! A value that parses as JSON is sent as JSON; anything else as its raw bytes. Prints a summary
//! (`--verbose`: each event's partition and offset first); a progress line on a terminal.

use crate::client::{enc, outln, CliError, CliResult, Client, Output};
use crate::cmd::topic::pairs;
use crate::progress::Progress;
use base64::Engine;
use clap::Args;
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
}

fn event(
    value: &str,
    key: Option<&str>,
    headers: &Map<String, Value>,
    partition: Option<u32>,
) -> Value {
    let mut e = Map::new();
    match serde_json::from_str::<Value>(value) {
        Ok(v) => e.insert("value".into(), v),
        Err(_) => e.insert(
            "value_base64".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(value)),
        ),
    };
    if let Some(k) = key {
        e.insert("key".into(), json!(k));
    }
    if !headers.is_empty() {
        e.insert("headers".into(), Value::Object(headers.clone()));
    }
    if let Some(p) = partition {
        e.insert("partition".into(), json!(p));
    }
    Value::Object(e)
}

fn send(c: &Client, topic: &str, events: Vec<Value>) -> CliResult<Vec<Value>> {
    let r = c.json(
        "POST",
        &format!("/topics/{}/events", enc(topic)),
        &Value::Array(events),
    )?;
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
    let mut offsets = Vec::new();
    if !a.values.is_empty() {
        let events = a
            .values
            .iter()
            .map(|v| event(v, a.key.as_deref(), &headers, a.partition))
            .collect();
        offsets = send(c, &a.topic, events)?;
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
                None => (a.key.clone(), line),
            };
            pending.push(event(&value, key.as_deref(), &headers, a.partition));
            if pending.len() >= a.batch {
                let sent = send(c, &a.topic, std::mem::take(&mut pending))?;
                progress.add(sent.len() as u64);
                offsets.extend(sent);
            }
        }
        if !pending.is_empty() {
            offsets.extend(send(c, &a.topic, pending)?);
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
