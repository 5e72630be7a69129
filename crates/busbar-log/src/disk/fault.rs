//! A [`Storage`] wrapper that fails chosen operations, for I/O-error and disk-full tests.
//!
//! Mutating operations (create, append, sync, truncate, remove, rename, sync_dir) are numbered from
//! 0 in the order they happen across every file of the wrapped directory. [`FaultPlan::fail_nth`]
//! makes operation N fail with EIO (a failed append first writes half its bytes, as a real short
//! write can); [`FaultPlan::set_disk_full`] makes appends and creates fail with ENOSPC, writing
//! nothing, until it is turned off; [`FaultPlan::set_descriptors_exhausted`] makes opens, creates and
//! directory syncs fail with EMFILE (no file descriptor left) until turned off.
//! [`FaultPlan::open_files`] counts the files opened through the storage that are still open.

use super::{File, Storage};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// What to fail, shared by a [`FaultStorage`] and every file it opened.
#[derive(Debug)]
pub struct FaultPlan {
    ops: AtomicU64,
    fail_at: AtomicU64,
    failures: AtomicU64,
    disk_full: AtomicBool,
    syncs: AtomicU64,
    sync_delay_us: AtomicU64,
    no_descriptors: AtomicBool,
    open_files: AtomicI64,
}

impl Default for FaultPlan {
    fn default() -> Self {
        Self {
            ops: AtomicU64::new(0),
            fail_at: AtomicU64::new(u64::MAX),
            failures: AtomicU64::new(0),
            disk_full: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
            sync_delay_us: AtomicU64::new(0),
            no_descriptors: AtomicBool::new(false),
            open_files: AtomicI64::new(0),
        }
    }
}

impl FaultPlan {
    /// Makes mutating operation number `n` (counted from 0 since creation) fail once.
    pub fn fail_nth(&self, n: u64) {
        self.fail_at.store(n, Ordering::SeqCst);
    }

    /// Turns the disk-full condition on or off.
    pub fn set_disk_full(&self, full: bool) {
        self.disk_full.store(full, Ordering::SeqCst);
    }

    /// Makes every file sync take at least `delay` (a slow disk).
    pub fn set_sync_delay(&self, delay: std::time::Duration) {
        self.sync_delay_us
            .store(delay.as_micros() as u64, Ordering::SeqCst);
    }

    /// Makes opens, creates and directory syncs fail with EMFILE while `on`.
    pub fn set_descriptors_exhausted(&self, on: bool) {
        self.no_descriptors.store(on, Ordering::SeqCst);
    }

    /// Files opened or created through the storage and not yet dropped (closed).
    pub fn open_files(&self) -> i64 {
        self.open_files.load(Ordering::SeqCst)
    }

    fn need_descriptor(&self) -> io::Result<()> {
        if self.no_descriptors.load(Ordering::SeqCst) {
            self.failures.fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(24)); // EMFILE
        }
        Ok(())
    }

    fn wrap(plan: &Arc<Self>, inner: Arc<dyn File>) -> Arc<dyn File> {
        plan.open_files.fetch_add(1, Ordering::SeqCst);
        Arc::new(FaultFile {
            inner,
            plan: plan.clone(),
        })
    }

    /// File syncs that succeeded so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    /// Mutating operations seen so far.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::SeqCst)
    }

    /// Operations failed so far (injected EIO and ENOSPC).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::SeqCst)
    }

    fn tick(&self, op: &str, space: bool) -> io::Result<()> {
        let n = self.ops.fetch_add(1, Ordering::SeqCst);
        if space && self.disk_full.load(Ordering::SeqCst) {
            self.failures.fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        if n == self.fail_at.load(Ordering::SeqCst) {
            self.failures.fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::other(format!("injected EIO on {op} #{n}")));
        }
        Ok(())
    }
}

/// A directory whose operations fail as its [`FaultPlan`] says.
#[derive(Clone)]
pub struct FaultStorage<S> {
    inner: S,
    plan: Arc<FaultPlan>,
}

impl<S: Storage> FaultStorage<S> {
    /// Wraps `inner` with a plan that fails nothing yet.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            plan: Arc::new(FaultPlan::default()),
        }
    }

    /// The plan, to arm failures while the log runs.
    pub fn plan(&self) -> Arc<FaultPlan> {
        self.plan.clone()
    }

    /// The wrapped storage.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

struct FaultFile {
    inner: Arc<dyn File>,
    plan: Arc<FaultPlan>,
}

impl Drop for FaultFile {
    fn drop(&mut self) {
        self.plan.open_files.fetch_sub(1, Ordering::SeqCst);
    }
}

impl File for FaultFile {
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_at(pos, buf)
    }

    fn append(&self, data: &[u8]) -> io::Result<()> {
        if let Err(e) = self.plan.tick("append", true) {
            if e.raw_os_error().is_none() {
                // An EIO mid-write: part of the data may have reached the file.
                self.inner.append(&data[..data.len() / 2])?;
            }
            return Err(e);
        }
        self.inner.append(data)
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn sync(&self) -> io::Result<()> {
        self.plan.tick("sync", false)?;
        let delay = self.plan.sync_delay_us.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(std::time::Duration::from_micros(delay));
        }
        self.inner.sync()?;
        self.plan.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.plan.tick("truncate", false)?;
        self.inner.truncate(len)
    }

    fn modified_ms(&self) -> io::Result<Option<i64>> {
        self.inner.modified_ms()
    }
}

impl<S: Storage> Storage for FaultStorage<S> {
    fn open(&self, name: &str) -> io::Result<Arc<dyn File>> {
        self.plan.need_descriptor()?;
        let inner = self.inner.open(name)?;
        Ok(FaultPlan::wrap(&self.plan, inner))
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn File>> {
        self.plan.need_descriptor()?;
        self.plan.tick("create", true)?;
        let inner = self.inner.create(name)?;
        Ok(FaultPlan::wrap(&self.plan, inner))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.plan.tick("remove", false)?;
        self.inner.remove(name)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.plan.tick("rename", false)?;
        self.inner.rename(from, to)
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.plan.need_descriptor()?;
        self.plan.tick("sync_dir", false)?;
        self.inner.sync_dir()
    }

    fn describe(&self, name: &str) -> String {
        self.inner.describe(name)
    }
}
