//! HTTP API tokens: named, expiring, revocable, each bound to a user. The secret is `bb_` and 32
//! random bytes (base64url), shown once (the prefix lets secret scanners find leaked tokens, and
//! a token never starts with `-`, which a command line would take for an option); only its SHA-256 is stored, as the key of a row in the internal
//! compacted log `internal/tokens` (a tombstone revokes). Writes are serialised and applied to
//! memory only once durable, so a failed write changes nothing. An expired token stops working at
//! once and its row is dropped with the next token written. At most [`Limits`] live tokens exist
//! (`auth.tokens_per_user_max` per user, `auth.tokens_max` in all), so memory and the log are
//! bounded whatever the number of users.

use super::AuthError;
use crate::kvlog::{KvLog, SharedKv};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use busbar_log::disk::Storage;
use busbar_log::Clock;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Bytes of randomness in a token's secret.
const SECRET_BYTES: usize = 32;
/// Longest token name, bytes.
pub const TOKEN_NAME_BYTES_MAX: usize = 128;

/// A token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub name: String,
    pub user: String,
    pub created_ms: i64,
    pub expires_ms: i64,
}

/// A new token: its description and the secret, shown this once.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub info: TokenInfo,
    pub secret: String,
}

fn digest(secret: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

type Table = HashMap<String, TokenInfo>;

/// How many live tokens may exist (`auth.tokens_per_user_max`, `auth.tokens_max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_user: usize,
    pub total: usize,
}

/// The tokens `log` holds.
fn replay(log: &KvLog) -> crate::Result<Table> {
    let mut table = HashMap::new();
    log.replay(|_, key, value| {
        let Ok(key) = std::str::from_utf8(key) else {
            return;
        };
        match value.and_then(|v| serde_json::from_slice::<TokenInfo>(v).ok()) {
            Some(t) => table.insert(key.to_string(), t),
            None => table.remove(key),
        };
    })?;
    Ok(table)
}

/// The durable token store.
pub struct TokenStore {
    log: KvLog,
    clock: Arc<dyn Clock>,
    /// SHA-256 of the secret (hex) -> token.
    table: Arc<Mutex<Table>>,
    writing: tokio::sync::Mutex<()>,
}

impl TokenStore {
    /// Opens the store, replaying its log.
    pub fn open(storage: Arc<dyn Storage>, clock: Arc<dyn Clock>) -> crate::Result<Self> {
        let log = KvLog::open(storage, clock.clone())?;
        let table = replay(&log)?;
        Ok(Self {
            log,
            clock,
            table: Arc::new(Mutex::new(table)),
            writing: Default::default(),
        })
    }

    /// Cluster mode: the tokens are those of the shared store's space `tokens` from now on.
    pub async fn share(&self, kv: Arc<dyn SharedKv>) -> crate::Result<()> {
        let _w = self.writing.lock().await;
        self.log.share(kv, "tokens").await?;
        *self.table() = replay(&self.log)?;
        Ok(())
    }

    /// Cluster mode: reads the tokens again if another broker changed them.
    pub async fn refresh(&self) -> crate::Result<()> {
        let _w = self.writing.lock().await;
        self.reload_locked().await
    }

    /// [`TokenStore::refresh`] with the write lock held (also after a failed write).
    async fn reload_locked(&self) -> crate::Result<()> {
        (self.log)
            .refresh_with(|log| {
                *self.table() = replay(log)?;
                Ok(())
            })
            .await
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The user a live token belongs to.
    pub fn user_of(&self, secret: &str) -> Option<String> {
        let now = self.clock.now_ms();
        let t = self.table();
        t.get(&digest(secret))
            .filter(|t| t.expires_ms > now)
            .map(|t| t.user.clone())
    }

    /// `user`'s live tokens, by name.
    pub fn list(&self, user: &str) -> Vec<TokenInfo> {
        let now = self.clock.now_ms();
        let mut out: Vec<TokenInfo> = self
            .table()
            .values()
            .filter(|t| t.user == user && t.expires_ms > now)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Writes `rows` (key, token or `None`) durably, then applies them.
    async fn write(&self, rows: Vec<(String, Option<TokenInfo>)>) -> Result<(), AuthError> {
        let encoded = rows
            .iter()
            .map(|(k, v)| {
                let value = v
                    .as_ref()
                    .map(|t| serde_json::to_vec(t).expect("token encodes"));
                (k.as_bytes().to_vec(), value)
            })
            .collect();
        let table = self.table.clone();
        let n = rows.len();
        let written = self
            .log
            .write(encoded, move |written| {
                if written.len() == n {
                    let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
                    for (k, v) in rows {
                        match v {
                            Some(info) => t.insert(k, info),
                            None => t.remove(&k),
                        };
                    }
                }
            })
            .await;
        if written.is_err() {
            let _ = self.reload_locked().await;
        }
        written.map_err(AuthError::Storage)
    }

    /// Whether any token (live or expired) of `user` is stored.
    pub fn has_any(&self, user: &str) -> bool {
        self.table().values().any(|t| t.user == user)
    }

    /// Refuses a new token of `user` when it would pass `limits` (expired tokens, dropped with
    /// the new one, do not count).
    fn check_limits(&self, user: &str, limits: Limits) -> Result<(), AuthError> {
        let now = self.clock.now_ms();
        let t = self.table();
        let live = || t.values().filter(|t| t.expires_ms > now);
        let mine = live().filter(|t| t.user == user).count();
        if mine >= limits.per_user {
            return Err(AuthError::LimitReached {
                what: format!("user {user:?} has {mine} live API tokens"),
                limit: limits.per_user,
                setting: "auth.tokens_per_user_max",
            });
        }
        let all = live().count();
        if all >= limits.total {
            return Err(AuthError::LimitReached {
                what: format!("{all} live API tokens exist"),
                limit: limits.total,
                setting: "auth.tokens_max",
            });
        }
        Ok(())
    }

    /// Makes token `name` for `user`, valid for `ttl_ms`, within `limits`; expired tokens are
    /// dropped with it. `exists` tells whether the user exists, asked under the write lock (which
    /// [`TokenStore::revoke_all`] takes too), so no token outlives its user's revocation.
    pub async fn create(
        &self,
        user: &str,
        name: &str,
        ttl_ms: i64,
        limits: Limits,
        exists: impl FnOnce() -> bool,
    ) -> Result<NewToken, AuthError> {
        if name.is_empty()
            || name.len() > TOKEN_NAME_BYTES_MAX
            || name.chars().any(|c| c.is_control() || c == '/')
        {
            return Err(AuthError::InvalidName(format!(
                "token name {name:?}: 1 to {TOKEN_NAME_BYTES_MAX} bytes, no '/' or control \
                 characters"
            )));
        }
        let _w = self.writing.lock().await;
        // Cluster mode: decided on the cluster's latest (refused if another broker writes
        // meanwhile).
        let _ = self.reload_locked().await;
        if !exists() {
            return Err(AuthError::UnknownUser(user.to_string()));
        }
        if self.list(user).iter().any(|t| t.name == name) {
            return Err(AuthError::TokenExists(name.to_string()));
        }
        self.check_limits(user, limits)?;
        let now = self.clock.now_ms();
        let mut rows: Vec<(String, Option<TokenInfo>)> = self
            .table()
            .iter()
            .filter(|(_, t)| t.expires_ms <= now)
            .map(|(k, _)| (k.clone(), None))
            .collect();
        let secret = format!("bb_{}", B64URL.encode(super::scram::random(SECRET_BYTES)?));
        let info = TokenInfo {
            name: name.to_string(),
            user: user.to_string(),
            created_ms: now,
            expires_ms: now.saturating_add(ttl_ms),
        };
        rows.push((digest(&secret), Some(info.clone())));
        self.write(rows).await?;
        Ok(NewToken { info, secret })
    }

    /// Revokes `user`'s token `name`.
    pub async fn revoke(&self, user: &str, name: &str) -> Result<(), AuthError> {
        let _w = self.writing.lock().await;
        // Cluster mode: decided on the cluster's latest (refused if another broker writes
        // meanwhile).
        let _ = self.reload_locked().await;
        let key = self
            .table()
            .iter()
            .find(|(_, t)| t.user == user && t.name == name)
            .map(|(k, _)| k.clone());
        let Some(key) = key else {
            return Err(AuthError::UnknownToken(name.to_string()));
        };
        self.write(vec![(key, None)]).await
    }

    /// Revokes every token of `user` (the user was deleted).
    pub async fn revoke_all(&self, user: &str) -> Result<(), AuthError> {
        let _w = self.writing.lock().await;
        // Cluster mode: decided on the cluster's latest (refused if another broker writes
        // meanwhile).
        let _ = self.reload_locked().await;
        let rows: Vec<_> = self
            .table()
            .iter()
            .filter(|(_, t)| t.user == user)
            .map(|(k, _)| (k.clone(), None))
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        self.write(rows).await
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
