//! SCRAM (RFC 5802, RFC 7677) with SHA-256 and SHA-512, on `ring`: the credential as stored
//! (salt, iterations, StoredKey, ServerKey; never the password) and the server's side of one
//! exchange (client-first, server-first, client-final, server-final). No I/O and no user lookup:
//! the Kafka front end carries the messages and the user store supplies the credential.
//!
//! Only the GS2 header `n,,` is accepted (no channel binding, no authorization identity), so the
//! client-final's channel binding must be `biws` (base64 of `n,,`). Iterations are bounded by
//! [`ITERATIONS_MIN`] and [`ITERATIONS_MAX`] (Kafka's limits).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2, rand};
use std::num::NonZeroU32;

/// Fewest PBKDF2 iterations a credential may have (Kafka's `ScramMechanism` minimum).
pub const ITERATIONS_MIN: u32 = 4096;
/// Most PBKDF2 iterations a credential may have (Kafka's `ScramControlManager.MAX_ITERATIONS`):
/// each login costs this many HMACs, so the bound also bounds the CPU one login can take.
pub const ITERATIONS_MAX: u32 = 16384;
/// Bytes of random salt in credentials made here.
pub const SALT_BYTES: usize = 32;
/// Bytes of randomness in a server nonce (base64-encoded on the wire).
const NONCE_BYTES: usize = 24;
/// Longest client nonce accepted, bytes.
const CLIENT_NONCE_MAX: usize = 256;

/// A SCRAM mechanism busbar serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    Sha256,
    Sha512,
}

impl Mechanism {
    /// Every mechanism, in Kafka's type order.
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    /// The SASL name (`SCRAM-SHA-256`).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism of a SASL name, if served.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's `ScramMechanism` type (1: SHA-256, 2: SHA-512).
    pub fn kafka_type(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    /// The mechanism of a Kafka type, if served.
    pub fn from_kafka_type(t: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.kafka_type() == t)
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Mechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Mechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Mechanism::Sha256 => hmac::HMAC_SHA256,
            Mechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Mechanism::Sha256 => &digest::SHA256,
            Mechanism::Sha512 => &digest::SHA512,
        }
    }

    /// Output bytes of the hash.
    pub fn hash_len(self) -> usize {
        self.digest().output_len()
    }
}

/// Why a SCRAM step failed. The front end answers every one the same way (authentication
/// failed); the text is for the server's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported (GS2 header must be \"n,,\")")]
    ChannelBinding,
    #[error("the client-final nonce does not match the exchange's")]
    Nonce,
    #[error("invalid credentials")]
    Proof,
    #[error("iterations {0} outside [{ITERATIONS_MIN}, {ITERATIONS_MAX}]")]
    Iterations(i64),
    #[error("{0}")]
    Credential(&'static str),
    #[error("no secure random numbers available")]
    Random,
}

/// What the server stores for one user and mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// Checks a credential's iteration count.
pub fn check_iterations(i: i64) -> Result<u32, ScramError> {
    if i < ITERATIONS_MIN as i64 || i > ITERATIONS_MAX as i64 {
        return Err(ScramError::Iterations(i));
    }
    Ok(i as u32)
}

fn mac(m: Mechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(m.hmac(), key), data)
        .as_ref()
        .to_vec()
}

fn hash(m: Mechanism, data: &[u8]) -> Vec<u8> {
    digest::digest(m.digest(), data).as_ref().to_vec()
}

/// Equal contents, compared in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `n` random bytes.
pub fn random(n: usize) -> Result<Vec<u8>, ScramError> {
    let mut out = vec![0; n];
    rand::SecureRandom::fill(&rand::SystemRandom::new(), &mut out)
        .map_err(|_| ScramError::Random)?;
    Ok(out)
}

impl Credential {
    /// The credential of a SaltedPassword (what Kafka's AlterUserScramCredentials carries).
    pub fn from_salted(
        m: Mechanism,
        salt: &[u8],
        iterations: i64,
        salted: &[u8],
    ) -> Result<Self, ScramError> {
        let iterations = check_iterations(iterations)?;
        if salt.is_empty() {
            return Err(ScramError::Credential("the salt is empty"));
        }
        if salted.len() != m.hash_len() {
            return Err(ScramError::Credential(
                "the salted password is not one hash long",
            ));
        }
        Ok(Self {
            salt: salt.to_vec(),
            iterations,
            stored_key: hash(m, &mac(m, salted, b"Client Key")),
            server_key: mac(m, salted, b"Server Key"),
        })
    }

    /// The credential of `password` with `salt`.
    pub fn from_password(
        m: Mechanism,
        password: &str,
        salt: &[u8],
        iterations: i64,
    ) -> Result<Self, ScramError> {
        let i = check_iterations(iterations)?;
        Self::from_salted(m, salt, iterations, &salted_password(m, password, salt, i))
    }

    /// A credential of `password` with a fresh random salt.
    pub fn generate(m: Mechanism, password: &str, iterations: i64) -> Result<Self, ScramError> {
        Self::from_password(m, password, &random(SALT_BYTES)?, iterations)
    }

    /// True when `password` is this credential's (PLAIN and HTTP Basic): costs one PBKDF2.
    pub fn verify_password(&self, m: Mechanism, password: &str) -> bool {
        let salted = salted_password(m, password, &self.salt, self.iterations);
        same(&hash(m, &mac(m, &salted, b"Client Key")), &self.stored_key)
    }
}

/// `Hi(password, salt, i)`: PBKDF2 with the mechanism's HMAC.
fn salted_password(m: Mechanism, password: &str, salt: &[u8], i: u32) -> Vec<u8> {
    let mut out = vec![0; m.hash_len()];
    let i = NonZeroU32::new(i).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(m.pbkdf2(), i, salt, password.as_bytes(), &mut out);
    out
}

/// A parsed client-first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The user name, `=2C` and `=3D` decoded.
    pub user: String,
    nonce: String,
    bare: String,
}

/// `saslname` decoding (RFC 5802 §5.1): `=2C` is `,`, `=3D` is `=`, any other `=` is an error.
fn decode_name(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad '=' escape in the user name")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A nonce: printable ASCII without `,`, at most `CLIENT_NONCE_MAX` bytes.
fn valid_nonce(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= CLIENT_NONCE_MAX
        && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Parses `n,,n=<user>,r=<nonce>[,<extension>...]`.
pub fn client_first(msg: &[u8]) -> Result<ClientFirst, ScramError> {
    let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    let bare = match msg.strip_prefix("n,,") {
        Some(bare) => bare,
        None if msg.starts_with("y,") || msg.starts_with("p=") || msg.starts_with("n,a=") => {
            return Err(ScramError::ChannelBinding)
        }
        None => return Err(ScramError::Malformed("missing GS2 header")),
    };
    let mut parts = bare.split(',');
    let user = parts
        .next()
        .and_then(|p| p.strip_prefix("n="))
        .ok_or(ScramError::Malformed("missing n=<user>"))?;
    let nonce = parts
        .next()
        .and_then(|p| p.strip_prefix("r="))
        .ok_or(ScramError::Malformed("missing r=<nonce>"))?;
    if parts.any(|p| p.starts_with("m=")) {
        return Err(ScramError::Malformed("mandatory extension not supported"));
    }
    if !valid_nonce(nonce) {
        return Err(ScramError::Malformed("invalid client nonce"));
    }
    let user = decode_name(user)?;
    if user.is_empty() {
        return Err(ScramError::Malformed("empty user name"));
    }
    Ok(ClientFirst {
        user,
        nonce: nonce.to_string(),
        bare: bare.to_string(),
    })
}

/// The server's state between server-first and client-final.
#[derive(Debug, Clone)]
pub struct Exchange {
    mechanism: Mechanism,
    credential: Credential,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    /// Bytes of `nonce` that are the client's (its start).
    client_nonce_len: usize,
}

impl Exchange {
    /// Answers `first` with a fresh server nonce: the exchange and the server-first message.
    pub fn start(
        m: Mechanism,
        first: ClientFirst,
        credential: Credential,
    ) -> Result<(Self, String), ScramError> {
        let server_nonce = B64.encode(random(NONCE_BYTES)?);
        Ok(Self::start_with_nonce(m, first, credential, &server_nonce))
    }

    /// [`Exchange::start`] with a given server nonce (the RFC test vectors).
    pub fn start_with_nonce(
        m: Mechanism,
        first: ClientFirst,
        credential: Credential,
        server_nonce: &str,
    ) -> (Self, String) {
        let client_nonce_len = first.nonce.len();
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let x = Self {
            mechanism: m,
            credential,
            client_first_bare: first.bare,
            server_first: server_first.clone(),
            nonce,
            client_nonce_len,
        };
        (x, server_first)
    }

    /// The exchange's mechanism.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Whether a client-final `r=` is this exchange's nonce: exactly (RFC 5802), or the client
    /// nonce followed by it, which librdkafka before 2.1 sends (Debian's kcat: it prefixes the
    /// server-first nonce with its own again). Kafka accepts any nonce ending with the exchange's
    /// (`ScramSaslServer`: `endsWith`); this accepts only those two forms. The proof covers the
    /// message as sent, so either form proves the same exchange.
    fn nonce_matches(&self, nonce: &str) -> bool {
        let doubled = nonce
            .strip_suffix(self.nonce.as_str())
            .is_some_and(|prefix| prefix == &self.nonce[..self.client_nonce_len]);
        same(nonce.as_bytes(), self.nonce.as_bytes()) || doubled
    }

    /// Checks `c=biws,r=<nonce>[,...],p=<proof>`; answers the server-final `v=<signature>`.
    pub fn finish(&self, msg: &[u8]) -> Result<String, ScramError> {
        let m = self.mechanism;
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("missing p=<proof>"))?;
        let mut parts = without_proof.split(',');
        let binding = parts
            .next()
            .and_then(|p| p.strip_prefix("c="))
            .ok_or(ScramError::Malformed("missing c=<channel binding>"))?;
        if binding != "biws" {
            return Err(ScramError::ChannelBinding);
        }
        let nonce = parts
            .next()
            .and_then(|p| p.strip_prefix("r="))
            .ok_or(ScramError::Malformed("missing r=<nonce>"))?;
        if !self.nonce_matches(nonce) {
            return Err(ScramError::Nonce);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        if proof.len() != m.hash_len() {
            return Err(ScramError::Proof);
        }
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let signature = mac(m, &self.credential.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        if !same(&hash(m, &client_key), &self.credential.stored_key) {
            return Err(ScramError::Proof);
        }
        let server = mac(m, &self.credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT_FIRST: &[u8] = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";

    fn exchange(m: Mechanism, password: &str) -> (Exchange, String) {
        let salt = B64.decode(SALT).unwrap();
        let cred = Credential::from_password(m, password, &salt, 4096).unwrap();
        let first = client_first(CLIENT_FIRST).unwrap();
        assert_eq!(first.user, "user");
        Exchange::start_with_nonce(m, first, cred, SERVER_NONCE)
    }

    fn client_final(proof: &str) -> String {
        format!("c=biws,r=rOprNGfwEbeRWgbNEkqO{SERVER_NONCE},p={proof}")
    }

    /// RFC 7677 §3 (SCRAM-SHA-256, user "user", password "pencil").
    #[test]
    fn rfc7677_sha256_vector() {
        let (x, server_first) = exchange(Mechanism::Sha256, "pencil");
        assert_eq!(
            server_first,
            format!("r=rOprNGfwEbeRWgbNEkqO{SERVER_NONCE},s={SALT},i=4096")
        );
        let fin = client_final("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        assert_eq!(
            x.finish(fin.as_bytes()).unwrap(),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    /// The same exchange with SHA-512; the expected proof and signature were computed with
    /// Python's hashlib/hmac (an independent implementation), as no RFC gives a SHA-512 vector.
    #[test]
    fn sha512_vector() {
        let (x, _) = exchange(Mechanism::Sha512, "pencil");
        let fin = client_final(
            "gMGXRcevScNtxZ6/8lQYpGtnsNAc3mGcmNomv+xnoOMw+3R2xNJdMNnzMlTN8PPC6wdp6dybEmDYXYTxwnYPJQ==",
        );
        assert_eq!(
            x.finish(fin.as_bytes()).unwrap(),
            "v=ZQnYEgWQMFmmsM8aQMF0nDDCy/AgCzkwk8CmMZYcMg0vSVlKDanekLtifDSeVGT4+5ZxXnJq199RVG2rR7N7Zw=="
        );
    }

    #[test]
    fn a_wrong_password_or_nonce_or_binding_fails() {
        let (x, _) = exchange(Mechanism::Sha256, "not-pencil");
        let fin = client_final("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        assert_eq!(x.finish(fin.as_bytes()), Err(ScramError::Proof));
        let (x, _) = exchange(Mechanism::Sha256, "pencil");
        let other_nonce =
            "c=biws,r=rOprNGfwEbeRWgbNEkqOother,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(x.finish(other_nonce.as_bytes()), Err(ScramError::Nonce));
        let binding = format!("c=eSws,r=rOprNGfwEbeRWgbNEkqO{SERVER_NONCE},p=AAAA");
        assert_eq!(
            x.finish(binding.as_bytes()),
            Err(ScramError::ChannelBinding)
        );
        assert!(x.finish(b"garbage").is_err());
        assert!(x.finish(&[0xff, 0xfe]).is_err());
    }

    /// A client's proof of `without_proof` in the test exchange (RFC 5802 §3, client side).
    fn prove(m: Mechanism, password: &str, without_proof: &str) -> String {
        let salted = salted_password(m, password, &B64.decode(SALT).unwrap(), 4096);
        let client_key = mac(m, &salted, b"Client Key");
        let auth = format!(
            "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO{SERVER_NONCE},s={SALT},i=4096,\
             {without_proof}"
        );
        let sig = mac(m, &hash(m, &client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }

    /// librdkafka before 2.1 (Debian's kcat) sends `r=<client nonce><server-first nonce>`; Kafka
    /// accepts it, so must busbar (it answered "nonce does not match"). Other prefixes still fail.
    #[test]
    fn librdkafkas_doubled_client_nonce_is_accepted_and_nothing_else() {
        let (x, _) = exchange(Mechanism::Sha256, "pencil");
        let doubled = format!("c=biws,r=rOprNGfwEbeRWgbNEkqOrOprNGfwEbeRWgbNEkqO{SERVER_NONCE}");
        assert!(x
            .finish(prove(Mechanism::Sha256, "pencil", &doubled).as_bytes())
            .is_ok());
        let other = format!("c=biws,r=XXrOprNGfwEbeRWgbNEkqO{SERVER_NONCE}");
        let msg = prove(Mechanism::Sha256, "pencil", &other);
        assert_eq!(x.finish(msg.as_bytes()), Err(ScramError::Nonce));
        let exact = format!("c=biws,r=rOprNGfwEbeRWgbNEkqO{SERVER_NONCE}");
        let msg = prove(Mechanism::Sha256, "pencil", &exact);
        assert!(x.finish(msg.as_bytes()).is_ok(), "the RFC form still works");
        let msg = prove(Mechanism::Sha256, "wrong", &doubled);
        assert_eq!(x.finish(msg.as_bytes()), Err(ScramError::Proof));
    }

    #[test]
    fn only_n_gs2_headers_and_valid_nonces_are_accepted() {
        assert_eq!(
            client_first(b"y,,n=user,r=abc"),
            Err(ScramError::ChannelBinding)
        );
        assert_eq!(
            client_first(b"p=tls-unique,,n=user,r=abc"),
            Err(ScramError::ChannelBinding)
        );
        assert!(client_first(b"n,,n=user,r=").is_err());
        assert!(client_first(b"n,,n=user,r=a,b").is_ok()); // an extension after r=
        assert!(client_first(b"n,,n=user,r=abc,m=ext").is_err());
        assert!(client_first(b"n,,r=abc").is_err());
        assert!(client_first(b"n,,n=,r=abc").is_err());
        assert!(client_first(b"n,,n=a=2Cb=3Dc,r=abc").is_ok_and(|f| f.user == "a,b=c"));
        assert!(client_first(b"n,,n=a=zz,r=abc").is_err());
        let long = format!("n,,n=u,r={}", "x".repeat(CLIENT_NONCE_MAX + 1));
        assert!(client_first(long.as_bytes()).is_err());
        assert!(client_first(b"").is_err());
    }

    #[test]
    fn iterations_are_bounded() {
        for bad in [0, 4095, 16385, -1] {
            assert_eq!(
                Credential::from_password(Mechanism::Sha256, "p", b"salt", bad),
                Err(ScramError::Iterations(bad))
            );
        }
        assert!(Credential::from_password(Mechanism::Sha256, "p", b"salt", 16384).is_ok());
    }

    #[test]
    fn passwords_verify_against_the_stored_keys_only() {
        for m in Mechanism::ALL {
            let c = Credential::generate(m, "secret", 4096).unwrap();
            assert!(c.verify_password(m, "secret"));
            assert!(!c.verify_password(m, "secreT"));
            assert!(!c.verify_password(m, ""));
            assert_eq!(c.salt.len(), SALT_BYTES);
            assert_eq!(c.stored_key.len(), m.hash_len());
        }
    }
}
