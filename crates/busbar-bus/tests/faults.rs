//! The bus on a disk that fails: a subscription's internal writes (retry state, positions) fail
//! for a while and no event is lost or reordered (issue 14: no position passes an event that is
//! not durably parked, delivered or dead-lettered), and restarts keep each key's order.

use busbar_broker::datadir::FaultDataDir;
use busbar_broker::{Broker, BrokerConfig, Event};
use busbar_bus::spec::from_json;
use busbar_bus::{Bus, SubState};
use busbar_log::disk::MemFs;
use busbar_testkit::target::{Received, Reply, Target};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn wait_for(t: &Target, n: usize) -> Vec<Received> {
    let end = Instant::now() + Duration::from_secs(20);
    while t.received().len() < n {
        assert!(Instant::now() < end, "only {} of {n}", t.received().len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.received()
}

fn ns(got: &[Received]) -> Vec<i64> {
    got.iter()
        .map(|r| r.json()["n"].as_i64().unwrap())
        .collect()
}

/// Events of one key arrive while the retry-state log cannot be written: they cannot be parked
/// behind the one in flight. Once the disk is back they are parked and delivered, in key order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_could_not_be_parked_are_read_again_not_skipped() {
    let dir = Arc::new(FaultDataDir::new(MemFs::new(), &["internal/retries"]));
    let b = Arc::new(
        Broker::open(BrokerConfig {
            data: Some(dir.clone()),
            ..Default::default()
        })
        .unwrap(),
    );
    b.create_topic("src", Some(1), BTreeMap::new())
        .await
        .unwrap();
    let bus = Bus::open(b.clone()).unwrap();
    bus.start().await;
    // The first delivery takes a while: the key's lane is busy while the disk is full.
    let t = Target::start(|_, n| match n {
        0 => Reply::After(Duration::from_millis(1500), 200),
        _ => Reply::Status(200),
    });
    let spec = json!({"name": "s", "sources": ["src"], "start": "earliest",
        "target": {"url": t.url("/")}, "delivery": {"ordering": "key"}});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    let event = |n: i64| Event::keyed("k", json!({ "n": n }).to_string());
    b.publish("src", vec![event(0)]).await.unwrap();
    wait_for(&t, 1).await;
    let plan = dir.plan("internal/retries").expect("faulted");
    plan.set_disk_full(true);
    b.publish("src", vec![event(1), event(2)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    plan.set_disk_full(false);
    let got = wait_for(&t, 3).await;
    assert_eq!(ns(&got), [0, 1, 2]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.received().len(), 3, "each delivered once");
    bus.close().await.unwrap();
}

async fn setup(dir: Arc<FaultDataDir>) -> (Arc<Broker>, Bus) {
    let b = Arc::new(
        Broker::open(BrokerConfig {
            data: Some(dir),
            ..Default::default()
        })
        .unwrap(),
    );
    if b.describe_topic("src").is_err() {
        b.create_topic("src", Some(1), BTreeMap::new())
            .await
            .unwrap();
    }
    let bus = Bus::open(b.clone()).unwrap();
    bus.start().await;
    (b, bus)
}

fn keyed_sub(url: &str) -> serde_json::Value {
    json!({"name": "s", "sources": ["src"], "start": "earliest",
        "target": {"url": url}, "delivery": {"ordering": "key"}})
}

/// The head of a key is in flight (no retry entry) when the worker stops; the events behind it
/// are parked durably. After the restart the head is read again from the source and must still go
/// first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_key_order_behind_an_in_flight_head() {
    let fs = MemFs::new();
    let dir = Arc::new(FaultDataDir::new(fs.clone(), &[]));
    let (b, bus) = setup(dir.clone()).await;
    let t = Target::start(|_, n| match n {
        0 => Reply::After(Duration::from_secs(5), 200),
        _ => Reply::Status(200),
    });
    bus.create(from_json(&keyed_sub(&t.url("/"))).unwrap())
        .await
        .unwrap();
    let event = |n: i64| Event::keyed("k", json!({ "n": n }).to_string());
    b.publish("src", vec![event(0), event(1), event(2)])
        .await
        .unwrap();
    wait_for(&t, 1).await;
    // 1 and 2 are parked behind 0 (durably) before the worker stops.
    let end = Instant::now() + Duration::from_secs(10);
    while bus.get("s").await.unwrap().retrying < 2 {
        assert!(Instant::now() < end, "never parked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bus.close().await.unwrap();
    let bus = Bus::open(b.clone()).unwrap();
    bus.start().await;
    let got = wait_for(&t, 4).await;
    assert_eq!(
        ns(&got[1..]),
        [0, 1, 2],
        "after the restart: {:?}",
        ns(&got)
    );
    bus.close().await.unwrap();
}

/// A key's restored events (one in flight from its lane, one parked) sit past the stored
/// position, which another key's slow event holds back. After the restart the reader passes them
/// (they are restored) and, in the same pass, reads a newer event of the key, published while
/// the bus was down: it must queue behind them, not go first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_event_read_past_a_keys_restored_events_waits_behind_them() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let fs = MemFs::new();
    let dir = Arc::new(FaultDataDir::new(fs.clone(), &[]));
    let (b, bus) = setup(dir.clone()).await;
    let restarted = Arc::new(AtomicBool::new(false));
    let r = restarted.clone();
    let t = Target::start(move |req, _| match req.json()["n"].as_i64() {
        _ if r.load(SeqCst) => Reply::Status(200),
        Some(0) => Reply::After(Duration::from_millis(300), 200),
        _ => Reply::After(Duration::from_secs(20), 200),
    });
    bus.create(from_json(&keyed_sub(&t.url("/"))).unwrap())
        .await
        .unwrap();
    let event = |k: &str, n: i64| Event::keyed(k, json!({"k": k, "n": n}).to_string());
    // k:0 is delivered; a:1 hangs (it holds the position); k:2 follows k:0 from the lane and
    // hangs; k:3 is parked behind it.
    b.publish(
        "src",
        vec![event("k", 0), event("a", 1), event("k", 2), event("k", 3)],
    )
    .await
    .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while !(ns(&t.received()).contains(&2) && bus.get("s").await.unwrap().retrying == 2) {
        assert!(
            Instant::now() < end,
            "k:2 never left its lane: {:?}",
            ns(&t.received())
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bus.close().await.unwrap();
    b.publish("src", vec![event("k", 4)]).await.unwrap();
    restarted.store(true, SeqCst);
    let before = t.received().len();
    let bus = Bus::open(b.clone()).unwrap();
    bus.start().await;
    let got = wait_for(&t, before + 4).await;
    let k: Vec<i64> = (got[before..].iter())
        .filter(|r| r.json()["k"] == "k")
        .map(|r| r.json()["n"].as_i64().unwrap())
        .collect();
    assert_eq!(k, [2, 3, 4], "key k after the restart");
    bus.close().await.unwrap();
}

/// An attempt fails while its retry entry cannot be written; once the disk is back and the event
/// is delivered, the position moves on without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_retry_state_write_does_not_freeze_the_position() {
    let dir = Arc::new(FaultDataDir::new(MemFs::new(), &["internal/retries"]));
    let (b, bus) = setup(dir.clone()).await;
    let t = Target::start(|_, n| match n {
        0 => Reply::Status(500),
        _ => Reply::Status(200),
    });
    let spec = json!({"name": "s", "sources": ["src"], "start": "earliest",
        "target": {"url": t.url("/")},
        "delivery": {"backoff_initial_ms": 100, "backoff_max_ms": 200}});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    let plan = dir.plan("internal/retries").expect("faulted");
    plan.set_disk_full(true);
    b.publish("src", vec![Event::keyed("k", r#"{"n":0}"#)])
        .await
        .unwrap();
    wait_for(&t, 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    plan.set_disk_full(false);
    wait_for(&t, 2).await;
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let v = bus.get("s").await.unwrap();
        if v.lag == 0 && v.retrying == 0 {
            break;
        }
        assert!(Instant::now() < end, "position frozen: lag {}", v.lag);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bus.close().await.unwrap();
}

/// An update that fails half-way (the start positions of a new source cannot be stored) leaves
/// the old worker delivering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_update_keeps_the_old_worker_running() {
    let dir = Arc::new(FaultDataDir::new(MemFs::new(), &["internal/positions"]));
    let (b, bus) = setup(dir.clone()).await;
    b.create_topic("src2", Some(1), BTreeMap::new())
        .await
        .unwrap();
    let t = Target::ok();
    let spec = json!({"name": "s", "sources": ["src"], "start": "earliest",
        "target": {"url": t.url("/")}});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    let plan = dir.plan("internal/positions").expect("faulted");
    plan.set_disk_full(true);
    let wider = json!({"name": "s", "sources": ["src", "src2"], "start": "earliest",
        "target": {"url": t.url("/")}});
    assert!(bus.update("s", from_json(&wider).unwrap()).await.is_err());
    plan.set_disk_full(false);
    // The worker may still be starting (its first pass reads positions); it must get to running.
    let end = Instant::now() + Duration::from_secs(10);
    let mut v = bus.get("s").await.unwrap();
    while v.state == "starting" && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(10)).await;
        v = bus.get("s").await.unwrap();
    }
    assert_eq!((v.spec.sources.len(), v.state), (1, SubState::Running));
    b.publish("src", vec![Event::keyed("k", r#"{"n":7}"#)])
        .await
        .unwrap();
    assert_eq!(ns(&wait_for(&t, 1).await), [7]);
    bus.close().await.unwrap();
}

/// Key K: K1 delivered, K2 in flight, K3 parked, while an event of another key at the partition's
/// position is in flight (so K1 and K2 are read again after the restart). After it K's events
/// still go K1, K2, K3: the ones read again queue in offset order before the restored K3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_read_again_after_a_restart_queue_in_offset_order() {
    let dir = Arc::new(FaultDataDir::new(MemFs::new(), &[]));
    let (b, bus) = setup(dir).await;
    let hung: Arc<std::sync::Mutex<std::collections::HashSet<i64>>> = Arc::default();
    let h = hung.clone();
    let t = Target::start(move |req, _| {
        let n = req.json()["n"].as_i64().unwrap_or(-1);
        if (n == 0 || n == 2) && h.lock().unwrap().insert(n) {
            return Reply::Hang(Duration::from_secs(30));
        }
        Reply::Status(200)
    });
    bus.create(from_json(&keyed_sub(&t.url("/"))).unwrap())
        .await
        .unwrap();
    let ev = |key: &str, n: i64| Event::keyed(key, json!({ "n": n }).to_string());
    b.publish("src", vec![ev("j", 0), ev("k", 1)])
        .await
        .unwrap();
    wait_for(&t, 2).await;
    b.publish("src", vec![ev("k", 2), ev("k", 3)])
        .await
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while bus.get("s").await.unwrap().retrying < 1 {
        assert!(Instant::now() < end, "3 never parked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bus.close().await.unwrap();
    let bus = Bus::open(b.clone()).unwrap();
    bus.start().await;
    let got = wait_for(&t, 7).await;
    let k: Vec<i64> = ns(&got[3..]).into_iter().filter(|n| *n != 0).collect();
    assert_eq!(k, [1, 2, 3], "key k after the restart: {:?}", ns(&got));
    bus.close().await.unwrap();
}

/// A retry entry of a source topic that is then deleted and created again belongs to the old
/// topic: the new topic's event at the same offset is delivered at once, in key order, not held
/// until the old entry's due time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_entries_of_a_deleted_topic_do_not_capture_the_new_topics_events() {
    let dir = Arc::new(FaultDataDir::new(MemFs::new(), &[]));
    let (b, bus) = setup(dir).await;
    let t = Target::start(|req, _| match req.json()["n"].as_i64() {
        Some(n) if n < 100 => Reply::Status(500),
        _ => Reply::Status(200),
    });
    let spec = json!({"name": "s", "sources": ["src"], "start": "earliest",
        "target": {"url": t.url("/")}, "delivery": {"ordering": "key",
        "backoff_initial_ms": 600000, "backoff_max_ms": 600000}});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    let ev = |n: i64| Event::keyed("k", json!({ "n": n }).to_string());
    b.publish("src", vec![ev(0)]).await.unwrap();
    wait_for(&t, 1).await;
    let end = Instant::now() + Duration::from_secs(10);
    while bus.get("s").await.unwrap().retrying < 1 {
        assert!(Instant::now() < end, "never scheduled for a retry");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.delete_topic("src").await.unwrap();
    b.create_topic("src", Some(1), BTreeMap::new())
        .await
        .unwrap();
    b.publish("src", vec![ev(100), ev(101), ev(102)])
        .await
        .unwrap();
    let got = wait_for(&t, 4).await;
    assert_eq!(ns(&got[1..]), [100, 101, 102]);
    let v = bus.get("s").await.unwrap();
    assert_eq!(v.retrying, 0, "the old topic's entry ended");
    bus.close().await.unwrap();
}

/// A Kafka client that joined the group where an older busbar kept a subscription's positions
/// blocks neither creating nor deleting that subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_the_legacy_group_blocks_nothing() {
    let dir = Arc::new(FaultDataDir::new(MemFs::new(), &[]));
    let (b, bus) = setup(dir).await;
    b.join_group(busbar_broker::JoinRequest {
        group: "busbar-subscription-foo".into(),
        member_id: String::new(),
        client_id: "squatter".into(),
        client_host: "127.0.0.1".into(),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Vec::new())],
        session_timeout_ms: 30_000,
        rebalance_timeout_ms: 30_000,
        require_known_member_id: false,
    })
    .await
    .unwrap();
    let spec = json!({"name": "foo", "sources": ["src"], "target": {"url": "http://127.0.0.1:9/"}});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    bus.delete("foo").await.unwrap();
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    bus.close().await.unwrap();
}

/// A replay whose dead letter cannot be written ends `FAILED`, naming the event, instead of
/// `COMPLETED` with the event counted as dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_whose_dead_letter_fails_ends_failed() {
    let dir = Arc::new(FaultDataDir::new(MemFs::new(), &["topics/dlq"]));
    let (b, bus) = setup(dir.clone()).await;
    b.create_topic("dlq", Some(1), BTreeMap::new())
        .await
        .unwrap();
    b.publish("src", vec![Event::value(json!({"n": 0}).to_string())])
        .await
        .unwrap();
    let t = Target::start(|r, _| match r.json()["n"].as_i64() {
        Some(1) => Reply::Status(400),
        _ => Reply::Status(200),
    });
    b.publish("src", vec![Event::value(json!({"n": 1}).to_string())])
        .await
        .unwrap();
    let spec = json!({"name": "s", "sources": ["src"], "start": "latest",
        "target": {"url": t.url("/")}, "dead_letter_topic": "dlq"});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    dir.plan("topics/dlq/0")
        .expect("faulted")
        .set_disk_full(true);
    // `to` is exclusive: past the event's millisecond (publish and create can share one).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let to = busbar_broker::time::format_rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    );
    let spec: busbar_bus::ReplaySpec =
        serde_json::from_value(json!({"name": "r", "from": "2000-01-01T00:00:00Z", "to": to}))
            .unwrap();
    bus.start_replay("s", spec).await.unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    let run = loop {
        let run = bus.replay("s", "r", false).await.unwrap();
        if run.state != busbar_bus::RunState::Running {
            break run;
        }
        assert!(Instant::now() < end, "still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(run.state, busbar_bus::RunState::Failed, "{run:?}");
    assert!(
        run.error
            .as_deref()
            .unwrap_or("")
            .contains("dead letter of src/0@1"),
        "{run:?}"
    );
    assert_eq!(run.counts.dropped, 0);
    // The disk is back: the same request goes on from the event whose letter failed (its
    // letter lands); event 0, delivered before, is not replayed twice.
    dir.plan("topics/dlq/0").unwrap().set_disk_full(false);
    let spec: busbar_bus::ReplaySpec =
        serde_json::from_value(json!({"name": "r", "from": "2000-01-01T00:00:00Z", "to": to}))
            .unwrap();
    bus.start_replay("s", spec).await.unwrap();
    let run = loop {
        let run = bus.replay("s", "r", false).await.unwrap();
        if run.state != busbar_bus::RunState::Running {
            break run;
        }
        assert!(Instant::now() < end, "still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(run.state, busbar_bus::RunState::Completed, "{run:?}");
    assert_eq!((run.counts.dead_lettered, run.counts.delivered), (1, 1));
    assert_eq!(ns(&t.received()), [0, 1, 1], "1 tried again for its letter");
    assert_eq!(
        b.describe_topic("dlq").unwrap().partitions[0].high_watermark,
        1
    );
    bus.close().await.unwrap();
}

/// The dead-letter topic refuses writes (disk full): the exhausted event is not delivered again;
/// its letter is written again later, the failure shows in the state and counters, and once the
/// disk is back the letter lands and the state is `running` again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dead_letter_write_is_retried_without_redelivering() {
    let dir = Arc::new(FaultDataDir::new(MemFs::new(), &["topics/dlq"]));
    let (b, bus) = setup(dir.clone()).await;
    b.create_topic("dlq", Some(1), BTreeMap::new())
        .await
        .unwrap();
    let t = Target::start(|_, _| Reply::Status(400));
    let spec = json!({"name": "s", "sources": ["src"], "start": "earliest",
        "target": {"url": t.url("/")}, "dead_letter_topic": "dlq"});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    let plan = dir.plan("topics/dlq/0").expect("faulted");
    plan.set_disk_full(true);
    b.publish("src", vec![Event::value(json!({"n": 0}).to_string())])
        .await
        .unwrap();
    wait_for(&t, 1).await;
    let end = Instant::now() + Duration::from_secs(10);
    let view = loop {
        let v = bus.get("s").await.unwrap();
        if v.counters.dead_letter_failures > 0 {
            break v;
        }
        assert!(Instant::now() < end, "no dead-letter failure seen: {v:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        matches!(view.state, SubState::DeadLetterFailing { ref topic, .. } if topic == "dlq"),
        "{view:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(bus.get("s").await.unwrap().state.is_error());
    plan.set_disk_full(false);
    let end = Instant::now() + Duration::from_secs(20);
    while bus
        .dead_letters("dlq", &busbar_bus::Filter::default(), 10)
        .await
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < end, "the letter never landed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The letter is readable a moment before the worker settles it (ends its entry, counts it).
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let v = bus.get("s").await.unwrap();
        if (v.counters.dead_lettered, v.retrying) == (1, 0) {
            break;
        }
        assert!(Instant::now() < end, "{v:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(t.received().len(), 1, "the event was delivered again");
    let end = Instant::now() + Duration::from_secs(5);
    while bus.get("s").await.unwrap().state != "running" {
        assert!(Instant::now() < end, "state stays in error");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bus.close().await.unwrap();
}

/// A topic a subscription dead-letters to cannot be deleted while the subscription names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_topic_in_use_cannot_be_deleted() {
    let dir = Arc::new(FaultDataDir::new(MemFs::new(), &[]));
    let (b, bus) = setup(dir.clone()).await;
    b.create_topic("dlq", Some(1), BTreeMap::new())
        .await
        .unwrap();
    let t = Target::start(|_, _| Reply::Status(200));
    let spec = json!({"name": "s", "sources": ["src"], "target": {"url": t.url("/")},
        "dead_letter_topic": "dlq"});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    let err = b.delete_topic("dlq").await.unwrap_err();
    assert!(
        matches!(&err, busbar_broker::BrokerError::TopicInUse { by, .. } if by.contains("s")),
        "{err:?}"
    );
    assert!(b.describe_topic("dlq").is_ok());
    bus.delete("s").await.unwrap();
    b.delete_topic("dlq").await.unwrap();
    bus.close().await.unwrap();
}

/// A topic deleted while a subscription naming it as its dead-letter topic is being created:
/// either the create fails (the topic is gone) or the delete is refused, never both succeed
/// (a subscription whose dead-letter topic was deleted under it). Once the bus is closed its
/// guard no longer holds the broker's topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_subscription_races_no_dead_letter_topic_deletion() {
    let dir = Arc::new(FaultDataDir::new(MemFs::new(), &[]));
    let (b, bus) = setup(dir.clone()).await;
    let t = Target::start(|_, _| Reply::Status(200));
    let (mut created, mut deleted, mut held) = (0, 0, None);
    for i in 0..40 {
        let dlq = format!("dlq{i}");
        b.create_topic(&dlq, Some(1), BTreeMap::new())
            .await
            .unwrap();
        let spec = json!({"name": format!("s{i}"), "sources": ["src"],
            "target": {"url": t.url("/")}, "dead_letter_topic": dlq});
        let b2 = b.clone();
        let name = dlq.clone();
        let delete = tokio::spawn(async move {
            for _ in 0..i % 8 {
                tokio::task::yield_now().await;
            }
            b2.delete_topic(&name).await
        });
        let create = bus.create(from_json(&spec).unwrap()).await;
        let delete = delete.await.unwrap();
        assert!(
            create.is_err() || delete.is_err(),
            "round {i}: the subscription was created and its dead-letter topic deleted"
        );
        created += usize::from(create.is_ok());
        deleted += usize::from(delete.is_ok());
        if create.is_ok() {
            held = Some(dlq);
        }
    }
    eprintln!("created {created}, deleted {deleted} of 40");
    let held = held.expect("some create won its race");
    assert!(b.delete_topic(&held).await.is_err());
    bus.close().await.unwrap();
    b.delete_topic(&held).await.unwrap();
}

/// A target that is down does not park the whole backlog: at `delivery.waiting_max` waiting
/// events the worker stops reading (backpressure, shown in the state), and once the target is
/// back every event is delivered and the state is `running` again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_events_are_bounded_by_backpressure() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let dir = Arc::new(FaultDataDir::new(MemFs::new(), &[]));
    let (b, bus) = setup(dir.clone()).await;
    let up = Arc::new(AtomicBool::new(false));
    let target_up = up.clone();
    let t =
        Target::start(move |_, _| Reply::Status(if target_up.load(SeqCst) { 200 } else { 503 }));
    let spec = json!({"name": "s", "sources": ["src"], "start": "earliest",
        "target": {"url": t.url("/")},
        "delivery": {"ordering": "none", "concurrency": 2, "waiting_max": 5,
            "backoff_initial_ms": 100, "backoff_max_ms": 200, "max_attempts": 1000}});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    let events = (0..50)
        .map(|n| Event::value(json!({ "n": n }).to_string()))
        .collect();
    b.publish("src", events).await.unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let v = bus.get("s").await.unwrap();
        if matches!(v.state, SubState::Backpressure { .. }) {
            break;
        }
        assert!(Instant::now() < end, "never backpressured: {v:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A while later it still waits on at most waiting_max + concurrency events.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let v = bus.get("s").await.unwrap();
    assert!(v.retrying <= 7, "{v:?}");
    assert!(matches!(v.state, SubState::Backpressure { .. }), "{v:?}");
    let tried: std::collections::BTreeSet<i64> = ns(&t.received()).into_iter().collect();
    assert!(tried.len() <= 7, "read past the limit: {tried:?}");
    up.store(true, SeqCst);
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let got: std::collections::BTreeSet<i64> = ns(&t.received()).into_iter().collect();
        if got.len() == 50 {
            break;
        }
        assert!(Instant::now() < end, "only {} delivered", got.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let end = Instant::now() + Duration::from_secs(5);
    while bus.get("s").await.unwrap().state != "running" {
        assert!(Instant::now() < end, "state stays in backpressure");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bus.close().await.unwrap();
}

/// The bus runs on the broker's clock: with a manual clock, a retry an hour away is made due by
/// advancing the clock, not by waiting (STYLE rule 7: injected clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_follows_the_brokers_clock() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let clock = busbar_log::ManualClock::new(now);
    let b = Arc::new(
        Broker::open(BrokerConfig {
            data: Some(Arc::new(FaultDataDir::new(MemFs::new(), &[]))),
            clock: clock.clone(),
            ..Default::default()
        })
        .unwrap(),
    );
    b.create_topic("src", Some(1), BTreeMap::new())
        .await
        .unwrap();
    let bus = Bus::open(b.clone()).unwrap();
    bus.start().await;
    let t = Target::start(|_, n| Reply::Status(if n == 0 { 503 } else { 200 }));
    let spec = json!({"name": "s", "sources": ["src"], "start": "earliest",
        "target": {"url": t.url("/")},
        "delivery": {"backoff_initial_ms": 3_600_000, "backoff_max_ms": 3_600_000}});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    b.publish("src", vec![Event::value(json!({"n": 0}).to_string())])
        .await
        .unwrap();
    wait_for(&t, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.received().len(), 1, "retried before its backoff");
    clock.advance(2 * 3_600_000);
    let end = Instant::now() + Duration::from_secs(5);
    while t.received().len() < 2 {
        assert!(Instant::now() < end, "the retry did not follow the clock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bus.close().await.unwrap();
}

/// ordering key, waiting_max 3: the key's head hangs in flight while events park behind it; a
/// restart restores them as a held lane that waits for the reader to pass the head again, so
/// backpressure must not stop that reader (it deadlocked for good before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_under_backpressure_does_not_deadlock_a_held_lane() {
    let dir = Arc::new(FaultDataDir::new(MemFs::new(), &[]));
    let (b, bus) = setup(dir.clone()).await;
    let t = Target::start(|_, n| match n {
        0 => Reply::Hang(Duration::from_secs(30)),
        _ => Reply::Status(200),
    });
    let spec = json!({"name": "s", "sources": ["src"], "start": "earliest",
        "target": {"url": t.url("/")},
        "delivery": {"ordering": "key", "waiting_max": 3, "timeout_ms": 60000}});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    let events = (0..6)
        .map(|n| Event::keyed("k", json!({ "n": n }).to_string()))
        .collect();
    b.publish("src", events).await.unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while !matches!(
        bus.get("s").await.unwrap().state,
        SubState::Backpressure { .. }
    ) {
        assert!(Instant::now() < end, "never backpressured");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The hanging request must be the first worker's, not the restarted one's.
    wait_for(&t, 1).await;
    bus.close().await.unwrap();
    let bus = Bus::open(b.clone()).unwrap();
    bus.start().await;
    // Request 0 hung; the head is delivered again, then the other five, in key order.
    let got = wait_for(&t, 7).await;
    assert_eq!(ns(&got[1..]), [0, 1, 2, 3, 4, 5]);
    bus.close().await.unwrap();
}

/// Counters are written with the positions, so a disk that refuses the positions holds both
/// back together: while `internal/positions` is full, events 5..15 are delivered (counted in
/// memory only). At a power cut then, the restart shows the counts stored with the position it
/// resumes from (5 delivered at position 5), delivers 5..15 again and counts them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_are_kept_or_lost_with_the_positions() {
    let fs = MemFs::new();
    let dir = Arc::new(FaultDataDir::new(fs.clone(), &["internal/positions"]));
    let (b, bus) = setup(dir.clone()).await;
    let t = Target::ok();
    let spec = json!({"name": "s", "sources": ["src"], "start": "earliest",
        "target": {"url": t.url("/")}});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    let publish = |from: i64, to: i64| {
        let events = (from..to)
            .map(|n| Event::value(json!({ "n": n }).to_string()))
            .collect();
        let b = b.clone();
        async move { b.publish("src", events).await.unwrap() }
    };
    publish(0, 5).await;
    wait_for(&t, 5).await;
    let end = Instant::now() + Duration::from_secs(10);
    while bus.get("s").await.unwrap().lag > 0 {
        assert!(Instant::now() < end, "position never stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    dir.plan("internal/positions").unwrap().set_disk_full(true);
    publish(5, 15).await;
    wait_for(&t, 15).await;
    while bus.get("s").await.unwrap().counters.delivered < 15 {
        assert!(Instant::now() < end, "never counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    fs.crash(None);
    std::mem::forget(bus);
    std::mem::forget(b);

    let b = Arc::new(
        Broker::open(BrokerConfig {
            data: Some(Arc::new(FaultDataDir::new(fs.clone(), &[]))),
            ..Default::default()
        })
        .unwrap(),
    );
    let bus = Bus::open(b.clone()).unwrap();
    let v = bus.get("s").await.unwrap();
    assert_eq!(
        (v.counters.delivered, v.counters.matched, v.lag),
        (5, 5, 10),
        "the counts stored with the position"
    );
    bus.start().await;
    let got = wait_for(&t, 25).await;
    let mut again = ns(&got[15..]);
    again.sort_unstable();
    assert_eq!(again, (5..15).collect::<Vec<_>>(), "5..15 again");
    let end = Instant::now() + Duration::from_secs(10);
    while bus.get("s").await.unwrap().counters.delivered < 15 {
        assert!(Instant::now() < end, "never counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bus.get("s").await.unwrap().counters.delivered, 15);
    bus.close().await.unwrap();
}
