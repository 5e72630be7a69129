//! Failed-authentication backoff per (user name, client address), shared by Kafka SASL and HTTP
//! Basic: each failure doubles the key's delay from [`DELAY_MIN`] up to `backoff_max`; until the
//! delay has passed, attempts for that key fail without their password being checked (so a
//! brute force costs no PBKDF2 and gains nothing from parallel connections), and every failure
//! answer is held back by the current delay. A success clears the key.
//!
//! Keys hold the SHA-256 of the user name, never the name: a name is whatever a client sent (up
//! to a SASL frame or an HTTP header), and 10,000 remembered 400 KiB names would hold 4 GiB.
//!
//! The table is bounded by `entries_max` without favouring attackers and without locking anyone
//! out: to make room, expired keys go first ([`FORGET_AFTER`]: delay passed and no failure for
//! that long), then the live key with the *smallest* delay (fewest failures; the oldest among
//! equals), both found in O(log n) through indexes. Junk names that failed once therefore push
//! out each other, never a key that has failed more often (a brute-forced key keeps its delay):
//! to evict a key that failed k times an attacker must first fail `entries_max` other keys k
//! times each. A key not in the table is never blocked, so users that did not fail log in
//! whatever an attacker does; a full table is reported on stderr.
//!
//! In-flight password checks are counted per key ([`Backoff::begin`]): at most
//! [`IN_FLIGHT_MAX`] run at once for one key; more fail unchecked (as blocked), so N parallel
//! guesses started before the first failure is recorded cost N-[`IN_FLIGHT_MAX`] nothing.
//! Time is tokio's, so tests can pause it.

use crate::client_address::client_address;
use ring::digest;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The first failure's delay (Kafka's `connection.failed.authentication.delay.ms` default).
pub const DELAY_MIN: Duration = Duration::from_millis(100);
/// A key with no failure for this long (and whose delay passed) may be forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(60);
/// Password checks of one key that may run at once (a client's connections may log in together).
pub const IN_FLIGHT_MAX: u32 = 4;
/// The table-full report is printed at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// A table key: the user name's SHA-256 and the client address as the per-address limits count
/// it (an IPv6 /64, an IPv4-mapped address as IPv4: [`client_address`]); fixed size, whatever
/// was sent.
type Key = ([u8; 32], IpAddr);

fn key(user: &str, ip: IpAddr) -> Key {
    let mut hash = [0; 32];
    hash.copy_from_slice(digest::digest(&digest::SHA256, user.as_bytes()).as_ref());
    (hash, client_address(ip))
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
    until: Instant,
    last: Instant,
}

impl Entry {
    /// When this entry may be forgotten.
    fn expires(&self) -> Instant {
        self.until.max(self.last + FORGET_AFTER)
    }
}

#[derive(Default)]
struct Table {
    entries: HashMap<Key, Entry>,
    /// `(expires, key)` of every entry: the first is the next to expire.
    by_expiry: BTreeSet<(Instant, Key)>,
    /// `(delay, last failure, key)` of every entry: the first is the least failed (oldest).
    by_weight: BTreeSet<(Duration, Instant, Key)>,
    /// Password checks running per key (entries only while above 0).
    in_flight: HashMap<Key, u32>,
    reported: Option<Instant>,
}

impl Table {
    fn remove(&mut self, k: &Key) {
        if let Some(e) = self.entries.remove(k) {
            self.by_expiry.remove(&(e.expires(), *k));
            self.by_weight.remove(&(e.delay, e.last, *k));
        }
    }

    fn put(&mut self, k: Key, e: Entry) {
        self.remove(&k);
        self.by_expiry.insert((e.expires(), k));
        self.by_weight.insert((e.delay, e.last, k));
        self.entries.insert(k, e);
    }

    /// Frees one slot for `k` when the table is full: an expired entry, else the least failed
    /// live one (reported on stderr, at most every [`REPORT_EVERY`]).
    fn make_room_for(&mut self, k: &Key, max: usize, now: Instant) {
        if self.entries.contains_key(k) {
            return;
        }
        while self.entries.len() >= max {
            let victim = match self.by_expiry.first().copied() {
                Some((at, expired)) if at <= now => expired,
                _ => {
                    self.report_full(max, now);
                    match self.by_weight.first().copied() {
                        Some((_, _, least)) => least,
                        None => return,
                    }
                }
            };
            self.remove(&victim);
        }
    }

    fn report_full(&mut self, max: usize, now: Instant) {
        if self
            .reported
            .is_none_or(|at| now.duration_since(at) >= REPORT_EVERY)
        {
            self.reported = Some(now);
            let msg = format!(
                "the failed-login table is full ({max} keys failed within {} s, \
                 auth.backoff_entries_max): the least failed keys are forgotten to make room",
                FORGET_AFTER.as_secs()
            );
            crate::log::info("busbar", "login_table_full", &msg, &[]);
        }
    }
}

/// The backoff table.
pub struct Backoff {
    table: Mutex<Table>,
    max: Duration,
    entries_max: usize,
}

/// A password check in flight for one key ([`Backoff::begin`]); ends when dropped.
pub struct Attempt<'a> {
    backoff: &'a Backoff,
    key: Key,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut t = self.backoff.table();
        if let Some(n) = t.in_flight.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                t.in_flight.remove(&self.key);
            }
        }
    }
}

impl Backoff {
    /// A table holding at most `entries_max` keys, delays up to `max`.
    pub fn new(max: Duration, entries_max: usize) -> Self {
        Self {
            table: Mutex::default(),
            max: max.max(DELAY_MIN),
            entries_max: entries_max.max(1),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True while `user` from `ip` is backing off: the attempt must fail unchecked.
    pub fn blocked(&self, user: &str, ip: IpAddr) -> bool {
        let now = Instant::now();
        let k = key(user, ip);
        self.table().entries.get(&k).is_some_and(|e| now < e.until)
    }

    /// Starts a password check of `user` from `ip`: `None` when it must fail unchecked (backing
    /// off, or [`IN_FLIGHT_MAX`] checks of the key already running).
    pub fn begin(&self, user: &str, ip: IpAddr) -> Option<Attempt<'_>> {
        let now = Instant::now();
        let k = key(user, ip);
        let mut t = self.table();
        let blocked = t.entries.get(&k).is_some_and(|e| now < e.until);
        let running = t.in_flight.entry(k).or_insert(0);
        if blocked || *running >= IN_FLIGHT_MAX {
            if *running == 0 {
                t.in_flight.remove(&k);
            }
            return None;
        }
        *running += 1;
        Some(Attempt {
            backoff: self,
            key: k,
        })
    }

    /// Records a failure; answers how long to hold the failure answer back.
    pub fn failed(&self, user: &str, ip: IpAddr) -> Duration {
        let now = Instant::now();
        let k = key(user, ip);
        let mut t = self.table();
        t.make_room_for(&k, self.entries_max, now);
        let mut e = t.entries.get(&k).copied().unwrap_or(Entry {
            delay: Duration::ZERO,
            until: now,
            last: now,
        });
        e.delay = if e.delay.is_zero() {
            DELAY_MIN
        } else {
            (e.delay * 2).min(self.max)
        };
        e.until = now + e.delay;
        e.last = now;
        t.put(k, e);
        e.delay
    }

    /// Clears `user` from `ip` after a successful authentication.
    pub fn succeeded(&self, user: &str, ip: IpAddr) {
        self.table().remove(&key(user, ip));
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.table().entries.len()
    }

    /// No key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test(start_paused = true)]
    async fn failures_double_the_delay_up_to_the_maximum_and_a_success_clears() {
        let b = Backoff::new(Duration::from_millis(500), 10);
        assert!(!b.blocked("u", IP));
        let delays: Vec<_> = (0..5).map(|_| b.failed("u", IP).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        assert!(b.blocked("u", IP));
        assert!(!b.blocked("other", IP), "per user");
        tokio::time::advance(Duration::from_millis(501)).await;
        assert!(!b.blocked("u", IP));
        b.succeeded("u", IP);
        assert_eq!(b.failed("u", IP), DELAY_MIN);
    }

    /// A client holding an IPv6 /64 cannot start each guess afresh from a new address, nor an
    /// IPv4 client by writing its address IPv4-mapped: both count as the address the
    /// connection limits count (`client_address`).
    #[tokio::test(start_paused = true)]
    async fn addresses_of_one_ipv6_64_and_mapped_ipv4_share_a_backoff() {
        let b = Backoff::new(Duration::from_millis(500), 10);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        b.failed("u", a);
        assert_eq!(b.failed("u", same_64).as_millis(), 200);
        assert!(!b.blocked("u", other_64));
        b.failed("u", IP);
        assert!(b.blocked("u", "::ffff:127.0.0.1".parse().unwrap()));
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_is_bounded_and_a_full_table_locks_nobody_out() {
        let b = Backoff::new(Duration::from_secs(5), 3);
        for i in 0..100 {
            b.failed(&format!("u{i}"), IP);
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        assert_eq!(b.len(), 3);
        assert!(
            !b.blocked("newcomer", IP),
            "a key that never failed is not blocked by a full table"
        );
        assert!(b.begin("newcomer", IP).is_some());
        assert_eq!(
            b.failed("newcomer", IP),
            DELAY_MIN,
            "tracked from its first failure"
        );
        assert_eq!(b.len(), 3);
        assert!(b.blocked("newcomer", IP));
    }

    /// R16 review (a): eviction dropped the least recently failed key, so an attacker reset its
    /// own delay by failing with junk names until its key was pushed out.
    #[tokio::test(start_paused = true)]
    async fn junk_names_do_not_evict_a_live_key() {
        let b = Backoff::new(Duration::from_secs(5), 10);
        for _ in 0..3 {
            b.failed("alice", IP);
        }
        tokio::time::advance(Duration::from_millis(500)).await;
        for i in 0..1_000 {
            b.failed(&format!("junk-{i}"), IP);
        }
        assert_eq!(b.len(), 10);
        assert_eq!(
            b.failed("alice", IP),
            Duration::from_millis(800),
            "the delay goes on"
        );
        assert!(!b.blocked("bob", IP), "and others still log in");
    }

    /// R16 review (b): blocked() was checked, then the password, then the failure recorded, so N
    /// concurrent guesses were all checked.
    #[tokio::test(start_paused = true)]
    async fn at_most_in_flight_max_checks_of_one_key_run_at_once() {
        let b = Backoff::new(Duration::from_secs(5), 10);
        let running: Vec<_> = (0..10).filter_map(|_| b.begin("alice", IP)).collect();
        assert_eq!(running.len(), IN_FLIGHT_MAX as usize);
        assert!(b.begin("bob", IP).is_some(), "per key");
        drop(running);
        let one = b.begin("alice", IP).expect("room again");
        b.failed("alice", IP);
        drop(one);
        assert!(b.begin("alice", IP).is_none(), "backing off");
    }
}
