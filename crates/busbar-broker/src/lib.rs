//! busbar-broker: the core of busbar and the embeddable library. Topics with partitions stored by
//! `busbar-log`, publish (events, partitioned like Kafka's default partitioner) and produce (Kafka
//! record batches as received), long-polling fetch, consumer groups with Kafka's classic protocol,
//! durable committed offsets, and background maintenance. The routing bus (subscriptions) is the
//! `busbar-bus` crate above this one; it uses the public `kvlog` and `metadata` modules for its
//! own durable state.
//!
//! It knows nothing of HTTP or the Kafka wire format; front ends call these methods and map
//! [`BrokerError`] to their codes.
//!
//! An in-process event bus, no network (an embedding program also runs
//! `Broker::run_background` to expire idle group members and apply retention):
//!
//! ```
//! use busbar_broker::{Broker, BrokerConfig, ConsumerOptions, Event, GroupConsumer, StartAt};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), busbar_broker::BrokerError> {
//! let dir = tempfile::tempdir().unwrap();
//! let broker = Broker::open(BrokerConfig { data_dir: dir.path().into(), ..Default::default() })?;
//! broker.create_topic("orders", Some(3), Default::default()).await?;
//!
//! // Publish: keyed events go where Kafka's partitioner would put them; each is fsynced first.
//! let at = broker.publish("orders", vec![Event::keyed("customer-7", r#"{"total":42}"#)]).await?;
//!
//! // Read from an offset (waits up to the given time for data).
//! let events = broker.read_events("orders", at[0].partition as i64, 0, 10, Duration::from_secs(1)).await?;
//! assert_eq!(events[0].value.as_deref(), Some(&br#"{"total":42}"#[..]));
//!
//! // Consume as a member of a group: partitions are shared with the group's other members
//! // (busbar's or Kafka clients), positions are committed durably.
//! let broker = std::sync::Arc::new(broker);
//! let options = ConsumerOptions { start: StartAt::Earliest, ..Default::default() };
//! let mut member = GroupConsumer::join(broker.clone(), "billing", vec!["orders".into()], options).await?;
//! let batch = member.poll(100, Duration::from_secs(1)).await?;
//! assert_eq!(batch.len(), 1);
//! member.commit().await?; // after processing: at-least-once
//! member.leave()?;
//! broker.close()?;
//! # Ok(()) }
//! ```

pub mod assignment;
pub mod audit;
pub mod auth;
mod broker;
pub mod client_address;
pub mod codec;
pub mod config;
mod consumer;
pub mod datadir;
mod error;
pub mod event;
mod group;
pub mod kvlog;
pub mod lag;
pub mod log;
mod member;
pub mod metadata;
pub mod metrics;
mod offsets;
pub mod partitioner;
mod produce;
mod producers;
pub mod quota;
pub mod schema_rules;
pub mod shared;
mod startup;
mod sync;
pub mod time;
mod topic;
pub mod trace;
pub mod txn;
pub mod validate;

pub use broker::observe::{DiskSpace, GroupPartitionLag};
pub use broker::{last_offset, Broker, DeletionGuard, FetchResult, RecoverySummary};
pub use busbar_log::{Clock, ManualClock, SystemClock};
pub use config::{BrokerConfig, TopicConfig};
pub use consumer::{GroupDescription, OffsetMap, PartitionLag, ResetTo};
pub use error::{BrokerError, Result};
pub use event::{Event, Published, StoredEvent};
pub use group::{GroupInfo, GroupState, JoinMember, JoinRequest, JoinResponse, MemberInfo};
pub use member::{ConsumerOptions, GroupConsumer, StartAt};
pub use offsets::{Committed, OffsetCommit};
pub use produce::PendingAppend;
pub use topic::{validate_name, PartitionInfo, TopicDescription, TopicInfo, TOPIC_NAME_BYTES_MAX};
pub use txn::Isolation;
