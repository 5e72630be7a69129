//! Topics, publish, fetch and committed offsets through the broker's public API, on a real data
//! directory, including restarts with and without a clean shutdown.

use busbar_broker::partitioner::for_key;
use busbar_broker::{Broker, BrokerConfig, BrokerError, Event, OffsetCommit};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn open(dir: &std::path::Path) -> Broker {
    Broker::open(BrokerConfig {
        data_dir: dir.into(),
        ..Default::default()
    })
    .unwrap()
}

fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn topic_lifecycle_and_validation() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let info = b
        .create_topic("orders", Some(3), cfg(&[("retention.ms", "1000")]))
        .await
        .unwrap();
    assert_eq!((info.partitions, info.id.len()), (3, 32));
    assert!(matches!(
        b.create_topic("orders", Some(1), cfg(&[])).await,
        Err(BrokerError::TopicExists(_))
    ));
    for bad in ["", "..", "a b", &"x".repeat(250)] {
        assert!(
            matches!(
                b.create_topic(bad, Some(1), cfg(&[])).await,
                Err(BrokerError::InvalidTopicName { .. })
            ),
            "{bad:?}"
        );
    }
    for n in [0, -1, 1_000_000] {
        assert!(matches!(
            b.create_topic("p", Some(n), cfg(&[])).await,
            Err(BrokerError::InvalidPartitions(_))
        ));
    }
    assert!(matches!(
        b.create_topic("c", None, cfg(&[("retention.ms", "x")]))
            .await,
        Err(BrokerError::InvalidConfig { .. })
    ));
    assert_eq!(b.list_topics().len(), 1, "failed creates changed nothing");
    let d = b.describe_topic("orders").unwrap();
    assert_eq!(d.configs["retention.ms"], "1000");
    assert_eq!(d.overrides.len(), 1);
    b.add_partitions("orders", 5).await.unwrap();
    assert!(matches!(
        b.add_partitions("orders", 4).await,
        Err(BrokerError::InvalidPartitions(_))
    ));
    let d = b
        .alter_configs(
            "orders",
            [
                ("retention.ms".to_string(), None),
                ("segment.bytes".to_string(), Some("4096".to_string())),
            ]
            .into(),
        )
        .await
        .unwrap();
    assert_eq!(d.configs["retention.ms"], "604800000");
    assert_eq!(d.configs["segment.bytes"], "4096");
    assert!(b
        .alter_configs(
            "orders",
            [("segment.bytes".to_string(), Some("1".to_string()))].into()
        )
        .await
        .is_err());
    assert_eq!(
        b.describe_topic("orders").unwrap().configs["segment.bytes"],
        "4096"
    );
    b.delete_topic("orders").await.unwrap();
    assert!(matches!(
        b.describe_topic("orders"),
        Err(BrokerError::UnknownTopic(_))
    ));
    assert!(!dir.path().join("topics/orders").exists());
}

/// Names equal once `.` and `_` are treated alike collide (Kafka refuses the second): the broker
/// checks under the lock that creates topics, so of two concurrent creations exactly one wins,
/// whichever front end sent them (before: the check lived in the Kafka front end only, and both
/// were created).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn colliding_topic_names_are_refused_even_when_created_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let b = Arc::new(open(dir.path()));
    let mut tasks = Vec::new();
    for i in 0..8 {
        for name in [format!("race{i}.x"), format!("race{i}_x")] {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                let r = b.create_topic(&name, Some(1), cfg(&[])).await;
                (name, r)
            }));
        }
    }
    let mut created = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (name, Ok(_)) => created.push(name),
            (name, Err(BrokerError::TopicCollides { name: n, existing })) => {
                assert_eq!(n, name);
                assert_eq!(existing.replace('.', "_"), name.replace('.', "_"));
            }
            (name, Err(e)) => panic!("{name}: {e}"),
        }
    }
    assert_eq!(created.len(), 8, "one of each pair: {created:?}");
    let e = b
        .create_topic("race0.x", Some(1), cfg(&[]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            BrokerError::TopicExists(_) | BrokerError::TopicCollides { .. }
        ),
        "{e}"
    );
    let e = b.create_topic("a_b", Some(1), cfg(&[])).await.map(|_| ());
    assert!(e.is_ok());
    let e = b.create_topic("a.b", Some(1), cfg(&[])).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "topic \"a.b\" collides with existing topic \"a_b\": names that differ only in '.' and \
         '_' are not allowed together"
    );
    assert_eq!(
        b.list_topics().len(),
        9,
        "refused creations changed nothing"
    );
    assert!(
        b.create_topic("a-b", Some(1), cfg(&[])).await.is_ok(),
        "'-' is no '.'"
    );
}

#[tokio::test]
async fn keyed_events_land_where_kafka_would_put_them() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic("t", Some(7), cfg(&[])).await.unwrap();
    let events: Vec<Event> = (0..50)
        .map(|i| Event::keyed(format!("key-{i}"), format!("v{i}")))
        .collect();
    let at = b.publish("t", events).await.unwrap();
    for (i, p) in at.iter().enumerate() {
        assert_eq!(p.partition, for_key(format!("key-{i}").as_bytes(), 7));
    }
    // Explicit partitions are honoured; an unknown one refuses the whole request.
    let e = Event {
        partition: Some(2),
        ..Event::value("x")
    };
    assert_eq!(b.publish("t", vec![e]).await.unwrap()[0].partition, 2);
    let before = b.describe_topic("t").unwrap();
    let bad = vec![
        Event::value("ok"),
        Event {
            partition: Some(7),
            ..Event::value("x")
        },
    ];
    assert!(matches!(
        b.publish("t", bad).await,
        Err(BrokerError::UnknownPartition { partition: 7, .. })
    ));
    assert_eq!(b.describe_topic("t").unwrap(), before, "nothing was stored");
    assert!(matches!(
        b.publish("nope", vec![Event::value("x")]).await,
        Err(BrokerError::UnknownTopic(_))
    ));
}

#[tokio::test]
async fn events_read_back_with_key_value_headers_and_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic("t", Some(1), cfg(&[("max.message.bytes", "2000")]))
        .await
        .unwrap();
    let e = Event {
        key: Some(b"k".to_vec()),
        value: Some(b"v".to_vec()),
        headers: vec![("trace".into(), b"abc".to_vec())],
        timestamp: Some(1_700_000_000_123),
        partition: None,
    };
    b.publish(
        "t",
        vec![
            e.clone(),
            Event::value(vec![1u8; 900]),
            Event::value(vec![2u8; 900]),
        ],
    )
    .await
    .unwrap();
    let evs = b.read_events("t", 0, 0, 10, Duration::ZERO).await.unwrap();
    assert_eq!(
        evs.len(),
        3,
        "events were split across batches to fit max.message.bytes"
    );
    assert_eq!(
        (evs[0].key.clone(), evs[0].timestamp, evs[0].headers.clone()),
        (e.key, 1_700_000_000_123, e.headers)
    );
    assert_eq!(
        b.read_events("t", 0, 1, 1, Duration::ZERO).await.unwrap()[0].offset,
        1
    );
    let big = Event::value(vec![0u8; 3000]);
    assert!(matches!(
        b.publish("t", vec![big]).await,
        Err(BrokerError::MessageTooLarge { .. })
    ));
    assert_eq!(
        b.offset_for_timestamp("t", 0, 1_700_000_000_124).unwrap(),
        1
    );
    assert!(matches!(
        b.read_events("t", 0, 99, 1, Duration::ZERO).await,
        Err(BrokerError::OffsetOutOfRange { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_long_polls_until_data_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let b = Arc::new(open(dir.path()));
    b.create_topic("t", Some(1), cfg(&[])).await.unwrap();
    let start = Instant::now();
    let r = b
        .fetch("t", 0, 0, 1 << 20, 1, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(r.data.is_empty() && start.elapsed() >= Duration::from_millis(190));
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            b.fetch("t", 0, 0, 1 << 20, 1, Duration::from_secs(20))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    b.publish("t", vec![Event::value("wake")]).await.unwrap();
    let r = waiter.await.unwrap().unwrap();
    assert!(!r.data.is_empty());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "woken by the publish, not the timeout"
    );
}

#[tokio::test]
async fn topics_events_and_offsets_survive_restarts_clean_or_not() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        b.create_topic("t", Some(2), cfg(&[("cleanup.policy", "compact")]))
            .await
            .unwrap();
        b.publish(
            "t",
            (0..20).map(|i| Event::keyed(format!("{i}"), "v")).collect(),
        )
        .await
        .unwrap();
        let c = OffsetCommit {
            topic: "t".into(),
            partition: 1,
            offset: 3,
            metadata: "m".into(),
        };
        b.commit_offsets("g", "", -1, vec![c]).await.unwrap();
        b.close().unwrap();
    }
    {
        let b = open(dir.path());
        let d = b.describe_topic("t").unwrap();
        assert_eq!(d.configs["cleanup.policy"], "compact");
        assert_eq!(
            d.partitions.iter().map(|p| p.high_watermark).sum::<u64>(),
            20
        );
        assert_eq!(b.committed("g", "t", 1).unwrap().metadata, "m");
        let c = OffsetCommit {
            topic: "t".into(),
            partition: 1,
            offset: 5,
            metadata: String::new(),
        };
        b.commit_offsets("g", "", -1, vec![c]).await.unwrap();
        b.publish("t", vec![Event::value("after")]).await.unwrap();
        // Dropped without close: as after kill -9.
    }
    let b = open(dir.path());
    assert_eq!(b.committed("g", "t", 1).unwrap().offset, 5);
    let total: u64 = b
        .describe_topic("t")
        .unwrap()
        .partitions
        .iter()
        .map(|p| p.high_watermark)
        .sum();
    assert_eq!(total, 21);
    let bad = OffsetCommit {
        topic: "nope".into(),
        partition: 0,
        offset: 1,
        metadata: String::new(),
    };
    assert!(matches!(
        b.commit_offsets("g", "", -1, vec![bad]).await,
        Err(BrokerError::UnknownTopic(_))
    ));
}

#[tokio::test]
async fn a_damaged_metadata_file_stops_startup_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path())
        .create_topic("t", Some(1), cfg(&[]))
        .await
        .unwrap();
    std::fs::write(
        dir.path().join("meta/topics.json"),
        b"{\"version\": 1, \"topi",
    )
    .unwrap();
    let err = Broker::open(BrokerConfig {
        data_dir: dir.path().into(),
        ..Default::default()
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("topics.json is damaged"), "{err}");
}

#[tokio::test]
async fn orphan_directories_from_an_interrupted_create_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path())
        .create_topic("t", Some(1), cfg(&[]))
        .await
        .unwrap();
    std::fs::create_dir_all(dir.path().join("topics/ghost/0")).unwrap();
    std::fs::create_dir_all(dir.path().join("topics/t/5")).unwrap();
    let b = open(dir.path());
    assert!(!dir.path().join("topics/ghost").exists());
    assert!(!dir.path().join("topics/t/5").exists());
    assert_eq!(b.list_topics().len(), 1);
}

#[tokio::test]
async fn idempotent_retries_are_deduplicated_across_a_restart() {
    use busbar_log::batch::{self, BatchHeader, NewRecord};
    let dir = tempfile::tempdir().unwrap();
    let idem = |seq: i32| {
        let plain = batch::build(&[NewRecord {
            value: Some(format!("s{seq}").into_bytes()),
            ..NewRecord::default()
        }]);
        let h = BatchHeader::parse(&plain).unwrap();
        batch::assemble(
            &BatchHeader {
                producer_id: 0,
                producer_epoch: 0,
                base_sequence: seq,
                ..h
            },
            &plain[61..],
        )
    };
    {
        let b = open(dir.path());
        b.create_topic("t", Some(1), cfg(&[])).await.unwrap();
        assert_eq!(b.init_producer_id(None).unwrap(), (0, 0));
        for seq in 0..3 {
            assert_eq!(
                b.produce("t", 0, idem(seq)).await.unwrap().base_offset,
                seq as u64
            );
        }
        // Dropped without close: a crash.
    }
    let b = open(dir.path());
    assert_eq!(
        b.produce("t", 0, idem(1)).await.unwrap().base_offset,
        1,
        "a retry after restart gets its original offset"
    );
    assert!(
        matches!(
            b.produce("t", 0, idem(7)).await,
            Err(BrokerError::OutOfOrderSequence(_))
        ),
        "a gap is refused"
    );
    assert_eq!(b.produce("t", 0, idem(3)).await.unwrap().base_offset, 3);
    assert_eq!(b.offsets_of("t", 0).unwrap().1, 4, "nothing stored twice");
    assert!(
        b.init_producer_id(None).unwrap().0 >= 1000,
        "producer ids are never reused after a restart"
    );
    drop(b);
    // The producer-id file lost (or restored from an older backup) beside logs holding producer
    // 0's batches: id 0 must not be handed out again, or its first batch would be answered as a
    // duplicate of the old producer's and dropped.
    std::fs::remove_file(dir.path().join("meta/producer-id-block")).unwrap();
    let b = open(dir.path());
    let (pid, _) = b.init_producer_id(None).unwrap();
    assert!(pid > 0, "producer id {pid} reused");
}
