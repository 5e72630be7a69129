//! Errors of the bus: a subscription or replay the caller named wrongly, or an error of the
//! broker underneath (kept whole, so front ends map it as they map any broker error).

use busbar_broker::BrokerError;

/// Everything a bus operation can answer.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The subscription spec is invalid at `path` (a JSON pointer-like path into the spec).
    #[error("invalid subscription: {path}: {reason}")]
    InvalidSubscription { path: String, reason: String },
    #[error("subscription {0:?} already exists")]
    SubscriptionExists(String),
    #[error("unknown subscription {0:?}")]
    UnknownSubscription(String),
    #[error("unknown replay {0:?}")]
    UnknownReplay(String),
    /// The subscription is declared in a configuration file, which owns it (`owner.rs`).
    #[error(
        "subscription {name:?} is declared in {file} ([[subscriptions]]); change or remove it \
         there and restart busbar"
    )]
    OwnedByConfig { name: String, file: String },
    /// A configured limit (`bus.subscriptions_max`) is reached.
    #[error("{what} limit of {limit} reached")]
    LimitReached { what: &'static str, limit: usize },
    /// The bus's own state (subscriptions, retry entries) could not be read or written.
    #[error("storage unavailable: {0}")]
    Storage(String),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// Result of bus operations.
pub type Result<T, E = BusError> = std::result::Result<T, E>;
