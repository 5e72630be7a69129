//! Helpers of the cluster-mode tests: brokers on fixed ports that survive restarts ([`Node`]),
//! writers that record a Jepsen-style history through every broker ([`load`]), and the check
//! that every broker converges on one log with no anomaly ([`converge_and_check`]).

use super::{Server, BIN};
use busbar_testkit::history::{check, History, Outcome};
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The topic the writers publish to.
pub const TOPIC: &str = "h";
/// Its partitions.
pub const PARTITIONS: u32 = 3;

pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
}

/// One broker on fixed ports (so writers find it again after a restart).
pub struct Node {
    pub id: u32,
    pub http: SocketAddr,
    pub kafka: SocketAddr,
    pub data: tempfile::TempDir,
    pub url: String,
    /// Extra environment of every start.
    pub env: Vec<(String, String)>,
    pub server: Option<Server>,
}

impl Node {
    pub fn new(id: u32, url: &str) -> Node {
        Node::with_env(id, url, &[])
    }

    /// A node started with `env` besides the defaults.
    pub fn with_env(id: u32, url: &str, env: &[(&str, String)]) -> Node {
        let mut n = Node {
            id,
            http: free_addr(),
            kafka: free_addr(),
            data: tempfile::tempdir().unwrap(),
            url: url.to_string(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            server: None,
        };
        n.start();
        n
    }

    pub fn start(&mut self) {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(self.data.path())
            .args(["--http-addr", &self.http.to_string()])
            .args(["--kafka-addr", &self.kafka.to_string()])
            .args(["--schema-registry-addr", ""])
            .args(["--cluster", &self.url, "--node-id", &self.id.to_string()]);
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.server = Some(Server::spawn(cmd, &env, self.data.path()));
    }

    pub fn kill9(&mut self) {
        if let Some(s) = self.server.take() {
            s.kill9();
        }
    }
}

pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let r = busbar_testkit::http::request(
        addr,
        method,
        path,
        &[("content-type", "application/json")],
        &bytes,
    )
    .ok()?;
    Some((
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    ))
}

/// Every (partition, offset, value) of the topic as broker `addr` reads it.
pub fn drain(addr: SocketAddr) -> Vec<((String, u32), u64, u64)> {
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        let mut at = 0;
        loop {
            let path = format!("/topics/{TOPIC}/partitions/{p}/events?offset={at}&limit=1000");
            let (st, r) = http(addr, "GET", &path, None).expect("the broker answers");
            assert_eq!(st, 200, "{r}");
            let got = r["events"].as_array().unwrap();
            if got.is_empty() {
                break;
            }
            for e in got {
                let offset = e["offset"].as_u64().unwrap();
                out.push(((TOPIC.to_string(), p), offset, e["value"].as_u64().unwrap()));
                at = offset + 1;
            }
        }
    }
    out
}

/// Writers: each publishes unique values round-robin through `addrs` until `stop`, recording
/// every outcome (a 2xx: ok at its offset; a 4xx: failed; anything else: unknown). Each event
/// carries a key of `pad` bytes (ballast: the history is of values).
fn writers(
    addrs: Vec<SocketAddr>,
    history: Arc<Mutex<History>>,
    stop: Arc<AtomicBool>,
    pad: usize,
) -> Vec<std::thread::JoinHandle<()>> {
    let key = "k".repeat(pad);
    let next = Arc::new(AtomicU64::new(1));
    (0..3u64)
        .map(|w| {
            let (addrs, history, stop, next, key) = (
                addrs.clone(),
                history.clone(),
                stop.clone(),
                next.clone(),
                key.clone(),
            );
            std::thread::spawn(move || {
                let mut i = w as usize;
                while !stop.load(Ordering::Relaxed) {
                    let value = next.fetch_add(1, Ordering::Relaxed);
                    let p = (value % u64::from(PARTITIONS)) as u32;
                    let addr = addrs[i % addrs.len()];
                    i += 1;
                    let body = json!([{"partition": p, "key": key, "value": value}]);
                    let outcome =
                        match http(addr, "POST", &format!("/topics/{TOPIC}/events"), Some(body)) {
                            Some((200, r)) => {
                                Outcome::Ok(r["offsets"][0]["offset"].as_u64().unwrap())
                            }
                            Some((s, _)) if (400..500).contains(&s) => Outcome::Fail,
                            _ => Outcome::Unknown,
                        };
                    if matches!(outcome, Outcome::Unknown) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let tp = (TOPIC.to_string(), p);
                    history.lock().unwrap().send(w, tp, value, outcome);
                }
            })
        })
        .collect()
}

/// What [`load`] starts: the history, the stop flag, the writer threads.
pub type Load = (
    Arc<Mutex<History>>,
    Arc<AtomicBool>,
    Vec<std::thread::JoinHandle<()>>,
);

/// Writers started on the topic through every node (see [`writers`]).
pub fn load(nodes: &[Node]) -> Load {
    load_padded(nodes, 0)
}

/// [`load`] with keys of `pad` bytes.
pub fn load_padded(nodes: &[Node], pad: usize) -> Load {
    let history = Arc::new(Mutex::new(History::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let addrs = nodes.iter().map(|n| n.http).collect();
    let threads = writers(addrs, history.clone(), stop.clone(), pad);
    (history, stop, threads)
}

/// After the faults: every broker converges on the same log, and the history has no anomaly.
pub fn converge_and_check(nodes: &[Node], history: &History) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let views: Vec<_> = nodes.iter().map(|n| drain(n.http)).collect();
        if views.windows(2).all(|w| w[0] == w[1]) {
            break views.into_iter().next().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the brokers never agreed on the log"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let report = check(history, &first);
    let acked = history
        .ops
        .iter()
        .filter(|op| {
            matches!(
                op,
                busbar_testkit::history::Op::Send {
                    outcome: Outcome::Ok(_),
                    ..
                }
            )
        })
        .count();
    assert!(report.is_clean(), "{report:?}");
    assert!(
        acked >= 100,
        "too few acknowledged writes to mean anything: {acked}"
    );
    // No spurious offsets: each partition's offsets run 0, 1, 2, ... with no gap.
    for p in 0..PARTITIONS {
        let offsets: Vec<u64> = first.iter().filter(|r| r.0 .1 == p).map(|r| r.1).collect();
        assert!(
            offsets.iter().enumerate().all(|(i, o)| *o == i as u64),
            "partition {p}: {offsets:?}"
        );
    }
    eprintln!(
        "{acked} acknowledged writes, {} stored, no anomaly",
        first.len()
    );
}

pub fn create_topic(nodes: &[Node]) {
    let (st, r) = http(
        nodes[0].http,
        "POST",
        "/topics",
        Some(json!({"name": TOPIC, "partitions": PARTITIONS})),
    )
    .unwrap();
    assert_eq!(st, 201, "{r}");
    for n in nodes {
        let deadline = Instant::now() + Duration::from_secs(20);
        while http(n.http, "GET", &format!("/topics/{TOPIC}"), None).map(|r| r.0) != Some(200) {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
