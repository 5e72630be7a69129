//! `busbar acl create|list|delete`: Kafka-model ACLs through the HTTP API (`/acls`), with
//! `kafka-acls`-like flags: a resource (`--topic`, `--group`, `--subscription`, `--subject`,
//! `--transactional-id` or `--cluster`), `--principal User:<name>`, `--operation`, `--host`,
//! `--permission` and `--pattern-type`. The server checks every value (400 names a bad one).
//! Needs ALTER on the cluster to change ACLs, DESCRIBE to list them, while auth is on.

use crate::client::{enc, outln, table, CliError, CliResult, Client, Output};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

/// The resource an ACL (or a filter) is about.
#[derive(Debug, Clone, Args)]
#[group(multiple = false)]
pub struct Resource {
    /// A topic (`*`: every topic).
    #[arg(long)]
    topic: Option<String>,
    /// A consumer group.
    #[arg(long)]
    group: Option<String>,
    /// A bus subscription (busbar's SUBSCRIPTION resource).
    #[arg(long)]
    subscription: Option<String>,
    /// A schema registry subject (busbar's SUBJECT resource, e.g. `orders-value`).
    #[arg(long)]
    subject: Option<String>,
    /// A transactional id.
    #[arg(long)]
    transactional_id: Option<String>,
    /// The cluster (`kafka-cluster`).
    #[arg(long)]
    cluster: bool,
}

impl Resource {
    /// (resource_type, resource_name), if one is given.
    fn pair(&self) -> Option<(&'static str, String)> {
        let named = [
            ("TOPIC", &self.topic),
            ("GROUP", &self.group),
            ("SUBSCRIPTION", &self.subscription),
            ("SUBJECT", &self.subject),
            ("TRANSACTIONAL_ID", &self.transactional_id),
        ];
        if self.cluster {
            return Some(("CLUSTER", "kafka-cluster".into()));
        }
        named
            .into_iter()
            .find_map(|(t, n)| n.clone().map(|n| (t, n)))
    }
}

/// The fields an ACL or a filter shares.
#[derive(Debug, Clone, Args)]
pub struct Fields {
    #[command(flatten)]
    resource: Resource,
    /// `User:<name>` (`User:*`: everyone).
    #[arg(long)]
    principal: Option<String>,
    /// `*` or one IP address.
    #[arg(long)]
    host: Option<String>,
    /// LITERAL or PREFIXED (filters: also MATCH and ANY).
    #[arg(long)]
    pattern_type: Option<String>,
    /// ALLOW or DENY (filters: also ANY).
    #[arg(long)]
    permission: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AclCmd {
    /// Add ACLs: one per --operation (e.g. --principal User:alice --operation READ --topic t).
    Create {
        #[command(flatten)]
        fields: Fields,
        /// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS, ALL, ...
        #[arg(long = "operation", required = true)]
        operations: Vec<String>,
    },
    /// List the ACLs passing the filter given (none: every ACL).
    List {
        #[command(flatten)]
        fields: Fields,
        /// Only ACLs of this operation (READ, WRITE, ALL, ...).
        #[arg(long)]
        operation: Option<String>,
    },
    /// Delete the ACLs passing the filter given (at least one flag).
    Delete {
        #[command(flatten)]
        fields: Fields,
        /// Only ACLs of this operation (READ, WRITE, ALL, ...).
        #[arg(long)]
        operation: Option<String>,
    },
}

/// The filter as query parameters.
fn query(f: &Fields, operation: Option<&String>) -> String {
    let mut q: Vec<(&str, String)> = Vec::new();
    if let Some((t, n)) = f.resource.pair() {
        q.push(("resource_type", t.into()));
        q.push(("resource_name", n));
    }
    let rest = [
        ("principal", &f.principal),
        ("host", &f.host),
        ("pattern_type", &f.pattern_type),
        ("permission", &f.permission),
    ];
    q.extend(rest.into_iter().filter_map(|(k, v)| Some((k, v.clone()?))));
    if let Some(o) = operation {
        q.push(("operation", o.clone()));
    }
    let parts: Vec<String> = q.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect();
    match parts.is_empty() {
        true => String::new(),
        false => format!("?{}", parts.join("&")),
    }
}

/// The ACLs to create, one per operation.
fn acls(f: &Fields, operations: &[String]) -> CliResult<Value> {
    let (t, n) = f.resource.pair().ok_or_else(|| {
        CliError::Usage(
            "name a resource: --topic, --group, --subscription, --subject, --transactional-id or --cluster"
                .into(),
        )
    })?;
    let principal = (f.principal.clone())
        .ok_or_else(|| CliError::Usage("--principal User:<name> is required".into()))?;
    let list = operations
        .iter()
        .map(|op| {
            let mut m = Map::new();
            m.insert("resource_type".into(), json!(t));
            m.insert("resource_name".into(), json!(n));
            m.insert("principal".into(), json!(principal));
            m.insert("operation".into(), json!(op));
            let permission = f.permission.clone().unwrap_or_else(|| "ALLOW".into());
            m.insert("permission".into(), json!(permission));
            if let Some(p) = &f.pattern_type {
                m.insert("pattern_type".into(), json!(p));
            }
            if let Some(h) = &f.host {
                m.insert("host".into(), json!(h));
            }
            Value::Object(m)
        })
        .collect();
    Ok(Value::Array(list))
}

fn show(c: &Client, v: &Value, verb: &str) {
    if c.output == Output::Json {
        outln!("{v}");
        return;
    }
    let s = |a: &Value, k: &str| a[k].as_str().unwrap_or("?").to_string();
    let rows: Vec<Vec<String>> = (v["acls"].as_array().into_iter().flatten())
        .map(|a| {
            [
                "principal",
                "host",
                "operation",
                "permission",
                "resource_type",
                "resource_name",
                "pattern_type",
            ]
            .iter()
            .map(|k| s(a, k))
            .collect()
        })
        .collect();
    if !verb.is_empty() {
        outln!("{verb} {} ACLs", rows.len());
    }
    let header = [
        "principal",
        "host",
        "operation",
        "permission",
        "type",
        "name",
        "pattern",
    ];
    table(&header, rows);
}

pub fn run(c: &Client, cmd: AclCmd) -> CliResult<()> {
    match cmd {
        AclCmd::Create { fields, operations } => {
            let v = c.json("POST", "/acls", &acls(&fields, &operations)?)?;
            show(c, &v, "created");
        }
        AclCmd::List { fields, operation } => {
            let v = c.get(
                &format!("/acls{}", query(&fields, operation.as_ref())),
                &["acls"],
            )?;
            show(c, &v, "");
        }
        AclCmd::Delete { fields, operation } => {
            let q = query(&fields, operation.as_ref());
            if q.is_empty() {
                return Err(CliError::Usage(
                    "give at least one filter flag (--permission ANY matches every ACL)".into(),
                ));
            }
            let v = c.call("DELETE", &format!("/acls{q}"), None)?;
            show(c, &v, "deleted");
        }
    }
    Ok(())
}
