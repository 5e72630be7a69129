//! The one place broker errors become Kafka error codes (values from Kafka's `Errors.java`).

use busbar_broker::auth::AuthError;
use busbar_broker::BrokerError;

pub const NONE: i16 = 0;
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const INVALID_REQUIRED_ACKS: i16 = 21;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
pub const INVALID_REQUEST: i16 = 42;
pub const INVALID_RECORD: i16 = 87;
pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
pub const RESOURCE_NOT_FOUND: i16 = 91;
pub const DUPLICATE_RESOURCE: i16 = 92;
pub const UNACCEPTABLE_CREDENTIAL: i16 = 93;

/// The message of CLUSTER_AUTHORIZATION_FAILED on DescribeUserScramCredentials.
pub const DESCRIBE_USERS_DENIED: &str =
    "DESCRIBE on the cluster is needed to describe SCRAM credentials";
/// The message of CLUSTER_AUTHORIZATION_FAILED on AlterUserScramCredentials.
pub const ALTER_USERS_DENIED: &str = "ALTER on the cluster is needed to alter SCRAM credentials";

/// PRODUCER_FENCED; APIs at versions before it answer INVALID_PRODUCER_EPOCH ([`fenced`]).
pub const PRODUCER_FENCED: i16 = 90;
/// INVALID_PRODUCER_EPOCH.
pub const INVALID_PRODUCER_EPOCH: i16 = 47;

/// [`of`], with PRODUCER_FENCED answered as INVALID_PRODUCER_EPOCH where the API version
/// predates it (`fenced_from`: the first version that knows PRODUCER_FENCED).
pub fn of_versioned(e: &BrokerError, version: i16, fenced_from: i16) -> i16 {
    match of(e) {
        PRODUCER_FENCED if version < fenced_from => INVALID_PRODUCER_EPOCH,
        code => code,
    }
}

/// A code's name in snake case for metrics labels (`ok` for 0, `unknown_topic_or_partition`),
/// from the kafka-protocol crate's list; `error_<code>` for one it does not know.
pub fn name(code: i16) -> std::borrow::Cow<'static, str> {
    use kafka_protocol::error::ParseResponseErrorCode;
    let Some(e) = code.err() else {
        return "ok".into();
    };
    if !matches!(e, kafka_protocol::error::ResponseError::Unknown(_)) {
        let camel = format!("{e:?}");
        if camel.chars().all(|c| c.is_ascii_alphanumeric()) {
            return snake(&camel).into();
        }
    }
    format!("error_{code}").into()
}

/// An API key's name (`Produce`), made once per key.
pub fn api_name(key: kafka_protocol::messages::ApiKey) -> &'static str {
    use std::sync::OnceLock;
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        (0..=i16::from(u8::MAX))
            .map(|k| match kafka_protocol::messages::ApiKey::try_from(k) {
                Ok(key) => &*Box::leak(format!("{key:?}").into_boxed_str()),
                Err(_) => "unknown",
            })
            .collect()
    });
    names.get(key as usize).copied().unwrap_or("unknown")
}

fn snake(camel: &str) -> String {
    let mut s = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            s.push('_');
        }
        s.push(c.to_ascii_lowercase());
    }
    s
}

/// The Kafka error code for a broker error.
pub fn of(e: &BrokerError) -> i16 {
    use BrokerError as B;
    match e {
        B::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
        B::CorruptMessage(_) => 2,
        B::UnknownTopic(_) | B::UnknownPartition { .. } => UNKNOWN_TOPIC_OR_PARTITION,
        B::ShuttingDown => 6, // NOT_LEADER_OR_FOLLOWER: retriable, clients refresh metadata
        B::MessageTooLarge { .. } => 10,
        B::InvalidTopicName { .. } | B::TopicCollides { .. } => 17, // INVALID_TOPIC_EXCEPTION
        B::IllegalGeneration { .. } => 22,
        B::InconsistentGroupProtocol => 23,
        B::UnknownMember { .. } => 25,
        B::InvalidSessionTimeout(_) => 26,
        B::RebalanceInProgress(_) => 27,
        B::TopicExists(_) => 36,
        B::TopicInUse { .. } => 44, // POLICY_VIOLATION
        B::InvalidPartitions(_) => 37,
        B::InvalidConfig { .. } => 40,
        B::InvalidRequest(_) => INVALID_REQUEST,
        B::Storage(_) | B::Damaged(_) | B::DataDirLocked(_) => 56, // KAFKA_STORAGE_ERROR
        B::OutOfOrderSequence(_) => 45,
        B::InvalidProducerEpoch(_) => 47,
        B::GroupNotEmpty(_) => 68,
        B::UnknownGroup(_) => 69,
        B::MemberIdRequired(_) => 79,
        B::InvalidRecord(_) | B::SchemaRefused { .. } => INVALID_RECORD,
        B::InvalidTimestamp(_) => 32, // INVALID_TIMESTAMP
        B::UnknownProducerId(_) => 59,
        B::ProducerStateFull(_) => 7, // REQUEST_TIMED_OUT: retriable
        B::OffsetMetadataTooLarge { .. } => 12,
        B::InvalidTxnState(_) => 48,
        B::InvalidProducerIdMapping(_) => 49,
        B::InvalidTransactionTimeout(_) => 50,
        B::ConcurrentTransactions(_) => 51,
        B::ProducerFenced(_) => PRODUCER_FENCED,
        B::TooManyTransactions(_) => 44, // POLICY_VIOLATION
        B::PolicyViolation(_) => 44,
        B::OperationNotAttempted(_) => 55,
        B::NotCoordinator(_) => 16,
    }
}

/// The Kafka error code for an authentication or user-store error.
pub fn of_auth(e: &AuthError) -> i16 {
    match e {
        AuthError::Failed { .. } => crate::sasl::SASL_AUTHENTICATION_FAILED,
        AuthError::InvalidName(_) | AuthError::InvalidPassword(_) | AuthError::Unacceptable(_) => {
            UNACCEPTABLE_CREDENTIAL
        }
        AuthError::UnknownUser(_)
        | AuthError::UnknownCredential { .. }
        | AuthError::UnknownToken(_) => RESOURCE_NOT_FOUND,
        AuthError::TokenExists(_) => DUPLICATE_RESOURCE,
        AuthError::InvalidAcl(_) => 42,       // INVALID_REQUEST
        AuthError::LimitReached { .. } => 44, // POLICY_VIOLATION
        AuthError::Storage(b) => of(b),
    }
}

/// The code and a message for responses that carry one.
pub fn with_message(e: &BrokerError) -> (i16, Option<String>) {
    (of(e), Some(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_snake_case_and_bounded() {
        assert_eq!(name(NONE), "ok");
        assert_eq!(
            name(UNKNOWN_TOPIC_OR_PARTITION),
            "unknown_topic_or_partition"
        );
        assert_eq!(name(INVALID_RECORD), "invalid_record");
        assert_eq!(name(-1), "unknown_server_error");
        assert_eq!(name(9999), "error_9999");
        use kafka_protocol::messages::ApiKey;
        assert_eq!(api_name(ApiKey::Produce), "Produce");
        assert_eq!(api_name(ApiKey::TxnOffsetCommit), "TxnOffsetCommit");
    }
}
