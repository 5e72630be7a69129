//! An internal compacted log of key/value records (like Kafka's `__consumer_offsets`): the broker's
//! durable tables (committed offsets, subscription retry state) are each one of these. A write is
//! one batch (several consecutive ones past the log's batch limit) appended through group commit,
//! so it is durable when acknowledged without costing one fsync per row; a `None` value is a tombstone. Replay yields every row in log order, and each row
//! carries its log offset so a table can apply "last in log order wins" even when a late write is
//! applied after a newer one.
//!
//! In cluster mode the small tables every broker must agree on (users, API tokens, ACLs,
//! quotas) live in the shared store instead ([`SharedKv`], PostgreSQL in `busbar-cluster`):
//! [`KvLog::share`] switches a log to a space there once the broker joins. Each broker then
//! keeps the space's rows in memory ([`SharedSpace`]), replays them as it would its log, writes
//! through the store (one transaction; the answer follows its commit), and reloads the space
//! when another broker changed it ([`KvLog::refresh_with`], driven by the store's notifications).
//! The local log is left as it was and no longer read.

use crate::error::{BrokerError, Result};
use busbar_log::batch::{self, BatchHeader, NewRecord, Records, HEADER_BYTES};
use busbar_log::disk::Storage;
use busbar_log::{CleanupPolicy, Clock, Log, LogConfig};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Room left for a segment's own header when sizing batches.
const SEGMENT_HEADER_ALLOWANCE: usize = 4096;

/// One row: key, value (`None` deletes).
pub type Row = (Vec<u8>, Option<Vec<u8>>);

/// Tables' stored rows (key, value) by shared space: what `busbar cluster import` copies.
pub type SpaceRows = Vec<(&'static str, Vec<(Vec<u8>, Vec<u8>)>)>;

/// A compacted internal log.
pub struct KvLog {
    log: Arc<Log>,
    clock: Arc<dyn Clock>,
    /// Cluster mode: the table is this space of the shared store (set once, at join).
    shared: OnceLock<SharedSpace>,
}

/// A space of the shared store as loaded: its version (it moves with every write) and rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvSnapshot {
    pub version: i64,
    /// Key, sequence number (newer rows have larger ones), value.
    pub rows: Vec<(Vec<u8>, u64, Vec<u8>)>,
}

/// The key/value spaces the brokers of a cluster share (implemented by `busbar-cluster`).
pub trait SharedKv: Send + Sync + 'static {
    /// Every row of `space` (bounded by the table's own limit, `auth.users_max` and the like),
    /// read at one point in time; `None` when its version is still `unless` (nothing to load).
    fn load(
        &self,
        space: &str,
        unless: Option<i64>,
    ) -> crate::shared::BoxFuture<'_, Result<Option<KvSnapshot>>>;
    /// Writes `rows` of `space` (`None` deletes) in one transaction and tells the other
    /// brokers, only if the space is still at version `expect` (the copy the caller decided
    /// on): else nothing is written and the answer is an error saying so. The rows' sequence
    /// numbers, in order, and the space's new version.
    fn write(
        &self,
        space: &str,
        rows: Vec<Row>,
        expect: i64,
    ) -> crate::shared::BoxFuture<'_, Result<(Vec<u64>, i64)>>;
}

/// A table kept in a shared space by another crate (the schema registry): the broker's watcher
/// asks it to load the space again when another broker changed it
/// ([`crate::Broker::add_shared_table`]).
pub trait SharedTable: Send + Sync + 'static {
    /// Loads the space again if it changed.
    fn refresh(&self) -> crate::shared::BoxFuture<'_, Result<()>>;
}

/// A shared space as this broker last loaded or wrote it.
pub struct SharedSpace {
    kv: Arc<dyn SharedKv>,
    space: String,
    rows: Mutex<Loaded>,
}

/// A space's version and rows (key -> sequence number, value), as this broker has them.
type Loaded = (i64, BTreeMap<Vec<u8>, (u64, Vec<u8>)>);

impl SharedSpace {
    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, snap: KvSnapshot) {
        let rows = snap.rows.into_iter().map(|(k, seq, v)| (k, (seq, v)));
        *self.lock() = (snap.version, rows.collect());
    }

    async fn write(&self, rows: Vec<Row>, apply: impl FnOnce(Vec<u64>)) -> Result<()> {
        // Decided on this copy: written only if no other broker wrote since it was loaded (a
        // delete there must not be undone by a row rebuilt from a stale copy here).
        let expect = self.lock().0;
        match self.kv.write(&self.space, rows.clone(), expect).await {
            Ok((seqs, version)) => {
                let mut at = self.lock();
                at.0 = version;
                for ((key, value), seq) in rows.into_iter().zip(&seqs) {
                    match value {
                        Some(v) => at.1.insert(key, (*seq, v)),
                        None => at.1.remove(&key),
                    };
                }
                drop(at);
                apply(seqs);
                Ok(())
            }
            Err(e) => {
                apply(Vec::new());
                Err(e)
            }
        }
    }
}

impl KvLog {
    /// Opens the log in `storage`.
    pub fn open(storage: Arc<dyn Storage>, clock: Arc<dyn Clock>) -> Result<Self> {
        let config = LogConfig {
            cleanup: CleanupPolicy::Compact,
            segment_bytes: 16 << 20,
            retention_ms: None,
            clock: clock.clone(),
            ..LogConfig::default()
        };
        let log = Arc::new(Log::open(storage, config)?);
        Ok(Self {
            log,
            clock,
            shared: OnceLock::new(),
        })
    }

    /// Cluster mode: from now on the table is `space` of `kv` (loaded now). The caller replays
    /// it into its table ([`KvLog::replay`]). Once per log.
    pub async fn share(&self, kv: Arc<dyn SharedKv>, space: &str) -> Result<()> {
        let snap = kv.load(space, None).await?.unwrap_or_default();
        let shared = SharedSpace {
            kv,
            space: space.to_string(),
            rows: Mutex::new((0, BTreeMap::new())),
        };
        shared.set(snap);
        self.shared
            .set(shared)
            .map_err(|_| BrokerError::Storage(format!("{space} is shared already")))
    }

    /// Cluster mode: loads the space again if it changed since this broker last loaded or
    /// wrote it, and has `rebuild` replay it into the caller's table. If `rebuild` fails (a row
    /// it refuses), the version stays the old one: the table is what the old version said, so
    /// the next refresh loads again and a write decided on the old table is refused by the
    /// store. Single node: nothing to do.
    pub async fn refresh_with<E: From<BrokerError>>(
        &self,
        rebuild: impl FnOnce(&KvLog) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let Some(shared) = self.shared.get() else {
            return Ok(());
        };
        let have = shared.lock().0;
        let Some(snap) = shared.kv.load(&shared.space, Some(have)).await? else {
            return Ok(());
        };
        if snap.version == have {
            return Ok(());
        }
        shared.set(snap);
        let rebuilt = rebuild(self);
        if rebuilt.is_err() {
            shared.lock().0 = have;
        }
        rebuilt
    }

    /// The shared space's name, in cluster mode.
    pub fn space(&self) -> Option<&str> {
        self.shared.get().map(|s| s.space.as_str())
    }

    /// Calls `f(log offset, key, value)` for every stored row, in log order. A damaged range is
    /// skipped (to the next segment) and described in the answer, so one bad batch costs the rows
    /// written there, not the whole table: a key whose newest row was in it falls back to its
    /// previous row (for committed offsets: an older position, so events are delivered again,
    /// never skipped).
    pub fn replay(&self, mut f: impl FnMut(u64, &[u8], Option<&[u8]>)) -> Result<Vec<String>> {
        if let Some(shared) = self.shared.get() {
            for (key, (seq, value)) in &shared.lock().1 {
                f(*seq, key, Some(value));
            }
            return Ok(Vec::new());
        }
        let mut offset = self.log.stats().log_start;
        let mut damage = Vec::new();
        loop {
            let r = match self.log.read(offset, 1 << 20) {
                Ok(r) => r,
                Err(e @ busbar_log::LogError::Corrupt { .. }) => {
                    let next = self.log.next_segment_base(offset);
                    damage.push(format!(
                        "{e}; rows from offset {offset} to {} skipped",
                        next.map_or("the end".to_string(), |n| (n - 1).to_string())
                    ));
                    match next {
                        Some(n) => {
                            offset = n;
                            continue;
                        }
                        None => return Ok(damage),
                    }
                }
                Err(e) => return Err(e.into()),
            };
            if r.data.is_empty() {
                return Ok(damage);
            }
            let mut pos = 0;
            while pos < r.data.len() {
                let h = BatchHeader::parse(&r.data[pos..])
                    .map_err(|e| BrokerError::Storage(e.to_string()))?;
                let len = h.total_len().unwrap_or(r.data.len() - pos);
                for rec in Records::new(&r.data[pos + HEADER_BYTES..pos + len]).flatten() {
                    if let Some(key) = rec.key {
                        f(
                            h.base_offset as u64 + rec.offset_delta as u64,
                            key,
                            rec.value,
                        );
                    }
                }
                offset = h.last_offset() as u64 + 1;
                pos += len;
            }
        }
    }

    /// Appends `rows` durably, as one batch when they fit in the log's batch limit and as several
    /// consecutive batches otherwise (each durable before the next is written), then calls
    /// `apply(offsets)` on a blocking thread with the log offset of every row written: all of them,
    /// or, when a batch failed, those of the batches before it (and the error is returned). A
    /// caller that stops waiting cannot leave the log and its table disagreeing.
    pub async fn write(
        &self,
        rows: Vec<Row>,
        apply: impl FnOnce(Vec<u64>) + Send + 'static,
    ) -> Result<()> {
        self.write_batches(rows, false, apply).await
    }

    /// [`write`](Self::write) all-or-nothing: `rows` that do not fit one batch of the log are
    /// refused ([`BrokerError::InvalidRequest`], nothing written). A failed sync still leaves
    /// the outcome unknown (the batch may be on disk after a restart), as for every write.
    pub async fn write_whole(
        &self,
        rows: Vec<Row>,
        apply: impl FnOnce(Vec<u64>) + Send + 'static,
    ) -> Result<()> {
        self.write_batches(rows, true, apply).await
    }

    async fn write_batches(
        &self,
        rows: Vec<Row>,
        whole: bool,
        apply: impl FnOnce(Vec<u64>) + Send + 'static,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        if let Some(shared) = self.shared.get() {
            // One transaction: all or nothing, however many rows.
            return shared.write(rows, apply).await;
        }
        let now = self.clock.now_ms();
        let recs: Vec<NewRecord> = rows
            .into_iter()
            .map(|(key, value)| NewRecord {
                key: Some(key),
                value,
                headers: vec![],
                timestamp: now,
            })
            .collect();
        let cfg = self.log.config();
        let limit = cfg
            .batch_bytes_max
            .min((cfg.segment_bytes as usize).saturating_sub(SEGMENT_HEADER_ALLOWANCE));
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || {
            let mut offsets = Vec::with_capacity(recs.len());
            let mut result = Ok(());
            let batches = chunks(&recs, limit)?;
            if whole && batches.len() > 1 {
                return Err(BrokerError::InvalidRequest(format!(
                    "{} rows take more than one batch of at most {limit} bytes",
                    recs.len()
                )));
            }
            for mut b in batches {
                match log.append(&mut b) {
                    Ok(at) => offsets.extend(at.base_offset..=at.last_offset),
                    Err(e) => {
                        result = Err(e.into());
                        break;
                    }
                }
            }
            apply(offsets);
            result
        })
        .await
        .map_err(|e| BrokerError::Storage(format!("internal log write failed: {e}")))?
    }

    /// The table's rows as replay leaves them (the newest per key, tombstones dropped), in key
    /// order: what `busbar cluster import` copies into the cluster. A damaged log is refused
    /// (rows after the damage, a DENY or a deletion among them, would be lost without a word).
    pub fn rows(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut rows = BTreeMap::new();
        let damage = self.replay(|_, key, value| match value {
            Some(v) => {
                rows.insert(key.to_vec(), v.to_vec());
            }
            None => {
                rows.remove(key);
            }
        })?;
        if !damage.is_empty() {
            return Err(BrokerError::Damaged(damage.join("; ")));
        }
        Ok(rows.into_iter().collect())
    }

    /// Whether any row was ever written (offsets are never reused, so compaction keeps this).
    pub fn ever_written(&self) -> bool {
        match self.shared.get() {
            Some(shared) => shared.lock().0 > 0,
            None => self.log.stats().next_offset > 0,
        }
    }

    /// Compacts the log (latest row per key).
    pub fn compact(&self) -> Result<()> {
        if self.shared.get().is_some() {
            return Ok(());
        }
        self.log.compact()?;
        Ok(())
    }

    /// Clean shutdown.
    pub fn close(&self) -> Result<()> {
        Ok(self.log.close()?)
    }
}

/// `recs` as consecutive batches of at most `limit` bytes each. A single row larger than that is
/// an error (nothing written).
fn chunks(recs: &[NewRecord], limit: usize) -> Result<Vec<Vec<u8>>> {
    let b = batch::build(recs);
    if b.len() <= limit {
        return Ok(vec![b]);
    }
    if recs.len() == 1 {
        return Err(BrokerError::InvalidRequest(format!(
            "an internal record of {} bytes exceeds the batch limit of {limit} bytes",
            b.len()
        )));
    }
    let (left, right) = recs.split_at(recs.len() / 2);
    let mut out = chunks(left, limit)?;
    out.extend(chunks(right, limit)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use busbar_log::disk::MemFs;

    /// The shared store's rules in memory (the PostgreSQL one is tested in `busbar-cluster`
    /// `kv.rs`): a version per space, writes refused unless at the expected version.
    #[derive(Default)]
    struct MemKv(Mutex<(i64, Rows)>);

    type Rows = BTreeMap<Vec<u8>, Vec<u8>>;

    impl SharedKv for MemKv {
        fn load(
            &self,
            _space: &str,
            unless: Option<i64>,
        ) -> crate::shared::BoxFuture<'_, Result<Option<KvSnapshot>>> {
            let s = self.0.lock().unwrap();
            let snap = (unless != Some(s.0)).then(|| KvSnapshot {
                version: s.0,
                rows: (s.1.iter())
                    .map(|(k, v)| (k.clone(), 1, v.clone()))
                    .collect(),
            });
            Box::pin(async move { Ok(snap) })
        }

        fn write(
            &self,
            _space: &str,
            rows: Vec<Row>,
            expect: i64,
        ) -> crate::shared::BoxFuture<'_, Result<(Vec<u64>, i64)>> {
            let mut s = self.0.lock().unwrap();
            let out = if s.0 != expect {
                Err(BrokerError::Storage("changed on another broker".into()))
            } else {
                s.0 += 1;
                for (k, v) in &rows {
                    match v {
                        Some(v) => s.1.insert(k.clone(), v.clone()),
                        None => s.1.remove(k),
                    };
                }
                Ok((vec![1; rows.len()], s.0))
            };
            Box::pin(async move { out })
        }
    }

    fn log() -> KvLog {
        let clock: Arc<dyn Clock> = Arc::new(busbar_log::SystemClock);
        KvLog::open(Arc::new(MemFs::new().dir("kv")), clock).unwrap()
    }

    /// A reload whose rebuild fails keeps the old version: the table still says the old
    /// version, so a write decided on it is refused, and the next refresh loads again.
    #[tokio::test]
    async fn a_failed_rebuild_keeps_the_old_version() {
        let kv = Arc::new(MemKv::default());
        let (a, b) = (log(), log());
        a.share(kv.clone(), "s").await.unwrap();
        b.share(kv.clone(), "s").await.unwrap();
        a.write(vec![(b"k".to_vec(), Some(b"1".to_vec()))], |_| {})
            .await
            .unwrap();
        let failed = b
            .refresh_with(|_| Err::<(), _>(BrokerError::Damaged("a row".into())))
            .await;
        assert!(failed.is_err());
        let stale = b.write(vec![(b"k".to_vec(), None)], |_| {}).await;
        assert!(
            stale.is_err(),
            "a write decided on the old table is refused"
        );
        let mut rebuilt = false;
        b.refresh_with(|log| {
            rebuilt = log.rows().unwrap() == vec![(b"k".to_vec(), b"1".to_vec())];
            Ok::<(), BrokerError>(())
        })
        .await
        .unwrap();
        assert!(rebuilt, "the next refresh loads again");
        b.write(vec![(b"k".to_vec(), None)], |_| {}).await.unwrap();
    }
}
