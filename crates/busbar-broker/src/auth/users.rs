//! The durable user store: SCRAM credentials only (salt, iterations, StoredKey, ServerKey per
//! mechanism; never a password), one row per user in the internal compacted log
//! `internal/users` (a tombstone deletes). Writes are serialised by one lock and applied to the
//! in-memory table only once durable, so a failed write answers an error and changes nothing.

use super::scram::{Credential, Mechanism};
use super::AuthError;
use crate::kvlog::{KvLog, SharedKv};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use busbar_log::disk::Storage;
use busbar_log::Clock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Longest user name, bytes.
pub const USER_NAME_BYTES_MAX: usize = 255;
/// Longest password, bytes.
pub const PASSWORD_BYTES_MAX: usize = 1024;

/// A user's credentials, by mechanism.
pub type User = BTreeMap<Mechanism, Credential>;

/// A user as listed: the name and each mechanism's iteration count (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub mechanisms: Vec<(Mechanism, u32)>,
}

/// One credential as stored (base64 fields).
#[derive(Serialize, Deserialize)]
struct StoredCredential {
    salt: String,
    iterations: u32,
    stored_key: String,
    server_key: String,
}

fn encode(user: &User) -> Vec<u8> {
    let map: BTreeMap<&str, StoredCredential> = user
        .iter()
        .map(|(m, c)| {
            let s = StoredCredential {
                salt: B64.encode(&c.salt),
                iterations: c.iterations,
                stored_key: B64.encode(&c.stored_key),
                server_key: B64.encode(&c.server_key),
            };
            (m.name(), s)
        })
        .collect();
    serde_json::to_vec(&map).expect("credentials encode")
}

fn decode(bytes: &[u8]) -> Option<User> {
    let map: BTreeMap<String, StoredCredential> = serde_json::from_slice(bytes).ok()?;
    map.into_iter()
        .map(|(name, s)| {
            let c = Credential {
                salt: B64.decode(s.salt).ok()?,
                iterations: s.iterations,
                stored_key: B64.decode(s.stored_key).ok()?,
                server_key: B64.decode(s.server_key).ok()?,
            };
            Some((Mechanism::from_name(&name)?, c))
        })
        .collect()
}

/// Checks a user name: 1 to `USER_NAME_BYTES_MAX` bytes, no control characters, no `:` (HTTP
/// Basic splits there).
pub fn validate_name(name: &str) -> Result<(), AuthError> {
    let why = if name.is_empty() {
        "it is empty"
    } else if name.len() > USER_NAME_BYTES_MAX {
        "it is longer than 255 bytes"
    } else if name.chars().any(|c| c.is_control() || c == ':') {
        "it contains ':' or a control character"
    } else {
        return Ok(());
    };
    Err(AuthError::InvalidName(format!("{name:?}: {why}")))
}

/// Checks a password: 1 to `PASSWORD_BYTES_MAX` bytes.
pub fn validate_password(password: &str) -> Result<(), AuthError> {
    if password.is_empty() || password.len() > PASSWORD_BYTES_MAX {
        return Err(AuthError::InvalidPassword(format!(
            "a password must have 1 to {PASSWORD_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

/// The users `log` holds, and the damaged ranges it skipped.
fn replay(log: &KvLog) -> crate::Result<(BTreeMap<String, User>, Vec<String>)> {
    let mut table = BTreeMap::new();
    let damage = log.replay(|_, key, value| {
        let Ok(name) = std::str::from_utf8(key) else {
            return;
        };
        match value.and_then(decode) {
            Some(u) => table.insert(name.to_string(), u),
            None => table.remove(name),
        };
    })?;
    Ok((table, damage))
}

/// The durable store of users.
pub struct UserStore {
    log: KvLog,
    table: Arc<Mutex<BTreeMap<String, User>>>,
    /// Held across each write, so writes apply in log order and read-modify-write is atomic.
    writing: tokio::sync::Mutex<()>,
    damage: Vec<String>,
    password_checks: AtomicU64,
    /// Most users that may exist (`auth.users_max`); creating one more is refused.
    users_max: usize,
}

impl UserStore {
    /// Opens the store in `storage`, replaying its log.
    pub fn open(storage: Arc<dyn Storage>, clock: Arc<dyn Clock>) -> crate::Result<Self> {
        let log = KvLog::open(storage, clock)?;
        let (table, damage) = replay(&log)?;
        Ok(Self {
            log,
            table: Arc::new(Mutex::new(table)),
            writing: Default::default(),
            damage,
            password_checks: AtomicU64::new(0),
            users_max: usize::MAX,
        })
    }

    /// Sets `auth.users_max`: a write creating a user past it is refused (users stored by an
    /// earlier configuration stay).
    pub fn with_users_max(mut self, users_max: usize) -> Self {
        self.users_max = users_max;
        self
    }

    /// Damaged ranges of the users log skipped when it was opened.
    pub fn damage(&self) -> &[String] {
        &self.damage
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, User>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// No user exists.
    pub fn is_empty(&self) -> bool {
        self.table().is_empty()
    }

    /// One credential of a user.
    pub fn credential(&self, name: &str, m: Mechanism) -> Option<Credential> {
        self.table().get(name)?.get(&m).cloned()
    }

    /// Whether the user exists (with any credential).
    pub fn exists(&self, name: &str) -> bool {
        self.table().contains_key(name)
    }

    /// Every user, by name.
    pub fn list(&self) -> Vec<UserInfo> {
        self.table()
            .iter()
            .map(|(name, u)| UserInfo {
                name: name.clone(),
                mechanisms: u.iter().map(|(m, c)| (*m, c.iterations)).collect(),
            })
            .collect()
    }

    /// True when `password` is the user's (checked against the first of its credentials).
    /// Whether no user was ever written here (the first start): a table emptied by deleting
    /// every user is not fresh.
    pub fn fresh(&self) -> bool {
        !self.log.ever_written()
    }

    /// Passwords checked so far ([`UserStore::verify_password`], one PBKDF2 each).
    pub fn password_checks(&self) -> u64 {
        self.password_checks.load(Ordering::Relaxed)
    }

    /// The salt of the credential [`UserStore::verify_password`] checks a password against
    /// (`None`: no such user).
    pub fn password_salt(&self, name: &str) -> Option<Vec<u8>> {
        let table = self.table();
        table
            .get(name)
            .and_then(|u| u.values().next().map(|c| c.salt.clone()))
    }

    /// Checks `password` against `name`'s first credential (a PBKDF2; counted).
    pub fn verify_password(&self, name: &str, password: &str) -> bool {
        self.password_checks.fetch_add(1, Ordering::Relaxed);
        let first = self
            .table()
            .get(name)
            .and_then(|u| u.iter().next().map(|(m, c)| (*m, c.clone())));
        first.is_some_and(|(m, c)| c.verify_password(m, password))
    }

    /// Changes one user's row with `f` (which sees the current credentials, `None` when the user
    /// does not exist, and answers the new ones, `None` deleting), durably.
    pub async fn change(
        &self,
        name: &str,
        f: impl FnOnce(Option<User>) -> Result<Option<User>, AuthError>,
    ) -> Result<(), AuthError> {
        let _w = self.writing.lock().await;
        // Cluster mode: decided on the cluster's latest (a version read when nothing changed);
        // the write is refused if another broker writes meanwhile.
        let _ = self.reload_locked().await;
        let current = self.table().get(name).cloned();
        let creates = current.is_none();
        let next = f(current)?;
        if creates && next.is_some() && self.table().len() >= self.users_max {
            return Err(AuthError::LimitReached {
                what: format!("user {name:?}"),
                limit: self.users_max,
                setting: "auth.users_max",
            });
        }
        let row = (name.as_bytes().to_vec(), next.as_ref().map(encode));
        let table = self.table.clone();
        let key = name.to_string();
        let written = self
            .log
            .write(vec![row], move |written| {
                if written.len() == 1 {
                    let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
                    match next {
                        Some(u) => t.insert(key, u),
                        None => t.remove(&key),
                    };
                }
            })
            .await;
        if written.is_err() {
            let _ = self.reload_locked().await;
        }
        written.map_err(AuthError::Storage)
    }

    /// Cluster mode: the users are those of the shared store's space `users` from now on.
    pub async fn share(&self, kv: Arc<dyn SharedKv>) -> crate::Result<()> {
        let _w = self.writing.lock().await;
        self.log.share(kv, "users").await?;
        *self.table() = replay(&self.log)?.0;
        Ok(())
    }

    /// Cluster mode: reads the users again if another broker changed them.
    pub async fn refresh(&self) -> crate::Result<()> {
        let _w = self.writing.lock().await;
        self.reload_locked().await
    }

    /// [`UserStore::refresh`] with the write lock held (also after a failed write: another
    /// broker's write may have refused it).
    async fn reload_locked(&self) -> crate::Result<()> {
        (self.log)
            .refresh_with(|log| {
                *self.table() = replay(log)?.0;
                Ok(())
            })
            .await
    }

    /// The stored rows (`busbar cluster import`).
    pub fn rows(&self) -> crate::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.log.rows()
    }

    /// Compacts the log.
    pub fn maintain(&self) -> crate::Result<()> {
        self.log.compact()
    }

    /// Clean shutdown.
    pub fn close(&self) -> crate::Result<()> {
        self.log.close()
    }
}
