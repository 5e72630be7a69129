//! `[tls]`: the server certificate and key of the SSL/SASL_SSL Kafka listeners and of HTTPS, the
//! optional client CA (mTLS) and how a client certificate becomes a principal. Files are read
//! and checked at start-up (and by `busbar check-config`); every problem names its file and key.

use anyhow::{anyhow, bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `[tls]` as configured. Empty strings mean "not set".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain of the server (end entity first).
    pub cert_file: String,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// PEM CA certificates that client certificates must chain to (mTLS); empty: none asked.
    pub client_ca_file: String,
    /// With `client_ca_file`: "required" (a client without a valid certificate is refused) or
    /// "requested" (one is asked for and verified when sent).
    pub client_auth: String,
    /// How a verified client certificate becomes `User:<name>`: "CN" (its subject's common
    /// name) or "DN" (its RFC 2253 subject, most specific part first).
    pub principal_mapping: String,
}

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            cert_file: String::new(),
            key_file: String::new(),
            client_ca_file: String::new(),
            client_auth: "required".into(),
            principal_mapping: "CN".into(),
        }
    }
}

/// How a client certificate is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    Cn,
    Dn,
}

impl Mapping {
    /// The principal (user name, without `User:`) of a verified certificate.
    pub fn name(self, cert_der: &[u8]) -> Option<String> {
        match self {
            Mapping::Cn => crate::dn::common_name(cert_der),
            Mapping::Dn => crate::dn::subject_dn(cert_der),
        }
    }
}

/// `[tls]` loaded: the rustls server configuration and the principal mapping.
#[derive(Clone)]
pub struct Loaded {
    /// SSL listeners and HTTPS: a client certificate as `tls.client_auth` says.
    pub server: Arc<ServerConfig>,
    /// SASL_SSL listeners: a client certificate is verified when offered, never needed.
    pub sasl_server: Arc<ServerConfig>,
    pub mapping: Mapping,
}

impl TlsSection {
    /// True when a certificate is configured.
    pub fn configured(&self) -> bool {
        !self.cert_file.is_empty() || !self.key_file.is_empty()
    }

    /// The mapping, or an error naming the setting.
    fn mapping(&self) -> Result<Mapping> {
        match self.principal_mapping.to_ascii_uppercase().as_str() {
            "CN" => Ok(Mapping::Cn),
            "DN" => Ok(Mapping::Dn),
            other => bail!(
                "tls.principal_mapping = {other:?}: use \"CN\" (User:<subject common name>) or \
                 \"DN\" (User:<RFC 2253 subject>)"
            ),
        }
    }

    /// Checks the settings and reads the files. `None` when no certificate is configured.
    pub fn load(&self) -> Result<Option<Loaded>> {
        let mapping = self.mapping()?;
        let required = match self.client_auth.as_str() {
            "required" => true,
            "requested" => false,
            other => bail!("tls.client_auth = {other:?}: use \"required\" or \"requested\""),
        };
        if !self.configured() {
            if !self.client_ca_file.is_empty() {
                bail!("tls.client_ca_file is set but tls.cert_file and tls.key_file are not");
            }
            return Ok(None);
        }
        if self.cert_file.is_empty() || self.key_file.is_empty() {
            bail!("tls.cert_file and tls.key_file must be set together");
        }
        let chain = certificates("tls.cert_file", &self.cert_file)?;
        let key = private_key(&self.key_file)?;
        let server = self.server_config(chain.clone(), key.clone_key(), required)?;
        // Kafka does not apply a broker-wide `ssl.client.auth=required` to SASL_SSL listeners
        // (KIP-684): SASL authenticates there, a certificate is verified when one is offered.
        let sasl_server = match required && !self.client_ca_file.is_empty() {
            true => self.server_config(chain, key, false)?,
            false => server.clone(),
        };
        Ok(Some(Loaded {
            server,
            sasl_server,
            mapping,
        }))
    }

    /// The rustls server configuration: the certificate chain and key, and a client-certificate
    /// verifier when `tls.client_ca_file` is set (a certificate is needed when `required`).
    fn server_config(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        required: bool,
    ) -> Result<Arc<ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let builder = if self.client_ca_file.is_empty() {
            builder.with_no_client_auth()
        } else {
            let mut roots = RootCertStore::empty();
            for ca in certificates("tls.client_ca_file", &self.client_ca_file)? {
                roots.add(ca).map_err(|e| {
                    anyhow!(
                        "tls.client_ca_file {}: not a usable CA certificate ({e})",
                        self.client_ca_file
                    )
                })?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| anyhow!("tls.client_ca_file {}: {e}", self.client_ca_file))?;
            builder.with_client_cert_verifier(verifier)
        };
        let server = builder.with_single_cert(chain, key).map_err(|e| {
            anyhow!(
                "tls.key_file {} does not fit tls.cert_file {}: {e}",
                self.key_file,
                self.cert_file
            )
        })?;
        Ok(Arc::new(server))
    }
}

/// Every certificate of a PEM file; an error naming `key` and the file when it cannot be read or
/// holds none.
fn certificates(key: &str, path: &str) -> Result<Vec<CertificateDer<'static>>> {
    let text = std::fs::read(path).map_err(|e| anyhow!("{key} {path}: cannot read ({e})"))?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{key} {path}: bad PEM ({e})"))?;
    if certs.is_empty() {
        bail!("{key} {path}: no PEM certificate in it");
    }
    Ok(certs)
}

/// The private key of a PEM file. Errors name the file and say what is wrong: it cannot be read,
/// it is encrypted (PKCS#8 `ENCRYPTED PRIVATE KEY`, or a legacy PEM with `Proc-Type: 4,ENCRYPTED`:
/// busbar has no passphrase to open it with), or it holds no complete private key (none, or one
/// cut short).
fn private_key(path: &str) -> Result<PrivateKeyDer<'static>> {
    let text =
        std::fs::read(path).map_err(|e| anyhow!("tls.key_file {path}: cannot read ({e})"))?;
    if encrypted(&text) {
        bail!(
            "tls.key_file {path} is encrypted; busbar needs an unencrypted key (PKCS#8, PKCS#1 or \
             SEC1; e.g. `openssl pkey -in {path} -out plain.key`)"
        );
    }
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| {
        anyhow!(
            "tls.key_file {path} has no complete PEM private key ({e}; expected a \
             -----BEGIN PRIVATE KEY----- block, or RSA / EC PRIVATE KEY, with its END line)"
        )
    })
}

/// True when a PEM file holds an encrypted private key.
fn encrypted(pem: &[u8]) -> bool {
    let has = |needle: &[u8]| pem.windows(needle.len()).any(|w| w == needle);
    has(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || has(b"Proc-Type: 4,ENCRYPTED")
}

impl Loaded {
    /// The Kafka listeners' TLS settings.
    pub fn kafka(&self) -> busbar_kafka::Tls {
        let mapping = self.mapping;
        busbar_kafka::Tls {
            server: self.server.clone(),
            sasl_server: self.sasl_server.clone(),
            principal: Arc::new(move |der: &[u8]| mapping.name(der)),
        }
    }

    /// HTTPS settings.
    pub fn http(&self) -> busbar_http::HttpTls {
        let mapping = self.mapping;
        busbar_http::HttpTls {
            server: self.server.clone(),
            principal: Arc::new(move |der: &[u8]| mapping.name(der)),
        }
    }
}
