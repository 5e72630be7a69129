//! The metrics registry: labelled counters and latency histograms the front ends and the broker
//! record as they work, exported by the HTTP API's `/metrics` (names and meanings:
//! `docs/metrics.md`). Series a scrape reads from state (offsets, lag, storage) are not here:
//! `/metrics` computes them when scraped.
//!
//! Bounded: each family holds at most `series_max` series (`broker.metrics_series_max`); an increment
//! for a new series past that is counted in `busbar_metrics_series_dropped_total` instead, so no
//! client can grow the registry. Label values come from names that exist (topics, known API
//! names, fixed outcome sets), never from what a request merely says.

use busbar_log::stats::{Histogram, HistogramSnapshot, BOUNDS_S};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Default of `broker.metrics_series_max`: most series in one family.
pub const SERIES_MAX_DEFAULT: usize = 10_000;

/// Series of one family, keyed by their label values joined with a separator no label holds.
struct Series<T> {
    map: RwLock<BTreeMap<String, Arc<T>>>,
    max: usize,
}

const SEP: char = '\u{1f}';

impl<T: Default> Series<T> {
    fn new(max: usize) -> Self {
        Series {
            map: RwLock::default(),
            max,
        }
    }

    /// The series of `labels`, created if the family has room (a full family is found full
    /// under the read lock: increments past the cap do not serialise on the write lock).
    fn get(&self, labels: &[&str], dropped: &AtomicU64) -> Option<Arc<T>> {
        let key = labels.join(&SEP.to_string());
        {
            let map = self.map.read().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = map.get(&key) {
                return Some(s.clone());
            }
            if map.len() >= self.max {
                dropped.fetch_add(1, Relaxed);
                return None;
            }
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.max && !map.contains_key(&key) {
            dropped.fetch_add(1, Relaxed);
            return None;
        }
        Some(map.entry(key).or_default().clone())
    }

    /// Drops the series whose first label value is `first`.
    fn forget(&self, first: &str) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|k, _| k.split(SEP).next() != Some(first));
    }

    fn each(&self, mut f: impl FnMut(Vec<&str>, &T)) {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        for (k, v) in map.iter() {
            f(k.split(SEP).collect(), v);
        }
    }
}

/// A counter family: `name{labels...}`.
pub struct CounterFamily {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    series: Series<AtomicU64>,
    dropped: Arc<AtomicU64>,
}

impl CounterFamily {
    /// Adds `n` to the series of `values` (one per label, in order).
    pub fn add(&self, values: &[&str], n: u64) {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        if let Some(c) = self.series.get(values, &self.dropped) {
            c.fetch_add(n, Relaxed);
        }
    }

    /// The value of one series (0 when absent).
    pub fn get(&self, values: &[&str]) -> u64 {
        let mut v = 0;
        self.series.each(|labels, c| {
            if labels == values {
                v = c.load(Relaxed);
            }
        });
        v
    }

    /// Writes the family in Prometheus text format.
    pub fn encode(&self, out: &mut String) {
        header(out, self.name, self.help, "counter");
        self.series.each(|values, c| {
            let _ = writeln!(
                out,
                "{}{} {}",
                self.name,
                label_set(self.labels, &values, None),
                c.load(Relaxed)
            );
        });
    }
}

/// A histogram family over `busbar_log::stats::BOUNDS_S`.
pub struct HistogramFamily {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    series: Series<Histogram>,
    dropped: Arc<AtomicU64>,
}

impl HistogramFamily {
    pub fn observe(&self, values: &[&str], d: Duration) {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        if let Some(h) = self.series.get(values, &self.dropped) {
            h.observe(d);
        }
    }

    pub fn encode(&self, out: &mut String) {
        header(out, self.name, self.help, "histogram");
        self.series.each(|values, h| {
            histogram_series(out, self.name, self.labels, &values, &h.snapshot());
        });
    }
}

/// Writes `# HELP` and `# TYPE` of a family.
pub fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Writes one histogram's `_bucket`, `_sum` and `_count` series.
pub fn histogram_series(
    out: &mut String,
    name: &str,
    labels: &[&str],
    values: &[&str],
    s: &HistogramSnapshot,
) {
    for (i, n) in s.cumulative().iter().enumerate() {
        let le = BOUNDS_S.get(i).map_or("+Inf".to_string(), f64::to_string);
        let set = label_set(labels, values, Some(&le));
        let _ = writeln!(out, "{name}_bucket{set} {n}");
    }
    let set = label_set(labels, values, None);
    let _ = writeln!(out, "{name}_sum{set} {}", s.sum_seconds);
    let _ = writeln!(out, "{name}_count{set} {}", s.count);
}

/// `{a="x",b="y"}` (with `le` last when given), or nothing for no labels.
pub fn label_set(labels: &[&str], values: &[&str], le: Option<&str>) -> String {
    let mut pairs: Vec<String> = (labels.iter().zip(values))
        .map(|(l, v)| format!("{l}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        pairs.push(format!("le=\"{le}\""));
    }
    if pairs.is_empty() {
        return String::new();
    }
    format!("{{{}}}", pairs.join(","))
}

/// A label value as the text format needs it: backslash, quote and newline escaped.
pub fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// The broker's recorded metrics (`Broker::metrics`).
pub struct Metrics {
    /// M5: produce requests per topic, front end (`kafka`, `http`) and outcome (`ok` or an error).
    pub produce_requests: CounterFamily,
    /// M5: events appended per topic by produce and publish.
    pub produce_events: CounterFamily,
    /// M5: bytes received per topic by produce (batches as sent) and publish (request bodies).
    pub produce_bytes: CounterFamily,
    /// M4: idempotent retries answered from producer state, per topic.
    pub producer_duplicates: CounterFamily,
    /// Time to answer a request, per front end and request (Kafka API, HTTP route template).
    pub request_latency: HistogramFamily,
    /// M2: per partition a Fetch returns records of, now minus the newest record's timestamp.
    pub fetch_delivery_age: Histogram,
    /// Failed authentications per listener and mechanism.
    pub auth_failures: CounterFamily,
    /// Requests refused by ACLs per resource type and operation.
    pub acl_denials: CounterFamily,
    dropped: Arc<AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(SERIES_MAX_DEFAULT)
    }
}

impl Metrics {
    pub fn new(series_max: usize) -> Metrics {
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = |name, help, labels| CounterFamily {
            name,
            help,
            labels,
            series: Series::new(series_max),
            dropped: dropped.clone(),
        };
        Metrics {
            produce_requests: counter(
                "busbar_produce_requests_total",
                "Produce (Kafka) and publish (HTTP) requests per topic, by outcome: ok or the error.",
                &["topic", "api", "outcome"],
            ),
            produce_events: counter(
                "busbar_produce_events_total",
                "Events appended by produce and publish.",
                &["topic"],
            ),
            produce_bytes: counter(
                "busbar_produce_bytes_total",
                "Bytes received by produce (record batches as sent) and publish (request bodies).",
                &["topic"],
            ),
            producer_duplicates: counter(
                "busbar_producer_duplicates_total",
                "Idempotent producer retries answered from producer state (not written again).",
                &["topic"],
            ),
            request_latency: HistogramFamily {
                name: "busbar_request_latency_seconds",
                help: "Time to answer a request, by front end and request (Kafka API or HTTP route).",
                labels: &["api", "request"],
                series: Series::new(series_max),
                dropped: dropped.clone(),
            },
            fetch_delivery_age: Histogram::new(),
            auth_failures: counter(
                "busbar_auth_failures_total",
                "Failed authentications, by listener and mechanism.",
                &["listener", "mechanism"],
            ),
            acl_denials: counter(
                "busbar_acl_denials_total",
                "Requests refused by ACLs, by resource type and operation.",
                &["resource_type", "operation"],
            ),
            dropped,
        }
    }

    /// Counts one produce or publish request's answer for one topic (`topic` empty when it does
    /// not exist) and, when it stored them, its events and bytes.
    pub fn produced(&self, topic: &str, api: &str, outcome: &str, events: u64, bytes: u64) {
        self.produce_requests.add(&[topic, api, outcome], 1);
        if outcome == "ok" {
            self.produce_events.add(&[topic], events);
            self.produce_bytes.add(&[topic], bytes);
        }
    }

    /// Drops a deleted topic's series (a new topic of the same name starts from zero, and
    /// created-then-deleted topics do not fill the families).
    pub fn forget_topic(&self, topic: &str) {
        for f in [
            &self.produce_requests,
            &self.produce_events,
            &self.produce_bytes,
            &self.producer_duplicates,
        ] {
            f.series.forget(topic);
        }
    }

    /// Writes every recorded family, the fsync histogram and the dropped-series counter.
    pub fn encode(&self, out: &mut String) {
        self.produce_requests.encode(out);
        self.produce_events.encode(out);
        self.produce_bytes.encode(out);
        self.producer_duplicates.encode(out);
        self.request_latency.encode(out);
        let age = "busbar_fetch_delivery_age_seconds";
        header(
            out,
            age,
            "Per partition a Kafka Fetch returns records of: now minus the newest record's timestamp.",
            "histogram",
        );
        histogram_series(out, age, &[], &[], &self.fetch_delivery_age.snapshot());
        let fsync = "busbar_fsync_latency_seconds";
        header(
            out,
            fsync,
            "Time of each sync of a log's files (fdatasync of segments, directory syncs).",
            "histogram",
        );
        let s = busbar_log::stats::FSYNC_LATENCY.snapshot();
        histogram_series(out, fsync, &[], &[], &s);
        self.auth_failures.encode(out);
        self.acl_denials.encode(out);
        let d = "busbar_metrics_series_dropped_total";
        header(
            out,
            d,
            "Increments not recorded because their family already held broker.metrics_series_max series.",
            "counter",
        );
        let _ = writeln!(out, "{d} {}", self.dropped.load(Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_stop_growing_at_their_cap_and_count_what_they_drop() {
        let m = Metrics::new(2);
        m.produced("a", "kafka", "ok", 3, 100);
        m.produced("b", "kafka", "ok", 1, 10);
        m.produced("c", "kafka", "ok", 1, 10);
        m.produced("a", "kafka", "ok", 1, 10);
        assert_eq!(m.produce_events.get(&["a"]), 4, "existing series go on");
        assert_eq!(m.produce_events.get(&["c"]), 0);
        let mut out = String::new();
        m.encode(&mut out);
        assert!(
            out.contains("busbar_produce_events_total{topic=\"a\"} 4\n"),
            "{out}"
        );
        assert!(!out.contains("topic=\"c\""), "{out}");
        assert!(
            out.contains("busbar_metrics_series_dropped_total 3\n"),
            "{out}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.auth_failures.add(&["kafka", "a\"b\\c\nd"], 1);
        let mut out = String::new();
        m.auth_failures.encode(&mut out);
        assert!(
            out.contains(
                r#"busbar_auth_failures_total{listener="kafka",mechanism="a\"b\\c\nd"} 1"#
            ),
            "{out}"
        );
    }

    #[test]
    fn histograms_write_cumulative_buckets_sum_and_count() {
        let m = Metrics::default();
        m.request_latency
            .observe(&["kafka", "Produce"], Duration::from_millis(3));
        m.request_latency
            .observe(&["kafka", "Produce"], Duration::from_secs(100));
        let mut out = String::new();
        m.request_latency.encode(&mut out);
        let l = "busbar_request_latency_seconds";
        assert!(
            out.contains(&format!(
                "{l}_bucket{{api=\"kafka\",request=\"Produce\",le=\"0.005\"}} 1\n"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "{l}_bucket{{api=\"kafka\",request=\"Produce\",le=\"+Inf\"}} 2\n"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "{l}_count{{api=\"kafka\",request=\"Produce\"}} 2\n"
            )),
            "{out}"
        );
    }
}
