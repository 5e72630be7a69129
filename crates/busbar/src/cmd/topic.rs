//! `busbar topic create|list|describe|alter|delete|delete-records`.

use crate::client::{cell, enc, outln, print_list, table, CliError, CliResult, Client, Output};
use clap::Subcommand;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Subcommand)]
pub enum TopicCmd {
    /// Create a topic.
    Create {
        name: String,
        /// Partition count (the server default when absent).
        #[arg(short, long)]
        partitions: Option<i64>,
        /// A topic config, `key=value` (repeatable), e.g. `-c retention.ms=3600000`.
        #[arg(short = 'c', long = "config")]
        configs: Vec<String>,
    },
    /// List topics.
    List,
    /// Show a topic's partitions (offsets, sizes) and configs.
    Describe { name: String },
    /// Change configs or grow the partition count.
    Alter {
        name: String,
        /// Grow to this many partitions (unchanged when absent; never shrinks).
        #[arg(short, long)]
        partitions: Option<i64>,
        /// Set a config, `key=value` (repeatable).
        #[arg(short = 'c', long = "config")]
        configs: Vec<String>,
        /// Return a config to its default (repeatable).
        #[arg(long = "reset-config")]
        reset: Vec<String>,
    },
    /// Delete a topic and all its events.
    Delete { name: String },
    /// Delete a partition's events before an offset (its log start moves there; Kafka's
    /// DeleteRecords): retention by hand, e.g. after a poison event or to free disk.
    DeleteRecords {
        name: String,
        /// The partition.
        #[arg(short, long)]
        partition: i64,
        /// Events before this offset go; `end` for every event now stored.
        #[arg(long)]
        before: String,
    },
}

pub fn pairs(items: &[String], what: &str) -> CliResult<Vec<(String, String)>> {
    items
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| CliError::Usage(format!("{what} {kv:?} is not key=value")))
        })
        .collect()
}

fn show(c: &Client, d: &Value) {
    if c.output == Output::Json {
        outln!("{d}");
        return;
    }
    outln!("topic {}  id {}", cell(&d["name"]), cell(&d["id"]));
    let rows = d["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            vec![
                cell(&p["partition"]),
                cell(&p["log_start_offset"]),
                cell(&p["high_watermark"]),
                cell(&p["size_bytes"]),
            ]
        })
        .collect();
    table(&["partition", "log start", "high watermark", "bytes"], rows);
    outln!();
    let overrides = d["overrides"].as_object().cloned().unwrap_or_default();
    let rows = d["configs"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            vec![
                k.clone(),
                cell(v),
                if overrides.contains_key(k) {
                    "set".into()
                } else {
                    "default".into()
                },
            ]
        })
        .collect();
    table(&["config", "value", "source"], rows);
}

pub fn run(c: &Client, cmd: TopicCmd) -> CliResult<()> {
    match cmd {
        TopicCmd::Create {
            name,
            partitions,
            configs,
        } => {
            let configs: Map<String, Value> = pairs(&configs, "--config")?
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            let mut body = json!({"name": name, "configs": configs});
            if let Some(p) = partitions {
                body["partitions"] = json!(p);
            }
            let d = c.json("POST", "/topics", &body)?;
            show(c, &d);
        }
        TopicCmd::List => {
            let v = c.call("GET", "/topics", None)?;
            print_list(
                c,
                &v,
                "topics",
                &[("name", "name"), ("partitions", "partitions"), ("id", "id")],
            )?;
        }
        TopicCmd::Describe { name } => show(
            c,
            &c.get(&format!("/topics/{}", enc(&name)), &["name", "partitions"])?,
        ),
        TopicCmd::Alter {
            name,
            partitions,
            configs,
            reset,
        } => {
            let mut changes: Map<String, Value> = pairs(&configs, "--config")?
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            for k in reset {
                changes.insert(k, Value::Null);
            }
            let mut body = json!({ "configs": changes });
            if let Some(p) = partitions {
                body["partitions"] = json!(p);
            }
            show(
                c,
                &c.json("PATCH", &format!("/topics/{}", enc(&name)), &body)?,
            );
        }
        TopicCmd::Delete { name } => {
            c.call("DELETE", &format!("/topics/{}", enc(&name)), None)?;
            if c.output == Output::Json {
                outln!("{}", json!({"deleted": name}));
            } else {
                outln!("deleted topic {name}");
            }
        }
        TopicCmd::DeleteRecords {
            name,
            partition,
            before,
        } => {
            let before_offset: i64 = match before.as_str() {
                "end" => -1,
                n => n.parse().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    CliError::Usage(format!("--before {n:?} is not an offset or `end`"))
                })?,
            };
            let path = format!(
                "/topics/{}/partitions/{partition}/delete-records",
                enc(&name)
            );
            let v = c.json("POST", &path, &json!({ "before_offset": before_offset }))?;
            match c.output {
                Output::Json => outln!("{v}"),
                Output::Table => outln!(
                    "partition {partition} of {name} now starts at offset {}",
                    v["log_start_offset"]
                ),
            }
        }
    }
    Ok(())
}
