//! Cluster mode (issue 20, first increment) through the real binary on a real PostgreSQL
//! (`busbar_testkit::postgres`): three brokers share topics and partition data; events published
//! on every broker at once get gap-free offsets and read the same on every broker; an acked event
//! survives the kill -9 of the broker that took it and a restart of PostgreSQL; bad settings and a
//! foreign data directory are refused with a clear message.

mod common;

use busbar_testkit::postgres::TestPostgres;
use common::Server;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn broker(url: &str, node: u32, data: &std::path::Path) -> Server {
    let node = node.to_string();
    Server::start(data, &["--cluster", url, "--node-id", &node], &[])
}

/// Every event of `partition` as (offset, key, value), read from `s`.
fn events(s: &Server, topic: &str, partition: u32) -> Vec<(u64, String, String)> {
    let mut out = Vec::new();
    loop {
        let at = out.len();
        let (st, r) = s.http(
            "GET",
            &format!("/topics/{topic}/partitions/{partition}/events?offset={at}&limit=1000"),
            None,
        );
        assert_eq!(st, 200, "{r}");
        let got = r["events"].as_array().unwrap();
        if got.is_empty() {
            return out;
        }
        for e in got {
            out.push((
                e["offset"].as_u64().unwrap(),
                e["key"].as_str().unwrap_or("").to_string(),
                e["value"].to_string(),
            ));
        }
    }
}

/// Waits until `f` holds (the brokers apply each other's commits within milliseconds).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn publish(s: &Server, topic: &str, events: Value) -> (u16, Value) {
    s.http("POST", &format!("/topics/{topic}/events"), Some(events))
}

#[test]
fn three_brokers_share_topics_and_gap_free_offsets() {
    let pg = TestPostgres::start();
    let url = pg.create_db("three");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let brokers: Vec<Server> = (0..3)
        .map(|i| broker(&url, i + 1, dirs[i as usize].path()))
        .collect();
    let (st, r) = brokers[0].http(
        "POST",
        "/topics",
        Some(json!({"name": "orders", "partitions": 2})),
    );
    assert_eq!(st, 201, "{r}");
    // The catalog is shared: the other brokers have it at once, and the name is taken everywhere.
    for b in &brokers[1..] {
        eventually("the topic reaches every broker", || {
            b.http("GET", "/topics/orders", None).0 == 200
        });
        let (st, r) = b.http("POST", "/topics", Some(json!({"name": "orders"})));
        assert_eq!(st, 409, "{r}");
    }
    // Every broker publishes to both partitions at once.
    let threads: Vec<_> = brokers
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let addr = b.url();
            std::thread::spawn(move || {
                for n in 0..40 {
                    let body = json!([
                        {"key": format!("k{}", n % 4), "value": {"broker": i, "n": n}},
                        {"partition": 1, "value": {"broker": i, "n": n}}
                    ])
                    .to_string();
                    let r = busbar_testkit::http::request(
                        addr.trim_start_matches("http://").parse().unwrap(),
                        "POST",
                        "/topics/orders/events",
                        &[("content-type", "application/json")],
                        body.as_bytes(),
                    )
                    .unwrap();
                    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let total = |s: &Server| events(s, "orders", 0).len() + events(s, "orders", 1).len();
    // Every publish was acknowledged; each broker applies the others' commits as they notify.
    for b in &brokers {
        eventually("every acknowledged event is on every broker", || {
            total(b) == 3 * 40 * 2
        });
    }
    for p in 0..2 {
        let first = events(&brokers[0], "orders", p);
        // Offsets have no gap and no repeat.
        for (i, e) in first.iter().enumerate() {
            assert_eq!(e.0, i as u64, "partition {p}: {first:?}");
        }
        for b in &brokers[1..] {
            eventually("every broker reads the same events", || {
                events(b, "orders", p) == first
            });
        }
    }
    // Each broker's events are there, in the order it published them (per key).
    let p1 = events(&brokers[2], "orders", 1);
    for i in 0..3 {
        let mine: Vec<u64> = p1
            .iter()
            .filter(|(_, k, _)| k.is_empty())
            .filter_map(|(_, _, v)| {
                let v: Value = serde_json::from_str(v).ok()?;
                (v["broker"] == i).then(|| v["n"].as_u64().unwrap())
            })
            .collect();
        let mut sorted = mine.clone();
        sorted.sort();
        assert_eq!(mine, sorted, "broker {i}'s events keep their order");
        assert_eq!(mine.len(), 40, "{mine:?}");
    }
    // Topic changes reach everyone: a config and more partitions, then a deletion.
    let (st, r) = brokers[1].http(
        "PATCH",
        "/topics/orders",
        Some(json!({"configs": {"retention.ms": "86400000"}, "partitions": 3})),
    );
    assert!(st < 300, "{st} {r}");
    eventually("the config and partitions reach broker 3", || {
        let (_, d) = brokers[2].http("GET", "/topics/orders", None);
        d["configs"]["retention.ms"] == "86400000" && d["partitions"].as_array().unwrap().len() == 3
    });
    let (st, r) = publish(&brokers[2], "orders", json!([{"partition": 2, "value": 1}]));
    assert_eq!(st, 200, "{r}");
    let (st, r) = brokers[2].http("DELETE", "/topics/orders", None);
    assert!(st < 300, "{st} {r}");
    for b in &brokers {
        eventually("the deletion reaches every broker", || {
            b.http("GET", "/topics/orders", None).0 == 404
        });
    }
    assert_eq!(pg.psql("three", "SELECT count(*) FROM batches"), "0");
}

#[test]
fn an_acked_event_survives_kill_9_of_its_broker_and_a_database_restart() {
    let pg = TestPostgres::start();
    let url = pg.create_db("crash");
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = broker(&url, 1, da.path());
    let b = broker(&url, 2, db.path());
    let (st, r) = a.http(
        "POST",
        "/topics",
        Some(json!({"name": "t", "partitions": 1})),
    );
    assert_eq!(st, 201, "{r}");
    let mut acked = BTreeMap::new();
    for n in 0..50 {
        let (st, r) = publish(&a, "t", json!([{"value": n}]));
        assert_eq!(st, 200, "{r}");
        acked.insert(r["offsets"][0]["offset"].as_u64().unwrap(), n.to_string());
    }
    a.kill9();
    eventually("broker 2 reads every acked event", || {
        events(&b, "t", 0).len() == 50
    });
    for (offset, _, v) in events(&b, "t", 0) {
        assert_eq!(acked.get(&offset), Some(&v), "offset {offset}");
    }
    // The killed broker comes back on its data directory and catches up on what it missed.
    let (st, _) = publish(&b, "t", json!([{"value": "after"}]));
    assert_eq!(st, 200);
    let a = broker(&url, 1, da.path());
    eventually("the restarted broker has everything", || {
        events(&a, "t", 0).len() == 51
    });
    // PostgreSQL down: publishing is refused (retriable), nothing half-written; back up: it works.
    pg.stop();
    let (st, r) = publish(&a, "t", json!([{"value": "while down"}]));
    // As for a failed disk: 507 "nothing changed, retry later"; the reason goes to the log.
    assert_eq!(st, 507, "{r}");
    assert!(a.logs_soon("cluster store: PostgreSQL"));
    pg.restart();
    eventually("publishing works again after the database restart", || {
        publish(&a, "t", json!([{"value": "back"}])).0 == 200
    });
    eventually("both brokers agree", || {
        let ea = events(&a, "t", 0);
        ea.len() >= 52 && events(&b, "t", 0) == ea
    });
    let got = events(&b, "t", 0);
    assert!(got.iter().all(|(_, _, v)| v != "\"while down\""), "{got:?}");
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.0, i as u64);
    }
}

#[test]
fn bad_settings_and_foreign_data_directories_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let (code, err) =
        common::refused_start_with(data.path(), &[("BUSBAR_CLUSTER_POSTGRES_URL", "mysql://x")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cluster.postgres_url"), "{err}");
    let (code, err) = common::refused_start_with(
        data.path(),
        &[(
            "BUSBAR_CLUSTER_POSTGRES_URL",
            "postgres://u:s3cret@127.0.0.1:1/db",
        )],
    );
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("join the cluster") && !err.contains("s3cret"),
        "{err}"
    );
    // A single-node data directory is not silently replaced by the cluster's topics.
    let single = tempfile::tempdir().unwrap();
    let s = Server::start(single.path(), &[], &[]);
    s.http("POST", "/topics", Some(json!({"name": "mine"})));
    assert_eq!(s.stop(), 0);
    let pg = TestPostgres::start();
    let url = pg.create_db("refuse");
    let (code, err) =
        common::refused_start_with(single.path(), &[("BUSBAR_CLUSTER_POSTGRES_URL", &url)]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("single-node topics"), "{err}");
    // A copy of another cluster is refused too.
    let other = pg.create_db("other");
    let d = tempfile::tempdir().unwrap();
    broker(&url, 1, d.path()).stop();
    let (code, err) =
        common::refused_start_with(d.path(), &[("BUSBAR_CLUSTER_POSTGRES_URL", &other)]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("holds a copy of cluster"), "{err}");
    // Every Kafka listener is advertised to other brokers' clients: one bound to 0.0.0.0 without
    // kafka.advertised_host is refused, not only the first.
    let d = tempfile::tempdir().unwrap();
    let mut out = std::process::Command::new(common::BIN)
        .args(["serve", "--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(d.path())
        .env("BUSBAR_CLUSTER_POSTGRES_URL", &url)
        .env("BUSBAR_CLUSTER_NODE_ID", "9")
        .env(
            "BUSBAR_KAFKA_LISTENERS",
            "PLAINTEXT://127.0.0.1:0,PLAINTEXT://0.0.0.0:0",
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            out.kill().unwrap();
            panic!("a listener advertising 0.0.0.0 was accepted");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = out.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("kafka.advertised_host"), "{err}");
}

/// An HTTP call to the broker at `addr`.
fn call(addr: std::net::SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let ct = [("content-type", "application/json")];
    let r = busbar_testkit::http::request(addr, method, path, &ct, &bytes).unwrap();
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

/// Creates `topics` (name, partitions) on the first broker and waits until every broker knows
/// them.
fn create_everywhere(addrs: &[std::net::SocketAddr], topics: &[(&str, u32)]) {
    for (name, parts) in topics {
        let topic = json!({"name": name, "partitions": parts});
        let (st, r) = call(addrs[0], "POST", "/topics", Some(topic));
        assert_eq!(st, 201, "{r}");
    }
    eventually("the topics reach every broker", || {
        addrs.iter().all(|a| {
            (topics.iter()).all(|(t, _)| call(*a, "GET", &format!("/topics/{t}"), None).0 == 200)
        })
    });
}

/// The state of subscription `name` on each broker.
fn states(brokers: &[std::net::SocketAddr], name: &str) -> Vec<Value> {
    let path = format!("/subscriptions/{name}");
    brokers
        .iter()
        .map(|a| call(*a, "GET", &path, None).1["state"].clone())
        .collect()
}

/// The broker running subscription `name` (its view says `running`), among `brokers`.
fn runner(brokers: &[std::net::SocketAddr], name: &str) -> Option<usize> {
    states(brokers, name).iter().position(|s| *s == "running")
}

#[test]
fn a_subscription_runs_on_one_broker_and_moves_when_it_dies() {
    use busbar_testkit::target::{Reply, Target};
    let pg = TestPostgres::start();
    let url = pg.create_db("bus");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut brokers: Vec<Option<Server>> = (0..3)
        .map(|i| Some(broker(&url, i as u32 + 1, dirs[i].path())))
        .collect();
    let addrs: Vec<std::net::SocketAddr> = brokers.iter().flatten().map(|s| s.addr).collect();
    // The subscription is made on broker 2: it must know the topics first.
    create_everywhere(&addrs, &[("orders", 3), ("dead", 1)]);
    // Each delivery takes a little while, so some are in flight when the runner dies.
    let t = Target::start(|_, _| Reply::After(Duration::from_millis(3), 200));
    let spec = json!({"name": "s", "sources": ["orders"], "target": {"url": t.url("/s")},
                      "dead_letter_topic": "dead",
                      "delivery": {"ordering": "key", "concurrency": 8}});
    let (st, r) = call(addrs[1], "POST", "/subscriptions", Some(spec));
    assert_eq!(st, 201, "{r}");
    // Every broker lists it at once; exactly one runs it.
    let (st, r) = call(addrs[2], "GET", "/subscriptions/s", None);
    assert_eq!(st, 200, "{r}");
    let (_, list) = call(addrs[0], "GET", "/subscriptions", None);
    assert_eq!(
        list["subscriptions"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );
    eventually("one broker runs it", || runner(&addrs, "s").is_some());
    let first = runner(&addrs, "s").unwrap();
    let now = states(&addrs, "s");
    assert_eq!(
        now.iter().filter(|s| **s == "running").count(),
        1,
        "{now:?}"
    );
    assert!(
        now.iter().all(|s| *s == "running" || *s == "elsewhere"),
        "{now:?}"
    );
    // Publish through a broker that survives, one event at a time (key order = publish order),
    // and kill -9 the runner while deliveries are in flight.
    let publisher = addrs[(first + 1) % 3];
    let (total, keys): (i64, i64) = (400, 8);
    for n in 0..total {
        let key = format!("k{}", n % keys);
        let event = json!([{"key": key, "value": {"key": key, "n": n}}]);
        let (st, r) = call(publisher, "POST", "/topics/orders/events", Some(event));
        assert_eq!(st, 200, "{r}");
        if n == total / 2 {
            t.wait(Duration::from_secs(20), |r| r.len() >= 50);
            brokers[first].take().unwrap().kill9();
        }
    }
    let live: Vec<std::net::SocketAddr> = brokers.iter().flatten().map(|s| s.addr).collect();
    let got = t.wait(Duration::from_secs(60), |r| {
        let seen: std::collections::BTreeSet<_> =
            r.iter().map(|r| r.json()["n"].as_i64()).collect();
        seen.len() >= total as usize
    });
    // Another broker took the lease; nothing is lost and each key's events came in order (a
    // redelivery repeats an event already seen, never one ahead of an earlier).
    // Nothing was skipped as gone from the log (a copy behind the shared store is not "gone").
    let i = runner(&live, "s").expect("a live broker runs it");
    let (_, view) = call(live[i], "GET", "/subscriptions/s", None);
    let counters = &view["counters"];
    assert_eq!(counters["expired"], 0, "{view}");
    assert_eq!(counters["dead_lettered"], 0, "{view}");
    let repeats = common::check_keyed_deliveries(&got, total, keys);
    eprintln!("{total} events, {repeats} delivered twice across the move");
    // PostgreSQL down longer than a lease's local window (the runner stops), then back: the
    // subscription runs again and delivers what is published after.
    pg.stop();
    std::thread::sleep(Duration::from_secs(9));
    pg.restart();
    eventually("publishing works again", || {
        let event = json!([{"key": "k0", "value": {"key": "k0", "n": total}}]);
        call(live[0], "POST", "/topics/orders/events", Some(event)).0 == 200
    });
    t.wait(Duration::from_secs(60), |r| {
        r.iter().any(|r| r.json()["n"].as_i64() == Some(total))
    });
    eventually("one broker runs it again", || runner(&live, "s").is_some());
    // A reset on a broker that does not run it: the runner stops (the subscription is paused
    // for the move), the positions move under the lease, and it runs again from the start:
    // every event is delivered again. A bad reset changes nothing.
    let runs = runner(&live, "s").unwrap();
    let other = live[(runs + 1) % live.len()];
    let bad = Some(
        json!({"to": "offsets", "offsets": [{"topic": "orders", "partition": 0,
                                                          "offset": 999_999}]}),
    );
    let (st, r) = call(other, "POST", "/subscriptions/s/reset", bad);
    assert_eq!(st, 400, "{r}");
    assert_eq!(
        runner(&live, "s"),
        Some(runs),
        "a refused reset stops nothing"
    );
    let before = t.received().len();
    let (st, r) = call(
        other,
        "POST",
        "/subscriptions/s/reset",
        Some(json!({"to": "earliest"})),
    );
    assert_eq!(st, 200, "{r}");
    let moved = r["positions"].as_array().map_or(0, Vec::len);
    assert_eq!(moved, 3, "{r}");
    assert!(
        r["positions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["offset"] == 0),
        "{r}"
    );
    t.wait(Duration::from_secs(60), |r| {
        let again: std::collections::BTreeSet<_> = r[before..]
            .iter()
            .filter_map(|r| r.json()["n"].as_i64())
            .collect();
        again.len() > total as usize
    });
    eventually("one broker runs it after the reset", || {
        runner(&live, "s").is_some()
    });
    let second = runner(&live, "s").unwrap();
    // Pause on one broker shows everywhere and stops the runner; resume; delete anywhere.
    let other = live[(second + 1) % live.len()];
    let (st, r) = call(other, "POST", "/subscriptions/s/pause", None);
    assert_eq!(st, 200, "{r}");
    eventually("paused everywhere", || {
        states(&live, "s").iter().all(|s| *s == "paused")
    });
    // A reset of a paused subscription leaves it paused.
    let (st, r) = call(
        live[second],
        "POST",
        "/subscriptions/s/reset",
        Some(json!({"to": "latest"})),
    );
    assert_eq!(st, 200, "{r}");
    assert!(
        states(&live, "s").iter().all(|s| *s == "paused"),
        "{:?}",
        states(&live, "s")
    );
    let (st, r) = call(live[second], "POST", "/subscriptions/s/resume", None);
    assert_eq!(st, 200, "{r}");
    eventually("running again", || runner(&live, "s").is_some());
    let (st, r) = call(other, "DELETE", "/subscriptions/s", None);
    assert_eq!(st, 204, "{r}");
    eventually("gone everywhere", || {
        live.iter()
            .all(|a| call(*a, "GET", "/subscriptions/s", None).0 == 404)
    });
}

/// Runs `busbar cluster import` on `data` into `url`: (exit code, stdout, stderr).
fn import(data: &std::path::Path, url: &str) -> (i32, String, String) {
    import_with(data, url, &[])
}

fn import_with(data: &std::path::Path, url: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(common::BIN)
        .envs(env.iter().copied())
        .args(["cluster", "import", "--cluster", url, "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_single_node_data_directory_is_imported_with_its_events_and_offsets() {
    let single = tempfile::tempdir().unwrap();
    let s = Server::start(single.path(), &[], &[]);
    for (name, partitions) in [("a", 2), ("b", 1)] {
        let (st, r) = s.http(
            "POST",
            "/topics",
            Some(json!({"name": name, "partitions": partitions})),
        );
        assert_eq!(st, 201, "{r}");
    }
    for n in 0..100 {
        let (st, r) = publish(&s, "a", json!([{"key": format!("k{}", n % 7), "value": n}]));
        assert_eq!(st, 200, "{r}");
    }
    let (st, _) = publish(&s, "b", json!([{"value": "one"}, {"value": "two"}]));
    assert_eq!(st, 200);
    let (st, r) = s.http(
        "POST",
        "/groups/g/offsets/reset",
        Some(json!({"topic": "a", "to": {"offset": 3}})),
    );
    assert_eq!(st, 200, "{r}");
    let before: Vec<_> = [("a", 0), ("a", 1), ("b", 0)]
        .iter()
        .map(|(t, p)| events(&s, t, *p))
        .collect();
    // Users, a quota and a schema (and an ACL, below) go with the import.
    let made = [
        (
            "POST",
            "/users",
            json!({"name": "alice", "password": "alice-secret-1"}),
        ),
        (
            "POST",
            "/users",
            json!({"name": "admin", "password": "admin-secret-1"}),
        ),
        (
            "PUT",
            "/quotas",
            json!({"entity": {"user": "alice"},
            "values": {"producer_byte_rate": 1048576}}),
        ),
        (
            "POST",
            "/schema-registry/subjects/a-value/versions",
            json!({"schema": "\"string\""}),
        ),
    ];
    for (method, path, body) in made.clone() {
        let (st, r) = s.http(method, path, Some(body));
        assert!(st == 200 || st == 201, "{path}: {st} {r}");
    }
    let pg = TestPostgres::start();
    let url = pg.create_db("import");
    // A running server holds the directory: the import is refused, nothing written.
    let (code, _, err) = import(single.path(), &url);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("open data directory"), "{err}");
    assert_eq!(
        pg.psql(
            "import",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'topics'"
        ),
        "0"
    );
    assert_eq!(s.stop(), 0);
    // An ACL (they need authentication on): the node started once more with it.
    let env = [
        ("BUSBAR_AUTH_ENABLED", "true"),
        ("BUSBAR_AUTH_SUPER_USERS", "admin"),
    ];
    let s = Server::start(single.path(), &[], &env);
    let acl = json!({"resource_type": "TOPIC", "resource_name": "a", "principal": "User:alice",
                     "operation": "READ", "permission": "ALLOW"});
    let basic = format!("Basic {}", base64_of("admin:admin-secret-1"));
    let headers = [
        ("content-type", "application/json"),
        ("authorization", basic.as_str()),
    ];
    let body = acl.to_string().into_bytes();
    let r = busbar_testkit::http::request(s.addr, "POST", "/acls", &headers, &body).unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(s.stop(), 0);
    let (code, out, err) = import(single.path(), &url);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("imported 2 topics, 3 partitions") && out.contains("102 offsets"),
        "{out}"
    );
    assert!(
        out.contains("rows of users, ACLs, quotas and schemas (0 kept"),
        "{out}"
    );
    // Again: the names are taken, nothing changes.
    let (code, _, err) = import(single.path(), &url);
    assert_ne!(code, 0);
    assert!(
        err.contains("a, b") && err.contains("nothing was imported"),
        "{err}"
    );
    // One batch per publish request.
    assert_eq!(pg.psql("import", "SELECT count(*) FROM batches"), "101");
    // Two brokers read every event at its offset, and go on from the end.
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let b1 = broker(&url, 1, d1.path());
    let b2 = broker(&url, 2, d2.path());
    for (i, (t, p)) in [("a", 0), ("a", 1), ("b", 0)].iter().enumerate() {
        eventually("the imported events are read", || {
            events(&b2, t, *p) == before[i]
        });
        assert_eq!(events(&b1, t, *p), before[i]);
    }
    let (st, r) = publish(&b1, "b", json!([{"value": "three"}]));
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["offsets"][0]["offset"], 2, "{r}");
    // The user, the ACL, the quota and the schema are the cluster's.
    for (path, n) in [("users", 2), ("quotas", 1)] {
        let (st, r) = b2.http("GET", &format!("/{path}"), None);
        assert_eq!(st, 200, "{r}");
        assert_eq!(r[path].as_array().map(Vec::len), Some(n), "{path}: {r}");
    }
    // (ACLs are not listed while authentication is off.)
    let acls = pg.psql(
        "import",
        "SELECT count(*) FROM kv_rows WHERE space = 'acls'",
    );
    assert_eq!(acls, "1");
    let (st, r) = b1.http("GET", "/schema-registry/schemas/ids/1", None);
    assert_eq!((st, r["schema"].as_str()), (200, Some("\"string\"")), "{r}");
    // The group's commits are the cluster's.
    assert_eq!(
        pg.psql(
            "import",
            "SELECT string_agg(topic || '/' || partition || '@' || committed_offset, ' ' \
             ORDER BY partition) FROM group_offsets WHERE group_id = 'g'"
        ),
        "a/0@3 a/1@3"
    );
    // A group of the import with a live coordinator in the cluster (its lease row, as a broker
    // holding it writes it) would not see the imported commits: refused, nothing written.
    let live = pg.create_db("live");
    // (An empty directory's import only brings the database's schema.)
    let empty = tempfile::tempdir().unwrap();
    let (code, out, err) = import(empty.path(), &live);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("imported 0 topics"), "{out}");
    pg.psql(
        "live",
        "INSERT INTO leases (kind, name, holder, holder_instance, expires_at) \
         VALUES ('group', 'g', 9, 'other', now() + interval '1 minute')",
    );
    let (code, _, err) = import(single.path(), &live);
    assert_ne!(code, 0);
    assert!(err.contains("groups are active in the cluster: g"), "{err}");
    assert_eq!(pg.psql("live", "SELECT count(*) FROM topics"), "0");
    // The cluster's own rows win: a user it has under the same name is kept (and counted);
    // schemas are refused while its registry has any (the ids would collide), nothing written.
    pg.psql("live", "DELETE FROM leases");
    pg.psql(
        "live",
        "INSERT INTO kv_spaces VALUES ('users', 1), ('schemas', 1); \
         INSERT INTO kv_rows VALUES ('users', 'alice', 1, 'theirs'), ('schemas', 'x', 2, 'y')",
    );
    let (code, _, err) = import(single.path(), &live);
    assert_ne!(code, 0);
    assert!(err.contains("schema registry has schemas already"), "{err}");
    assert_eq!(pg.psql("live", "SELECT count(*) FROM topics"), "0");
    pg.psql("live", "DELETE FROM kv_rows WHERE space = 'schemas'");
    let (code, out, err) = import(single.path(), &live);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(1 kept"), "{out}");
    let alice = "SELECT convert_from(value, 'UTF8') FROM kv_rows WHERE space = 'users' \
                 AND key = 'alice'";
    assert_eq!(pg.psql("live", alice), "theirs");
    // The directory is left a single node's: it still serves on its own.
    let s = Server::start(single.path(), &[], &[]);
    assert_eq!(events(&s, "b", 0), before[2]);
    // Without a cold tier, an import past hot_bytes_max is refused (nothing would drain it).
    let (st, _) = s.http("POST", "/topics", Some(json!({"name": "big"})));
    assert_eq!(st, 201);
    let kib = "x".repeat(1024);
    for _ in 0..12 {
        let batch: Vec<Value> = (0..100).map(|_| json!({"value": kib})).collect();
        assert_eq!(publish(&s, "big", json!(batch)).0, 200);
    }
    assert_eq!(s.stop(), 0);
    let capped = pg.create_db("capped");
    let (code, _, err) = import_with(
        single.path(),
        &capped,
        &[("BUSBAR_CLUSTER_HOT_BYTES_MAX", "1048576")],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("hot_bytes_max") && err.contains("no cold tier"),
        "{err}"
    );
    assert_eq!(pg.psql("capped", "SELECT count(*) FROM topics"), "0");
    // A partition whose start moved (DeleteRecords; "big" has batches of 100) starts there in
    // the cluster, also inside a batch (the batch is kept, its records below the start hidden).
    let trim = |s: &Server, topic: &str, before: u64| {
        let path = format!("/topics/{topic}/partitions/0/delete-records");
        let (st, r) = s.http("POST", &path, Some(json!({ "before_offset": before })));
        assert_eq!(st, 200, "{r}");
    };
    let s = Server::start(single.path(), &[], &[]);
    trim(&s, "big", 150);
    assert_eq!(s.stop(), 0);
    let other = pg.create_db("trimmed");
    let (code, out, err) = import(single.path(), &other);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("imported 3 topics"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&other, 1, dir.path());
    let (st, r) = b.http("GET", "/topics/b/partitions/0/events?limit=1000", None);
    assert_eq!(st, 200, "{r}");
    let from_start: Vec<(u64, String, String)> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let key = e["key"].as_str().unwrap_or("").to_string();
            (e["offset"].as_u64().unwrap(), key, e["value"].to_string())
        })
        .collect();
    assert_eq!(from_start, before[2]);
    // The copy starts over at the cluster's start (the read first catches it up).
    let (st, r) = b.http("GET", "/topics/big/partitions/0/events?limit=1", None);
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["events"][0]["offset"], 150, "{r}");
    let (_, r) = b.http("GET", "/topics/big", None);
    assert_eq!(r["partitions"][0]["log_start_offset"], 150, "{r}");
    let row = "SELECT log_start, deleted_below FROM partitions p JOIN topics t \
               ON t.id = p.topic_id WHERE t.name = 'big'";
    assert_eq!(pg.psql("trimmed", row), "100|150");
    assert_eq!(r["partitions"][0]["high_watermark"], 1200, "{r}");
}

/// Standard base64 of `s` (an HTTP Basic credential).
fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `bus.subscriptions_max` bounds the cluster's subscriptions, not each broker's view of them:
/// creates sent to two brokers at once stop at the limit (counted inside each create's
/// transaction); the rest are refused with 409 `limit_reached` and leave nothing behind.
#[test]
fn subscriptions_max_holds_across_brokers_creating_at_once() {
    let pg = TestPostgres::start();
    let url = pg.create_db("subsmax");
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let env = [("BUSBAR_BUS_SUBSCRIPTIONS_MAX", "3")];
    let brokers: Vec<Server> = (0..2)
        .map(|i| {
            let node = (i + 1).to_string();
            Server::start(
                dirs[i].path(),
                &["--cluster", &url, "--node-id", &node],
                &env,
            )
        })
        .collect();
    let addrs: Vec<std::net::SocketAddr> = brokers.iter().map(|s| s.addr).collect();
    let topic = json!({"name": "src", "partitions": 1});
    assert_eq!(call(addrs[0], "POST", "/topics", Some(topic)).0, 201);
    eventually("the topic reaches broker 2", || {
        call(addrs[1], "GET", "/topics/src", None).0 == 200
    });
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..8)
            .map(|i| {
                let addr = addrs[i % 2];
                scope.spawn(move || {
                    let spec = json!({"name": format!("s{i}"), "sources": ["src"],
                                      "target": {"url": "http://127.0.0.1:9/"}});
                    call(addr, "POST", "/subscriptions", Some(spec))
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let made = answers.iter().filter(|(st, _)| *st == 201).count();
    assert_eq!(made, 3, "{answers:?}");
    for (st, v) in answers.iter().filter(|(st, _)| *st != 201) {
        assert_eq!(
            (*st, v["error"]["code"].as_str()),
            (409, Some("limit_reached")),
            "{v}"
        );
    }
    for addr in &addrs {
        eventually("every broker lists the three", || {
            let (_, list) = call(*addr, "GET", "/subscriptions", None);
            list["subscriptions"].as_array().map(Vec::len) == Some(3)
        });
    }
}

/// (high watermark, bytes of the local copy) of each partition of `topic` as `s` describes it.
fn copies(s: &Server, topic: &str) -> Vec<(u64, u64)> {
    let (st, r) = s.http("GET", &format!("/topics/{topic}"), None);
    assert_eq!(st, 200, "{r}");
    r["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let n = |k: &str| p[k].as_u64().unwrap();
            (n("high_watermark"), n("size_bytes"))
        })
        .collect()
}

/// A broker applies commits at once only to the partitions it leads (rendezvous hashing, as
/// Metadata answers) or serves: a partition published through another broker stays unread
/// there (an empty local copy) while its end is reported, and the first read catches it up.
#[test]
fn copies_of_partitions_a_broker_neither_leads_nor_serves_catch_up_when_read() {
    let pg = TestPostgres::start();
    let url = pg.create_db("lazy");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let brokers: Vec<Server> = (0..3)
        .map(|i| broker(&url, i + 1, dirs[i as usize].path()))
        .collect();
    let partitions = 12u32;
    let (st, r) = brokers[0].http(
        "POST",
        "/topics",
        Some(json!({"name": "lazy", "partitions": partitions})),
    );
    assert_eq!(st, 201, "{r}");
    for b in &brokers[1..] {
        eventually("the topic reaches every broker", || {
            b.http("GET", "/topics/lazy", None).0 == 200
        });
    }
    for p in 0..partitions {
        let events: Vec<Value> = (0..5)
            .map(|n| json!({"partition": p, "value": n}))
            .collect();
        let (st, r) = publish(&brokers[0], "lazy", Value::Array(events));
        assert_eq!(st, 200, "{r}");
    }
    // Every broker reports every partition's end; brokers 2 and 3 hold copies only of those
    // they lead (about a third each), the rest empty (a segment header), as broker 1 holds all.
    for b in &brokers[1..] {
        let full = copies(&brokers[0], "lazy");
        eventually("every end is heard", || {
            copies(b, "lazy")
                .iter()
                .zip(&full)
                .all(|(mine, all)| mine.0 == all.0)
        });
        let view = copies(b, "lazy");
        let lazy: Vec<u32> = (0..partitions)
            .filter(|p| view[*p as usize].1 < full[*p as usize].1)
            .collect();
        let held = partitions as usize - lazy.len();
        assert!(
            !lazy.is_empty() && held >= 1,
            "{held} of {partitions} copies held: {view:?}"
        );
        // The first read answers everything, and the copy is then held.
        let p = lazy[0] as usize;
        let got = events(b, "lazy", p as u32);
        assert_eq!(got.len() as u64, full[p].0, "{got:?}");
        assert_eq!(copies(b, "lazy")[p].1, full[p].1);
        // Read, the partition is kept current: a new event is applied without a read.
        let size = copies(b, "lazy")[p].1;
        let (st, r) = publish(&brokers[0], "lazy", json!([{"partition": p, "value": 9}]));
        assert_eq!(st, 200, "{r}");
        eventually("a served partition is applied as it commits", || {
            copies(b, "lazy")[p].1 > size
        });
    }
}

/// DeleteRecords on the hot tier (no object store): the batches wholly below the offset are
/// deleted and the partition's hot bytes lowered by theirs; the batch holding the offset is
/// kept, its records below it hidden on every broker. A second delete at a lower offset and
/// one on an unknown partition change nothing.
#[test]
fn delete_records_deletes_hot_batches_below_it_on_every_broker() {
    let pg = TestPostgres::start();
    let url = pg.create_db("hot");
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let brokers: Vec<Server> = (0..2)
        .map(|i| broker(&url, i + 1, dirs[i as usize].path()))
        .collect();
    let (st, r) = brokers[0].http("POST", "/topics", Some(json!({"name": "h"})));
    assert_eq!(st, 201, "{r}");
    eventually("the topic reaches broker 2", || {
        brokers[1].http("GET", "/topics/h", None).0 == 200
    });
    for b in 0..30u64 {
        let batch: Vec<Value> = (b * 10..b * 10 + 10).map(|i| json!({"value": i})).collect();
        assert_eq!(publish(&brokers[b as usize % 2], "h", json!(batch)).0, 200);
    }
    let all = events(&brokers[1], "h", 0);
    assert_eq!(all.len(), 300);
    let path = "/topics/h/partitions/0/delete-records";
    let (st, r) = brokers[1].http("POST", path, Some(json!({"before_offset": 155})));
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["log_start_offset"], 155, "{r}");
    let q = "SELECT count(*), min(base_offset), sum(size) = (SELECT hot_bytes FROM partitions), \
             (SELECT log_start || '/' || deleted_below FROM partitions) FROM batches";
    assert_eq!(pg.psql("hot", q), "15|150|t|150/155");
    for b in &brokers {
        eventually("the copy starts at 155", || {
            b.http("GET", "/topics/h/partitions/0/events?offset=154", None)
                .0
                == 416
        });
        let (st, r) = b.http("GET", "/topics/h/partitions/0/events?limit=1000", None);
        assert_eq!(st, 200, "{r}");
        let offsets: Vec<u64> = (r["events"].as_array().unwrap().iter())
            .map(|e| e["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(offsets, (155..300).collect::<Vec<_>>());
    }
    let (st, r) = brokers[0].http("POST", path, Some(json!({"before_offset": 20})));
    assert_eq!(
        (st, r["log_start_offset"].as_u64()),
        (200, Some(155)),
        "{r}"
    );
    let (st, r) = brokers[0].http(
        "POST",
        "/topics/h/partitions/7/delete-records",
        Some(json!({"before_offset": 1})),
    );
    assert_eq!(st, 404, "{r}");
    assert_eq!(pg.psql("hot", q), "15|150|t|150/155");
}

/// A subscription with a topic target in cluster mode: its deliveries go out in transactions
/// of its own transactional id, committed with its positions; the kill -9 of its runner while
/// events flow moves it (and its transactional id) to another broker, which settles the
/// transaction the dead one left and goes on. The target topic, read committed on every broker,
/// holds each source event exactly once, in each key's order. A reset to the earliest offsets
/// on another broker delivers each event once more, exactly. Deleting the subscription forgets
/// its transactional id.
#[test]
fn a_topic_target_delivers_each_event_once_across_the_kill_of_its_runner() {
    let pg = TestPostgres::start();
    let url = pg.create_db("eos");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut brokers: Vec<Option<Server>> = (0..3)
        .map(|i| Some(broker(&url, i as u32 + 1, dirs[i].path())))
        .collect();
    let addrs: Vec<std::net::SocketAddr> = brokers.iter().flatten().map(|s| s.addr).collect();
    create_everywhere(&addrs, &[("in", 3), ("out", 1)]);
    let spec = json!({"name": "copy", "sources": ["in"], "target": {"topic": "out"}});
    let (st, r) = call(addrs[1], "POST", "/subscriptions", Some(spec));
    assert_eq!(st, 201, "{r}");
    assert_eq!(r["guarantee"], "exactly_once", "{r}");
    eventually("one broker runs it", || runner(&addrs, "copy").is_some());
    let first = runner(&addrs, "copy").unwrap();
    let publisher = addrs[(first + 1) % 3];
    let (total, keys) = (600u64, 6u64);
    let out_count = |a: std::net::SocketAddr| {
        let (_, r) = call(a, "GET", "/topics/out", None);
        r["partitions"][0]["high_watermark"].as_u64().unwrap_or(0)
    };
    for n in 0..total {
        let key = format!("k{}", n % keys);
        let event = json!([{"key": key, "value": {"key": key, "n": n}}]);
        let (st, r) = call(publisher, "POST", "/topics/in/events", Some(event));
        assert_eq!(st, 200, "{r}");
        if n == total / 2 {
            eventually("deliveries flow", || out_count(publisher) >= 100);
            brokers[first].take().unwrap().kill9();
        }
    }
    let live: Vec<std::net::SocketAddr> = brokers.iter().flatten().map(|s| s.addr).collect();
    // Read committed (HTTP reads stop at the last stable offset), past the markers' offsets.
    let committed = |a: std::net::SocketAddr| -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let path = format!("/topics/out/partitions/0/events?offset={at}&limit=1000");
            let (st, r) = call(a, "GET", &path, None);
            assert_eq!(st, 200, "{r}");
            let got = r["events"].as_array().unwrap();
            let Some(last) = got.last() else {
                return out;
            };
            for e in got {
                let key = e["key"].as_str().unwrap().to_string();
                out.push((key, e["value"]["n"].as_u64().unwrap()));
            }
            at = last["offset"].as_u64().unwrap() + 1;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let got = loop {
        let got = committed(live[0]);
        if got.len() >= total as usize || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut seen: Vec<u64> = got.iter().map(|(_, n)| *n).collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..total).collect::<Vec<_>>(),
        "each event exactly once"
    );
    for k in 0..keys {
        let of_key: Vec<u64> = (got.iter())
            .filter(|(key, _)| *key == format!("k{k}"))
            .map(|(_, n)| *n)
            .collect();
        assert!(of_key.windows(2).all(|w| w[0] < w[1]), "k{k}: {of_key:?}");
    }
    assert_eq!(committed(live[1]), got, "every broker reads the same");
    let i = runner(&live, "copy").expect("a live broker runs it");
    assert_ne!(live[i], addrs[first]);
    // A reset to the earliest offsets on the broker that does not run it: the runner stops,
    // hands its transactional id over, and the subscription runs again from the start, so
    // the target holds each event exactly twice.
    let (st, r) = call(
        live[1 - i],
        "POST",
        "/subscriptions/copy/reset",
        Some(json!({"to": "earliest"})),
    );
    assert_eq!(st, 200, "{r}");
    let deadline = Instant::now() + Duration::from_secs(90);
    let again = loop {
        let got = committed(live[1 - i]);
        if got.len() >= 2 * total as usize || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut twice: Vec<u64> = again.iter().map(|(_, n)| *n).collect();
    twice.sort_unstable();
    let want: Vec<u64> = (0..total).flat_map(|n| [n, n]).collect();
    assert_eq!(twice, want, "each event exactly twice after the reset");
    eventually("it runs again after the reset", || {
        runner(&live, "copy").is_some()
    });
    let i = runner(&live, "copy").unwrap();
    // Deleted on the broker that does not run it: the runner stops and forgets its
    // transactional id.
    let ids = "SELECT count(*) FROM txns WHERE transactional_id = '__busbar.subscription.copy'";
    assert_eq!(pg.psql("eos", ids), "1");
    let (st, r) = call(live[1 - i], "DELETE", "/subscriptions/copy", None);
    assert_eq!(st, 204, "{r}");
    eventually("the transactional id is forgotten", || {
        pg.psql("eos", ids) == "0"
    });
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.unwrap().as_millis() as i64
}

/// The letters listed in `dead` by `a`.
fn letters_on(a: std::net::SocketAddr) -> Vec<Value> {
    let (st, v) = call(a, "GET", "/dead-letters/dead", None);
    assert_eq!(st, 200, "{v}");
    v["dead_letters"].as_array().cloned().unwrap_or_default()
}

/// How many times `n` was delivered, and how many of those were replays.
fn deliveries(got: &[busbar_testkit::target::Received], n: i64) -> (usize, usize) {
    let of_n: Vec<_> = got.iter().filter(|r| r.json()["n"] == n).collect();
    let replays = of_n
        .iter()
        .filter(|r| r.header("ce-busbarreplay").is_some())
        .count();
    (of_n.len(), replays)
}

#[test]
fn replay_and_redrive_work_from_any_broker_and_a_replay_goes_on_after_its_runner_dies() {
    use busbar_testkit::target::{Reply, Target};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let pg = TestPostgres::start();
    let url = pg.create_db("replay");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut brokers: Vec<Option<Server>> = (0..3)
        .map(|i| Some(broker(&url, i as u32 + 1, dirs[i].path())))
        .collect();
    let addrs: Vec<std::net::SocketAddr> = brokers.iter().flatten().map(|s| s.addr).collect();
    create_everywhere(&addrs, &[("orders", 2), ("dead", 1)]);
    // Events marked bad are refused (400: dead-lettered at once) until `refuse` is cleared.
    let refuse = Arc::new(AtomicBool::new(true));
    let refusing = refuse.clone();
    let t = Target::start(move |r, _| {
        if r.json()["bad"] == true && refusing.load(Ordering::SeqCst) {
            Reply::Status(400)
        } else {
            Reply::Status(200)
        }
    });
    let spec = json!({"name": "s", "sources": ["orders"], "target": {"url": t.url("/s")},
                      "dead_letter_topic": "dead"});
    let (st, r) = call(addrs[1], "POST", "/subscriptions", Some(spec));
    assert_eq!(st, 201, "{r}");
    eventually("one broker runs it", || runner(&addrs, "s").is_some());
    let from = busbar_http::time::format_rfc3339(now_ms() - 1000);
    let total = 60i64;
    let events: Vec<Value> = (0..total)
        .map(|n| json!({"key": format!("k{}", n % 4), "value": {"n": n, "bad": n % 6 == 0}}))
        .collect();
    let (st, r) = call(
        addrs[0],
        "POST",
        "/topics/orders/events",
        Some(json!(events)),
    );
    assert_eq!(st, 200, "{r}");
    eventually("10 letters, listed on every broker", || {
        let n: Vec<usize> = addrs.iter().map(|a| letters_on(*a).len()).collect();
        eprintln!("letters {n:?}, delivered {}", t.received().len());
        n.iter().all(|n| *n == 10)
    });

    // Redrive on a broker that does not run the subscription: asked of its runner.
    let runs = runner(&addrs, "s").unwrap();
    let other = addrs[(runs + 1) % 3];
    refuse.store(false, Ordering::SeqCst);
    let (st, v) = call(other, "POST", "/dead-letters/dead/redrive", Some(json!({})));
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["redriven"].as_u64(), v["skipped"].as_u64()),
        (Some(10), Some(0)),
        "{v}"
    );
    assert_eq!(v["by_subscription"]["s"], 10, "{v}");
    let bad: Vec<i64> = (0..total).filter(|n| n % 6 == 0).collect();
    t.wait(Duration::from_secs(60), |got| {
        bad.iter().all(|n| deliveries(got, *n).0 == 2)
    });
    // Again, on the runner and on the third broker: skipped, and every broker lists them
    // redriven.
    for a in [addrs[runs], addrs[(runs + 2) % 3]] {
        let (st, v) = call(a, "POST", "/dead-letters/dead/redrive", Some(json!({})));
        assert_eq!(st, 200, "{v}");
        assert_eq!(
            (v["redriven"].as_u64(), v["skipped"].as_u64()),
            (Some(0), Some(10)),
            "{v}"
        );
    }
    for a in &addrs {
        let listed = letters_on(*a);
        assert!(
            listed.iter().all(|d| d["redriven_at"].is_string()),
            "{listed:?}"
        );
    }

    // A replay started on a broker that does not run the subscription runs on its runner, and
    // goes on on the next broker when its runner is killed.
    std::thread::sleep(Duration::from_millis(1100));
    let to = busbar_http::time::format_rfc3339(now_ms() - 100);
    let replay = json!({"name": "again", "from": from, "to": to, "rate": 10});
    let (st, v) = call(other, "POST", "/subscriptions/s/replays", Some(replay));
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["state"], "RUNNING", "{v}");
    let replayed = |got: &[busbar_testkit::target::Received]| {
        (0..total).filter(|n| deliveries(got, *n).1 > 0).count()
    };
    t.wait(Duration::from_secs(60), |got| replayed(got) >= 15);
    let (st, v) = call(other, "GET", "/subscriptions/s/replays/again", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["state"], "RUNNING", "{v}");
    brokers[runs].take().unwrap().kill9();
    let live: Vec<std::net::SocketAddr> = brokers.iter().flatten().map(|s| s.addr).collect();
    t.wait(Duration::from_secs(60), |got| {
        replayed(got) == total as usize
    });
    eventually("the run completes, as every broker shows", || {
        live.iter().all(|a| {
            call(*a, "GET", "/subscriptions/s/replays/again", None).1["state"] == "COMPLETED"
        })
    });

    // A cancel on a broker that does not run it.
    let runs = runner(&live, "s").expect("a live broker runs it");
    let other = live[(runs + 1) % 2];
    let slow = json!({"name": "slow", "from": from, "to": to, "rate": 1});
    let (st, v) = call(other, "POST", "/subscriptions/s/replays", Some(slow));
    assert_eq!(st, 202, "{v}");
    let (st, v) = call(other, "DELETE", "/subscriptions/s/replays/slow", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["state"], "CANCELLED", "{v}");
    let (_, v) = call(live[runs], "GET", "/subscriptions/s/replays/slow", None);
    assert_eq!(v["state"], "CANCELLED", "{v}");
    // Bad input is refused before anything is asked: an unknown run, a range in the future.
    let (st, v) = call(other, "DELETE", "/subscriptions/s/replays/nope", None);
    assert_eq!(st, 404, "{v}");
    let future = busbar_http::time::format_rfc3339(now_ms() + 60_000);
    let later = json!({"name": "x", "from": from, "to": future});
    let (st, v) = call(other, "POST", "/subscriptions/s/replays", Some(later));
    assert_eq!(st, 400, "{v}");

    // A forced redrive of a paused subscription (no broker runs it) is written under its lease
    // taken for the write, and delivered once it is resumed.
    let (st, v) = call(other, "POST", "/subscriptions/s/pause", None);
    assert_eq!(st, 200, "{v}");
    eventually("paused everywhere", || {
        states(&live, "s").iter().all(|s| *s == "paused")
    });
    let body = json!({"subscription": "s", "force": true});
    let (st, v) = call(live[runs], "POST", "/dead-letters/dead/redrive", Some(body));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["redriven"], 10, "{v}");
    std::thread::sleep(Duration::from_millis(500));
    let got = t.received();
    assert!(bad
        .iter()
        .all(|n| deliveries(&got, *n).0 - deliveries(&got, *n).1 == 2));
    let (st, v) = call(other, "POST", "/subscriptions/s/resume", None);
    assert_eq!(st, 200, "{v}");
    t.wait(Duration::from_secs(60), |got| {
        bad.iter()
            .all(|n| deliveries(got, *n).0 - deliveries(got, *n).1 == 3)
    });

    // A runner that shuts down cleanly hands its replay over: the other broker finishes it.
    eventually("one broker runs it again", || runner(&live, "s").is_some());
    let runs = runner(&live, "s").unwrap();
    let stays = live[(runs + 1) % 2];
    let replay = json!({"name": "handover", "from": from, "to": to, "rate": 20});
    let (st, v) = call(stays, "POST", "/subscriptions/s/replays", Some(replay));
    assert_eq!(st, 202, "{v}");
    let handed = |got: &[busbar_testkit::target::Received]| {
        let of_run = got
            .iter()
            .filter(|r| r.header("ce-busbarreplay") == Some("handover"));
        of_run
            .map(|r| r.json()["n"].as_i64())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    t.wait(Duration::from_secs(60), |got| handed(got) >= 10);
    let b = brokers
        .iter()
        .position(|b| b.as_ref().is_some_and(|s| s.addr == live[runs]));
    assert_eq!(brokers[b.unwrap()].take().unwrap().stop(), 0);
    t.wait(Duration::from_secs(60), |got| handed(got) == total as usize);
    eventually("the handed-over run completes", || {
        call(stays, "GET", "/subscriptions/s/replays/handover", None).1["state"] == "COMPLETED"
    });

    // A run whose subscription is paused (and resumed) while its runner is dead does not go on
    // on the next runner: the pause would have stopped it.
    eventually("the last broker runs it", || {
        runner(&[stays], "s").is_some()
    });
    let dir4 = tempfile::tempdir().unwrap();
    let fourth = broker(&url, 4, dir4.path());
    let replay = json!({"name": "orphan", "from": from, "to": to, "rate": 2});
    let (st, v) = call(stays, "POST", "/subscriptions/s/replays", Some(replay));
    assert_eq!(st, 202, "{v}");
    let orphans = |got: &[busbar_testkit::target::Received]| {
        (got.iter())
            .filter(|r| r.header("ce-busbarreplay") == Some("orphan"))
            .count()
    };
    t.wait(Duration::from_secs(60), |got| orphans(got) >= 1);
    let b = brokers
        .iter()
        .position(|b| b.as_ref().is_some_and(|s| s.addr == stays));
    brokers[b.unwrap()].take().unwrap().kill9();
    for what in ["pause", "resume"] {
        let (st, v) = call(
            fourth.addr,
            "POST",
            &format!("/subscriptions/s/{what}"),
            None,
        );
        assert_eq!(st, 200, "{v}");
    }
    eventually("the fourth broker runs it", || {
        runner(&[fourth.addr], "s").is_some()
    });
    let (_, v) = call(fourth.addr, "GET", "/subscriptions/s/replays/orphan", None);
    assert_eq!(v["state"], "STOPPED", "{v}");
    let stopped_at = orphans(&t.received());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(orphans(&t.received()), stopped_at, "the paused run went on");
    let stays = fourth.addr;

    // Deleting the subscription on its runner ends its runs there.
    let replay = json!({"name": "doomed", "from": from, "to": to, "rate": 5});
    let (st, v) = call(stays, "POST", "/subscriptions/s/replays", Some(replay));
    assert_eq!(st, 202, "{v}");
    let doomed = |got: &[busbar_testkit::target::Received]| {
        (got.iter())
            .filter(|r| r.header("ce-busbarreplay") == Some("doomed"))
            .count()
    };
    t.wait(Duration::from_secs(60), |got| doomed(got) >= 2);
    let (st, v) = call(stays, "DELETE", "/subscriptions/s", None);
    assert_eq!(st, 204, "{v}");
    std::thread::sleep(Duration::from_millis(500));
    let after_delete = doomed(&t.received());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        doomed(&t.received()),
        after_delete,
        "a deleted subscription's run goes on"
    );
}

/// Sends `signal` (`STOP`, `CONT`) to broker `s`.
fn signal(s: &Server, signal: &str) {
    let pid = s.child.id().to_string();
    let ok = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn a_subscription_paused_by_a_reset_whose_broker_dies_runs_again() {
    use busbar_testkit::target::Target;
    let pg = TestPostgres::start();
    let url = pg.create_db("orphan_reset");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut brokers: Vec<Option<Server>> = (0..3)
        .map(|i| Some(broker(&url, i as u32 + 1, dirs[i].path())))
        .collect();
    let addrs: Vec<std::net::SocketAddr> = brokers.iter().flatten().map(|s| s.addr).collect();
    create_everywhere(&addrs, &[("orders", 1)]);
    let t = Target::ok();
    let spec = json!({"name": "s", "sources": ["orders"], "target": {"url": t.url("/s")}});
    let (st, r) = call(addrs[0], "POST", "/subscriptions", Some(spec));
    assert_eq!(st, 201, "{r}");
    eventually("one broker runs it", || runner(&addrs, "s").is_some());
    let runs = runner(&addrs, "s").unwrap();
    let (resetter, watcher) = ((runs + 1) % 3, (runs + 2) % 3);
    // The runner is frozen, so the reset waits for its lease; its broker dies meanwhile.
    signal(brokers[runs].as_ref().unwrap(), "STOP");
    let at = addrs[resetter];
    let reset = std::thread::spawn(move || {
        call(
            at,
            "POST",
            "/subscriptions/s/reset",
            Some(json!({"to": "earliest"})),
        )
    });
    eventually("the reset paused it", || {
        call(addrs[watcher], "GET", "/subscriptions/s", None).1["state"] == "paused"
    });
    brokers[resetter].take().unwrap().kill9();
    let _ = reset.join();
    signal(brokers[runs].as_ref().unwrap(), "CONT");
    let live = [addrs[runs], addrs[watcher]];
    let deadline = Instant::now() + Duration::from_secs(40);
    // Both brokers agree it is not paused, and one runs it (right after its thaw the runner
    // may still show its old state: the watcher's view is the cluster's record).
    let resumed = || {
        let now = states(&live, "s");
        now.iter().any(|s| *s == "running") && now.iter().all(|s| *s != "paused")
    };
    while !resumed() {
        assert!(
            Instant::now() < deadline,
            "still paused: {:?}",
            states(&live, "s")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // It delivers again.
    let (st, r) = call(
        live[1],
        "POST",
        "/topics/orders/events",
        Some(json!([{"value": 1}])),
    );
    assert_eq!(st, 200, "{r}");
    t.wait(Duration::from_secs(30), |got| !got.is_empty());
    // A reset whose client goes away while it waits is seen through all the same: the
    // subscription runs again once the reset is done.
    let runs = (0..2)
        .find(|i| states(&live, "s")[*i] == "running")
        .unwrap();
    let frozen = brokers
        .iter()
        .flatten()
        .find(|b| b.addr == live[runs])
        .unwrap();
    signal(frozen, "STOP");
    let body = json!({"to": "earliest"}).to_string();
    let mut conn = std::net::TcpStream::connect(live[1 - runs]).unwrap();
    let head = format!(
        "POST /subscriptions/s/reset HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    std::io::Write::write_all(&mut conn, head.as_bytes()).unwrap();
    eventually("the reset paused it", || {
        call(live[1 - runs], "GET", "/subscriptions/s", None).1["state"] == "paused"
    });
    drop(conn);
    std::thread::sleep(Duration::from_millis(300));
    signal(frozen, "CONT");
    let deadline = Instant::now() + Duration::from_secs(40);
    while !resumed() {
        let now = states(&live, "s");
        assert!(Instant::now() < deadline, "left paused: {now:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A user's pause is never undone that way.
    let (st, r) = call(live[0], "POST", "/subscriptions/s/pause", None);
    assert_eq!(st, 200, "{r}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(states(&live, "s").iter().all(|s| *s == "paused"));
}
