//! Runs the real `busbar` binary: a server on a free loopback port in a temporary data directory,
//! and client commands against it.
#![allow(dead_code)]

pub mod cluster;

use busbar_testkit::http::{request, Response};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_busbar");

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub kafka: SocketAddr,
    pub data: PathBuf,
    pub ready_line: String,
    /// Every line the server wrote to stderr so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `busbar serve` on `data` with any extra args and env; waits until it is ready.
    pub fn start(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::spawn(serve_command(data, args), env, data)
    }

    pub fn spawn(mut cmd: Command, env: &[(&str, &str)], data: &Path) -> Server {
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.env_remove("BUSBAR_SERVER");
        let mut child = cmd
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("busbar starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line.clone());
                if line.contains(" ready in ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(line.clone());
                    }
                }
                eprintln!("[busbar] {line}");
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("busbar printed its ready line");
        let addr = line
            .split("://") // http:// or https://, the first address of the line
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        let kafka = line
            .split(" kafka ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        Server {
            child,
            addr,
            kafka,
            data: data.to_path_buf(),
            ready_line: line,
            log,
        }
    }

    /// The server's stderr lines so far that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter().filter(|l| l.contains(needle)).cloned().collect()
    }

    /// Whether a line containing `needle` reaches the server's log within 5 s. The log is read
    /// by a thread of the test, so a line can arrive after the reply or close it explains.
    pub fn logs_soon(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.log_lines(needle).is_empty() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// The events a reader of `topic` sees ([`visible_events`]).
    pub fn events_stored(&self, topic: &str) -> u64 {
        visible_events(topic, |path| self.http("GET", path, None))
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn http(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let r: Response = request(
            self.addr,
            method,
            path,
            &[("content-type", "application/json")],
            &bytes,
        )
        .unwrap();
        (
            r.status,
            serde_json::from_slice(&r.body).unwrap_or(Value::Null),
        )
    }

    /// Runs a client command against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli_at(&self.url(), args, None)
    }

    pub fn cli_stdin(&self, args: &[&str], stdin: &str) -> Output {
        cli_at(&self.url(), args, Some(stdin))
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn stop(mut self) -> i32 {
        unsafe_kill(self.child.id(), "TERM");
        wait_exit(&mut self.child)
    }

    /// SIGKILL and wait.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A test that fails (or forgets `stop`) must not leave `busbar serve` running: it would hold its
/// ports and data directory after the test binary exits.
impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn unsafe_kill(pid: u32, sig: &str) {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
}

fn wait_exit(child: &mut Child) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        assert!(
            Instant::now() < deadline,
            "busbar did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn cli_at(url: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(["--server", url])
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn json_out(o: &Output) -> Value {
    assert!(o.status.success(), "command failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("not JSON: {}", stdout(o)))
}

/// `busbar serve` that must fail: its exit code and stderr. One that is still running after 20 s
/// started when it should not have: it is killed and the test fails.
/// `busbar serve` on `data` with free loopback ports and any extra args, not started.
pub fn serve_command(data: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(data)
        .args(["--http-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0"])
        .args(args);
    cmd
}

pub fn refused_start(data: &Path) -> (i32, String) {
    refused_start_with(data, &[])
}

/// [`refused_start`] with extra environment (`BUSBAR_*` settings).
pub fn refused_start_with(data: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut child = Command::new(BIN)
        .envs(env.iter().copied())
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--kafka-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "busbar serve started on a data directory it must refuse: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// How long bus tests wait for deliveries.
pub const WAIT: Duration = Duration::from_secs(30);

pub fn topics(s: &Server, names: &[(&str, u32)]) {
    for (n, p) in names {
        let (st, v) = s.http("POST", "/topics", Some(json!({"name": n, "partitions": p})));
        assert_eq!(st, 201, "{v}");
    }
}

pub fn subscribe(s: &Server, spec: Value) -> Value {
    let (st, v) = s.http("POST", "/subscriptions", Some(spec));
    assert_eq!(st, 201, "{v}");
    v
}

pub fn publish(s: &Server, topic: &str, events: Value) {
    let (st, v) = s.http("POST", &format!("/topics/{topic}/events"), Some(events));
    assert_eq!(st, 200, "{v}");
}

pub fn wait_sub(s: &Server, name: &str, done: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + WAIT;
    loop {
        let (_, v) = s.http("GET", &format!("/subscriptions/{name}"), None);
        if done(&v) {
            return v;
        }
        assert!(
            Instant::now() < end,
            "subscription {name} never got there: {v}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The events a reader of `topic` sees, read page by page through `get` (a GET of a path):
/// committed ones only, as a topic target's deliveries are visible once their transaction commits
/// and its markers take offsets but are no events.
pub fn visible_events(topic: &str, get: impl Fn(&str) -> (u16, Value)) -> u64 {
    let (_, d) = get(&format!("/topics/{topic}"));
    let mut n = 0;
    for p in d["partitions"].as_array().unwrap() {
        let (index, hw) = (
            p["partition"].as_u64().unwrap(),
            p["high_watermark"].as_u64(),
        );
        let mut at = 0;
        while Some(at) < hw {
            let (st, r) = get(&format!(
                "/topics/{topic}/partitions/{index}/events?offset={at}&limit=10000"
            ));
            assert_eq!(st, 200, "{r}");
            n += r["events"].as_array().unwrap().len() as u64;
            let next = r["next_offset"].as_u64().unwrap();
            if next == at {
                break; // an open transaction: nothing past it is visible yet
            }
            at = next;
        }
    }
    n
}

/// Deliveries of events `{"key": "k<n % keys>", "n": n}` published in order of `n`, as an HTTP
/// target got them: checks that every `n` below `total` arrived and that each key's first
/// deliveries came in publish order (a redelivery repeats an event already seen, never one ahead
/// of an earlier). Answers how many deliveries were repeats.
pub fn check_keyed_deliveries(
    got: &[busbar_testkit::target::Received],
    total: i64,
    keys: i64,
) -> usize {
    let mut next: std::collections::BTreeMap<String, i64> = Default::default();
    let mut seen = std::collections::BTreeSet::new();
    for r in got {
        let v = r.json();
        let (key, n) = (
            v["key"].as_str().unwrap().to_string(),
            v["n"].as_i64().unwrap(),
        );
        if seen.insert(n) {
            let want = next.entry(key.clone()).or_insert(n % keys);
            assert_eq!(n, *want, "key {key}: event {n} came before {want}");
            *want += keys;
        }
    }
    assert_eq!(seen.len() as i64, total, "events lost");
    got.len() - seen.len()
}
