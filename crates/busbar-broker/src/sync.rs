//! Group commit for the Kafka produce path without a thread per waiting request.
//!
//! A produce request's batch is written, then the request waits until an fsync covers it. Blocking
//! a pool thread per waiting request (the first design) cost two thread hand-offs per request and
//! woke every waiter on each fsync. Here one blocking task per partition (the *driver*) runs only
//! while something written waits: it fsyncs everything written so far, publishes the synced
//! position on a `watch` channel, and repeats until nothing written is unsynced. The writer starts
//! it ([`kick`]) right after its write, so the fsync does not wait for the request's waiting task
//! to be polled, and a request spanning partitions can await them one after the other while
//! their fsyncs run together. Waiters are async: they await the watch reaching their ticket. One fsync still covers every batch written while the previous
//! one ran ([`busbar_log::Log::wait_durable`] does the fsync and its bookkeeping).

use crate::error::{BrokerError, Result};
use crate::topic::Partition;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use tokio::sync::watch;

/// A partition's durability driver state.
pub struct Syncer {
    running: AtomicBool,
    /// Bytes written (log tickets) known durable; `None` once a sync failed.
    synced: watch::Sender<Option<u64>>,
}

impl Default for Syncer {
    fn default() -> Self {
        Syncer {
            running: AtomicBool::new(false),
            synced: watch::Sender::new(Some(0)),
        }
    }
}

/// Makes sure the partition's driver runs; called right after a write that awaits an fsync.
pub fn kick(p: &Arc<Partition>) {
    if !p.sync.running.swap(true, SeqCst) {
        let p = p.clone();
        tokio::task::spawn_blocking(move || drive(&p));
    }
}

/// Waits until the partition's log is durable up to `ticket` (from `Log::append_start`, after
/// which the writer called [`kick`]).
pub async fn durable(p: &Arc<Partition>, ticket: u64) -> Result<()> {
    let mut rx = p.sync.synced.subscribe();
    let reached = rx
        .wait_for(|s| s.is_none_or(|s| s >= ticket))
        .await
        .map(|s| s.is_some())
        .unwrap_or(false);
    if reached {
        return Ok(());
    }
    // A sync failed: the log is offline; ask it for the precise error.
    let log = p.log.clone();
    tokio::task::spawn_blocking(move || log.wait_durable(ticket))
        .await
        .map_err(|e| BrokerError::Storage(format!("sync task failed: {e}")))??;
    Ok(())
}

/// The driver: fsyncs until everything written is durable, then stops (a new waiter restarts it).
fn drive(p: &Partition) {
    loop {
        let target = p.log.written();
        let synced = *p.sync.synced.borrow();
        if synced.is_some_and(|s| s >= target) {
            p.sync.running.store(false, SeqCst);
            // A waiter that wrote after `target` was read and found the driver running relies on
            // this pass: look again, and carry on if no new driver took over.
            if p.log.written() > target && !p.sync.running.swap(true, SeqCst) {
                continue;
            }
            return;
        }
        match p.log.wait_durable(target) {
            Ok(()) => {
                p.sync.synced.send_modify(|s| {
                    if let Some(s) = s {
                        *s = (*s).max(target);
                    }
                });
                p.appended.notify_waiters();
            }
            Err(_) => {
                p.sync.synced.send_replace(None);
                p.sync.running.store(false, SeqCst);
                return;
            }
        }
    }
}
