//! `busbar bench --tls` and `--sasl`: the bench's connections over TLS (rustls, trusting
//! `--ca-file`) and authenticated with SASL (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, RFC 5802
//! client side) before the first request, so a TLS + SCRAM run measures what such clients pay.
//! Set once per run ([`set`]); every connection the bench opens reads it.

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use ring::{digest, hmac, pbkdf2};
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};

/// How the bench connects.
#[derive(Clone)]
pub struct Security {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// (mechanism, user, password).
    pub sasl: Option<(String, String, String)>,
}

static SECURITY: OnceLock<Security> = OnceLock::new();

/// The settings of this run (plaintext when never set).
pub fn get() -> Option<&'static Security> {
    SECURITY.get()
}

/// Builds the settings from the flags; errors are usage errors.
pub fn set(
    tls: bool,
    ca_file: Option<&std::path::Path>,
    sasl: Option<&str>,
    user: Option<&str>,
    password: Option<&str>,
) -> Result<()> {
    let tls = if tls {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let Some(path) = ca_file else {
            bail!("--tls needs --ca-file (the CA of busbar's certificate)");
        };
        let text =
            std::fs::read(path).with_context(|| format!("read --ca-file {}", path.display()))?;
        use rustls::pki_types::pem::PemObject;
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(&text) {
            roots
                .add(c.map_err(|e| anyhow!("--ca-file {}: {e}", path.display()))?)
                .map_err(|e| anyhow!("--ca-file {}: {e}", path.display()))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Some(Arc::new(config))
    } else {
        None
    };
    let sasl = match (sasl, user, password) {
        (None, None, None) => None,
        (Some(m), Some(u), Some(p)) => {
            if !matches!(m, "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512") {
                bail!("--sasl {m:?}: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512");
            }
            Some((m.to_string(), u.to_string(), p.to_string()))
        }
        _ => bail!("--sasl, --sasl-user and --sasl-password go together"),
    };
    let _ = SECURITY.set(Security { tls, sasl });
    Ok(())
}

/// Authenticates a fresh connection: SaslHandshake v1, then SaslAuthenticate v1 exchanges.
pub async fn authenticate(
    tx: &mut super::client::Sender,
    rx: &mut super::client::Receiver,
    (mech, user, password): &(String, String, String),
) -> Result<()> {
    let mut h = SaslHandshakeRequest::default();
    h.mechanism = StrBytes::from_string(mech.clone());
    let id = tx.send(ApiKey::SaslHandshake, 1, &h).await?;
    let r: SaslHandshakeResponse = rx.recv(ApiKey::SaslHandshake, 1, id).await?;
    if r.error_code != 0 {
        bail!("SaslHandshake {mech}: error {}", r.error_code);
    }
    if mech == "PLAIN" {
        step(tx, rx, format!("\0{user}\0{password}").into_bytes()).await?;
        return Ok(());
    }
    let (alg, hmac_alg, dig) = if mech == "SCRAM-SHA-256" {
        (
            pbkdf2::PBKDF2_HMAC_SHA256,
            hmac::HMAC_SHA256,
            &digest::SHA256,
        )
    } else {
        (
            pbkdf2::PBKDF2_HMAC_SHA512,
            hmac::HMAC_SHA512,
            &digest::SHA512,
        )
    };
    let nonce = B64.encode(busbar_broker::auth::scram::random(18).map_err(|e| anyhow!("{e}"))?);
    let bare = format!("n={user},r={nonce}");
    let first = step(tx, rx, format!("n,,{bare}").into_bytes()).await?;
    let first = String::from_utf8(first)?;
    let attr = |k: &str| {
        first
            .split(',')
            .find_map(|p| p.strip_prefix(k))
            .ok_or_else(|| anyhow!("server-first without {k}"))
    };
    let (server_nonce, salt, iterations) = (attr("r=")?, B64.decode(attr("s=")?)?, attr("i=")?);
    let iterations = NonZeroU32::new(iterations.parse()?).ok_or_else(|| anyhow!("i=0"))?;
    let mut salted = vec![0u8; dig.output_len()];
    pbkdf2::derive(alg, iterations, &salt, password.as_bytes(), &mut salted);
    let key = hmac::Key::new(hmac_alg, &salted);
    let client_key = hmac::sign(&key, b"Client Key");
    let stored = digest::digest(dig, client_key.as_ref());
    let without_proof = format!("c=biws,r={server_nonce}");
    let auth_message = format!("{bare},{first},{without_proof}");
    let signature = hmac::sign(
        &hmac::Key::new(hmac_alg, stored.as_ref()),
        auth_message.as_bytes(),
    );
    let proof: Vec<u8> = client_key
        .as_ref()
        .iter()
        .zip(signature.as_ref())
        .map(|(a, b)| a ^ b)
        .collect();
    let last = format!("{without_proof},p={}", B64.encode(proof));
    step(tx, rx, last.into_bytes()).await?;
    Ok(())
}

/// One SaslAuthenticate v1 round trip: the server's bytes, or its error.
async fn step(
    tx: &mut super::client::Sender,
    rx: &mut super::client::Receiver,
    bytes: Vec<u8>,
) -> Result<Vec<u8>> {
    let mut a = SaslAuthenticateRequest::default();
    a.auth_bytes = bytes.into();
    let id = tx.send(ApiKey::SaslAuthenticate, 1, &a).await?;
    let r: SaslAuthenticateResponse = rx.recv(ApiKey::SaslAuthenticate, 1, id).await?;
    if r.error_code != 0 {
        bail!(
            "SASL authentication failed: {}",
            r.error_message.as_deref().unwrap_or("error")
        );
    }
    Ok(r.auth_bytes.to_vec())
}
