//! `[kafka] listeners`: Kafka's `PROTOCOL://HOST:PORT` forms (PLAINTEXT, SASL_PLAINTEXT, SSL,
//! SASL_SSL), parsed and checked at start-up; SSL and SASL_SSL need `[tls]` (checked in
//! `config`). An empty list means one PLAINTEXT listener on `kafka.addr`, which is also what
//! `--kafka-addr X` sets (`["PLAINTEXT://X"]`).

use anyhow::{bail, Result};
use busbar_kafka::Security;

/// One configured listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub security: Security,
    /// `HOST:PORT` to bind.
    pub addr: String,
}

impl std::fmt::Display for ListenerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.security.name(), self.addr)
    }
}

/// Parses one `PROTOCOL://HOST:PORT`.
pub fn parse(text: &str) -> Result<ListenerSpec> {
    let Some((protocol, addr)) = text.split_once("://") else {
        bail!("kafka.listeners: {text:?} is not PROTOCOL://HOST:PORT (for example \"SASL_PLAINTEXT://127.0.0.1:9094\")");
    };
    let security = match protocol.to_ascii_uppercase().as_str() {
        "PLAINTEXT" => Security::Plaintext,
        "SASL_PLAINTEXT" => Security::SaslPlaintext,
        "SSL" => Security::Ssl,
        "SASL_SSL" => Security::SaslSsl,
        _ => bail!(
            "kafka.listeners: {text:?}: unknown protocol {protocol:?} (PLAINTEXT, SASL_PLAINTEXT, \
             SSL, SASL_SSL)"
        ),
    };
    crate::config::listen_address("kafka.listeners", addr)?;
    Ok(ListenerSpec {
        security,
        addr: addr.to_string(),
    })
}

/// The listeners to serve: `listeners` parsed, or one PLAINTEXT listener on `addr` when empty.
/// The same address twice is refused.
pub fn resolve(listeners: &[String], addr: &str) -> Result<Vec<ListenerSpec>> {
    if listeners.is_empty() {
        return Ok(vec![ListenerSpec {
            security: Security::Plaintext,
            addr: addr.to_string(),
        }]);
    }
    let specs = listeners
        .iter()
        .map(|l| parse(l))
        .collect::<Result<Vec<_>>>()?;
    for (i, s) in specs.iter().enumerate() {
        let port_zero = s.addr.ends_with(":0");
        if !port_zero && specs[..i].iter().any(|o| o.addr == s.addr) {
            bail!("kafka.listeners: {} is listed twice", s.addr);
        }
    }
    Ok(specs)
}

/// For the ready line: nothing for one PLAINTEXT listener (the line stays as it always was),
/// else ` listeners PROTOCOL://IP:PORT,...` with the bound addresses.
pub fn describe(bound: &[(tokio::net::TcpListener, busbar_kafka::Listener)]) -> String {
    if let [(_, l)] = bound {
        if l.security == Security::Plaintext {
            return String::new();
        }
    }
    let all: Vec<String> = bound
        .iter()
        .filter_map(|(s, l)| Some(format!("{}://{}", l.security.name(), s.local_addr().ok()?)))
        .collect();
    format!(" listeners {}", all.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_forms_are_parsed() {
        let l = resolve(
            &[
                "SASL_PLAINTEXT://127.0.0.1:9094".into(),
                "plaintext://127.0.0.1:9092".into(),
            ],
            "ignored:1",
        )
        .unwrap();
        assert_eq!(l[0].security, Security::SaslPlaintext);
        assert_eq!(l[0].addr, "127.0.0.1:9094");
        assert_eq!(l[1].to_string(), "PLAINTEXT://127.0.0.1:9092");
        assert_eq!(
            parse("SSL://127.0.0.1:9093").unwrap().security,
            Security::Ssl
        );
        let sasl_ssl = parse("sasl_ssl://127.0.0.1:9093").unwrap();
        assert_eq!(sasl_ssl.security, Security::SaslSsl);
        assert_eq!(sasl_ssl.to_string(), "SASL_SSL://127.0.0.1:9093");
        assert!(parse("127.0.0.1:9092").is_err());
        assert!(parse("GSSAPI://127.0.0.1:9092").is_err());
        assert!(parse("PLAINTEXT://nowhere").is_err());
        let twice = [
            "PLAINTEXT://127.0.0.1:9092".to_string(),
            "SASL_PLAINTEXT://127.0.0.1:9092".into(),
        ];
        assert!(resolve(&twice, "x").is_err());
        let default = resolve(&[], "127.0.0.1:9092").unwrap();
        assert_eq!(default[0].to_string(), "PLAINTEXT://127.0.0.1:9092");
    }
}
