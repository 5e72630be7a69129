//! A [`Storage`] wrapper for lock and I/O-shape tests: file and directory syncs can be held at a
//! gate (to show what still runs while an fsync is stuck), the largest single append is
//! recorded (to show a rewrite is written in bounded pieces), and bytes read are counted per
//! file name (to show what a look-up reads).

use busbar_log::disk::{File, Storage};
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct GateState {
    closed: bool,
    /// Syncs that arrived at the closed gate (each counted once).
    blocked: u64,
    max_append: usize,
    /// Bytes read, per file name.
    reads: BTreeMap<String, u64>,
}

/// Shared by a [`GatedStorage`] and every file it opened.
#[derive(Default)]
pub struct Gate {
    state: Mutex<GateState>,
    cv: Condvar,
}

impl Gate {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// From now on every sync waits until [`Gate::open`].
    pub fn close(&self) {
        self.state.lock().unwrap().closed = true;
    }

    pub fn open(&self) {
        self.state.lock().unwrap().closed = false;
        self.cv.notify_all();
    }

    /// Syncs that have arrived at the closed gate so far.
    pub fn blocked(&self) -> u64 {
        self.state.lock().unwrap().blocked
    }

    /// Waits until `n` syncs have arrived at the closed gate (panics after 10 s).
    pub fn wait_blocked(&self, n: u64) {
        let t = Instant::now();
        while self.blocked() < n {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "no sync reached the gate"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The largest single `append` seen, in bytes; resets the record.
    pub fn take_max_append(&self) -> usize {
        std::mem::take(&mut self.state.lock().unwrap().max_append)
    }

    /// Bytes read per file name since the last call; resets the count.
    pub fn take_reads(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut self.state.lock().unwrap().reads)
    }

    fn read(&self, name: &str, n: usize) {
        *self
            .state
            .lock()
            .unwrap()
            .reads
            .entry(name.to_string())
            .or_default() += n as u64;
    }

    fn pass(&self) {
        let mut st = self.state.lock().unwrap();
        if st.closed {
            st.blocked += 1;
        }
        while st.closed {
            st = self.cv.wait(st).unwrap();
        }
    }

    fn appended(&self, n: usize) {
        let mut st = self.state.lock().unwrap();
        st.max_append = st.max_append.max(n);
    }
}

/// A directory whose syncs pass through a [`Gate`].
pub struct GatedStorage<S> {
    inner: S,
    gate: Arc<Gate>,
}

impl<S: Storage> GatedStorage<S> {
    pub fn new(inner: S, gate: Arc<Gate>) -> Self {
        Self { inner, gate }
    }

    fn wrap(&self, name: &str, f: Arc<dyn File>) -> Arc<dyn File> {
        Arc::new(GatedFile {
            inner: f,
            gate: self.gate.clone(),
            name: name.to_string(),
        })
    }
}

struct GatedFile {
    inner: Arc<dyn File>,
    gate: Arc<Gate>,
    /// The name it was opened or created by (a rename does not change it).
    name: String,
}

impl File for GatedFile {
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read_at(pos, buf)?;
        self.gate.read(&self.name, n);
        Ok(n)
    }
    fn append(&self, data: &[u8]) -> io::Result<()> {
        self.gate.appended(data.len());
        self.inner.append(data)
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn sync(&self) -> io::Result<()> {
        self.gate.pass();
        self.inner.sync()
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
    fn modified_ms(&self) -> io::Result<Option<i64>> {
        self.inner.modified_ms()
    }
}

impl<S: Storage> Storage for GatedStorage<S> {
    fn open(&self, name: &str) -> io::Result<Arc<dyn File>> {
        self.inner.open(name).map(|f| self.wrap(name, f))
    }
    fn create(&self, name: &str) -> io::Result<Arc<dyn File>> {
        self.inner.create(name).map(|f| self.wrap(name, f))
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
        self.gate.pass();
        self.inner.sync_dir()
    }
    fn describe(&self, name: &str) -> String {
        self.inner.describe(name)
    }
}

/// Runs `f` on its own thread; `Some(result)` when it finished within `limit`, else `None` (the
/// thread is left to finish once whatever blocks it is released).
pub fn within<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}
