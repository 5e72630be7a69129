//! What `GET /subscriptions/{name}` shows: [`SubscriptionView`], its [`LastFailure`] and the
//! subscription's state, [`SubState`]. The state is an enum everywhere inside busbar; only its
//! wire form (`Display` and `Serialize`) is a string: `starting`, `running`, `paused`,
//! `unauthorized`, `backpressure: ...` or `error: ...`, the text of earlier releases (and
//! `unauthorized`, new), so clients keep working.

use crate::positions;
use crate::spec::Target;
use crate::stats::CounterSnapshot;
use crate::Entry;
use crate::{Owner, SubscriptionSpec};
use serde::{Serialize, Serializer};
use std::fmt;

/// A subscription's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubState {
    /// Created or resumed; its worker has not yet opened its sources.
    Starting,
    /// Reading and delivering.
    Running,
    /// Paused through the API: nothing is read or delivered.
    Paused,
    /// Cluster mode: another broker runs it (the one holding its lease, `cluster.rs`); its
    /// lag, counters and retries here are as that broker last stored them.
    Elsewhere,
    /// The creator may no longer READ a source topic: nothing is read or delivered (positions
    /// stay) until it may again (`creator.rs`).
    Unauthorized,
    /// `waiting` events wait (for a retry, behind their key, for their dead letter), at least
    /// `delivery.waiting_max` (`max`): no new event is read until some settle.
    Backpressure { waiting: usize, max: usize },
    /// A dead letter cannot be written to `topic` (it is written again later).
    DeadLetterFailing { topic: String, error: String },
    /// The worker cannot read its sources or store its state (`detail` says why); it tries
    /// again.
    Error { detail: String },
}

impl SubState {
    /// The state's kind: `starting`, `running`, `paused`, `backpressure` or `error` (the wire
    /// form up to its first `:`), e.g. for a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            SubState::Starting => "starting",
            SubState::Running => "running",
            SubState::Paused => "paused",
            SubState::Elsewhere => "elsewhere",
            SubState::Unauthorized => "unauthorized",
            SubState::Backpressure { .. } => "backpressure",
            SubState::DeadLetterFailing { .. } | SubState::Error { .. } => "error",
        }
    }

    /// Whether the state reports a failure (`error: ...` on the wire).
    pub fn is_error(&self) -> bool {
        self.kind() == "error"
    }

    /// Sets the state behind `status` to `new` and then, the lock released (a blocked stderr
    /// must not hold it), writes a log line when its kind changed (see [`log_change`]).
    pub(crate) fn replace(status: &std::sync::Mutex<SubState>, name: &str, new: SubState) {
        let shown = new.clone();
        let old = std::mem::replace(&mut *status.lock().unwrap_or_else(|e| e.into_inner()), new);
        log_change(name, &old, &shown);
    }
}

/// One server log line (`busbar_broker::log`, event `subscription_state`) when subscription
/// `name` changes the kind of its state: paused, resumed, backpressure, unauthorized, error and
/// back. Starting and running between themselves are routine (every start) and not logged; a
/// change within a kind (another error detail, another count waiting) neither.
pub(crate) fn log_change(name: &str, old: &SubState, new: &SubState) {
    let routine = ["starting", "running", "elsewhere"];
    if old.kind() == new.kind() || (routine.contains(&old.kind()) && routine.contains(&new.kind()))
    {
        return;
    }
    let level = match new {
        SubState::Starting | SubState::Running | SubState::Paused | SubState::Elsewhere => {
            busbar_broker::log::Level::Info
        }
        _ => busbar_broker::log::Level::Warn,
    };
    let msg = format!("subscription {name:?}: {} -> {new}", old.kind());
    let fields = [
        ("subscription", name.into()),
        ("from", old.kind().into()),
        ("to", new.kind().into()),
        ("state", new.to_string().into()),
    ];
    busbar_broker::log::emit(level, "busbar", "subscription_state", &msg, &fields);
}

impl fmt::Display for SubState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubState::Backpressure { waiting, max } => write!(
                f,
                "backpressure: {waiting} events wait (delivery.waiting_max {max}); \
                 reading is paused until some are delivered or dead-lettered"
            ),
            SubState::DeadLetterFailing { topic, error } => write!(
                f,
                "error: dead-letter topic {topic:?} cannot be written: {error}"
            ),
            SubState::Error { detail } => write!(f, "error: {detail}"),
            other => f.write_str(other.kind()),
        }
    }
}

impl Serialize for SubState {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Compares the wire form (`state == "running"`).
impl PartialEq<str> for SubState {
    fn eq(&self, other: &str) -> bool {
        /// Consumes the expected text as the wire form is written; fails at the first difference.
        struct Rest<'a>(&'a str);
        impl fmt::Write for Rest<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0 = self.0.strip_prefix(s).ok_or(fmt::Error)?;
                Ok(())
            }
        }
        let mut rest = Rest(other);
        fmt::write(&mut rest, format_args!("{self}")).is_ok() && rest.0.is_empty()
    }
}

impl PartialEq<&str> for SubState {
    fn eq(&self, other: &&str) -> bool {
        self == *other
    }
}

/// What `GET /subscriptions/{name}` shows.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionView {
    #[serde(flatten)]
    pub spec: SubscriptionSpec,
    /// `running`, `paused`, `starting`, `backpressure: ...` (`delivery.waiting_max` events wait)
    /// or `error: ...` on the wire.
    pub state: SubState,
    pub created: String,
    pub updated: String,
    /// What delivery promises: `exactly_once` for a topic target (each event is in the target
    /// once, committed with the subscription's position), `at_least_once` for an HTTP target
    /// (a delivery may be repeated; the CloudEvent id stays the same). Dead letters, replays and
    /// redrives are at least once for every target.
    pub guarantee: &'static str,
    /// Events in the sources not yet read past (sum over partitions).
    pub lag: u64,
    /// Events waiting for another attempt or behind their key.
    pub retrying: usize,
    /// The most recent failed attempt of an event still waiting for another (none when nothing
    /// waits): a TLS, connection or HTTP failure shows here before it ends in a dead letter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<LastFailure>,
    pub counters: CounterSnapshot,
    /// `config` when a configuration file declares it (`config_file`): the API may not change or
    /// delete it (`owner.rs`); else `api`.
    pub owner: Owner,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
    /// Who it runs as (`creator.rs`); absent when it runs unchecked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creator: Option<crate::Creator>,
}

/// A failed attempt as `GET /subscriptions/{name}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LastFailure {
    /// As in dead letters: `tls`, `connection`, `http_status`, `timeout`, ...
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub error: String,
    pub at: String,
}

impl crate::Bus {
    /// What `GET /subscriptions/{name}` shows of `e`.
    pub(crate) fn view(&self, e: &Entry) -> SubscriptionView {
        let lag = self.lag(&e.record.spec);
        let (waiting, newest) = self.ctx.retries.summary(&e.record.spec.name);
        let last_failure = newest.map(|r| LastFailure {
            at: busbar_broker::time::format_rfc3339(r.last_ms),
            reason: r.reason,
            status: r.status,
            error: r.error,
        });
        let config_file = self.owners.file_of(&e.record.spec.name);
        SubscriptionView {
            spec: e.record.spec.clone(),
            state: e.status.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            created: busbar_broker::time::format_rfc3339(e.record.created_ms),
            updated: busbar_broker::time::format_rfc3339(e.record.updated_ms),
            guarantee: match e.record.spec.target {
                Target::Topic { .. } => "exactly_once",
                Target::Http { .. } => "at_least_once",
            },
            lag,
            retrying: waiting,
            last_failure,
            counters: e.counters.snapshot(),
            owner: if config_file.is_some() {
                Owner::Config
            } else {
                Owner::Api
            },
            config_file,
            creator: e.record.creator.clone(),
        }
    }

    /// Events in the sources of `spec` not yet read past: per partition, the high watermark less
    /// the stored position (the log start where none applies).
    fn lag(&self, spec: &SubscriptionSpec) -> u64 {
        let broker = &self.ctx.broker;
        let mut lag = 0;
        for topic in &spec.sources {
            let Ok((id, n)) = positions::topic_layout(broker, topic) else {
                continue;
            };
            for p in 0..n {
                let Ok((start, end)) = broker.offsets_of(topic, p as i64) else {
                    continue;
                };
                let at = positions::stored_position(&self.ctx, &spec.name, topic, p, &id);
                let at = at.map_or(start, |at| at.offset).max(start);
                lag += end.saturating_sub(at);
            }
        }
        lag
    }
}

#[cfg(test)]
mod tests {
    use super::SubState;
    use serde_json::json;

    fn wire(s: SubState) -> serde_json::Value {
        serde_json::to_value(s).unwrap()
    }

    #[test]
    fn starting_running_and_paused_are_bare_words() {
        assert_eq!(wire(SubState::Starting), json!("starting"));
        assert_eq!(wire(SubState::Running), json!("running"));
        assert_eq!(wire(SubState::Paused), json!("paused"));
        assert!(SubState::Running == "running" && SubState::Paused != "running");
        assert!(SubState::Running != "runningx" && SubState::Running != "run");
    }

    #[test]
    fn backpressure_names_the_count_and_the_limit() {
        let s = SubState::Backpressure { waiting: 7, max: 5 };
        assert_eq!(
            wire(s.clone()),
            json!(
                "backpressure: 7 events wait (delivery.waiting_max 5); reading is paused until \
                 some are delivered or dead-lettered"
            )
        );
        assert_eq!((s.kind(), s.is_error()), ("backpressure", false));
    }

    #[test]
    fn a_failing_dead_letter_topic_is_an_error_naming_it() {
        let s = SubState::DeadLetterFailing {
            topic: "dlq".into(),
            error: "disk full".into(),
        };
        assert_eq!(
            wire(s.clone()),
            json!("error: dead-letter topic \"dlq\" cannot be written: disk full")
        );
        assert_eq!((s.kind(), s.is_error()), ("error", true));
    }

    #[test]
    fn an_error_shows_its_detail() {
        let s = SubState::Error {
            detail: "unknown topic: t".into(),
        };
        assert_eq!(wire(s.clone()), json!("error: unknown topic: t"));
        assert!(s == "error: unknown topic: t" && s != "error: unknown topic");
        assert_eq!((s.kind(), s.is_error()), ("error", true));
    }
}
