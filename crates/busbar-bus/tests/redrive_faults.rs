//! Redrive on a disk that fails (issue 14 item 12): a redrive whose write lands only in part sends
//! the letters whose retry entry landed, unmarks the others, and a second redrive sends exactly
//! those: every letter is delivered once, none twice, none lost.

use busbar_broker::datadir::FaultDataDir;
use busbar_broker::{Broker, BrokerConfig, Event};
use busbar_bus::spec::from_json;
use busbar_bus::{Bus, Filter};
use busbar_log::disk::MemFs;
use busbar_testkit::target::Target;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Letters in one redrive: enough for the write to be split into two batches (1 MiB each).
const LETTERS: u64 = 3000;

fn letter(n: u64) -> Event {
    let h = |k: &str, v: String| (format!("busbar-dlq-{k}"), v.into_bytes());
    Event {
        key: None,
        value: Some(json!({ "n": n }).to_string().into_bytes()),
        headers: vec![
            h("subscription", "s".into()),
            h("reason", "http_status".into()),
            h("source-topic", "in".into()),
            h("source-partition", "0".into()),
            h("source-offset", n.to_string()),
        ],
        timestamp: None,
        partition: None,
    }
}

/// Waits until `n` deliveries arrived and a moment more; answers how often each `n` came.
async fn delivered(t: &Target, n: usize) -> BTreeMap<u64, usize> {
    let end = Instant::now() + Duration::from_secs(30);
    while t.received().len() < n {
        assert!(Instant::now() < end, "only {} of {n}", t.received().len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut out = BTreeMap::new();
    for r in t.received() {
        *out.entry(r.json()["n"].as_u64().unwrap()).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_written_in_part_sends_each_letter_once() {
    let dir = Arc::new(FaultDataDir::new(MemFs::new(), &["internal/retries"]));
    let b = Arc::new(
        Broker::open(BrokerConfig {
            data: Some(dir.clone()),
            ..Default::default()
        })
        .unwrap(),
    );
    for t in ["in", "dlq"] {
        b.create_topic(t, Some(1), Default::default())
            .await
            .unwrap();
    }
    let bus = Bus::open(b.clone()).unwrap();
    bus.start().await;
    let t = Target::ok();
    let spec = json!({"name": "s", "sources": ["in"], "target": {"url": t.url("/")},
                      "dead_letter_topic": "dlq"});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    b.publish("dlq", (0..LETTERS).map(letter).collect())
        .await
        .unwrap();

    // The first batch of the redrive's write lands, the second fails.
    let plan = dir.plan("internal/retries").expect("faulted");
    let first = plan.ops();
    plan.fail_nth(first + 2);
    let all = Filter::default();
    let failed = bus.redrive("dlq", &all, 10_000, false).await;
    assert!(failed.is_err(), "{failed:?}");
    assert!(plan.failures() > 0, "the write was not split or not failed");

    // What landed is sent; what did not is not marked.
    let listed = bus.dead_letters("dlq", &all, 10_000).await.unwrap();
    let marked: BTreeSet<u64> = (listed.iter())
        .filter(|(d, _)| d.redriven_at.is_some())
        .map(|(d, _)| d.offset)
        .collect();
    assert!(
        !marked.is_empty() && marked.len() < LETTERS as usize,
        "{} marked",
        marked.len()
    );
    let got = delivered(&t, marked.len()).await;
    assert_eq!(got.keys().copied().collect::<BTreeSet<_>>(), marked);

    // A second redrive sends exactly the rest: each letter once in all.
    let second = bus.redrive("dlq", &all, 10_000, false).await.unwrap();
    assert_eq!(second.skipped, marked.len());
    assert_eq!(second.redriven + marked.len(), LETTERS as usize);
    let got = delivered(&t, LETTERS as usize).await;
    assert_eq!(got.len(), LETTERS as usize);
    assert!(got.values().all(|c| *c == 1), "a letter was sent twice");
    bus.close().await.unwrap();
}
