//! `busbar consume`: read a topic's partitions from the beginning (like `kcat -o beginning`), the
//! end (`--start latest`), an offset or a time; with `--follow`, keep waiting for new events. JSON
//! values print as JSON, other bytes as text; `--output json` prints each event exactly as the
//! server answered it (one per line).
//! With `--group` the member lives on the server (an HTTP consumer instance), so a stopping signal
//! is caught and the instance deleted before exit: a member left behind would hold its partitions
//! until the server's idle timeout. Committed positions never pass what was printed.
//! Into a file or pipe with stderr on a terminal, a progress line counts the events read.

use crate::client::{enc, write_line, write_raw, CliError, CliResult, Client, Output};
use crate::progress::Progress;
use base64::Engine;
use clap::Args;
use serde_json::value::RawValue;
use serde_json::Value;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    topic: String,
    /// Only this partition (all partitions when absent).
    #[arg(short, long)]
    partition: Option<u32>,
    /// Start at this offset (needs --partition).
    #[arg(long, conflicts_with = "time")]
    offset: Option<u64>,
    /// Start at the first event at or after this time: RFC 3339, milliseconds since the epoch,
    /// or an age (30s, 5m, 2h, 1d: that long ago).
    #[arg(long)]
    time: Option<String>,
    /// Stop after this many events.
    #[arg(short = 'n', long)]
    limit: Option<usize>,
    /// Keep waiting for new events (until --limit or Ctrl-C).
    #[arg(short, long)]
    follow: bool,
    /// Print keys too (table output).
    #[arg(long)]
    print_key: bool,
    /// Consume as a member of this consumer group (partitions shared with its other members,
    /// positions committed after each batch is printed).
    ///
    /// Joining a group that has no members yet waits the server's
    /// broker.group_initial_rebalance_delay_ms (default 3000) for others to join; on a terminal
    /// the command says "joining group NAME…" meanwhile.
    ///
    /// Stopped by SIGINT (Ctrl-C), SIGTERM or SIGHUP, the command leaves the group before it exits,
    /// so the group's other or next members get its partitions at once, and exits with 128 + the
    /// signal's number (130, 143, 129). Events fetched but not printed when the signal arrives are
    /// not committed: the group's next member gets them. A second signal exits at once without
    /// leaving (the server then drops the member after its consumer idle timeout).
    #[arg(short, long, conflicts_with_all = ["partition", "offset", "time"])]
    group: Option<String>,
    /// Where to start: earliest, the beginning (like kcat -o beginning), or latest, only events
    /// that arrive after the command starts. With --group, only on partitions the group has no
    /// committed offset for. Consumers that live on the server (HTTP consumer instances, event
    /// streams, subscriptions) start at latest instead, as Kafka clients do.
    #[arg(long, default_value = "earliest", value_parser = ["earliest", "latest"],
          conflicts_with_all = ["offset", "time"])]
    start: String,
}

/// The reads' `encoding`: table output asks for text, so a value prints exactly as stored (JSON
/// as it was sent, text as is); binary comes as base64 and prints lossily.
fn encoding(c: &Client) -> &'static str {
    match c.output {
        Output::Table => "&encoding=utf8",
        Output::Json => "",
    }
}

fn text_of(e: &Value, field: &str) -> String {
    if let Some(b) = e[format!("{field}_base64")].as_str() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b)
            .unwrap_or_default();
        return String::from_utf8_lossy(&raw).into_owned();
    }
    match &e[field] {
        Value::Null => "null".into(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// Prints one event (`raw`: its text as the server sent it, which `--output json` prints as it is,
/// so `1e3` stays `1e3`); a closed output is an error, so a group member still leaves its group.
fn print(c: &Client, e: &Value, raw: &RawValue, with_key: bool) -> CliResult<()> {
    match c.output {
        Output::Json => write_raw(raw),
        Output::Table if with_key => write_line(format_args!(
            "{}\t{}",
            text_of(e, "key"),
            text_of(e, "value")
        )),
        Output::Table => write_line(format_args!("{}", text_of(e, "value"))),
    }
}

/// Progress of the events read, shown when they go to a file or pipe (on a terminal the events
/// themselves show it).
fn read_progress() -> Progress {
    use std::io::IsTerminal;
    Progress::new("events read", !std::io::stdout().is_terminal())
}

/// The stopping signals (SIGHUP, SIGINT, SIGTERM), caught from `catch` on by a thread of their own
/// instead of ending the process, so the command can clean up; a second one ends it at once with
/// 128 + its number.
struct Signals {
    /// The number of the first signal received; 0 before.
    got: Arc<AtomicI32>,
}

impl Signals {
    fn catch() -> std::io::Result<Signals> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        // Registered here, before returning, so no signal between `catch` and the thread's start
        // is missed.
        let (mut hup, mut int, mut term) = {
            let _in_rt = rt.enter();
            (
                signal(SignalKind::hangup())?,
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            )
        };
        let got = Arc::new(AtomicI32::new(0));
        let seen = got.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                rt.block_on(async move {
                    loop {
                        let kind = tokio::select! {
                            _ = hup.recv() => SignalKind::hangup(),
                            _ = int.recv() => SignalKind::interrupt(),
                            _ = term.recv() => SignalKind::terminate(),
                        };
                        let n = kind.as_raw_value();
                        if seen.swap(n, Ordering::SeqCst) != 0 {
                            std::process::exit(128 + n);
                        }
                    }
                })
            })?;
        Ok(Signals { got })
    }

    /// A stand-in when signals cannot be caught: they keep their default action.
    fn uncaught() -> Signals {
        Signals {
            got: Arc::new(AtomicI32::new(0)),
        }
    }

    fn received(&self) -> Option<i32> {
        match self.got.load(Ordering::SeqCst) {
            0 => None,
            n => Some(n),
        }
    }
}

fn signal_name(n: i32) -> String {
    match n {
        n if n == SignalKind::hangup().as_raw_value() => "SIGHUP".into(),
        n if n == SignalKind::interrupt().as_raw_value() => "SIGINT".into(),
        n if n == SignalKind::terminate().as_raw_value() => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

fn run_group(c: &Client, a: &ConsumeArgs, group: &str) -> CliResult<()> {
    // Caught before joining: a signal during the join still leaves once the join is answered.
    let signals = Signals::catch().unwrap_or_else(|e| {
        eprintln!(
            "busbar: warning: cannot catch signals ({e}); a signal will leave this member in \
             group {group:?} until the server's consumer idle timeout"
        );
        Signals::uncaught()
    });
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!("joining group {group}…");
    }
    let created = c.json(
        "POST",
        &format!("/groups/{}/consumers", enc(group)),
        &serde_json::json!({"topics": [a.topic], "start": a.start, "client_id": "busbar-cli"}),
    )?;
    let created = c.expect(created, "/groups/{group}/consumers", &["consumer_id"])?;
    let id = created["consumer_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let base = format!("/groups/{}/consumers/{}", enc(group), enc(&id));
    let stopped = |signal| CliError::Stopped {
        signal,
        message: String::new(),
    };
    let result = (|| {
        let limit = a.limit.unwrap_or(usize::MAX);
        let mut printed = 0;
        let progress = read_progress();
        loop {
            if let Some(n) = signals.received() {
                return Err(stopped(n));
            }
            let want = (limit - printed).min(500);
            let path = format!("{base}/events?max={want}&wait_ms=1000{}", encoding(c));
            let (r, text) = c.get_text(&path, &["events"])?;
            // A batch that arrives after the signal is neither printed nor committed.
            if let Some(n) = signals.received() {
                return Err(stopped(n));
            }
            let events = r["events"].as_array().cloned().unwrap_or_default();
            let raw = c.raw_items(&path, &text, "events")?;
            for (e, raw) in events.iter().zip(raw) {
                print(c, e, raw, a.print_key)?;
            }
            printed += events.len();
            progress.add(events.len() as u64);
            if !events.is_empty() {
                c.call(
                    "POST",
                    &format!("{base}/commit"),
                    Some(("application/json", Vec::new())),
                )?;
            }
            if printed >= limit || (events.is_empty() && !a.follow) {
                return Ok(());
            }
        }
    })();
    let left = c.call("DELETE", &base, None);
    match result {
        Err(CliError::Stopped { signal, .. }) => {
            let name = signal_name(signal);
            let message = match left {
                Ok(_) => format!(
                    "stopped by {name}: left group {group:?}, positions committed up to the \
                     last event printed"
                ),
                Err(e) => format!(
                    "stopped by {name}: could not leave group {group:?} ({e}); its member keeps \
                     its partitions until the server's consumer idle timeout"
                ),
            };
            Err(CliError::Stopped { signal, message })
        }
        other => other,
    }
}

pub fn run(c: &Client, a: ConsumeArgs) -> CliResult<()> {
    if let Some(g) = &a.group {
        return run_group(c, &a, g);
    }
    if a.offset.is_some() && a.partition.is_none() {
        return Err(CliError::Usage("--offset needs --partition".into()));
    }
    let time = match &a.time {
        Some(t) => Some(crate::args::time_ms("--time", t)?),
        None => None,
    };
    let topic = c.get(&format!("/topics/{}", enc(&a.topic)), &["partitions"])?;
    let count = topic["partitions"].as_array().map_or(0, Vec::len) as u32;
    let partitions: Vec<u32> = match a.partition {
        Some(p) => vec![p],
        None => (0..count).collect(),
    };
    // Next offset per partition; `None` until the first read decides it.
    let mut next: Vec<Option<u64>> = partitions.iter().map(|_| a.offset).collect();
    if a.start == "latest" {
        let list = topic["partitions"].as_array().cloned().unwrap_or_default();
        let end = |p: u32| {
            let found = list
                .iter()
                .find(|d| d["partition"].as_u64() == Some(p.into()));
            found.and_then(|d| d["high_watermark"].as_u64())
        };
        next = partitions.iter().map(|p| end(*p)).collect();
    }
    let mut printed = 0usize;
    let limit = a.limit.unwrap_or(usize::MAX);
    let progress = read_progress();
    loop {
        let mut got_any = false;
        for (i, p) in partitions.iter().enumerate() {
            let want = (limit - printed).min(1000);
            let wait = if a.follow && partitions.len() == 1 {
                1000
            } else {
                0
            };
            let from = match (next[i], time) {
                (Some(o), _) => format!("offset={o}"),
                (None, Some(t)) => format!("timestamp={t}"),
                (None, None) => String::new(),
            };
            let path = format!(
                "/topics/{}/partitions/{p}/events?{from}&limit={want}&wait_ms={wait}{}",
                enc(&a.topic),
                encoding(c)
            );
            let (r, text) = c.get_text(&path, &["events"])?;
            let raw = c.raw_items(&path, &text, "events")?;
            for (e, raw) in r["events"].as_array().into_iter().flatten().zip(raw) {
                print(c, e, raw, a.print_key)?;
                printed += 1;
                progress.add(1);
                got_any = true;
            }
            next[i] = r["next_offset"].as_u64();
            if printed >= limit {
                return Ok(());
            }
        }
        if !a.follow && !got_any {
            return Ok(());
        }
        if a.follow && !got_any && partitions.len() > 1 {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}
