//! Cluster mode under faults (issue 20), checked with the reliability battery's history checker
//! (`busbar_testkit::history`, at zero anomalies): writers publish unique values through every
//! broker while (1) brokers are killed with -9 and restarted in a loop, (2) a TCP proxy between
//! the brokers and PostgreSQL cuts every connection and delays traffic. Every acknowledged write
//! must be read back at its acknowledged offset, once, on every broker (Jepsen's Bufstream
//! findings: lost acked writes, spurious zero offsets, stuck consumers). (3) A subscription's
//! runner cut off from PostgreSQL stops delivering before another broker takes its lease over.

mod common;

use busbar_testkit::history::{check, History, Outcome};
use busbar_testkit::postgres::TestPostgres;
use common::{Server, BIN};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOPIC: &str = "h";
const PARTITIONS: u32 = 3;

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
}

/// One broker on fixed ports (so writers find it again after a restart).
struct Node {
    id: u32,
    http: SocketAddr,
    kafka: SocketAddr,
    data: tempfile::TempDir,
    url: String,
    server: Option<Server>,
}

impl Node {
    fn new(id: u32, url: &str) -> Node {
        let mut n = Node {
            id,
            http: free_addr(),
            kafka: free_addr(),
            data: tempfile::tempdir().unwrap(),
            url: url.to_string(),
            server: None,
        };
        n.start();
        n
    }

    fn start(&mut self) {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(self.data.path())
            .args(["--http-addr", &self.http.to_string()])
            .args(["--kafka-addr", &self.kafka.to_string()])
            .args(["--schema-registry-addr", ""])
            .args(["--cluster", &self.url, "--node-id", &self.id.to_string()]);
        self.server = Some(Server::spawn(cmd, &[], self.data.path()));
    }

    fn kill9(&mut self) {
        if let Some(s) = self.server.take() {
            s.kill9();
        }
    }
}

fn http(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> Option<(u16, Value)> {
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
fn drain(addr: SocketAddr) -> Vec<((String, u32), u64, u64)> {
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
/// every outcome (a 2xx: ok at its offset; a 4xx: failed; anything else: unknown).
fn writers(
    addrs: Vec<SocketAddr>,
    history: Arc<Mutex<History>>,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    let next = Arc::new(AtomicU64::new(1));
    (0..3u64)
        .map(|w| {
            let (addrs, history, stop, next) =
                (addrs.clone(), history.clone(), stop.clone(), next.clone());
            std::thread::spawn(move || {
                let mut i = w as usize;
                while !stop.load(Ordering::Relaxed) {
                    let value = next.fetch_add(1, Ordering::Relaxed);
                    let p = (value % u64::from(PARTITIONS)) as u32;
                    let addr = addrs[i % addrs.len()];
                    i += 1;
                    let body = json!([{"partition": p, "value": value}]);
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

/// Writers started on the topic through every node (see [`writers`]).
fn load(
    nodes: &[Node],
) -> (
    Arc<Mutex<History>>,
    Arc<AtomicBool>,
    Vec<std::thread::JoinHandle<()>>,
) {
    let history = Arc::new(Mutex::new(History::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let addrs = nodes.iter().map(|n| n.http).collect();
    let threads = writers(addrs, history.clone(), stop.clone());
    (history, stop, threads)
}

/// After the faults: every broker converges on the same log, and the history has no anomaly.
fn converge_and_check(nodes: &[Node], history: &History) {
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

fn create_topic(nodes: &[Node]) {
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

#[test]
fn kill_9_of_brokers_in_a_loop_under_load_loses_no_acknowledged_write() {
    let pg = TestPostgres::start();
    let url = pg.create_db("kills");
    let mut nodes: Vec<Node> = (1..=3).map(|i| Node::new(i, &url)).collect();
    create_topic(&nodes);
    let (history, stop, threads) = load(&nodes);
    // Three rounds: kill -9 one broker mid-load, restart it on its data directory.
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(1500));
        let victim = round % nodes.len();
        nodes[victim].kill9();
        std::thread::sleep(Duration::from_millis(300));
        nodes[victim].start();
    }
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    converge_and_check(&nodes, &history.lock().unwrap());
}

/// A TCP proxy in front of PostgreSQL: `cut` closes every connection through it now; while
/// `slow` is set each chunk it forwards waits 50 ms; while `blocked` is set new connections are
/// closed at once (with `cut`: a broker cut off from the database).
struct Proxy {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    slow: Arc<AtomicBool>,
    blocked: Arc<AtomicBool>,
}

impl Proxy {
    fn start(to: SocketAddr) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let slow = Arc::new(AtomicBool::new(false));
        let blocked = Arc::new(AtomicBool::new(false));
        let (c, s, b) = (conns.clone(), slow.clone(), blocked.clone());
        std::thread::spawn(move || {
            for client in l.incoming().map_while(Result::ok) {
                if b.load(Ordering::Relaxed) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(to) else {
                    continue;
                };
                c.lock().unwrap().push(client.try_clone().unwrap());
                c.lock().unwrap().push(server.try_clone().unwrap());
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    s.clone(),
                );
                pipe(server, client, s.clone());
            }
        });
        Proxy {
            addr,
            conns,
            slow,
            blocked,
        }
    }

    fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, slow: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if slow.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

#[test]
fn a_proxy_that_cuts_and_slows_the_database_loses_no_write_and_sticks_no_broker() {
    let pg = TestPostgres::start();
    pg.create_db("proxy");
    let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], pg.port())));
    let url = format!("postgres://busbar@{}/proxy", proxy.addr);
    let nodes: Vec<Node> = (1..=3).map(|i| Node::new(i, &url)).collect();
    create_topic(&nodes);
    let (history, stop, threads) = load(&nodes);
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(1000));
        if round % 2 == 0 {
            proxy.cut();
        } else {
            proxy.slow.store(true, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1000));
            proxy.slow.store(false, Ordering::Relaxed);
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    converge_and_check(&nodes, &history.lock().unwrap());
    // Not stuck: each broker still takes writes, and every broker reads them.
    for n in &nodes {
        let (st, r) = http(
            n.http,
            "POST",
            &format!("/topics/{TOPIC}/events"),
            Some(json!([{"partition": 0, "value": 0}])),
        )
        .unwrap();
        assert_eq!(st, 200, "broker {}: {r}", n.id);
    }
    let end = |n: &Node| drain(n.http).iter().filter(|r| r.0 .1 == 0).count();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nodes.iter().all(|n| end(n) == end(&nodes[0])) {
        assert!(
            Instant::now() < deadline,
            "a broker is stuck behind the others"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_runner_cut_off_from_the_database_stops_before_another_broker_takes_over() {
    use busbar_testkit::target::{Reply, Target};
    let pg = TestPostgres::start();
    let direct = pg.create_db("runner");
    let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], pg.port())));
    let through = format!("postgres://busbar@{}/runner", proxy.addr);
    // Broker 1 reaches the database through the proxy and runs the subscription (it is alone
    // when the subscription is made); broker 2 joins after, directly.
    let mut a = Node::new(1, &through);
    create_topic(std::slice::from_ref(&a));
    let t = Target::start(|_, _| Reply::Status(200));
    let spec = json!({"name": "s", "sources": [TOPIC], "target": {"url": t.url("/s")},
                      "delivery": {"ordering": "key", "concurrency": 4}});
    let (st, r) = http(a.http, "POST", "/subscriptions", Some(spec)).unwrap();
    assert_eq!(st, 201, "{r}");
    let state =
        |n: &Node| http(n.http, "GET", "/subscriptions/s", None).map(|r| r.1["state"].clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    while state(&a) != Some(json!("running")) {
        assert!(Instant::now() < deadline, "broker 1 never ran it");
        std::thread::sleep(Duration::from_millis(50));
    }
    let b = Node::new(2, &direct);
    let (total, keys) = (300, 6);
    let publish = |n: i64| {
        let key = format!("k{}", n % keys);
        let event = json!([{"key": key, "value": {"key": key, "n": n}}]);
        let (st, r) = http(
            b.http,
            "POST",
            &format!("/topics/{TOPIC}/events"),
            Some(event),
        )
        .unwrap();
        assert_eq!(st, 200, "{r}");
    };
    for n in 0..total / 2 {
        publish(n);
    }
    t.wait(Duration::from_secs(20), |r| r.len() >= 50);
    proxy.blocked.store(true, Ordering::Relaxed);
    proxy.cut();
    for n in total / 2..total {
        publish(n);
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = |n: &Node, what: &str| n.server.as_ref().unwrap().log_lines(what).len();
    let deadline = Instant::now() + Duration::from_secs(40);
    while log(&b, "lease taken") == 0 {
        assert!(Instant::now() < deadline, "broker 2 never took the lease");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The cut-off runner stopped on its own clock before the database let broker 2 take over.
    assert_eq!(log(&a, "lease ran out; its worker stops here"), 1);
    let got = t.wait(Duration::from_secs(60), |r| {
        let seen: std::collections::BTreeSet<_> =
            r.iter().map(|r| r.json()["n"].as_i64()).collect();
        seen.len() >= total as usize
    });
    common::check_keyed_deliveries(&got, total, keys);
    // Back in touch, broker 1 does not take it back while broker 2 runs it.
    proxy.blocked.store(false, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(state(&b), Some(json!("running")));
    assert_eq!(state(&a), Some(json!("elsewhere")));
    a.kill9();
}
