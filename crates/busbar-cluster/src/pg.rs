//! Where the database is and how to reach it: `postgres_url` parsed, and TLS. With
//! `sslmode=require` in the URL every connection of this broker (the pool, the committer's, the
//! heartbeats', the listener's, an import's) is TLS through rustls (the `ring` provider), the
//! server's certificate checked against `postgres_ca_file` (PEM; a private CA) or, without it,
//! the Mozilla roots compiled in, and its name against the URL's host: what libpq calls
//! `verify-full`, stricter than libpq's `require` (which checks nothing). Without `sslmode`, or
//! with `prefer` or `disable`, connections are plain TCP (libpq's `prefer` would try TLS without
//! checking the server: no protection against an active attacker, so not offered). With a
//! client certificate and key (`postgres_cert_file`, `postgres_key_file`, PEM) the broker
//! presents them, for a server that asks for one (`pg_hba.conf`'s `cert` method, or
//! `clientcert=verify-ca`/`verify-full`).

use crate::Error;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, Connection, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The TLS stream of a connection.
pub type TlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// The database: its connection settings and the TLS they use.
#[derive(Clone)]
pub struct Pg {
    config: Config,
    tls: MakeRustlsConnect,
}

/// A client certificate chain and its key (PEM files), presented over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
}

impl ClientCert {
    /// The chain and the key, read and parsed; errors name the setting and the file.
    fn load(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
        let read = |setting: &str, path: &Path| {
            std::fs::read(path).map_err(|e| {
                Error::Config(format!(
                    "cluster.{setting} {}: cannot read ({e})",
                    path.display()
                ))
            })
        };
        let (cert, key) = (&self.cert_file, &self.key_file);
        let text = read("postgres_cert_file", cert)?;
        let chain = CertificateDer::pem_slice_iter(&text)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                Error::Config(format!(
                    "cluster.postgres_cert_file {}: bad PEM ({e})",
                    cert.display()
                ))
            })?;
        if chain.is_empty() {
            return Err(Error::Config(format!(
                "cluster.postgres_cert_file {}: no PEM certificate in it",
                cert.display()
            )));
        }
        let text = read("postgres_key_file", key)?;
        let key = PrivateKeyDer::from_pem_slice(&text).map_err(|e| {
            Error::Config(format!(
                "cluster.postgres_key_file {}: no unencrypted PEM private key in it ({e})",
                key.display()
            ))
        })?;
        Ok((chain, key))
    }
}

impl Pg {
    /// `url` (libpq's URL or key-value form) with `ca_file` (PEM) for `sslmode=require`, and
    /// the client certificate to present, if any.
    pub fn new(
        url: &str,
        ca_file: Option<&Path>,
        client: Option<&ClientCert>,
    ) -> Result<Pg, Error> {
        let mut config: Config = url.parse().map_err(|e| {
            Error::Config(format!("cluster.postgres_url is not a PostgreSQL URL: {e}"))
        })?;
        let tls = config.get_ssl_mode() == SslMode::Require;
        if !tls {
            if ca_file.is_some() {
                return Err(Error::Config(
                    "cluster.postgres_ca_file is set but cluster.postgres_url does not ask for \
                     TLS: add sslmode=require to the URL"
                        .into(),
                ));
            }
            if client.is_some() {
                return Err(Error::Config(
                    "cluster.postgres_cert_file is set but cluster.postgres_url does not ask \
                     for TLS: add sslmode=require to the URL"
                        .into(),
                ));
            }
            config.ssl_mode(SslMode::Disable);
        }
        let roots = match ca_file {
            Some(path) => busbar_bus::tls::load_ca(path)
                .map_err(|e| Error::Config(format!("cluster.postgres_ca_file: {e}")))?,
            None => rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS: {e}")))?
            .with_root_certificates(roots);
        let client = match client {
            None => builder.with_no_client_auth(),
            Some(c) => {
                let (chain, key) = c.load()?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    Error::Config(format!(
                        "cluster.postgres_key_file {}: does not go with \
                         cluster.postgres_cert_file {} ({e})",
                        c.key_file.display(),
                        c.cert_file.display()
                    ))
                })?
            }
        };
        Ok(Pg {
            config,
            tls: MakeRustlsConnect::new(client),
        })
    }

    /// Whether connections use TLS.
    pub fn tls(&self) -> bool {
        self.config.get_ssl_mode() == SslMode::Require
    }

    /// Opens one connection with the settings `tweak` adds; the caller drives the connection.
    pub async fn connect_with(
        &self,
        tweak: impl FnOnce(&mut Config),
    ) -> Result<(Client, Connection<Socket, TlsStream>), Error> {
        let mut config = self.config.clone();
        tweak(&mut config);
        Ok(config.connect(self.tls.clone()).await?)
    }
}
