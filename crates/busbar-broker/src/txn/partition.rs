//! What one partition knows of transactions: the open ones (producer id → a lower bound of the
//! transaction's first offset here, taken when the partition joined it, so no batch of it lies
//! below), which hold the last stable offset back, and the aborted ones (producer id, first and
//! last offset: the ABORT marker's), which `read_committed` reads leave out.
//!
//! The lower bound is safe for both uses: the LSO only waits a little longer for the records
//! between it and the true first batch, and a client dropping the producer's records from it on
//! finds none of that producer there (its previous transaction ended before the partition joined
//! this one). The coordinator (`txn.rs`) is the only writer and keeps both durable.

use busbar_log::batch::BatchHeader;
use std::collections::HashMap;
use std::sync::Mutex;

/// One aborted transaction on a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Aborted {
    pub producer_id: i64,
    /// No batch of the transaction lies below this offset.
    pub first: u64,
    /// The offset of its ABORT marker.
    pub last: u64,
}

#[derive(Default)]
struct Inner {
    open: HashMap<i64, u64>,
    /// Sorted by `last` (markers are written in offset order; `insert` keeps the order anyway).
    aborted: Vec<Aborted>,
}

/// The transaction state of one partition.
#[derive(Default)]
pub struct PartitionTxns {
    inner: Mutex<Inner>,
}

impl PartitionTxns {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Producer `pid` has an open transaction here, none of whose batches lies below `first`.
    pub fn open(&self, pid: i64, first: u64) {
        let mut g = self.lock();
        let at = g.open.entry(pid).or_insert(first);
        *at = (*at).min(first);
    }

    /// The first offset registered for `pid`'s open transaction here.
    pub fn first_of(&self, pid: i64) -> Option<u64> {
        self.lock().open.get(&pid).copied()
    }

    /// Whether `pid` has an open transaction here.
    pub fn is_open(&self, pid: i64) -> bool {
        self.lock().open.contains_key(&pid)
    }

    /// Forgets open transactions registered below `start` (the copy starts over there: what
    /// is left of them above it opens them again when applied).
    pub fn drop_below(&self, start: u64) {
        self.lock().open.retain(|_, first| *first >= start);
    }

    /// The producers with an open transaction here, with the first offset registered.
    pub fn open_list(&self) -> Vec<(i64, u64)> {
        self.lock().open.iter().map(|(p, f)| (*p, *f)).collect()
    }

    /// [`PartitionTxns::close`] when `pid`'s open transaction still starts at `first` (not a
    /// later one of the same producer).
    pub fn close_if(&self, pid: i64, first: u64, aborted: Vec<Aborted>) {
        let mut g = self.lock();
        if g.open.get(&pid) == Some(&first) {
            g.open.remove(&pid);
            for a in aborted {
                Self::insert(&mut g, a);
            }
        }
    }

    /// The transaction of `pid` ended here; `aborted` when it was aborted (and had a first
    /// offset).
    pub fn close(&self, pid: i64, aborted: Option<Aborted>) {
        let mut g = self.lock();
        g.open.remove(&pid);
        if let Some(a) = aborted {
            Self::insert(&mut g, a);
        }
    }

    /// Adds an aborted transaction.
    pub fn add_aborted(&self, a: Aborted) {
        Self::insert(&mut self.lock(), a);
    }

    /// Adds many aborted transactions at once (loading the durable index): one sort, not one
    /// insertion each.
    pub fn add_aborted_many(&self, mut more: Vec<Aborted>) {
        let mut g = self.lock();
        g.aborted.append(&mut more);
        g.aborted.sort_by_key(|a| (a.last, a.producer_id, a.first));
        g.aborted.dedup();
    }

    fn insert(g: &mut Inner, a: Aborted) {
        if g.aborted.contains(&a) {
            return;
        }
        let at = g.aborted.partition_point(|x| x.last <= a.last);
        g.aborted.insert(at, a);
    }

    /// The last stable offset: the first offset an open transaction may hold, or the high
    /// watermark when that is lower.
    pub fn last_stable(&self, high_watermark: u64) -> u64 {
        self.lock()
            .open
            .values()
            .copied()
            .min()
            .map_or(high_watermark, |f| f.min(high_watermark))
    }

    /// The aborted transactions that overlap the offsets `from..=to` (Kafka's Fetch answer).
    pub fn aborted_in(&self, from: u64, to: u64) -> Vec<Aborted> {
        let g = self.lock();
        let start = g.aborted.partition_point(|a| a.last < from);
        g.aborted[start..]
            .iter()
            .filter(|a| a.first <= to)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions wholly below `log_start`; answers them.
    pub fn prune(&self, log_start: u64) -> Vec<Aborted> {
        let mut g = self.lock();
        let cut = g.aborted.partition_point(|a| a.last < log_start);
        g.aborted.drain(..cut).collect()
    }

    /// Aborted transactions remembered.
    pub fn aborted_len(&self) -> usize {
        self.lock().aborted.len()
    }

    /// `data` (whole batches read from `from`) without control batches and without batches of
    /// aborted transactions: what a committed reader sees.
    pub fn committed_only(&self, data: &[u8]) -> Vec<u8> {
        // Only the aborted transactions that overlap `data`, by producer.
        let span = BatchHeader::parse(data)
            .ok()
            .zip(crate::broker::last_offset(data))
            .map(|(h, last)| (h.base_offset.max(0) as u64, last));
        let mut by_pid: HashMap<i64, Vec<(u64, u64)>> = HashMap::new();
        if let Some((from, to)) = span {
            for a in self.aborted_in(from, to) {
                by_pid
                    .entry(a.producer_id)
                    .or_default()
                    .push((a.first, a.last));
            }
        }
        let mut out = Vec::with_capacity(data.len());
        let mut pos = 0;
        while pos < data.len() {
            let Ok(h) = BatchHeader::parse(&data[pos..]) else {
                out.extend_from_slice(&data[pos..]);
                break;
            };
            let end = h
                .total_len()
                .map_or(data.len(), |l| (pos + l).min(data.len()));
            let base = h.base_offset.max(0) as u64;
            let aborted = super::marker::is_transactional(&h)
                && by_pid
                    .get(&h.producer_id)
                    .is_some_and(|r| r.iter().any(|(f, l)| *f <= base && base <= *l));
            if !h.is_control() && !aborted {
                out.extend_from_slice(&data[pos..end]);
            }
            pos = end;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lso_is_the_lowest_open_first_offset() {
        let t = PartitionTxns::default();
        assert_eq!(t.last_stable(10), 10);
        t.open(1, 4);
        t.open(2, 7);
        assert_eq!(t.last_stable(10), 4);
        assert_eq!(t.last_stable(3), 3);
        t.close(
            1,
            Some(Aborted {
                producer_id: 1,
                first: 4,
                last: 9,
            }),
        );
        assert_eq!(t.last_stable(10), 7);
        t.close(2, None);
        assert_eq!(t.last_stable(10), 10);
    }

    #[test]
    fn aborted_ranges_overlapping_a_read_are_listed_and_pruned_below_the_start() {
        let t = PartitionTxns::default();
        for (pid, first, last) in [(1, 0, 5), (2, 3, 12), (3, 20, 25)] {
            t.add_aborted(Aborted {
                producer_id: pid,
                first,
                last,
            });
        }
        let pids = |v: Vec<Aborted>| v.iter().map(|a| a.producer_id).collect::<Vec<_>>();
        assert_eq!(pids(t.aborted_in(6, 19)), vec![2]);
        assert_eq!(pids(t.aborted_in(0, 30)), vec![1, 2, 3]);
        assert_eq!(pids(t.aborted_in(26, 30)), Vec::<i64>::new());
        assert_eq!(pids(t.prune(6)), vec![1]);
        assert_eq!(t.aborted_len(), 2);
    }
}
