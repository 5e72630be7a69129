//! TLS on `SSL` and `SASL_SSL` listeners (rustls, ring provider) and the per-address connection
//! limit every listener applies (an IPv6 client counts per /64, an IPv4-mapped one as its IPv4
//! address: [`client_address`](busbar_broker::client_address)).
//!
//! The handshake runs in the connection's own task, never in the accept loop, and must finish
//! within `kafka.tls_handshake_timeout_ms`: a client that stalls or sends anything but a TLS
//! ClientHello (garbage, a plaintext Kafka frame) costs its own connection only. Each such close
//! is logged through the rate-limited refusal log.
//!
//! An `SSL` connection's principal is the name [`Tls::principal`] maps its verified client
//! certificate to, or [`busbar_broker::auth::acl::ANONYMOUS`] without one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Maps a verified client certificate (DER, end entity) to a user name; `None` when the
/// certificate has no name the mapping can use.
pub type CertPrincipal = Arc<dyn Fn(&[u8]) -> Option<String> + Send + Sync>;

/// TLS settings of the `SSL` and `SASL_SSL` listeners.
#[derive(Clone)]
pub struct Tls {
    /// The server certificate, key and client-certificate verifier of SSL listeners.
    pub server: Arc<rustls::ServerConfig>,
    /// The same for SASL_SSL listeners: a client certificate is never required there, as in
    /// Kafka, where a broker-wide `ssl.client.auth=required` skips SASL_SSL listeners (KIP-684).
    pub sasl_server: Arc<rustls::ServerConfig>,
    /// How a verified client certificate becomes a principal (`tls.principal_mapping`).
    pub principal: CertPrincipal,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// The principal of a finished handshake: the mapped name of the client certificate rustls
    /// verified, else the anonymous principal.
    pub fn principal_of(&self, conn: &rustls::ServerConnection) -> String {
        conn.peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| (self.principal)(cert.as_ref()))
            .unwrap_or_else(|| busbar_broker::auth::acl::ANONYMOUS.to_string())
    }
}

/// Open connections per client address (IPv6: per /64, [`client_address`](busbar_broker::client_address)), capped
/// (`limits.connections_per_ip`).
#[derive(Debug)]
pub struct PerIp {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; dropping it frees its place.
#[derive(Debug)]
pub struct IpSlot {
    owner: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    /// A limit of `max` open connections per address.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::default(),
        })
    }

    /// A place for one more connection from `ip`; `None` when its address (IPv6: its /64)
    /// already has `max`.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let ip = busbar_broker::client_address::client_address(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            owner: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_counts_each_address_and_frees_on_drop() {
        let limit = PerIp::new(2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = limit.acquire(a).unwrap();
        let _s2 = limit.acquire(a).unwrap();
        assert!(limit.acquire(a).is_none());
        let _other = limit.acquire(b).expect("another address has its own count");
        drop(s1);
        assert!(limit.acquire(a).is_some());
        drop(_other);
        assert!(!limit.open.lock().unwrap().contains_key(&b));
    }

    #[test]
    fn per_ip_counts_ipv6_per_64_and_mapped_ipv4_as_ipv4() {
        let limit = PerIp::new(2);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let _a = limit.acquire(ip("2001:db8:1:2::1")).unwrap();
        let _b = limit.acquire(ip("2001:db8:1:2:ffff::9")).unwrap();
        assert!(
            limit.acquire(ip("2001:db8:1:2:abcd::1")).is_none(),
            "a third address of the same /64 is over the limit"
        );
        assert!(
            limit.acquire(ip("2001:db8:1:3::1")).is_some(),
            "another /64"
        );
        let _v4 = limit.acquire(ip("192.0.2.7")).unwrap();
        let _mapped = limit.acquire(ip("::ffff:192.0.2.7")).unwrap();
        assert!(
            limit.acquire(ip("192.0.2.7")).is_none(),
            "an IPv4-mapped address counts as its IPv4 address"
        );
    }
}
