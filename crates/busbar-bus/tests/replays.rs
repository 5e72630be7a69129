//! Replay runs are durable (issue 14 item 11): a run and its counts survive a restart (shown
//! `INTERRUPTED` with a `last_replayed_time` from which a new run finishes the job), `close()`
//! waits for runs, pausing or updating the subscription stops them, and only the last
//! `REPLAYS_KEPT` runs of a subscription are kept.

use busbar_broker::datadir::FaultDataDir;
use busbar_broker::time::{format_rfc3339, parse_rfc3339};
use busbar_broker::{Broker, BrokerConfig, Event};
use busbar_bus::spec::from_json;
use busbar_bus::{Bus, ReplaySpec, RunState, RunView, REPLAYS_KEPT};
use busbar_log::disk::MemFs;
use busbar_testkit::target::{Received, Target};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Events in the replayed range, one a second.
const EVENTS: i64 = 20;

async fn open(fs: &MemFs) -> (Arc<Broker>, Bus) {
    let dir = Arc::new(FaultDataDir::new(fs.clone(), &[]));
    let b = Arc::new(
        Broker::open(BrokerConfig {
            data: Some(dir),
            ..Default::default()
        })
        .unwrap(),
    );
    let bus = Bus::open(b.clone()).unwrap();
    bus.start().await;
    (b, bus)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Topic `src` with `EVENTS` events `{"n": i}` stamped `base + i` seconds, and subscription `s`
/// (from the latest offset: only replays reach the target). Answers `base`.
async fn setup(b: &Broker, bus: &Bus, t: &Target) -> i64 {
    b.create_topic("src", Some(1), BTreeMap::new())
        .await
        .unwrap();
    let base = now_ms() - 120_000;
    let events = (0..EVENTS)
        .map(|i| Event {
            timestamp: Some(base + i * 1000),
            ..Event::value(json!({ "n": i }).to_string())
        })
        .collect();
    b.publish("src", events).await.unwrap();
    bus.create(from_json(&sub(t, 5000)).unwrap()).await.unwrap();
    base
}

fn sub(t: &Target, timeout_ms: u32) -> Value {
    json!({"name": "s", "sources": ["src"], "start": "latest", "target": {"url": t.url("/")},
        "delivery": {"timeout_ms": timeout_ms}})
}

fn replay(name: &str, from: i64, to: i64, rate: u32) -> ReplaySpec {
    let v = json!({"name": name, "from": format_rfc3339(from), "to": format_rfc3339(to),
        "rate": rate});
    serde_json::from_value(v).unwrap()
}

fn ns(got: &[Received]) -> Vec<i64> {
    got.iter()
        .map(|r| r.json()["n"].as_i64().unwrap())
        .collect()
}

async fn wait_done(bus: &Bus, run: &str) -> RunView {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let v = bus.replay("s", run, false).await.unwrap();
        if v.state != RunState::Running {
            return v;
        }
        assert!(Instant::now() < end, "still running: {v:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A run closed half way is `INTERRUPTED` once `close()` returns; after the restart it is still
/// listed with its counts, and a new run from its `last_replayed_time` delivers the rest: every
/// event of the range arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_survives_a_restart_and_resumes_from_its_last_replayed_time() {
    let fs = MemFs::new();
    let (b, bus) = open(&fs).await;
    let t = Target::ok();
    let base = setup(&b, &bus, &t).await;
    let end = base + EVENTS * 1000;
    bus.start_replay("s", replay("r1", base, end, 4))
        .await
        .unwrap();
    t.wait(Duration::from_secs(20), |r| r.len() >= 6);
    bus.close().await.unwrap();
    let closed = bus.replay("s", "r1", false).await.unwrap();
    assert_eq!(closed.state, RunState::Interrupted, "{closed:?}");
    let sent = t.received().len();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(t.received().len(), sent, "nothing delivered after close()");
    drop(bus);
    drop(b);

    let (_b, bus) = open(&fs).await;
    let runs = bus.replays("s").await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let r1 = &runs[0];
    assert_eq!(r1.state, RunState::Interrupted, "{r1:?}");
    assert_eq!(r1.counts.delivered, sent as u64, "{r1:?}");
    assert!(r1.counts.matched >= sent as u64, "{r1:?}");
    let resume = parse_rfc3339(r1.last_replayed_time.as_deref().expect("progress")).unwrap();
    assert!(resume > base && resume < end, "{r1:?}");
    let first_not_done = (resume - base + 999) / 1000;
    assert!(first_not_done <= sent as i64, "{r1:?} after {sent} sent");

    bus.start_replay("s", replay("r2", resume, end, 100))
        .await
        .unwrap();
    let r2 = wait_done(&bus, "r2").await;
    assert_eq!(r2.state, RunState::Completed, "{r2:?}");
    assert_eq!(r2.last_replayed_time, Some(format_rfc3339(end)));
    let got = ns(&t.received());
    assert!(got[sent..].iter().all(|n| *n >= first_not_done), "{got:?}");
    let all: BTreeSet<i64> = got.into_iter().collect();
    assert_eq!(all, (0..EVENTS).collect(), "every event replayed");
    bus.close().await.unwrap();
}

/// A power cut while a run runs: after the restart it is `INTERRUPTED` with the progress of its
/// last checkpoint (at most a second old).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_at_a_power_cut_shows_interrupted_with_its_checkpoint() {
    let fs = MemFs::new();
    let (b, bus) = open(&fs).await;
    let t = Target::ok();
    let base = setup(&b, &bus, &t).await;
    bus.start_replay("s", replay("r", base, base + EVENTS * 1000, 4))
        .await
        .unwrap();
    t.wait(Duration::from_secs(20), |r| r.len() >= 10);
    fs.crash(None);
    std::mem::forget(bus);
    std::mem::forget(b);

    let (_b, bus) = open(&fs).await;
    let r = bus.replay("s", "r", false).await.unwrap();
    assert_eq!(r.state, RunState::Interrupted, "{r:?}");
    assert!(r
        .error
        .as_deref()
        .unwrap_or("")
        .contains("last_replayed_time"));
    assert!(r.counts.delivered >= 4, "{r:?}");
    assert!(r.last_replayed_time.is_some(), "{r:?}");
    bus.close().await.unwrap();
}

/// Pausing stops a run (`STOPPED`, nothing more delivered) and a paused subscription starts
/// none; updating stops one too (it would deliver with the old spec).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_or_updating_the_subscription_stops_its_runs() {
    let fs = MemFs::new();
    let (b, bus) = open(&fs).await;
    let t = Target::ok();
    let base = setup(&b, &bus, &t).await;
    let end = base + EVENTS * 1000;
    bus.start_replay("s", replay("r1", base, end, 4))
        .await
        .unwrap();
    t.wait(Duration::from_secs(20), |r| !r.is_empty());
    bus.set_paused("s", true).await.unwrap();
    let r1 = bus.replay("s", "r1", false).await.unwrap();
    assert_eq!(r1.state, RunState::Stopped, "{r1:?}");
    assert!(
        r1.error.as_deref().unwrap_or("").contains("paused"),
        "{r1:?}"
    );
    let sent = t.received().len();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(t.received().len(), sent, "delivered while paused");
    assert!(bus
        .start_replay("s", replay("r2", base, end, 4))
        .await
        .is_err());

    bus.set_paused("s", false).await.unwrap();
    bus.start_replay("s", replay("r2", base, end, 4))
        .await
        .unwrap();
    t.wait(Duration::from_secs(20), |r| r.len() > sent);
    bus.update("s", from_json(&sub(&t, 6000)).unwrap())
        .await
        .unwrap();
    let r2 = bus.replay("s", "r2", false).await.unwrap();
    assert_eq!(r2.state, RunState::Stopped, "{r2:?}");
    assert!(
        r2.error.as_deref().unwrap_or("").contains("updated"),
        "{r2:?}"
    );
    let sent = t.received().len();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(t.received().len(), sent, "delivered after the update");
    bus.close().await.unwrap();
}

/// Runs are kept across restarts up to `REPLAYS_KEPT` per subscription, the oldest forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_runs_are_kept_across_a_restart() {
    let fs = MemFs::new();
    let (b, bus) = open(&fs).await;
    let t = Target::ok();
    let base = setup(&b, &bus, &t).await;
    let total = REPLAYS_KEPT + 2;
    for i in 0..total {
        let name = format!("r{i:02}");
        // An empty range: the run completes at once.
        bus.start_replay("s", replay(&name, base - 10_000, base - 5_000, 100))
            .await
            .unwrap();
        assert_eq!(wait_done(&bus, &name).await.state, RunState::Completed);
    }
    bus.close().await.unwrap();
    drop(bus);
    drop(b);
    let (_b, bus) = open(&fs).await;
    let names: Vec<String> = (bus.replays("s").await.unwrap().into_iter())
        .map(|r| r.name)
        .collect();
    let kept: Vec<String> = (total - REPLAYS_KEPT..total)
        .map(|i| format!("r{i:02}"))
        .collect();
    assert_eq!(names, kept);
    bus.close().await.unwrap();
}

/// A run whose `to` is still in the future could not replay what is stored after it starts,
/// yet would claim it (`last_replayed_time` = `to`): such a run is refused, naming `to`; a run up
/// to now is accepted and claims no more than now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_to_the_future_is_refused() {
    let fs = MemFs::new();
    let (b, bus) = open(&fs).await;
    let t = Target::ok();
    let base = setup(&b, &bus, &t).await;
    let err = bus
        .start_replay("s", replay("r", base, now_ms() + 3_600_000, 1000))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, busbar_bus::BusError::InvalidSubscription { path, reason }
            if path == "to" && reason.contains("future")),
        "{err:?}"
    );
    let to = now_ms();
    bus.start_replay("s", replay("r", base, to, 1000))
        .await
        .unwrap();
    let r = wait_done(&bus, "r").await;
    assert_eq!(r.state, RunState::Completed, "{r:?}");
    let claimed = parse_rfc3339(r.last_replayed_time.as_deref().unwrap()).unwrap();
    assert!(claimed <= to, "{r:?}");
    bus.close().await.unwrap();
}

/// Suspected S2: producers may set any CreateTime, so timestamps need not follow offsets. Events
/// stamped in a scrambled order (`n` stored at offset `n`, stamped `base + (7n mod 30)` s); the run
/// `[base + 5 s, base + 25 s)` is interrupted (bus closed) after a few deliveries and started again
/// under its name after a restart: every event stamped in the range arrives exactly once, none
/// outside it. (Failed before: the run ended at the first event stamped at or after `to`, so an
/// in-range event stored after it was never replayed, and the second start replayed from the
/// beginning again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_scrambled_timestamps_delivers_each_event_once_across_a_restart() {
    let fs = MemFs::new();
    let (b, bus) = open(&fs).await;
    let t = Target::ok();
    b.create_topic("src", Some(1), BTreeMap::new())
        .await
        .unwrap();
    let base = now_ms() - 120_000;
    let stamp = |n: i64| base + (7 * n % 30) * 1000;
    let events = (0..30)
        .map(|n| Event {
            timestamp: Some(stamp(n)),
            ..Event::value(json!({ "n": n }).to_string())
        })
        .collect();
    b.publish("src", events).await.unwrap();
    bus.create(from_json(&sub(&t, 5000)).unwrap())
        .await
        .unwrap();
    let (from, to) = (base + 5_000, base + 25_000);
    let expected: BTreeSet<i64> = (0..30)
        .filter(|n| (from..to).contains(&stamp(*n)))
        .collect();
    assert_eq!(expected.len(), 20);
    bus.start_replay("s", replay("r", from, to, 8))
        .await
        .unwrap();
    t.wait(Duration::from_secs(20), |r| r.len() >= 5);
    bus.close().await.unwrap();
    let sent = t.received().len();
    assert!(sent < 20, "the run was not interrupted: {sent} sent");
    let closed = bus.replay("s", "r", false).await.unwrap();
    assert_eq!(closed.state, RunState::Interrupted, "{closed:?}");
    drop(bus);
    drop(b);

    let (_b, bus) = open(&fs).await;
    let again = bus
        .start_replay("s", replay("r", from, to, 100))
        .await
        .unwrap();
    assert_eq!(
        again.counts.delivered, sent as u64,
        "its counts go on: {again:?}"
    );
    let r = wait_done(&bus, "r").await;
    assert_eq!(r.state, RunState::Completed, "{r:?}");
    let got = ns(&t.received());
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        expected.iter().copied().collect::<Vec<_>>(),
        "each in-range event once: {got:?}"
    );
    assert_eq!(r.counts.delivered, 20, "{r:?}");
    bus.close().await.unwrap();
}

/// R14f-1: a STOPPED run whose cursor is now below the log start (DeleteRecords, or retention
/// deleting the oldest segment while the run was stopped) cannot go on: the resumed run reads at
/// its cursor, gets OffsetOutOfRange and ends FAILED, where the live worker moves to the log start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14f_a_resumed_run_below_the_log_start_completes() {
    let fs = MemFs::new();
    let (b, bus) = open(&fs).await;
    let t = Target::ok();
    let base = setup(&b, &bus, &t).await;
    let end = base + EVENTS * 1000;
    bus.start_replay("s", replay("r", base, end, 4))
        .await
        .unwrap();
    t.wait(Duration::from_secs(20), |r| r.len() >= 2);
    bus.set_paused("s", true).await.unwrap();
    let stopped = bus.replay("s", "r", false).await.unwrap();
    assert_eq!(stopped.state, RunState::Stopped, "{stopped:?}");
    let sent = t.received().len();
    assert!(sent < 10, "{sent}");
    b.delete_records("src", 0, Some(10)).await.unwrap();
    bus.set_paused("s", false).await.unwrap();
    bus.start_replay("s", replay("r", base, end, 100))
        .await
        .unwrap();
    let r = wait_done(&bus, "r").await;
    assert_eq!(r.state, RunState::Completed, "{r:?}");
    let got: BTreeSet<i64> = ns(&t.received()[sent..]).into_iter().collect();
    assert_eq!(got, (10..EVENTS).collect(), "what is left of the range");
    assert_eq!(
        r.counts.expired as usize,
        10 - sent,
        "gone before the run reached them"
    );
    bus.close().await.unwrap();
}

/// R14f-2: a run STOPPED by an update is resumed (same name and range) with the new spec from
/// the old cursor: events before the cursor that only the new pattern matches are never replayed,
/// yet the run ends COMPLETED with last_replayed_time = to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14f_a_run_resumed_after_an_update_replays_what_the_new_spec_matches() {
    let fs = MemFs::new();
    let (b, bus) = open(&fs).await;
    let t = Target::ok();
    let base = setup(&b, &bus, &t).await;
    let with = |pattern: Value| {
        let mut v = sub(&t, 5000);
        v["pattern"] = pattern;
        from_json(&v).unwrap()
    };
    bus.update("s", with(json!({"data": {"n": [{"numeric": [">=", 10]}]}})))
        .await
        .unwrap();
    let end = base + EVENTS * 1000;
    bus.start_replay("s", replay("r", base, end, 4))
        .await
        .unwrap();
    t.wait(Duration::from_secs(20), |r| r.len() >= 2);
    bus.update("s", with(json!({"data": {"n": [{"numeric": ["<", 10]}]}})))
        .await
        .unwrap();
    let stopped = bus.replay("s", "r", false).await.unwrap();
    assert_eq!(stopped.state, RunState::Stopped, "{stopped:?}");
    let sent = t.received().len();
    bus.start_replay("s", replay("r", base, end, 100))
        .await
        .unwrap();
    let r = wait_done(&bus, "r").await;
    assert_eq!(r.state, RunState::Completed, "{r:?}");
    let got: BTreeSet<i64> = ns(&t.received()[sent..]).into_iter().collect();
    assert_eq!(
        got,
        (0..10).collect(),
        "the range through the current pattern: {r:?}"
    );
    bus.close().await.unwrap();
}

/// R14f-3: a run's record carries one cursor per source partition, written as ONE internal row
/// (checkpoints and the end, errors ignored). Past the 1 MiB batch limit (here: 4,000 partitions
/// of a 200-char topic, inside partitions_max = 10,000) no write of the run lands: the run ends
/// COMPLETED in memory, but after a restart it reads INTERRUPTED with no progress, and resuming
/// it under its name replays the whole range again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14f_a_run_over_many_partitions_is_durable() {
    let fs = MemFs::new();
    let (b, bus) = open(&fs).await;
    let t = Target::ok();
    let topic = "t".repeat(200);
    b.create_topic(&topic, Some(4000), BTreeMap::new())
        .await
        .unwrap();
    let base = now_ms() - 60_000;
    let ev = Event {
        timestamp: Some(base),
        ..Event::value(json!({ "n": 0 }).to_string())
    };
    b.publish(&topic, vec![ev]).await.unwrap();
    let v =
        json!({"name": "s", "sources": [topic], "start": "latest", "target": {"url": t.url("/")}});
    bus.create(from_json(&v).unwrap()).await.unwrap();
    bus.start_replay("s", replay("r", base, base + 1000, 100))
        .await
        .unwrap();
    let r = wait_done(&bus, "r").await;
    assert_eq!(r.state, RunState::Completed, "{r:?}");
    bus.close().await.unwrap();
    drop(bus);
    drop(b);
    let (_b, bus) = open(&fs).await;
    let r = bus.replay("s", "r", false).await.unwrap();
    assert_eq!(r.state, RunState::Completed, "after a restart: {r:?}");
}
