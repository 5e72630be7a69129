//! TLS to `https://` targets, with rustls on the `ring` provider. A target is trusted through the
//! Mozilla roots (`webpki-roots`, compiled in: no dependence on the host's certificate store), or,
//! when its subscription names `target.tls.ca_file`, through the certificates of that PEM file
//! only (a private CA or a self-signed target; decision in `docs/decisions.md`). The CA file is
//! read at every new connection (connections are pooled, so rarely), so a replaced file applies
//! without a restart; it is also checked when the subscription is created or updated.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Most bytes of a CA file read.
pub const CA_FILE_BYTES_MAX: u64 = 1 << 20;

fn config(roots: RootCertStore) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Requests go over HTTP/1.1 only.
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

fn default_config() -> Arc<ClientConfig> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            config(roots)
        })
        .clone()
}

/// The trust roots a CA file gives: every certificate in it (at least one). Only a regular file
/// of at most [`CA_FILE_BYTES_MAX`] is read (a FIFO would block, a device never end), and errors
/// do not carry the OS's reason: whoever creates subscriptions must not learn which server paths
/// exist.
pub fn load_ca(path: &Path) -> Result<RootCertStore, String> {
    use std::io::Read;
    let shown = path.display();
    let unreadable = || {
        format!(
            "cannot read {shown}: the CA file must be a regular file readable by busbar, at \
             most {CA_FILE_BYTES_MAX} bytes"
        )
    };
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return Err(unreadable());
    }
    let file = std::fs::File::open(path).map_err(|_| unreadable())?;
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(unreadable());
    }
    let mut pem = Vec::new();
    file.take(CA_FILE_BYTES_MAX + 1)
        .read_to_end(&mut pem)
        .map_err(|_| unreadable())?;
    if pem.len() as u64 > CA_FILE_BYTES_MAX {
        return Err(format!("{shown} is more than {CA_FILE_BYTES_MAX} bytes"));
    }
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{shown} is not valid PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("{shown}: a certificate is not usable as a CA: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{shown} holds no PEM certificate"));
    }
    Ok(roots)
}

/// Why a TLS connection failed (a short reason for status and dead letters).
#[derive(Debug)]
pub struct TlsError(pub String);

/// Runs the TLS handshake with `host` over `tcp`.
pub async fn connect(
    tcp: TcpStream,
    host: &str,
    ca_file: Option<&Path>,
) -> Result<TlsStream<TcpStream>, TlsError> {
    let config = match ca_file {
        None => default_config(),
        Some(p) => config(load_ca(p).map_err(|e| TlsError(format!("ca_file: {e}")))?),
    };
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let name = ServerName::try_from(bare.to_string())
        .map_err(|_| TlsError(format!("{host:?} is not a valid TLS server name")))?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| TlsError(format!("TLS handshake failed: {}", short(&e))))
}

/// An I/O error of the handshake as the rustls error inside it, without the OS detail.
fn short(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(tls) => tls.to_string(),
        None => match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "the target closed the connection".into(),
            _ => "connection failed".into(),
        },
    }
}
