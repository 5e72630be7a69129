//! `tls.ca_file` is read safely: only a regular file of bounded size, never a FIFO (which would
//! block a runtime worker) or a device (read until memory runs out), and the refusal does not
//! say whether the path exists.

use busbar_broker::datadir::MemDataDir;
use busbar_broker::{Broker, BrokerConfig};
use busbar_bus::spec::from_json;
use busbar_bus::Bus;
use busbar_log::disk::MemFs;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

async fn bus() -> Arc<Bus> {
    let b = Arc::new(
        Broker::open(BrokerConfig {
            data: Some(Arc::new(MemDataDir::new(MemFs::new()))),
            ..Default::default()
        })
        .unwrap(),
    );
    b.create_topic("src", Some(1), BTreeMap::new())
        .await
        .unwrap();
    Arc::new(Bus::open(b).unwrap())
}

fn spec(ca: &str) -> busbar_bus::SubscriptionSpec {
    from_json(&json!({"name": "s", "sources": ["src"],
        "target": {"url": "https://127.0.0.1:1/", "tls": {"ca_file": ca}}}))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_or_a_fifo_is_refused_at_once() {
    let bus = bus().await;
    let err = bus.create(spec("/dev/zero")).await.unwrap_err().to_string();
    assert!(err.contains("regular file"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("ca.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.unwrap().success());
    let create = bus.create(spec(fifo.to_str().unwrap()));
    let err = tokio::time::timeout(Duration::from_secs(5), create)
        .await
        .expect("create blocked on the FIFO")
        .unwrap_err()
        .to_string();
    assert!(err.contains("regular file"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_and_an_unreadable_path_are_refused_alike() {
    let bus = bus().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pem");
    let err = bus
        .create(spec(missing.to_str().unwrap()))
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.contains("os error"), "{err}");
    assert!(!err.to_lowercase().contains("no such file"), "{err}");
}
