//! Authentication shared by every front end: the `[auth]` settings, the durable user store
//! (SCRAM credentials, `users`), the SCRAM algorithm (`scram`) and the failed-login backoff
//! (`backoff`). Front ends carry the protocol (Kafka SASL, HTTP Basic) and ask here; they map
//! [`AuthError`] to their codes. With `enabled = false` (the default) nothing is checked.
//!
//! Principals are user names (`alice`; Kafka's `User:alice`). Until ACLs exist, only super users
//! may manage users when authentication is on.

pub mod acl;
pub mod acls;
pub mod backoff;
pub mod scram;
pub mod tokens;
pub mod users;
pub mod verified;

use crate::error::BrokerError;
use scram::{Credential, Mechanism};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use users::{UserInfo, UserStore};

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Check credentials on SASL listeners and HTTP. Default false (everything is allowed).
    pub enabled: bool,
    /// Principals allowed everything (user names; a `User:` prefix is accepted).
    pub super_users: Vec<String>,
    /// Allow what no ACL covers (parsed now; applies once ACLs exist). Default false.
    pub allow_if_no_acl: bool,
    /// PBKDF2 iterations of credentials made from a password (HTTP, CLI, start-up admin).
    /// Default 4096 (Kafka's minimum and `kafka-configs`' default).
    pub scram_iterations: u32,
    /// Longest failed-login backoff of one (user, address). Default 5 s.
    pub backoff_max: Duration,
    /// Most (user, address) pairs whose failures are remembered. Default 10,000.
    pub backoff_entries_max: usize,
    /// Longest life of an HTTP API token. Default 90 days.
    pub token_ttl_max: Duration,
    /// Most users that may exist (creating one more is refused). Default 10,000.
    pub users_max: usize,
    /// Most live API tokens one user may have. Default 100.
    pub tokens_per_user_max: usize,
    /// Most live API tokens in all (every user's). Default 100,000.
    pub tokens_max: usize,
    /// Most ACLs that may exist. Default 10,000.
    pub acls_max: usize,
    /// Largest answer of one ACL describe (Kafka DescribeAcls, `GET /acls`), counted by
    /// `AclBinding::answer_bytes`; a filter matching more is refused. Default 16 MiB.
    pub acls_answer_bytes_max: usize,
    /// `/metrics` answers without credentials (true, the default); false: it needs them like
    /// every other route.
    pub metrics_public: bool,
    /// Successful password checks remembered (HTTP Basic sends the password with every request;
    /// `verified.rs`). Default 1,000; 0 turns the cache off.
    pub password_cache_entries: usize,
    /// How long one is remembered. Default 5 minutes.
    pub password_cache_ttl: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            super_users: Vec::new(),
            allow_if_no_acl: false,
            scram_iterations: scram::ITERATIONS_MIN,
            backoff_max: Duration::from_secs(5),
            backoff_entries_max: 10_000,
            token_ttl_max: Duration::from_secs(90 * 86_400),
            users_max: 10_000,
            tokens_per_user_max: 100,
            tokens_max: 100_000,
            acls_max: 10_000,
            acls_answer_bytes_max: 16 << 20,
            metrics_public: true,
            password_cache_entries: 1_000,
            password_cache_ttl: Duration::from_secs(300),
        }
    }
}

/// What an authentication or user operation can answer.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Bad or unknown credentials, or a key backing off; `delay` is how long to hold the answer.
    #[error("authentication failed: invalid user name or password")]
    Failed { delay: Duration },
    #[error("invalid user name {0}")]
    InvalidName(String),
    #[error("{0}")]
    InvalidPassword(String),
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    #[error("user {user:?} has no {mechanism} credential")]
    UnknownCredential {
        user: String,
        mechanism: &'static str,
    },
    #[error("token {0:?} already exists")]
    TokenExists(String),
    #[error("unknown token {0:?}")]
    UnknownToken(String),
    /// A configured limit (`auth.tokens_per_user_max`, ...) is reached; nothing was stored.
    #[error("{what}: the limit of {limit} is reached ({setting})")]
    LimitReached {
        what: String,
        limit: usize,
        setting: &'static str,
    },
    #[error("unacceptable credential: {0}")]
    Unacceptable(#[from] scram::ScramError),
    #[error("invalid ACL: {0}")]
    InvalidAcl(String),
    #[error(transparent)]
    Storage(BrokerError),
}

/// Authentication state: settings, users, backoff.
pub struct Auth {
    config: AuthConfig,
    users: UserStore,
    tokens: tokens::TokenStore,
    backoff: backoff::Backoff,
    acls: acls::AclStore,
    verified: verified::Verified,
}

impl Auth {
    pub(crate) fn new(
        config: AuthConfig,
        users: UserStore,
        tokens: tokens::TokenStore,
        acls: acls::AclStore,
    ) -> Self {
        let backoff = backoff::Backoff::new(config.backoff_max, config.backoff_entries_max);
        let verified =
            verified::Verified::new(config.password_cache_entries, config.password_cache_ttl);
        Self {
            verified,
            config,
            users,
            tokens,
            backoff,
            acls,
        }
    }

    /// Cluster mode: users, tokens and ACLs are the shared store's from now on.
    pub(crate) async fn share(&self, kv: &Arc<dyn crate::kvlog::SharedKv>) -> crate::Result<()> {
        self.users.share(kv.clone()).await?;
        self.tokens.share(kv.clone()).await?;
        self.acls.share(kv.clone()).await
    }

    /// Cluster mode: reads shared space `space` again if it is one of these tables and another
    /// broker changed it.
    pub(crate) async fn refresh(&self, space: &str) -> crate::Result<()> {
        match space {
            "users" => self.users.refresh().await,
            "tokens" => self.tokens.refresh().await,
            "acls" => self.acls.refresh().await,
            _ => Ok(()),
        }
    }

    /// The stored rows of users and ACLs, by shared space (`busbar cluster import`; API tokens
    /// are not copied: a token names a user, and the cluster may keep its own user of that name).
    pub(crate) fn rows(&self) -> crate::Result<crate::kvlog::SpaceRows> {
        Ok(vec![
            ("users", self.users.rows()?),
            ("acls", self.acls.rows()?),
        ])
    }

    /// The ACLs.
    pub fn acls(&self) -> &acls::AclStore {
        &self.acls
    }

    /// Decides whether `user` (`None`: unauthenticated, [`acl::ANONYMOUS`]) connecting from
    /// `host` may do `op` on resource `name` of type `ty`: everything while authentication is
    /// off, super users always, else the ACLs (see [`acl::AclSet::authorize`]).
    pub fn authorize(
        &self,
        user: Option<&str>,
        host: IpAddr,
        op: acl::Operation,
        ty: acl::ResourceType,
        name: &str,
    ) -> acl::Decision {
        let who = acl::Requester {
            user: user.unwrap_or(acl::ANONYMOUS),
            host,
        };
        acl::decide(&self.acls.snapshot(), &self.config, who, op, ty, name)
    }

    /// Whether `user` may do `op` on some resource of type `ty` (idempotent producers: WRITE on
    /// any topic, KIP-679).
    pub fn authorize_any(
        &self,
        user: Option<&str>,
        host: IpAddr,
        op: acl::Operation,
        ty: acl::ResourceType,
    ) -> bool {
        let who = acl::Requester {
            user: user.unwrap_or(acl::ANONYMOUS),
            host,
        };
        !self.config.enabled
            || acl::is_super(&self.config, who.user)
            || (self.acls.snapshot()).allows_any(who, op, ty, self.config.allow_if_no_acl)
    }

    /// The HTTP API tokens.
    pub fn tokens(&self) -> &tokens::TokenStore {
        &self.tokens
    }

    /// The user of a live HTTP API token (`Authorization: Bearer`). A token of a user that does
    /// not exist never works (a crash between deleting a user and revoking its tokens leaves
    /// them stored; they are revoked before a user of that name is created again).
    pub fn authenticate_token(&self, secret: &str) -> Option<String> {
        self.tokens.user_of(secret).filter(|u| self.users.exists(u))
    }

    /// Makes token `name` for `user` (who must exist), valid `ttl` (at most `token_ttl_max`),
    /// unless `user` has `tokens_per_user_max` live tokens or all users `tokens_max`. The user
    /// is checked under the token store's write lock, so a token is never written after
    /// [`Auth::delete_user`] revoked the user's tokens.
    pub async fn create_token(
        &self,
        user: &str,
        name: &str,
        ttl: Duration,
    ) -> Result<tokens::NewToken, AuthError> {
        if ttl.is_zero() || ttl > self.config.token_ttl_max {
            return Err(AuthError::InvalidPassword(format!(
                "a token lives 1 s to auth.token_ttl_max_s ({} s)",
                self.config.token_ttl_max.as_secs()
            )));
        }
        let limits = tokens::Limits {
            per_user: self.config.tokens_per_user_max,
            total: self.config.tokens_max,
        };
        let exists = || self.users.exists(user);
        (self.tokens)
            .create(user, name, ttl.as_millis() as i64, limits, exists)
            .await
    }

    /// The settings.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Whether credentials are checked.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Whether `user` is a super user.
    pub fn is_super(&self, user: &str) -> bool {
        self.config
            .super_users
            .iter()
            .any(|s| s.strip_prefix("User:").unwrap_or(s) == user)
    }

    /// May `principal` manage users? Everyone while authentication is off; super users only
    /// while it is on (until ACLs exist).
    pub fn may_manage_users(&self, principal: Option<&str>) -> bool {
        !self.enabled() || principal.is_some_and(|p| self.is_super(p))
    }

    /// The user store.
    pub fn users(&self) -> &UserStore {
        &self.users
    }

    /// The failed-login backoff.
    pub fn backoff(&self) -> &backoff::Backoff {
        &self.backoff
    }

    /// Every user (names and mechanisms).
    pub fn list_users(&self) -> Vec<UserInfo> {
        self.users.list()
    }

    /// Checks a password (PLAIN, HTTP Basic) from `ip`, with backoff: unchecked while the key
    /// backs off or [`backoff::IN_FLIGHT_MAX`] checks of it run; a check that succeeded within
    /// `password_cache_ttl` is not repeated (no PBKDF2).
    pub fn authenticate_password(
        &self,
        user: &str,
        password: &str,
        ip: IpAddr,
    ) -> Result<(), AuthError> {
        let failed = || AuthError::Failed {
            delay: self.backoff.failed(user, ip),
        };
        if self.backoff.blocked(user, ip) {
            return Err(failed());
        }
        let salt = self.users.password_salt(user);
        if let Some(salt) = salt.as_deref() {
            if self.verified.hit(user, password, salt) {
                self.backoff.succeeded(user, ip);
                return Ok(());
            }
        }
        // Held until the outcome is recorded, so a concurrent guess sees it.
        let Some(_attempt) = self.backoff.begin(user, ip) else {
            return Err(failed());
        };
        if !self.users.verify_password(user, password) {
            return Err(failed());
        }
        if let Some(salt) = salt.as_deref() {
            self.verified.insert(user, password, salt);
        }
        self.backoff.succeeded(user, ip);
        Ok(())
    }

    /// The cache of successful password checks.
    pub fn verified(&self) -> &verified::Verified {
        &self.verified
    }

    /// Records the outcome of a SCRAM exchange for `user` from `ip`; a failure answers the delay.
    pub fn scram_outcome(&self, user: &str, ip: IpAddr, ok: bool) -> Result<(), AuthError> {
        if ok {
            self.backoff.succeeded(user, ip);
            Ok(())
        } else {
            Err(AuthError::Failed {
                delay: self.backoff.failed(user, ip),
            })
        }
    }

    /// Creates `user` or changes its password: a fresh credential for every mechanism. Answers
    /// true when the user is new.
    pub async fn set_password(&self, user: &str, password: &str) -> Result<bool, AuthError> {
        users::validate_name(user)?;
        users::validate_password(password)?;
        let i = self.config.scram_iterations as i64;
        let mut fresh = users::User::new();
        for m in Mechanism::ALL {
            fresh.insert(m, Credential::generate(m, password, i)?);
        }
        self.revoke_leftover_tokens(user).await?;
        let mut created = false;
        let changed = self
            .users
            .change(user, |old| {
                created = old.is_none();
                Ok(Some(fresh))
            })
            .await;
        self.verified.forget_user(user);
        changed?;
        Ok(created)
    }

    /// Deletes `user` and all its credentials, then its tokens. Two durable writes, in an order
    /// that is safe to stop between: the tokens stop working with the user (a token works only
    /// while its user exists), and tokens left by a crash (or a failed second write) are revoked
    /// before a user of that name exists again ([`Auth::revoke_leftover_tokens`]).
    pub async fn delete_user(&self, user: &str) -> Result<(), AuthError> {
        self.users
            .change(user, |old| match old {
                Some(_) => Ok(None),
                None => Err(AuthError::UnknownUser(user.to_string())),
            })
            .await?;
        self.verified.forget_user(user);
        self.tokens.revoke_all(user).await
    }

    /// Revokes the tokens stored for `user` while no such user exists (left by a deletion that
    /// stopped between its two writes), so a new user of the name does not inherit them. Called
    /// before every write that may create a user; nothing to do (no write) when there are none.
    async fn revoke_leftover_tokens(&self, user: &str) -> Result<(), AuthError> {
        if self.users.exists(user) || !self.tokens.has_any(user) {
            return Ok(());
        }
        self.tokens.revoke_all(user).await
    }

    /// Adds or replaces one mechanism's credential of `user`.
    pub async fn upsert_credential(
        &self,
        user: &str,
        m: Mechanism,
        c: Credential,
    ) -> Result<(), AuthError> {
        self.alter_credentials(user, vec![CredentialChange::Upsert(m, c)])
            .await
    }

    /// Removes one mechanism's credential of `user`; the user goes with its last one.
    pub async fn delete_credential(&self, user: &str, m: Mechanism) -> Result<(), AuthError> {
        self.alter_credentials(user, vec![CredentialChange::Delete(m)])
            .await
    }

    /// Applies all of `changes` to `user`'s credentials in one write, or none of them (Kafka's
    /// AlterUserScramCredentials: every change of a user is checked before any is written). The
    /// user goes with its last credential; deleting a credential it lacks refuses the whole.
    pub async fn alter_credentials(
        &self,
        user: &str,
        changes: Vec<CredentialChange>,
    ) -> Result<(), AuthError> {
        if changes
            .iter()
            .any(|c| matches!(c, CredentialChange::Upsert(..)))
        {
            users::validate_name(user)?;
            self.revoke_leftover_tokens(user).await?;
        }
        let mut deleted = false;
        self.users
            .change(user, |old| {
                let mut u = old.unwrap_or_default();
                for change in changes {
                    match change {
                        CredentialChange::Upsert(m, c) => {
                            u.insert(m, c);
                        }
                        CredentialChange::Delete(m) if u.remove(&m).is_none() => {
                            return Err(AuthError::UnknownCredential {
                                user: user.to_string(),
                                mechanism: m.name(),
                            });
                        }
                        CredentialChange::Delete(_) => {}
                    }
                }
                deleted = u.is_empty();
                Ok((!u.is_empty()).then_some(u))
            })
            .await
            .inspect(|_| self.verified.forget_user(user))?;
        // The user went with its last credential: its tokens go too, as with delete_user.
        match deleted {
            true => self.tokens.revoke_all(user).await,
            false => Ok(()),
        }
    }
}

/// One change to a user's SCRAM credentials ([`Auth::alter_credentials`]).
pub enum CredentialChange {
    /// Add or replace this mechanism's credential.
    Upsert(Mechanism, Credential),
    /// Remove this mechanism's credential (which must exist).
    Delete(Mechanism),
}
