//! Applying the shared store's batches to the local copies, in offset order: an own batch after
//! its commit (from memory), the others' as the store announces them or a read needs them; a copy
//! behind the store's start starts over there, and one whose records below the cluster's log
//! start (DeleteRecords, retention) are still here is trimmed to it.

use super::BoxFuture;
use super::{keeps_current, Committed, SharedLog};
use crate::error::{BrokerError, Result};
use crate::topic::{Partition, Topic};
use std::sync::Arc;

/// How long a produce's ack waits for its batch to reach this broker's copy after the commit (it
/// is acknowledged either way: the copy goes on in the background).
const APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Most bytes one catch-up read asks of the shared store.
const CATCH_UP_READ_BYTES: usize = 4 << 20;

/// Appends `batch` (checked) through the shared store and then locally; its shared offsets.
pub(crate) async fn append(
    shared: &Arc<dyn SharedLog>,
    t: Arc<Topic>,
    p: Arc<Partition>,
    batch: Vec<u8>,
) -> Result<busbar_log::Appended> {
    let (base_offset, last_offset, _) = produce(shared, t, p, batch).await?;
    Ok(busbar_log::Appended {
        base_offset,
        last_offset,
    })
}

/// The cluster-mode produce: queues the checked `batch` in the shared store now (call order),
/// then, once committed there, applies it locally; answers its shared offsets.
pub(crate) fn produce(
    shared: &Arc<dyn SharedLog>,
    t: Arc<Topic>,
    p: Arc<Partition>,
    batch: Vec<u8>,
) -> BoxFuture<'static, Result<(u64, u64, bool)>> {
    let committing = shared.append(&t.id, p.index, batch.clone());
    settle(committing, shared.clone(), t, p, batch)
}

/// A transaction marker ending transaction number `seq` (`txn::marker`), committed through the
/// shared store and applied as a produced batch is; `None` when its transaction had ended on
/// the partition already (nothing stored).
pub(crate) async fn commit_marker(
    shared: &Arc<dyn SharedLog>,
    t: Arc<Topic>,
    p: Arc<Partition>,
    marker: Vec<u8>,
    seq: u64,
) -> Result<Option<u64>> {
    let committed = shared
        .append_marker(&t.id, p.index, marker.clone(), seq)
        .await?;
    if committed == Committed::Nothing {
        return Ok(None);
    }
    let committing: BoxFuture<'static, Result<Committed>> = Box::pin(async move { Ok(committed) });
    let (base, _, _) = settle(committing, shared.clone(), t, p, marker).await?;
    Ok(Some(base))
}

/// Waits for `committing` (the commit of `batch`) and applies it to the local copy.
fn settle(
    committing: BoxFuture<'static, Result<Committed>>,
    shared: Arc<dyn SharedLog>,
    t: Arc<Topic>,
    p: Arc<Partition>,
    batch: Vec<u8>,
) -> BoxFuture<'static, Result<(u64, u64, bool)>> {
    Box::pin(async move {
        match committing.await? {
            Committed::Nothing => Err(BrokerError::Storage(
                "cluster store: the batch was not stored".into(),
            )),
            Committed::Duplicate {
                base_offset,
                last_offset,
            } => Ok((base_offset, last_offset, true)),
            Committed::Appended {
                base_offset,
                last_offset,
            } if !keeps_current(shared.as_ref(), &t, &p) => {
                // A copy this broker does not keep current is not applied to for this batch
                // either (that would read the gap before it, possibly from objects): the end is
                // noted and the copy catches up when read.
                p.replica.heard(last_offset + 1);
                Ok((base_offset, last_offset, false))
            }
            Committed::Appended {
                base_offset,
                last_offset,
            } => {
                // Committed is acknowledged: a local copy that cannot take it is this broker's
                // problem (logged; reads catch up again), not the producer's. A copy far behind
                // (a new broker) must not hold the ack: past APPLY_WAIT it goes on alone.
                let apply = tokio::spawn(async move {
                    if let Err(e) = catch_up(&shared, &t, &p, Upto::Own(base_offset, batch)).await {
                        crate::log::warn(
                            "busbar",
                            "cluster_catch_up_failed",
                            &format!("cluster: applying {}/{} failed: {e}", t.name, p.index),
                            &[],
                        );
                    }
                });
                let _ = tokio::time::timeout(APPLY_WAIT, apply).await;
                Ok((base_offset, last_offset, false))
            }
        }
    })
}

/// How far a catch-up goes.
pub(super) enum Upto {
    /// Through a batch this broker committed (its shared base offset and bytes).
    Own(u64, Vec<u8>),
    /// To the shared end when known (a notification's), else until the store has no more.
    End(Option<u64>),
}

/// [`Broker::catch_up`] with the shared store at hand. An own batch waits in the partition's
/// pending map, so the batches of one commit group are applied from memory in offset order
/// whichever of their tasks runs first; the shared store is read only for a gap another broker's
/// batches fill (after [`GAP_WAIT`] for this broker's own to arrive). A known end saves the read
/// that would find nothing more (and, on an empty hot tier, the object lookup after it).
pub(super) async fn catch_up(
    shared: &Arc<dyn SharedLog>,
    t: &Topic,
    p: &Arc<Partition>,
    upto: Upto,
) -> Result<()> {
    let (until, end) = match upto {
        Upto::Own(base, bytes) => {
            p.replica.pend(base, bytes);
            (Some(base), None)
        }
        Upto::End(end) => (None, end),
    };
    let _one = p.replica.lock.lock().await;
    let mut next = p.log.stats().high_watermark;
    let mut waited = false;
    let result = loop {
        next = match drain(t, p, next) {
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        let first_pending = p.replica.first_pending();
        match until {
            Some(u) if next > u => break Ok(()),
            // The gap may be this group's own batches whose tasks have not pended yet.
            Some(_) if !waited && first_pending.is_some_and(|f| f > next) => {
                waited = true;
                let _ = tokio::time::timeout(GAP_WAIT, p.replica.filled.notified()).await;
                continue;
            }
            None if end.is_some_and(|e| next >= e) => break Ok(()),
            _ => {}
        }
        let got = match shared.read(&t.id, p.index, next, CATCH_UP_READ_BYTES).await {
            Ok(got) => got,
            Err(e) => break Err(e),
        };
        if let Some(start) = got.start.filter(|s| *s > next) {
            // Retention deleted what this copy lacks: it starts over where the store begins.
            match start_over(t, p, next, start).await {
                Ok(()) => {
                    next = start;
                    continue;
                }
                Err(e) => break Err(e),
            }
        }
        if let Some(to) = got.skip_to.filter(|t| got.batches.is_empty() && *t > next) {
            // Compaction removed everything from here to `to`: the copy's end moves there.
            match p.log.skip_to(to) {
                Ok(()) => {
                    next = to;
                    p.replica.heard(next);
                    continue;
                }
                Err(e) => break Err(e.into()),
            }
        }
        let gapped = got.gapped;
        let got = got.batches;
        if got.is_empty() {
            break match until {
                Some(u) if next <= u => Err(inconsistent(t, p, next, u)),
                _ => Ok(()),
            };
        }
        let before = next;
        let mut failed = None;
        for b in got {
            if b.last_offset < next {
                continue;
            }
            if b.base_offset != next && !gapped {
                // Only a compaction's object skips offsets.
                failed = Some(inconsistent(t, p, next, b.base_offset));
                break;
            }
            let mut bytes = b.bytes;
            match apply(t, p, b.base_offset, &mut bytes) {
                Ok(n) => next = n,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            p.replica.heard(next);
        }
        if let Some(e) = failed {
            break Err(e);
        }
        if next == before {
            // Rows that do not move the copy on: never loop on them.
            break Err(inconsistent(t, p, next, next));
        }
    };
    let result = match result {
        Ok(()) => trim(p).await,
        e => e,
    };
    p.appended.notify_waiters();
    if result.is_err() {
        // What could not be applied is read back from the shared store by the next catch-up.
        p.replica.pending().clear();
    }
    result
}

/// Drops the local copy's records below the shared store's start as heard (DeleteRecords, the
/// objects' retention) once the copy holds that offset; a copy that ends below it is trimmed by
/// the catch-up that brings it there. Called with the partition's apply lock held.
async fn trim(p: &Partition) -> Result<()> {
    let start = p.replica.shared_start();
    let stats = p.log.stats();
    if start <= stats.log_start || start > stats.high_watermark {
        return Ok(());
    }
    let log = p.log.clone();
    tokio::task::spawn_blocking(move || log.delete_records(start))
        .await
        .map_err(|e| BrokerError::Storage(format!("trim task failed: {e}")))??;
    Ok(())
}

/// [`trim`], taking the partition's apply lock.
pub(crate) async fn trim_now(p: &Partition) -> Result<()> {
    let _one = p.replica.lock.lock().await;
    trim(p).await
}

/// How long an own batch's apply waits for the batches of its commit group before it reads a gap
/// from the shared store.
const GAP_WAIT: std::time::Duration = std::time::Duration::from_millis(5);

/// Applies the pending own batches that continue the local copy at `next`; drops those it has.
fn drain(t: &Topic, p: &Partition, mut next: u64) -> Result<u64> {
    loop {
        let mut pending = p.replica.pending();
        if pending.first().is_none_or(|base| base > next) {
            return Ok(next);
        }
        let (base, mut bytes) = pending.pop_first().expect("a first batch");
        drop(pending);
        if base < next {
            continue;
        }
        next = apply(t, p, base, &mut bytes)?;
        p.replica.heard(next);
    }
}

/// Empties the local copy of `p` (ending at `end`) and makes it go on at `start`, where the
/// shared store now begins (on the blocking pool: it syncs and deletes files, and waits for a
/// cleaning pass of the log to finish).
pub(crate) async fn start_over(t: &Topic, p: &Partition, end: u64, start: u64) -> Result<()> {
    let log = p.log.clone();
    tokio::task::spawn_blocking(move || log.start_over_at(start))
        .await
        .map_err(|e| BrokerError::Storage(format!("start-over task failed: {e}")))??;
    p.txns.drop_below(start);
    let _ = p.txns.prune(start);
    p.replica.heard(start);
    crate::log::info(
        "busbar",
        "cluster_copy_starts_over",
        &format!(
            "cluster: the local copy of {}/{} ended at offset {end}, below the shared store's \
             first offset {start} (retention deleted the rest): it starts over at {start}",
            t.name, p.index
        ),
        &[],
    );
    Ok(())
}

/// Appends one shared batch to the local log at its shared offsets; answers the local end after
/// it. The batch may start past the local end (the caller allows that only for a compaction's
/// object, whose compaction removed whole batches: the copy has the same gaps).
fn apply(t: &Topic, p: &Partition, base: u64, bytes: &mut [u8]) -> Result<u64> {
    let end = p.log.stats().high_watermark;
    if base < end || bytes.len() < 8 {
        return Err(inconsistent(t, p, end, base));
    }
    // An own batch is the producer's bytes: its shared base offset is written in here.
    bytes[..8].copy_from_slice(&(base as i64).to_be_bytes());
    // A transaction's batch holds the last stable offset before it is readable; its marker
    // releases it once written.
    crate::txn::note_applying(p, base, bytes);
    let (at, _) = p.log.append_copied(bytes)?;
    if at.base_offset != base {
        return Err(inconsistent(t, p, at.base_offset, base));
    }
    crate::txn::note_applied(p, base, bytes);
    Ok(at.last_offset + 1)
}

fn inconsistent(t: &Topic, p: &Partition, local: u64, shared: u64) -> BrokerError {
    BrokerError::Storage(format!(
        "cluster: the local copy of {}/{} ends at offset {local} but the shared store's next \
         batch starts at {shared}; restart this broker with an empty data directory",
        t.name, p.index
    ))
}
