//! A partition's local copy in cluster mode: what the broker knows of the shared store's
//! partition (its end, its start), its own committed batches waiting to be applied, and whether
//! a reader uses the copy (then it is kept current).

/// A partition's local copy in cluster mode.
#[derive(Default)]
pub struct Replica {
    /// Held while shared batches are applied to the local log.
    pub(super) lock: tokio::sync::Mutex<()>,
    /// The shared store's end as last heard (notifications, polls, reads).
    shared_end: std::sync::atomic::AtomicU64,
    /// The shared store's start as last heard (DeleteRecords, retention of the objects): the
    /// copy drops its records below it once it holds it.
    shared_start: std::sync::atomic::AtomicU64,
    /// Batches this broker committed, waiting to be applied in order.
    pending: std::sync::Mutex<Pending>,
    /// Signalled when a batch is pended.
    pub(super) filled: tokio::sync::Notify,
    /// When a read past the known end last asked the shared store (at most every
    /// [`FORCED_READ_EVERY`], so clients asking for offsets far past the end cannot turn each
    /// fetch into a database read).
    forced_at: std::sync::Mutex<Option<std::time::Instant>>,
    /// Until when the partition counts as served here ([`uptime_ms`]; 0: never served).
    served_until: std::sync::atomic::AtomicU64,
}

/// How long a partition read on a broker stays caught up at once there (cluster mode): longer
/// than any client's pause between fetches, so a reader's long polls are woken by commits.
const SERVED_FOR_MS: u64 = 60_000;

/// Milliseconds since this process first asked (monotonic).
fn uptime_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// Most own batches waiting per partition for the local copy, and most bytes.
const PENDING_MAX: usize = 4096;
const PENDING_BYTES_MAX: usize = 64 << 20;

/// How often a fetch past the known shared end may ask the shared store, per partition.
const FORCED_READ_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Own batches by base offset, with their total size (kept, not summed per batch).
#[derive(Default)]
pub(super) struct Pending {
    batches: std::collections::BTreeMap<u64, Vec<u8>>,
    bytes: usize,
}

impl Pending {
    pub(super) fn pop_first(&mut self) -> Option<(u64, Vec<u8>)> {
        let (base, bytes) = self.batches.pop_first()?;
        self.bytes -= bytes.len();
        Some((base, bytes))
    }

    pub(super) fn first(&self) -> Option<u64> {
        self.batches.keys().next().copied()
    }

    pub(super) fn clear(&mut self) {
        self.batches.clear();
        self.bytes = 0;
    }
}

impl Replica {
    pub(super) fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn pend(&self, base: u64, bytes: Vec<u8>) {
        let mut pending = self.pending();
        // A copy that cannot keep up must not hold every later batch in memory: past the limits
        // they are read back from the shared store instead.
        if pending.batches.len() < PENDING_MAX && pending.bytes + bytes.len() <= PENDING_BYTES_MAX {
            pending.bytes += bytes.len();
            if let Some(old) = pending.batches.insert(base, bytes) {
                pending.bytes -= old.len();
            }
        }
        drop(pending);
        self.filled.notify_waiters();
    }

    pub(super) fn first_pending(&self) -> Option<u64> {
        self.pending().first()
    }

    /// Notes a read of the partition here: its copy is kept current for [`SERVED_FOR_MS`].
    pub(super) fn serve(&self) {
        self.serve_for(std::time::Duration::ZERO);
    }

    /// [`Replica::serve`] for a read that may wait `wait` (a long poll): the copy is kept
    /// current until the wait ends, however long, and [`SERVED_FOR_MS`] at least.
    pub(crate) fn serve_for(&self, wait: std::time::Duration) {
        let span = SERVED_FOR_MS.max(wait.as_millis() as u64);
        self.served_until.fetch_max(
            uptime_ms().saturating_add(span),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    pub(super) fn served_recently(&self) -> bool {
        uptime_ms() < self.served_until.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The shared store's end as last heard.
    pub fn shared_end(&self) -> u64 {
        self.shared_end.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(super) fn heard(&self, end: u64) {
        self.shared_end
            .fetch_max(end, std::sync::atomic::Ordering::Relaxed);
    }

    /// The shared store's start as last heard.
    pub fn shared_start(&self) -> u64 {
        self.shared_start.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Notes the shared store's start (its end is at least that).
    pub(crate) fn heard_start(&self, start: u64) {
        self.shared_start
            .fetch_max(start, std::sync::atomic::Ordering::Relaxed);
        self.heard(start);
    }

    /// True when a read at `offset` should ask the shared store now.
    pub(super) fn worth_asking(&self, offset: u64) -> bool {
        if offset <= self.shared_end.load(std::sync::atomic::Ordering::Relaxed) {
            return true;
        }
        let mut at = self.forced_at.lock().unwrap_or_else(|e| e.into_inner());
        if at.is_some_and(|t| t.elapsed() < FORCED_READ_EVERY) {
            return false;
        }
        *at = Some(std::time::Instant::now());
        true
    }
}
