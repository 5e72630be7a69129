//! TLS on every way in, against the real binary (issue 16): `[tls]` checked at start (exit 2
//! naming the file), Kafka SSL and SASL_SSL listeners (a client certificate's CN is the SSL
//! principal), HTTPS with Basic and mTLS, and the accept-path limits: garbage or plaintext on a
//! TLS port, a stalled handshake (closed after `kafka.tls_handshake_timeout_ms`, accepts go on
//! meanwhile), slowloris HTTP (`http.header_read_timeout_ms`) and `limits.connections_per_ip`.
//! Certificates come from `busbar tls dev-certs`, as in docs/security.md.

mod common;

use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN_PASSWORD: &str = "admin-secret";

/// `busbar tls dev-certs DIR --client admin --client client`.
fn dev_certs(dir: &Path) {
    let o = Command::new(BIN)
        .args(["tls", "dev-certs"])
        .arg(dir)
        .args(["--client", "admin", "--client", "client"])
        .output()
        .unwrap();
    assert!(o.status.success(), "dev-certs: {}", stderr(&o));
    for f in [
        "ca.pem",
        "server.pem",
        "server.key",
        "admin.pem",
        "client.key",
    ] {
        assert!(dir.join(f).exists(), "{f} written");
    }
}

/// A TLS client trusting `ca`, presenting `cert` (a dev-certs client name) when given.
fn client(ca: &Path, cert: Option<(&Path, &str)>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match cert {
        None => b.with_no_client_auth(),
        Some((dir, name)) => {
            let chain = CertificateDer::pem_file_iter(dir.join(format!("{name}.pem")))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
    })
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A finished TLS connection to `addr` (server name 127.0.0.1).
fn connect(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// A request: header v1 (or v2 with an empty tag section when `flexible`) and `body`.
fn request(key: i16, version: i16, flexible: bool, body: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&key.to_be_bytes());
    h.extend_from_slice(&version.to_be_bytes());
    h.extend_from_slice(&7i32.to_be_bytes());
    h.extend_from_slice(&1i16.to_be_bytes());
    h.push(b't');
    if flexible {
        h.push(0);
    }
    h.extend_from_slice(body);
    frame(&h)
}

/// Sends one request and reads its answer (without the length prefix).
fn roundtrip(s: &mut impl ReadWrite, req: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(req)?;
    s.flush()?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body)?;
    Ok(body)
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// True when ApiVersions v0 is answered with no error.
fn api_versions_ok(s: &mut impl ReadWrite) -> bool {
    roundtrip(s, &request(18, 0, false, &[])).is_ok_and(|r| r.len() > 6 && r[4..6] == [0, 0])
}

/// The error code of DescribeUserScramCredentials v0 (all users): 0 for a super user, 31
/// (CLUSTER_AUTHORIZATION_FAILED) for anyone else.
fn describe_users_code(s: &mut impl ReadWrite) -> i16 {
    // Flexible: a null compact array of users, then no tagged fields.
    let r = roundtrip(s, &request(50, 0, true, &[0, 0])).unwrap();
    // correlation id (4), header tags (1), throttle_time_ms (4), then error_code.
    i16::from_be_bytes([r[9], r[10]])
}

/// The first broker's port in a Metadata v1 answer (no topics asked).
fn metadata_port(s: &mut impl ReadWrite) -> u16 {
    let r = roundtrip(s, &request(3, 1, false, &(-1i32).to_be_bytes())).unwrap();
    // correlation id (4), brokers count (4), node id (4), host (2 + n), port (4).
    let host_len = i16::from_be_bytes([r[12], r[13]]) as usize;
    let at = 14 + host_len;
    i32::from_be_bytes([r[at], r[at + 1], r[at + 2], r[at + 3]]) as u16
}

/// True when the peer closes `s` (EOF or reset) within `within` without answering: at most a
/// TLS alert record (content type 21) comes first.
fn closed_within(s: &mut impl Read, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    let start = Instant::now();
    let mut first = true;
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return start.elapsed() <= within,
            Ok(_) if first && buf[0] == 21 => first = false,
            Ok(_) if !first => {}
            Ok(_) => return false,
        }
    }
}

/// A server with every TLS listener, HTTPS and mTLS "requested", from a config file.
struct Setup {
    server: Server,
    certs: std::path::PathBuf,
    /// Bound address of each listener, by protocol.
    listeners: Vec<(String, SocketAddr)>,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn start(extra: &str) -> Setup {
        Setup::start_env(extra, &[])
    }

    /// [`Setup::start`] with more environment variables.
    fn start_env(extra: &str, env: &[(&str, &str)]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        dev_certs(&certs);
        let c = |f: &str| certs.join(f).display().to_string();
        let config = format!(
            r#"
data_dir = "{data}"
[http]
addr = "127.0.0.1:0"
tls = true
header_read_timeout_ms = 1000
[kafka]
listeners = ["SSL://127.0.0.1:0", "SASL_SSL://127.0.0.1:0", "PLAINTEXT://127.0.0.1:0"]
tls_handshake_timeout_ms = 1000
[tls]
cert_file = "{cert}"
key_file = "{key}"
client_ca_file = "{ca}"
client_auth = "requested"
principal_mapping = "CN"
[auth]
enabled = true
super_users = ["admin"]
{extra}
"#,
            data = dir.path().join("data").display(),
            cert = c("server.pem"),
            key = c("server.key"),
            ca = c("ca.pem"),
        );
        let file = dir.path().join("busbar.toml");
        std::fs::write(&file, config).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("serve").arg("--config").arg(&file);
        let server = Server::spawn(
            cmd,
            &[&[("BUSBAR_ADMIN_PASSWORD", ADMIN_PASSWORD)], env].concat(),
            &dir.path().join("data"),
        );
        assert!(
            server.ready_line.contains("https://"),
            "{}",
            server.ready_line
        );
        let listeners = server
            .ready_line
            .split(" listeners ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap()
            .split(',')
            .map(|l| {
                let (p, a) = l.split_once("://").unwrap();
                (p.to_string(), a.parse().unwrap())
            })
            .collect();
        Setup {
            server,
            certs,
            listeners,
            _dir: dir,
        }
    }

    fn listener(&self, protocol: &str) -> SocketAddr {
        self.listeners.iter().find(|l| l.0 == protocol).unwrap().1
    }

    fn trusted(&self, cert: Option<&str>) -> Arc<rustls::ClientConfig> {
        client(&self.certs.join("ca.pem"), cert.map(|c| (&*self.certs, c)))
    }
}

/// An HTTPS request with `Connection: close`: status and body.
fn https(
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    path: &str,
    auth: Option<&str>,
) -> (u16, String) {
    let mut s = connect(addr, tls).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn kafka_ssl_and_sasl_ssl_listeners_serve_over_tls_with_certificate_principals() {
    let s = Setup::start("");
    let ssl = s.listener("SSL");
    let sasl_ssl = s.listener("SASL_SSL");
    // SSL: a verified certificate's CN is the principal; without one, the anonymous principal.
    let mut admin = connect(ssl, &s.trusted(Some("admin"))).unwrap();
    assert!(api_versions_ok(&mut admin));
    assert_eq!(
        describe_users_code(&mut admin),
        0,
        "CN=admin is a super user"
    );
    assert_eq!(
        metadata_port(&mut admin),
        ssl.port(),
        "Metadata names the SSL listener"
    );
    let mut other = connect(ssl, &s.trusted(Some("client"))).unwrap();
    assert_eq!(describe_users_code(&mut other), 31, "CN=client is not");
    let mut anonymous = connect(ssl, &s.trusted(None)).unwrap();
    assert_eq!(describe_users_code(&mut anonymous), 31);
    // SASL_SSL: TLS first, then only the SASL APIs before authenticating.
    let mut sasl = connect(sasl_ssl, &s.trusted(None)).unwrap();
    assert!(api_versions_ok(&mut sasl));
    assert_eq!(
        metadata_port_or_closed(&mut sasl),
        None,
        "Metadata before SASL closes"
    );
    // A client that does not trust the server's CA fails the handshake on its side.
    let untrusted = client(&s.certs.join("server.pem"), None);
    assert!(connect(ssl, &untrusted).is_err());
    // The PLAINTEXT listener beside them still serves.
    let mut plain = TcpStream::connect(s.listener("PLAINTEXT")).unwrap();
    assert!(api_versions_ok(&mut plain));
    drop(s.server);
}

/// Metadata's port, or `None` when the connection is closed instead.
fn metadata_port_or_closed(s: &mut impl ReadWrite) -> Option<u16> {
    let r = roundtrip(s, &request(3, 1, false, &(-1i32).to_be_bytes())).ok()?;
    let host_len = i16::from_be_bytes([r[12], r[13]]) as usize;
    Some(i32::from_be_bytes([
        r[14 + host_len],
        r[15 + host_len],
        r[16 + host_len],
        r[17 + host_len],
    ]) as u16)
}

#[test]
fn garbage_plaintext_and_stalled_handshakes_close_only_their_connection() {
    let s = Setup::start("");
    let ssl = s.listener("SSL");
    // Garbage as a ClientHello.
    let mut garbage = TcpStream::connect(ssl).unwrap();
    garbage
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    garbage.write_all(&[0x42; 300]).unwrap();
    assert!(closed_within(&mut garbage, Duration::from_secs(3)));
    // A plaintext Kafka frame on the TLS port.
    let mut plain = TcpStream::connect(s.listener("SASL_SSL")).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain.write_all(&request(18, 0, false, &[])).unwrap();
    assert!(closed_within(&mut plain, Duration::from_secs(3)));
    // A stalled handshake (connect, send nothing) does not hold up others, and is closed after
    // kafka.tls_handshake_timeout_ms (1 s here).
    let mut stalled: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(ssl).unwrap()).collect();
    let started = Instant::now();
    let mut fine = connect(ssl, &s.trusted(Some("admin"))).unwrap();
    assert!(api_versions_ok(&mut fine));
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "served while 20 handshakes stall"
    );
    for c in &mut stalled {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(closed_within(c, Duration::from_secs(4)));
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(s.server.logs_soon("tls_handshake_timeout_ms"));
    assert!(
        api_versions_ok(&mut fine),
        "the good connection is still open"
    );
}

#[test]
fn https_answers_401_then_200_with_basic_or_a_client_certificate() {
    let s = Setup::start("");
    let addr = s.server.addr;
    let anonymous = s.trusted(None);
    assert_eq!(https(addr, &anonymous, "/healthz", None).0, 200);
    assert_eq!(https(addr, &anonymous, "/topics", None).0, 401);
    let basic = format!(
        "Basic {}",
        base64_encode(format!("admin:{ADMIN_PASSWORD}").as_bytes())
    );
    assert_eq!(https(addr, &anonymous, "/topics", Some(&basic)).0, 200);
    // mTLS: the certificate stands for its user when no Authorization header is sent.
    assert_eq!(
        https(addr, &s.trusted(Some("admin")), "/users", None).0,
        200
    );
    // Plain HTTP on the HTTPS port is closed.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(closed_within(&mut plain, Duration::from_secs(3)));
    // The CLI over HTTPS with --ca-file.
    let out = Command::new(BIN)
        .args(["--server", &format!("https://127.0.0.1:{}", addr.port())])
        .arg("--ca-file")
        .arg(s.certs.join("ca.pem"))
        .args([
            "--user",
            "admin",
            "--password",
            ADMIN_PASSWORD,
            "user",
            "list",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("admin"), "{}", stdout(&out));
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn slowloris_http_is_closed_after_the_header_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &[],
        &[("BUSBAR_HTTP_HEADER_READ_TIMEOUT_MS", "1000")],
    );
    let mut slow = TcpStream::connect(s.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let header = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    for b in header.iter().cycle().take(200) {
        if slow.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match slow.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => break, // an answer (408) also ends it
            Err(_) => {}    // read timeout: keep trickling
        }
    }
    assert!(
        closed || started.elapsed() < Duration::from_secs(5),
        "slowloris held"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Others are served meanwhile and after.
    assert_eq!(s.http("GET", "/healthz", None).0, 200);
}

#[test]
fn connections_over_the_per_ip_limit_are_closed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &[],
        &[("BUSBAR_LIMITS_CONNECTIONS_PER_IP", "3")],
    );
    // Kafka: three connections are served, a fourth is closed at once.
    let mut kafka: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(s.kafka).unwrap())
        .collect();
    for c in &mut kafka {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(api_versions_ok(c));
    }
    let mut fourth = TcpStream::connect(s.kafka).unwrap();
    fourth
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = fourth.write_all(&request(18, 0, false, &[]));
    assert!(closed_within(&mut fourth, Duration::from_secs(2)));
    kafka.pop();
    std::thread::sleep(Duration::from_millis(200));
    let mut again = TcpStream::connect(s.kafka).unwrap();
    again
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(api_versions_ok(&mut again), "a freed place is reused");
    // HTTP counts its own: three open keep-alive connections, a fourth is closed.
    let http: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(s.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut over = TcpStream::connect(s.addr).unwrap();
    over.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = over.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(closed_within(&mut over, Duration::from_secs(2)));
    assert!(s.logs_soon("connections_per_ip"));
    drop(http);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(s.http("GET", "/healthz", None).0, 200);
}

#[test]
fn bad_tls_settings_refuse_to_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    dev_certs(&certs);
    let p = |f: &str| certs.join(f).display().to_string();
    std::fs::write(certs.join("garbage.pem"), "not a certificate").unwrap();
    let missing = p("missing.pem");
    let garbage = p("garbage.pem");
    let server_pem = p("server.pem");
    let server_key = p("server.key");
    let client_key = p("client.key");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![
                ("BUSBAR_TLS_CERT_FILE", &missing),
                ("BUSBAR_TLS_KEY_FILE", &server_key),
            ],
            "missing.pem",
        ),
        (
            vec![
                ("BUSBAR_TLS_CERT_FILE", &garbage),
                ("BUSBAR_TLS_KEY_FILE", &server_key),
            ],
            "garbage.pem",
        ),
        (
            vec![
                ("BUSBAR_TLS_CERT_FILE", &server_pem),
                ("BUSBAR_TLS_KEY_FILE", &garbage),
            ],
            "garbage.pem",
        ),
        (
            vec![
                ("BUSBAR_TLS_CERT_FILE", &server_pem),
                ("BUSBAR_TLS_KEY_FILE", &client_key),
            ],
            "does not fit",
        ),
        (
            vec![
                ("BUSBAR_TLS_CERT_FILE", &server_pem),
                ("BUSBAR_TLS_KEY_FILE", &server_key),
                ("BUSBAR_TLS_PRINCIPAL_MAPPING", "SAN"),
            ],
            "tls.principal_mapping",
        ),
        (
            vec![
                ("BUSBAR_TLS_CERT_FILE", &server_pem),
                ("BUSBAR_TLS_KEY_FILE", &server_key),
                ("BUSBAR_TLS_CLIENT_CA_FILE", &missing),
            ],
            "tls.client_ca_file",
        ),
        (vec![("BUSBAR_HTTP_TLS", "true")], "http.tls"),
    ];
    for (env, needle) in cases {
        let data = dir.path().join("data");
        let (code, err) = refused_start_with(&data, &env);
        assert_eq!(code, 2, "{env:?}: {err}");
        assert!(err.contains(needle), "{env:?}: {err}");
        assert!(!data.exists() || std::fs::read_dir(&data).unwrap().next().is_none());
    }
}

/// The fenced blocks of `lang` in the "TLS" section of docs/security.md, in order.
fn guide_blocks(lang: &str) -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/security.md"
    ))
    .unwrap();
    let start = doc
        .find("\n## TLS")
        .expect("docs/security.md has a TLS section");
    let section = &doc[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let fence = format!("```{lang}\n");
    let mut blocks = Vec::new();
    let mut rest = section;
    while let Some(i) = rest.find(&fence) {
        let body = &rest[i + fence.len()..];
        let end = body.find("```").unwrap();
        let text: Vec<&str> = body[..end].lines().map(str::trim_start).collect();
        blocks.push(text.join("\n"));
        rest = &body[end..];
    }
    blocks
}

#[test]
fn the_security_guide_tls_setup_runs() {
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let sh = |line: &str| {
        let o = Command::new("sh")
            .args(["-c", line])
            .current_dir(dir.path())
            .env("PATH", &path)
            .env_remove("BUSBAR_SERVER")
            .output()
            .unwrap();
        assert!(o.status.success(), "{line}: {}{}", stdout(&o), stderr(&o));
        stdout(&o)
    };
    let shell = guide_blocks("sh");
    // Step 1: the certificates.
    sh(&shell[0]);
    // Step 2: the configuration, on free ports.
    let config = guide_blocks("toml")[0]
        .replace(":9093", ":0")
        .replace(":9094", ":0")
        .replace(":8443", ":0");
    std::fs::write(
        dir.path().join("busbar.toml"),
        format!("data_dir = \"data\"\n{config}"),
    )
    .unwrap();
    // Step 3: start as shown, then every other line with the real port.
    let steps: Vec<&str> = shell[1].lines().collect();
    let serve = steps[0];
    assert!(
        serve.starts_with("BUSBAR_ADMIN_PASSWORD='change-me' busbar serve --config busbar.toml")
    );
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config", "busbar.toml"])
        .current_dir(dir.path());
    let server = Server::spawn(
        cmd,
        &[("BUSBAR_ADMIN_PASSWORD", "change-me")],
        &dir.path().join("data"),
    );
    let port = server.addr.port().to_string();
    let outputs: Vec<String> = steps[1..]
        .iter()
        .map(|l| sh(&l.replace("8443", &port).replace("curl ", "curl -sf ")))
        .collect();
    assert!(
        outputs[0].contains("topics") || outputs[0].starts_with('['),
        "{}",
        outputs[0]
    );
    assert!(
        outputs[1].contains("admin"),
        "mTLS as admin: {}",
        outputs[1]
    );
    assert!(outputs[2].contains("admin"), "CLI: {}", outputs[2]);
    // Without the certificate or credentials: 401.
    let o = sh(&format!(
        "curl -s -o /dev/null -w '%{{http_code}}' --cacert certs/ca.pem https://127.0.0.1:{port}/topics"
    ));
    assert_eq!(o, "401");
}

#[test]
fn bench_runs_over_tls_with_scram() {
    let s = Setup::start("");
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args(["bench", "produce", "--count", "2000", "--kafka"])
            .arg(s.listener("SASL_SSL").to_string())
            .args(extra)
            .output()
            .unwrap()
    };
    let ca = s.certs.join("ca.pem").display().to_string();
    for mech in ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] {
        let o = run(&[
            "--tls",
            "--ca-file",
            &ca,
            "--sasl",
            mech,
            "--sasl-user",
            "admin",
            "--sasl-password",
            ADMIN_PASSWORD,
        ]);
        assert!(o.status.success(), "{mech}: {}", stderr(&o));
        assert!(stdout(&o).contains("2000 messages"), "{}", stdout(&o));
    }
    let wrong = run(&[
        "--tls",
        "--ca-file",
        &ca,
        "--sasl",
        "SCRAM-SHA-256",
        "--sasl-user",
        "admin",
        "--sasl-password",
        "wrong",
    ]);
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("SASL authentication failed"),
        "{}",
        stderr(&wrong)
    );
    let no_ca = run(&["--tls"]);
    assert_eq!(no_ca.status.code(), Some(2), "{}", stderr(&no_ca));
}

/// An encrypted key (PKCS#8 `ENCRYPTED PRIVATE KEY`, or a legacy PEM with `Proc-Type:
/// 4,ENCRYPTED`) and a truncated one each refuse the start (exit 2) with a message that says
/// which, not "no usable key".
#[test]
fn encrypted_or_truncated_key_files_are_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    dev_certs(&certs);
    let key = std::fs::read_to_string(certs.join("server.key")).unwrap();
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    let pkcs8 = format!(
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\n{body}\n-----END ENCRYPTED PRIVATE KEY-----\n"
    );
    let legacy = format!(
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
         DEK-Info: AES-128-CBC,0123456789ABCDEF0123456789ABCDEF\n\n{body}\n\
         -----END RSA PRIVATE KEY-----\n"
    );
    let truncated = key[..key.len() / 2].to_string();
    let cert = certs.join("server.pem").display().to_string();
    let cases = [
        (
            "pkcs8.key",
            pkcs8,
            "is encrypted; busbar needs an unencrypted key",
        ),
        (
            "legacy.key",
            legacy,
            "is encrypted; busbar needs an unencrypted key",
        ),
        (
            "truncated.key",
            truncated,
            "has no complete PEM private key",
        ),
    ];
    for (name, text, needle) in cases {
        let path = certs.join(name);
        std::fs::write(&path, text).unwrap();
        let path = path.display().to_string();
        let env = [
            ("BUSBAR_TLS_CERT_FILE", cert.as_str()),
            ("BUSBAR_TLS_KEY_FILE", path.as_str()),
        ];
        let (code, err) = refused_start_with(&dir.path().join("data"), &env);
        assert_eq!(code, 2, "{name}: {err}");
        let want = format!("tls.key_file {path} {needle}");
        assert!(err.contains(&want), "{name}: wanted {want:?} in {err}");
    }
}

/// A TLS client that sends many requests for a large answer and never reads: once the server's
/// writes have made no progress for `http.write_timeout_ms` the connection is closed (logged),
/// so it does not pin a task and its buffers; when the client finally reads, the answers stop
/// short.
#[test]
fn tls_clients_that_never_read_are_closed_after_the_write_timeout() {
    let s = Setup::start_env(
        "",
        &[
            ("BUSBAR_HTTP_WRITE_TIMEOUT_MS", "1000"),
            ("BUSBAR_HTTP_HEADER_READ_TIMEOUT_MS", "60000"),
        ],
    );
    let tls = s.trusted(Some("admin"));
    let mut c = connect(s.server.addr, &tls).unwrap();
    let req = "GET /openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    const ASKED: usize = 400;
    for _ in 0..ASKED {
        c.write_all(req.as_bytes()).unwrap();
    }
    c.flush().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let answered = raw.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count();
    assert!(
        answered < ASKED,
        "all {answered} answers were written to a client that did not read for 4 s"
    );
    assert!(
        s.server.logs_soon("http.write_timeout_ms"),
        "the close is logged"
    );
}
