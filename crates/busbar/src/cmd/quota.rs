//! `busbar quota list|set|delete`: Kafka client quotas (`producer_byte_rate`,
//! `consumer_byte_rate` in bytes a second, `request_percentage` of one thread) per user, client id
//! or both, through `/quotas`. An entity is `--entity-user NAME` or `--entity-user-default`,
//! `--entity-client-id ID` or `--entity-client-id-default`, or one of each; the most specific quota
//! applies (Kafka's order).

use crate::client::{cell, outln, table, CliError, CliResult, Client, Output};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Subcommand)]
pub enum QuotaCmd {
    /// List every quota with its entity.
    List,
    /// Set an entity's quotas (replacing the ones it had).
    Set {
        #[command(flatten)]
        entity: EntityArgs,
        /// Produce bytes a second.
        #[arg(long)]
        producer_byte_rate: Option<f64>,
        /// Fetch bytes a second.
        #[arg(long)]
        consumer_byte_rate: Option<f64>,
        /// Percent of one request-handling thread.
        #[arg(long)]
        request_percentage: Option<f64>,
    },
    /// Remove an entity's quotas.
    Delete {
        #[command(flatten)]
        entity: EntityArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct EntityArgs {
    /// The user the quota is for (`--user` is the caller's own, for authentication).
    #[arg(long, conflicts_with = "entity_user_default")]
    entity_user: Option<String>,
    /// Every user without a quota of their own.
    #[arg(long)]
    entity_user_default: bool,
    /// The client id the quota is for.
    #[arg(long, conflicts_with = "entity_client_id_default")]
    entity_client_id: Option<String>,
    /// Every client id without a quota of its own.
    #[arg(long)]
    entity_client_id_default: bool,
}

impl EntityArgs {
    /// The entity as `/quotas` takes it (`null` names the default).
    fn json(&self) -> CliResult<Value> {
        let mut e = Map::new();
        if self.entity_user.is_some() || self.entity_user_default {
            e.insert("user".into(), json!(self.entity_user));
        }
        if self.entity_client_id.is_some() || self.entity_client_id_default {
            e.insert("client-id".into(), json!(self.entity_client_id));
        }
        if e.is_empty() {
            return Err(CliError::Usage(
                "name the entity: --entity-user NAME, --entity-user-default, \
                 --entity-client-id ID or --entity-client-id-default (or a user and a client id)"
                    .into(),
            ));
        }
        Ok(Value::Object(e))
    }
}

/// An entity as one cell: `user=alice client-id=<default>`.
fn entity_cell(e: &Value) -> String {
    let parts: Vec<String> = (e.as_object().into_iter().flatten())
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("<default>")))
        .collect();
    parts.join(" ")
}

fn values_cell(v: &Value) -> String {
    let parts: Vec<String> = (v.as_object().into_iter().flatten())
        .map(|(k, v)| format!("{k}={}", cell(v)))
        .collect();
    parts.join(" ")
}

pub fn run(c: &Client, cmd: QuotaCmd) -> CliResult<()> {
    match cmd {
        QuotaCmd::List => {
            let v = c.call("GET", "/quotas", None)?;
            if c.output == Output::Json {
                outln!("{v}");
                return Ok(());
            }
            let rows = (v["quotas"].as_array().into_iter().flatten())
                .map(|q| vec![entity_cell(&q["entity"]), values_cell(&q["values"])])
                .collect();
            table(&["entity", "quotas"], rows);
        }
        QuotaCmd::Set {
            entity,
            producer_byte_rate,
            consumer_byte_rate,
            request_percentage,
        } => {
            let mut values = Map::new();
            for (k, v) in [
                ("producer_byte_rate", producer_byte_rate),
                ("consumer_byte_rate", consumer_byte_rate),
                ("request_percentage", request_percentage),
            ] {
                if let Some(v) = v {
                    if !v.is_finite() {
                        let flag = k.replace('_', "-");
                        return Err(CliError::Usage(format!("--{flag} {v} is not a number")));
                    }
                    values.insert(k.into(), json!(v));
                }
            }
            if values.is_empty() {
                return Err(CliError::Usage(
                    "give at least one of --producer-byte-rate, --consumer-byte-rate, \
                     --request-percentage (`quota delete` removes them all)"
                        .into(),
                ));
            }
            let body = json!({"entity": entity.json()?, "values": values});
            let v = c.json("PUT", "/quotas", &body)?;
            match c.output {
                Output::Json => outln!("{v}"),
                Output::Table => outln!(
                    "set {} for {}",
                    values_cell(&v["values"]),
                    entity_cell(&v["entity"])
                ),
            }
        }
        QuotaCmd::Delete { entity } => {
            let e = entity.json()?;
            c.json("DELETE", "/quotas", &json!({ "entity": e }))?;
            match c.output {
                Output::Json => outln!("{}", json!({ "deleted": e })),
                Output::Table => outln!("deleted the quotas of {}", entity_cell(&e)),
            }
        }
    }
    Ok(())
}
