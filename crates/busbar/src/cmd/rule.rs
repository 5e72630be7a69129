//! `busbar rule test`: evaluates an event pattern against an event locally (no server needed),
//! with the same engine the server uses. Prints whether it matches; an invalid pattern or event
//! exits 2 with the path of the offending part.

use super::subscription::json_arg;
use crate::client::{outln, CliError, CliResult, Output};
use busbar_rules::Pattern;
use clap::Subcommand;
use serde_json::json;

#[derive(Debug, Clone, Subcommand)]
pub enum RuleCmd {
    /// Does the pattern match the event? Each argument is JSON text or @FILE.
    Test {
        /// The event pattern (EventBridge syntax), JSON text or @FILE.
        #[arg(long)]
        pattern: String,
        /// The event to match, JSON text or @FILE.
        #[arg(long)]
        event: String,
    },
}

pub fn run(output: Output, cmd: RuleCmd) -> CliResult<()> {
    let RuleCmd::Test { pattern, event } = cmd;
    let p = Pattern::parse(&json_arg(&pattern, "pattern")?)
        .map_err(|e| CliError::Usage(format!("invalid pattern: {e}")))?;
    let matched = p.matches(&json_arg(&event, "event")?);
    match output {
        Output::Json => outln!("{}", json!({ "match": matched })),
        Output::Table => outln!("{}", if matched { "match" } else { "no match" }),
    }
    Ok(())
}
