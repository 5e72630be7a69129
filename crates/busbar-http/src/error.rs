//! The one place where broker and bus errors become HTTP statuses. Every error answer is
//! `{"error": {"code", "message"}}`; storage details are logged, not sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use busbar_broker::BrokerError;
use busbar_bus::BusError;
use serde_json::json;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400: the request is malformed; the message says which part.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 for a route or resource that does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        use BrokerError as B;
        use StatusCode as S;
        let (status, code) = match &e {
            B::InvalidTopicName { .. } => (S::BAD_REQUEST, "invalid_topic_name"),
            B::InvalidPartitions(_) => (S::BAD_REQUEST, "invalid_partitions"),
            B::InvalidConfig { .. } => (S::BAD_REQUEST, "invalid_config"),
            B::InvalidRequest(_) => (S::BAD_REQUEST, "bad_request"),
            B::InvalidRecord(_) | B::CorruptMessage(_) => (S::BAD_REQUEST, "invalid_record"),
            B::InvalidTimestamp(_) => (S::BAD_REQUEST, "invalid_timestamp"),
            B::SchemaRefused { .. } => (S::UNPROCESSABLE_ENTITY, "schema_invalid"),
            B::UnknownProducerId(_) => (S::BAD_REQUEST, "unknown_producer_id"),
            B::ProducerStateFull(_) => (S::SERVICE_UNAVAILABLE, "producer_state_full"),
            B::OffsetMetadataTooLarge { .. } => (S::BAD_REQUEST, "offset_metadata_too_large"),
            B::InvalidSessionTimeout(_) => (S::BAD_REQUEST, "invalid_session_timeout"),
            B::UnknownTopic(_) => (S::NOT_FOUND, "unknown_topic"),
            B::UnknownPartition { .. } => (S::NOT_FOUND, "unknown_partition"),
            B::UnknownGroup(_) => (S::NOT_FOUND, "unknown_group"),
            B::UnknownMember { .. } => (S::NOT_FOUND, "unknown_consumer"),
            B::TopicExists(_) => (S::CONFLICT, "topic_exists"),
            B::TopicCollides { .. } => (S::CONFLICT, "topic_collides"),
            B::TopicInUse { .. } => (S::CONFLICT, "topic_in_use"),
            B::GroupNotEmpty(_) => (S::CONFLICT, "group_not_empty"),
            B::RebalanceInProgress(_) => (S::CONFLICT, "rebalance_in_progress"),
            B::IllegalGeneration { .. } => (S::CONFLICT, "illegal_generation"),
            B::MemberIdRequired(_) => (S::CONFLICT, "member_id_required"),
            B::InconsistentGroupProtocol => (S::CONFLICT, "inconsistent_group_protocol"),
            B::OutOfOrderSequence(_) => (S::CONFLICT, "out_of_order_sequence"),
            B::InvalidProducerEpoch(_) => (S::CONFLICT, "invalid_producer_epoch"),
            B::MessageTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "too_large"),
            B::OffsetOutOfRange { .. } => (S::RANGE_NOT_SATISFIABLE, "offset_out_of_range"),
            B::ShuttingDown => (S::SERVICE_UNAVAILABLE, "shutting_down"),
            B::InvalidTxnState(_) | B::OperationNotAttempted(_) => {
                (S::CONFLICT, "invalid_transaction_state")
            }
            B::InvalidProducerIdMapping(_) => (S::NOT_FOUND, "unknown_transactional_id"),
            B::InvalidTransactionTimeout(_) => (S::BAD_REQUEST, "invalid_transaction_timeout"),
            B::ConcurrentTransactions(_) => (S::CONFLICT, "concurrent_transactions"),
            B::ProducerFenced(_) => (S::CONFLICT, "producer_fenced"),
            B::NotCoordinator(_) => (S::SERVICE_UNAVAILABLE, "not_coordinator"),
            B::TooManyTransactions(_) => (S::CONFLICT, "limit_reached"),
            B::PolicyViolation(_) => (S::BAD_REQUEST, "policy_violation"),
            B::Damaged(_) => (S::INTERNAL_SERVER_ERROR, "damaged_data"),
            B::Storage(detail) | B::DataDirLocked(detail) => return storage_error(detail),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<BusError> for ApiError {
    fn from(e: BusError) -> Self {
        use BusError as E;
        use StatusCode as S;
        let e = match e {
            E::Broker(b) => return b.into(),
            E::Storage(detail) => return storage_error(&detail),
            e => e,
        };
        let (status, code) = match &e {
            E::InvalidSubscription { .. } => (S::BAD_REQUEST, "invalid_subscription"),
            E::UnknownSubscription(_) => (S::NOT_FOUND, "unknown_subscription"),
            E::UnknownReplay(_) => (S::NOT_FOUND, "unknown_replay"),
            E::SubscriptionExists(_) => (S::CONFLICT, "subscription_exists"),
            E::LimitReached { .. } => (S::CONFLICT, "limit_reached"),
            E::OwnedByConfig { .. } => (S::CONFLICT, "owned_by_config"),
            E::Broker(_) | E::Storage(_) => unreachable!("answered above"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// 507 for a write that could not be made durable; the detail goes to the log, not the client.
fn storage_error(detail: &str) -> ApiError {
    let msg = format!("storage error: {detail}");
    busbar_broker::log::error("busbar-http", "storage_error", &msg, &[]);
    ApiError::new(
        StatusCode::INSUFFICIENT_STORAGE,
        "storage_error",
        "the write could not be stored durably (disk full or storage offline); nothing changed, retry later",
    )
}

/// Result of handlers.
pub type ApiResult<T> = Result<T, ApiError>;
