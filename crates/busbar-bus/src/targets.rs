//! The target policy (`[bus.targets]`): which hosts and addresses HTTP targets may reach, so that
//! a subscription cannot turn busbar into a proxy into its own network (cloud metadata, link-local
//! services) or a port scanner.
//!
//! Rules are CIDRs (`10.0.0.0/8`, `fd00::/8`, a bare address is a /32 or /128) and host names
//! (`metadata.google.internal`, `*.internal` for every name below `internal`). The built-in
//! [`DEFAULT_DENY`] list always applies; `deny` adds to it and `allow` overrides it. Among the rules
//! that match, the most specific decides (the longest prefix; an exact name before a `*.` suffix,
//! a longer suffix before a shorter one), and an `allow` wins a tie: `allow = ["169.254.10.0/24"]`
//! opens that range while `169.254.169.254` stays denied by its own /32.
//!
//! A URL is checked when the subscription is created or updated (its host name, or its literal
//! address), and again at every connect on each address the name resolves to, so a name that
//! later resolves elsewhere (DNS rebinding) is caught; the connection goes to an address that was
//! checked, never to a second lookup. IPv4-mapped IPv6 addresses are checked as IPv4. An IPv6
//! address that carries an IPv4 address a translator or tunnel would reach (NAT64's well-known
//! prefix `64:ff9b::/96`, 6to4 `2002::/16`, Teredo `2001::/32`'s client address, the deprecated
//! IPv4-compatible `::a.b.c.d`) is checked as itself and as that IPv4 address: both must pass, so
//! `64:ff9b::a9fe:a9fe` is refused like `169.254.169.254`.

use std::net::IpAddr;

/// Denied unless allowed: link-local (where cloud metadata services live), the metadata services'
/// own addresses and names, and the unspecified addresses (which reach the local host).
pub const DEFAULT_DENY: &[&str] = &[
    "169.254.0.0/16",
    "fe80::/10",
    "169.254.169.254/32",
    "fd00:ec2::254/128",
    "metadata.google.internal",
    "0.0.0.0/8",
    "::/128",
];

/// A CIDR block.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    fn parse(s: &str) -> Option<Net> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = canonical(a.parse().ok()?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
            Some(_) => return None,
            None => max,
        };
        (prefix <= max).then_some(Net { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> (u128, u8) {
            match ip {
                IpAddr::V4(v) => (u32::from(v).into(), 32),
                IpAddr::V6(v) => (u128::from(v), 128),
            }
        };
        let ((net, width), (ip, ip_width)) = (bits(self.addr), bits(ip));
        if width != ip_width {
            return false;
        }
        let shift = u32::from(width - self.prefix);
        shift >= 128 || (net >> shift) == (ip >> shift)
    }
}

/// A host-name rule: one name, or every name below a domain (`*.internal`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Name {
    Exact(String),
    Below(String),
}

impl Name {
    fn parse(s: &str) -> Option<Name> {
        let s = normal_name(s);
        let (below, name) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, s),
        };
        let ok = !name.is_empty()
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        match (ok, below) {
            (false, _) => None,
            (true, true) => Some(Name::Below(name)),
            (true, false) => Some(Name::Exact(name)),
        }
    }

    /// How specific a match of `host` is (`None`: no match).
    fn matches(&self, host: &str) -> Option<usize> {
        match self {
            Name::Exact(n) => (n == host).then_some(usize::MAX),
            Name::Below(d) => host
                .strip_suffix(d.as_str())
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1)
                .then_some(d.len()),
        }
    }
}

fn normal_name(s: &str) -> String {
    s.trim_end_matches('.').to_ascii_lowercase()
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as the IPv4 address it reaches.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    Net(Net),
    Name(Name),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    text: String,
    rule: Rule,
}

/// Why a target is refused: the rule that decided, for the error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    pub rule: String,
}

impl std::fmt::Display for Forbidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "forbidden by bus.targets (deny {:?})", self.rule)
    }
}

/// The allow and deny rules of HTTP targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPolicy {
    allow: Vec<Entry>,
    deny: Vec<Entry>,
}

impl Default for TargetPolicy {
    fn default() -> Self {
        Self::new::<&str>(&[], &[]).expect("the built-in rules parse")
    }
}

fn parse_list<S: AsRef<str>>(key: &str, list: &[S]) -> Result<Vec<Entry>, String> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let text = s.as_ref().trim();
            let rule = match Net::parse(text) {
                Some(n) => Rule::Net(n),
                None => Rule::Name(Name::parse(text).ok_or_else(|| {
                    format!("{key}[{i}]: {text:?} is not a CIDR, an IP address or a host name")
                })?),
            };
            Ok(Entry {
                text: text.to_string(),
                rule,
            })
        })
        .collect()
}

/// The most specific entry of `list` that `score` matches, with its specificity.
fn best(list: &[Entry], score: impl Fn(&Rule) -> Option<usize>) -> Option<(usize, &str)> {
    list.iter()
        .filter_map(|e| score(&e.rule).map(|s| (s, e.text.as_str())))
        .max_by_key(|(s, _)| *s)
}

impl TargetPolicy {
    /// The built-in deny rules plus `deny`, overridden by `allow`. Errors name the bad entry
    /// (`bus.targets.allow[2]: ...`).
    pub fn new<S: AsRef<str>>(allow: &[S], deny: &[S]) -> Result<TargetPolicy, String> {
        let mut all_deny = parse_list("bus.targets.deny (built in)", DEFAULT_DENY)?;
        all_deny.extend(parse_list("bus.targets.deny", deny)?);
        Ok(TargetPolicy {
            allow: parse_list("bus.targets.allow", allow)?,
            deny: all_deny,
        })
    }

    fn decide(&self, score: impl Fn(&Rule) -> Option<usize>) -> Result<(), Forbidden> {
        let denied = best(&self.deny, &score);
        let allowed = best(&self.allow, &score);
        match (denied, allowed) {
            (Some((d, rule)), a) if a.is_none_or(|(a, _)| a < d) => Err(Forbidden {
                rule: rule.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Checks one address a target resolved to (or was written as), and the IPv4 address it
    /// carries, if any.
    pub fn check_addr(&self, ip: IpAddr) -> Result<(), Forbidden> {
        let ip = canonical(ip);
        self.check_one(ip)?;
        match embedded_v4(ip) {
            Some(v4) => self.check_one(IpAddr::V4(v4)),
            None => Ok(()),
        }
    }

    fn check_one(&self, ip: IpAddr) -> Result<(), Forbidden> {
        self.decide(|r| match r {
            Rule::Net(n) => n.contains(ip).then_some(n.prefix.into()),
            Rule::Name(_) => None,
        })
    }

    /// Checks a host name (not its addresses).
    pub fn check_name(&self, host: &str) -> Result<(), Forbidden> {
        let host = normal_name(host);
        self.decide(|r| match r {
            Rule::Name(n) => n.matches(&host),
            Rule::Net(_) => None,
        })
    }

    /// Checks a URL's host as written: a literal address by the address rules, a name by the
    /// name rules (its addresses are checked when it is connected to).
    pub fn check_host(&self, host: &str) -> Result<(), Forbidden> {
        match literal(host) {
            Some(ip) => self.check_addr(ip),
            None => self.check_name(host),
        }
    }
}

/// The IPv4 address an IPv6 address carries to a translator or tunnel: NAT64 (`64:ff9b::/96`, the
/// last 32 bits), 6to4 (`2002::/16`, bits 16..48), Teredo (`2001:0::/32`, the client address:
/// the last 32 bits inverted), IPv4-compatible (`::/96` other than `::` and `::1`).
fn embedded_v4(ip: IpAddr) -> Option<std::net::Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let bits = u128::from(v6);
    let s = v6.segments();
    let last = bits as u32;
    match s {
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(last.into()),
        [0x2002, ..] => Some(((bits >> 80) as u32).into()),
        [0x2001, 0, ..] => Some((!last).into()),
        [0, 0, 0, 0, 0, 0, _, _] if last > 1 => Some(last.into()),
        _ => None,
    }
}

/// The address a URL host names literally (`127.0.0.1`, `[::1]`), if it is one.
pub fn literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_defaults_deny_link_local_metadata_and_unspecified_and_allow_the_rest() {
        let p = TargetPolicy::default();
        for bad in [
            "169.254.169.254",
            "169.254.1.2",
            "fe80::1",
            "fd00:ec2::254",
            "0.0.0.0",
            "0.1.2.3",
            "::",
            "::ffff:169.254.169.254",
        ] {
            assert!(p.check_addr(ip(bad)).is_err(), "{bad}");
        }
        for good in ["127.0.0.1", "::1", "10.0.0.1", "8.8.8.8", "fd00:ec2::253"] {
            assert!(p.check_addr(ip(good)).is_ok(), "{good}");
        }
        assert!(p.check_name("metadata.google.internal.").is_err());
        assert!(p.check_name("METADATA.google.internal").is_err());
        assert!(p.check_name("example.com").is_ok());
        assert!(p.check_host("[fe80::1]").is_err());
        assert!(p.check_host("localhost").is_ok());
    }

    #[test]
    fn ipv6_forms_of_a_denied_ipv4_address_are_denied() {
        let p = TargetPolicy::default();
        for bad in [
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::169.254.1.1",
            "2002:a9fe:a9fe::1",
            "2001:0:4136:e378:8000:63bf:5601:5601",
            "::169.254.169.254",
            "::0.0.0.2",
        ] {
            assert!(p.check_addr(ip(bad)).is_err(), "{bad}");
        }
        for good in ["64:ff9b::808:808", "2002:808:808::1", "2001:db8::1", "::1"] {
            assert!(p.check_addr(ip(good)).is_ok(), "{good}");
        }
        let strict = TargetPolicy::new(&[] as &[&str], &["10.0.0.0/8"]).unwrap();
        assert!(strict.check_addr(ip("64:ff9b::a00:1")).is_err());
        assert!(strict.check_host("[2002:a00:1::]").is_err());
    }

    #[test]
    fn the_most_specific_rule_decides_and_allow_wins_a_tie() {
        let p = TargetPolicy::new(
            &["169.254.10.0/24", "127.0.0.1", "ok.internal"],
            &["127.0.0.0/8", "*.internal", "localhost"],
        )
        .unwrap();
        assert!(p.check_addr(ip("169.254.10.7")).is_ok());
        assert!(p.check_addr(ip("169.254.169.254")).is_err());
        assert!(p.check_addr(ip("127.0.0.1")).is_ok());
        assert!(p.check_addr(ip("127.0.0.2")).is_err());
        assert!(p.check_name("ok.internal").is_ok());
        assert!(p.check_name("db.internal").is_err());
        assert!(
            p.check_name("internal").is_ok(),
            "*.x covers names below x only"
        );
        assert!(p.check_name("localhost").is_err());
        let tie = TargetPolicy::new(&["10.0.0.0/8"], &["10.0.0.0/8"]).unwrap();
        assert!(tie.check_addr(ip("10.1.2.3")).is_ok());
        let e = p.check_addr(ip("127.0.0.9")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "forbidden by bus.targets (deny \"127.0.0.0/8\")"
        );
    }

    #[test]
    fn bad_entries_are_named() {
        for (bad, needle) in [
            ("10.0.0.0/33", "bus.targets.deny[1]"),
            ("1.2.3.4/", "bus.targets.deny[1]"),
            ("a b", "bus.targets.deny[1]"),
            ("*.", "bus.targets.deny[1]"),
            ("", "bus.targets.deny[1]"),
        ] {
            let e = TargetPolicy::new(&[] as &[&str], &["10.0.0.0/8", bad]).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
        assert!(TargetPolicy::new(&["x..y"], &[])
            .unwrap_err()
            .contains("allow[0]"));
    }
}
