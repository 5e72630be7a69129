//! `busbar group list|describe|reset-offsets|delete`.

use crate::client::{cell, enc, outln, print_list, table, CliError, CliResult, Client, Output};
use clap::Subcommand;
use serde_json::{json, Value};

#[derive(Debug, Clone, Subcommand)]
pub enum GroupCmd {
    /// List consumer groups.
    List,
    /// Show a group's members, assignments, committed offsets and lag.
    Describe { group: String },
    /// Move a group's committed offsets (the group must have no members).
    ResetOffsets {
        group: String,
        /// The topic whose committed offsets move.
        #[arg(long)]
        topic: String,
        /// earliest, latest, an offset number, or a time to start from (RFC 3339 or an age: 30s,
        /// 5m, 2h, 1d).
        #[arg(long)]
        to: String,
        /// Only these partitions (repeatable; all when absent).
        #[arg(short, long = "partition")]
        partitions: Vec<u32>,
    },
    /// Delete a group without members and its committed offsets.
    Delete { group: String },
}

fn target(to: &str) -> CliResult<Value> {
    Ok(match to {
        "earliest" | "latest" => json!(to),
        n if n.parse::<u64>().is_ok() => json!({"offset": n.parse::<u64>().unwrap_or(0)}),
        t => match crate::args::time_rfc3339("--to", t) {
            Ok(time) => json!({ "timestamp": time }),
            Err(_) => {
                return Err(CliError::Usage(format!(
                    "--to {t:?} is not earliest, latest, an offset or {}",
                    crate::args::TIME_FORMS
                )))
            }
        },
    })
}

pub fn run(c: &Client, cmd: GroupCmd) -> CliResult<()> {
    match cmd {
        GroupCmd::List => {
            let v = c.call("GET", "/groups", None)?;
            print_list(c, &v, "groups", &[("group", "group"), ("state", "state")])?;
        }
        GroupCmd::Describe { group } => {
            let d = c.get(&format!("/groups/{}", enc(&group)), &["group", "members"])?;
            if c.output == Output::Json {
                outln!("{d}");
                return Ok(());
            }
            outln!(
                "group {}  state {}  generation {}  lag {}",
                cell(&d["group"]),
                cell(&d["state"]),
                cell(&d["generation"]),
                cell(&d["lag"])
            );
            let members = d["members"].as_array().cloned().unwrap_or_default();
            let rows = members
                .iter()
                .map(|m| {
                    vec![
                        cell(&m["member_id"]),
                        cell(&m["client_host"]),
                        m["assignment"].to_string(),
                    ]
                })
                .collect();
            table(&["member", "host", "assignment"], rows);
            outln!();
            let offsets = d["offsets"].as_array().cloned().unwrap_or_default();
            let rows = offsets
                .iter()
                .map(|o| {
                    vec![
                        cell(&o["topic"]),
                        cell(&o["partition"]),
                        cell(&o["committed_offset"]),
                        cell(&o["high_watermark"]),
                        cell(&o["lag"]),
                    ]
                })
                .collect();
            table(
                &["topic", "partition", "committed", "high watermark", "lag"],
                rows,
            );
        }
        GroupCmd::ResetOffsets {
            group,
            topic,
            to,
            partitions,
        } => {
            let mut body = json!({"topic": topic, "to": target(&to)?});
            if !partitions.is_empty() {
                body["partitions"] = json!(partitions);
            }
            let v = c.json(
                "POST",
                &format!("/groups/{}/offsets/reset", enc(&group)),
                &body,
            )?;
            print_list(
                c,
                &v,
                "offsets",
                &[
                    ("topic", "topic"),
                    ("partition", "partition"),
                    ("new offset", "offset"),
                ],
            )?;
        }
        GroupCmd::Delete { group } => {
            c.call("DELETE", &format!("/groups/{}", enc(&group)), None)?;
            if c.output == Output::Json {
                outln!("{}", json!({"deleted": group}));
            } else {
                outln!("deleted group {group}");
            }
        }
    }
    Ok(())
}
