//! Helpers shared by the broker's crate tests: an instrumented data directory on real files that
//! counts the bytes read from segment files and can make every sync slow, and idempotent batches.

#![allow(dead_code)]

use busbar_broker::datadir::{DataDir, FsDataDir};
use busbar_log::batch::{self, BatchHeader, NewRecord};
use busbar_log::disk::{File, Storage};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the instrumented directory counts, and how slow it makes syncs.
#[derive(Default)]
pub struct Probe {
    /// Bytes read from `*.log` files (segments).
    pub log_bytes_read: AtomicU64,
    sync_delay_us: AtomicU64,
}

impl Probe {
    pub fn log_bytes_read(&self) -> u64 {
        self.log_bytes_read.load(Ordering::SeqCst)
    }

    /// Makes every file and directory sync take at least `d` (a slow disk).
    pub fn set_sync_delay(&self, d: Duration) {
        self.sync_delay_us
            .store(d.as_micros() as u64, Ordering::SeqCst);
    }

    fn slow_sync(&self) {
        let us = self.sync_delay_us.load(Ordering::SeqCst);
        if us > 0 {
            std::thread::sleep(Duration::from_micros(us));
        }
    }
}

/// A data directory on real files whose every storage reports to one [`Probe`].
pub struct Instrumented {
    fs: FsDataDir,
    pub probe: Arc<Probe>,
}

impl Instrumented {
    pub fn new(root: &Path) -> Arc<Self> {
        Arc::new(Self {
            fs: FsDataDir::new(root),
            probe: Arc::default(),
        })
    }
}

impl DataDir for Instrumented {
    fn storage(&self, rel: &str) -> io::Result<Arc<dyn Storage>> {
        Ok(Arc::new(ProbedStorage {
            inner: self.fs.storage(rel)?,
            probe: self.probe.clone(),
        }))
    }
    fn subdirs(&self, rel: &str) -> io::Result<Vec<String>> {
        self.fs.subdirs(rel)
    }
    fn remove_dir(&self, rel: &str) -> io::Result<()> {
        self.fs.remove_dir(rel)
    }
    fn describe(&self, rel: &str) -> String {
        self.fs.describe(rel)
    }
}

struct ProbedStorage {
    inner: Arc<dyn Storage>,
    probe: Arc<Probe>,
}

impl ProbedStorage {
    fn wrap(&self, name: &str, inner: Arc<dyn File>) -> Arc<dyn File> {
        Arc::new(ProbedFile {
            inner,
            probe: self.probe.clone(),
            segment: name.ends_with(".log"),
        })
    }
}

impl Storage for ProbedStorage {
    fn open(&self, name: &str) -> io::Result<Arc<dyn File>> {
        Ok(self.wrap(name, self.inner.open(name)?))
    }
    fn create(&self, name: &str) -> io::Result<Arc<dyn File>> {
        Ok(self.wrap(name, self.inner.create(name)?))
    }
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.remove(name)
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.probe.slow_sync();
        self.inner.sync_dir()
    }
    fn describe(&self, name: &str) -> String {
        self.inner.describe(name)
    }
}

struct ProbedFile {
    inner: Arc<dyn File>,
    probe: Arc<Probe>,
    segment: bool,
}

impl File for ProbedFile {
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read_at(pos, buf)?;
        if self.segment {
            self.probe
                .log_bytes_read
                .fetch_add(n as u64, Ordering::SeqCst);
        }
        Ok(n)
    }
    fn append(&self, data: &[u8]) -> io::Result<()> {
        self.inner.append(data)
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn sync(&self) -> io::Result<()> {
        self.probe.slow_sync();
        self.inner.sync()
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
    fn modified_ms(&self) -> io::Result<Option<i64>> {
        self.inner.modified_ms()
    }
}

/// A one-event batch of idempotent producer `pid` at `epoch` with sequence `seq`.
pub fn idempotent(pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
    let plain = batch::build(&[NewRecord {
        value: Some(format!("{pid}/{epoch}/{seq}").into_bytes()),
        ..NewRecord::default()
    }]);
    let h = BatchHeader::parse(&plain).expect("a batch just built parses");
    batch::assemble(
        &BatchHeader {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            ..h
        },
        &plain[batch::HEADER_BYTES..],
    )
}
