//! Errors of the broker core, each one a thing a client did or a state the broker is in.
//! Front ends map these to wire codes and HTTP statuses, each in exactly one file.

use busbar_log::{BatchError, LogError};

/// Everything a broker operation can answer.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: String },
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// The name equals an existing topic's once `.` and `_` are treated alike (Kafka 17: both
    /// map to the same metric names, so Kafka refuses the second).
    #[error(
        "topic {name:?} collides with existing topic {existing:?}: names that differ only in '.' \
         and '_' are not allowed together"
    )]
    TopicCollides { name: String, existing: String },
    /// Deleting the topic is refused while something depends on it (a subscription's
    /// dead-letter topic); `by` names what.
    #[error("topic {name:?} is in use: {by}")]
    TopicInUse { name: String, by: String },
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition { topic: String, partition: i64 },
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    #[error("invalid config {key:?}: {reason}")]
    InvalidConfig { key: String, reason: String },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("event of {size} bytes exceeds max.message.bytes {limit}")]
    MessageTooLarge { size: usize, limit: usize },
    #[error("corrupt record batch: {0}")]
    CorruptMessage(String),
    #[error("invalid record batch: {0}")]
    InvalidRecord(String),
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: u64, start: u64, end: u64 },
    #[error("unknown consumer group {0:?}")]
    UnknownGroup(String),
    #[error("group {0:?} is not empty")]
    GroupNotEmpty(String),
    #[error("unknown member {member:?} in group {group:?}")]
    UnknownMember { group: String, member: String },
    #[error("generation {got} of group {group:?} is not the current one ({current})")]
    IllegalGeneration {
        group: String,
        got: i32,
        current: i32,
    },
    #[error("group {0:?} is rebalancing")]
    RebalanceInProgress(String),
    #[error("a member id is required: rejoin with {0:?}")]
    MemberIdRequired(String),
    #[error("session timeout {0} ms is outside the allowed range")]
    InvalidSessionTimeout(i64),
    #[error("group members support no common protocol")]
    InconsistentGroupProtocol,
    #[error("out of order sequence: {0}")]
    OutOfOrderSequence(String),
    #[error("invalid producer epoch: {0}")]
    InvalidProducerEpoch(String),
    #[error("stored data is damaged and is not served: {0}")]
    Damaged(String),
    #[error("storage unavailable: {0}")]
    Storage(String),
    /// Cluster mode: another broker coordinates this group (Kafka 16, retriable: the client
    /// looks for the coordinator again).
    #[error("not the coordinator: {0}")]
    NotCoordinator(String),
    /// The partition already remembers `producers_max` producers, all active recently (Kafka 7,
    /// retriable: the client retries once one has been idle long enough).
    #[error("too many active producers: {0}")]
    ProducerStateFull(String),
    /// A batch names a producer id InitProducerId never handed out (Kafka 59).
    #[error("unknown producer id: {0}")]
    UnknownProducerId(String),
    /// Commit metadata longer than `offset_metadata_bytes_max` (Kafka 12).
    #[error("offset commit metadata of {size} bytes exceeds the limit of {limit} bytes")]
    OffsetMetadataTooLarge { size: usize, limit: usize },
    /// A record's timestamp is outside the topic's accepted window (Kafka 32).
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    /// Another process holds the data directory's lock (two brokers on one directory would hand
    /// out the same offsets).
    #[error("{0}")]
    DataDirLocked(String),
    #[error("the broker is shutting down")]
    ShuttingDown,
    /// A transactional request out of turn (Kafka 48 INVALID_TXN_STATE).
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(String),
    /// The transactional id has no producer, or another one (Kafka 49).
    #[error("invalid producer id mapping: {0}")]
    InvalidProducerIdMapping(String),
    /// `transaction.timeout.ms` above the broker's maximum (Kafka 50).
    #[error("invalid transaction timeout: {0}")]
    InvalidTransactionTimeout(String),
    /// The previous transaction is still completing: retry (Kafka 51, retriable).
    #[error("concurrent transactions: {0}")]
    ConcurrentTransactions(String),
    /// A newer producer with the same transactional id took over (Kafka 90, or 47
    /// INVALID_PRODUCER_EPOCH at API versions before PRODUCER_FENCED).
    #[error("producer fenced: {0}")]
    ProducerFenced(String),
    /// `transactions.ids_max` transactional ids are in use (Kafka 44 POLICY_VIOLATION).
    #[error("too many transactional ids: {0}")]
    TooManyTransactions(String),
    /// Refused by a topic's policy, such as deleting records of a compact-only topic (Kafka 44
    /// POLICY_VIOLATION, HTTP 400 `policy_violation`).
    #[error("policy violation: {0}")]
    PolicyViolation(String),
    /// Not attempted because another part of the request failed (Kafka 55).
    #[error("operation not attempted: {0}")]
    OperationNotAttempted(String),
    /// Records the topic's schema settings refuse (Kafka 87 with `RecordErrors`, HTTP 422):
    /// `records` lists (index in the batch or request, why), at most
    /// [`crate::schema_rules::RECORD_ERRORS_MAX`].
    #[error("{message}")]
    SchemaRefused {
        message: String,
        records: Vec<(usize, String)>,
    },
}

impl From<LogError> for BrokerError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Batch(BatchError::Crc { .. }) => BrokerError::CorruptMessage(e.to_string()),
            LogError::Batch(BatchError::TooLarge { size, limit }) => {
                BrokerError::MessageTooLarge { size, limit }
            }
            LogError::Batch(b) => BrokerError::InvalidRecord(b.to_string()),
            LogError::OffsetOutOfRange { offset, start, end } => {
                BrokerError::OffsetOutOfRange { offset, start, end }
            }
            LogError::Closed => BrokerError::ShuttingDown,
            LogError::Corrupt { .. } => BrokerError::Damaged(e.to_string()),
            other => BrokerError::Storage(other.to_string()),
        }
    }
}

/// Result of broker operations.
pub type Result<T, E = BrokerError> = std::result::Result<T, E>;
