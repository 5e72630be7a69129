//! What every system shares: the producer/consumer traits each client is wrapped in, the payload
//! layout (sequence number and send time in the first 16 bytes), the process clock, latency
//! histograms and the consumer-side order check.
//!
//! One process design for all systems (issue 7): one tokio runtime, a producer that keeps at most
//! `window` messages unacknowledged, consumers as tasks on the same runtime, payloads of the same
//! size.

use anyhow::{bail, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The acknowledgement of one message: resolves once the server confirmed it.
pub type Ack = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// A client that sends messages to the benchmark stream.
pub trait Producer: Send + 'static {
    /// Hands one message to the client library. Messages must reach the server in the order
    /// `send` is called. Returns the message's ack as a future, or `None` when the client counts
    /// acks in its [`Producer::counter`] instead (a delivery callback, as librdkafka has).
    fn send(&mut self, payload: Bytes) -> impl Future<Output = Result<Option<Ack>>> + Send;

    /// Where a callback-driven client counts acknowledged messages.
    fn counter(&self) -> Option<Arc<AckCounter>> {
        None
    }
}

/// Acks counted by a client's delivery callback; the producer loop waits on it.
#[derive(Default)]
pub struct AckCounter {
    acked: AtomicU64,
    failure: Mutex<Option<String>>,
    notify: Notify,
}

impl AckCounter {
    pub fn ack(&self) {
        self.acked.fetch_add(1, Ordering::Release);
        self.notify.notify_one();
    }

    pub fn fail(&self, why: String) {
        self.failure
            .lock()
            .expect("not poisoned")
            .get_or_insert(why);
        self.ack();
    }

    /// Waits until at least `n` messages were acknowledged; fails on the first failed delivery.
    pub async fn wait_for(&self, n: u64) -> Result<()> {
        loop {
            let notified = self.notify.notified();
            if let Some(why) = self.failure.lock().expect("not poisoned").clone() {
                bail!("delivery failed: {why}");
            }
            if self.acked.load(Ordering::Acquire) >= n {
                return Ok(());
            }
            notified.await;
        }
    }
}

/// A durable subscriber (server-side position) reading the benchmark stream from the start.
pub trait Consumer: Send + 'static {
    /// Waits for the next message(s) and calls `f` with each payload in stream order; returns
    /// how many it delivered.
    fn recv<F: FnMut(&[u8]) + Send>(&mut self, f: F) -> impl Future<Output = Result<usize>> + Send;
}

/// One system under test.
pub trait System: Send + Sync + 'static {
    type P: Producer;
    type C: Consumer;
    /// Creates the (single-partition) benchmark stream.
    fn prepare(&self) -> impl Future<Output = Result<()>> + Send;
    fn producer(&self) -> impl Future<Output = Result<Self::P>> + Send;
    /// A new durable subscriber named `group`, positioned at the start of the stream.
    fn consumer(&self, group: &str) -> impl Future<Output = Result<Self::C>> + Send;
    /// Client library and settings, for the report.
    fn describe(&self) -> String;
}

/// Nanoseconds since the process clock started (shared by producer and consumers).
pub fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Bytes of the payload header: sequence number, then send time.
pub const HEADER: usize = 16;

/// A payload of `size` bytes carrying `seq` and the current time.
pub fn payload(seq: u64, size: usize, scratch: &mut Vec<u8>) -> Bytes {
    scratch.clear();
    scratch.extend_from_slice(&seq.to_le_bytes());
    scratch.extend_from_slice(&now_ns().to_le_bytes());
    scratch.resize(size.max(HEADER), b'x');
    Bytes::copy_from_slice(scratch)
}

/// The sequence number and send time of a payload.
pub fn parse(p: &[u8]) -> Result<(u64, u64)> {
    if p.len() < HEADER {
        bail!(
            "payload of {} bytes is shorter than the {HEADER}-byte header",
            p.len()
        );
    }
    let seq = u64::from_le_bytes(p[..8].try_into().expect("8 bytes"));
    let ts = u64::from_le_bytes(p[8..16].try_into().expect("8 bytes"));
    Ok((seq, ts))
}

/// A histogram of nanoseconds (1 ns .. 100 s, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds")
}

/// Consumer-side check that every message arrives once and in order.
#[derive(Debug, Default, Clone)]
pub struct OrderCheck {
    pub next: u64,
    pub received: u64,
    /// Messages whose sequence number was not the next expected one.
    pub out_of_order: u64,
}

impl OrderCheck {
    pub fn see(&mut self, seq: u64) {
        self.received += 1;
        if seq != self.next {
            self.out_of_order += 1;
        }
        self.next = seq + 1;
    }
}

/// Seconds as a float, for throughput.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64().max(1e-9)
}

/// Sets TCP_NODELAY on every TCP socket this process has open (for clients that give no hook).
pub fn nodelay_all_sockets() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on a descriptor this process owns; on a non-socket or non-TCP
        // descriptor it fails with ENOTSOCK/EOPNOTSUPP and changes nothing.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}
