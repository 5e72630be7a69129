//! Reliability D3 at broker level: a whole broker (topics, metadata, partition logs, committed
//! offsets, producer ids, subscriptions) on the crashable in-memory file system. Each seed runs
//! random admin and data operations and cuts the power at random points (unsynced bytes and
//! directory entries dropped, tails torn at 512-byte sectors); after every restart everything that
//! was acknowledged must be there: topics with their partition counts and configs, every published
//! event at its offset with its bytes, every committed offset, subscriptions; and producer ids are
//! never handed out twice. `BUSBAR_SEEDS=<n>` runs more seeds; a failure prints the seed.

use busbar_broker::datadir::MemDataDir;
use busbar_broker::{Broker, BrokerConfig, Event, OffsetCommit};
use busbar_bus::spec::from_json;
use busbar_bus::Bus;
use busbar_log::disk::MemFs;
use busbar_testkit::{for_each_seed, Rng};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
struct Model {
    /// topic -> (partitions, retention.ms override if any)
    topics: BTreeMap<String, (u32, Option<String>)>,
    /// (topic, partition, offset) -> value
    events: BTreeMap<(String, u32, u64), Vec<u8>>,
    /// (topic, partition) -> committed offset of group "g"
    committed: BTreeMap<(String, u32), u64>,
    subscriptions: HashSet<String>,
    producer_ids: HashSet<i64>,
}

fn open(fs: &MemFs) -> Broker {
    Broker::open(BrokerConfig {
        data: Some(Arc::new(MemDataDir::new(fs.clone()))),
        ..Default::default()
    })
    .expect("the broker opens after a power cut")
}

async fn step(b: &Broker, bus: &Bus, rng: &mut Rng, m: &mut Model) {
    let names = ["a", "b", "c", "d"];
    match rng.below(100) {
        0..=9 => {
            let name = names[rng.below(4) as usize];
            let parts = 1 + rng.below(3) as u32;
            let mut configs = BTreeMap::new();
            let retention = rng
                .chance(50)
                .then(|| (3_600_000 + rng.below(1000)).to_string());
            if let Some(r) = &retention {
                configs.insert("retention.ms".to_string(), r.clone());
            }
            if b.create_topic(name, Some(parts.into()), configs)
                .await
                .is_ok()
            {
                m.topics.insert(name.to_string(), (parts, retention));
            }
        }
        10..=12 => {
            if let Some(name) = m.topics.keys().nth(rng.below(4) as usize).cloned() {
                b.delete_topic(&name).await.unwrap();
                m.topics.remove(&name);
                m.events.retain(|(t, _, _), _| *t != name);
                m.committed.retain(|(t, _), _| *t != name);
            }
        }
        13..=17 => {
            if let Some((name, (n, _))) = m.topics.iter().nth(rng.below(4) as usize) {
                let (name, n) = (name.clone(), *n);
                let total = n + 1 + rng.below(2) as u32;
                b.add_partitions(&name, total.into()).await.unwrap();
                m.topics.get_mut(&name).unwrap().0 = total;
            }
        }
        18..=22 => {
            if let Some((name, (n, _))) = m.topics.iter().next() {
                let (name, n) = (name.clone(), *n);
                let p = rng.below(n.into()) as u32;
                let (_, hw) = b.offsets_of(&name, p.into()).unwrap();
                let offset = rng.below(hw + 1);
                let c = OffsetCommit {
                    topic: name.clone(),
                    partition: p,
                    offset,
                    metadata: String::new(),
                };
                b.commit_offsets("g", "", -1, vec![c]).await.unwrap();
                m.committed.insert((name, p), offset);
            }
        }
        23..=25 => {
            let (id, _) = b.init_producer_id(None).unwrap();
            assert!(
                m.producer_ids.insert(id),
                "producer id {id} handed out twice"
            );
        }
        26..=27 => {
            if let Some(src) = m.topics.keys().next().cloned() {
                let name = format!("s{}", rng.below(3));
                let spec = from_json(&json!({"name": name, "sources": [src],
                    "target": {"url": "http://127.0.0.1:9/"}}))
                .unwrap();
                if bus.create(spec).await.is_ok() {
                    m.subscriptions.insert(name);
                }
            }
        }
        _ => {
            if let Some((name, (n, _))) = m.topics.iter().nth(rng.below(4) as usize) {
                let (name, n) = (name.clone(), *n);
                let count = 1 + rng.below(5) as usize;
                let events: Vec<Event> = (0..count)
                    .map(|_| {
                        let len = 1 + rng.below(300) as usize;
                        Event {
                            value: Some(rng.bytes(len)),
                            partition: Some(rng.below(n.into()) as u32),
                            ..Event::default()
                        }
                    })
                    .collect();
                let at = b.publish(&name, events.clone()).await.unwrap();
                for (e, p) in events.iter().zip(at) {
                    m.events.insert(
                        (name.clone(), p.partition, p.offset),
                        e.value.clone().unwrap(),
                    );
                }
            }
        }
    }
}

async fn verify(b: &Broker, bus: &Bus, m: &Model, seed: u64) {
    let listed: BTreeMap<String, u32> = b
        .list_topics()
        .into_iter()
        .map(|t| (t.name, t.partitions))
        .collect();
    let want: BTreeMap<String, u32> = m.topics.iter().map(|(k, v)| (k.clone(), v.0)).collect();
    assert_eq!(listed, want, "seed {seed}: topics after the power cut");
    for (name, (_, retention)) in &m.topics {
        let d = b.describe_topic(name).unwrap();
        assert_eq!(
            d.overrides.get("retention.ms"),
            retention.as_ref(),
            "seed {seed}: {name}"
        );
    }
    for ((t, p, o), v) in &m.events {
        let got = b
            .read_events(t, (*p).into(), *o, 1, Duration::ZERO)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: {t}/{p}@{o}: {e}"));
        assert_eq!(
            got.first().map(|e| e.offset),
            Some(*o),
            "seed {seed}: {t}/{p}@{o} lost"
        );
        assert_eq!(
            got[0].value.as_ref(),
            Some(v),
            "seed {seed}: {t}/{p}@{o} changed"
        );
    }
    for ((t, p), o) in &m.committed {
        let c = b.committed("g", t, *p).map(|c| c.offset);
        assert_eq!(c, Some(*o), "seed {seed}: committed offset of {t}/{p}");
    }
    let subs: HashSet<String> = bus.list().await.into_iter().map(|s| s.spec.name).collect();
    assert_eq!(subs, m.subscriptions, "seed {seed}: subscriptions");
}

fn simulate(seed: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut rng = Rng::new(seed);
        let fs = MemFs::new();
        let mut m = Model::default();
        for _round in 0..3 {
            let b = Arc::new(open(&fs));
            let bus = Bus::open(b.clone()).expect("subscriptions open after a power cut");
            verify(&b, &bus, &m, seed).await;
            for _ in 0..rng.below(40) {
                step(&b, &bus, &mut rng, &mut m).await;
            }
            // Power cut: what was not synced is gone; the old broker never runs again.
            fs.crash(rng.chance(50).then(|| rng.next_u64()));
            std::mem::forget(bus);
            std::mem::forget(b);
        }
        let b = Arc::new(open(&fs));
        let bus = Bus::open(b.clone()).unwrap();
        verify(&b, &bus, &m, seed).await;
    });
}

#[test]
fn acknowledged_state_survives_power_cuts() {
    for_each_seed(1000, simulate);
}
