//! `[tracing]`: OpenTelemetry spans exported over OTLP/HTTP (protobuf) when `otlp_endpoint` is
//! set (issue 19; the spans are made by `busbar_broker::trace`). The SDK's batch span processor
//! runs on its own thread and sends with the binary's own HTTP client (ureq, rustls), so the
//! exporter adds no runtime and no second TLS stack.
//!
//! Bounded: at most `queue_max` finished spans wait for export (more are dropped and counted by
//! the SDK, never blocking a publish or a delivery); at most 512 go in one request; a request
//! gives up after `export_timeout_ms` (one try: the next batch is the retry), and a clean stop
//! waits for the last spans at most that long; a collector's answer is read up to 64 KiB. A failed
//! export is logged (`tracing_export_failed`, at most one line a minute).

use anyhow::{anyhow, bail, Result};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};
use opentelemetry_sdk::Resource;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Largest collector answer read (an OTLP partial-success message is small).
const ANSWER_BYTES_MAX: u64 = 64 * 1024;

/// `[tracing]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingSection {
    /// The collector's OTLP/HTTP base URL (`http://127.0.0.1:4318`; spans go to its
    /// `/v1/traces`, or to the URL as given when it already ends so). Empty: tracing off.
    pub otlp_endpoint: String,
    /// The `service.name` of busbar's spans.
    pub service_name: String,
    /// Share of new traces recorded (0.0 to 1.0); a span whose parent came with a trace context
    /// follows the parent's sampled flag. (A number, or its text: `BUSBAR_TRACING_SAMPLE_RATIO=0.5`.)
    #[serde(deserialize_with = "number_or_text")]
    pub sample_ratio: f64,
    /// Most finished spans waiting for export; more are dropped.
    pub queue_max: u64,
    /// How long one export request may take, milliseconds.
    pub export_timeout_ms: u64,
    /// How often waiting spans are sent, milliseconds.
    pub export_interval_ms: u64,
}

impl Default for TracingSection {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            service_name: "busbar".into(),
            sample_ratio: 1.0,
            queue_max: 2048,
            export_timeout_ms: 10_000,
            export_interval_ms: 1_000,
        }
    }
}

impl TracingSection {
    /// Every field in range; the endpoint an http(s) URL with a host.
    pub fn validate(&self) -> Result<()> {
        if !self.otlp_endpoint.is_empty() {
            self.traces_url()?;
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            bail!(
                "tracing.sample_ratio: {} is not between 0.0 and 1.0",
                self.sample_ratio
            );
        }
        if !(1..=1_000_000).contains(&self.queue_max) {
            bail!(
                "tracing.queue_max: {} is not between 1 and 1000000",
                self.queue_max
            );
        }
        for (name, v) in [
            ("export_timeout_ms", self.export_timeout_ms),
            ("export_interval_ms", self.export_interval_ms),
        ] {
            if !(10..=600_000).contains(&v) {
                bail!("tracing.{name}: {v} is not between 10 and 600000");
            }
        }
        if self.service_name.is_empty() || self.service_name.len() > 255 {
            bail!("tracing.service_name must be 1 to 255 bytes");
        }
        Ok(())
    }

    /// The URL spans are posted to.
    fn traces_url(&self) -> Result<String> {
        let e = self.otlp_endpoint.trim();
        // Named without the value: its user info or path may hold a secret.
        let bad = |why: &str| anyhow!("tracing.otlp_endpoint {why}");
        let parsed: ureq::http::Uri = e.parse().map_err(|_| bad("is not a URL"))?;
        if !matches!(parsed.scheme_str(), Some("http" | "https")) {
            return Err(bad("is not an http:// or https:// URL"));
        }
        if parsed.host().is_none_or(str::is_empty) || parsed.query().is_some() || e.contains('#') {
            return Err(bad("needs a host, and no query or fragment"));
        }
        let base = e.trim_end_matches('/');
        if base.ends_with("/v1/traces") {
            return Ok(base.to_string());
        }
        Ok(format!("{base}/v1/traces"))
    }

    /// Installs the tracer provider and turns spans on, when an endpoint is set. The provider
    /// returned is shut down at the stop (its last spans sent).
    pub fn install(&self) -> Result<Option<SdkTracerProvider>> {
        if self.otlp_endpoint.is_empty() {
            return Ok(None);
        }
        let timeout = Duration::from_millis(self.export_timeout_ms);
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(Ureq::new(timeout))
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(self.traces_url()?)
            .with_timeout(timeout)
            // One try per batch: a retry would stretch an export past export_timeout_ms (the next
            // batch is the retry).
            .with_retry_policy(opentelemetry_otlp::RetryPolicy::disabled())
            .build()
            .map_err(|e| anyhow!("tracing.otlp_endpoint: {e}"))?;
        let exporter = Logged {
            inner: exporter,
            last: std::sync::Mutex::new(None),
        };
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(self.queue_max as usize)
            .with_max_export_batch_size((self.queue_max as usize).min(512))
            .with_scheduled_delay(Duration::from_millis(self.export_interval_ms))
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(self.sample_ratio)));
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(sampler)
            .with_resource(
                Resource::builder_empty()
                    .with_service_name(self.service_name.clone())
                    .with_attribute(opentelemetry::KeyValue::new(
                        "service.version",
                        env!("CARGO_PKG_VERSION"),
                    ))
                    .build(),
            )
            .build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        busbar_broker::trace::enable();
        Ok(Some(provider))
    }
}

/// Shuts `provider` down: the spans still waiting are sent, for at most `timeout`.
pub fn shutdown(provider: SdkTracerProvider, timeout: Duration) {
    let _ = provider.shutdown_with_timeout(timeout);
}

/// How often a failing export is logged (with the count of failures since the last line).
const FAILURE_LOG_GAP: Duration = Duration::from_secs(60);

/// The OTLP exporter, with failed exports logged (`tracing_export_failed`, at most one line a
/// minute with how many failed): a collector that refuses or is down is otherwise silent.
#[derive(Debug)]
struct Logged<E> {
    inner: E,
    /// When the last line was written and the failures since.
    last: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
}

impl<E: SpanExporter> SpanExporter for Logged<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        if let Err(e) = &result {
            self.failed(spans, e);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E> Logged<E> {
    fn failed(&self, spans: usize, e: &OTelSdkError) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        let failures = match *last {
            Some((at, n)) if now.duration_since(at) < FAILURE_LOG_GAP => {
                *last = Some((at, n + 1));
                return;
            }
            Some((_, n)) => n + 1,
            None => 1,
        };
        *last = Some((now, 0));
        drop(last);
        let msg = format!(
            "tracing: sending {spans} spans to the collector failed ({failures} failed exports \
             since the last such line; their spans are dropped): {e}"
        );
        busbar_broker::log::warn(
            "busbar",
            "tracing_export_failed",
            &msg,
            &[("failures", failures.into())],
        );
    }
}

/// OTLP requests through ureq (blocking: the batch processor calls it from its own thread).
#[derive(Debug)]
struct Ureq(ureq::Agent);

impl Ureq {
    fn new(timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .max_redirects(0)
            .build()
            .into();
        Ureq(agent)
    }
}

#[async_trait::async_trait]
impl HttpClient for Ureq {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let answer = self.0.run(request.map(|b| b.to_vec()))?;
        let (parts, mut body) = answer.into_parts();
        let bytes = body
            .with_config()
            .limit(ANSWER_BYTES_MAX)
            .read_to_vec()
            .unwrap_or_default();
        Ok(Response::from_parts(parts, Bytes::from(bytes)))
    }
}

/// A number, or a text that parses as one (environment values arrive as text).
fn number_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Number(f64),
        Text(String),
    }
    match N::deserialize(d)? {
        N::Number(n) => Ok(n),
        N::Text(t) => t.trim().parse().map_err(|_| {
            let t: String = t.chars().take(50).collect();
            serde::de::Error::custom(format!("{t:?} is not a number"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(endpoint: &str) -> TracingSection {
        TracingSection {
            otlp_endpoint: endpoint.into(),
            ..TracingSection::default()
        }
    }

    #[test]
    fn the_endpoint_gets_the_traces_path_once() {
        assert_eq!(
            with("http://127.0.0.1:4318").traces_url().unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            with("https://c.example/otel/").traces_url().unwrap(),
            "https://c.example/otel/v1/traces"
        );
        assert_eq!(
            with("http://c:4318/v1/traces").traces_url().unwrap(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            with("http://c:4318/v1/traces/").traces_url().unwrap(),
            "http://c:4318/v1/traces"
        );
    }

    #[test]
    fn bad_settings_are_named() {
        for (s, want) in [
            (with("ftp://c"), "tracing.otlp_endpoint"),
            (with("c:4318"), "tracing.otlp_endpoint"),
            (with("http://c:4318/?a=1"), "tracing.otlp_endpoint"),
            (with("http://c:4318/#x"), "tracing.otlp_endpoint"),
            (with("not a url"), "tracing.otlp_endpoint"),
            (
                TracingSection {
                    sample_ratio: 1.5,
                    ..TracingSection::default()
                },
                "tracing.sample_ratio",
            ),
            (
                TracingSection {
                    queue_max: 0,
                    ..TracingSection::default()
                },
                "tracing.queue_max",
            ),
            (
                TracingSection {
                    export_timeout_ms: 0,
                    ..TracingSection::default()
                },
                "tracing.export_timeout_ms",
            ),
        ] {
            let e = s.validate().expect_err(want).to_string();
            assert!(e.starts_with(want), "{e}");
        }
        TracingSection::default().validate().unwrap();
    }
}
