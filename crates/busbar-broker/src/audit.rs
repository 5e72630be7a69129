//! The audit log: one JSON line per authentication failure, authorization denial and
//! administrative change, from every front end (`broker.audit().record(..)`).
//!
//! ```text
//! {"time":"2026-12-02T08:30:00.000Z","principal":"User:alice","peer":"127.0.0.1:50412",
//!  "listener":"SASL_PLAINTEXT://127.0.0.1:9092","operation":"CreateTopics","resource":"TOPIC:orders",
//!  "outcome":"success"}
//! ```
//!
//! Recording never waits for the disk: events go into a queue bounded by `queue_max`, drained by
//! one writer thread. When the queue is full the event is dropped, counted
//! ([`AuditStats::dropped`]) and reported on stderr (at most once per [`REPORT_EVERY`]). A failed
//! write loses that line (counted in [`AuditStats::write_errors`], reported likewise); the file is
//! reopened for the next line and the server goes on. Lines are written, not fsynced: a power loss
//! may lose the newest ones.
//!
//! The file is size-rotated: a line that would take it past `max_bytes` first renames
//! `audit.log` to `audit.log.1` (`.1` to `.2`, ...), keeping `files_kept` rotated files.
//!
//! Every text field is cut to [`FIELD_BYTES_MAX`] bytes (`detail` to [`DETAIL_BYTES_MAX`]):
//! a user name is whatever a client sent.

use busbar_log::Clock;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

/// Longest principal, listener, operation, resource or outcome written, bytes.
pub const FIELD_BYTES_MAX: usize = 256;
/// Longest `detail` written, bytes.
pub const DETAIL_BYTES_MAX: usize = 1024;
/// Dropped lines and write errors are reported on stderr at most this often, milliseconds.
pub const REPORT_EVERY: i64 = 10_000;

/// Where audit lines go (`audit.file`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AuditTarget {
    /// `<data-dir>/audit.log` (the default). With an injected (in-memory) data directory: nowhere.
    #[default]
    DataDir,
    /// This file.
    File(PathBuf),
    /// Standard output, one line per event, never rotated.
    Stdout,
    /// Nowhere (embedding programs that keep no audit).
    Off,
}

/// `[audit]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    pub target: AuditTarget,
    /// Rotate when the next line would take the file past this many bytes. Default 100 MiB.
    pub max_bytes: u64,
    /// Rotated files kept (`audit.log.1` .. `.N`); 0 keeps none. Default 10.
    pub files_kept: u32,
    /// Events waiting for the writer; past it new events are dropped and counted. Default 10,000.
    pub queue_max: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            target: AuditTarget::DataDir,
            max_bytes: 100 << 20,
            files_kept: 10,
            queue_max: 10_000,
        }
    }
}

/// One audited event. `principal` is Kafka's form (`User:alice`, `User:ANONYMOUS`); `resource`
/// is `TYPE:name` (`TOPIC:orders`, `USER:alice`, `CLUSTER:kafka-cluster`); `outcome` is
/// `success`, `denied` or `failed` (with the reason in `detail`), or an HTTP status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEvent {
    pub principal: String,
    pub peer: Option<SocketAddr>,
    /// The listener (`SASL_PLAINTEXT://127.0.0.1:9092`, `http://127.0.0.1:8080`).
    pub listener: String,
    /// The API or route: `SaslAuthenticate`, `CreateTopics`, `POST /topics`.
    pub operation: String,
    pub resource: String,
    pub outcome: String,
    pub detail: Option<String>,
}

/// Counters of the audit writer (for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Lines written.
    pub written: u64,
    /// Events dropped because the queue was full.
    pub dropped: u64,
    /// Lines lost to a failed write, open or rotation (each counts once).
    pub write_errors: u64,
    /// Rotations done.
    pub rotations: u64,
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    write_errors: AtomicU64,
    rotations: AtomicU64,
    /// When dropped lines and errors were last reported (clock ms).
    reported_ms: AtomicI64,
}

impl Counters {
    /// Whether to print a report now (at most once per [`REPORT_EVERY`]).
    fn report_due(&self, now_ms: i64) -> bool {
        let last = self.reported_ms.load(Ordering::Relaxed);
        (last == 0 || now_ms - last >= REPORT_EVERY)
            && self
                .reported_ms
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

enum Msg {
    Line(i64, Box<AuditEvent>),
    Flush(SyncSender<()>),
}

/// The audit log handle: cheap to call from any request path.
pub struct Audit {
    tx: Option<SyncSender<Msg>>,
    counters: Arc<Counters>,
    clock: Arc<dyn Clock>,
    queue_max: usize,
}

impl Audit {
    /// Starts the writer for `config`; `data_dir` resolves [`AuditTarget::DataDir`] (`None`:
    /// nothing is written). Fails when the file cannot be opened.
    pub fn start(
        config: &AuditConfig,
        data_dir: Option<&Path>,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Self> {
        let sink = match &config.target {
            AuditTarget::DataDir => data_dir.map(|d| Sink::file(d.join("audit.log"), config)),
            AuditTarget::File(p) => Some(Sink::file(p.clone(), config)),
            AuditTarget::Stdout => Some(Sink::Stdout),
            AuditTarget::Off => None,
        };
        let counters = Arc::new(Counters::default());
        let tx = match sink {
            None => None,
            Some(mut sink) => {
                sink.open()?;
                let (tx, rx) = mpsc::sync_channel(config.queue_max.max(1));
                let c = counters.clone();
                std::thread::Builder::new()
                    .name("busbar-audit".into())
                    .spawn(move || writer(rx, sink, c))?;
                Some(tx)
            }
        };
        Ok(Self {
            tx,
            counters,
            clock,
            queue_max: config.queue_max.max(1),
        })
    }

    /// An audit log that writes nothing.
    pub fn off(clock: Arc<dyn Clock>) -> Self {
        Self {
            tx: None,
            counters: Arc::default(),
            clock,
            queue_max: 1,
        }
    }

    /// Whether events are written anywhere.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one event for the writer; never waits. A full queue drops it (counted, reported).
    pub fn record(&self, event: AuditEvent) {
        let Some(tx) = &self.tx else { return };
        let now = self.clock.now_ms();
        match tx.try_send(Msg::Line(now, Box::new(event))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if self.counters.report_due(now) {
                    let msg = format!(
                        "audit log queue full (audit.queue_max = {}): {n} audit lines dropped so far",
                        self.queue_max
                    );
                    crate::log::info("busbar", "audit_dropped", &msg, &[("dropped", n.into())]);
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits until every event recorded before the call is written (tests, shutdown).
    pub fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = mpsc::sync_channel(1);
        if tx.send(Msg::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// The writer's counters.
    pub fn stats(&self) -> AuditStats {
        let c = &self.counters;
        AuditStats {
            written: c.written.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
            rotations: c.rotations.load(Ordering::Relaxed),
        }
    }
}

/// Where the writer thread writes.
enum Sink {
    Stdout,
    File(FileSink),
}

struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    files_kept: u32,
    out: Option<File>,
    size: u64,
}

impl Sink {
    fn file(path: PathBuf, config: &AuditConfig) -> Self {
        Sink::File(FileSink {
            path,
            max_bytes: config.max_bytes.max(1),
            files_kept: config.files_kept,
            out: None,
            size: 0,
        })
    }

    fn open(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout => Ok(()),
            Sink::File(f) => f.open(),
        }
    }

    /// Writes one line (with its newline); the counters see rotations.
    fn write(&mut self, line: &[u8], c: &Counters) -> std::io::Result<()> {
        match self {
            Sink::Stdout => std::io::stdout().lock().write_all(line),
            Sink::File(f) => f.write(line, c),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout => std::io::stdout().lock().flush(),
            Sink::File(_) => Ok(()), // unbuffered: each line is one write
        }
    }
}

impl FileSink {
    fn open(&mut self) -> std::io::Result<()> {
        let opened = || -> std::io::Result<(File, u64)> {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            let size = file.metadata()?.len();
            Ok((file, size))
        };
        let (file, size) = opened()
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))?;
        self.size = size;
        self.out = Some(file);
        Ok(())
    }

    fn write(&mut self, line: &[u8], c: &Counters) -> std::io::Result<()> {
        if self.out.is_none() {
            self.open()?;
        }
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            match self.rotate() {
                Ok(()) => {
                    c.rotations.fetch_add(1, Ordering::Relaxed);
                }
                // Keep appending to the current file; the next line tries again.
                Err(e) => report(c, &format!("audit log rotation failed: {e}")),
            }
            if self.out.is_none() {
                self.open()?;
            }
        }
        let out = self.out.as_mut().expect("opened above");
        if let Err(e) = out.write_all(line) {
            self.out = None; // reopened for the next line
            return Err(e);
        }
        self.size += line.len() as u64;
        Ok(())
    }

    /// `audit.log.{k}` -> `.{k+1}` from the oldest kept down, `audit.log` -> `.1`, a fresh file.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out = None;
        let rotated = |k: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{k}"));
            PathBuf::from(p)
        };
        if self.files_kept == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for k in (1..self.files_kept).rev() {
                match std::fs::rename(rotated(k), rotated(k + 1)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(&self.path, rotated(1))?;
        }
        self.open()
    }
}

/// The JSON form of one line.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    principal: &'a str,
    peer: Option<String>,
    listener: &'a str,
    operation: &'a str,
    resource: &'a str,
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

/// `s` cut to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn render(time_ms: i64, e: &AuditEvent) -> Vec<u8> {
    let line = Line {
        time: crate::time::format_rfc3339(time_ms),
        principal: cut(&e.principal, FIELD_BYTES_MAX),
        peer: e.peer.map(|p| p.to_string()),
        listener: cut(&e.listener, FIELD_BYTES_MAX),
        operation: cut(&e.operation, FIELD_BYTES_MAX),
        resource: cut(&e.resource, FIELD_BYTES_MAX),
        outcome: cut(&e.outcome, FIELD_BYTES_MAX),
        detail: e.detail.as_deref().map(|d| cut(d, DETAIL_BYTES_MAX)),
    };
    let mut out = serde_json::to_vec(&line).expect("plain strings serialize");
    out.push(b'\n');
    out
}

/// The writer thread: writes queued lines (one `write` each, so a failure loses only its line),
/// flushing stdout whenever the queue is empty; ends when the `Audit` handle is dropped (after
/// writing what was queued).
fn writer(rx: Receiver<Msg>, mut sink: Sink, c: Arc<Counters>) {
    while let Ok(msg) = rx.recv() {
        handle(msg, &mut sink, &c);
        while let Ok(msg) = rx.try_recv() {
            handle(msg, &mut sink, &c);
        }
        if let Err(e) = sink.flush() {
            failed(&c, &e);
        }
    }
    let _ = sink.flush();
}

fn handle(msg: Msg, sink: &mut Sink, c: &Counters) {
    match msg {
        Msg::Line(time, event) => match sink.write(&render(time, &event), c) {
            Ok(()) => {
                c.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => failed(c, &e),
        },
        Msg::Flush(done) => {
            if let Err(e) = sink.flush() {
                failed(c, &e);
            }
            let _ = done.send(());
        }
    }
}

fn failed(c: &Counters, e: &std::io::Error) {
    let n = c.write_errors.fetch_add(1, Ordering::Relaxed) + 1;
    report(
        c,
        &format!("audit log write failed ({n} lines lost so far): {e}"),
    );
}

/// Prints `what` on stderr unless something was reported within [`REPORT_EVERY`].
fn report(c: &Counters, what: &str) {
    if c.report_due(busbar_log::SystemClock.now_ms()) {
        crate::log::error("busbar", "audit_failing", what, &[]);
    }
}

#[cfg(test)]
mod tests;
