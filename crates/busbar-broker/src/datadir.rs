//! The broker's data directory behind a narrow trait, so every byte the broker keeps (partition
//! logs, metadata, committed offsets, producer ids, subscriptions and their retry state) goes through
//! `busbar-log`'s disk trait: on real files in production ([`FsDataDir`]), and on the crashable
//! in-memory file system in power-loss tests ([`MemDataDir`]), with faults injected into chosen
//! directories in fault tests ([`FaultDataDir`]). Paths are relative and use `/`:
//! `topics/<topic>/<partition>`, `meta`, `internal/offsets`, `internal/retries`,
//! `internal/positions`.
//!
//! On real files, a directory created here is made durable before it is used: each new component's
//! parent directory is fsynced after the `mkdir`, so a power cut cannot drop a partition directory
//! whose files were synced. Removing a directory fsyncs its parent too. The data directory is
//! locked for one process at a time ([`DataDir::lock`]: `flock` on `<data>/lock`, holding the
//! holder's pid for the error message).

use busbar_log::disk::{FaultPlan, FaultStorage, FileStorage, MemFs, Storage};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Directories of the broker's data.
pub trait DataDir: Send + Sync {
    /// The directory `rel` (created, with its parents, when missing).
    fn storage(&self, rel: &str) -> io::Result<Arc<dyn Storage>>;
    /// Names of the directories directly under `rel` (none when it does not exist).
    fn subdirs(&self, rel: &str) -> io::Result<Vec<String>>;
    /// Removes `rel` and everything under it.
    fn remove_dir(&self, rel: &str) -> io::Result<()>;
    /// `rel` as a person reads it (for errors).
    fn describe(&self, rel: &str) -> String;
    /// Takes the data directory for this process until the answer is dropped; fails when another
    /// process holds it. `None`: this kind of directory cannot be shared (in memory).
    fn lock(&self) -> Result<Option<DirLock>, LockError> {
        Ok(None)
    }
}

/// The data directory's lock, held for the broker's life (released by the kernel when the process
/// ends, however it ends).
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

/// Why the data directory could not be locked.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it; its pid as it wrote it, when readable.
    Held {
        path: PathBuf,
        pid: Option<u32>,
    },
    Io {
        path: PathBuf,
        source: io::Error,
    },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held { path, pid } => {
                let holder = pid.map_or("another process".to_string(), |p| format!("process {p}"));
                write!(
                    f,
                    "data directory {} is in use by {holder} (lock file {}): stop it, or give this \
                     server another --data-dir",
                    path.parent().unwrap_or(path).display(),
                    path.display()
                )
            }
            LockError::Io { path, source } => write!(f, "lock {}: {source}", path.display()),
        }
    }
}

/// Creates `dir` and its missing parents below `root`, fsyncing each new directory's parent so
/// the new entry survives a power cut.
fn create_durable(root: &Path, rel: &str) -> io::Result<PathBuf> {
    if !root.exists() {
        // Each missing ancestor is created and its parent fsynced in turn ("" is the current
        // directory: `busbar-data` by default).
        let missing: Vec<&Path> = root
            .ancestors()
            .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
            .collect();
        for dir in missing.into_iter().rev() {
            match std::fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
            let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
            sync_dir(parent.unwrap_or(Path::new(".")))?;
        }
    }
    let mut at = root.to_path_buf();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        let next = at.join(part);
        match std::fs::create_dir(&next) {
            Ok(()) => sync_dir(&at)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        at = next;
    }
    Ok(at)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A data directory on the real file system.
pub struct FsDataDir {
    root: PathBuf,
}

impl FsDataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

impl DataDir for FsDataDir {
    fn storage(&self, rel: &str) -> io::Result<Arc<dyn Storage>> {
        let dir = create_durable(&self.root, rel)?;
        Ok(Arc::new(FileStorage::open(dir)?))
    }

    fn subdirs(&self, rel: &str) -> io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(self.root.join(rel)) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e?;
            if e.file_type()?.is_dir() {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    fn remove_dir(&self, rel: &str) -> io::Result<()> {
        let dir = self.root.join(rel);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
            Ok(()) => sync_dir(dir.parent().unwrap_or(&self.root)),
        }
    }

    fn describe(&self, rel: &str) -> String {
        self.root.join(rel).display().to_string()
    }

    fn lock(&self) -> Result<Option<DirLock>, LockError> {
        let path = self.root.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        create_durable(&self.root, "").map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
                return Err(LockError::Held { path, pid });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        use std::io::Write;
        file.set_len(0).map_err(io)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(io)?;
        Ok(Some(DirLock { _file: file }))
    }
}

/// The lock file in the data directory's root.
pub const LOCK_FILE: &str = "lock";

/// A data directory in a crashable in-memory file system (power-loss tests).
pub struct MemDataDir {
    fs: MemFs,
}

impl MemDataDir {
    pub fn new(fs: MemFs) -> Self {
        Self { fs }
    }
}

impl DataDir for MemDataDir {
    fn storage(&self, rel: &str) -> io::Result<Arc<dyn Storage>> {
        // As on real files: each new component's entry is made durable by syncing its parent.
        let names = self.fs.dir_names();
        let mut at = String::new();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            let parent = at.clone();
            at = if at.is_empty() {
                part.to_string()
            } else {
                format!("{at}/{part}")
            };
            if !names.contains(&at) {
                self.fs.dir(&at);
                if !parent.is_empty() {
                    self.fs.dir(&parent).sync_dir()?;
                }
            }
        }
        Ok(Arc::new(self.fs.dir(rel)))
    }

    fn subdirs(&self, rel: &str) -> io::Result<Vec<String>> {
        let prefix = format!("{rel}/");
        let mut out: Vec<String> = self
            .fs
            .dir_names()
            .iter()
            .filter_map(|d| d.strip_prefix(&prefix))
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_string())
            .collect();
        out.dedup();
        Ok(out)
    }

    fn remove_dir(&self, rel: &str) -> io::Result<()> {
        self.fs.remove_tree(rel);
        Ok(())
    }

    fn describe(&self, rel: &str) -> String {
        format!("mem:{rel}")
    }
}

/// A [`MemDataDir`] whose directories matching a prefix go through [`FaultStorage`], each with
/// its own [`FaultPlan`] (fault tests: a failing fsync, a full disk, exhausted descriptors in one
/// partition or one internal log while the rest works).
pub struct FaultDataDir {
    mem: MemDataDir,
    fs: MemFs,
    prefixes: Vec<String>,
    plans: std::sync::Mutex<Vec<(String, Arc<FaultPlan>)>>,
}

impl FaultDataDir {
    /// Faults may be injected into directories starting with one of `prefixes`.
    pub fn new(fs: MemFs, prefixes: &[&str]) -> Self {
        Self {
            mem: MemDataDir::new(fs.clone()),
            fs,
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            plans: Default::default(),
        }
    }

    /// The plan of directory `rel` as last opened (`None`: not opened, or not faulted).
    pub fn plan(&self, rel: &str) -> Option<Arc<FaultPlan>> {
        let plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        plans
            .iter()
            .rev()
            .find(|(r, _)| r == rel)
            .map(|(_, p)| p.clone())
    }
}

impl DataDir for FaultDataDir {
    fn storage(&self, rel: &str) -> io::Result<Arc<dyn Storage>> {
        let inner = self.mem.storage(rel)?;
        if !self.prefixes.iter().any(|p| rel.starts_with(p.as_str())) {
            return Ok(inner);
        }
        let s = FaultStorage::new(self.fs.dir(rel));
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        plans.push((rel.to_string(), s.plan()));
        Ok(Arc::new(s))
    }

    fn subdirs(&self, rel: &str) -> io::Result<Vec<String>> {
        self.mem.subdirs(rel)
    }

    fn remove_dir(&self, rel: &str) -> io::Result<()> {
        self.mem.remove_dir(rel)
    }

    fn describe(&self, rel: &str) -> String {
        self.mem.describe(rel)
    }
}
