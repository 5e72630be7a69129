//! `busbar tls dev-certs DIR`: a throw-away PKI for development and tests, made with rcgen: a CA
//! (`ca.pem`, `ca.key`), a server certificate for `localhost` and `127.0.0.1` plus any `--host`
//! (`server.pem`, `server.key`) and client certificates for mTLS (`<name>.pem`, `<name>.key`,
//! one per `--client`, default `client`), all signed by the CA. Keys are written readable by
//! their owner only. Not for production: the CA key sits beside the certificates.

use crate::client::{outln, CliError, CliResult};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum TlsCmd {
    /// Write a development CA, a server certificate and client certificates into DIR.
    DevCerts {
        /// Directory to write into (created when missing; existing files are replaced).
        dir: PathBuf,
        /// Another name or address the server certificate is valid for (repeatable).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// A client certificate to make, by common name (repeatable; default "client").
        #[arg(long = "client")]
        clients: Vec<String>,
    },
}

pub fn run(cmd: TlsCmd) -> CliResult<()> {
    let TlsCmd::DevCerts {
        dir,
        hosts,
        clients,
    } = cmd;
    let clients = if clients.is_empty() {
        vec!["client".to_string()]
    } else {
        clients
    };
    for name in &clients {
        let fine = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !matches!(name.as_str(), "ca" | "server" | "." | "..");
        if !fine {
            return Err(CliError::Usage(format!(
                "--client {name:?}: use letters, digits, '-', '_' or '.' (not \"ca\" or \"server\")"
            )));
        }
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::Usage(format!("cannot create {}: {e}", dir.display())))?;
    let failed = |e: rcgen::Error| CliError::Output(format!("making certificates: {e}"));
    let ca = ca().map_err(failed)?;
    write(&dir, "ca", &ca.pem(), None)?;
    let mut sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    sans.extend(hosts);
    let (cert, key) = leaf("busbar server", sans, true, &ca).map_err(failed)?;
    write(&dir, "server", &cert, Some(&key))?;
    for name in &clients {
        let (cert, key) = leaf(name, Vec::new(), false, &ca).map_err(failed)?;
        write(&dir, name, &cert, Some(&key))?;
    }
    outln!(
        "wrote ca.pem, server.pem/.key (localhost, 127.0.0.1) and {} to {}",
        clients
            .iter()
            .map(|c| format!("{c}.pem/.key"))
            .collect::<Vec<_>>()
            .join(", "),
        dir.display()
    );
    Ok(())
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "busbar dev");
    dn.push(DnType::CommonName, cn);
    dn
}

/// A self-signed CA.
fn ca() -> Result<CertifiedIssuer<'static, KeyPair>, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name("busbar dev CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate()?)
}

/// A server or client certificate signed by `ca`: (certificate PEM, key PEM).
fn leaf(
    cn: &str,
    sans: Vec<String>,
    server: bool,
    ca: &CertifiedIssuer<'static, KeyPair>,
) -> Result<(String, String), rcgen::Error> {
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name = name(cn);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes `<stem>.pem` and, when given, `<stem>.key` (mode 0600).
fn write(dir: &Path, stem: &str, cert: &str, key: Option<&str>) -> CliResult<()> {
    let put = |file: PathBuf, text: &str, private: bool| -> CliResult<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(&file);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if private { 0o600 } else { 0o644 })
            .open(&file)
            .and_then(|mut f| f.write_all(text.as_bytes()).map(|_| f));
        match &mut f {
            Ok(_) => Ok(()),
            Err(e) => Err(CliError::Output(format!(
                "cannot write {}: {e}",
                file.display()
            ))),
        }
    };
    put(dir.join(format!("{stem}.pem")), cert, false)?;
    if let Some(key) = key {
        put(dir.join(format!("{stem}.key")), key, true)?;
    }
    Ok(())
}
