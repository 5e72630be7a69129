//! Failed-authentication backoff per (user name, client address), shared by Kafka SASL and HTTP
//! Basic: each failure doubles the key's delay from [`DELAY_MIN`] up to `backoff_max`; until the
//! delay has passed, attempts for that key fail without their password being checked (so a
//! brute force costs no PBKDF2 and gains nothing from parallel connections), and every failure
//! answer is held back by the current delay. A success clears the key.
//!
//! Keys hold the SHA-256 of the user name, never the name: a name is whatever a client sent (up
//! to a SASL frame or an HTTP header), and 10,000 remembered 400 KiB names would hold 4 GiB.
//!
//! The map is bounded by `entries_max`: when full, keys idle for [`FORGET_AFTER`] are dropped,
//! then the least recently failed one. Time is tokio's, so tests can pause it.

use ring::digest;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The first failure's delay (Kafka's `connection.failed.authentication.delay.ms` default).
pub const DELAY_MIN: Duration = Duration::from_millis(100);
/// A key with no failure for this long is forgotten when room is needed.
pub const FORGET_AFTER: Duration = Duration::from_secs(60);

/// A table key: the user name's SHA-256 and the client address (fixed size, whatever was sent).
type Key = ([u8; 32], IpAddr);

fn key(user: &str, ip: IpAddr) -> Key {
    let mut hash = [0; 32];
    hash.copy_from_slice(digest::digest(&digest::SHA256, user.as_bytes()).as_ref());
    (hash, ip)
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
    until: Instant,
    last: Instant,
}

/// The backoff table.
pub struct Backoff {
    entries: Mutex<HashMap<Key, Entry>>,
    max: Duration,
    entries_max: usize,
}

impl Backoff {
    /// A table holding at most `entries_max` keys, delays up to `max`.
    pub fn new(max: Duration, entries_max: usize) -> Self {
        Self {
            entries: Mutex::default(),
            max: max.max(DELAY_MIN),
            entries_max: entries_max.max(1),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True while `user` from `ip` is backing off: the attempt must fail unchecked.
    pub fn blocked(&self, user: &str, ip: IpAddr) -> bool {
        let now = Instant::now();
        self.map()
            .get(&key(user, ip))
            .is_some_and(|e| now < e.until)
    }

    /// Records a failure; answers how long to hold the failure answer back.
    pub fn failed(&self, user: &str, ip: IpAddr) -> Duration {
        let now = Instant::now();
        let mut map = self.map();
        let key = key(user, ip);
        if !map.contains_key(&key) && map.len() >= self.entries_max {
            evict(&mut map, now);
        }
        let e = map.entry(key).or_insert(Entry {
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
        e.delay
    }

    /// Clears `user` from `ip` after a successful authentication.
    pub fn succeeded(&self, user: &str, ip: IpAddr) {
        self.map().remove(&key(user, ip));
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// No key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes room for one key: drops the idle ones, else the least recently failed.
fn evict(map: &mut HashMap<Key, Entry>, now: Instant) {
    let before = map.len();
    map.retain(|_, e| now.duration_since(e.last) < FORGET_AFTER);
    if map.len() < before {
        return;
    }
    if let Some(oldest) = map.iter().min_by_key(|(_, e)| e.last).map(|(k, _)| *k) {
        map.remove(&oldest);
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

    #[tokio::test(start_paused = true)]
    async fn the_table_is_bounded() {
        let b = Backoff::new(Duration::from_secs(5), 3);
        for i in 0..100 {
            b.failed(&format!("u{i}"), IP);
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        assert_eq!(b.len(), 3);
        assert!(b.blocked("u99", IP), "the newest is kept");
        assert!(!b.blocked("u0", IP), "the oldest went");
    }
}
