//! Successful password checks remembered for a while (`auth.password_cache_entries`,
//! `auth.password_cache_ttl_ms`), so HTTP Basic, which sends the password with every request,
//! costs one PBKDF2 per TTL instead of one per request.
//!
//! An entry is the HMAC-SHA-256, under a key drawn at start-up and kept only in memory, of the
//! user name, the password and the salt of the credential it was checked against; no password is
//! kept. A changed credential has a new salt, so its old entries can never match; they are also
//! dropped at once ([`Verified::forget_user`]) when a user's credentials change or it is deleted.
//! Full: the entry closest to expiry goes first (only correct passwords create entries, so an
//! attacker cannot use this to push anything out).

use ring::hmac;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

type Tag = [u8; 32];

#[derive(Default)]
struct Cache {
    /// Tag -> (user, expiry).
    map: HashMap<Tag, (String, Instant)>,
    by_expiry: BTreeSet<(Instant, Tag)>,
}

/// The cache of successful password checks.
pub struct Verified {
    key: hmac::Key,
    cache: Mutex<Cache>,
    max: usize,
    ttl: Duration,
}

impl Verified {
    /// A cache of at most `max` entries living `ttl` each (`max` 0: nothing is remembered).
    pub fn new(max: usize, ttl: Duration) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("system randomness");
        Self {
            key,
            cache: Mutex::default(),
            max,
            ttl,
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tag(&self, user: &str, password: &str, salt: &[u8]) -> Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [user.as_bytes(), password.as_bytes(), salt] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let mut tag = [0; 32];
        tag.copy_from_slice(ctx.sign().as_ref());
        tag
    }

    /// Whether `password` was checked right for `user` against the credential salted `salt`
    /// within the TTL.
    pub fn hit(&self, user: &str, password: &str, salt: &[u8]) -> bool {
        if self.max == 0 {
            return false;
        }
        let tag = self.tag(user, password, salt);
        let now = Instant::now();
        self.cache()
            .map
            .get(&tag)
            .is_some_and(|(_, expires)| now < *expires)
    }

    /// Remembers a successful check.
    pub fn insert(&self, user: &str, password: &str, salt: &[u8]) {
        if self.max == 0 {
            return;
        }
        let tag = self.tag(user, password, salt);
        let expires = Instant::now() + self.ttl;
        let mut c = self.cache();
        if let Some((_, old)) = c.map.remove(&tag) {
            c.by_expiry.remove(&(old, tag));
        }
        while c.map.len() >= self.max {
            let Some(first) = c.by_expiry.pop_first() else {
                break;
            };
            c.map.remove(&first.1);
        }
        c.by_expiry.insert((expires, tag));
        c.map.insert(tag, (user.to_string(), expires));
    }

    /// Drops every entry of `user` (its credentials changed or it was deleted).
    pub fn forget_user(&self, user: &str) {
        let mut c = self.cache();
        let gone: Vec<(Instant, Tag)> = c
            .map
            .iter()
            .filter(|(_, (u, _))| u == user)
            .map(|(t, (_, e))| (*e, *t))
            .collect();
        for (e, t) in gone {
            c.map.remove(&t);
            c.by_expiry.remove(&(e, t));
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.cache().map.len()
    }

    /// No entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn entries_match_only_the_same_password_and_salt_and_expire() {
        let v = Verified::new(2, Duration::from_secs(60));
        v.insert("alice", "pw", b"salt-1");
        assert!(v.hit("alice", "pw", b"salt-1"));
        assert!(!v.hit("alice", "pw2", b"salt-1"));
        assert!(!v.hit("alice", "pw", b"salt-2"), "a new credential");
        assert!(
            !v.hit("alic", "epw", b"salt-1"),
            "fields are length-prefixed"
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(!v.hit("alice", "pw", b"salt-1"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_is_bounded_and_forgets_a_user() {
        let v = Verified::new(2, Duration::from_secs(60));
        v.insert("a", "1", b"s");
        tokio::time::advance(Duration::from_secs(1)).await;
        v.insert("b", "1", b"s");
        v.insert("c", "1", b"s");
        assert_eq!(v.len(), 2);
        assert!(!v.hit("a", "1", b"s"), "the oldest went");
        v.forget_user("b");
        assert!(!v.hit("b", "1", b"s"));
        assert!(v.hit("c", "1", b"s"));
        let off = Verified::new(0, Duration::from_secs(60));
        off.insert("a", "1", b"s");
        assert!(off.is_empty());
    }
}
