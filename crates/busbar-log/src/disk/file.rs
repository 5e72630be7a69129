//! [`Storage`] on the real file system: one directory, positional I/O, fdatasync.
//!
//! The file length is tracked in memory (appends are serialised by the log) so `len` costs no
//! syscall; a failed append leaves the tracked length unchanged and the caller truncates back.

use super::{File, Storage};
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A directory on the real file system.
#[derive(Debug, Clone)]
pub struct FileStorage {
    dir: PathBuf,
}

impl FileStorage {
    /// Uses `dir`, creating it (and its parents) if missing.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<Self> {
        fs::create_dir_all(dir.as_ref())?;
        Ok(Self {
            dir: dir.as_ref().to_path_buf(),
        })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

struct DiskFile {
    file: fs::File,
    len: AtomicU64,
}

impl File for DiskFile {
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        let len = self.len.load(Ordering::Acquire);
        if pos >= len {
            return Ok(0);
        }
        let n = buf.len().min((len - pos) as usize);
        self.file.read_at(&mut buf[..n], pos)
    }

    fn append(&self, data: &[u8]) -> io::Result<()> {
        let pos = self.len.load(Ordering::Acquire);
        self.file.write_all_at(data, pos)?;
        self.len.store(pos + data.len() as u64, Ordering::Release);
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.len.store(len, Ordering::Release);
        Ok(())
    }

    fn modified_ms(&self) -> io::Result<Option<i64>> {
        let t = self.file.metadata()?.modified()?;
        Ok(t.duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_millis() as i64))
    }
}

fn wrap(file: fs::File) -> io::Result<Arc<dyn File>> {
    let len = file.metadata()?.len();
    Ok(Arc::new(DiskFile {
        file,
        len: AtomicU64::new(len),
    }))
}

impl Storage for FileStorage {
    fn open(&self, name: &str) -> io::Result<Arc<dyn File>> {
        wrap(
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.dir.join(name))?,
        )
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn File>> {
        wrap(
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(self.dir.join(name))?,
        )
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_string());
                }
            }
        }
        Ok(names)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.dir.join(name))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.dir.join(from), self.dir.join(to))
    }

    fn sync_dir(&self) -> io::Result<()> {
        fs::File::open(&self.dir)?.sync_all()
    }

    fn describe(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}
