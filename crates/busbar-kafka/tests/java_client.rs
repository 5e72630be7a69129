//! What the reference Java client (kafka-clients 3.9 / 4.x, and Kafka's command-line tools built on
//! it) sends and reads, reproduced over a raw socket because its jars cannot be installed here
//! (issue 13 item 8): CreateTopics config sources (`ConfigSource.forId`), ListOffsets v7-9,
//! ListGroups v5, DescribeLogDirs, IncrementalAlterConfigs APPEND/SUBTRACT, broker
//! DescribeConfigs, the cluster id, and KIP-848's ConsumerGroupHeartbeat still refused cleanly.

mod common;

use busbar_broker::BrokerConfig;
use common::*;
use kafka_protocol::messages::*;

fn creatable(name: &str, configs: &[(&str, &str)]) -> create_topics_request::CreatableTopic {
    let mut t = create_topics_request::CreatableTopic::default();
    t.name = TopicName(sb(name));
    t.num_partitions = 2;
    t.replication_factor = -1;
    t.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut c = create_topics_request::CreatableTopicConfig::default();
            c.name = sb(k);
            c.value = Some(sb(v));
            c
        })
        .collect();
    t
}

/// `kafka-topics --create` / `Admin.createTopics`: every config in the answer has a source
/// `ConfigSource.forId` accepts (it threw on -1, failing the tool after the topic was created).
#[test]
fn create_topics_answers_config_sources_the_java_client_accepts() {
    let s = start();
    for validate_only in [true, false] {
        let mut req = CreateTopicsRequest::default();
        req.topics = vec![creatable("java", &[("retention.ms", "1000")])];
        req.validate_only = validate_only;
        req.timeout_ms = 5000;
        let r: CreateTopicsResponse = call(&s, ApiKey::CreateTopics, 5, &req);
        let t = &r.topics[0];
        assert_eq!(t.error_code, 0, "{:?}", t.error_message);
        assert_eq!((t.num_partitions, t.replication_factor), (2, 1));
        let configs = t.configs.as_ref().expect("configs are answered");
        assert!(configs.len() >= 5);
        for c in configs {
            assert!(
                (0..=8).contains(&c.config_source),
                "{} has config_source {}",
                c.name.as_str(),
                c.config_source
            );
            assert!(!c.is_sensitive);
        }
        let source = |k: &str| {
            configs
                .iter()
                .find(|c| c.name.as_str() == k)
                .map(|c| (c.value.as_ref().map(|v| v.to_string()), c.config_source))
        };
        assert_eq!(
            source("retention.ms"),
            Some((Some("1000".into()), 1)),
            "DYNAMIC_TOPIC_CONFIG"
        );
        assert_eq!(source("cleanup.policy").unwrap().1, 5, "DEFAULT_CONFIG");
        assert_eq!(s.broker.describe_topic("java").is_ok(), !validate_only);
    }
}

fn list_offsets(s: &Server, topic: &str, version: i16, ts: i64) -> (i16, i64, i64) {
    let mut p = list_offsets_request::ListOffsetsPartition::default();
    p.partition_index = 0;
    p.current_leader_epoch = -1;
    p.timestamp = ts;
    let mut t = list_offsets_request::ListOffsetsTopic::default();
    t.name = TopicName(sb(topic));
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    req.topics = vec![t];
    let r: ListOffsetsResponse = call(s, ApiKey::ListOffsets, version, &req);
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

/// `kafka-get-offsets --time -3` and `OffsetSpec.maxTimestamp()` need v7, `earliestLocal` v8,
/// `latestTiered` v9; a timestamp query answers the found record's own timestamp (item 4).
#[test]
fn list_offsets_v7_to_v9_and_found_timestamps() {
    let s = start();
    assert_eq!(list_offsets(&s, "t", 7, -3), (0, -1, -1), "empty: none");
    produce_at(&s, "t", &[10, 12]); // offsets 0, 1
    produce_at(&s, "t", &[30]); // offset 2
    produce_at(&s, "t", &[20, 30]); // offsets 3, 4: the max again, later
    for v in [7, 8, 9] {
        assert_eq!(
            list_offsets(&s, "t", v, -3),
            (0, 2, 30),
            "v{v} max timestamp"
        );
    }
    assert_eq!(list_offsets(&s, "t", 8, -4), (0, 0, -1), "earliest local");
    assert_eq!(
        list_offsets(&s, "t", 9, -5),
        (0, -1, -1),
        "latest tiered: nothing tiered"
    );
    assert_eq!(list_offsets(&s, "t", 9, -1), (0, 5, -1));
    assert_eq!(list_offsets(&s, "t", 9, -2), (0, 0, -1));
    // By time: the first record at or after 11 is offset 1, stamped 12 (not the 11 asked for).
    assert_eq!(list_offsets(&s, "t", 6, 11), (0, 1, 12));
    assert_eq!(list_offsets(&s, "t", 9, 21), (0, 2, 30));
    assert_eq!(list_offsets(&s, "t", 9, 31), (0, -1, -1));
}

/// A compressed batch: the lookup is exact to the record, as Kafka's (it decompresses).
#[test]
fn list_offsets_by_time_is_exact_inside_compressed_batches() {
    use busbar_log::batch::{assemble, BatchHeader, NewRecord};
    let s = start();
    let recs: Vec<NewRecord> = [100, 200, 300]
        .iter()
        .map(|ts| NewRecord {
            value: Some(b"v".to_vec()),
            timestamp: *ts,
            ..NewRecord::default()
        })
        .collect();
    let plain = busbar_log::batch::build(&recs);
    let h = BatchHeader::parse(&plain).unwrap();
    let zipped = busbar_broker::codec::compress(1, &plain[61..]).unwrap();
    let batch = assemble(&BatchHeader { attributes: 1, ..h }, &zipped);
    s.rt.block_on(s.broker.produce("t", 0, batch)).unwrap();
    assert_eq!(list_offsets(&s, "t", 7, 150), (0, 1, 200));
    assert_eq!(list_offsets(&s, "t", 7, -3), (0, 2, 300));
}

/// `kafka-consumer-groups --list --type classic` and `Admin.listGroups` with a type filter.
#[test]
fn list_groups_v5_filters_by_type_and_state() {
    let s = start();
    let commit = busbar_broker::OffsetCommit {
        topic: "t".into(),
        partition: 0,
        offset: 0,
        metadata: String::new(),
    };
    s.rt.block_on(s.broker.commit_offsets("g", "", -1, vec![commit]))
        .unwrap();
    let list = |types: &[&str], states: &[&str]| -> Vec<(String, String, String)> {
        let mut req = ListGroupsRequest::default();
        req.types_filter = types.iter().map(|t| sb(t)).collect();
        req.states_filter = states.iter().map(|t| sb(t)).collect();
        let r: ListGroupsResponse = call(&s, ApiKey::ListGroups, 5, &req);
        assert_eq!(r.error_code, 0);
        r.groups
            .iter()
            .map(|g| {
                (
                    g.group_id.0.to_string(),
                    g.group_type.to_string(),
                    g.group_state.to_string(),
                )
            })
            .collect()
    };
    let g = ("g".to_string(), "classic".to_string(), "Empty".to_string());
    assert_eq!(list(&[], &[]), vec![g.clone()]);
    assert_eq!(list(&["Classic"], &[]), vec![g.clone()]);
    assert_eq!(list(&["consumer"], &[]), vec![], "no KIP-848 groups");
    assert_eq!(list(&["classic"], &["empty"]), vec![g]);
    assert_eq!(list(&[], &["Stable"]), vec![]);
}

/// `kafka-log-dirs --describe` and consoles' topic sizes.
#[test]
fn describe_log_dirs_reports_each_partitions_size() {
    let s = start();
    produce_at(&s, "t", &[1, 2, 3]);
    s.rt.block_on(s.broker.create_topic("other", Some(2), Default::default()))
        .unwrap();
    let size = s.broker.describe_topic("t").unwrap().partitions[0].size_bytes as i64;
    assert!(size > 0);
    let mut all = DescribeLogDirsRequest::default();
    all.topics = None;
    for v in [1, 4] {
        let r: DescribeLogDirsResponse = call(&s, ApiKey::DescribeLogDirs, v, &all);
        assert_eq!(r.results.len(), 1);
        let d = &r.results[0];
        assert_eq!(d.error_code, 0);
        assert!(!d.log_dir.is_empty());
        if v == 4 {
            assert!(d.total_bytes > 0 && d.usable_bytes >= 0, "{d:?}");
        }
        let topics: Vec<(String, Vec<(i32, i64)>)> = d
            .topics
            .iter()
            .map(|t| {
                let parts = t
                    .partitions
                    .iter()
                    .map(|p| (p.partition_index, p.partition_size))
                    .collect();
                (t.name.0.to_string(), parts)
            })
            .collect();
        assert!(
            topics.contains(&("t".to_string(), vec![(0, size)])),
            "{topics:?}"
        );
        assert!(topics.iter().any(|(n, p)| n == "other" && p.len() == 2));
    }
    // Only what is asked for; unknown topics are left out.
    let mut req = DescribeLogDirsRequest::default();
    let mut t = describe_log_dirs_request::DescribableLogDirTopic::default();
    t.topic = TopicName(sb("other"));
    t.partitions = vec![1];
    let mut missing = t.clone();
    missing.topic = TopicName(sb("missing"));
    req.topics = Some(vec![t, missing]);
    let r: DescribeLogDirsResponse = call(&s, ApiKey::DescribeLogDirs, 4, &req);
    let topics = &r.results[0].topics;
    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0].partitions.len(), 1);
    assert_eq!(topics[0].partitions[0].partition_index, 1);
}

fn describe_configs(
    s: &Server,
    resource_type: i8,
    name: &str,
    synonyms: bool,
) -> Vec<describe_configs_response::DescribeConfigsResourceResult> {
    let mut res = describe_configs_request::DescribeConfigsResource::default();
    res.resource_type = resource_type;
    res.resource_name = sb(name);
    res.configuration_keys = None; // all
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![res];
    req.include_synonyms = synonyms;
    let r: DescribeConfigsResponse = call(s, ApiKey::DescribeConfigs, 4, &req);
    assert_eq!(
        r.results[0].error_code, 0,
        "{:?}",
        r.results[0].error_message
    );
    r.results[0].configs.clone()
}

fn config_value(
    configs: &[describe_configs_response::DescribeConfigsResourceResult],
    key: &str,
) -> Option<String> {
    configs
        .iter()
        .find(|c| c.name.as_str() == key)
        .and_then(|c| c.value.as_ref().map(|v| v.to_string()))
}

fn incremental(s: &Server, topic: &str, ops: &[(&str, i8, &str)]) -> (i16, Option<String>) {
    let mut res = incremental_alter_configs_request::AlterConfigsResource::default();
    res.resource_type = 2;
    res.resource_name = sb(topic);
    res.configs = ops
        .iter()
        .map(|(k, op, v)| {
            let mut c = incremental_alter_configs_request::AlterableConfig::default();
            c.name = sb(k);
            c.config_operation = *op;
            c.value = Some(sb(v));
            c
        })
        .collect();
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![res];
    let r: IncrementalAlterConfigsResponse = call(s, ApiKey::IncrementalAlterConfigs, 1, &req);
    let out = &r.responses[0];
    (
        out.error_code,
        out.error_message.as_ref().map(|m| m.to_string()),
    )
}

/// `kafka-configs --alter --add-config cleanup.policy=[compact]` style APPEND and SUBTRACT on
/// list configs; refused (INVALID_CONFIG) on others, as Kafka does.
#[test]
fn incremental_alter_configs_appends_and_subtracts_list_configs() {
    let s = start();
    assert_eq!(
        incremental(&s, "t", &[("cleanup.policy", 2, "compact")]).0,
        0
    );
    let policy = || config_value(&describe_configs(&s, 2, "t", false), "cleanup.policy");
    assert_eq!(policy().as_deref(), Some("compact,delete"));
    assert_eq!(
        incremental(&s, "t", &[("cleanup.policy", 2, "compact")]).0,
        0,
        "no duplicates"
    );
    assert_eq!(policy().as_deref(), Some("compact,delete"));
    assert_eq!(
        incremental(&s, "t", &[("cleanup.policy", 3, "delete")]).0,
        0
    );
    assert_eq!(policy().as_deref(), Some("compact"));
    let (code, msg) = incremental(&s, "t", &[("retention.ms", 2, "5")]);
    assert_eq!(code, 40, "{msg:?}");
    // Subtracting the last item leaves an empty list, which cleanup.policy does not take.
    let (code, _) = incremental(&s, "t", &[("cleanup.policy", 3, "compact")]);
    assert_eq!(code, 40);
    assert_eq!(
        policy().as_deref(),
        Some("compact"),
        "a refused change changes nothing"
    );
}

/// `kafka-configs --describe --entity-type brokers`: broker config names, not topic ones.
#[test]
fn broker_describe_configs_answers_broker_config_names() {
    let s = start();
    let configs = describe_configs(&s, 4, "0", true);
    for key in [
        "log.retention.ms",
        "message.max.bytes",
        "num.partitions",
        "log.segment.bytes",
        "log.cleanup.policy",
        "default.replication.factor",
        "auto.create.topics.enable",
        "log.dirs",
    ] {
        let c = configs
            .iter()
            .find(|c| c.name.as_str() == key)
            .unwrap_or_else(|| panic!("{key} is described"));
        assert!((0..=8).contains(&c.config_source));
        assert!(!c.synonyms.is_empty(), "{key} has its synonyms");
    }
    assert_eq!(
        config_value(&configs, "num.partitions").as_deref(),
        Some("1")
    );
    assert_eq!(
        config_value(&configs, "message.max.bytes").as_deref(),
        Some("1048588")
    );
    assert!(
        config_value(&configs, "retention.ms").is_none(),
        "topic names are not broker names"
    );
    assert!(config_value(&configs, "max.message.bytes").is_none());
}

fn cluster_id(s: &Server) -> String {
    let r: MetadataResponse = call(s, ApiKey::Metadata, 12, &MetadataRequest::default());
    let id = r.cluster_id.expect("a cluster id").to_string();
    let d: DescribeClusterResponse = call(
        s,
        ApiKey::DescribeCluster,
        1,
        &DescribeClusterRequest::default(),
    );
    assert_eq!(
        d.cluster_id.as_str(),
        id,
        "Metadata and DescribeCluster agree"
    );
    id
}

/// The cluster id is made once per data directory and kept across restarts; another data
/// directory is another cluster.
#[test]
fn cluster_id_is_made_once_per_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let first = cluster_id(&start_at(dir.path().into(), BrokerConfig::default()));
    assert_eq!(first.len(), 22, "Kafka's form: a base64 UUID, {first:?}");
    let again = cluster_id(&start_at(dir.path().into(), BrokerConfig::default()));
    assert_eq!(again, first, "kept across a restart");
    let other = tempfile::tempdir().unwrap();
    let elsewhere = cluster_id(&start_at(other.path().into(), BrokerConfig::default()));
    assert_ne!(elsewhere, first, "another data directory, another cluster");
}

/// KIP-848's ConsumerGroupHeartbeat stays unadvertised until it is built, so the Java client
/// (group.protocol=consumer) fails with UnsupportedVersionException instead of misbehaving; a
/// request sent anyway closes the connection, and the broker carries on.
#[test]
fn consumer_group_heartbeat_stays_refused() {
    let s = start();
    let av: ApiVersionsResponse = call(&s, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let keys: Vec<i16> = av.api_keys.iter().map(|k| k.api_key).collect();
    assert!(!keys.contains(&(ApiKey::ConsumerGroupHeartbeat as i16)));
    assert!(!keys.contains(&(ApiKey::ConsumerGroupDescribe as i16)));
    for (key, lo, hi) in [
        (ApiKey::ListOffsets, 1, 9),
        (ApiKey::ListGroups, 0, 5),
        (ApiKey::DescribeLogDirs, 1, 4),
    ] {
        let k = av
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .unwrap();
        assert_eq!((k.min_version, k.max_version), (lo, hi), "{key:?}");
    }
    let mut c = connect(&s);
    let mut req = ConsumerGroupHeartbeatRequest::default();
    req.group_id = GroupId(sb("g"));
    let r: Option<ConsumerGroupHeartbeatResponse> =
        call_on(&mut c, ApiKey::ConsumerGroupHeartbeat, 0, &req);
    assert!(r.is_none(), "closed, not answered");
    let _: ApiVersionsResponse = call(&s, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
}
