//! An in-memory file system that can "crash".
//!
//! Every file keeps its current bytes and its durable bytes (as of its last sync); every directory
//! keeps its current entries and its durable entries (as of its last `sync_dir`). [`MemFs::crash`]
//! throws away everything not durable, like a power cut: unsynced appends vanish (or survive only up to
//! a sector boundary when tearing is asked for), files whose directory entry was never synced vanish,
//! removals and renames not followed by a directory sync are undone; a nested directory (`a/b`)
//! created and never made durable by a sync of its parent (`a`) vanishes with all it holds.
//! Every file handle opened before a crash dies with the process that held it: its appends,
//! syncs and truncations fail, so a task of the old process still running (a test keeps its
//! runtime) cannot write into the files a reopened log is recovering. Several directories share one
//! `MemFs`, so one crash hits all of them at once. With [`MemFs::set_clock`], files record when their
//! data last changed (their mtime) on that clock; without it the time is unknown.

use super::{File, Storage};
use crate::config::Clock;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// Size of the unit a torn write is cut at.
pub const SECTOR_BYTES: u64 = 512;

#[derive(Default)]
struct FileData {
    modified_ms: Option<i64>,
    data: Vec<u8>,
    durable: Vec<u8>,
    /// False once a truncation made `durable` stop being a prefix of `data`.
    durable_is_prefix: bool,
    /// Set by a crash: this handle belonged to the process the power cut killed.
    dead: bool,
}

#[derive(Default)]
struct Dir {
    current: BTreeMap<String, Arc<MemFile>>,
    durable: BTreeMap<String, Arc<MemFile>>,
    /// Whether this directory's own entry in its parent is durable: a nested directory
    /// (`a/b`) becomes durable when its parent (`a`) is synced; top-level ones always are.
    entry_durable: bool,
}

/// The parent of a nested directory name (`a/b` → `a`); `None` at the top level.
fn parent_of(name: &str) -> Option<&str> {
    name.rsplit_once('/').map(|(p, _)| p)
}

/// An in-memory file system shared by any number of [`MemStorage`] directories.
#[derive(Clone, Default)]
pub struct MemFs {
    dirs: Arc<Mutex<HashMap<String, Dir>>>,
    clock: Arc<Mutex<Option<Arc<dyn Clock>>>>,
}

/// One directory of a [`MemFs`].
#[derive(Clone)]
pub struct MemStorage {
    fs: MemFs,
    dir: String,
}

/// A file of a [`MemFs`].
pub struct MemFile {
    state: Mutex<FileData>,
    clock: Option<Arc<dyn Clock>>,
}

impl MemFile {
    fn new(clock: Option<Arc<dyn Clock>>) -> Arc<Self> {
        let modified_ms = clock.as_ref().map(|c| c.now_ms());
        Arc::new(Self {
            state: Mutex::new(FileData {
                durable_is_prefix: true,
                modified_ms,
                ..FileData::default()
            }),
            clock,
        })
    }

    fn touch(&self, st: &mut FileData) {
        if let Some(c) = &self.clock {
            st.modified_ms = Some(c.now_ms());
        }
    }

    fn lock(&self) -> MutexGuard<'_, FileData> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What survives a crash, as a new file: `keep_unsynced(start, n)` says how many of the `n`
    /// unsynced bytes past the durable prefix survive. This handle dies (see [`MemFile::alive`]):
    /// the process that held it is gone, so nothing it still runs can change the new file.
    fn crash(&self, keep_unsynced: &mut dyn FnMut(u64, u64) -> u64) -> Arc<MemFile> {
        let mut st = self.lock();
        let mut survived = st.durable.clone();
        if st.durable_is_prefix && st.data.len() > st.durable.len() {
            let start = st.durable.len() as u64;
            let extra = st.data.len() as u64 - start;
            let keep = keep_unsynced(start, extra).min(extra) as usize;
            survived.extend_from_slice(&st.data[start as usize..start as usize + keep]);
        }
        st.dead = true;
        Arc::new(Self {
            state: Mutex::new(FileData {
                modified_ms: st.modified_ms,
                data: survived.clone(),
                durable: survived,
                durable_is_prefix: true,
                dead: false,
            }),
            clock: self.clock.clone(),
        })
    }

    /// Refuses a change through a handle opened before a crash.
    fn alive(st: &FileData) -> io::Result<()> {
        if st.dead {
            return Err(io::Error::other(
                "file handle opened before a power cut: its process is gone",
            ));
        }
        Ok(())
    }
}

impl File for MemFile {
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        let st = self.lock();
        if pos >= st.data.len() as u64 {
            return Ok(0);
        }
        let n = buf.len().min(st.data.len() - pos as usize);
        buf[..n].copy_from_slice(&st.data[pos as usize..pos as usize + n]);
        Ok(n)
    }

    fn append(&self, data: &[u8]) -> io::Result<()> {
        let mut st = self.lock();
        Self::alive(&st)?;
        st.data.extend_from_slice(data);
        self.touch(&mut st);
        Ok(())
    }

    fn len(&self) -> u64 {
        self.lock().data.len() as u64
    }

    fn sync(&self) -> io::Result<()> {
        let mut st = self.lock();
        Self::alive(&st)?;
        if st.durable_is_prefix {
            let from = st.durable.len();
            let tail = st.data[from..].to_vec();
            st.durable.extend_from_slice(&tail);
        } else {
            st.durable = st.data.clone();
            st.durable_is_prefix = true;
        }
        Ok(())
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        let mut st = self.lock();
        Self::alive(&st)?;
        st.data.resize(len as usize, 0);
        if st.durable.len() > st.data.len() {
            st.durable_is_prefix = false;
        }
        self.touch(&mut st);
        Ok(())
    }

    fn modified_ms(&self) -> io::Result<Option<i64>> {
        Ok(self.lock().modified_ms)
    }
}

impl MemFs {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    /// The directory `name` (created empty on first use).
    pub fn dir(&self, name: &str) -> MemStorage {
        self.lock().entry(name.to_string()).or_insert_with(|| Dir {
            entry_durable: parent_of(name).is_none(),
            ..Dir::default()
        });
        MemStorage {
            fs: self.clone(),
            dir: name.to_string(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Dir>> {
        self.dirs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Files created or written from now on record their modification time on `clock`.
    pub fn set_clock(&self, clock: Arc<dyn Clock>) {
        *self.clock.lock().unwrap_or_else(|e| e.into_inner()) = Some(clock);
    }

    fn clock(&self) -> Option<Arc<dyn Clock>> {
        self.clock.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A power cut: every directory falls back to its durable entries and every file to its durable
    /// bytes. `tear(seed)`: when `Some`, each file also keeps a pseudo-random part of its unsynced
    /// tail, cut at a [`SECTOR_BYTES`] boundary (a torn write); when `None` all of it is lost.
    pub fn crash(&self, tear: Option<u64>) {
        let mut rng = tear.unwrap_or(0) | 1;
        let mut keep = |start: u64, extra: u64| -> u64 {
            if tear.is_none() {
                return 0;
            }
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let end = start + rng % (extra + 1);
            let cut = if rng.is_multiple_of(4) {
                start + extra
            } else {
                end - end % SECTOR_BYTES
            };
            cut.saturating_sub(start)
        };
        let mut dirs = self.lock();
        // A directory whose entry (or an ancestor's) was never synced into its parent vanishes
        // with everything in it.
        let lost: Vec<String> = dirs
            .keys()
            .filter(|name| {
                let mut at = Some(name.as_str());
                while let Some(d) = at {
                    if dirs.get(d).is_some_and(|dir| !dir.entry_durable) {
                        return true;
                    }
                    at = parent_of(d);
                }
                false
            })
            .cloned()
            .collect();
        for name in lost {
            dirs.remove(&name);
        }
        for dir in dirs.values_mut() {
            // Every handle opened before the cut dies; what survives is in new files (a file
            // listed under two durable names keeps being one file).
            let mut survivors: HashMap<*const MemFile, Arc<MemFile>> = HashMap::new();
            let durable = std::mem::take(&mut dir.durable);
            for (name, file) in durable {
                let new = survivors
                    .entry(Arc::as_ptr(&file))
                    .or_insert_with(|| file.crash(&mut keep))
                    .clone();
                dir.durable.insert(name, new);
            }
            for file in dir.current.values() {
                file.lock().dead = true;
            }
            dir.current = dir.durable.clone();
        }
    }

    /// Names of every directory that exists now.
    pub fn dir_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().keys().cloned().collect();
        v.sort();
        v
    }

    /// Removes `name` and every directory under `name/` at once and durably (like `rm -r` of a
    /// tree followed by a sync of its parent).
    pub fn remove_tree(&self, name: &str) {
        let prefix = format!("{name}/");
        self.lock()
            .retain(|d, _| d != name && !d.starts_with(&prefix));
    }

    /// Total bytes currently stored (for tests that watch growth).
    pub fn total_bytes(&self) -> u64 {
        let dirs = self.lock();
        dirs.values()
            .flat_map(|d| d.current.values())
            .map(|f| f.len())
            .sum()
    }
}

impl MemStorage {
    /// A directory in a file system of its own.
    pub fn new() -> Self {
        MemFs::new().dir("log")
    }

    /// The file system this directory belongs to.
    pub fn fs(&self) -> &MemFs {
        &self.fs
    }

    fn with_dir<T>(&self, f: impl FnOnce(&mut Dir) -> T) -> T {
        let mut dirs = self.fs.lock();
        f(dirs.entry(self.dir.clone()).or_default())
    }

    /// Overwrites bytes of a file in place, bypassing the log (for corruption tests). The change is
    /// made durable at once.
    pub fn corrupt(&self, name: &str, pos: u64, bytes: &[u8]) -> io::Result<()> {
        let file = self.with_dir(|d| d.current.get(name).cloned());
        let file = file.ok_or_else(|| not_found(name))?;
        let mut st = file.lock();
        let end = pos as usize + bytes.len();
        if end > st.data.len() {
            st.data.resize(end, 0);
        }
        st.data[pos as usize..end].copy_from_slice(bytes);
        st.durable = st.data.clone();
        st.durable_is_prefix = true;
        Ok(())
    }
}

impl Default for MemStorage {
    fn default() -> Self {
        Self::new()
    }
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{name}: no such file"))
}

impl Storage for MemStorage {
    fn open(&self, name: &str) -> io::Result<Arc<dyn File>> {
        let file = self.with_dir(|d| d.current.get(name).cloned());
        match file {
            Some(f) => Ok(f),
            None => Err(not_found(name)),
        }
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn File>> {
        let file = MemFile::new(self.fs.clock());
        self.with_dir(|d| d.current.insert(name.to_string(), file.clone()));
        Ok(file)
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.with_dir(|d| d.current.keys().cloned().collect()))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        match self.with_dir(|d| d.current.remove(name)) {
            Some(_) => Ok(()),
            None => Err(not_found(name)),
        }
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.with_dir(|d| match d.current.remove(from) {
            Some(f) => {
                d.current.insert(to.to_string(), f);
                Ok(())
            }
            None => Err(not_found(from)),
        })
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut dirs = self.fs.lock();
        let d = dirs.entry(self.dir.clone()).or_default();
        d.durable = d.current.clone();
        for (name, d) in dirs.iter_mut() {
            if parent_of(name) == Some(self.dir.as_str()) {
                d.entry_durable = true;
            }
        }
        Ok(())
    }

    fn describe(&self, name: &str) -> String {
        format!("mem:{}/{name}", self.dir)
    }
}
