//! The address a client is counted as, by every per-address limit (Kafka and HTTP connections
//! per IP, failed-login backoff): IPv4 as it is, an IPv4-mapped IPv6 address as its IPv4
//! address, any other IPv6 address as its /64 (one host usually holds a whole /64, so counting
//! /128s would let it escape each limit with a fresh address per connection or guess).

use std::net::IpAddr;

/// The address `ip` is counted as.
pub fn client_address(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}
