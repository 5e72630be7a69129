//! The two memory budgets every connection shares: bytes of requests (`request_bytes_max`) and
//! bytes of responses (`response_bytes_max`). Both count bytes that exist, not bytes promised.
//!
//! Requests ([`Requests`]): a frame's buffer grows as its bytes arrive, and each growth step is
//! reserved before it is filled ([`Frame::grow`]), so a connection holds at most one step it has not
//! been sent yet. A frame that declares 100 MiB and sends nothing holds one small step, not 100 MiB.
//! Reserving in steps lets two large frames each hold part of the budget while both want more, which
//! would deadlock; a grant is therefore made only when it leaves the budget in a *safe* state (the
//! banker's rule, one resource): ordering the partly read frames by what they still need, each one
//! can be completed from the free bytes plus what the frames before it, and every fully read frame,
//! will give back. Fully read frames always give back (they are answered, or their connection is cut
//! by the write timeout); partly read frames whose client stops sending are cut by the read timeout
//! (`conn.rs`). So some frame can always progress, and a frame that fits in one step (most requests)
//! is granted whenever its bytes are free: a stalled client can delay others by at most the read
//! timeout, never freeze them.
//!
//! Responses ([`Responses`]): a Fetch reserves before it reads the log and reads only what it got;
//! other responses are counted once encoded, without waiting (they are small and a connection holds
//! at most one, or its pipelined produce answers). What is held is released when the response is
//! written or the connection closes (the write timeout bounds both). One batch larger than what was
//! reserved (a Fetch returns at least one whole batch, KIP-74) may take the count over the limit;
//! new Fetches then wait until it is back under.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Waits until `try_take` succeeds, re-checking each time bytes are released.
async fn wait_until<T>(freed: &Notify, mut try_take: impl FnMut() -> Option<T>) -> T {
    loop {
        let notified = freed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(t) = try_take() {
            return t;
        }
        notified.await;
    }
}

#[derive(Debug, Default)]
struct RequestState {
    /// Bytes not reserved by any frame.
    free: usize,
    /// Bytes held by fully read frames (given back when they are answered or dropped).
    returning: usize,
    /// Partly read frames holding bytes: (bytes still needed, frame id) → bytes held.
    partial: BTreeMap<(usize, u64), usize>,
    next_id: u64,
}

impl RequestState {
    /// The banker's check: every partly read frame can be completed in some order.
    fn safe(&self) -> bool {
        let Some((&(need_max, _), _)) = self.partial.last_key_value() else {
            return true;
        };
        let mut avail = self.free + self.returning;
        for (&(need, _), &held) in &self.partial {
            if avail >= need_max {
                return true;
            }
            if need > avail {
                return false;
            }
            avail += held;
        }
        true
    }
}

/// The request budget (`request_bytes_max`).
#[derive(Debug)]
pub(crate) struct Requests {
    state: Mutex<RequestState>,
    freed: Notify,
}

impl Requests {
    pub fn new(bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(RequestState {
                free: bytes,
                ..RequestState::default()
            }),
            freed: Notify::new(),
        })
    }

    /// A frame of `size` bytes about to be read; it holds nothing yet.
    pub fn frame(self: &Arc<Self>, size: usize) -> Frame {
        let mut s = self.state.lock().expect("request budget");
        s.next_id += 1;
        Frame {
            budget: self.clone(),
            id: s.next_id,
            need: size,
            held: 0,
        }
    }
}

/// One frame's share of the request budget, held until its answer is written (or it is dropped).
#[derive(Debug)]
pub(crate) struct Frame {
    budget: Arc<Requests>,
    id: u64,
    need: usize,
    held: usize,
}

impl Frame {
    /// Reserves the next `step` bytes of this frame (at most what it still needs), waiting until
    /// they are free and granting them keeps the budget safe.
    pub async fn grow(&mut self, step: usize) {
        let step = step.min(self.need);
        let (id, need, held) = (self.id, self.need, self.held);
        let budget = self.budget.clone();
        wait_until(&budget.freed, || {
            let mut s = budget.state.lock().expect("request budget");
            if s.free < step {
                return None;
            }
            let old = s.partial.remove(&(need, id));
            s.free -= step;
            let (need2, held2) = (need - step, held + step);
            if need2 == 0 {
                s.returning += held2;
            } else {
                s.partial.insert((need2, id), held2);
            }
            if s.safe() {
                return Some(());
            }
            // Undo: this grant would let partly read frames deadlock; wait for a release.
            if need2 == 0 {
                s.returning -= held2;
            } else {
                s.partial.remove(&(need2, id));
            }
            if let Some(h) = old {
                s.partial.insert((need, id), h);
            }
            s.free += step;
            None
        })
        .await;
        self.need -= step;
        self.held += step;
    }

    /// Bytes this frame holds.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.held
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        if self.held == 0 {
            return;
        }
        let mut s = self.budget.state.lock().expect("request budget");
        if self.need == 0 {
            s.returning -= self.held;
        } else {
            s.partial.remove(&(self.need, self.id));
        }
        s.free += self.held;
        drop(s);
        self.budget.freed.notify_waiters();
    }
}

/// The response budget (`response_bytes_max`).
#[derive(Debug)]
pub(crate) struct Responses {
    /// Bytes not held; negative when an oversize batch took the count over the limit.
    free: Mutex<i64>,
    freed: Notify,
}

impl Responses {
    pub fn new(bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            free: Mutex::new(bytes as i64),
            freed: Notify::new(),
        })
    }

    /// Reserves as much of `want` bytes as is free, waiting until at least `least` is.
    pub async fn reserve(self: &Arc<Self>, least: usize, want: usize) -> Held {
        let least = least.min(want) as i64;
        let bytes = wait_until(&self.freed, || {
            let mut free = self.free.lock().expect("response budget");
            if *free < least.max(1) && want > 0 {
                return None;
            }
            let take = (want as i64).min(*free).max(0);
            *free -= take;
            Some(take as usize)
        })
        .await;
        Held {
            budget: self.clone(),
            bytes,
        }
    }

    /// Counts `bytes` at once, over the limit if need be (for responses already built).
    pub fn charge(self: &Arc<Self>, bytes: usize) -> Held {
        *self.free.lock().expect("response budget") -= bytes as i64;
        Held {
            budget: self.clone(),
            bytes,
        }
    }
}

/// Bytes of the response budget held by one response.
#[derive(Debug)]
pub(crate) struct Held {
    budget: Arc<Responses>,
    bytes: usize,
}

impl Held {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Makes this hold exactly `bytes`: releases the excess, or counts the extra at once.
    pub fn resize(&mut self, bytes: usize) {
        let delta = self.bytes as i64 - bytes as i64;
        *self.budget.free.lock().expect("response budget") += delta;
        self.bytes = bytes;
        if delta > 0 {
            self.budget.freed.notify_waiters();
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.resize(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn now<F: std::future::Future>(f: F) -> Option<F::Output> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(50), f)
                .await
                .ok()
        })
    }

    #[test]
    fn a_frame_holds_only_what_it_reserved_and_returns_it() {
        let b = Requests::new(100);
        let mut f = b.frame(100); // declares the whole budget, sends 10 bytes
        now(f.grow(10)).unwrap();
        assert_eq!(f.held(), 10);
        let mut small = b.frame(90);
        now(small.grow(90)).expect("the rest is free for a frame that fits");
        drop(small);
        drop(f);
        assert_eq!(b.state.lock().unwrap().free, 100);
    }

    #[test]
    fn two_large_frames_cannot_both_hold_half() {
        let b = Requests::new(100);
        let (mut a, mut c) = (b.frame(80), b.frame(80));
        now(a.grow(40)).unwrap();
        // Granting c 40 would leave 20 free while each still needs 40: refused, c waits.
        assert!(now(c.grow(40)).is_none(), "unsafe grant made");
        now(c.grow(20)).expect("20 leaves a completable order");
        now(a.grow(40)).expect("a can always finish");
        drop(a);
        now(c.grow(60)).expect("c finishes once a is answered");
    }

    #[test]
    fn a_waiting_frame_is_woken_by_a_release() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let b = Requests::new(100);
            let mut a = b.frame(100);
            a.grow(100).await;
            let waiter = tokio::spawn({
                let b = b.clone();
                async move {
                    let mut f = b.frame(50);
                    f.grow(50).await;
                }
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!waiter.is_finished());
            drop(a);
            tokio::time::timeout(Duration::from_secs(1), waiter)
                .await
                .expect("woken")
                .unwrap();
        });
    }

    #[test]
    fn responses_take_what_is_free_and_can_go_over_for_one_batch() {
        let r = Responses::new(100);
        let mut a = now(r.reserve(10, 70)).unwrap();
        assert_eq!(a.bytes(), 70);
        let b = now(r.reserve(10, 70)).unwrap();
        assert_eq!(b.bytes(), 30, "what is left");
        assert!(now(r.reserve(10, 70)).is_none(), "nothing free: waits");
        a.resize(90); // an oversize batch
        assert_eq!(*r.free.lock().unwrap(), -20);
        drop(b);
        assert!(now(r.reserve(20, 70)).is_none());
        a.resize(0);
        assert_eq!(now(r.reserve(20, 70)).unwrap().bytes(), 70);
        let c = r.charge(500);
        assert_eq!(*r.free.lock().unwrap(), -400);
        drop(c);
        assert_eq!(*r.free.lock().unwrap(), 100);
    }
}
