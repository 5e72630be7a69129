//! The narrow disk interface every byte of the log goes through.
//!
//! A [`Storage`] is one directory of flat files; a [`File`] supports positional reads, appends at its
//! end, data sync and truncation. Three implementations: [`FileStorage`] (the real file system),
//! [`MemFs`] (in memory, with a `crash` that drops every unsynced byte and unsynced directory entry)
//! and [`FaultStorage`] (wraps another storage and fails chosen operations). Nothing here knows
//! about batches, offsets or topics.

mod fault;
mod file;
mod mem;

pub use fault::{FaultPlan, FaultStorage};
pub use file::FileStorage;
pub use mem::{MemFs, MemStorage};

use std::io;
use std::sync::Arc;

/// One directory of files.
pub trait Storage: Send + Sync + 'static {
    /// Opens an existing file.
    fn open(&self, name: &str) -> io::Result<Arc<dyn File>>;
    /// Creates a file, replacing (emptying) an existing one of that name.
    fn create(&self, name: &str) -> io::Result<Arc<dyn File>>;
    /// Names of the files in the directory, in no particular order.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Removes a file. Open handles keep reading the old contents.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Renames `from` to `to`, atomically replacing `to`.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Makes creations, removals and renames in this directory durable.
    fn sync_dir(&self) -> io::Result<()>;
    /// A human-readable location, for error messages.
    fn describe(&self, name: &str) -> String;
}

/// One file. Appends are serialised by the caller; reads may run concurrently with them.
pub trait File: Send + Sync {
    /// Reads up to `buf.len()` bytes at `pos`; fewer only at the end of the file.
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes `data` at the current end of the file.
    fn append(&self, data: &[u8]) -> io::Result<()>;
    /// Current length in bytes, including unsynced appends.
    fn len(&self) -> u64;
    /// True when the file holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Makes the file's data durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
    /// Cuts the file to `len` bytes.
    fn truncate(&self, len: u64) -> io::Result<()>;
    /// When the file's data was last changed, in milliseconds since the Unix epoch (its mtime),
    /// or `None` when the storage does not know. Time retention falls back on it for a segment
    /// whose max timestamp cannot be trusted.
    fn modified_ms(&self) -> io::Result<Option<i64>> {
        Ok(None)
    }
}

/// Reads exactly `buf.len()` bytes at `pos`, or fails with `UnexpectedEof`.
pub fn read_exact_at(file: &dyn File, pos: u64, buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(pos + done as u64, &mut buf[done..])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("short read: {} of {} bytes at {pos}", done, buf.len()),
            ));
        }
        done += n;
    }
    Ok(())
}

/// Writes a whole file through the atomic replace protocol: `name.tmp`, sync, rename, sync dir.
pub fn write_atomic(storage: &dyn Storage, name: &str, bytes: &[u8]) -> io::Result<()> {
    write_atomic_as(storage, name, &format!("{name}.tmp"), bytes)
}

/// [`write_atomic`] through a temporary name of its own (`<name>.<n>.tmp`): two writers of one
/// file never rename each other's temporary away. For a log's directory only, whose recovery
/// removes any `*.tmp` a crash left.
pub fn write_atomic_unique(storage: &dyn Storage, name: &str, bytes: &[u8]) -> io::Result<()> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    write_atomic_as(storage, name, &format!("{name}.{n}.tmp"), bytes)
}

fn write_atomic_as(storage: &dyn Storage, name: &str, tmp: &str, bytes: &[u8]) -> io::Result<()> {
    let file = storage.create(tmp)?;
    file.append(bytes)?;
    file.sync()?;
    drop(file);
    storage.rename(tmp, name)?;
    storage.sync_dir()
}

/// Reads a whole file, or `None` when it does not exist.
pub fn read_all(storage: &dyn Storage, name: &str) -> io::Result<Option<Vec<u8>>> {
    let file = match storage.open(name) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = vec![0; file.len() as usize];
    read_exact_at(file.as_ref(), 0, &mut buf)?;
    Ok(Some(buf))
}
