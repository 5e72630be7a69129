//! `[auth]`: authentication, users, tokens and ACL limits (issue 16); off by default, when every
//! request is allowed as before. Defaults come from the broker's [`AuthConfig`].

use anyhow::{anyhow, Result};
use busbar_broker::auth::AuthConfig;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[auth]`: authentication (off by default: every request is allowed, as before).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Check credentials: SASL on SASL listeners, HTTP Basic on the HTTP API.
    pub enabled: bool,
    /// User names allowed everything (`User:` prefix accepted).
    pub super_users: Vec<String>,
    /// Allow what no ACL covers (applies once ACLs exist).
    pub allow_if_no_acl: bool,
    /// PBKDF2 iterations of credentials made from a password (4096..=16384).
    pub scram_iterations: u32,
    /// Longest failed-login backoff of one (user, address), milliseconds.
    pub backoff_max_ms: u64,
    /// Most (user, address) pairs whose failed logins are remembered.
    pub backoff_entries_max: u64,
    /// Longest life of an HTTP API token (`POST /tokens`), seconds.
    pub token_ttl_max_s: u64,
    /// Most users that may exist (`POST /users` answers 409 past it).
    pub users_max: u64,
    /// Most live API tokens one user may have (`POST /tokens` answers 409 past it).
    pub tokens_per_user_max: u64,
    /// Most live API tokens of all users together.
    pub tokens_max: u64,
    /// Most ACLs that may exist.
    pub acls_max: u64,
    /// Largest answer of one ACL describe (Kafka DescribeAcls, `GET /acls`), bytes.
    pub acls_answer_bytes_max: u64,
    /// `/metrics` answers without credentials (false: like every other route).
    pub metrics_public: bool,
    /// Successful password checks remembered (HTTP Basic); 0: none.
    pub password_cache_entries: u64,
    /// How long one is remembered, milliseconds.
    pub password_cache_ttl_ms: u64,
}

impl Default for AuthSection {
    fn default() -> Self {
        let a = AuthConfig::default();
        AuthSection {
            enabled: a.enabled,
            super_users: a.super_users.clone(),
            allow_if_no_acl: a.allow_if_no_acl,
            scram_iterations: a.scram_iterations,
            backoff_max_ms: a.backoff_max.as_millis() as u64,
            backoff_entries_max: a.backoff_entries_max as u64,
            token_ttl_max_s: a.token_ttl_max.as_secs(),
            users_max: a.users_max as u64,
            tokens_per_user_max: a.tokens_per_user_max as u64,
            tokens_max: a.tokens_max as u64,
            acls_max: a.acls_max as u64,
            acls_answer_bytes_max: a.acls_answer_bytes_max as u64,
            metrics_public: a.metrics_public,
            password_cache_entries: a.password_cache_entries as u64,
            password_cache_ttl_ms: a.password_cache_ttl.as_millis() as u64,
        }
    }
}

impl AuthSection {
    /// The SCRAM iteration count and range checks.
    pub fn validate(&self) -> Result<()> {
        busbar_broker::auth::scram::check_iterations(self.scram_iterations as i64)
            .map_err(|e| anyhow!("auth.scram_iterations: {e}"))?;
        let checks: &[(&str, u64, u64, u64)] = &[
            ("auth.backoff_max_ms", self.backoff_max_ms, 100, 3_600_000),
            (
                "auth.backoff_entries_max",
                self.backoff_entries_max,
                1,
                10_000_000,
            ),
            (
                "auth.token_ttl_max_s",
                self.token_ttl_max_s,
                1,
                10 * 366 * 86_400,
            ),
            ("auth.users_max", self.users_max, 1, 1_000_000),
            (
                "auth.tokens_per_user_max",
                self.tokens_per_user_max,
                1,
                100_000,
            ),
            ("auth.tokens_max", self.tokens_max, 1, 10_000_000),
            ("auth.acls_max", self.acls_max, 1, 1_000_000),
            (
                "auth.acls_answer_bytes_max",
                self.acls_answer_bytes_max,
                64 << 10,
                1 << 30,
            ),
            (
                "auth.password_cache_entries",
                self.password_cache_entries,
                0,
                1_000_000,
            ),
            (
                "auth.password_cache_ttl_ms",
                self.password_cache_ttl_ms,
                1000,
                86_400_000,
            ),
        ];
        crate::config::check_ranges(checks)
    }

    /// The broker's authentication settings.
    pub fn broker_config(&self) -> AuthConfig {
        AuthConfig {
            enabled: self.enabled,
            super_users: self.super_users.clone(),
            allow_if_no_acl: self.allow_if_no_acl,
            scram_iterations: self.scram_iterations,
            backoff_max: Duration::from_millis(self.backoff_max_ms),
            backoff_entries_max: self.backoff_entries_max as usize,
            token_ttl_max: Duration::from_secs(self.token_ttl_max_s),
            users_max: self.users_max as usize,
            tokens_per_user_max: self.tokens_per_user_max as usize,
            tokens_max: self.tokens_max as usize,
            acls_max: self.acls_max as usize,
            acls_answer_bytes_max: self.acls_answer_bytes_max as usize,
            metrics_public: self.metrics_public,
            password_cache_entries: self.password_cache_entries as usize,
            password_cache_ttl: Duration::from_millis(self.password_cache_ttl_ms),
        }
    }
}
