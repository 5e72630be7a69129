//! The bounded caches of sealed segments: their open files and their loaded indexes.
//!
//! A [`SegmentCache`] is shared by every log given it (through [`crate::LogConfig`]), so one
//! process-wide bound holds however many partitions there are: at most `open_files_max` sealed
//! segment files stay open and at most `indexes_max` sealed segments keep their indexes in memory,
//! the least recently used going first. An evicted file is reopened by name on the next read; an
//! evicted index is loaded again from its files. Active segments are not counted: each log keeps
//! its active segment's file open and its index in memory for as long as it is active.
//!
//! The cache only holds handles. Evicting one never waits for a reader: a reader holds its own
//! `Arc` of the file and keeps reading it. Locks here are leaves (nothing is taken while they are
//! held) and evicted handles are dropped (closed) after the lock is released.

use crate::disk::File;
use crate::index::Indexes;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Default bound on sealed segment files kept open by the process-wide cache.
pub const OPEN_FILES_MAX_DEFAULT: usize = 1024;
/// Default bound on sealed segments whose indexes the process-wide cache keeps loaded.
pub const INDEXES_MAX_DEFAULT: usize = 1024;

/// A least-recently-used map from segment id to a handle.
struct Lru<T> {
    tick: u64,
    entries: HashMap<u64, (u64, T)>,
    order: BTreeMap<u64, u64>,
}

impl<T: Clone> Lru<T> {
    fn new() -> Self {
        Self {
            tick: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn get(&mut self, id: u64) -> Option<T> {
        let (used, value) = self.entries.get_mut(&id)?;
        self.order.remove(used);
        self.tick += 1;
        *used = self.tick;
        self.order.insert(self.tick, id);
        Some(value.clone())
    }

    /// Inserts (or refreshes) `id`; answers what was evicted to stay within `max`.
    fn insert(&mut self, id: u64, value: T, max: usize) -> Vec<T> {
        let mut gone: Vec<T> = self.remove(id).into_iter().collect();
        if max == 0 {
            gone.push(value);
            return gone;
        }
        while self.entries.len() >= max {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, v)) = self.entries.remove(&oldest) {
                gone.push(v);
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, id);
        self.entries.insert(id, (self.tick, value));
        gone
    }

    fn remove(&mut self, id: u64) -> Option<T> {
        let (used, value) = self.entries.remove(&id)?;
        self.order.remove(&used);
        Some(value)
    }
}

/// Bounded caches of sealed segments' open files and loaded indexes, shared by any number of logs.
pub struct SegmentCache {
    open_files_max: usize,
    indexes_max: usize,
    next_id: AtomicU64,
    files: Mutex<Lru<Arc<dyn File>>>,
    indexes: Mutex<Lru<Arc<Indexes>>>,
    index_loads: AtomicU64,
    file_opens: AtomicU64,
}

impl std::fmt::Debug for SegmentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentCache")
            .field("open_files_max", &self.open_files_max)
            .field("indexes_max", &self.indexes_max)
            .field("open_files", &self.open_files())
            .field("loaded_indexes", &self.loaded_indexes())
            .finish()
    }
}

impl SegmentCache {
    /// A cache keeping at most `open_files_max` sealed segment files open and at most
    /// `indexes_max` sealed segments' indexes loaded (0 keeps none: every use opens or loads).
    pub fn new(open_files_max: usize, indexes_max: usize) -> Arc<Self> {
        Arc::new(Self {
            open_files_max,
            indexes_max,
            next_id: AtomicU64::new(0),
            files: Mutex::new(Lru::new()),
            indexes: Mutex::new(Lru::new()),
            index_loads: AtomicU64::new(0),
            file_opens: AtomicU64::new(0),
        })
    }

    /// The process-wide cache every [`crate::LogConfig::default`] uses, with
    /// [`OPEN_FILES_MAX_DEFAULT`] and [`INDEXES_MAX_DEFAULT`].
    pub fn shared() -> Arc<Self> {
        static SHARED: OnceLock<Arc<SegmentCache>> = OnceLock::new();
        SHARED
            .get_or_init(|| Self::new(OPEN_FILES_MAX_DEFAULT, INDEXES_MAX_DEFAULT))
            .clone()
    }

    /// The bound on open sealed segment files.
    pub fn open_files_max(&self) -> usize {
        self.open_files_max
    }

    /// The bound on sealed segments with loaded indexes.
    pub fn indexes_max(&self) -> usize {
        self.indexes_max
    }

    /// Sealed segment files the cache holds open now.
    pub fn open_files(&self) -> usize {
        lock(&self.files).entries.len()
    }

    /// Sealed segments whose indexes the cache holds now.
    pub fn loaded_indexes(&self) -> usize {
        lock(&self.indexes).entries.len()
    }

    /// Sealed segments' indexes loaded from their files or rebuilt by a scan, since creation.
    pub fn index_loads(&self) -> u64 {
        self.index_loads.load(Ordering::Relaxed)
    }

    /// Sealed segment files opened again after an eviction, since creation.
    pub fn file_reopens(&self) -> u64 {
        self.file_opens.load(Ordering::Relaxed)
    }

    pub(crate) fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn file(&self, id: u64) -> Option<Arc<dyn File>> {
        lock(&self.files).get(id)
    }

    pub(crate) fn put_file(&self, id: u64, file: Arc<dyn File>) {
        let gone = lock(&self.files).insert(id, file, self.open_files_max);
        drop(gone);
    }

    pub(crate) fn count_reopen(&self) {
        self.file_opens.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn indexes(&self, id: u64) -> Option<Arc<Indexes>> {
        lock(&self.indexes).get(id)
    }

    pub(crate) fn put_indexes(&self, id: u64, idx: Arc<Indexes>, loaded: bool) {
        if loaded {
            self.index_loads.fetch_add(1, Ordering::Relaxed);
        }
        let gone = lock(&self.indexes).insert(id, idx, self.indexes_max);
        drop(gone);
    }

    /// Drops everything held for segment `id` (it was dropped or replaced).
    pub(crate) fn forget(&self, id: u64) {
        let file = lock(&self.files).remove(id);
        let idx = lock(&self.indexes).remove(id);
        drop((file, idx));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_goes_first_and_the_bound_holds() {
        let mut lru = Lru::new();
        assert!(lru.insert(1, "a", 2).is_empty());
        assert!(lru.insert(2, "b", 2).is_empty());
        assert_eq!(lru.get(1), Some("a"));
        assert_eq!(lru.insert(3, "c", 2), vec!["b"]);
        assert_eq!(lru.get(2), None);
        assert_eq!(lru.insert(1, "a2", 2), vec!["a"]);
        assert_eq!(lru.entries.len(), 2);
        assert_eq!(lru.insert(4, "d", 0), vec!["d"]);
        assert_eq!(lru.remove(3), Some("c"));
        assert_eq!(lru.entries.len(), 1);
    }
}
