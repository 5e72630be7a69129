//! `busbar subscription create|update|list|get|pause|resume|reset|delete|replay|replays|cancel-replay`: the same fields
//! as `POST /subscriptions`, from flags, from a JSON file (`--file`), or both (flags win). `update`
//! sends only what it is given (`PATCH`, a JSON merge patch), so the other fields keep their
//! values; what `get --output json` prints is a valid `--file` (its read-only fields are checked
//! by the server and dropped). What `--file` holds is sent as it is, wrong types included, so the
//! server's error (exit 1) names the field instead of the CLI dropping it.

use crate::client::{cell, enc, outln, print_list, CliError, CliResult, Client, Output};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Subcommand)]
pub enum SubscriptionCmd {
    /// Create a subscription.
    Create(SpecArgs),
    /// Change the fields given by flags or --file; the others keep their values (positions and
    /// retry state are kept). `get --output json` output is a valid --file.
    Update(SpecArgs),
    /// List subscriptions with state, counters and lag.
    List,
    /// Show one subscription.
    Get { name: String },
    /// Stop delivering (positions kept).
    Pause { name: String },
    /// Start delivering again.
    Resume { name: String },
    /// Move the subscription's positions (its retry state on the moved partitions is dropped).
    Reset {
        name: String,
        /// earliest, latest or a time: RFC 3339 or an age (30s, 5m, 2h, 1d) (every source
        /// partition).
        #[arg(long, conflicts_with = "offsets", required_unless_present = "offsets")]
        to: Option<String>,
        /// TOPIC:PARTITION:OFFSET for one partition (repeatable).
        #[arg(long = "offset")]
        offsets: Vec<String>,
    },
    /// Delete a subscription, its positions and retry state.
    Delete { name: String },
    /// Re-deliver a time range of the sources through the subscription, marked as a replay.
    ///
    /// A stopped, interrupted or failed run started again with the same --run, --from and --to
    /// goes on where it stopped (if the subscription's spec is unchanged; after a change it
    /// starts over from --from); another request under a finished run's name replaces it.
    Replay {
        name: String,
        /// Name of the run.
        #[arg(long = "run")]
        run: String,
        /// Start, inclusive: RFC 3339, milliseconds since the epoch or an age (30s, 5m, 2h, 1d).
        #[arg(long)]
        from: String,
        /// End, exclusive: as --from (`0s` is now).
        #[arg(long)]
        to: String,
        /// Most events a second.
        #[arg(long)]
        rate: Option<u32>,
    },
    /// Show replay runs (or one run).
    Replays {
        name: String,
        /// Only this run.
        run: Option<String>,
    },
    /// Stop a running replay run; shows the run as it ended (started again with the same
    /// --run, --from and --to, it goes on where it stopped).
    CancelReplay {
        name: String,
        /// The run to stop.
        run: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct SpecArgs {
    /// Subscription name (may come from --file instead).
    pub name: Option<String>,
    /// A JSON spec (text or @FILE) to start from; on update, the fields to change (read-only
    /// fields of `get --output json`, such as state and counters, must stay as read).
    #[arg(long)]
    pub file: Option<String>,
    /// Source topic (repeatable).
    #[arg(long = "source")]
    pub sources: Vec<String>,
    /// latest, earliest or an RFC 3339 time (default latest on create).
    #[arg(long)]
    pub start: Option<String>,
    /// Event pattern (JSON text or @FILE).
    #[arg(long)]
    pub pattern: Option<String>,
    /// Input transform {"paths": {...}, "template": "..."} (JSON text or @FILE).
    #[arg(long)]
    pub transform: Option<String>,
    /// Deliver to this topic.
    #[arg(long, conflicts_with = "to_url")]
    pub to_topic: Option<String>,
    /// Deliver to this HTTP endpoint (CloudEvents).
    #[arg(long)]
    pub to_url: Option<String>,
    /// HTTP target header NAME=VALUE (repeatable; with --to-url).
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// binary or structured (with --to-url; default binary on create).
    #[arg(long)]
    pub mode: Option<String>,
    /// Deliveries tried before an event is dead-lettered (default 20 on create).
    #[arg(long)]
    pub max_attempts: Option<u64>,
    /// Wait before the first retry, doubling up to --backoff-max-ms, milliseconds (default 1000 on
    /// create).
    #[arg(long)]
    pub backoff_initial_ms: Option<u64>,
    /// Longest wait between retries, milliseconds (default 60000 on create).
    #[arg(long)]
    pub backoff_max_ms: Option<u64>,
    /// Dead-letter an event still undelivered this long after it was read, seconds (default 86400
    /// on create).
    #[arg(long)]
    pub max_age_s: Option<u64>,
    /// One HTTP delivery attempt may take this long, milliseconds (default 5000 on create).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// key (each key's events in order) or none (default key on create).
    #[arg(long)]
    pub ordering: Option<String>,
    /// Deliveries in flight at once (default 16 on create).
    #[arg(long)]
    pub concurrency: Option<u64>,
    /// Topic that takes events whose delivery failed for good (default: none, they are dropped
    /// and counted).
    #[arg(long)]
    pub dead_letter_topic: Option<String>,
}

/// JSON text or `@FILE`.
pub fn json_arg(arg: &str, what: &str) -> CliResult<Value> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("--{what} {path}: {e}")))?,
        None => arg.to_string(),
    };
    serde_json::from_str(&text).map_err(|e| CliError::Usage(format!("--{what} is not JSON: {e}")))
}

impl SpecArgs {
    fn spec(&self) -> CliResult<Value> {
        if self.to_url.is_none() && (!self.headers.is_empty() || self.mode.is_some()) {
            // They describe an HTTP target: alone they would be dropped, not applied.
            return Err(CliError::Usage(
                "--header and --mode need --to-url (they describe an HTTP target)".into(),
            ));
        }
        let mut m = match &self.file {
            Some(f) => match json_arg(f, "file")? {
                Value::Object(m) => m,
                _ => return Err(CliError::Usage("--file must hold a JSON object".into())),
            },
            None => Map::new(),
        };
        if let Some(n) = &self.name {
            m.insert("name".into(), json!(n));
        }
        if !self.sources.is_empty() {
            m.insert("sources".into(), json!(self.sources));
        }
        if let Some(s) = &self.start {
            m.insert("start".into(), json!(s));
        }
        if let Some(p) = &self.pattern {
            m.insert("pattern".into(), json_arg(p, "pattern")?);
        }
        if let Some(t) = &self.transform {
            m.insert("transform".into(), json_arg(t, "transform")?);
        }
        if let Some(t) = &self.to_topic {
            m.insert("target".into(), json!({ "topic": t }));
        }
        if let Some(u) = &self.to_url {
            let mut target = json!({ "url": u });
            let mut headers = Map::new();
            for h in &self.headers {
                let (k, v) = h
                    .split_once('=')
                    .ok_or_else(|| CliError::Usage(format!("--header {h:?} must be NAME=VALUE")))?;
                headers.insert(k.into(), json!(v));
            }
            if !headers.is_empty() {
                target["headers"] = Value::Object(headers);
            }
            if let Some(mode) = &self.mode {
                target["mode"] = json!(mode);
            }
            m.insert("target".into(), target);
        }
        self.add_delivery(&mut m)?;
        if let Some(d) = &self.dead_letter_topic {
            m.insert("dead_letter_topic".into(), json!(d));
        }
        Ok(Value::Object(m))
    }

    /// The delivery flags merged into `m`'s `delivery` (from `--file`). A `delivery` that is not
    /// an object is sent as it is for the server to refuse, naming it; flags cannot be merged
    /// into it, so both together are a usage error.
    fn add_delivery(&self, m: &mut Map<String, Value>) -> CliResult<()> {
        let mut flags = Map::new();
        for (k, v) in [
            ("max_attempts", self.max_attempts),
            ("backoff_initial_ms", self.backoff_initial_ms),
            ("backoff_max_ms", self.backoff_max_ms),
            ("max_age_s", self.max_age_s),
            ("timeout_ms", self.timeout_ms),
            ("concurrency", self.concurrency),
        ] {
            if let Some(v) = v {
                flags.insert(k.into(), json!(v));
            }
        }
        if let Some(o) = &self.ordering {
            flags.insert("ordering".into(), json!(o));
        }
        if flags.is_empty() {
            return Ok(());
        }
        match m.entry("delivery").or_insert_with(|| json!({})) {
            Value::Object(d) => d.extend(flags),
            other => {
                return Err(CliError::Usage(format!(
                    "--file's delivery is {other}, not an object: the delivery flags cannot be \
                     merged into it"
                )))
            }
        }
        Ok(())
    }
}

fn show(c: &Client, v: &Value) {
    if c.output == Output::Json {
        outln!("{v}");
        return;
    }
    let counters = &v["counters"];
    outln!(
        "subscription {}  state {}  lag {}  retrying {}",
        cell(&v["name"]),
        cell(&v["state"]),
        cell(&v["lag"]),
        cell(&v["retrying"])
    );
    outln!(
        "sources {}  target {}  delivery {}",
        v["sources"],
        v["target"],
        cell(&v["guarantee"]).replace('_', "-")
    );
    if let Some(file) = v["config_file"].as_str() {
        outln!("declared in {file} (change or delete it there)");
    }
    let last = &v["last_failure"];
    if last.is_object() {
        let status = last["status"]
            .as_u64()
            .map(|s| format!(" {s}"))
            .unwrap_or_default();
        outln!(
            "last failure {}{status} at {}: {}  (an event still waits for another attempt)",
            cell(&last["reason"]),
            cell(&last["at"]),
            cell(&last["error"])
        );
    }
    outln!(
        "matched {}  delivered {}  retried {}  dead-lettered {}  dropped {}",
        cell(&counters["matched"]),
        cell(&counters["delivered"]),
        cell(&counters["retried"]),
        cell(&counters["dead_lettered"]),
        cell(&counters["dropped"])
    );
}

/// Columns of replay runs.
const REPLAY_COLUMNS: &[(&str, &str)] = &[
    ("name", "name"),
    ("state", "state"),
    ("from", "from"),
    ("to", "to"),
    ("rate", "rate"),
    ("matched", "matched"),
    ("delivered", "delivered"),
    ("retried", "retried"),
    ("error", "error"),
];

/// One replay run: as answered (JSON) or as a one-row table.
fn show_run(c: &Client, run: &Value) -> CliResult<()> {
    if c.output == Output::Json {
        outln!("{run}");
        return Ok(());
    }
    print_list(c, &json!({ "replays": [run] }), "replays", REPLAY_COLUMNS)
}

/// The body of `POST /subscriptions/{name}/reset` from `--to` or `--offset` flags.
fn reset_body(to: Option<&str>, offsets: &[String]) -> CliResult<Value> {
    match to {
        Some("earliest" | "latest") => Ok(json!({ "to": to })),
        Some(t) => match crate::args::time_rfc3339("--to", t) {
            Ok(time) => Ok(json!({"to": "time", "time": time})),
            Err(_) => Err(CliError::Usage(format!(
                "--to {t:?} is not earliest, latest or {}",
                crate::args::TIME_FORMS
            ))),
        },
        None => {
            let parsed = offsets.iter().map(|o| parse_offset(o));
            let list = parsed.collect::<CliResult<Vec<Value>>>()?;
            Ok(json!({"to": "offsets", "offsets": list}))
        }
    }
}

/// `TOPIC:PARTITION:OFFSET` (the topic may hold ':'; the last two fields are numbers).
fn parse_offset(arg: &str) -> CliResult<Value> {
    let bad = || CliError::Usage(format!("--offset {arg:?} is not TOPIC:PARTITION:OFFSET"));
    let mut it = arg.rsplitn(3, ':');
    let (offset, partition, topic) = (it.next(), it.next(), it.next());
    let (Some(o), Some(p), Some(t)) = (offset, partition, topic) else {
        return Err(bad());
    };
    let (p, o) = (p.parse::<u32>(), o.parse::<u64>());
    match (p, o) {
        (Ok(p), Ok(o)) if !t.is_empty() => Ok(json!({"topic": t, "partition": p, "offset": o})),
        _ => Err(bad()),
    }
}

pub fn run(c: &Client, cmd: SubscriptionCmd) -> CliResult<()> {
    let path = |n: &str| format!("/subscriptions/{}", enc(n));
    match cmd {
        SubscriptionCmd::Create(a) => show(c, &c.json("POST", "/subscriptions", &a.spec()?)?),
        SubscriptionCmd::Update(a) => {
            let spec = a.spec()?;
            let name = spec["name"]
                .as_str()
                .ok_or_else(|| CliError::Usage("update needs the subscription name".into()))?
                .to_string();
            show(c, &c.json("PATCH", &path(&name), &spec)?);
        }
        SubscriptionCmd::List => {
            let v = c.call("GET", "/subscriptions", None)?;
            print_list(
                c,
                &v,
                "subscriptions",
                &[
                    ("name", "name"),
                    ("state", "state"),
                    ("lag", "lag"),
                    ("retrying", "retrying"),
                    ("matched", "counters.matched"),
                    ("delivered", "counters.delivered"),
                    ("retried", "counters.retried"),
                    ("dead-lettered", "counters.dead_lettered"),
                    ("dropped", "counters.dropped"),
                ],
            )?;
        }
        SubscriptionCmd::Get { name } => show(c, &c.get(&path(&name), &["name", "state"])?),
        SubscriptionCmd::Pause { name } => show(
            c,
            &c.json("POST", &format!("{}/pause", path(&name)), &json!({}))?,
        ),
        SubscriptionCmd::Resume { name } => show(
            c,
            &c.json("POST", &format!("{}/resume", path(&name)), &json!({}))?,
        ),
        SubscriptionCmd::Reset { name, to, offsets } => {
            let body = reset_body(to.as_deref(), &offsets)?;
            let v = c.json("POST", &format!("{}/reset", path(&name)), &body)?;
            let cols = [
                ("topic", "topic"),
                ("partition", "partition"),
                ("new offset", "offset"),
            ];
            print_list(c, &v, "positions", &cols)?;
        }
        SubscriptionCmd::Delete { name } => {
            c.call("DELETE", &path(&name), None)?;
            match c.output {
                Output::Json => outln!("{}", json!({ "deleted": name })),
                Output::Table => outln!("deleted subscription {name}"),
            }
        }
        SubscriptionCmd::Replay {
            name,
            run,
            from,
            to,
            rate,
        } => {
            let from = crate::args::time_rfc3339("--from", &from)?;
            let to = crate::args::time_rfc3339("--to", &to)?;
            let mut body = json!({"name": run, "from": from, "to": to});
            if let Some(r) = rate {
                body["rate"] = json!(r);
            }
            let v = c.json("POST", &format!("{}/replays", path(&name)), &body)?;
            show_run(c, &v)?;
        }
        SubscriptionCmd::Replays { name, run } => match run {
            Some(r) => show_run(
                c,
                &c.call("GET", &format!("{}/replays/{}", path(&name), enc(&r)), None)?,
            )?,
            None => {
                let v = c.call("GET", &format!("{}/replays", path(&name)), None)?;
                print_list(c, &v, "replays", REPLAY_COLUMNS)?;
            }
        },
        SubscriptionCmd::CancelReplay { name, run } => show_run(
            c,
            &c.call(
                "DELETE",
                &format!("{}/replays/{}", path(&name), enc(&run)),
                None,
            )?,
        )?,
    }
    Ok(())
}
