//! Cluster mode under faults (issue 20), checked with the reliability battery's history checker
//! (`busbar_testkit::history`, at zero anomalies): writers publish unique values through every
//! broker while (1) brokers are killed with -9 and restarted in a loop, (2) a TCP proxy between
//! the brokers and PostgreSQL cuts every connection and delays traffic. Every acknowledged write
//! must be read back at its acknowledged offset, once, on every broker (Jepsen's Bufstream
//! findings: lost acked writes, spurious zero offsets, stuck consumers). (3) A subscription's
//! runner cut off from PostgreSQL stops delivering before another broker takes its lease over.

mod common;

use busbar_testkit::postgres::TestPostgres;
use common::cluster::{converge_and_check, create_topic, drain, http, load, Node, TOPIC};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    // The cut-off runner stopped on its own clock before the database let broker 2 take over:
    // its watchdog or its tick's lease check saw the lease's local window close, whichever
    // looked first (both go by this broker's clock, never the database's answer).
    let stopped = log(&a, "lease ran out; its worker stops here")
        + log(&a, "lease lost; its worker stopped here");
    assert!(stopped >= 1, "broker 1 never stopped its worker");
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
