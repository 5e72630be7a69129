//! Helpers for the raw-protocol security tests (issue 16): a broker with authentication on that
//! serves a PLAINTEXT listener (User:ANONYMOUS) and a SASL_PLAINTEXT one, ACLs granted and taken
//! back from the test, and the client side of PLAIN and SCRAM (RFC 5802, RFC 7677) over raw
//! SaslHandshake / SaslAuthenticate frames or, after a v0 handshake, raw size-prefixed tokens.

#![allow(dead_code)] // each test file uses its own subset

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use busbar_broker::auth::acl::{
    AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType,
};
use busbar_broker::auth::AuthConfig;
use busbar_broker::{Broker, BrokerConfig};
use busbar_kafka::{serve_listeners, KafkaConfig, Listener, Security};
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use ring::{digest, hmac, pbkdf2};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// The password of every user the secure server creates.
pub const PASSWORD: &str = "correct horse battery";

/// A broker with `auth.enabled`, a PLAINTEXT and a SASL_PLAINTEXT listener, topic `t` (one
/// partition) and users `alice` and `bob` (password [`PASSWORD`]).
pub struct SecureServer {
    pub plain: SocketAddr,
    pub sasl: SocketAddr,
    pub broker: Arc<Broker>,
    pub rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl SecureServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let config = BrokerConfig {
            data_dir: dir.path().into(),
            auth: AuthConfig {
                enabled: true,
                backoff_max: Duration::from_millis(50),
                ..AuthConfig::default()
            },
            ..Default::default()
        };
        let broker = Arc::new(Broker::open(config).unwrap());
        let (plain, sasl) = rt.block_on(async {
            broker
                .create_topic("t", Some(1), Default::default())
                .await
                .unwrap();
            for user in ["alice", "bob"] {
                broker.auth().set_password(user, PASSWORD).await.unwrap();
            }
            let p = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let s = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            (p, s)
        });
        let (plain_addr, sasl_addr) = (plain.local_addr().unwrap(), sasl.local_addr().unwrap());
        let listener = |security, port| Listener {
            security,
            advertised_host: "127.0.0.1".into(),
            advertised_port: port,
            place: 0,
        };
        let listeners = vec![
            (plain, listener(Security::Plaintext, plain_addr.port())),
            (sasl, listener(Security::SaslPlaintext, sasl_addr.port())),
        ];
        let kafka = KafkaConfig::default();
        rt.spawn(serve_listeners(
            listeners,
            broker.clone(),
            kafka,
            std::future::pending(),
        ));
        Self {
            plain: plain_addr,
            sasl: sasl_addr,
            broker,
            rt,
            _dir: dir,
        }
    }

    /// Adds these ACLs.
    pub fn grant(&self, acls: Vec<AclBinding>) {
        self.rt
            .block_on(self.broker.auth().acls().create(acls))
            .unwrap();
    }

    /// Removes every ACL.
    pub fn revoke_all(&self) {
        let all = AclFilter::default();
        self.rt
            .block_on(self.broker.auth().acls().delete(&all))
            .unwrap();
    }
}

/// A literal ACL for `who` (`User:` added) from `host`.
pub fn acl(
    who: &str,
    host: &str,
    permission: Permission,
    (ty, name, op): (ResourceType, &str, Operation),
) -> AclBinding {
    AclBinding {
        resource_type: ty,
        resource_name: name.into(),
        pattern: PatternType::Literal,
        principal: format!("User:{who}"),
        host: host.into(),
        operation: op,
        permission,
    }
}

/// An ALLOW from any host for the PLAINTEXT client, User:ANONYMOUS.
pub fn anonymous(ty: ResourceType, name: &str, op: Operation) -> AclBinding {
    acl("ANONYMOUS", "*", Permission::Allow, (ty, name, op))
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

/// True when the server closed `c` (EOF or reset) without sending anything more.
pub fn closed(c: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(c.read(&mut b), Ok(0) | Err(_))
}

/// SaslHandshake at `version` choosing `mechanism`; its error code.
pub fn handshake(c: &mut TcpStream, version: i16, mechanism: &str) -> i16 {
    let mut h = SaslHandshakeRequest::default();
    h.mechanism = crate::common::sb(mechanism);
    let r: SaslHandshakeResponse =
        crate::common::call_on(c, ApiKey::SaslHandshake, version, &h).expect("handshake answer");
    r.error_code
}

/// One SaslAuthenticate at `version` carrying `token`; `None` when the connection was closed.
pub fn authenticate(
    c: &mut TcpStream,
    version: i16,
    token: &[u8],
) -> Option<SaslAuthenticateResponse> {
    let mut a = SaslAuthenticateRequest::default();
    a.auth_bytes = bytes::Bytes::copy_from_slice(token);
    crate::common::call_on(c, ApiKey::SaslAuthenticate, version, &a)
}

/// One raw token after a v0 handshake: the server's size-prefixed answer, `None` when it closed.
pub fn raw_token(c: &mut TcpStream, token: &[u8]) -> Option<Vec<u8>> {
    let mut out = (token.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(token);
    c.write_all(&out).ok()?;
    crate::common::read_response(c).map(|b| b.to_vec())
}

/// A PLAIN token (RFC 4616) without an authorization id.
pub fn plain_token(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

/// The client side of one SCRAM-SHA-256 exchange.
pub struct ScramClient {
    bare: String,
    password: String,
}

impl ScramClient {
    pub fn new(user: &str, password: &str) -> Self {
        Self {
            bare: format!("n={user},r=rOprNGfwEbeRWgbNEkqO"),
            password: password.into(),
        }
    }

    /// client-first-message.
    pub fn first(&self) -> Vec<u8> {
        format!("n,,{}", self.bare).into_bytes()
    }

    /// client-final-message answering `server_first`.
    pub fn last(&self, server_first: &[u8]) -> Vec<u8> {
        let first = std::str::from_utf8(server_first).expect("server-first is UTF-8");
        let attr = |k: &str| {
            first
                .split(',')
                .find_map(|p| p.strip_prefix(k))
                .unwrap_or_else(|| panic!("server-first without {k}: {first}"))
        };
        let salt = B64.decode(attr("s=")).unwrap();
        let iterations: NonZeroU32 = attr("i=").parse().unwrap();
        let mut salted = [0u8; 32];
        let alg = pbkdf2::PBKDF2_HMAC_SHA256;
        pbkdf2::derive(
            alg,
            iterations,
            &salt,
            self.password.as_bytes(),
            &mut salted,
        );
        let client_key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &salted), b"Client Key");
        let stored = digest::digest(&digest::SHA256, client_key.as_ref());
        let without_proof = format!("c=biws,r={}", attr("r="));
        let message = format!("{},{first},{without_proof}", self.bare);
        let key = hmac::Key::new(hmac::HMAC_SHA256, stored.as_ref());
        let signature = hmac::sign(&key, message.as_bytes());
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(signature.as_ref())
            .map(|(a, b)| a ^ b)
            .collect();
        format!("{without_proof},p={}", B64.encode(proof)).into_bytes()
    }
}
