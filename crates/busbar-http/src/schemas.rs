//! The shapes of the bodies the API answers (and of the requests whose decoding lives in the bus
//! or is hand-written), for `/openapi.json` only: handlers build these answers with `json!` or
//! serialize the bus's own types, so nothing here is constructed. A test walks every route
//! through the real router and checks each answer against these schemas
//! (`tests/openapi.rs`), so they cannot drift from what is served.

#![allow(dead_code)]

use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::openapi::{RefOr, Schema};
use utoipa::ToSchema;

/// Every error: `{"error": {"code", "message"}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable (`unknown_topic`, `invalid_subscription`, ...).
    code: String,
    /// For a person; a bad field is named.
    message: String,
}

/// `/healthz`, `/readyz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `ready` or `not ready`.
    status: String,
}

/// `POST /topics/{topic}/partitions/{partition}/delete-records`'s answer.
#[derive(Serialize, ToSchema)]
pub struct RecordsDeleted {
    partition: i64,
    /// The partition's first offset after the delete.
    log_start_offset: u64,
}

/// A topic with its partitions and effective configs.
#[derive(Serialize, ToSchema)]
pub struct Topic {
    name: String,
    /// Changes when a topic of the same name is created again.
    id: String,
    partitions: Vec<TopicPartition>,
    /// Every config with its effective value (Kafka's names, values as strings).
    configs: BTreeMap<String, String>,
    /// The configs set on this topic (the others are defaults).
    overrides: BTreeMap<String, String>,
}

#[derive(Serialize, ToSchema)]
pub struct TopicPartition {
    partition: u32,
    log_start_offset: u64,
    high_watermark: u64,
    size_bytes: u64,
    /// Ranges found damaged at recovery and skipped by reads.
    damaged_ranges: u64,
}

#[derive(Serialize, ToSchema)]
pub struct TopicList {
    topics: Vec<TopicSummary>,
}

#[derive(Serialize, ToSchema)]
pub struct TopicSummary {
    name: String,
    id: String,
    partitions: u32,
}

/// One JSON event of a publish (a body is one such object or an array of them). `key` and
/// `value` are stored as their JSON text, byte for byte; a string key as its text.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishEvent {
    key: Option<Value>,
    key_base64: Option<String>,
    /// Absent or `null`: a tombstone.
    value: Option<Value>,
    value_base64: Option<String>,
    /// `{"name": "value"}` or `[{"key", "value"}]` (repeated keys).
    headers: Option<Value>,
    /// Default: murmur2 of the key, as Kafka's default partitioner.
    partition: Option<i64>,
    /// Milliseconds since the epoch or RFC 3339. Default: now.
    timestamp: Option<Value>,
}

/// A structured CloudEvent (`application/cloudevents+json`; an array of them with
/// `application/cloudevents-batch+json`).
#[derive(Serialize, ToSchema)]
pub struct CloudEvent {
    specversion: String,
    id: String,
    source: String,
    #[serde(rename = "type")]
    r#type: String,
    time: Option<String>,
    datacontenttype: Option<String>,
    data: Option<Value>,
    data_base64: Option<String>,
    /// Becomes the record key.
    partitionkey: Option<String>,
}

/// Where a publish put its events, in order.
#[derive(Serialize, ToSchema)]
pub struct Published {
    offsets: Vec<PartitionOffset>,
}

#[derive(Serialize, ToSchema)]
pub struct PartitionOffset {
    partition: u32,
    offset: u64,
}

/// An event as reads show it. A key or value that is a JSON document shows as that JSON; other
/// bytes as `*_base64` (`?encoding=` forces one; `*_error` says why an event does not fit it).
#[derive(Serialize, ToSchema)]
pub struct Event {
    topic: String,
    partition: u32,
    offset: u64,
    /// Milliseconds since the epoch.
    timestamp: i64,
    /// The timestamp as RFC 3339.
    time: String,
    /// `null`: no key.
    key: Option<Value>,
    key_base64: Option<String>,
    key_error: Option<String>,
    /// `null`: a tombstone.
    value: Option<Value>,
    value_base64: Option<String>,
    value_error: Option<String>,
    headers: Vec<RecordHeader>,
}

/// `value` when UTF-8, `value_base64` otherwise.
#[derive(Serialize, ToSchema)]
pub struct RecordHeader {
    key: String,
    value: Option<String>,
    value_base64: Option<String>,
}

/// A page of a partition.
#[derive(Serialize, ToSchema)]
pub struct EventPage {
    events: Vec<Event>,
    /// Where the next page starts.
    next_offset: u64,
    high_watermark: u64,
    /// With `pattern`: how many events were read to find these.
    scanned: Option<u64>,
}

/// A consumer instance's poll.
#[derive(Serialize, ToSchema)]
pub struct Polled {
    events: Vec<Event>,
}

#[derive(Serialize, ToSchema)]
pub struct GroupList {
    groups: Vec<GroupSummary>,
}

#[derive(Serialize, ToSchema)]
pub struct GroupSummary {
    group: String,
    state: String,
}

/// A consumer group: members, committed offsets and lag.
#[derive(Serialize, ToSchema)]
pub struct Group {
    group: String,
    /// `Empty`, `Stable`, `PreparingRebalance`, `CompletingRebalance` or `Dead`; in cluster
    /// mode `Unknown` for a group another broker coordinates (described from the database).
    state: String,
    generation: i32,
    protocol: String,
    members: Vec<GroupMember>,
    offsets: Vec<GroupOffset>,
    /// Sum over `offsets`.
    lag: u64,
    /// Cluster mode only: the node id of the broker coordinating the group.
    coordinator: Option<i32>,
}

#[derive(Serialize, ToSchema)]
pub struct GroupMember {
    member_id: String,
    client_id: String,
    client_host: String,
    assignment: Vec<MemberAssignment>,
}

#[derive(Serialize, ToSchema)]
pub struct MemberAssignment {
    topic: String,
    partitions: Vec<i32>,
}

#[derive(Serialize, ToSchema)]
pub struct GroupOffset {
    topic: String,
    partition: u32,
    committed_offset: u64,
    high_watermark: u64,
    lag: u64,
    metadata: Option<String>,
}

/// A position: the next offset to read in a topic's partition.
#[derive(Serialize, ToSchema)]
pub struct TopicOffset {
    topic: String,
    partition: u32,
    offset: u64,
}

/// The offsets a group reset moved to.
#[derive(Serialize, ToSchema)]
pub struct GroupOffsets {
    offsets: Vec<TopicOffset>,
    /// True for a preview (`dry_run`): nothing was moved.
    dry_run: bool,
}

/// A consumer instance (`consumer_id` names it in the instance's routes).
#[derive(Serialize, ToSchema)]
pub struct ConsumerInstance {
    group: String,
    consumer_id: String,
    member_id: String,
    generation: i32,
    /// Assigned partitions and their next offsets.
    assignment: Vec<TopicOffset>,
}

/// What a commit stored.
#[derive(Serialize, ToSchema)]
pub struct Committed {
    committed: Vec<TopicOffset>,
}

/// A subscription as created or replaced.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionSpec {
    name: String,
    sources: Vec<String>,
    /// `latest` (default), `earliest` or an RFC 3339 time.
    start: Option<String>,
    /// An event pattern (EventBridge syntax); absent matches every event.
    pattern: Option<Value>,
    transform: Option<Transform>,
    target: Target,
    delivery: Option<Delivery>,
    dead_letter_topic: Option<String>,
}

/// `PUT /subscriptions/{name}`: the whole spec; `name` may be left out. The read-only fields of
/// a read may be sent back (see each).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionReplace {
    name: Option<String>,
    sources: Vec<String>,
    start: Option<String>,
    pattern: Option<Value>,
    transform: Option<Transform>,
    target: Target,
    delivery: Option<Delivery>,
    dead_letter_topic: Option<String>,
    /// Read-only (as a read shows it): accepted only as `paused` while paused, else a state a read
    /// shows (null is ignored); pause and resume have their own routes.
    state: Option<String>,
    /// Read-only: accepted only with the value a read shows (null is ignored).
    owner: Option<String>,
    /// Read-only: accepted only with the value a read shows (null is ignored).
    config_file: Option<String>,
    /// Read-only: accepted only with the value a read shows (null is ignored).
    creator: Option<Creator>,
    /// Read-only: accepted only with the value a read shows (null is ignored).
    created: Option<String>,
    /// Read-only; moves on its own, so any value of this type (or null) is accepted and ignored.
    updated: Option<String>,
    /// Read-only; follows the target, so any string (or null) is accepted and ignored.
    guarantee: Option<String>,
    /// Read-only; moves on its own, so any value of this type (or null) is accepted and ignored.
    lag: Option<u64>,
    /// Read-only; moves on its own, so any value of this type (or null) is accepted and ignored.
    retrying: Option<u64>,
    /// Read-only; moves on its own, so any value of this type (or null) is accepted and ignored.
    last_failure: Option<LastFailure>,
    /// Read-only; moves on its own, so any value of this type (or null) is accepted and ignored.
    counters: Option<Counters>,
}

/// `PATCH /subscriptions/{name}`: a JSON merge patch (RFC 7396) of the subscription's fields.
/// Given fields replace, absent ones keep their value, objects (`delivery`, `target`,
/// `target.headers`, `transform`) merge field by field, and `null` removes an optional field or
/// resets one to its default (`name`, `sources` and `target` cannot be null). The read-only
/// fields of a read (`state`, `counters`, `owner`, ...) are accepted with a value a read could
/// show now (so a read can be sent back) and refused with any other, naming the field. A target
/// moved to another scheme, host or port must give each stored header again or null it.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionPatch {
    /// Must stay the subscription's name.
    name: Option<String>,
    sources: Option<Vec<String>>,
    /// `latest`, `earliest` or an RFC 3339 time (for partitions without a position).
    start: Option<String>,
    /// An event pattern (EventBridge syntax); null matches every event.
    pattern: Option<Value>,
    /// Merged field by field into the transform (`paths`, `template`, `output_bytes_max`); null
    /// removes it.
    transform: Option<Value>,
    /// Merged field by field into the target (`url`, `mode`, `headers`, `tls`, or `topic`); one
    /// of the other kind (`topic` for an HTTP target, `url` for a topic target) replaces it.
    target: Option<Value>,
    /// Merged field by field into the delivery settings; null resets a field to its default.
    delivery: Option<Value>,
    /// Null removes it.
    dead_letter_topic: Option<String>,
    /// Read-only (as a read shows it): accepted only as `paused` while paused, else a state a read
    /// shows (null is ignored); pause and resume have their own routes.
    state: Option<String>,
    /// Read-only: accepted only with the value a read shows (null is ignored).
    owner: Option<String>,
    /// Read-only: accepted only with the value a read shows (null is ignored).
    config_file: Option<String>,
    /// Read-only: accepted only with the value a read shows (null is ignored).
    creator: Option<Creator>,
    /// Read-only: accepted only with the value a read shows (null is ignored).
    created: Option<String>,
    /// Read-only; moves on its own, so any value of this type (or null) is accepted and ignored.
    updated: Option<String>,
    /// Read-only; follows the target, so any string (or null) is accepted and ignored.
    guarantee: Option<String>,
    /// Read-only; moves on its own, so any value of this type (or null) is accepted and ignored.
    lag: Option<u64>,
    /// Read-only; moves on its own, so any value of this type (or null) is accepted and ignored.
    retrying: Option<u64>,
    /// Read-only; moves on its own, so any value of this type (or null) is accepted and ignored.
    last_failure: Option<LastFailure>,
    /// Read-only; moves on its own, so any value of this type (or null) is accepted and ignored.
    counters: Option<Counters>,
}

/// An input transformer: variables by JSON path, and a template.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transform {
    paths: Option<BTreeMap<String, String>>,
    template: String,
    /// Longest output of one event, in bytes (default 1 MiB).
    output_bytes_max: Option<u32>,
}

/// A topic, or an HTTP endpoint that gets CloudEvents.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Target {
    Topic {
        topic: String,
        /// Store each value encoded with a schema of the registry.
        encode: Option<Encode>,
    },
    Http {
        url: String,
        /// Answered masked (`***`); a replace may send the mask back to keep a value.
        headers: Option<BTreeMap<String, String>>,
        mode: Option<Mode>,
        tls: Option<Tls>,
    },
}

/// How a topic target encodes: the transform's output, else the event's `data` (a framed value
/// decoded), as JSON, encoded with a schema of `subject` and framed; an event that does not
/// encode is dead-lettered (`schema_encode_failed`).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Encode {
    /// `latest` (default), a version number, or `id:<n>`.
    schema: Option<String>,
    /// Default `<topic>-value`.
    subject: Option<String>,
    /// A Protobuf message's full name (default: the file's first).
    message: Option<String>,
}

/// CloudEvents HTTP binding mode.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Binary,
    Structured,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// A PEM file of CA certificates to trust instead of the Mozilla roots.
    ca_file: Option<String>,
}

/// The delivery policy; every field has a default.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    max_attempts: Option<u32>,
    backoff_initial_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    retry_after_max_ms: Option<u64>,
    max_age_s: Option<u64>,
    timeout_ms: Option<u64>,
    /// `key` (default) or `none`.
    ordering: Option<String>,
    concurrency: Option<u32>,
    waiting_max: Option<u32>,
}

/// A subscription with its state, counters and lag.
#[derive(Serialize, ToSchema)]
pub struct Subscription {
    #[serde(flatten)]
    spec: SubscriptionSpec,
    /// `running`, `paused`, `starting`, `unauthorized` (its creator may not READ a source:
    /// nothing is delivered until it may), `elsewhere` (cluster mode: another broker runs it),
    /// `backpressure: ...` or `error: ...`.
    state: String,
    /// `api`, or `config` when `busbar.toml` declares it (changes over the API are refused).
    owner: String,
    /// The configuration file that declares it (only when `owner` is `config`).
    config_file: Option<String>,
    /// Who it runs as: the user that created it while authentication was on (absent: unchecked).
    creator: Option<Creator>,
    created: String,
    updated: String,
    /// `exactly_once` for a topic target (each event is in the target once, committed with
    /// the subscription's position); `at_least_once` for an HTTP target (a delivery may be
    /// repeated with the same CloudEvent id). Dead letters, replays and redrives are at least
    /// once.
    guarantee: String,
    lag: u64,
    /// Events waiting for another attempt or behind their key.
    retrying: u64,
    last_failure: Option<LastFailure>,
    counters: Counters,
}

/// The principal a subscription runs as: the user that created it and its client address.
#[derive(Serialize, ToSchema)]
pub struct Creator {
    /// The user (`User:<user>` in ACLs).
    user: String,
    /// The client IP address of the create request (ACL host filters apply to it).
    host: String,
}

#[derive(Serialize, ToSchema)]
pub struct LastFailure {
    reason: String,
    status: Option<u16>,
    error: String,
    at: String,
}

#[derive(Serialize, ToSchema)]
pub struct Counters {
    matched: u64,
    delivered: u64,
    retried: u64,
    dead_lettered: u64,
    dropped: u64,
    expired: u64,
    undecodable: u64,
    dead_letter_failures: u64,
    /// Cumulative counts per latency bucket (Prometheus style).
    latency_buckets: Vec<u64>,
    latency_sum_ms: u64,
}

#[derive(Serialize, ToSchema)]
pub struct SubscriptionList {
    subscriptions: Vec<Subscription>,
}

/// `{"to": "earliest"}`, `{"to": "latest"}`, `{"to": "time", "time"}` or
/// `{"to": "offsets", "offsets": [{topic, partition, offset}]}`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionReset {
    /// `earliest`, `latest`, `time` or `offsets`.
    to: String,
    /// With `to: time`: RFC 3339.
    time: Option<String>,
    /// With `to: offsets`.
    offsets: Option<Vec<TopicOffset>>,
}

/// Where a reset moved the subscription.
#[derive(Serialize, ToSchema)]
pub struct Positions {
    positions: Vec<TopicOffset>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    name: String,
    /// RFC 3339, inclusive.
    from: String,
    /// RFC 3339, exclusive.
    to: String,
    /// Most events a second (default 100).
    rate: Option<u32>,
}

/// A replay run and what it counted.
#[derive(Serialize, ToSchema)]
pub struct ReplayRun {
    name: String,
    /// `RUNNING`, `COMPLETED`, `CANCELLED`, `FAILED`, `STOPPED` or `INTERRUPTED`.
    state: String,
    error: Option<String>,
    from: String,
    to: String,
    rate: u32,
    started: String,
    ended: Option<String>,
    /// Every event stored before it is replayed.
    last_replayed_time: Option<String>,
    matched: u64,
    delivered: u64,
    retried: u64,
    dead_lettered: u64,
    dropped: u64,
    /// Events in batches that could not be decoded (set aside as dead letters).
    undecodable: Option<u64>,
    /// Events of the range gone from the log (retention, DeleteRecords) before the run reached
    /// them: it went on from the log start.
    expired: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct ReplayList {
    replays: Vec<ReplayRun>,
}

/// A dead letter: why, where from, how many attempts; and the event.
#[derive(Serialize, ToSchema)]
pub struct DeadLetter {
    partition: u32,
    offset: u64,
    subscription: String,
    target: String,
    reason: String,
    exhausted: String,
    status: Option<u16>,
    error: String,
    attempts: u32,
    first_attempt: String,
    last_attempt: String,
    source_topic: String,
    source_partition: u32,
    source_offset: u64,
    source_time: String,
    redriven_at: Option<String>,
    event: Event,
}

#[derive(Serialize, ToSchema)]
pub struct DeadLetters {
    dead_letters: Vec<DeadLetter>,
}

/// Which dead letters to send again (all filters optional).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    subscription: Option<String>,
    reason: Option<String>,
    partition: Option<u32>,
    from_offset: Option<u64>,
    to_offset: Option<u64>,
    limit: Option<u32>,
    /// Also letters redriven before.
    force: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct RedriveSummary {
    redriven: u64,
    by_subscription: BTreeMap<String, u64>,
    /// Letters redriven before, left alone.
    skipped: u64,
    /// Letters of subscriptions deleted since, left alone.
    no_subscription: u64,
}

/// `POST /rules/test`'s answer.
#[derive(Serialize, ToSchema)]
pub struct RuleMatch {
    #[serde(rename = "match")]
    matched: bool,
}

/// A JSON publish body: one event or an array of them.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum PublishBody {
    One(PublishEvent),
    Many(Vec<PublishEvent>),
}

/// A topic config's value: a string (Kafka's way) or a number.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ConfigValue {
    Text(String),
    Number(f64),
}

/// A config change: a string or number sets it, `null` returns it to its default.
pub struct ConfigChange;

impl utoipa::PartialSchema for ConfigChange {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        let of = |t| ObjectBuilder::new().schema_type(t);
        OneOfBuilder::new()
            .item(of(Type::String))
            .item(of(Type::Number))
            .item(of(Type::Null))
            .description(Some(
                "A string or number sets the config; null returns it to its default",
            ))
            .into()
    }
}

impl ToSchema for ConfigChange {}
