//! The broker's data directory behind a narrow trait, so every byte the broker keeps (partition
//! logs, metadata, committed offsets, producer ids, subscriptions and their retry state) goes through
//! `busbar-log`'s disk trait: on real files in production ([`FsDataDir`]), and on the crashable
//! in-memory file system in power-loss tests ([`MemDataDir`]). Paths are relative and use `/`:
//! `topics/<topic>/<partition>`, `meta`, `internal/offsets`, `internal/retries`.

use busbar_log::disk::{FileStorage, MemFs, Storage};
use std::io;
use std::path::PathBuf;
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
        Ok(Arc::new(FileStorage::open(self.root.join(rel))?))
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
        match std::fs::remove_dir_all(self.root.join(rel)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn describe(&self, rel: &str) -> String {
        self.root.join(rel).display().to_string()
    }
}

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
