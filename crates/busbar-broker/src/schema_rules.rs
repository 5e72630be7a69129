//! Schema enforcement as the broker sees it: a topic's `{key,value}.schema.validation` and
//! `{key,value}.subject.name.strategy` settings ([`SchemaRules`]), the check a schema registry
//! installs ([`SchemaChecker`], implemented by busbar-schema above this crate) and the counters of
//! refused records per topic and reason (`busbar_schema_validation_failures_total`).
//!
//! Every way into a topic passes here: Kafka produce (`Broker::produce_start`), HTTP publish and
//! the bus's topic targets (`Broker::publish`). A refused batch is refused whole, nothing is
//! stored, and the error names each bad record's index in the batch (Kafka's `RecordErrors`, at
//! most [`RECORD_ERRORS_MAX`] of them) and why. Null keys and values pass (tombstones, unkeyed
//! events), as in Confluent Server and Redpanda. A topic that asks for validation while no
//! registry is running refuses every record with a non-null checked part (Redpanda does the same).

use crate::error::BrokerError;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// What a topic checks in a record's key or value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Validation {
    /// Nothing (the default).
    #[default]
    None,
    /// The payload starts with the wire header (magic byte 0, a 4-byte schema id) and the id is
    /// registered under the subject the strategy names.
    Id,
    /// `Id`, and the payload decodes against that schema.
    Strict,
}

impl Validation {
    /// Parses `none`, `id` or `strict`.
    pub fn parse(v: &str) -> Option<Self> {
        match v.trim() {
            "none" => Some(Self::None),
            "id" => Some(Self::Id),
            "strict" => Some(Self::Strict),
            _ => None,
        }
    }

    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Id => "id",
            Self::Strict => "strict",
        }
    }
}

/// How a record's subject is derived (Confluent's subject name strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubjectStrategy {
    /// `<topic>-key` / `<topic>-value` (the default).
    #[default]
    TopicName,
    /// The record's full name (Avro root name, JSON Schema `title`, Protobuf message).
    RecordName,
    /// `<topic>-<record name>`.
    TopicRecordName,
}

/// Java's package of Confluent's strategy classes, accepted in front of the short names.
const STRATEGY_PACKAGE: &str = "io.confluent.kafka.serializers.subject.";

impl SubjectStrategy {
    /// Parses the short name or Confluent's class name.
    pub fn parse(v: &str) -> Option<Self> {
        let v = v.trim();
        match v.strip_prefix(STRATEGY_PACKAGE).unwrap_or(v) {
            "TopicNameStrategy" => Some(Self::TopicName),
            "RecordNameStrategy" => Some(Self::RecordName),
            "TopicRecordNameStrategy" => Some(Self::TopicRecordName),
            _ => None,
        }
    }

    /// The config value (the short name).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TopicName => "TopicNameStrategy",
            Self::RecordName => "RecordNameStrategy",
            Self::TopicRecordName => "TopicRecordNameStrategy",
        }
    }
}

/// The key or the value of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Key,
    Value,
}

impl Part {
    /// `key` or `value`, as in subject names and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Key => "key",
            Part::Value => "value",
        }
    }
}

/// What one part of a topic's records must satisfy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartRule {
    pub validation: Validation,
    pub strategy: SubjectStrategy,
}

/// A topic's schema settings for keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchemaRules {
    pub key: PartRule,
    pub value: PartRule,
}

impl SchemaRules {
    /// Whether checking a record may parse a schema or decode a payload (strict, or a record
    /// name strategy, which reads the schema to name the subject): such checks run on the
    /// blocking pool.
    pub fn heavy(&self) -> bool {
        [self.key, self.value].iter().any(|r| {
            r.validation == Validation::Strict
                || (r.validation == Validation::Id && r.strategy != SubjectStrategy::TopicName)
        })
    }

    /// Whether any record of the topic is checked.
    pub fn active(&self) -> bool {
        self.key.validation != Validation::None || self.value.validation != Validation::None
    }
}

/// Why a record was refused: `reason` is one of [`REASONS`] (the metric's label), `message`
/// says what exactly (shown to the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

/// The metric's `reason` labels: not in the wire format, an id the registry does not know, an id
/// not registered under the record's subject (or no subject could be derived), a payload that does
/// not decode against its schema, no schema registry running.
pub const REASONS: &[&str] = &[
    "unframed",
    "unknown_id",
    "wrong_subject",
    "invalid_payload",
    "no_registry",
];

/// The check the schema registry installs with [`crate::Broker::set_schema_checker`].
pub trait SchemaChecker: Send + Sync {
    /// Checks one part of one record of `topic` (never called for a null part).
    fn check(&self, topic: &str, part: Part, rule: PartRule, payload: &[u8])
        -> Result<(), Refusal>;
}

/// Most bad records one refusal lists (Kafka's `RecordErrors`; the rest are counted).
pub const RECORD_ERRORS_MAX: usize = 100;

/// Longest reason one listed record carries (longer ones are cut), so the answer stays bounded.
pub const MESSAGE_BYTES_MAX: usize = 300;

/// `s` cut to at most `max` bytes on a character boundary, marked with `...` when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Most (topic, reason) series the failure counters hold; past it new topics count under
/// [`OTHER_TOPICS`], so a client creating topics cannot grow the metrics without bound.
pub const FAILURE_SERIES_MAX: usize = 10_000;

/// The topic label of failures past [`FAILURE_SERIES_MAX`].
pub const OTHER_TOPICS: &str = "_other";

/// Refused records per (topic, reason).
#[derive(Debug, Default)]
pub struct Failures {
    counts: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl Failures {
    /// Counts `n` records of `topic` refused for `reason`.
    pub fn add(&self, topic: &str, reason: &'static str, n: u64) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let key = (topic.to_string(), reason);
        let key = if c.contains_key(&key) || c.len() < FAILURE_SERIES_MAX {
            key
        } else {
            (OTHER_TOPICS.to_string(), reason)
        };
        *c.entry(key).or_default() += n;
    }

    /// Every (topic, reason, count).
    pub fn snapshot(&self) -> Vec<(String, &'static str, u64)> {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.iter().map(|((t, r), n)| (t.clone(), *r, *n)).collect()
    }
}

/// Checks records one by one, collecting the refusals of a batch.
pub struct BatchCheck<'a> {
    pub topic: &'a str,
    pub rules: SchemaRules,
    pub checker: Option<&'a dyn SchemaChecker>,
    /// (record index, message), at most [`RECORD_ERRORS_MAX`].
    pub errors: Vec<(usize, String)>,
    /// Refusals per reason (all of them, also past the listed ones).
    pub counts: BTreeMap<&'static str, u64>,
}

impl<'a> BatchCheck<'a> {
    pub fn new(topic: &'a str, rules: SchemaRules, checker: Option<&'a dyn SchemaChecker>) -> Self {
        Self {
            topic,
            rules,
            checker,
            errors: Vec::new(),
            counts: BTreeMap::new(),
        }
    }

    /// Checks record `index`'s key and value (a refused key skips the value).
    pub fn record(&mut self, index: usize, key: Option<&[u8]>, value: Option<&[u8]>) {
        let parts = [
            (Part::Key, self.rules.key, key),
            (Part::Value, self.rules.value, value),
        ];
        for (part, rule, payload) in parts {
            let (Some(payload), false) = (payload, rule.validation == Validation::None) else {
                continue;
            };
            if let Err(r) = self.one(part, rule, payload) {
                *self.counts.entry(r.reason).or_default() += 1;
                if self.errors.len() < RECORD_ERRORS_MAX {
                    let why = crate::schema_rules::clip(&r.message, MESSAGE_BYTES_MAX);
                    self.errors
                        .push((index, format!("{}: {why}", part.as_str())));
                }
                return;
            }
        }
    }

    fn one(&self, part: Part, rule: PartRule, payload: &[u8]) -> Result<(), Refusal> {
        match self.checker {
            Some(c) => c.check(self.topic, part, rule, payload),
            None => Err(Refusal {
                reason: "no_registry",
                message: format!(
                    "topic {:?} requires {}.schema.validation={} but no schema registry is running",
                    self.topic,
                    part.as_str(),
                    rule.validation.as_str()
                ),
            }),
        }
    }

    /// Checks every record of a batch's (uncompressed) records section; records that do not
    /// parse were refused before this by the batch checks.
    pub fn section(&mut self, section: &[u8]) {
        for (i, r) in busbar_log::batch::Records::new(section).enumerate() {
            let Ok(r) = r else { return };
            self.record(i, r.key, r.value);
        }
    }

    /// The refusal of the whole batch when any record failed (counted in `failures`).
    pub fn finish(self, failures: &Failures, what: &str) -> Result<(), BrokerError> {
        if self.counts.is_empty() {
            return Ok(());
        }
        for (reason, n) in &self.counts {
            failures.add(self.topic, reason, *n);
        }
        let refused: u64 = self.counts.values().sum();
        let one = what.trim_end_matches('s');
        let listed: Vec<String> = (self.errors.iter())
            .map(|(i, why)| format!("{one} {i}: {why}"))
            .collect();
        let more = refused.saturating_sub(listed.len() as u64);
        let more = if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        };
        Err(BrokerError::SchemaRefused {
            message: format!(
                "{refused} {what} refused by the schema registry, nothing stored: {}{more}",
                listed.join("; ")
            ),
            records: self.errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fails;
    impl SchemaChecker for Fails {
        fn check(&self, _: &str, _: Part, _: PartRule, p: &[u8]) -> Result<(), Refusal> {
            if p.first() == Some(&0) {
                Ok(())
            } else {
                Err(Refusal {
                    reason: "unframed",
                    message: "no magic byte".into(),
                })
            }
        }
    }

    fn value_id() -> SchemaRules {
        SchemaRules {
            value: PartRule {
                validation: Validation::Id,
                strategy: SubjectStrategy::TopicName,
            },
            ..Default::default()
        }
    }

    #[test]
    fn strategies_parse_short_and_class_names() {
        for (v, s) in [
            ("TopicNameStrategy", SubjectStrategy::TopicName),
            (
                "io.confluent.kafka.serializers.subject.RecordNameStrategy",
                SubjectStrategy::RecordName,
            ),
            ("TopicRecordNameStrategy", SubjectStrategy::TopicRecordName),
        ] {
            assert_eq!(SubjectStrategy::parse(v), Some(s));
        }
        assert_eq!(SubjectStrategy::parse("io.other.TopicNameStrategy"), None);
        assert_eq!(Validation::parse("strict"), Some(Validation::Strict));
        assert_eq!(Validation::parse("true"), None);
    }

    #[test]
    fn a_batch_lists_its_bad_records_and_counts_them() {
        let failures = Failures::default();
        let mut c = BatchCheck::new("t", value_id(), Some(&Fails));
        c.record(0, None, Some(&[0, 0, 0, 0, 1]));
        c.record(1, Some(b"k"), Some(b"bad"));
        c.record(2, None, None); // tombstone passes
        c.record(3, None, Some(b"x"));
        let e = c.finish(&failures, "records").unwrap_err();
        match e {
            BrokerError::SchemaRefused { message, records } => {
                assert_eq!(
                    records,
                    vec![
                        (1, "value: no magic byte".into()),
                        (3, "value: no magic byte".into())
                    ]
                );
                assert!(message.starts_with("2 records refused"), "{message}");
                assert!(
                    message.contains("record 1: value: no magic byte"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(failures.snapshot(), vec![("t".into(), "unframed", 2)]);
    }

    #[test]
    fn without_a_registry_checked_parts_are_refused() {
        let failures = Failures::default();
        let mut c = BatchCheck::new("t", value_id(), None);
        c.record(0, None, Some(&[0, 0, 0, 0, 1]));
        let e = c.finish(&failures, "events").unwrap_err();
        assert!(
            e.to_string().contains("no schema registry is running"),
            "{e}"
        );
        assert_eq!(failures.snapshot(), vec![("t".into(), "no_registry", 1)]);
    }

    #[test]
    fn failure_series_are_bounded() {
        let f = Failures::default();
        for i in 0..FAILURE_SERIES_MAX + 5 {
            f.add(&format!("t{i}"), "unframed", 1);
        }
        let s = f.snapshot();
        assert_eq!(s.len(), FAILURE_SERIES_MAX + 1);
        assert!(s.contains(&(OTHER_TOPICS.into(), "unframed", 5)));
    }
}
