//! What the produce path's metrics cost (issue 19), beside the produce itself in the same run:
//! `produced` (the three produce families: requests by outcome, events, bytes; a label lookup
//! each) plus one `request_latency` observation, as a Kafka produce request records them, against
//! `Broker::publish` of the same request (10 events of 100 bytes) into an in-memory data directory
//! (no disk wait: the CPU-only produce, so the ratio is the worst case; on a disk the produce is
//! slower and the share smaller).
//!
//! `cargo bench -p busbar-broker --bench metrics`; compiled in CI, run by hand (shared machine).

use busbar_broker::datadir::MemDataDir;
use busbar_broker::metrics::Metrics;
use busbar_broker::{Broker, BrokerConfig, Event};
use busbar_log::disk::MemFs;
use criterion::{criterion_group, criterion_main, Criterion};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

fn events() -> Vec<Event> {
    (0..10)
        .map(|i| Event::keyed(format!("k{i}"), vec![b'x'; 100]))
        .collect()
}

fn bench(c: &mut Criterion) {
    let metrics = Metrics::new(10_000);
    // Topics that already have series (the steady state), one of them the one recorded.
    for t in 0..100 {
        metrics.produced(&format!("topic-{t}"), "kafka", "ok", 1, 1);
    }
    c.bench_function("metrics_per_produce_request", |b| {
        b.iter(|| {
            metrics.produced("topic-42", "kafka", "ok", 10, 1_200);
            metrics
                .request_latency
                .observe(&["kafka", "Produce"], Duration::from_micros(180));
        })
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let broker = Arc::new(
        Broker::open(BrokerConfig {
            data: Some(Arc::new(MemDataDir::new(MemFs::new()))),
            ..Default::default()
        })
        .unwrap(),
    );
    rt.block_on(broker.create_topic("topic-42", Some(1), BTreeMap::new()))
        .unwrap();
    c.bench_function("publish_10_events_in_memory", |b| {
        b.iter(|| rt.block_on(broker.publish("topic-42", events())).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
