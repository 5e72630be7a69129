//! The producer-state snapshot of one partition: the file `producers.snapshot` in the partition's
//! directory, written beside the log's files (the log ignores names it does not know, and deletes
//! the `.tmp` a crashed write leaves), so start-up loads the state instead of scanning the log.
//!
//! It holds the state as of an offset C (at or below the high watermark when it was taken):
//! batches at or beyond C are left out, and start-up replays them from the log. So it is usable
//! only while `log start ≤ C ≤ high watermark`; anything else (missing, damaged, another
//! version, C past the end after a crash cut the tail, C below a raised log start) is not fatal:
//! the file is removed (so it can never look valid again once the log grows back past C) and the
//! state is rebuilt from the newest records as before snapshots existed.
//!
//! Layout (big-endian, CRC-32C over everything before it), written by the atomic replace
//! protocol (`.tmp`, fsync, rename, directory fsync):
//!
//! ```text
//! magic "BBPS" | version u16 = 1 | reserved u16 = 0 | C u64 | entries u32
//! entry: producer id i64 | epoch i16 | batches u8 (1..=5)
//!        batch: first sequence i32 | last sequence i32 | base offset u64 | last offset u64
//! crc u32
//! ```
//!
//! Entries go least recently active first, so loading keeps the eviction order. Locks: `mark`
//! (this partition's snapshot) is taken before the producer table's mutex, which is taken before
//! the log's `state` (to read the high watermark); the file is written under `mark` only.

use super::{Batch, Entry, PartitionProducers, BATCHES_KEPT};
use crate::error::{BrokerError, Result};
use busbar_log::disk::{self, Storage};
use busbar_log::{Appended, Log};
use std::io;

/// The snapshot's file name in the partition directory.
pub const SNAPSHOT_FILE: &str = "producers.snapshot";
const MAGIC: &[u8; 4] = b"BBPS";
const VERSION: u16 = 1;
const HEADER_BYTES: usize = 4 + 2 + 2 + 8 + 4;
const ENTRY_BYTES: usize = 8 + 2 + 1;
const BATCH_BYTES: usize = 4 + 4 + 8 + 8;

/// What is on disk for one partition, and whether writing is over (the partition is closed or
/// its topic deleted: its directory may be gone or, by then, another topic's).
#[derive(Debug, Default)]
pub(super) struct Mark {
    /// `(table clock, C)` of the usable snapshot on disk.
    on_disk: Option<(u64, u64)>,
    sealed: bool,
}

/// How a partition's producer state was restored at open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// Loaded from the snapshot (else rebuilt from the newest records).
    pub from_snapshot: bool,
    /// Offsets of the log whose batch headers were read.
    pub scanned: u64,
    /// Why a snapshot file that was there was not used (it has been removed).
    pub problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SnapEntry {
    producer_id: i64,
    epoch: i16,
    batches: Vec<Batch>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    upto: u64,
    entries: Vec<SnapEntry>,
}

fn encode(s: &Snapshot) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_BYTES + s.entries.len() * (ENTRY_BYTES + BATCH_BYTES));
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&VERSION.to_be_bytes());
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&s.upto.to_be_bytes());
    b.extend_from_slice(&(s.entries.len() as u32).to_be_bytes());
    for e in &s.entries {
        b.extend_from_slice(&e.producer_id.to_be_bytes());
        b.extend_from_slice(&e.epoch.to_be_bytes());
        b.push(e.batches.len() as u8);
        for x in &e.batches {
            b.extend_from_slice(&x.first_seq.to_be_bytes());
            b.extend_from_slice(&x.last_seq.to_be_bytes());
            b.extend_from_slice(&x.at.base_offset.to_be_bytes());
            b.extend_from_slice(&x.at.last_offset.to_be_bytes());
        }
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    b
}

/// Reads big-endian fields off a slice; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| "it is truncated".to_string())?;
        self.0 = rest;
        Ok(*head)
    }
}

fn decode(b: &[u8]) -> std::result::Result<Snapshot, String> {
    let (body, crc) = b
        .split_last_chunk::<4>()
        .filter(|(body, _)| body.len() >= HEADER_BYTES)
        .ok_or_else(|| format!("it is {} bytes, shorter than a header", b.len()))?;
    if &body[..4] != MAGIC {
        return Err("it does not start with the snapshot magic".into());
    }
    if crc32c::crc32c(body) != u32::from_be_bytes(*crc) {
        return Err("its checksum does not match (damaged or truncated)".into());
    }
    let mut r = Reader(&body[4..]);
    let version = u16::from_be_bytes(r.take()?);
    if version != VERSION {
        return Err(format!(
            "it is version {version}, this build reads {VERSION}"
        ));
    }
    r.take::<2>()?;
    let upto = u64::from_be_bytes(r.take()?);
    let count = u32::from_be_bytes(r.take()?) as usize;
    if count > r.0.len() / (ENTRY_BYTES + BATCH_BYTES) {
        return Err(format!(
            "it claims {count} producers, more than its size holds"
        ));
    }
    let mut entries = Vec::with_capacity(count);
    let mut seen = std::collections::HashSet::with_capacity(count);
    for _ in 0..count {
        let e = decode_entry(&mut r, upto)?;
        if !seen.insert(e.producer_id) {
            return Err(format!("producer {} appears twice", e.producer_id));
        }
        entries.push(e);
    }
    if !r.0.is_empty() {
        return Err(format!("{} bytes follow the last producer", r.0.len()));
    }
    Ok(Snapshot { upto, entries })
}

fn decode_entry(r: &mut Reader<'_>, upto: u64) -> std::result::Result<SnapEntry, String> {
    let producer_id = i64::from_be_bytes(r.take()?);
    let epoch = i16::from_be_bytes(r.take()?);
    let n = r.take::<1>()?[0] as usize;
    if producer_id < 0 || n == 0 || n > BATCHES_KEPT {
        return Err(format!("producer {producer_id} with {n} batches"));
    }
    let mut batches: Vec<Batch> = Vec::with_capacity(n);
    for _ in 0..n {
        let first_seq = i32::from_be_bytes(r.take()?);
        let last_seq = i32::from_be_bytes(r.take()?);
        let base_offset = u64::from_be_bytes(r.take()?);
        let last_offset = u64::from_be_bytes(r.take()?);
        let after_previous = batches
            .last()
            .is_none_or(|p| p.at.last_offset < base_offset);
        if base_offset > last_offset || last_offset >= upto || !after_previous {
            return Err(format!(
                "producer {producer_id} has a batch at offsets {base_offset}..={last_offset} \
                 (out of order, or not below {upto})"
            ));
        }
        batches.push(Batch {
            first_seq,
            last_seq,
            at: Appended {
                base_offset,
                last_offset,
            },
            ticket: None,
        });
    }
    Ok(SnapEntry {
        producer_id,
        epoch,
        batches,
    })
}

/// The snapshot in `dir`: `Ok(None)` when there is none, `Err(why)` when it cannot be used.
fn read(dir: &dyn Storage, limit: usize) -> std::result::Result<Option<Snapshot>, String> {
    let file = match dir.open(SNAPSHOT_FILE) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("it cannot be opened: {e}")),
    };
    let most = HEADER_BYTES + 4 + limit * (ENTRY_BYTES + BATCHES_KEPT * BATCH_BYTES);
    let len = file.len();
    if len > most as u64 {
        return Err(format!(
            "it is {len} bytes, more than {limit} producers (producers_max) take"
        ));
    }
    let mut buf = vec![0; len as usize];
    disk::read_exact_at(file.as_ref(), 0, &mut buf)
        .map_err(|e| format!("it cannot be read: {e}"))?;
    decode(&buf).map(Some)
}

impl PartitionProducers {
    /// Restores the state at open: from the snapshot and the log's tail after it, or, when there
    /// is no usable snapshot, from the newest records (a damaged snapshot is removed, never fatal).
    pub fn restore(&self, dir: &dyn Storage, log: &Log) -> Result<Restored> {
        let s = log.stats();
        let problem = match read(dir, self.limit) {
            Ok(None) => None,
            Ok(Some(snap)) if snap.upto < s.log_start => Some(format!(
                "it holds the state below offset {}, but the log now starts at {}",
                snap.upto, s.log_start
            )),
            Ok(Some(snap)) if snap.upto > s.high_watermark => Some(format!(
                "it holds the state below offset {}, but the log ends at {} (its tail was lost)",
                snap.upto, s.high_watermark
            )),
            Ok(Some(snap)) => {
                self.import(&snap);
                let scanned = self.replay(log, snap.upto)?;
                return Ok(Restored {
                    from_snapshot: true,
                    scanned,
                    problem: None,
                });
            }
            Err(why) => Some(why),
        };
        if problem.is_some() {
            let gone = match dir.remove(SNAPSHOT_FILE) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                r => r.and_then(|()| dir.sync_dir()),
            };
            gone.map_err(|e| {
                BrokerError::Storage(format!(
                    "remove unusable {}: {e}",
                    dir.describe(SNAPSHOT_FILE)
                ))
            })?;
        }
        Ok(Restored {
            from_snapshot: false,
            scanned: self.rebuild(log)?,
            problem,
        })
    }

    /// Writes a new snapshot when the state changed since the last one, the log start passed it,
    /// or the log grew `lag` records past it; answers whether it wrote. Nothing once sealed.
    pub fn save(&self, dir: &dyn Storage, log: &Log, lag: u64) -> Result<bool> {
        let mut mark = self.mark.lock().unwrap_or_else(|e| e.into_inner());
        if mark.sealed {
            return Ok(false);
        }
        // Decided before copying the table: most passes over most partitions write nothing.
        let (clock, known) = {
            let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            (entries.clock, !entries.map.is_empty())
        };
        let s = log.stats();
        let due = match mark.on_disk {
            None => known || s.high_watermark > s.log_start,
            Some((at, upto)) => {
                at != clock
                    || upto < s.log_start
                    || s.high_watermark.saturating_sub(upto) >= lag.max(1)
            }
        };
        if !due {
            return Ok(false);
        }
        let (snap, clock) = self.export(log);
        disk::write_atomic(dir, SNAPSHOT_FILE, &encode(&snap)).map_err(|e| {
            BrokerError::Storage(format!("write {}: {e}", dir.describe(SNAPSHOT_FILE)))
        })?;
        mark.on_disk = Some((clock, snap.upto));
        Ok(true)
    }

    /// Ends snapshot writing (the partition is closing or its topic is being deleted); waits for
    /// a write under way.
    pub fn seal(&self) {
        self.mark.lock().unwrap_or_else(|e| e.into_inner()).sealed = true;
    }

    /// The state as of the high watermark C (batches at or beyond it left out) and the table's
    /// clock. The table is locked first, so every batch below C is in it.
    fn export(&self, log: &Log) -> (Snapshot, u64) {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let upto = log.stats().high_watermark;
        let list = entries
            .by_use
            .values()
            .filter_map(|pid| Some((*pid, entries.map.get(pid)?)))
            .filter_map(|(producer_id, e)| {
                let batches: Vec<Batch> = e
                    .batches
                    .iter()
                    .filter(|b| b.at.last_offset < upto)
                    .map(|b| Batch { ticket: None, ..*b })
                    .collect();
                (!batches.is_empty()).then_some(SnapEntry {
                    producer_id,
                    epoch: e.epoch,
                    batches,
                })
            })
            .collect();
        let snap = Snapshot {
            upto,
            entries: list,
        };
        (snap, entries.clock)
    }

    /// Loads a snapshot into an empty table (the newest `limit` producers of it), and marks it
    /// as the one on disk.
    fn import(&self, snap: &Snapshot) {
        let mut mark = self.mark.lock().unwrap_or_else(|e| e.into_inner());
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let skip = snap.entries.len().saturating_sub(self.limit);
        for e in &snap.entries[skip..] {
            entries.clock += 1;
            let used = entries.clock;
            entries.by_use.insert(used, e.producer_id);
            entries.map.insert(
                e.producer_id,
                Entry {
                    epoch: e.epoch,
                    batches: e.batches.iter().copied().collect(),
                    used,
                    last_ms: i64::MIN,
                },
            );
        }
        mark.on_disk = Some((entries.clock, snap.upto));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        let batch = |seq: i32, at: u64| Batch {
            first_seq: seq,
            last_seq: seq + 1,
            at: Appended {
                base_offset: at,
                last_offset: at + 1,
            },
            ticket: None,
        };
        Snapshot {
            upto: 100,
            entries: vec![
                SnapEntry {
                    producer_id: 3,
                    epoch: 1,
                    batches: vec![batch(0, 10), batch(2, 20)],
                },
                SnapEntry {
                    producer_id: 9,
                    epoch: 0,
                    batches: vec![batch(i32::MAX - 1, 98)],
                },
            ],
        }
    }

    #[test]
    fn round_trips_and_refuses_every_damage() {
        let s = sample();
        let b = encode(&s);
        assert_eq!(decode(&b).unwrap(), s);
        for cut in 0..b.len() {
            assert!(decode(&b[..cut]).is_err(), "truncated to {cut}");
        }
        for at in 0..b.len() {
            let mut bad = b.clone();
            bad[at] ^= 0x10;
            assert!(decode(&bad).is_err(), "flipped byte {at}");
        }
        let mut bad = s.clone();
        bad.upto = 99; // a batch ends at 99, not below C
        assert!(decode(&encode(&bad)).unwrap_err().contains("not below 99"));
        let mut bad = s.clone();
        bad.entries[1].producer_id = 3;
        assert!(decode(&encode(&bad)).unwrap_err().contains("twice"));
        let mut future = encode(&s);
        future[5] = 2;
        let n = future.len() - 4;
        let crc = crc32c::crc32c(&future[..n]);
        future[n..].copy_from_slice(&crc.to_be_bytes());
        assert!(decode(&future).unwrap_err().contains("version 2"));
    }

    #[test]
    fn a_huge_count_is_refused_before_allocating() {
        let mut b = encode(&Snapshot {
            upto: 0,
            entries: vec![],
        });
        b[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
        let n = b.len() - 4;
        let crc = crc32c::crc32c(&b[..n]);
        b[n..].copy_from_slice(&crc.to_be_bytes());
        assert!(decode(&b).unwrap_err().contains("more than its size"));
    }

    #[test]
    fn a_pass_writes_only_when_something_changed() {
        use busbar_log::batch::{self, BatchHeader, NewRecord};
        let fs = busbar_log::disk::MemFs::new();
        let dir = fs.dir("p");
        let log = Log::open(std::sync::Arc::new(dir.clone()), Default::default()).unwrap();
        let p = PartitionProducers::new(10);
        assert!(!p.save(&dir, &log, 1).unwrap(), "empty: nothing to keep");
        let append = |pid: i64, seq: i32| {
            let plain = batch::build(&[NewRecord::default()]);
            let h = BatchHeader::parse(&plain).unwrap();
            let h = BatchHeader {
                producer_id: pid,
                base_sequence: seq,
                ..h
            };
            let mut b = batch::assemble(&h, &plain[batch::HEADER_BYTES..]);
            let at = log.append(&mut b).unwrap();
            p.record(&h, at.base_offset);
        };
        append(1, 0);
        assert!(p.save(&dir, &log, 1).unwrap());
        assert!(!p.save(&dir, &log, 1).unwrap(), "unchanged");
        append(1, 1);
        assert!(p.save(&dir, &log, 1).unwrap());
        let mut plain = batch::build(&[NewRecord::default()]);
        log.append(&mut plain).unwrap();
        assert!(!p.save(&dir, &log, 2).unwrap(), "one record past C, lag 2");
        assert!(p.save(&dir, &log, 1).unwrap(), "lag 1");
        p.seal();
        append(1, 2);
        assert!(!p.save(&dir, &log, 1).unwrap(), "sealed");
        let q = PartitionProducers::new(10);
        let r = q.restore(&dir, &log).unwrap();
        assert!(r.from_snapshot && r.problem.is_none());
        assert_eq!(r.scanned, 1, "the batch after the last snapshot");
        assert_eq!(
            q.check(&header_of(1, 2)).unwrap(),
            p.check(&header_of(1, 2)).unwrap()
        );
    }

    fn header_of(pid: i64, seq: i32) -> busbar_log::batch::BatchHeader {
        use busbar_log::batch::{self, BatchHeader, NewRecord};
        let h = BatchHeader::parse(&batch::build(&[NewRecord::default()])).unwrap();
        BatchHeader {
            producer_id: pid,
            base_sequence: seq,
            ..h
        }
    }

    #[test]
    fn loading_keeps_the_newest_producers_within_the_limit() {
        let p = PartitionProducers::new(1);
        p.import(&sample());
        assert_eq!(p.len(), 1);
        assert_eq!(
            p.max_producer_id(),
            Some(9),
            "the most recently active is kept"
        );
    }
}
