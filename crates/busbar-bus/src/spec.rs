//! What a subscription is (the shape shared by HTTP, the CLI and the config file) and its
//! validation: every error names the offending field, and nothing is created when one is found.
//!
//! Decisions (defaults and ranges; EventBridge's where it has one):
//! - `max_attempts` counts every delivery attempt including the first (1..=1000, default 20).
//! - Backoff: `backoff_initial_ms` (1..=3,600,000, default 1,000) doubled per retry up to
//!   `backoff_max_ms` (initial..=86,400,000, default 60,000), with "equal jitter" (a delay `d` becomes
//!   `d/2 + random(0..=d/2)`), so a delay is never below half the nominal one.
//! - `retry_after_max_ms` 0..=86,400,000, default 3,600,000 (1 h): a target's `Retry-After` is
//!   honoured up to this long, plus up to 10% jitter so that a crowd of events told the same time
//!   does not come back at once; a longer one is cut to it (never trusted to park an event for
//!   days), a negative one dead-letters with `retry_after_negative`.
//! - `max_age_s` 1..=604,800 (7 days), default 86,400 (EventBridge's 24 h); `timeout_ms`
//!   1..=300,000, default 5,000 (EventBridge's client timeout).
//! - `ordering` `key` (default: events of one key in one partition are delivered in offset order;
//!   a failing key holds back only that key; events without a key keep partition order: they
//!   share one lane per partition, so a failing keyless event holds back the partition's keyless
//!   events) or `none`.
//! - `concurrency` 1..=1024 deliveries in flight per subscription, default 16.
//! - `waiting_max` 1..=1,000,000, default 10,000: events of the subscription waiting for another
//!   attempt, behind an earlier event of their key, or for their dead letter. At the limit the
//!   worker stops reading new events (backpressure: the log is the buffer, the lag grows and the
//!   state says `backpressure: ...`) until some settle; deliveries in flight may add at most
//!   `concurrency` more.
//! - A target or dead-letter topic must exist and must not be a source (no delivery loops).
//! - HTTP targets are `http://` or `https://` URLs. An `https://` target may name
//!   `tls.ca_file`, a PEM file whose certificates are then its only trust roots (else the Mozilla
//!   roots); the file must hold a certificate when the subscription is created or updated.
//! - An HTTP target's header values (often credentials) stay with the origin (scheme, host,
//!   port; a default port counts as given) they were given for: an update that moves the target
//!   to another origin must give every header's value again, or remove it; one left to keep its
//!   stored value (left out of a PATCH, or sent as `***`) is refused, naming the header. Refused
//!   rather than dropped: a silent drop would deliver without the credential the target needs.
//! - The target policy (`[bus.targets]`, `targets.rs`) is checked on create and update: a URL
//!   whose host name or literal address it denies is refused, naming the rule.
//! - A transform's template is at most 8,192 bytes (EventBridge's limit) with at most 100
//!   variables; `transform.output_bytes_max` 1..=16,777,216, default 1,048,576 (1 MiB), caps one
//!   transformed event: an event whose output would be larger is dead-lettered at once with
//!   reason `transform_too_large` (a template can name a large value many times).
//! - A topic target may `encode` each delivered value with a schema of the registry:
//!   `{"topic": "t", "encode": {"schema": "latest"}}` (`schema`: `latest`, a version number or
//!   `id:<n>`; `subject` defaults to `<topic>-value`, TopicNameStrategy; `message` names a
//!   Protobuf message, else the file's first). The JSON encoded is the transform's output when
//!   there is a transform, else the event's `data` (a schema-framed value decoded with its own
//!   schema, or JSON). The subject must resolve (and hold `message`, only for Protobuf) when the
//!   subscription is created or updated through the API (not when the configuration file
//!   declares it: a fresh registry is empty; `Compiled::check_encode`); an
//!   event that does not encode later (not JSON, not valid for the schema, the subject since
//!   deleted) is dead-lettered at once with reason `schema_encode_failed`. A null value (a
//!   tombstone) stays null.

use crate::error::{BusError, Result};
use crate::targets::TargetPolicy;
use busbar_rules::{Pattern, Transform};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Most source topics of one subscription.
pub const SOURCES_MAX: usize = 100;
/// Most custom headers of an HTTP target.
pub const HEADERS_MAX: usize = 64;
/// Longest subscription name (and replay name), in bytes.
pub const NAME_BYTES_MAX: usize = 200;

/// A subscription as created or updated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSpec {
    pub name: String,
    pub sources: Vec<String>,
    /// `latest` (default), `earliest` or an RFC 3339 time: where reading starts on partitions that
    /// have no position yet when the subscription is created or a source is added.
    #[serde(default = "latest")]
    pub start: String,
    /// An event pattern; absent matches every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<TransformSpec>,
    pub target: Target,
    #[serde(default)]
    pub delivery: Delivery,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
}

fn latest() -> String {
    "latest".into()
}

/// An input transformer: variables by JSON path, and a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformSpec {
    #[serde(default)]
    pub paths: BTreeMap<String, String>,
    pub template: String,
    /// Most bytes of one transformed event (see the module doc).
    #[serde(default = "output_bytes_max")]
    pub output_bytes_max: u32,
}

fn output_bytes_max() -> u32 {
    busbar_rules::OUTPUT_BYTES_MAX as u32
}

/// Where matched events go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Target {
    Topic {
        topic: String,
        /// Encode each value with a schema of the registry (see the module docs).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encode: Option<EncodeSpec>,
    },
    Http {
        url: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
        #[serde(default)]
        mode: Mode,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tls: Option<TlsSpec>,
    },
}

/// How a topic target encodes what it stores (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodeSpec {
    /// `latest` (default), a version number (a JSON number or string), or `id:<n>`.
    #[serde(default = "latest", deserialize_with = "text_or_number")]
    pub schema: String,
    /// The subject; `<topic>-value` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The Protobuf message (full name) to encode as; the file's first when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A string, or a non-negative integer as its decimal text (`"schema": 2` as `"2"`).
fn text_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrNumber {
        Text(String),
        Number(u64),
    }
    Ok(match TextOrNumber::deserialize(d)? {
        TextOrNumber::Text(s) => s,
        TextOrNumber::Number(n) => n.to_string(),
    })
}

/// Longest subject or message name of a target's `encode`, in bytes.
pub const ENCODE_NAME_BYTES_MAX: usize = 255;

impl EncodeSpec {
    /// The subject values are encoded with for `topic`.
    pub fn subject_for(&self, topic: &str) -> String {
        self.subject
            .clone()
            .unwrap_or_else(|| format!("{topic}-value"))
    }

    fn check(&self) -> Result<()> {
        let s = self.schema.as_str();
        let number =
            |n: &str| !n.is_empty() && n.len() <= 10 && n.bytes().all(|b| b.is_ascii_digit());
        if !(s == "latest" || s == "-1" || number(s) || s.strip_prefix("id:").is_some_and(number)) {
            return Err(invalid(
                "target.encode.schema",
                format!("{:?} is not latest, a version number or id:<n>", clip(s)),
            ));
        }
        for (path, v) in [
            ("target.encode.subject", &self.subject),
            ("target.encode.message", &self.message),
        ] {
            if let Some(v) = v {
                if v.is_empty() || v.len() > ENCODE_NAME_BYTES_MAX {
                    return Err(invalid(
                        path,
                        format!("must be 1 to {ENCODE_NAME_BYTES_MAX} bytes"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// At most 100 bytes of `s` for an error message.
fn clip(s: &str) -> &str {
    let mut end = s.len().min(100);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// TLS settings of an `https://` target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// A PEM file of CA certificates to trust instead of the default roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
}

/// CloudEvents HTTP binding mode of an HTTP target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Binary,
    Structured,
}

/// Per-key ordering or none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    #[default]
    Key,
    None,
}

/// The delivery policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    pub max_attempts: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub retry_after_max_ms: u64,
    pub max_age_s: u64,
    pub timeout_ms: u64,
    pub ordering: Ordering,
    pub concurrency: u32,
    pub waiting_max: u32,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            max_attempts: 20,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 60_000,
            retry_after_max_ms: 3_600_000,
            max_age_s: 86_400,
            timeout_ms: 5_000,
            ordering: Ordering::Key,
            concurrency: 16,
            waiting_max: 10_000,
        }
    }
}

/// Where a subscription starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Latest,
    Earliest,
    Time(i64),
}

/// A validated subscription: the spec and its compiled parts.
pub struct Compiled {
    pub spec: SubscriptionSpec,
    pub pattern: Option<Pattern>,
    pub transform: Option<Transform>,
    pub start: Start,
    pub url: Option<hyper::Uri>,
}

/// A spec error naming the offending field (`delivery.max_attempts`).
pub(crate) fn invalid(path: &str, reason: impl Into<String>) -> BusError {
    BusError::InvalidSubscription {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// Checks a subscription or replay name: 1 to 200 of `[A-Za-z0-9._-]`.
pub fn check_name(path: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(invalid(
            path,
            format!("must be 1 to {NAME_BYTES_MAX} bytes"),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(
            path,
            format!("{name:?} has {c:?}; use letters, digits, '.', '_' and '-'"),
        ));
    }
    Ok(())
}

fn in_range(path: &str, v: u64, lo: u64, hi: u64) -> Result<()> {
    if v < lo || v > hi {
        return Err(invalid(path, format!("{v} is outside {lo}..={hi}")));
    }
    Ok(())
}

fn check_delivery(d: &Delivery) -> Result<()> {
    in_range("delivery.max_attempts", d.max_attempts.into(), 1, 1000)?;
    in_range(
        "delivery.backoff_initial_ms",
        d.backoff_initial_ms,
        1,
        3_600_000,
    )?;
    in_range(
        "delivery.backoff_max_ms",
        d.backoff_max_ms,
        d.backoff_initial_ms,
        86_400_000,
    )?;
    in_range(
        "delivery.retry_after_max_ms",
        d.retry_after_max_ms,
        0,
        86_400_000,
    )?;
    in_range("delivery.max_age_s", d.max_age_s, 1, 604_800)?;
    in_range("delivery.timeout_ms", d.timeout_ms, 1, 300_000)?;
    in_range("delivery.concurrency", d.concurrency.into(), 1, 1024)?;
    in_range("delivery.waiting_max", d.waiting_max.into(), 1, 1_000_000)
}

fn check_header(name: &str, value: &str) -> Result<()> {
    let path = format!("target.headers.{name}");
    if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(invalid(&path, "not a valid HTTP header name"));
    }
    if hyper::header::HeaderValue::from_str(value).is_err() {
        return Err(invalid(&path, "not a valid HTTP header value"));
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("ce-")
        || matches!(
            lower.as_str(),
            "content-type" | "content-length" | "host" | "traceparent" | "transfer-encoding"
        )
    {
        return Err(invalid(&path, "set by busbar for every delivery"));
    }
    Ok(())
}

/// The scheme, host and port of a target URL, the port filled in from the scheme when the URL
/// leaves it out (`None` when it does not parse).
fn origin(url: &str) -> Option<(String, String, u16)> {
    let u: hyper::Uri = url.parse().ok()?;
    let scheme = u.scheme_str()?.to_ascii_lowercase();
    let host = u.host()?.to_ascii_lowercase();
    let port = u.port_u16().or(match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    })?;
    Some((scheme, host, port))
}

/// Whether two target URLs share scheme, host and port: stored header values (credentials) stay
/// with the origin they were given for. A URL that does not parse shares no origin.
pub fn same_origin(a: &str, b: &str) -> bool {
    origin(a).is_some_and(|o| Some(o) == origin(b))
}

/// Parses and checks an HTTP target URL.
pub fn parse_url(url: &str) -> Result<hyper::Uri> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| invalid("target.url", format!("{url:?} is not a URL: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(invalid(
            "target.url",
            format!("{url:?} must start with http:// or https://"),
        ));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("target.url", format!("{url:?} has no host")));
    }
    Ok(uri)
}

fn parse_start(s: &str) -> Result<Start> {
    match s {
        "latest" => Ok(Start::Latest),
        "earliest" => Ok(Start::Earliest),
        t => busbar_broker::time::parse_rfc3339(t)
            .map(Start::Time)
            .ok_or_else(|| {
                invalid(
                    "start",
                    format!("{t:?} is not latest, earliest or an RFC 3339 time"),
                )
            }),
    }
}

/// What an HTTP target's header values read as (they often carry credentials).
pub const MASK: &str = "***";

impl SubscriptionSpec {
    /// The spec as it is shown (HTTP, CLI): every HTTP target header value reads [`MASK`]; the
    /// names stay visible.
    pub fn masked(&self) -> SubscriptionSpec {
        let mut s = self.clone();
        if let Target::Http { headers, .. } = &mut s.target {
            headers.values_mut().for_each(|v| *v = MASK.to_string());
        }
        s
    }

    /// For an update read back masked and sent again: a header whose value is [`MASK`] keeps the
    /// value `old` has for it while the target stays at the same origin (scheme, host, port); one
    /// `old` does not have, or one that would follow the target to another origin, is refused
    /// (a value nobody can read must not be sent somewhere new).
    pub fn keep_masked_from(&mut self, old: &SubscriptionSpec) -> Result<()> {
        let Target::Http { url, headers, .. } = &mut self.target else {
            return Ok(());
        };
        let (kept, same_origin) = match &old.target {
            Target::Http {
                url: old_url,
                headers,
                ..
            } => (headers.clone(), same_origin(old_url, url)),
            Target::Topic { .. } => (BTreeMap::new(), false),
        };
        for (name, v) in headers.iter_mut().filter(|(_, v)| *v == MASK) {
            let path = format!("target.headers.{name}");
            let Some(old) = kept.get(name) else {
                let why = format!("{MASK:?} keeps a stored value, and there is none for {name:?}");
                return Err(invalid(&path, why));
            };
            if !same_origin {
                let why = format!(
                    "{MASK:?} keeps a stored value only while the target stays at the same \
                     scheme, host and port; give {name:?} again for the new URL"
                );
                return Err(invalid(&path, why));
            }
            *v = old.clone();
        }
        Ok(())
    }

    /// Validates everything that does not depend on the broker's topics, and compiles.
    pub fn compile(self) -> Result<Compiled> {
        check_name("name", &self.name)?;
        if self.sources.is_empty() || self.sources.len() > SOURCES_MAX {
            return Err(invalid(
                "sources",
                format!("needs 1 to {SOURCES_MAX} topics"),
            ));
        }
        for (i, s) in self.sources.iter().enumerate() {
            if self.sources[..i].contains(s) {
                return Err(invalid(
                    &format!("sources[{i}]"),
                    format!("{s:?} is listed twice"),
                ));
            }
        }
        let start = parse_start(&self.start)?;
        let pattern = match &self.pattern {
            None => None,
            Some(p) => Some(Pattern::parse(p).map_err(|e| invalid("pattern", e.to_string()))?),
        };
        let transform = match &self.transform {
            None => None,
            Some(t) => {
                in_range(
                    "transform.output_bytes_max",
                    t.output_bytes_max.into(),
                    1,
                    16 << 20,
                )?;
                let tr =
                    Transform::new(&t.paths, &t.template).map_err(|e| invalid("transform", e))?;
                Some(tr.with_output_max(t.output_bytes_max as usize))
            }
        };
        let url = match &self.target {
            Target::Topic { topic, encode } => {
                self.check_not_source("target.topic", topic)?;
                if let Some(e) = encode {
                    e.check()?;
                }
                None
            }
            Target::Http {
                url, headers, tls, ..
            } => {
                if headers.len() > HEADERS_MAX {
                    return Err(invalid(
                        "target.headers",
                        format!("at most {HEADERS_MAX} headers"),
                    ));
                }
                for (k, v) in headers {
                    check_header(k, v)?;
                }
                let uri = parse_url(url)?;
                if tls.is_some() && uri.scheme_str() != Some("https") {
                    return Err(invalid("target.tls", "only https:// targets use TLS"));
                }
                Some(uri)
            }
        };
        if let Some(d) = &self.dead_letter_topic {
            self.check_not_source("dead_letter_topic", d)?;
        }
        check_delivery(&self.delivery)?;
        Ok(Compiled {
            spec: self,
            pattern,
            transform,
            start,
            url,
        })
    }

    fn check_not_source(&self, path: &str, topic: &str) -> Result<()> {
        if self.sources.iter().any(|s| s == topic) {
            return Err(invalid(
                path,
                format!("{topic:?} is also a source; that would deliver in a loop"),
            ));
        }
        Ok(())
    }

    /// Topics this subscription needs to exist: sources, target topic, dead-letter topic, each with
    /// the field that names it.
    pub fn topics(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("sources[{i}]"), s.clone()))
            .collect();
        if let Target::Topic { topic, .. } = &self.target {
            out.push(("target.topic".into(), topic.clone()));
        }
        if let Some(d) = &self.dead_letter_topic {
            out.push(("dead_letter_topic".into(), d.clone()));
        }
        out
    }
}

impl Compiled {
    /// The checks of an HTTP target that depend on the host (not on the spec alone): the target
    /// policy allows its host, and its CA file holds certificates.
    pub fn check_target(&self, policy: &TargetPolicy) -> Result<()> {
        let Some(uri) = &self.url else {
            return Ok(());
        };
        let host = uri.host().unwrap_or("");
        policy.check_host(host).map_err(|f| {
            let why = format!("host {host} is {f}; an operator can allow it in [bus.targets]");
            invalid("target.url", why)
        })?;
        if let Some(path) = self.ca_file() {
            crate::tls::load_ca(path).map_err(|e| invalid("target.tls.ca_file", e))?;
        }
        Ok(())
    }

    /// A topic target's `encode` names a schema the registry has, and a message it has
    /// (`decoder`: the bus's schema hook). Without a hook nothing is checked: the binary
    /// declares the configuration file's subscriptions before it installs the hook, because
    /// the registry cannot be seeded from that file (a fresh data directory has no subjects);
    /// their events are dead-lettered (`schema_encode_failed`) until the subject exists.
    pub fn check_encode(&self, decoder: Option<&crate::decode::Decoder>) -> Result<()> {
        let (
            Target::Topic {
                topic,
                encode: Some(spec),
            },
            Some(decoder),
        ) = (&self.spec.target, decoder)
        else {
            return Ok(());
        };
        let subject = spec.subject_for(topic);
        let enc = decoder.encoder().map_err(|e| invalid("target.encode", e))?;
        let id = enc.resolve(&subject, &spec.schema).map_err(|e| {
            let why = format!("subject {:?}: {}", clip(&subject), clip(&e));
            invalid("target.encode", why)
        })?;
        enc.check(id, spec.message.as_deref())
            .map_err(|e| invalid("target.encode.message", clip(&e)))
    }

    /// The CA file of an `https://` target, if it names one.
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        match &self.spec.target {
            Target::Http {
                tls: Some(TlsSpec {
                    ca_file: Some(p), ..
                }),
                ..
            } => Some(p),
            _ => None,
        }
    }
}

/// The fields whose value is an object of named fields. serde would also take a JSON array for
/// them, field by field in order (`"delivery": [1]` as `max_attempts` 1), which nobody means.
const OBJECTS: &[&str] = &[
    "delivery",
    "transform",
    "target",
    "target.tls",
    "target.encode",
];

/// Parses a subscription from JSON, with the path of the offending field in the error.
pub fn from_json(v: &Value) -> Result<SubscriptionSpec> {
    if !v.is_object() {
        return Err(invalid("subscription", "must be a JSON object"));
    }
    for path in OBJECTS {
        let at = path.split('.').try_fold(v, |v, k| v.get(k));
        if at.is_some_and(|x| !x.is_object() && !x.is_null()) {
            return Err(invalid(path, "must be a JSON object of named fields"));
        }
    }
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        invalid(
            if path == "." { "subscription" } else { &path },
            e.inner().to_string(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: Value) -> Result<Compiled> {
        from_json(&v)?.compile()
    }

    fn err(v: Value) -> String {
        match spec(v) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn defaults_fill_everything_but_name_sources_and_target() {
        let c = spec(json!({"name": "s", "sources": ["a"], "target": {"topic": "b"}})).unwrap();
        assert_eq!(c.spec.delivery, Delivery::default());
        assert_eq!(c.start, Start::Latest);
        assert!(c.pattern.is_none());
        let c = spec(json!({"name": "s", "sources": ["a"], "target": {"url": "http://h:1/x"}}))
            .unwrap();
        assert!(matches!(
            c.spec.target,
            Target::Http {
                mode: Mode::Binary,
                ..
            }
        ));
    }

    #[test]
    fn errors_name_the_field() {
        let base = |extra: Value| {
            let mut v = json!({"name": "s", "sources": ["a"], "target": {"topic": "b"}});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            err(v)
        };
        assert!(base(json!({"name": "a b"})).contains("name:"));
        assert!(base(json!({"sources": []})).contains("sources:"));
        assert!(base(json!({"sources": ["a", "a"]})).contains("sources[1]"));
        assert!(base(json!({"start": "yesterday"})).contains("start:"));
        assert!(base(json!({"pattern": {"x": "notalist"}})).contains("pattern:"));
        assert!(base(json!({"target": {"topic": "a"}})).contains("loop"));
        assert!(base(json!({"target": {"url": "ftp://h/"}})).contains("target.url"));
        assert!(
            base(json!({"target": {"url": "http://h/", "tls": {"ca_file": "/c"}}}))
                .contains("target.tls")
        );
        assert!(
            base(json!({"target": {"url": "http://h/", "headers": {"ce-id": "x"}}}))
                .contains("target.headers.ce-id")
        );
        assert!(base(json!({"target": {"url": "http://h/", "mode": "batch"}})).contains("target"));
        assert!(base(json!({"delivery": {"max_attempts": 0}})).contains("delivery.max_attempts"));
        assert!(base(json!({"delivery": {"concurrency": 5000}})).contains("delivery.concurrency"));
        assert!(
            base(json!({"delivery": {"backoff_initial_ms": 10, "backoff_max_ms": 5}}))
                .contains("delivery.backoff_max_ms")
        );
        assert!(base(json!({"delivery": {"retries": 3}})).contains("delivery"));
        assert!(base(json!({"dead_letter_topic": "a"})).contains("dead_letter_topic"));
        assert!(base(json!({"colour": "red"})).contains("colour"));
        // A struct as an array (serde would fill its fields in order) is refused.
        assert!(base(json!({"delivery": [1]})).contains("delivery:"));
        assert!(base(json!({"target": ["b"]})).contains("target:"));
        assert!(base(json!({"transform": ["t"]})).contains("transform:"));
        let tls = json!({"url": "https://h/", "tls": ["/ca"]});
        assert!(base(json!({"target": tls})).contains("target.tls:"));
        assert!(err(json!([])).contains("subscription:"));
        let enc = |e: Value| base(json!({"target": {"topic": "b", "encode": e}}));
        assert!(enc(json!({"schema": "v2"})).contains("target.encode.schema"));
        assert!(enc(json!({"schema": "id:x"})).contains("target.encode.schema"));
        assert!(enc(json!({"subject": ""})).contains("target.encode.subject"));
        let long = "m".repeat(ENCODE_NAME_BYTES_MAX + 1);
        assert!(enc(json!({"message": long})).contains("target.encode.message"));
        assert!(enc(json!(["latest"])).contains("target.encode:"));
    }

    #[test]
    fn an_encode_schema_may_be_a_number() {
        let v = json!({"name": "s", "sources": ["a"],
            "target": {"topic": "b", "encode": {"schema": 2}}});
        let spec = from_json(&v).unwrap();
        let Target::Topic {
            encode: Some(e), ..
        } = &spec.target
        else {
            panic!("{spec:?}")
        };
        assert_eq!(e.schema, "2");
        assert_eq!(e.subject_for("b"), "b-value");
        spec.compile().unwrap();
    }
}
