//! Idempotent producers (shared/spec/kafka-protocol.md §4.1): producer ids from a durable,
//! monotonic counter allocated in blocks; per (producer, partition) the epoch and the last five
//! batches, so a retried batch is answered with its original offset instead of being stored twice,
//! and gaps or stale epochs are refused.
//!
//! State survives restarts through a per-partition snapshot (`snapshot.rs`, the file
//! `producers.snapshot` in the partition's directory): it holds the state as of an offset C at or
//! below the high watermark, and start-up loads it and replays batch headers only from C to the end
//! of the log, so start-up time does not grow with the log. The broker writes it in each
//! maintenance pass when the state changed (or the log moved on by [`SNAPSHOT_LAG`] records), and
//! at clean shutdown. Without a usable snapshot (none yet, damaged, or C outside the log after a
//! crash cut its tail or retention passed it) the state is rebuilt from the batch headers of the
//! newest [`REBUILD_RECORDS`] records; a producer whose last batches are older than that has no
//! state, and, as in Kafka, its next sequence is accepted.

use crate::error::{BrokerError, Result};
use busbar_log::batch::BatchHeader;
use busbar_log::disk::{self, Storage};
use busbar_log::{Appended, Log};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

mod snapshot;
pub use snapshot::Restored;

/// Batches remembered per producer and partition (Kafka's NUM_BATCHES_TO_RETAIN).
pub const BATCHES_KEPT: usize = 5;
/// How many of a partition's newest records are scanned at start-up to rebuild producer state
/// when there is no usable snapshot.
pub const REBUILD_RECORDS: u64 = 100_000;
/// A maintenance pass writes a new snapshot when the state changed, or when the log grew this many
/// records past the last one (appends without a producer id), so start-up replays a bounded tail.
pub const SNAPSHOT_LAG: u64 = 10_000;
/// Producer ids are reserved durably this many at a time.
const ID_BLOCK: i64 = 1000;
const ID_FILE: &str = "producer-id-block";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Batch {
    first_seq: i32,
    last_seq: i32,
    at: Appended,
    /// The log's durability ticket for the write (`None`: durable already, or a policy that does
    /// not wait). A retry of this batch is acknowledged only once the same ticket is durable.
    ticket: Option<u64>,
}

#[derive(Debug, Default)]
struct Entry {
    epoch: i16,
    batches: VecDeque<Batch>,
    /// When this producer last stored a batch here (a counter, for eviction).
    used: u64,
    /// ...and the clock's time then (`i64::MIN` for state rebuilt at start-up).
    last_ms: i64,
}

/// What to do with an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Store it.
    Append,
    /// Already stored at these offsets (durable once `ticket` is): answer with them once the
    /// original write is durable, store nothing.
    Duplicate(Appended, Option<u64>),
}

/// The outcome of [`PartitionProducers::admit`]: where the batch is, the durability ticket to
/// await before acknowledging it, and whether it was a retry of a stored batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub at: Appended,
    pub ticket: Option<u64>,
    pub duplicate: bool,
}

fn last_seq(h: &BatchHeader) -> i32 {
    (i64::from(h.base_sequence) + i64::from(h.last_offset_delta))
        .rem_euclid(i64::from(i32::MAX) + 1) as i32
}

/// The producer state of one partition: at most `limit` producers; past that, the one that stored
/// least recently is forgotten (as Kafka forgets producers after `producer.id.expiration.ms`: its
/// next batch is accepted at any sequence).
pub struct PartitionProducers {
    /// The snapshot on disk; taken before `entries` (see `snapshot.rs`).
    mark: Mutex<snapshot::Mark>,
    entries: Mutex<Entries>,
    limit: usize,
}

#[derive(Default)]
struct Entries {
    map: HashMap<i64, Entry>,
    /// Producer ids by their entry's `used`, oldest first (eviction in O(log n)).
    by_use: BTreeMap<u64, i64>,
    clock: u64,
}

impl Default for PartitionProducers {
    fn default() -> Self {
        Self::new(PRODUCERS_MAX)
    }
}

/// A producer that stored a batch this recently is never forgotten to make room for a new one
/// (Kafka's `delivery.timeout.ms` default is two minutes: a producer retries within it).
pub const PRODUCER_ACTIVE_MS: i64 = 5 * 60 * 1000;

/// Default of `BrokerConfig::producers_max`.
pub const PRODUCERS_MAX: usize = 10_000;

impl PartitionProducers {
    /// Producer state remembering at most `limit` producers.
    pub fn new(limit: usize) -> Self {
        Self {
            mark: Mutex::default(),
            entries: Mutex::default(),
            limit: limit.max(1),
        }
    }

    /// Checks, stores (through `append`) and records an incoming batch in one critical section, so
    /// a retry arriving on another connection while the original is being written waits for it
    /// and is then answered as a duplicate instead of being stored twice. A duplicate carries the
    /// original write's durability ticket: it is acknowledged only when the original is durable,
    /// and fails if the original's fsync failed.
    ///
    /// A new producer arriving at a full table takes the place of the least recently active one
    /// only if that one has been idle for [`PRODUCER_ACTIVE_MS`]; otherwise it is refused (a
    /// retriable error), so a flood of new producers cannot push out the state of one that is
    /// still retrying and break its exactly-once.
    pub fn admit(
        &self,
        h: &BatchHeader,
        now_ms: i64,
        append: impl FnOnce() -> Result<(Appended, Option<u64>)>,
    ) -> Result<Admitted> {
        if h.producer_id < 0 {
            let (at, ticket) = append()?;
            return Ok(Admitted {
                at,
                ticket,
                duplicate: false,
            });
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Verdict::Duplicate(at, ticket) = Self::check_locked(&entries.map, h)? {
            return Ok(Admitted {
                at,
                ticket,
                duplicate: true,
            });
        }
        if !entries.map.contains_key(&h.producer_id) && entries.map.len() >= self.limit {
            let oldest = entries.by_use.first_key_value().map(|(_, pid)| *pid);
            let last_ms = oldest
                .and_then(|pid| entries.map.get(&pid))
                .map_or(i64::MIN, |e| e.last_ms);
            if last_ms > now_ms.saturating_sub(PRODUCER_ACTIVE_MS) {
                return Err(BrokerError::ProducerStateFull(format!(
                    "{} producers active on this partition in the last {} s (producers_max)",
                    self.limit,
                    PRODUCER_ACTIVE_MS / 1000
                )));
            }
        }
        let (at, ticket) = append()?;
        self.record_locked(&mut entries, h, at, ticket, now_ms);
        Ok(Admitted {
            at,
            ticket,
            duplicate: false,
        })
    }

    /// Checks an incoming batch against the producer's state (Kafka's checkProducerEpoch and
    /// checkSequence) without storing anything.
    pub fn check(&self, h: &BatchHeader) -> Result<Verdict> {
        if h.producer_id < 0 {
            return Ok(Verdict::Append);
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        Self::check_locked(&entries.map, h)
    }

    fn check_locked(entries: &HashMap<i64, Entry>, h: &BatchHeader) -> Result<Verdict> {
        let Some(e) = entries.get(&h.producer_id) else {
            return Ok(Verdict::Append);
        };
        if h.producer_epoch < e.epoch {
            return Err(BrokerError::InvalidProducerEpoch(format!(
                "epoch {} is older than {}",
                h.producer_epoch, e.epoch
            )));
        }
        if h.producer_epoch > e.epoch {
            return if h.base_sequence == 0 {
                Ok(Verdict::Append)
            } else {
                Err(BrokerError::OutOfOrderSequence(format!(
                    "a new epoch must start at sequence 0, not {}",
                    h.base_sequence
                )))
            };
        }
        if let Some(b) = e
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq(h))
        {
            return Ok(Verdict::Duplicate(b.at, b.ticket));
        }
        let expected = e.batches.back().map_or(h.base_sequence, |b| {
            if b.last_seq == i32::MAX {
                0
            } else {
                b.last_seq + 1
            }
        });
        if h.base_sequence != expected {
            return Err(BrokerError::OutOfOrderSequence(format!(
                "expected sequence {expected}, got {}",
                h.base_sequence
            )));
        }
        Ok(Verdict::Append)
    }

    /// Records a stored batch that is already durable (rebuilt at start-up).
    pub fn record(&self, h: &BatchHeader, base_offset: u64) {
        // A transaction marker carries the producer's id but no sequence.
        if h.producer_id < 0 || h.is_control() {
            return;
        }
        let at = Appended {
            base_offset,
            last_offset: base_offset + h.last_offset_delta.max(0) as u64,
        };
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.record_locked(&mut entries, h, at, None, i64::MIN);
    }

    /// Producers remembered now.
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len()
    }

    /// The highest producer id remembered.
    pub fn max_producer_id(&self) -> Option<i64> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.map.keys().max().copied()
    }

    /// Whether no producer is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn record_locked(
        &self,
        entries: &mut Entries,
        h: &BatchHeader,
        at: Appended,
        ticket: Option<u64>,
        now_ms: i64,
    ) {
        if !entries.map.contains_key(&h.producer_id) && entries.map.len() >= self.limit {
            if let Some((_, oldest)) = entries.by_use.pop_first() {
                entries.map.remove(&oldest);
            }
        }
        entries.clock += 1;
        let used = entries.clock;
        let e = entries.map.entry(h.producer_id).or_default();
        e.last_ms = now_ms;
        let before = std::mem::replace(&mut e.used, used);
        entries.by_use.remove(&before);
        entries.by_use.insert(used, h.producer_id);
        if h.producer_epoch != e.epoch {
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        e.batches.push_back(Batch {
            first_seq: h.base_sequence,
            last_seq: last_seq(h),
            at,
            ticket,
        });
        while e.batches.len() > BATCHES_KEPT {
            e.batches.pop_front();
        }
    }

    /// Rebuilds the state from the newest [`REBUILD_RECORDS`] records of `log` (no snapshot);
    /// answers the offsets scanned.
    pub fn rebuild(&self, log: &Log) -> Result<u64> {
        let s = log.stats();
        let from = s
            .high_watermark
            .saturating_sub(REBUILD_RECORDS)
            .max(s.log_start);
        self.replay(log, from)
    }

    /// Records the batches of `log` from `from` to its end, reading only their headers; answers
    /// the offsets scanned.
    fn replay(&self, log: &Log, from: u64) -> Result<u64> {
        let end = log.stats().high_watermark;
        let mut offset = from;
        while offset < end {
            let r = match log.read(offset, 1 << 20) {
                Ok(r) => r,
                // A damaged range is reported by reads; its producers simply have no state.
                Err(busbar_log::LogError::Corrupt { .. }) => match log.next_segment_base(offset) {
                    Some(next) => {
                        offset = next;
                        continue;
                    }
                    None => break,
                },
                Err(e) => return Err(e.into()),
            };
            if r.data.is_empty() {
                break;
            }
            let mut pos = 0;
            while pos < r.data.len() {
                let h = BatchHeader::parse(&r.data[pos..])
                    .map_err(|e| BrokerError::Storage(e.to_string()))?;
                if h.last_offset() as u64 >= offset {
                    self.record(&h, h.base_offset as u64);
                }
                offset = h.last_offset() as u64 + 1;
                pos += h.total_len().unwrap_or(r.data.len());
            }
        }
        Ok(offset.saturating_sub(from))
    }
}

/// Hands out producer ids, reserving them durably in blocks so none is ever reused.
pub struct ProducerIds {
    storage: Arc<dyn Storage>,
    state: Mutex<(i64, i64)>, // (next id, end of the reserved block)
    epochs: Mutex<Epochs>,
    limit: usize,
}

/// The epoch each recently initialised producer id is at (for KIP-360's proof of holding), the
/// oldest forgotten past the limit: a forgotten id is bumped without proof, as after a restart.
#[derive(Default)]
struct Epochs {
    map: HashMap<i64, i16>,
    order: VecDeque<i64>,
}

impl ProducerIds {
    /// Opens the allocator remembering the epochs of at most `limit` producer ids.
    pub fn open_with(storage: Arc<dyn Storage>, limit: usize) -> Result<Self> {
        let stored = disk::read_all(storage.as_ref(), ID_FILE)
            .map_err(|e| BrokerError::Storage(format!("read producer ids: {e}")))?;
        let next = match stored {
            None => 0,
            Some(b) => String::from_utf8_lossy(&b)
                .trim()
                .parse::<i64>()
                .map_err(|_| {
                    BrokerError::Storage(format!("{} is damaged", storage.describe(ID_FILE)))
                })?,
        };
        Ok(Self {
            storage,
            state: Mutex::new((next, next)),
            epochs: Mutex::default(),
            limit: limit.max(1),
        })
    }

    /// Makes sure ids up to `pid` are never handed out again (a producer-id file that is missing or
    /// older than the logs, say restored from a backup, beside producers found in the logs: a reused
    /// id would have its first batches answered as duplicates of the old producer's).
    pub fn reserve_through(&self, pid: i64) -> Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.0 > pid {
            return Ok(());
        }
        let end = (pid / ID_BLOCK + 1) * ID_BLOCK;
        disk::write_atomic(self.storage.as_ref(), ID_FILE, end.to_string().as_bytes())
            .map_err(|e| BrokerError::Storage(format!("reserve producer ids: {e}")))?;
        *st = (pid + 1, end);
        Ok(())
    }

    /// Whether `pid` was handed out by InitProducerId (now or before a restart): ids are
    /// allocated in order, so every id below the next one was.
    pub fn issued(&self, pid: i64) -> bool {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (0..st.0).contains(&pid)
    }

    fn allocate(&self) -> Result<i64> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.0 == st.1 {
            let end = st.1 + ID_BLOCK;
            disk::write_atomic(self.storage.as_ref(), ID_FILE, end.to_string().as_bytes())
                .map_err(|e| BrokerError::Storage(format!("reserve producer ids: {e}")))?;
            st.1 = end;
        }
        st.0 += 1;
        Ok(st.0 - 1)
    }

    /// InitProducerId: a new id at epoch 0, or (KIP-360) the same id with the next epoch when the
    /// caller proves it holds it.
    pub fn init(&self, current: Option<(i64, i16)>) -> Result<(i64, i16)> {
        let mut epochs = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((pid, epoch)) = current.filter(|(pid, _)| *pid >= 0) {
            if !self.issued(pid) {
                return Err(BrokerError::InvalidProducerEpoch(format!(
                    "producer id {pid} was never issued"
                )));
            }
            let known = epochs.map.get(&pid).copied();
            if known.is_some_and(|k| k != epoch) {
                return Err(BrokerError::InvalidProducerEpoch(format!(
                    "producer {pid} is at epoch {}, not {epoch}",
                    known.unwrap_or(0)
                )));
            }
            if epoch < i16::MAX - 1 {
                self.remember(&mut epochs, pid, epoch + 1);
                return Ok((pid, epoch + 1));
            }
        }
        let pid = self.allocate()?;
        self.remember(&mut epochs, pid, 0);
        Ok((pid, 0))
    }

    fn remember(&self, epochs: &mut Epochs, pid: i64, epoch: i16) {
        if epochs.map.insert(pid, epoch).is_none() {
            epochs.order.push_back(pid);
        }
        while epochs.map.len() > self.limit {
            match epochs.order.pop_front() {
                Some(old) => epochs.map.remove(&old),
                None => break,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use busbar_log::batch::{self, NewRecord};

    fn header(pid: i64, epoch: i16, seq: i32, n: i32) -> BatchHeader {
        let recs: Vec<NewRecord> = (0..n).map(|_| NewRecord::default()).collect();
        let h = BatchHeader::parse(&batch::build(&recs)).unwrap();
        BatchHeader {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            ..h
        }
    }

    fn dup(base_offset: u64, n: u64) -> Verdict {
        Verdict::Duplicate(
            Appended {
                base_offset,
                last_offset: base_offset + n - 1,
            },
            None,
        )
    }

    #[test]
    fn sequences_duplicates_gaps_and_epochs() {
        let p = PartitionProducers::default();
        let b0 = header(7, 0, 0, 3);
        assert_eq!(p.check(&b0).unwrap(), Verdict::Append);
        p.record(&b0, 100);
        assert_eq!(
            p.check(&b0).unwrap(),
            dup(100, 3),
            "a retry gets its original offset"
        );
        assert!(
            matches!(
                p.check(&header(7, 0, 4, 1)),
                Err(BrokerError::OutOfOrderSequence(_))
            ),
            "gap"
        );
        let b1 = header(7, 0, 3, 2);
        assert_eq!(p.check(&b1).unwrap(), Verdict::Append);
        p.record(&b1, 103);
        assert!(
            matches!(
                p.check(&header(7, 1, 5, 1)),
                Err(BrokerError::OutOfOrderSequence(_))
            ),
            "new epoch starts at 0"
        );
        let e1 = header(7, 1, 0, 1);
        assert_eq!(p.check(&e1).unwrap(), Verdict::Append);
        p.record(&e1, 105);
        assert!(
            matches!(
                p.check(&header(7, 0, 5, 1)),
                Err(BrokerError::InvalidProducerEpoch(_))
            ),
            "fenced epoch"
        );
        for i in 1..=6 {
            p.record(&header(7, 1, i, 1), 105 + i as u64);
        }
        assert!(
            matches!(
                p.check(&header(7, 1, 1, 1)),
                Err(BrokerError::OutOfOrderSequence(_))
            ),
            "older than the kept batches"
        );
        assert_eq!(
            p.check(&header(7, 1, 2, 1)).unwrap(),
            dup(107, 1),
            "the fifth newest is still known"
        );
        assert_eq!(
            p.check(&header(9, 0, 42, 1)).unwrap(),
            Verdict::Append,
            "unknown producers start anywhere"
        );
    }

    #[test]
    fn ids_are_never_reused_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIds::open_with(
            Arc::new(busbar_log::disk::FileStorage::open(dir.path()).unwrap()),
            PRODUCERS_MAX,
        )
        .unwrap();
        let (a, e) = ids.init(None).unwrap();
        assert_eq!((a, e), (0, 0));
        assert_eq!(
            ids.init(Some((a, 0))).unwrap(),
            (a, 1),
            "KIP-360 epoch bump"
        );
        assert!(matches!(
            ids.init(Some((a, 0))),
            Err(BrokerError::InvalidProducerEpoch(_))
        ));
        let ids = ProducerIds::open_with(
            Arc::new(busbar_log::disk::FileStorage::open(dir.path()).unwrap()),
            PRODUCERS_MAX,
        )
        .unwrap();
        assert!(
            ids.init(None).unwrap().0 >= ID_BLOCK,
            "a restart skips the whole reserved block"
        );
    }

    #[test]
    fn state_is_bounded_and_only_issued_ids_count() {
        let p = PartitionProducers::new(2);
        for pid in 1..=3 {
            p.record(&header(pid, 0, 0, 1), pid as u64);
        }
        assert_eq!(
            p.len(),
            2,
            "the least recently active producer is forgotten"
        );
        assert_eq!(
            p.check(&header(1, 0, 42, 1)).unwrap(),
            Verdict::Append,
            "a forgotten producer starts anywhere"
        );
        assert_eq!(p.check(&header(3, 0, 0, 1)).unwrap(), dup(3, 1));

        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(busbar_log::disk::FileStorage::open(dir.path()).unwrap());
        let ids = ProducerIds::open_with(storage, 2).unwrap();
        assert!(!ids.issued(0));
        for _ in 0..5 {
            ids.init(None).unwrap();
        }
        assert!(ids.issued(4) && !ids.issued(5) && !ids.issued(-1));
        assert_eq!(
            ids.epochs.lock().unwrap().map.len(),
            2,
            "epochs are bounded"
        );
        assert!(matches!(
            ids.init(Some((77, 0))),
            Err(BrokerError::InvalidProducerEpoch(_))
        ));
        assert_eq!(ids.init(Some((0, 3))).unwrap(), (0, 4), "forgotten: bumped");
    }

    #[test]
    fn eviction_stays_cheap_when_the_table_is_full() {
        // A start-up rebuild can record 100,000 one-batch producers into a full table.
        let p = PartitionProducers::new(10_000);
        let t = std::time::Instant::now();
        for pid in 0..100_000 {
            p.record(&header(pid, 0, 0, 1), pid as u64);
        }
        assert_eq!(p.len(), 10_000);
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(p.check(&header(99_999, 0, 0, 1)).unwrap(), dup(99_999, 1));
    }

    #[test]
    fn an_active_producer_is_never_pushed_out_by_new_ones() {
        let p = PartitionProducers::new(2);
        let at = |b| {
            Ok((
                Appended {
                    base_offset: b,
                    last_offset: b,
                },
                None,
            ))
        };
        let now = 10_000_000;
        p.admit(&header(1, 0, 0, 1), now, || at(0)).unwrap();
        p.admit(&header(2, 0, 0, 1), now, || at(1)).unwrap();
        assert!(
            matches!(
                p.admit(&header(3, 0, 0, 1), now + 1000, || at(2)),
                Err(BrokerError::ProducerStateFull(_))
            ),
            "producer 1 is still active"
        );
        assert_eq!(p.check(&header(1, 0, 0, 1)).unwrap(), dup(0, 1));
        let later = now + PRODUCER_ACTIVE_MS + 1;
        p.admit(&header(3, 0, 0, 1), later, || at(2)).unwrap();
        assert_eq!(p.len(), 2, "idle producer 1 made room");
        assert_eq!(p.check(&header(1, 0, 5, 1)).unwrap(), Verdict::Append);
    }
}
