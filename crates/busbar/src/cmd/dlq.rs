//! `busbar dlq list|show|redrive`: dead letters in a dead-letter topic, filtered by subscription,
//! reason, partition and offsets; redrive sends them back through their subscriptions, once per
//! letter unless forced. `--output json` prints the server's JSON as it was sent (values keep
//! their text: `1e3` stays `1e3`), as `consume` does.

use crate::client::{enc, outln, print_list, write_raw, CliError, CliResult, Client, Output};
use clap::{Args, Subcommand};
use serde_json::value::RawValue;
use serde_json::{json, Value};

#[derive(Debug, Clone, Subcommand)]
pub enum DlqCmd {
    /// List dead letters.
    List {
        topic: String,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Show one dead letter with its event.
    Show {
        topic: String,
        partition: u32,
        offset: u64,
    },
    /// Deliver dead letters again through the subscriptions that dead-lettered them (letters
    /// redriven before are skipped unless --force).
    Redrive {
        topic: String,
        #[command(flatten)]
        filter: FilterArgs,
        /// Redrive letters that were redriven before too.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Clone, Args)]
pub struct FilterArgs {
    /// Only letters of this subscription (all when absent).
    #[arg(long)]
    pub subscription: Option<String>,
    /// A reason (http_status, timeout, ...) or an exhausted condition (max_attempts, ...).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only this partition of the dead-letter topic (all when absent).
    #[arg(long)]
    pub partition: Option<u32>,
    /// Only letters at or after this offset (from the start when absent).
    #[arg(long)]
    pub from_offset: Option<u64>,
    /// Only letters before this offset (to the end when absent).
    #[arg(long)]
    pub to_offset: Option<u64>,
    /// At most this many letters (default: list 100, redrive 10000; at most 10000).
    #[arg(long)]
    pub limit: Option<u64>,
}

impl FilterArgs {
    fn json(&self) -> Value {
        let mut v = json!({});
        let mut put = |k: &str, x: Value| {
            if !x.is_null() {
                v[k] = x;
            }
        };
        put("subscription", json!(self.subscription));
        put("reason", json!(self.reason));
        put("partition", json!(self.partition));
        put("from_offset", json!(self.from_offset));
        put("to_offset", json!(self.to_offset));
        put("limit", json!(self.limit));
        v
    }

    fn query(&self) -> String {
        let v = self.json();
        let parts: Vec<String> = v
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, x)| match x {
                Value::String(s) => format!("{k}={}", enc(s)),
                other => format!("{k}={other}"),
            })
            .collect();
        parts.join("&")
    }
}

const COLUMNS: &[(&str, &str)] = &[
    ("partition", "partition"),
    ("offset", "offset"),
    ("subscription", "subscription"),
    ("reason", "reason"),
    ("exhausted", "exhausted"),
    ("status", "status"),
    ("attempts", "attempts"),
    ("source_topic", "source_topic"),
    ("source_partition", "source_partition"),
    ("source_offset", "source_offset"),
    ("redriven", "redriven_at"),
    ("error", "error"),
];

pub fn run(c: &Client, cmd: DlqCmd) -> CliResult<()> {
    match cmd {
        DlqCmd::List { topic, filter } => {
            let q = format!("/dead-letters/{}?{}", enc(&topic), filter.query());
            let (v, text) = c.call_text("GET", &q, None)?;
            if c.output == Output::Json {
                // The letters as the server wrote them: a parsed value would turn 1e3 into 1000.0.
                c.raw_items(&q, &text, "dead_letters")?;
                let raw: &RawValue = serde_json::from_str(&text).expect("parsed by raw_items");
                return write_raw(raw);
            }
            print_list(c, &v, "dead_letters", COLUMNS)?;
        }
        DlqCmd::Show {
            topic,
            partition,
            offset,
        } => {
            let q = format!(
                "/dead-letters/{}?partition={partition}&from_offset={offset}&to_offset={}",
                enc(&topic),
                offset + 1
            );
            let (v, text) = c.get_text(&q, &["dead_letters"])?;
            let letters = c.raw_items(&q, &text, "dead_letters")?;
            let (Some(d), Some(raw)) = (v["dead_letters"].get(0), letters.first()) else {
                return Err(CliError::Refused(format!(
                    "no dead letter at {topic} partition {partition} offset {offset}"
                )));
            };
            if c.output == Output::Json {
                write_raw(raw)?;
            } else {
                outln!("{}", serde_json::to_string_pretty(d).unwrap_or_default());
            }
        }
        DlqCmd::Redrive {
            topic,
            filter,
            force,
        } => {
            let mut body = filter.json();
            if force {
                body["force"] = json!(true);
            }
            let path = format!("/dead-letters/{}/redrive", enc(&topic));
            let v = c.json("POST", &path, &body)?;
            if c.output == Output::Json {
                outln!("{v}");
            } else {
                outln!("redriven {}", v["redriven"]);
                if v["skipped"].as_u64().is_some_and(|n| n > 0) {
                    outln!(
                        "skipped {} (redriven before; --force to send them again)",
                        v["skipped"]
                    );
                }
                if v["no_subscription"].as_u64().is_some_and(|n| n > 0) {
                    outln!(
                        "left {} whose subscription was deleted",
                        v["no_subscription"]
                    );
                }
            }
        }
    }
    Ok(())
}
