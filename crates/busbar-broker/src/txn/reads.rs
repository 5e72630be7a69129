//! Isolated reads (`read_committed`: data below the last stable offset and the aborted
//! transactions that overlap it) and the transaction views (ids, pending offsets).

use super::{Aborted, Txn};
use crate::broker::Broker;
use crate::error::Result;
use busbar_log::batch::BatchHeader;

/// How a read treats transactions (Kafka's `isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Everything up to the high watermark.
    #[default]
    ReadUncommitted,
    /// Only below the last stable offset; aborted transactions are listed (Kafka) or left out
    /// (busbar's own readers).
    ReadCommitted,
}

/// What an isolated read answers: whole batches from the offset asked for, and the partition's
/// positions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IsolatedRead {
    pub data: Vec<u8>,
    pub high_watermark: u64,
    pub last_stable: u64,
    pub log_start: u64,
    /// ReadCommitted only: aborted transactions overlapping `data`.
    pub aborted: Vec<Aborted>,
}

/// The offset after the last batch in `data`, and `data` cut before the first batch at or past
/// `limit`.
fn cut_at(data: &mut Vec<u8>, limit: u64) {
    let mut pos = 0;
    while pos < data.len() {
        let Ok(h) = BatchHeader::parse(&data[pos..]) else {
            break;
        };
        if h.base_offset as u64 >= limit {
            data.truncate(pos);
            return;
        }
        pos += h.total_len().unwrap_or(data.len());
    }
}

impl Broker {
    /// The transactional id producer `pid` belongs to, if any.
    pub fn transactional_id_of(&self, pid: i64) -> Option<String> {
        self.txns.read().by_pid.get(&pid).cloned()
    }

    /// The transactional ids and their records (for `busbar` and the HTTP API).
    pub fn transactions(&self) -> Vec<(String, Txn)> {
        self.txns.list()
    }

    /// Partitions of `group` with transactional offsets that are neither committed nor aborted
    /// yet (OffsetFetch `require_stable` answers UNSTABLE_OFFSET_COMMIT for them).
    pub fn pending_txn_offsets(&self, group: &str) -> Vec<(String, u32)> {
        self.txns.pending_offsets(group)
    }

    /// The last stable offset of a partition: below it every transaction has ended.
    pub fn last_stable_offset(&self, topic: &str, partition: i64) -> Result<u64> {
        let t = self.topic(topic)?;
        let p = t.partition(partition)?;
        Ok(p.last_stable(p.log.stats().high_watermark))
    }

    /// Whole stored batches from `offset`, up to `max_bytes` (at least one batch), without
    /// waiting; ReadCommitted stops at the last stable offset and lists the aborted
    /// transactions that overlap what it answers (computed from the same partition state, after
    /// the last stable offset, so a transaction that ended between the two is seen whole).
    pub fn read_isolated(
        &self,
        topic: &str,
        partition: i64,
        offset: u64,
        max_bytes: usize,
        isolation: Isolation,
    ) -> Result<IsolatedRead> {
        let t = self.topic(topic)?;
        let p = t.partition(partition)?;
        let hw_before = p.log.stats().high_watermark;
        let last_stable = p.last_stable(hw_before);
        let r = p.log.read(offset, max_bytes)?;
        let mut data = r.data;
        let mut aborted = Vec::new();
        if isolation == Isolation::ReadCommitted {
            cut_at(&mut data, last_stable);
            if let Some(last) = crate::broker::last_offset(&data) {
                aborted = p.txns.aborted_in(offset, last);
            }
        }
        Ok(IsolatedRead {
            data,
            high_watermark: r.high_watermark,
            last_stable: last_stable.min(r.high_watermark),
            log_start: r.log_start,
            aborted,
        })
    }
}
