//! Events per second through the bus for 1, 100 and 1,000 subscriptions on one topic, with the
//! topic's reading shared (`bus.read_cache_bytes`, the default) and with sharing off (`0`: each
//! subscription reads, decodes, parses and matches every event on its own, as before issue 14
//! item 21), in the same run.
//!
//! Every subscription routes to one target topic the events addressed to it (`data.to` is its
//! name) or to all (`"all"`): the events of a run are addressed to nobody but one in a thousand
//! (to one subscription) and a last one to all, whose arrival from every subscription ends the
//! run. events/s = events published / (publish start .. the last marker delivered).
//!
//! `cargo bench -p busbar-bus --bench fanout [-- RUNS [SUBSCRIPTIONS...]]` (default 3 runs of 1,
//! 100 and 1000); prints one line per case with the median and every run. `FANOUT_EVENTS=N` sets
//! the events of a run, `FANOUT_MODE=shared|alone` runs one mode only.

use busbar_broker::datadir::MemDataDir;
use busbar_broker::{Broker, BrokerConfig, Event};
use busbar_bus::spec::from_json;
use busbar_bus::{Bus, BusConfig};
use busbar_log::disk::MemFs;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Events per run for `n` subscriptions: runs of a few seconds with sharing off
/// (`FANOUT_EVENTS` sets it for every case).
fn events_for(n: usize) -> usize {
    if let Some(e) = std::env::var("FANOUT_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return e;
    }
    match n {
        0..=10 => 100_000,
        11..=200 => 20_000,
        _ => 4_000,
    }
}

const PUBLISH_BATCH: usize = 500;

async fn bus(subs: usize, read_cache_bytes: usize) -> Bus {
    let broker = Broker::open(BrokerConfig {
        data: Some(Arc::new(MemDataDir::new(MemFs::new()))),
        ..Default::default()
    })
    .expect("broker");
    let broker = Arc::new(broker);
    for t in ["src", "out"] {
        broker
            .create_topic(t, Some(1), BTreeMap::new())
            .await
            .expect("topic");
    }
    let config = BusConfig {
        subscriptions_max: subs.max(1),
        read_cache_bytes,
        ..Default::default()
    };
    let bus = Bus::open_with(broker, config).expect("bus");
    bus.start().await;
    for i in 0..subs {
        let spec = json!({"name": format!("s{i}"), "sources": ["src"],
            "pattern": {"data": {"to": [format!("s{i}"), "all"]}},
            "target": {"topic": "out"}});
        bus.create(from_json(&spec).expect("spec"))
            .await
            .expect("create");
    }
    bus
}

/// One run: publishes `events` (the last addressed to all) and waits until every subscription
/// delivered the last one. Answers events/s.
async fn run(bus: &Bus, subs: usize, events: usize) -> f64 {
    let broker = bus.broker();
    let (_, out_before) = broker.offsets_of("out", 0).expect("out");
    let start = Instant::now();
    let mut expected = subs as u64;
    let mut sent = 0;
    while sent < events {
        let batch: Vec<Event> = (sent..(sent + PUBLISH_BATCH).min(events))
            .map(|n| {
                let to = if n == events - 1 {
                    "all".to_string()
                } else if n % 1000 == 999 {
                    expected += 1;
                    format!("s{}", (n / 1000) % subs)
                } else {
                    "nobody".to_string()
                };
                let value = json!({"to": to, "n": n, "customer": {"id": n % 97, "tier": "gold"},
                    "items": [{"sku": "a-1", "qty": 2}, {"sku": "b-2", "qty": 1}]});
                Event::value(value.to_string())
            })
            .collect();
        sent += batch.len();
        broker.publish("src", batch).await.expect("publish");
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (_, out) = broker.offsets_of("out", 0).expect("out");
        if out - out_before >= expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {expected}",
            out - out_before
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    events as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let runs: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(3);
    let mut cases: Vec<usize> = args.iter().skip(1).filter_map(|a| a.parse().ok()).collect();
    if cases.is_empty() {
        cases = vec![1, 100, 1000];
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for subs in cases {
            let events = events_for(subs);
            let modes = match std::env::var("FANOUT_MODE").as_deref() {
                Ok("shared") => vec![("shared", 64 << 20)],
                Ok("alone") => vec![("alone", 0)],
                _ => vec![("shared", 64 << 20), ("alone", 0)],
            };
            for (mode, cache) in modes {
                let bus = bus(subs, cache).await;
                let mut rates = Vec::new();
                for _ in 0..runs {
                    rates.push(run(&bus, subs, events).await);
                }
                let stats = bus.read_stats();
                bus.close().await.expect("close");
                let all: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
                println!(
                    "{subs:>5} subscriptions, {mode:<6}: {:>9.0} events/s (median of {runs}: {}; \
                     {events} events a run; parsed {} documents)",
                    median(rates),
                    all.join(", "),
                    stats.documents_parsed,
                );
            }
        }
    });
}
