//! Cluster mode's cold tier (issue 20) through the real binary on a real PostgreSQL and a real
//! S3 server (SeaweedFS, `busbar_testkit::s3`): committed batches move from the database into
//! segment objects (the local log's format); a broker started on an empty data directory reads
//! them back; a deleted topic's objects are deleted; with the object store down for 30 s the hot
//! tier grows to its cap, produce is refused retriably, and once the store is back the uploads
//! drain it; the history checker finds no anomaly; retention deletes old objects and copies
//! behind the new log start start over there; DeleteRecords deletes the objects below its
//! offset and every copy follows.

mod common;

use busbar_testkit::postgres::TestPostgres;
use busbar_testkit::s3::TestS3;
use common::cluster::{converge_and_check, create_topic, drain, load_padded, Node, TOPIC};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const BUCKET: &str = "busbar-cold";

/// The environment of a broker with a cold tier under `prefix`, small uploads.
fn cold_env(
    s3: &TestS3,
    prefix: &str,
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut env = s3.env();
    env.push((
        "BUSBAR_CLUSTER_OBJECT_STORE_URL",
        format!("s3://{BUCKET}/{prefix}"),
    ));
    env.push(("BUSBAR_CLUSTER_UPLOAD_BYTES", "65536".into()));
    env.push(("BUSBAR_CLUSTER_UPLOAD_AFTER_MS", "300".into()));
    env.extend_from_slice(extra);
    env
}

fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn count(pg: &TestPostgres, db: &str, sql: &str) -> u64 {
    pg.psql(db, sql).parse().unwrap_or(0)
}

#[test]
fn batches_move_to_segment_objects_and_a_new_broker_reads_them_back() {
    let pg = TestPostgres::start();
    let url = pg.create_db("cold");
    let s3 = TestS3::start();
    let env = cold_env(&s3, "c1", &[]);
    let mut nodes: Vec<Node> = (1..=2).map(|i| Node::with_env(i, &url, &env)).collect();
    create_topic(&nodes);
    let (history, stop, threads) = load_padded(&nodes, 200);
    eventually("objects are written", 60, || {
        count(&pg, "cold", "SELECT count(*) FROM objects") >= 6
    });
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    // Everything moves out of the database within upload_after_ms (plus a round).
    eventually("the hot tier empties", 30, || {
        count(&pg, "cold", "SELECT count(*) FROM batches") == 0
    });
    assert_eq!(
        pg.psql("cold", "SELECT coalesce(sum(hot_bytes), 0) FROM partitions"),
        "0"
    );
    // The rows name exactly the objects in the store, each a segment of the local log's format.
    let rows = pg.psql("cold", "SELECT key FROM objects ORDER BY key");
    let keys: Vec<String> = rows.lines().map(str::to_string).collect();
    assert_eq!(s3.objects(BUCKET, "c1"), keys);
    for k in &keys {
        assert!(k.starts_with("c1/") && k.ends_with(".seg"), "{k}");
        let bytes = s3.object(BUCKET, k).unwrap();
        assert_eq!(&bytes[..8], b"BBSEGLOG", "{k}");
    }
    // Leftovers of failed uploads (a run cut differently, a deleted topic's) are swept from
    // the store; a key of another form is left alone.
    let first = pg.psql(
        "cold",
        "SELECT topic_id, partition, base_offset FROM objects ORDER BY 1, 2, 3 LIMIT 1",
    );
    let f: Vec<&str> = first.split('|').collect();
    let base: u64 = f[2].parse().unwrap();
    let cut = format!("c1/{}/{}/{base:020}-{base:020}.seg", f[0], f[1]);
    assert!(!keys.contains(&cut), "{cut} is a real object");
    let gone_topic = format!("c1/{}/0/{:020}-{:020}.seg", "0".repeat(32), 0, 9);
    for stray in [&cut, &gone_topic, &"c1/notes.txt".to_string()] {
        s3.put_object(BUCKET, stray, b"BBSEGLOG and more");
    }
    // (The filer stored them: the one never swept is there.)
    assert!(s3.object(BUCKET, "c1/notes.txt").is_some());
    eventually("the leftovers are swept", 60, || {
        let mut want = keys.clone();
        want.push("c1/notes.txt".into());
        want.sort();
        s3.objects(BUCKET, "c1") == want
    });
    // Offsets are covered once: per partition, objects follow each other with no gap.
    let ranges = pg.psql(
        "cold",
        "SELECT partition, base_offset, last_offset FROM objects ORDER BY 1, 2",
    );
    let mut next = std::collections::HashMap::new();
    for line in ranges.lines() {
        let f: Vec<u64> = line.split('|').map(|x| x.parse().unwrap()).collect();
        let at = next.entry(f[0]).or_insert(0);
        assert_eq!(*at, f[1], "partition {}: {ranges}", f[0]);
        *at = f[2] + 1;
    }
    // A third broker on an empty data directory reads everything back from the objects.
    nodes.push(Node::with_env(3, &url, &env));
    converge_and_check(&nodes, &history.lock().unwrap());
    // A broker without the object store would serve a partition it cannot fill: refused.
    let blind = tempfile::tempdir().unwrap();
    let (code, err) = common::refused_start_with(
        blind.path(),
        &[
            ("BUSBAR_CLUSTER_POSTGRES_URL", &url),
            ("BUSBAR_CLUSTER_NODE_ID", "4"),
        ],
    );
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("cluster.object_store_url"), "{err}");
    // Nor may a broker use another bucket or prefix than the cluster's.
    let mut other: Vec<(&str, String)> = vec![
        ("BUSBAR_CLUSTER_POSTGRES_URL", url.clone()),
        ("BUSBAR_CLUSTER_NODE_ID", "4".into()),
    ];
    other.extend(cold_env(&s3, "elsewhere", &[]));
    let other: Vec<(&str, &str)> = other.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, err) = common::refused_start_with(blind.path(), &other);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("s3://busbar-cold/c1"), "{err}");
    // Deleting the topic deletes its objects from the store.
    let (st, r) =
        common::cluster::http(nodes[0].http, "DELETE", &format!("/topics/{TOPIC}"), None).unwrap();
    assert!(st == 200 || st == 204, "{st} {r}");
    eventually("the deleted topic's objects are gone", 30, || {
        s3.objects(BUCKET, "c1") == ["c1/notes.txt"]
    });
    assert_eq!(count(&pg, "cold", "SELECT count(*) FROM doomed_objects"), 0);
    assert_eq!(count(&pg, "cold", "SELECT count(*) FROM objects"), 0);
}

/// Every (offset, value) of partition 0 of `topic` as broker `addr` serves it, from its log start.
fn events_of(addr: std::net::SocketAddr, topic: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut path = format!("/topics/{topic}/partitions/0/events?limit=1000");
    loop {
        let (st, r) = common::cluster::http(addr, "GET", &path, None).expect("answers");
        assert_eq!(st, 200, "{r}");
        let got = r["events"].as_array().unwrap();
        let Some(last) = got.last() else {
            return out;
        };
        for e in got {
            out.push((e["offset"].as_u64().unwrap(), e["value"].to_string()));
        }
        let next = last["offset"].as_u64().unwrap() + 1;
        path = format!("/topics/{topic}/partitions/0/events?offset={next}&limit=1000");
    }
}

fn log_start_of(addr: std::net::SocketAddr, topic: &str) -> u64 {
    let (_, r) = common::cluster::http(addr, "GET", &format!("/topics/{topic}"), None).unwrap();
    r["partitions"][0]["log_start_offset"].as_u64().unwrap()
}

fn publish(addr: std::net::SocketAddr, topic: &str, from: u64, n: u64, pad: &str) {
    for i in from..from + n {
        let body = serde_json::json!([{"partition": 0, "key": pad, "value": i}]);
        let (st, r) =
            common::cluster::http(addr, "POST", &format!("/topics/{topic}/events"), Some(body))
                .unwrap();
        assert_eq!(st, 200, "{r}");
    }
}

/// `retention.bytes` on a topic deletes its oldest objects (rows, then the objects in the
/// store) and raises the partition's log start; a broker whose copy ends below it (stopped
/// meanwhile) and a broker on an empty data directory start their copies over there and serve
/// the same events as a broker that kept everything.
#[test]
fn retention_deletes_old_objects_and_copies_behind_start_over_at_the_new_start() {
    let pg = TestPostgres::start();
    let url = pg.create_db("retain");
    let s3 = TestS3::start();
    let env = cold_env(&s3, "r1", &[]);
    let mut nodes: Vec<Node> = (1..=2).map(|i| Node::with_env(i, &url, &env)).collect();
    let retention = 300_000u64;
    let (st, r) = common::cluster::http(
        nodes[0].http,
        "POST",
        "/topics",
        Some(serde_json::json!({"name": "r", "partitions": 1,
            "configs": {"retention.bytes": retention.to_string()}})),
    )
    .unwrap();
    assert_eq!(st, 201, "{r}");
    let pad = "p".repeat(1000);
    publish(nodes[0].http, "r", 0, 10, &pad);
    eventually("broker 2 has the first events", 20, || {
        events_of(nodes[1].http, "r").len() == 10
    });
    nodes[1].kill9();
    // About 1 MB: some 16 objects of 64 KiB, of which retention keeps about 300 KB.
    publish(nodes[0].http, "r", 10, 1000, &pad);
    let start = || count(&pg, "retain", "SELECT log_start FROM partitions");
    eventually("retention raises the log start", 60, || start() > 10);
    eventually("the hot tier empties", 30, || {
        count(&pg, "retain", "SELECT count(*) FROM batches") == 0
    });
    eventually(
        "retention settles and the store holds exactly the rows' objects",
        60,
        || {
            let keys = pg.psql("retain", "SELECT key FROM objects ORDER BY key");
            let keys: Vec<String> = keys.lines().map(str::to_string).collect();
            let cold = count(&pg, "retain", "SELECT sum(size) FROM objects");
            let oldest = count(
                &pg,
                "retain",
                "SELECT size FROM objects ORDER BY base_offset LIMIT 1",
            );
            s3.objects(BUCKET, "r1") == keys && cold >= retention && cold - oldest < retention
        },
    );
    let start = start();
    assert_eq!(
        count(&pg, "retain", "SELECT min(base_offset) FROM objects"),
        start,
        "the objects begin at the log start"
    );
    // Broker 1 reads everything from the log start on: all of it when it kept the partition
    // current (led it), from the start when its copy caught up only now (lazy copies).
    let all = events_of(nodes[0].http, "r");
    let kept: Vec<_> = all.iter().filter(|(o, _)| *o >= start).cloned().collect();
    let offsets: Vec<u64> = kept.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (start..1010).collect::<Vec<_>>());
    // Broker 2's copy ends at 10, below the start; broker 3 has no copy at all.
    nodes[1].start();
    nodes.push(Node::with_env(3, &url, &env));
    for n in &nodes[1..] {
        eventually("the copy starts over at the log start", 30, || {
            events_of(n.http, "r") == kept
        });
        assert_eq!(log_start_of(n.http, "r"), start);
    }
    assert!(nodes[1]
        .server
        .as_ref()
        .unwrap()
        .logs_soon("it starts over at"));
    // And they go on: an event published on broker 3 is read everywhere after the rest.
    publish(nodes[2].http, "r", 5000, 1, "k");
    for n in &nodes {
        eventually("the new event is everywhere", 20, || {
            events_of(n.http, "r").last().map(|e| e.0) == Some(1010)
        });
    }
}

/// DeleteRecords in a batch held by an object: the objects wholly below the new start are
/// deleted (rows, then the objects in the store), the one holding it is kept, and every
/// broker (one started afterwards on an empty data directory too) serves the partition from
/// the new start and nothing below it. An offset past the end is refused and changes nothing;
/// one below the start leaves it; -1 deletes everything, and producing goes on after.
#[test]
fn delete_records_deletes_the_objects_below_it_and_every_copy_follows() {
    let pg = TestPostgres::start();
    let url = pg.create_db("trim");
    let s3 = TestS3::start();
    let env = cold_env(&s3, "d1", &[]);
    let mut nodes: Vec<Node> = (1..=2).map(|i| Node::with_env(i, &url, &env)).collect();
    let (st, r) = common::cluster::http(
        nodes[0].http,
        "POST",
        "/topics",
        Some(serde_json::json!({"name": "d", "partitions": 1})),
    )
    .unwrap();
    assert_eq!(st, 201, "{r}");
    // Both brokers publish: broker 2 must know the topic first.
    eventually("the topic reaches broker 2", 20, || {
        let (st, _) = common::cluster::http(nodes[1].http, "GET", "/topics/d", None).unwrap();
        st == 200
    });
    // 100 batches of 10 events of about 1 kB: some 16 objects of 64 KiB.
    let pad = "p".repeat(1000);
    for b in 0..100u64 {
        let batch: Vec<_> = (b * 10..b * 10 + 10)
            .map(|i| serde_json::json!({"partition": 0, "key": pad, "value": i}))
            .collect();
        let (st, r) = common::cluster::http(
            nodes[b as usize % 2].http,
            "POST",
            "/topics/d/events",
            Some(serde_json::json!(batch)),
        )
        .unwrap();
        assert_eq!(st, 200, "{r}");
    }
    eventually("every batch is in an object", 60, || {
        count(&pg, "trim", "SELECT count(*) FROM batches") == 0
    });
    let objects = count(&pg, "trim", "SELECT count(*) FROM objects");
    assert!(objects >= 10, "{objects} objects");
    let all = events_of(nodes[0].http, "d");
    assert_eq!(all.len(), 1000);
    assert_eq!(events_of(nodes[1].http, "d"), all);

    let delete = |n: &Node, before: i64| {
        let path = "/topics/d/partitions/0/delete-records";
        let body = serde_json::json!({ "before_offset": before });
        common::cluster::http(n.http, "POST", path, Some(body)).unwrap()
    };
    let (st, r) = delete(&nodes[1], 505);
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["log_start_offset"], 505, "{r}");
    let row = || pg.psql("trim", "SELECT log_start, deleted_below FROM partitions");
    let holder = count(
        &pg,
        "trim",
        "SELECT base_offset FROM objects WHERE base_offset <= 505 AND last_offset >= 505",
    );
    assert!(holder <= 500, "the object holding 505 starts at {holder}");
    assert_eq!(row(), format!("{holder}|505"));
    assert_eq!(
        count(&pg, "trim", "SELECT min(base_offset) FROM objects"),
        holder,
        "the objects below the new start are gone"
    );
    eventually("the store holds exactly the rows' objects", 30, || {
        let keys = pg.psql("trim", "SELECT key FROM objects ORDER BY key");
        s3.objects(BUCKET, "d1") == keys.lines().map(str::to_string).collect::<Vec<_>>()
    });
    // Every broker, and one on an empty data directory, serves 505.. and nothing below it.
    nodes.push(Node::with_env(3, &url, &env));
    let kept: Vec<_> = all[505..].to_vec();
    for n in &nodes {
        eventually("the copy starts at 505", 30, || {
            let (st, _) = common::cluster::http(
                n.http,
                "GET",
                "/topics/d/partitions/0/events?offset=504",
                None,
            )
            .unwrap();
            st == 416 && log_start_of(n.http, "d") == 505
        });
        assert_eq!(events_of(n.http, "d"), kept);
    }
    // Past the end: refused, nothing changed; below the start: the start stays.
    let (st, r) = delete(&nodes[2], 5000);
    assert_eq!(st, 416, "{r}");
    assert_eq!(r["error"]["code"], "offset_out_of_range", "{r}");
    assert_eq!(row(), format!("{holder}|505"));
    let (st, r) = delete(&nodes[0], -2);
    assert_eq!(st, 400, "{r}");
    let (st, r) = delete(&nodes[0], 100);
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["log_start_offset"], 505, "{r}");
    // -1: everything; the store empties, and the partition goes on at 1000.
    let (st, r) = delete(&nodes[2], -1);
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["log_start_offset"], 1000, "{r}");
    assert_eq!(row(), "1000|1000");
    eventually("the store empties", 30, || {
        s3.objects(BUCKET, "d1").is_empty()
    });
    publish(nodes[0].http, "d", 7000, 1, "k");
    for n in &nodes {
        eventually("the partition goes on at 1000", 20, || {
            events_of(n.http, "d") == vec![(1000, "7000".to_string())]
        });
    }
}

#[test]
fn the_object_store_down_for_30_s_fills_the_hot_tier_to_its_cap_then_drains() {
    let pg = TestPostgres::start();
    let url = pg.create_db("outage");
    let mut s3 = TestS3::start();
    let cap = 1u64 << 20;
    let env = cold_env(
        &s3,
        "c2",
        &[("BUSBAR_CLUSTER_HOT_BYTES_MAX", cap.to_string())],
    );
    let mut nodes: Vec<Node> = (1..=2).map(|i| Node::with_env(i, &url, &env)).collect();
    create_topic(&nodes);
    let (history, stop, threads) = load_padded(&nodes, 1000);
    eventually("objects are written", 60, || {
        count(&pg, "outage", "SELECT count(*) FROM objects") >= 3
    });
    s3.stop();
    let down = Instant::now();
    let hot = || {
        count(
            &pg,
            "outage",
            "SELECT coalesce(sum(hot_bytes), 0) FROM partitions",
        )
    };
    let mut most = 0;
    while down.elapsed() < Duration::from_secs(30) {
        most = most.max(hot());
        std::thread::sleep(Duration::from_millis(200));
    }
    let logged = |what: &str| {
        nodes
            .iter()
            .map(|n| n.server.as_ref().unwrap().log_lines(what).len())
            .sum::<usize>()
    };
    // The writers' publishes were refused (HTTP 507, retriable) once the hot tier was full; it
    // stayed near its cap (checked once a second, so one second of writes may pass it).
    assert!(
        logged("hot tier is full") > 0,
        "no publish was refused in 30 s"
    );
    assert!(most >= cap / 2, "the hot tier never grew: {most}");
    assert!(most < 4 * cap, "the hot tier passed its cap: {most}");
    assert!(
        logged("uploads to the object store fail") > 0,
        "the outage is logged"
    );
    s3.start_again();
    eventually("uploads drain the hot tier", 60, || hot() < cap / 4);
    assert!(nodes.iter().any(|n| n
        .server
        .as_ref()
        .unwrap()
        .logs_soon("uploads to the object store work again")));
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    eventually("the hot tier empties", 30, || {
        count(&pg, "outage", "SELECT count(*) FROM batches") == 0
    });
    // Nothing lost: a fresh broker reads every acknowledged write from the objects.
    nodes.push(Node::with_env(3, &url, &env));
    converge_and_check(&nodes, &history.lock().unwrap());
    assert!(!drain(nodes[2].http).is_empty());
}

#[test]
fn bad_object_store_settings_are_refused_with_the_setting_named() {
    let data = tempfile::tempdir().unwrap();
    let pg = ("BUSBAR_CLUSTER_POSTGRES_URL", "postgres://u@127.0.0.1:1/db");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[pg, ("BUSBAR_CLUSTER_OBJECT_STORE_URL", "http://bucket")],
            "cluster.object_store_url",
        ),
        (
            &[pg, ("BUSBAR_CLUSTER_OBJECT_STORE_URL", "s3://b/../etc")],
            "cluster.object_store_url",
        ),
        (
            &[pg, ("BUSBAR_CLUSTER_OBJECT_STORE_URL", "s3://UPPER")],
            "cluster.object_store_url",
        ),
        (
            &[("BUSBAR_CLUSTER_OBJECT_STORE_URL", "s3://bucket")],
            "needs cluster.postgres_url",
        ),
        (
            &[
                pg,
                ("BUSBAR_CLUSTER_OBJECT_STORE_URL", "s3://bucket"),
                ("BUSBAR_CLUSTER_OBJECT_STORE_ENDPOINT", "ftp://x"),
            ],
            "cluster.object_store_endpoint",
        ),
        (
            &[pg, ("BUSBAR_CLUSTER_OBJECT_STORE_ENDPOINT", "http://x")],
            "need cluster.object_store_url",
        ),
        (
            &[pg, ("BUSBAR_CLUSTER_UPLOAD_BYTES", "10")],
            "cluster.upload_bytes",
        ),
        (
            &[pg, ("BUSBAR_CLUSTER_UPLOAD_AFTER_MS", "0")],
            "cluster.upload_after_ms",
        ),
    ];
    for (env, says) in cases {
        let (code, err) = common::refused_start_with(data.path(), env);
        assert_eq!(code, 2, "{env:?}: {err}");
        assert!(err.contains(says), "{env:?}: {err}");
    }
}

/// Every (key, value) of `events` (as `events_of` gives them, key first).
fn latest_by_key(events: &[(u64, String, String)]) -> std::collections::BTreeMap<String, String> {
    events
        .iter()
        .map(|(_, k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Every (offset, key, value) of partition 0 of `topic` as broker `addr` serves it.
fn keyed_events_of(addr: std::net::SocketAddr, topic: &str) -> Vec<(u64, String, String)> {
    let mut out = Vec::new();
    let mut next = 0;
    loop {
        let path = format!("/topics/{topic}/partitions/0/events?offset={next}&limit=1000");
        let (st, r) = common::cluster::http(addr, "GET", &path, None).expect("answers");
        assert_eq!(st, 200, "{r}");
        let got = r["events"].as_array().unwrap();
        let Some(last) = got.last() else {
            return out;
        };
        for e in got {
            out.push((
                e["offset"].as_u64().unwrap(),
                e["key"].to_string(),
                e["value"].to_string(),
            ));
        }
        next = last["offset"].as_u64().unwrap() + 1;
    }
}

/// Produces `lines` (`key:value` each) to partition 0 of `topic` with kcat, zstd-compressed.
fn kcat_produce(kafka: std::net::SocketAddr, topic: &str, lines: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("kcat")
        .args(["-P", "-b", &kafka.to_string(), "-t", topic, "-p", "0"])
        .args(["-z", "zstd", "-K", ":"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("kcat runs (scripts/clients.sh installs it)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(lines.as_bytes()).unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success(), "kcat produced");
}

/// Creates a compacted topic of one partition through broker `addr`.
fn create_compacted(addr: std::net::SocketAddr, name: &str) {
    let body = serde_json::json!({"name": name, "partitions": 1,
        "configs": {"cleanup.policy": "compact"}});
    let (st, r) = common::cluster::http(addr, "POST", "/topics", Some(body)).unwrap();
    assert_eq!(st, 201, "{r}");
}

/// A compacted topic's objects are rewritten without superseded records: the objects shrink,
/// below the compacted offset each key is left once, the replaced objects are queued for
/// deletion, and every object in the store is named by a row or queued. A broker started on an
/// empty data directory reads the compacted objects (gaps and all) and serves the latest value
/// of every key, as the broker that kept the whole partition does; producing goes on after.
#[test]
fn compaction_rewrites_a_compacted_topics_objects_and_a_new_broker_reads_the_latest_values() {
    let pg = TestPostgres::start();
    let url = pg.create_db("compact");
    let s3 = TestS3::start();
    let env = cold_env(
        &s3,
        "k1",
        &[("BUSBAR_CLUSTER_COMPACTION_INTERVAL_MS", "300".into())],
    );
    let mut nodes: Vec<Node> = (1..=2).map(|i| Node::with_env(i, &url, &env)).collect();
    create_compacted(nodes[0].http, "kv");
    // A second compacted topic with one event: a partition whose only object is its last
    // batch is compacted once (nothing to remove) and never holds up the other.
    create_compacted(nodes[0].http, "idle");
    let one = serde_json::json!([{"partition": 0, "key": "a", "value": 1}]);
    let (st, r) =
        common::cluster::http(nodes[0].http, "POST", "/topics/idle/events", Some(one)).unwrap();
    assert_eq!(st, 200, "{r}");
    // A topic whose tombstones expire a second after a compaction first keeps them: the
    // compaction their horizon starts (no new object to map) still keeps the partition's last
    // batch (k's tombstone) whole.
    let body = serde_json::json!({"name": "kvt", "partitions": 1,
        "configs": {"cleanup.policy": "compact", "delete.retention.ms": "1000"}});
    let (st, r) = common::cluster::http(nodes[0].http, "POST", "/topics", Some(body)).unwrap();
    assert_eq!(st, 201, "{r}");
    for (k, v) in [("a", Some("v")), ("a", None), ("k", Some("v")), ("k", None)] {
        let e = serde_json::json!([{"partition": 0, "key": k, "value": v}]);
        let (st, r) =
            common::cluster::http(nodes[0].http, "POST", "/topics/kvt/events", Some(e)).unwrap();
        assert_eq!(st, 200, "{r}");
    }
    // 40 rounds over 20 keys, about 500 bytes each: some 16 objects of 64 KiB. The last round
    // writes the even keys only, so what compaction keeps has gaps between kept records too.
    let pad = "v".repeat(500);
    for round in 0..40u64 {
        if round == 39 {
            // A tombstone of k1 stamped 1970: kept a day (delete.retention.ms) from the
            // compaction that first keeps it, whatever its own timestamp (KIP-534).
            let tomb = serde_json::json!([{"partition": 0, "key": "k1", "timestamp": 1000}]);
            let (st, r) =
                common::cluster::http(nodes[1].http, "POST", "/topics/kv/events", Some(tomb))
                    .unwrap();
            assert_eq!(st, 200, "{r}");
        }
        let body: Vec<_> = (0..20)
            .filter(|k| round < 39 || k % 2 == 0)
            .map(|k| {
                serde_json::json!({"partition": 0, "key": format!("k{k}"),
                "value": format!("{round}-{pad}")})
            })
            .collect();
        let (st, r) = common::cluster::http(
            nodes[(round % 2) as usize].http,
            "POST",
            "/topics/kv/events",
            Some(serde_json::Value::Array(body)),
        )
        .unwrap();
        assert_eq!(st, 200, "{r}");
    }
    // A topic whose producer compresses (librdkafka's zstd, through kcat) is compacted too: its
    // batches are inflated, filtered and compressed again.
    create_compacted(nodes[0].http, "kvz");
    // The last round writes the even keys only, so round 8's batch keeps its odd keys: rebuilt
    // and compressed again.
    for round in 0..10 {
        let lines: String = (0..20)
            .filter(|k| round < 9 || k % 2 == 0)
            .map(|k| format!("k{k}:{round}-{pad}\n"))
            .collect();
        kcat_produce(nodes[0].kafka, "kvz", &lines);
    }
    let sql = |q: &str| count(&pg, "compact", q);
    const KV: &str = "topic_id = (SELECT id FROM topics WHERE name = 'kv')";
    // While a live broker older than the compaction of objects is in the cluster (it would
    // refuse their gaps), nothing is compacted.
    pg.psql(
        "compact",
        "INSERT INTO brokers (node_id, instance, kafka_host, kafka_port, http_addr, \
         heartbeat_at) VALUES (99, 'old', '127.0.0.1', 1, '127.0.0.1:1', \
         now() + interval '1 hour')",
    );
    eventually("the hot tier empties", 30, || {
        sql("SELECT count(*) FROM batches") == 0
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sql("SELECT max(compacted_to) FROM partitions"), 0);
    assert_eq!(
        sql("SELECT count(*) FROM objects WHERE key LIKE '%.%.seg'"),
        0
    );
    pg.psql("compact", "DELETE FROM brokers WHERE node_id = 99");
    // The 791 records take about 410 KB in objects, the 20 kept about 11 KB. Compaction maps
    // every object (`compacted_to` is their end) and keeps the partition's last batch (the last
    // round's, 781..=790) whole.
    eventually("the objects are compacted", 60, || {
        sql(&format!("SELECT compacted_to FROM partitions WHERE {KV}")) == 791
            && sql(&format!("SELECT sum(size) FROM objects WHERE {KV}")) < 100_000
    });
    eventually("the idle topic's partition is compacted once", 30, || {
        sql(
            "SELECT compacted_to FROM partitions p JOIN topics t ON t.id = p.topic_id \
             WHERE t.name = 'idle'",
        ) == 1
    });
    eventually("the compressed topic's objects are compacted", 30, || {
        sql(
            "SELECT compacted_to FROM partitions p JOIN topics t ON t.id = p.topic_id \
             WHERE t.name = 'kvz'",
        ) == 190
    });
    // The 1970 tombstone got its delete horizon from the database's clock: a day ahead.
    let ahead = sql(&format!(
        "SELECT compaction_tombstone_ms - (extract(epoch FROM now()) * 1000)::bigint \
         FROM partitions WHERE {KV}"
    ));
    assert!(
        (23 * 3600 * 1000..=24 * 3600 * 1000).contains(&ahead),
        "{ahead}"
    );
    eventually("kvt's first tombstone expires", 30, || {
        sql(
            "SELECT count(*) FROM partitions p JOIN topics t ON t.id = p.topic_id \
             WHERE t.name = 'kvt' AND p.compacted_to = 4 AND p.compaction_tombstone_ms IS NULL",
        ) == 1
    });
    let rewritten = sql("SELECT count(*) FROM objects WHERE key LIKE '%.%.seg'");
    assert!(rewritten >= 1, "no rewritten object");
    // The objects still cover every offset once, each after the one before.
    let ranges = pg.psql(
        "compact",
        &format!("SELECT base_offset, last_offset FROM objects WHERE {KV} ORDER BY 1"),
    );
    let mut next = 0;
    for line in ranges.lines() {
        let f: Vec<u64> = line.split('|').map(|x| x.parse().unwrap()).collect();
        assert_eq!(f[0], next, "{ranges}");
        next = f[1] + 1;
    }
    assert_eq!(next, 791);
    // Replaced objects are queued for deletion (a minute after their replacement); every object
    // in the store is named by a row or queued.
    let named = pg.psql(
        "compact",
        "SELECT key FROM objects UNION SELECT key FROM doomed_objects",
    );
    let named: std::collections::BTreeSet<&str> = named.lines().collect();
    assert!(sql("SELECT count(*) FROM doomed_objects") >= 1);
    for k in s3.objects(BUCKET, "k1") {
        assert!(
            named.contains(k.as_str()),
            "{k} is neither named nor queued"
        );
    }
    // A broker on an empty data directory reads the compacted objects.
    nodes.push(Node::with_env(3, &url, &env));
    let whole = keyed_events_of(nodes[0].http, "kv");
    let want = latest_by_key(&whole);
    assert_eq!(want.len(), 20);
    assert_eq!(want["\"k1\""], "null", "k1's tombstone is kept");
    for (k, v) in want.iter().filter(|(k, _)| *k != "\"k1\"") {
        let odd = k.trim_matches('"')[1..].parse::<u32>().unwrap() % 2 == 1;
        let round = if odd { "\"38-" } else { "\"39-" };
        assert!(v.starts_with(round), "{k}: {v}");
    }
    let mut fresh = Vec::new();
    eventually("broker 3 serves the latest value of every key", 30, || {
        fresh = keyed_events_of(nodes[2].http, "kv");
        latest_by_key(&fresh) == want
    });
    assert!(fresh.len() <= 40, "{} events: not compacted", fresh.len());
    assert!(fresh.windows(2).all(|w| w[0].0 < w[1].0), "offsets go up");
    let mut kvt = Vec::new();
    eventually("broker 3 serves kvt's last batch alone", 30, || {
        kvt = keyed_events_of(nodes[2].http, "kvt");
        kvt == [(3, "\"k\"".to_string(), "null".to_string())]
    });
    let mut zipped = Vec::new();
    eventually("broker 3 serves the compressed topic compacted", 30, || {
        zipped = keyed_events_of(nodes[2].http, "kvz");
        zipped.len() == 20
    });
    for (o, k, v) in &zipped {
        let odd = k.trim_matches('"')[1..].parse::<u32>().unwrap() % 2 == 1;
        let (round, first) = if odd { ("\"8-", 160) } else { ("\"9-", 180) };
        assert!(v.starts_with(round) && *o >= first, "{o} {k}: {}", &v[..4]);
    }
    let mut keys: Vec<&String> = fresh.iter().map(|e| &e.1).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(
        keys.len(),
        fresh.len(),
        "each key once below the compacted offset"
    );
    // Producing goes on, on the copy with gaps too; every broker reads the new event.
    let body = serde_json::json!([{"partition": 0, "key": "k0", "value": "after"}]);
    let (st, r) =
        common::cluster::http(nodes[2].http, "POST", "/topics/kv/events", Some(body)).unwrap();
    assert_eq!(st, 200, "{r}");
    for n in &nodes {
        eventually("the new event is everywhere", 20, || {
            keyed_events_of(n.http, "kv")
                .last()
                .map(|e| (e.0, e.2.clone()))
                == Some((791, "\"after\"".to_string()))
        });
    }
    // A Kafka client (librdkafka, through kcat) reads the same across the gaps from broker 3,
    // the only broker left (so the partition's leader: the others kept uncompacted copies).
    for n in &mut nodes[..2] {
        assert_eq!(n.server.take().unwrap().stop(), 0);
    }
    let out = std::process::Command::new("kcat")
        .args([
            "-C",
            "-b",
            &nodes[2].kafka.to_string(),
            "-t",
            "kv",
            "-p",
            "0",
        ])
        .args(["-o", "beginning", "-e", "-q", "-f", "%o %k\n"])
        .output()
        .expect("kcat runs (scripts/clients.sh installs it)");
    assert!(out.status.success(), "{out:?}");
    let read: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let served: Vec<String> = fresh
        .iter()
        .map(|(o, k, _)| format!("{o} {}", k.trim_matches('"')))
        .chain(["791 k0".to_string()])
        .collect();
    assert_eq!(read, served);
}
