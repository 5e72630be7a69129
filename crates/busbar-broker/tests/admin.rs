//! Admin operations (topic creation and deletion, added partitions) do their disk work on the
//! blocking pool: on a runtime with one worker and a slow disk, a task ticking beside them keeps
//! ticking instead of waiting for every fsync of every new partition.

mod common;

use busbar_broker::{Broker, BrokerConfig};
use common::Instrumented;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs `op` as a task on the one worker beside a task ticking every 5 ms; answers the longest
/// gap between ticks and how long `op` took.
async fn beside_a_ticker<F>(op: F) -> (Duration, Duration)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut worst = Duration::ZERO;
            let mut last = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
                worst = worst.max(last.elapsed());
                last = Instant::now();
            }
            worst
        }
    });
    // Let the ticker start before the operation takes the worker.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t = Instant::now();
    tokio::spawn(op).await.unwrap();
    let took = t.elapsed();
    stop.store(true, Ordering::SeqCst);
    (ticker.await.unwrap(), took)
}

#[test]
fn admin_disk_work_does_not_stall_the_async_workers() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let data = Instrumented::new(dir.path());
        let b = Arc::new(
            Broker::open(BrokerConfig {
                data: Some(data.clone()),
                ..Default::default()
            })
            .unwrap(),
        );
        data.probe.set_sync_delay(Duration::from_millis(2));
        let b1 = b.clone();
        let create = beside_a_ticker(async move {
            b1.create_topic("many", Some(24), Default::default())
                .await
                .unwrap();
        });
        check("create 24 partitions", create.await);
        let b1 = b.clone();
        let add = beside_a_ticker(async move {
            b1.add_partitions("many", 48).await.unwrap();
        });
        check("add 24 partitions", add.await);
        let b1 = b.clone();
        let delete = beside_a_ticker(async move {
            b1.delete_topic("many").await.unwrap();
        });
        check("delete 48 partitions", delete.await);
        assert!(b.list_topics().is_empty());
    });
}

fn check(what: &str, (worst, took): (Duration, Duration)) {
    assert!(
        took > Duration::from_millis(200),
        "{what}: the slow disk makes it take a while ({took:?})"
    );
    assert!(
        worst < took / 3,
        "{what}: the ticker waited {worst:?} while it ran for {took:?}"
    );
}
