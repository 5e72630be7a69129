//! Process crash on the real file system: a child process appends in a loop and prints every
//! acknowledged offset; the parent kills it with SIGKILL at a random moment, reopens the log and
//! checks every acknowledged record is there, for every sync policy (a process crash loses nothing
//! under any policy: acknowledged bytes were written to the OS before the ack).

use crate::common::*;
use busbar_log::disk::{FileStorage, Storage};
use busbar_log::{Log, LogConfig, SyncPolicy};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DIR_VAR: &str = "BUSBAR_KILL9_DIR";

fn policy(name: &str) -> SyncPolicy {
    match name {
        "interval" => SyncPolicy::Interval(5),
        "never" => SyncPolicy::Never,
        _ => SyncPolicy::Batch,
    }
}

fn config(name: &str) -> LogConfig {
    LogConfig {
        sync: policy(name),
        ..small(64 * 1024)
    }
}

fn open(dir: &str, name: &str) -> Log {
    Log::open(
        Arc::new(FileStorage::open(dir).unwrap()) as Arc<dyn Storage>,
        config(name),
    )
    .unwrap()
}

/// The child's body: runs only when the parent sets the variable.
#[test]
fn kill9_child_writer() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let name = std::env::var("BUSBAR_KILL9_POLICY").unwrap();
    let log = open(&dir, &name);
    for i in 0.. {
        let value = format!("value-{i}");
        let at = log
            .append(&mut batch::build(&[rec(
                Some(b"k"),
                Some(value.as_bytes()),
                i,
            )]))
            .unwrap();
        println!("ack {} {value}", at.base_offset);
    }
}

use busbar_log::batch;

#[test]
fn acknowledged_appends_survive_kill_9() {
    let seed = std::process::id() as u64;
    let mut rng = busbar_testkit::Rng::new(seed);
    for name in ["batch", "interval", "never"] {
        let dir = tempfile::tempdir().unwrap();
        let dir_s = dir.path().to_str().unwrap().to_string();
        let mut acked: Vec<(u64, String)> = Vec::new();
        for _round in 0..3 {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "kill9::kill9_child_writer",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(DIR_VAR, &dir_s)
                .env("BUSBAR_KILL9_POLICY", name)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let reader = std::thread::spawn(move || {
                let mut out = Vec::new();
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(rest) = line.strip_prefix("ack ") {
                        let (o, v) = rest.split_once(' ').unwrap();
                        out.push((o.parse::<u64>().unwrap(), v.to_string()));
                    }
                }
                out
            });
            let wait = Duration::from_millis(100 + rng.below(300));
            let start = Instant::now();
            while start.elapsed() < wait {
                std::thread::sleep(Duration::from_millis(10));
            }
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            acked.extend(reader.join().unwrap());
            let log = open(&dir_s, name);
            let evs = read_all(&log);
            let by_offset: std::collections::HashMap<u64, &Event> =
                evs.iter().map(|e| (e.0, e)).collect();
            for (offset, value) in &acked {
                let e = by_offset.get(offset);
                assert_eq!(
                    e.and_then(|e| e.2.clone()),
                    Some(value.clone().into_bytes()),
                    "{name}: acknowledged offset {offset} lost (seed {seed})"
                );
            }
            // What survived beyond the last ack (written, not yet acknowledged) is the new truth.
            acked = evs
                .iter()
                .map(|e| (e.0, String::from_utf8(e.2.clone().unwrap()).unwrap()))
                .collect();
        }
        assert!(
            acked.len() > 10,
            "{name}: the writer made progress ({} records)",
            acked.len()
        );
        eprintln!(
            "{name}: {} records acknowledged across 3 kills, none lost",
            acked.len()
        );
    }
}
