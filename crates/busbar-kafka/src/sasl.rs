//! SASL authentication of one connection on a SASL listener (KIP-43, KIP-152): SaslHandshake
//! picks a mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), then SaslAuthenticate carries its
//! tokens (or, after a v0 handshake, raw size-prefixed tokens). Until a mechanism completes, only
//! ApiVersions, SaslHandshake and SaslAuthenticate are served; `conn` closes the connection on
//! anything else. Any failure answers SASL_AUTHENTICATION_FAILED (58) with Kafka's message, held
//! back by the failed-login backoff, and the connection is closed. While a (user, address) backs
//! off, both SCRAM steps fail unchecked: also exchanges opened before the backoff began.
//!
//! Credentials come from the broker's user store; this file only frames the exchange.

use crate::api::sb;
use busbar_broker::auth::scram::{self, Exchange, Mechanism};
use busbar_broker::auth::{Auth, AuthError};
use bytes::Bytes;
use kafka_protocol::messages::{
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use std::net::IpAddr;
use std::time::Duration;

/// Kafka's UNSUPPORTED_SASL_MECHANISM.
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
/// Kafka's ILLEGAL_SASL_STATE.
pub const ILLEGAL_SASL_STATE: i16 = 34;
/// Kafka's SASL_AUTHENTICATION_FAILED.
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// How long a connection stays open after a failed handshake or authentication was answered,
/// before it is closed (Kafka's `connection.failed.authentication.delay.ms` default): a client
/// that sees the close before it has read the answer reports a lost connection instead of the
/// authentication error (kafka-python 3 does).
pub const CLOSE_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// The mechanisms offered, in the order SaslHandshake lists them.
pub const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mech {
    Plain,
    Scram(Mechanism),
}

impl Mech {
    fn of(name: &str) -> Option<Self> {
        match name {
            "PLAIN" => Some(Mech::Plain),
            other => Mechanism::from_name(other).map(Mech::Scram),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mech::Plain => "PLAIN",
            Mech::Scram(m) => m.name(),
        }
    }
}

enum State {
    /// Nothing yet, or only ApiVersions.
    Start,
    /// A mechanism was chosen; `raw` after a v0 handshake (tokens without Kafka headers).
    Chosen { mech: Mech, raw: bool },
    /// SCRAM server-first sent; waiting for client-final.
    Scram {
        exchange: Box<Exchange>,
        user: String,
        raw: bool,
    },
    /// Authenticated as this user.
    Done(String),
}

/// What one SaslAuthenticate step answers.
pub struct Step {
    /// The bytes for the client (a SCRAM challenge, server-final, or empty).
    pub token: Bytes,
    /// `Some((code, message))` on failure: the answer carries it and the connection closes.
    pub error: Option<(i16, String)>,
    /// How long to hold the answer back (failed-login backoff).
    pub delay: Duration,
    /// Why it failed, for the server's log (never sent: the client gets Kafka's fixed message).
    pub why: Option<String>,
}

impl Step {
    fn ok(token: impl Into<Bytes>) -> Self {
        Self {
            token: token.into(),
            error: None,
            delay: Duration::ZERO,
            why: None,
        }
    }

    fn failed(mech: Mech, why: &str, delay: Duration, _peer: IpAddr) -> Self {
        let message = match mech {
            Mech::Plain => "Authentication failed: Invalid username or password".to_string(),
            Mech::Scram(m) => format!(
                "Authentication failed during authentication due to invalid credentials with \
                 SASL mechanism {}",
                m.name()
            ),
        };
        Self {
            token: Bytes::new(),
            error: Some((SASL_AUTHENTICATION_FAILED, message)),
            delay,
            why: Some(format!("SASL {} authentication failed: {why}", mech.name())),
        }
    }

    /// The SaslAuthenticate response of this step.
    pub fn response(&self) -> SaslAuthenticateResponse {
        let mut r = SaslAuthenticateResponse::default();
        r.auth_bytes = self.token.clone();
        if let Some((code, message)) = &self.error {
            r.error_code = *code;
            r.error_message = Some(sb(message.clone()));
        }
        r
    }
}

/// One connection's SASL state.
pub struct Session {
    state: State,
    /// The user name the client sent last (for the audit log), empty before one was read.
    claimed: String,
}

impl Default for Session {
    fn default() -> Self {
        Self {
            state: State::Start,
            claimed: String::new(),
        }
    }
}

impl Session {
    /// The user name the client sent last, whatever came of it (empty before one was read).
    pub fn claimed(&self) -> &str {
        &self.claimed
    }

    /// The authenticated user, once done.
    pub fn principal(&self) -> Option<&str> {
        match &self.state {
            State::Done(u) => Some(u),
            _ => None,
        }
    }

    /// The chosen mechanism ("none" before a handshake chose one), for metrics.
    pub fn mechanism(&self) -> &'static str {
        match &self.state {
            State::Chosen { mech, .. } => mech.name(),
            State::Scram { exchange, .. } => exchange.mechanism().name(),
            _ => "none",
        }
    }

    /// True when the next frame is a raw token (after a v0 handshake).
    pub fn raw(&self) -> bool {
        matches!(
            self.state,
            State::Chosen { raw: true, .. } | State::Scram { raw: true, .. }
        )
    }

    /// True once a handshake chose a mechanism (SaslAuthenticate is then expected).
    #[cfg(test)]
    fn chosen(&self) -> bool {
        matches!(self.state, State::Chosen { .. } | State::Scram { .. })
    }

    /// SaslHandshake: chooses a mechanism, or answers 33 with the offered list (and 34 when one
    /// was chosen already). `version` 0 makes the following tokens raw.
    pub fn handshake(&mut self, req: &SaslHandshakeRequest, version: i16) -> SaslHandshakeResponse {
        let mut r = SaslHandshakeResponse::default();
        r.mechanisms = MECHANISMS.iter().map(|m| sb(*m)).collect();
        if !matches!(self.state, State::Start) {
            r.error_code = ILLEGAL_SASL_STATE;
            return r;
        }
        match Mech::of(req.mechanism.as_str()) {
            Some(mech) => {
                self.state = State::Chosen {
                    mech,
                    raw: version == 0,
                }
            }
            None => r.error_code = UNSUPPORTED_SASL_MECHANISM,
        }
        r
    }

    /// One token of the chosen mechanism from `peer`.
    pub fn authenticate(&mut self, auth: &Auth, token: &[u8], peer: IpAddr) -> Step {
        match std::mem::replace(&mut self.state, State::Start) {
            State::Chosen {
                mech: Mech::Plain, ..
            } => self.plain(auth, token, peer),
            State::Chosen {
                mech: Mech::Scram(m),
                raw,
            } => self.scram_first(auth, m, token, peer, raw),
            State::Scram {
                exchange,
                user,
                raw: _,
            } => self.scram_final(auth, *exchange, user, token, peer),
            State::Start | State::Done(_) => Step {
                token: Bytes::new(),
                error: Some((
                    ILLEGAL_SASL_STATE,
                    "SaslAuthenticate is only valid after a successful SaslHandshake".into(),
                )),
                delay: Duration::ZERO,
                why: Some("SaslAuthenticate before SaslHandshake".into()),
            },
        }
    }

    /// PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`; authzid empty or the user itself.
    fn plain(&mut self, auth: &Auth, token: &[u8], peer: IpAddr) -> Step {
        let mech = Mech::Plain;
        let parts: Vec<&[u8]> = token.split(|b| *b == 0).collect();
        let [authz, user, password] = parts.as_slice() else {
            let delay = fail_delay(auth, "", peer);
            return Step::failed(mech, "malformed PLAIN token", delay, peer);
        };
        let (Ok(user), Ok(password), Ok(authz)) = (
            std::str::from_utf8(user),
            std::str::from_utf8(password),
            std::str::from_utf8(authz),
        ) else {
            let delay = fail_delay(auth, "", peer);
            return Step::failed(mech, "PLAIN token is not UTF-8", delay, peer);
        };
        self.claimed = user.to_string();
        if !authz.is_empty() && authz != user {
            let delay = fail_delay(auth, user, peer);
            return Step::failed(mech, "authorization id differs from the user", delay, peer);
        }
        match auth.authenticate_password(user, password, peer) {
            Ok(()) => {
                self.state = State::Done(user.to_string());
                Step::ok(Bytes::new())
            }
            Err(AuthError::Failed { delay }) => Step::failed(
                mech,
                &format!("user {user:?}: bad credentials"),
                delay,
                peer,
            ),
            Err(e) => Step::failed(mech, &e.to_string(), fail_delay(auth, user, peer), peer),
        }
    }

    fn scram_first(
        &mut self,
        auth: &Auth,
        m: Mechanism,
        token: &[u8],
        peer: IpAddr,
        raw: bool,
    ) -> Step {
        let mech = Mech::Scram(m);
        let first = match scram::client_first(token) {
            Ok(f) => f,
            Err(e) => return Step::failed(mech, &e.to_string(), fail_delay(auth, "", peer), peer),
        };
        let user = first.user.clone();
        self.claimed = user.clone();
        if auth.backoff().blocked(&user, peer) {
            let delay = fail_delay(auth, &user, peer);
            return Step::failed(mech, &format!("user {user:?} is backing off"), delay, peer);
        }
        let Some(credential) = auth.users().credential(&user, m) else {
            let delay = fail_delay(auth, &user, peer);
            return Step::failed(mech, &format!("no {} user {user:?}", m.name()), delay, peer);
        };
        match Exchange::start(m, first, credential) {
            Ok((exchange, server_first)) => {
                self.state = State::Scram {
                    exchange: Box::new(exchange),
                    user,
                    raw,
                };
                Step::ok(Bytes::from(server_first))
            }
            Err(e) => Step::failed(mech, &e.to_string(), Duration::ZERO, peer),
        }
    }

    fn scram_final(
        &mut self,
        auth: &Auth,
        exchange: Exchange,
        user: String,
        token: &[u8],
        peer: IpAddr,
    ) -> Step {
        let mech = Mech::Scram(exchange.mechanism());
        if auth.backoff().blocked(&user, peer) {
            // The exchange may have opened before the backoff began: while it lasts, no proof is
            // checked (else pre-opened exchanges are parallel guesses), as for PLAIN.
            let delay = fail_delay(auth, &user, peer);
            return Step::failed(mech, &format!("user {user:?} is backing off"), delay, peer);
        }
        let outcome = exchange.finish(token);
        match auth.scram_outcome(&user, peer, outcome.is_ok()) {
            Ok(()) => {
                self.state = State::Done(user);
                Step::ok(Bytes::from(outcome.unwrap_or_default()))
            }
            Err(e) => {
                let why = outcome.err().map_or(e.to_string(), |e| e.to_string());
                let delay = match e {
                    AuthError::Failed { delay } => delay,
                    _ => Duration::ZERO,
                };
                Step::failed(mech, &format!("user {user:?}: {why}"), delay, peer)
            }
        }
    }
}

/// Records a failure for `user` (empty when unparseable) and answers its delay.
fn fail_delay(auth: &Auth, user: &str, peer: IpAddr) -> Duration {
    auth.backoff().failed(user, peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake(s: &mut Session, mech: &str) -> i16 {
        let mut req = SaslHandshakeRequest::default();
        req.mechanism = sb(mech);
        s.handshake(&req, 1).error_code
    }

    #[test]
    fn handshake_chooses_once_and_refuses_unknown_mechanisms() {
        let mut s = Session::default();
        assert_eq!(handshake(&mut s, "GSSAPI"), UNSUPPORTED_SASL_MECHANISM);
        assert!(!s.chosen());
        assert_eq!(handshake(&mut s, "SCRAM-SHA-512"), 0);
        assert!(s.chosen() && !s.raw());
        assert_eq!(handshake(&mut s, "PLAIN"), ILLEGAL_SASL_STATE);
        let mut v0 = Session::default();
        let mut req = SaslHandshakeRequest::default();
        req.mechanism = sb("PLAIN");
        assert_eq!(v0.handshake(&req, 0).error_code, 0);
        assert!(v0.raw());
    }
}
