//! Concurrent PATCHes of different fields all land (issue 15 item 7): a merge patch reads the
//! current spec, merges and writes it in one step under the subscriptions lock, so two patches
//! at the same moment cannot both start from the same spec and lose one's change.

use busbar_broker::datadir::MemDataDir;
use busbar_broker::{Broker, BrokerConfig};
use busbar_bus::spec::from_json;
use busbar_bus::Bus;
use busbar_log::disk::MemFs;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The delivery fields patched, each on its own, with a value per round that no other round uses.
const FIELDS: &[(&str, u64)] = &[
    ("max_attempts", 100),
    ("retry_after_max_ms", 1_000),
    ("max_age_s", 1_000),
    ("timeout_ms", 1_000),
    ("concurrency", 100),
    ("waiting_max", 1_000),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_of_different_fields_all_land() {
    let b = Arc::new(
        Broker::open(BrokerConfig {
            data: Some(Arc::new(MemDataDir::new(MemFs::new()))),
            ..Default::default()
        })
        .unwrap(),
    );
    for t in ["src", "dst"] {
        b.create_topic(t, Some(1), BTreeMap::new()).await.unwrap();
    }
    let bus = Arc::new(Bus::open(b.clone()).unwrap());
    bus.start().await;
    let spec = json!({"name": "s", "sources": ["src"], "target": {"topic": "dst"}});
    bus.create(from_json(&spec).unwrap()).await.unwrap();
    for round in 1..=20u64 {
        let tasks: Vec<_> = FIELDS
            .iter()
            .map(|(field, base)| {
                let bus = bus.clone();
                let patch = json!({"delivery": { *field: base + round }});
                tokio::spawn(async move { bus.patch("s", &patch).await.map(|_| ()) })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let got = serde_json::to_value(bus.get("s").await.unwrap()).unwrap();
        for (field, base) in FIELDS {
            assert_eq!(
                got["delivery"][field],
                json!(base + round),
                "round {round}: delivery.{field} lost: {}",
                got["delivery"]
            );
        }
    }
}
