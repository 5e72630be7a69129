//! A recorded workload checked by the history checker: publishers and a group member work while the
//! broker is dropped without a clean shutdown (a process crash) twice; after each restart the
//! member resumes from its committed offsets. The history (every send, poll and commit) plus a
//! final drain must show no lost write, no unseen acknowledged write, no inconsistent offset, no
//! duplicate value at two offsets, no poll going backwards or skipping, no commit regression.

use busbar_broker::datadir::{DataDir, FsDataDir};
use busbar_broker::{Broker, BrokerConfig, ConsumerOptions, Event, GroupConsumer, StartAt};
use busbar_testkit::history::{check, History, Outcome, Tp};
use std::sync::Arc;
use std::time::Duration;

/// The real data directory without its lock: each "crash" below leaks the old broker instance
/// (still holding the lock, as a process would until it is gone), so the restarted one must not
/// take it.
struct Unlocked(FsDataDir);

impl DataDir for Unlocked {
    fn storage(&self, rel: &str) -> std::io::Result<Arc<dyn busbar_log::disk::Storage>> {
        self.0.storage(rel)
    }
    fn subdirs(&self, rel: &str) -> std::io::Result<Vec<String>> {
        self.0.subdirs(rel)
    }
    fn remove_dir(&self, rel: &str) -> std::io::Result<()> {
        self.0.remove_dir(rel)
    }
    fn describe(&self, rel: &str) -> String {
        self.0.describe(rel)
    }
}

fn open(dir: &std::path::Path) -> Arc<Broker> {
    let config = BrokerConfig {
        data: Some(Arc::new(Unlocked(FsDataDir::new(dir)))),
        group_initial_rebalance_delay: Duration::from_millis(10),
        ..Default::default()
    };
    Arc::new(Broker::open(config).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_leave_a_clean_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::default();
    let mut value = 0u64;
    let opts = ConsumerOptions {
        start: StartAt::Earliest,
        heartbeat_interval: Duration::from_millis(100),
        ..Default::default()
    };
    for round in 0..3 {
        let b = open(dir.path());
        if round == 0 {
            b.create_topic("t", Some(3), Default::default())
                .await
                .unwrap();
        }
        let mut member = GroupConsumer::join(b.clone(), "g", vec!["t".into()], opts.clone())
            .await
            .unwrap();
        let mut first_poll = true;
        for _ in 0..20 {
            let events: Vec<Event> = (0..10)
                .map(|_| {
                    value += 1;
                    Event::keyed(format!("k{}", value % 7), value.to_string())
                })
                .collect();
            let values: Vec<u64> = events
                .iter()
                .map(|e| {
                    String::from_utf8(e.value.clone().unwrap())
                        .unwrap()
                        .parse()
                        .unwrap()
                })
                .collect();
            match b.publish("t", events).await {
                Ok(at) => {
                    for (v, p) in values.iter().zip(at) {
                        h.send(1, ("t".into(), p.partition), *v, Outcome::Ok(p.offset));
                    }
                }
                Err(_) => values
                    .iter()
                    .for_each(|v| h.send(1, ("t".into(), 0), *v, Outcome::Unknown)),
            }
            let polled = member.poll(15, Duration::from_millis(20)).await.unwrap();
            let records: Vec<(Tp, u64, u64)> = polled
                .iter()
                .map(|e| {
                    (
                        ("t".to_string(), e.partition),
                        e.offset,
                        String::from_utf8(e.value.clone().unwrap())
                            .unwrap()
                            .parse()
                            .unwrap(),
                    )
                })
                .collect();
            h.poll(2, records, first_poll);
            first_poll = false;
            member.commit().await.unwrap();
            for (tp, p, off) in member.assignment() {
                h.commit("g", (tp, p), off, Outcome::Ok(()), false);
            }
        }
        // A crash: no leave, no close (the member and the broker it holds are leaked, so nothing
        // runs a clean shutdown). The next round restarts from committed offsets.
        std::mem::forget(member);
        drop(b);
    }
    let b = open(dir.path());
    let mut drain = Vec::new();
    for p in 0..3 {
        for e in b
            .read_events("t", p, 0, 100_000, Duration::ZERO)
            .await
            .unwrap()
        {
            drain.push((
                ("t".to_string(), p as u32),
                e.offset,
                String::from_utf8(e.value.unwrap())
                    .unwrap()
                    .parse()
                    .unwrap(),
            ));
        }
    }
    let report = check(&h, &drain);
    assert!(
        report.is_clean(),
        "{report:?}\n{}",
        h.to_jsonl().lines().take(5).collect::<Vec<_>>().join("\n")
    );
    assert_eq!(
        drain.len() as u64,
        value,
        "every published event is stored once"
    );
}
