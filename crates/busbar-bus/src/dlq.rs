//! Dead letters: ordinary events in the dead-letter topic (readable by any Kafka or HTTP client),
//! carrying the original key, value and headers plus `busbar-dlq-*` headers that say why and where
//! from. Listing reads them back with those headers parsed; a filter selects by subscription,
//! reason, partition and offset range, for listing and for redrive.
//!
//! Headers: `subscription`, `target`, `reason` (`http_status`, `timeout`, `connection`, `tls`,
//! `target_forbidden`, `storage`, `target_gone`, `too_large`, `transform_too_large`, `schema_invalid`,
//! `schema_encode_failed`, `undecodable`), `exhausted`
//! (`max_attempts`, `max_age`, `non_retriable`,
//! `retry_after_negative`), `status` (last HTTP status, when there was one), `error`, `attempts`,
//! `first-attempt` and `last-attempt` (RFC 3339), `source-topic`, `source-partition`,
//! `source-offset`, `source-time` — each prefixed `busbar-dlq-`. A dead letter redriven and failed
//! again keeps its original source.
//!
//! A stored batch whose records cannot be read (reason `undecodable`) is set aside as one letter
//! without key or value (its bytes stay in the source topic): `source-offset` is its first offset
//! and `source-last-offset` its last. Such letters are listed but never redriven.

use super::deliver::Failure;
use super::envelope::{origin, DLQ_PREFIX};
use super::spec::{Compiled, Target};
use busbar_broker::event::{Event, StoredEvent};
use busbar_broker::time::format_rfc3339;
use busbar_broker::trace::{self, Span};
use serde::{Deserialize, Serialize};

/// The span of writing `ev`'s dead letter to `topic` (recorded when tracing is on), a child of the
/// event's trace context. The caller marks it failed when the write fails.
pub fn span(sub: &Compiled, ev: &StoredEvent, f: &Failure, why: &str, topic: &str) -> Span {
    let parent = trace::Parent::of_headers(&ev.headers);
    let name = format!("dead_letter {}", sub.spec.name);
    trace::start(name, trace::Kind::Producer, parent, || {
        vec![
            ("messaging.system", "busbar".into()),
            ("messaging.operation.type", "send".into()),
            ("messaging.destination.name", topic.to_string().into()),
            ("busbar.subscription", sub.spec.name.clone().into()),
            ("busbar.dead_letter.reason", f.reason.into()),
            ("busbar.dead_letter.exhausted", why.to_string().into()),
            ("messaging.source.name", ev.topic.clone().into()),
            ("messaging.kafka.offset", (ev.offset as i64).into()),
        ]
    })
}

/// Builds the dead letter of `ev`.
pub fn letter(
    sub: &Compiled,
    ev: &StoredEvent,
    f: &Failure,
    exhausted: &str,
    attempts: u32,
    first_ms: i64,
    now: i64,
) -> Event {
    let (topic, partition, offset) = origin(ev);
    let source_time = ev
        .headers
        .iter()
        .find(|(k, _)| k == &format!("{DLQ_PREFIX}source-time"))
        .and_then(|(_, v)| String::from_utf8(v.clone()).ok())
        .unwrap_or_else(|| format_rfc3339(ev.timestamp));
    let mut headers: Vec<(String, Vec<u8>)> = ev
        .headers
        .iter()
        .filter(|(k, _)| !k.starts_with(DLQ_PREFIX))
        .cloned()
        .collect();
    let target = match &sub.spec.target {
        Target::Topic { topic, .. } => format!("topic:{topic}"),
        Target::Http { url, .. } => url.clone(),
    };
    let mut add = |k: &str, v: String| headers.push((format!("{DLQ_PREFIX}{k}"), v.into_bytes()));
    add("subscription", sub.spec.name.clone());
    add("target", target);
    add("reason", f.reason.to_string());
    add("exhausted", exhausted.to_string());
    if let Some(s) = f.status {
        add("status", s.to_string());
    }
    add("error", f.error.clone());
    add("attempts", attempts.to_string());
    add("first-attempt", format_rfc3339(first_ms));
    add("last-attempt", format_rfc3339(now));
    add("source-topic", topic);
    add("source-partition", partition.to_string());
    add("source-offset", offset.to_string());
    add("source-time", source_time);
    Event {
        key: ev.key.clone(),
        value: ev.value.clone(),
        headers,
        timestamp: Some(now),
        partition: None,
    }
}

/// A stored batch of a source partition whose records cannot be read.
pub struct Undecodable {
    pub topic: String,
    pub partition: u32,
    pub first: u64,
    pub last: u64,
    pub timestamp: i64,
    pub error: String,
}

/// The reason of an undecodable batch's letter.
pub const UNDECODABLE: &str = "undecodable";

/// Builds the dead letter of an undecodable batch.
pub fn undecodable_letter(sub: &Compiled, bad: &Undecodable, now: i64) -> Event {
    let stand_in = StoredEvent {
        topic: bad.topic.clone(),
        partition: bad.partition,
        offset: bad.first,
        timestamp: bad.timestamp,
        key: None,
        value: None,
        headers: Vec::new(),
    };
    let f = Failure {
        reason: UNDECODABLE,
        status: None,
        error: bad.error.clone(),
    };
    let mut l = letter(sub, &stand_in, &f, "non_retriable", 0, now, now);
    l.headers.push((
        format!("{DLQ_PREFIX}source-last-offset"),
        bad.last.to_string().into_bytes(),
    ));
    l
}

/// Which dead letters a list or redrive is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Filter {
    pub subscription: Option<String>,
    pub reason: Option<String>,
    pub partition: Option<u32>,
    /// First offset (inclusive) in each partition.
    pub from_offset: Option<u64>,
    /// Last offset (exclusive) in each partition.
    pub to_offset: Option<u64>,
}

/// A dead letter as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub partition: u32,
    pub offset: u64,
    pub subscription: String,
    pub target: String,
    pub reason: String,
    pub exhausted: String,
    pub status: Option<u16>,
    pub error: String,
    pub attempts: u32,
    pub first_attempt: String,
    pub last_attempt: String,
    pub source_topic: String,
    pub source_partition: u32,
    pub source_offset: u64,
    pub source_time: String,
    /// When it was last redriven (RFC 3339); absent when it never was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redriven_at: Option<String>,
}

impl DeadLetter {
    /// Reads the `busbar-dlq-*` headers of `ev`; `None` when it is not a dead letter.
    pub fn of(ev: &StoredEvent) -> Option<DeadLetter> {
        let h = |k: &str| {
            let name = format!("{DLQ_PREFIX}{k}");
            ev.headers
                .iter()
                .rev()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        Some(DeadLetter {
            partition: ev.partition,
            offset: ev.offset,
            subscription: h("subscription")?,
            target: h("target").unwrap_or_default(),
            reason: h("reason").unwrap_or_default(),
            exhausted: h("exhausted").unwrap_or_default(),
            status: h("status").and_then(|s| s.parse().ok()),
            error: h("error").unwrap_or_default(),
            attempts: h("attempts").and_then(|s| s.parse().ok()).unwrap_or(0),
            first_attempt: h("first-attempt").unwrap_or_default(),
            last_attempt: h("last-attempt").unwrap_or_default(),
            source_topic: h("source-topic")?,
            source_partition: h("source-partition")?.parse().ok()?,
            source_offset: h("source-offset")?.parse().ok()?,
            source_time: h("source-time").unwrap_or_default(),
            redriven_at: None,
        })
    }

    /// Does this dead letter pass `f`?
    pub fn passes(&self, f: &Filter) -> bool {
        f.subscription
            .as_ref()
            .is_none_or(|s| *s == self.subscription)
            && f.reason
                .as_ref()
                .is_none_or(|r| *r == self.reason || *r == self.exhausted)
            && f.partition.is_none_or(|p| p == self.partition)
            && f.from_offset.is_none_or(|o| self.offset >= o)
            && f.to_offset.is_none_or(|o| self.offset < o)
    }
}
