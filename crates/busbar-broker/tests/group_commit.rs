//! The Kafka produce path's group commit (`busbar-broker/src/sync.rs`) on a fault-injecting disk:
//! concurrent produces share fsyncs and every acknowledged batch was synced before its answer;
//! a failed fsync fails the waiting produces and every later one, and nothing is acknowledged
//! that was not synced.

use busbar_broker::datadir::{DataDir, MemDataDir};
use busbar_broker::{Broker, BrokerConfig};
use busbar_log::batch::{self, NewRecord};
use busbar_log::disk::{FaultPlan, FaultStorage, MemFs, Storage};
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An in-memory data directory whose partition logs go through a [`FaultStorage`].
struct FaultyDir {
    mem: MemDataDir,
    fs: MemFs,
    plans: Mutex<Vec<(String, Arc<FaultPlan>)>>,
}

impl FaultyDir {
    fn plan(&self, rel: &str) -> Arc<FaultPlan> {
        let plans = self.plans.lock().unwrap();
        plans
            .iter()
            .find(|(r, _)| r == rel)
            .expect("opened")
            .1
            .clone()
    }
}

impl DataDir for FaultyDir {
    fn storage(&self, rel: &str) -> io::Result<Arc<dyn Storage>> {
        if !rel.starts_with("topics/") {
            return self.mem.storage(rel);
        }
        let s = FaultStorage::new(self.fs.dir(rel));
        self.plans.lock().unwrap().push((rel.to_string(), s.plan()));
        Ok(Arc::new(s))
    }
    fn subdirs(&self, rel: &str) -> io::Result<Vec<String>> {
        self.mem.subdirs(rel)
    }
    fn remove_dir(&self, rel: &str) -> io::Result<()> {
        self.mem.remove_dir(rel)
    }
    fn describe(&self, rel: &str) -> String {
        self.mem.describe(rel)
    }
}

fn record(i: u32) -> Vec<u8> {
    batch::build(&[NewRecord {
        value: Some(format!("event {i}").into_bytes()),
        ..NewRecord::default()
    }])
}

async fn setup() -> (Arc<Broker>, Arc<FaultyDir>, Arc<FaultPlan>) {
    let fs = MemFs::new();
    let dir = Arc::new(FaultyDir {
        mem: MemDataDir::new(fs.clone()),
        fs,
        plans: Mutex::new(Vec::new()),
    });
    let b = Broker::open(BrokerConfig {
        data: Some(dir.clone()),
        ..Default::default()
    })
    .unwrap();
    b.create_topic("t", Some(1), BTreeMap::new()).await.unwrap();
    let plan = dir.plan("topics/t/0");
    (Arc::new(b), dir, plan)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_produces_share_fsyncs_and_are_acked_only_after_one() {
    let (b, _dir, plan) = setup().await;
    plan.set_sync_delay(Duration::from_millis(5));
    let before = plan.syncs();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let b = b.clone();
            let plan = plan.clone();
            tokio::spawn(async move {
                let at = b.produce("t", 0, record(i)).await.unwrap();
                // Acknowledged: at least one fsync finished since this batch was written.
                (at.base_offset, plan.syncs())
            })
        })
        .collect();
    let mut offsets = Vec::new();
    for t in tasks {
        let (offset, syncs_seen) = t.await.unwrap();
        assert!(
            syncs_seen > before,
            "offset {offset} acked before any fsync"
        );
        offsets.push(offset);
    }
    offsets.sort();
    assert_eq!(
        offsets,
        (0..200).collect::<Vec<u64>>(),
        "every batch got its own offset"
    );
    let syncs = plan.syncs() - before;
    assert!(
        syncs < 100,
        "200 concurrent produces took {syncs} fsyncs: no group commit"
    );
    let (_, high) = b.offsets_of("t", 0).unwrap();
    assert_eq!(high, 200, "all 200 durable and visible");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_fails_waiting_and_later_produces() {
    let (b, _dir, plan) = setup().await;
    b.produce("t", 0, record(0)).await.unwrap();
    // The next mutating operation is the next batch's append; the one after, its fsync.
    plan.fail_nth(plan.ops() + 1);
    let failed = b.produce("t", 0, record(1)).await;
    let err = failed
        .expect_err("a batch whose fsync failed was acknowledged")
        .to_string();
    assert!(err.contains("fdatasync"), "not the fsync failing: {err}");
    let later = b.produce("t", 0, record(2)).await;
    assert!(
        later.is_err(),
        "the partition must stay offline after a failed fsync: {later:?}"
    );
    let (_, high) = b.offsets_of("t", 0).unwrap();
    assert_eq!(high, 1, "only the synced batch is visible");
}
