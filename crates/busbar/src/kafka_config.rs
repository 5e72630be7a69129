//! `[kafka]`: the Kafka protocol listeners and their limits. Defaults come from
//! [`KafkaConfig`]; `limits.connections_per_ip` and the TLS and SASL cross-checks stay in
//! `config.rs`, which sees every section.

use anyhow::Result;
use busbar_kafka::KafkaConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// `[kafka]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kafka {
    /// Address of the Kafka protocol listener (when `listeners` is empty).
    pub addr: String,
    /// Listeners in Kafka's forms (`SASL_PLAINTEXT://127.0.0.1:9094`, `PLAINTEXT://...`); empty:
    /// one PLAINTEXT listener on `addr`.
    pub listeners: Vec<String>,
    /// Largest frame before SASL authentication completes, bytes.
    pub sasl_bytes_max: u64,
    /// Close a SASL listener's connection not authenticated within this, milliseconds.
    pub sasl_timeout_ms: u64,
    /// Host clients are told to connect to; empty: the listener's IP.
    pub advertised_host: String,
    /// Port clients are told to connect to; 0: the listener's port.
    pub advertised_port: u16,
    /// Create unknown topics on Metadata requests that allow it.
    pub auto_create_topics: bool,
    /// Largest request frame, bytes.
    pub frame_bytes_max: u64,
    /// Most open client connections.
    pub connections_max: u64,
    /// Most bytes of Kafka requests held at once (a flood waits as TCP backpressure).
    pub request_bytes_max: u64,
    /// Most bytes of Kafka responses held at once (fetches wait for room before reading).
    pub response_bytes_max: u64,
    /// Close connections silent this long, milliseconds.
    pub idle_timeout_ms: u64,
    /// A request must arrive whole within this once its length has arrived, milliseconds.
    pub read_timeout_ms: u64,
    /// A response must be taken by the client within this, milliseconds; else its connection is
    /// closed and its memory freed.
    pub write_timeout_ms: u64,
    /// A TLS handshake must finish within this of the accept, milliseconds.
    pub tls_handshake_timeout_ms: u64,
}

impl Default for Kafka {
    fn default() -> Self {
        let k = KafkaConfig::default();
        Kafka {
            addr: "127.0.0.1:9092".into(),
            listeners: Vec::new(),
            sasl_bytes_max: k.sasl_bytes_max as u64,
            sasl_timeout_ms: k.sasl_timeout.as_millis() as u64,
            advertised_host: String::new(),
            advertised_port: 0,
            auto_create_topics: k.auto_create_topics,
            frame_bytes_max: k.frame_bytes_max as u64,
            connections_max: k.connections_max as u64,
            request_bytes_max: k.request_bytes_max as u64,
            response_bytes_max: k.response_bytes_max as u64,
            idle_timeout_ms: k.idle_timeout.as_millis() as u64,
            read_timeout_ms: k.read_timeout.as_millis() as u64,
            write_timeout_ms: k.write_timeout.as_millis() as u64,
            tls_handshake_timeout_ms: k.tls_handshake_timeout.as_millis() as u64,
        }
    }
}

impl Kafka {
    /// Range checks of the section's own keys.
    pub fn validate(&self) -> Result<()> {
        let checks: &[(&str, u64, u64, u64)] = &[
            (
                "kafka.request_bytes_max",
                self.request_bytes_max,
                self.frame_bytes_max,
                u32::MAX as u64,
            ),
            ("kafka.frame_bytes_max", self.frame_bytes_max, 1024, 1 << 31),
            ("kafka.connections_max", self.connections_max, 1, 1_000_000),
            (
                "kafka.response_bytes_max",
                self.response_bytes_max,
                1 << 20,
                1 << 40,
            ),
            (
                "kafka.idle_timeout_ms",
                self.idle_timeout_ms,
                1000,
                86_400_000,
            ),
            (
                "kafka.read_timeout_ms",
                self.read_timeout_ms,
                100,
                3_600_000,
            ),
            (
                "kafka.write_timeout_ms",
                self.write_timeout_ms,
                100,
                3_600_000,
            ),
            (
                "kafka.tls_handshake_timeout_ms",
                self.tls_handshake_timeout_ms,
                100,
                3_600_000,
            ),
            (
                "kafka.sasl_bytes_max",
                self.sasl_bytes_max,
                1024,
                self.frame_bytes_max,
            ),
            (
                "kafka.sasl_timeout_ms",
                self.sasl_timeout_ms,
                100,
                3_600_000,
            ),
        ];
        crate::config::check_ranges(checks)
    }

    /// The Kafka listeners' settings (with `limits.connections_per_ip`); the advertised address
    /// defaults to the bound one.
    pub fn kafka_config(&self, bound: SocketAddr, connections_per_ip: u64) -> KafkaConfig {
        KafkaConfig {
            advertised_host: if self.advertised_host.is_empty() {
                bound.ip().to_string()
            } else {
                self.advertised_host.clone()
            },
            advertised_port: if self.advertised_port == 0 {
                bound.port()
            } else {
                self.advertised_port
            },
            auto_create_topics: self.auto_create_topics,
            frame_bytes_max: self.frame_bytes_max as usize,
            connections_max: self.connections_max as usize,
            request_bytes_max: self.request_bytes_max as usize,
            response_bytes_max: self.response_bytes_max as usize,
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            read_timeout: Duration::from_millis(self.read_timeout_ms),
            write_timeout: Duration::from_millis(self.write_timeout_ms),
            sasl_bytes_max: self.sasl_bytes_max as usize,
            sasl_timeout: Duration::from_millis(self.sasl_timeout_ms),
            tls_handshake_timeout: Duration::from_millis(self.tls_handshake_timeout_ms),
            connections_per_ip: connections_per_ip as usize,
            ..KafkaConfig::default()
        }
    }
}
