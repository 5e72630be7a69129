//! Where the bus's durable tables (positions, retry state) live: the local compacted internal log
//! of a single node ([`KvLog`]), or in cluster mode the shared store ([`SharedBus`], PostgreSQL),
//! one row per key tagged with its subscription.
//!
//! The tables in memory are the same either way. A local log is replayed whole at start; in
//! cluster mode a subscription's rows are loaded when this broker takes its lease (or shows it),
//! and every write of its worker is fenced by that lease in the store (`cluster.rs`). Sequence
//! numbers from the store play the part of log offsets ("the newest row wins").

use crate::cluster::{SharedBus, Space};
use crate::error::{BusError, Result};
use busbar_broker::kvlog::KvLog;
use std::sync::Arc;

/// A table's storage.
pub(crate) enum Backing {
    Local(KvLog),
    Shared {
        bus: Arc<dyn SharedBus>,
        space: Space,
    },
}

/// Rows to write: key, value (`None` deletes).
pub(crate) type Rows = Vec<(Vec<u8>, Option<Vec<u8>>)>;

impl Backing {
    /// Calls `f(offset, key, value)` for every stored row of a local log (a shared table is loaded
    /// per subscription instead: nothing here). The damage a local log reports.
    pub fn replay(&self, f: impl FnMut(u64, &[u8], Option<&[u8]>)) -> Result<Vec<String>> {
        match self {
            Backing::Local(log) => Ok(log.replay(f)?),
            Backing::Shared { .. } => Ok(Vec::new()),
        }
    }

    /// Writes `rows` of subscription `sub` durably, then calls `apply` with the offsets (or
    /// sequence numbers) of the rows written: on a failure, those of a prefix (a local log) or none
    /// (the shared store writes all or nothing). `whole`: a local write goes in one batch.
    pub async fn write(
        &self,
        sub: &str,
        rows: Rows,
        whole: bool,
        apply: impl FnOnce(Vec<u64>) + Send + 'static,
    ) -> Result<()> {
        match self {
            Backing::Local(log) if whole => Ok(log.write_whole(rows, apply).await?),
            Backing::Local(log) => Ok(log.write(rows, apply).await?),
            Backing::Shared { bus, space } => {
                let rows = rows.into_iter().map(|(k, v)| (*space, k, v)).collect();
                match bus.write(sub, rows).await {
                    Ok(seqs) => {
                        apply(seqs);
                        Ok(())
                    }
                    Err(e) => {
                        apply(Vec::new());
                        Err(BusError::Broker(e))
                    }
                }
            }
        }
    }

    /// Whether rows of several subscriptions may go in one write (only locally: the shared
    /// store fences each write by one subscription's lease).
    pub fn is_local(&self) -> bool {
        matches!(self, Backing::Local(_))
    }

    /// Compacts a local log (the shared store keeps one row per key already).
    pub fn compact(&self) -> Result<()> {
        match self {
            Backing::Local(log) => Ok(log.compact()?),
            Backing::Shared { .. } => Ok(()),
        }
    }

    /// Clean shutdown.
    pub fn close(&self) -> Result<()> {
        match self {
            Backing::Local(log) => Ok(log.close()?),
            Backing::Shared { .. } => Ok(()),
        }
    }
}
