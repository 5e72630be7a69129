//! `GET /metrics`: Prometheus text exposition (format 0.0.4) of the bus's per-subscription
//! counters: events matched, delivered, retried, dead-lettered, dropped, expired,
//! undecodable and dead-letter failures; lag and events
//! waiting for retry; and the delivery latency histogram (event time to successful delivery, ms).
//! The state of each subscription (`busbar_subscription_state{state="running"|...}` 1 or 0).
//! Also the reads all subscriptions share (`busbar_bus_reads_total`, `busbar_bus_events_decoded_total`,
//! `busbar_bus_documents_parsed_total`, `busbar_bus_read_cache_hits_total`: one read, decode and
//! parse per event for every subscription of a topic) and the damaged log ranges per partition (an
//! alert when above 0), and the records schema enforcement refused per topic and reason (M9).
//! Subscription and topic names are `[A-Za-z0-9._-]`, so label values need no
//! escaping.

use crate::App;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use busbar_bus::stats::LATENCY_BOUNDS_MS;
use std::fmt::Write;

const COUNTERS: &[(&str, &str)] = &[
    ("matched", "Events that matched the subscription's pattern"),
    ("delivered", "Events delivered to the target"),
    ("retried", "Failed attempts scheduled for another attempt"),
    ("dead_lettered", "Events written to the dead-letter topic"),
    ("dropped", "Exhausted events dropped (no dead-letter topic)"),
    ("expired", "Events gone from their topic before a retry"),
    (
        "undecodable",
        "Stored batches whose records cannot be read, set aside",
    ),
    (
        "dead_letter_failures",
        "Dead letters the dead-letter topic refused (written again later)",
    ),
];

/// The kinds of [`busbar_bus::SubState`], one series each per subscription.
const STATES: [&str; 6] = [
    "starting",
    "running",
    "paused",
    "unauthorized",
    "backpressure",
    "error",
];

/// Writes `busbar_schema_validation_failures_total{topic,reason}` (M9): records refused by the
/// topics' schema settings, every reason listed for every topic that refused any.
fn schema_failures(out: &mut String, failures: &[(String, &'static str, u64)]) {
    let c = "busbar_schema_validation_failures_total";
    let _ = writeln!(
        out,
        "# HELP {c} Records refused by schema enforcement, by reason: {}.",
        busbar_broker::schema_rules::REASONS.join(", ")
    );
    let _ = writeln!(out, "# TYPE {c} counter");
    let mut topics: Vec<&str> = failures.iter().map(|(t, _, _)| t.as_str()).collect();
    topics.dedup();
    for t in topics {
        for reason in busbar_broker::schema_rules::REASONS {
            let n = (failures.iter())
                .find(|(ft, r, _)| ft == t && r == reason)
                .map_or(0, |f| f.2);
            let _ = writeln!(out, "{c}{{topic=\"{t}\",reason=\"{reason}\"}} {n}");
        }
    }
}

/// Writes `busbar_subscription_state`: 1 for each subscription's current state kind, else 0.
fn states(out: &mut String, subs: &[busbar_bus::SubscriptionView]) {
    let g = "busbar_subscription_state";
    let _ = writeln!(
        out,
        "# HELP {g} The subscription's state (1 for the current one): {}.",
        STATES.join(", ")
    );
    let _ = writeln!(out, "# TYPE {g} gauge");
    for s in subs {
        for kind in STATES {
            let v = u8::from(s.state.kind() == kind);
            let n = &s.spec.name;
            let _ = writeln!(out, "{g}{{subscription=\"{n}\",state=\"{kind}\"}} {v}");
        }
    }
}

/// Writes the bus's shared read counters (`Bus::read_stats`).
fn read_counters(out: &mut String, r: &busbar_bus::ReadStats) {
    for (name, help, v) in [
        (
            "reads",
            "Reads of source partitions by subscription workers",
            r.reads,
        ),
        (
            "events_decoded",
            "Source events decoded (once for all subscriptions of a topic)",
            r.events_decoded,
        ),
        (
            "documents_parsed",
            "Source events parsed into the document patterns match (once for all subscriptions)",
            r.documents_parsed,
        ),
        (
            "read_cache_hits",
            "Chunks a worker found in the shared read cache instead of reading",
            r.cache_hits,
        ),
    ] {
        let _ = writeln!(out, "# HELP busbar_bus_{name}_total {help}.");
        let _ = writeln!(out, "# TYPE busbar_bus_{name}_total counter");
        let _ = writeln!(out, "busbar_bus_{name}_total {v}");
    }
}

/// Prometheus metrics: per-subscription counters, lag, delivery latency.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "health", responses(
    (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn handler(State(app): State<App>) -> impl IntoResponse {
    let subs = app.bus.list().await;
    let mut out = String::new();
    for (name, help) in COUNTERS {
        let _ = writeln!(out, "# HELP busbar_subscription_{name}_total {help}.");
        let _ = writeln!(out, "# TYPE busbar_subscription_{name}_total counter");
        for s in &subs {
            let c = &s.counters;
            let v = match *name {
                "matched" => c.matched,
                "delivered" => c.delivered,
                "retried" => c.retried,
                "dead_lettered" => c.dead_lettered,
                "dropped" => c.dropped,
                "undecodable" => c.undecodable,
                "dead_letter_failures" => c.dead_letter_failures,
                _ => c.expired,
            };
            let _ = writeln!(
                out,
                "busbar_subscription_{name}_total{{subscription=\"{}\"}} {v}",
                s.spec.name
            );
        }
    }
    for (name, help) in [
        ("lag", "Events in the sources not yet read past"),
        (
            "retrying",
            "Events waiting for another attempt or behind their key",
        ),
    ] {
        let _ = writeln!(out, "# HELP busbar_subscription_{name} {help}.");
        let _ = writeln!(out, "# TYPE busbar_subscription_{name} gauge");
        for s in &subs {
            let v = if name == "lag" {
                s.lag
            } else {
                s.retrying as u64
            };
            let _ = writeln!(
                out,
                "busbar_subscription_{name}{{subscription=\"{}\"}} {v}",
                s.spec.name
            );
        }
    }
    let h = "busbar_subscription_delivery_latency_ms";
    let _ = writeln!(
        out,
        "# HELP {h} Event time to successful delivery, milliseconds."
    );
    let _ = writeln!(out, "# TYPE {h} histogram");
    for s in &subs {
        let n = &s.spec.name;
        let c = &s.counters;
        for (i, count) in c.latency_buckets.iter().enumerate() {
            let le = LATENCY_BOUNDS_MS
                .get(i)
                .map_or("+Inf".to_string(), u64::to_string);
            let _ = writeln!(
                out,
                "{h}_bucket{{subscription=\"{n}\",le=\"{le}\"}} {count}"
            );
        }
        let _ = writeln!(out, "{h}_sum{{subscription=\"{n}\"}} {}", c.latency_sum_ms);
        let _ = writeln!(out, "{h}_count{{subscription=\"{n}\"}} {}", c.delivered);
    }
    states(&mut out, &subs);
    read_counters(&mut out, &app.bus.read_stats());
    let d = "busbar_partition_damaged_ranges";
    let _ = writeln!(
        out,
        "# HELP {d} Damaged log ranges found (never served) since start-up."
    );
    let _ = writeln!(out, "# TYPE {d} gauge");
    for t in app.broker.list_topics() {
        let Ok(desc) = app.broker.describe_topic(&t.name) else {
            continue;
        };
        for p in desc.partitions {
            let _ = writeln!(
                out,
                "{d}{{topic=\"{}\",partition=\"{}\"}} {}",
                t.name, p.partition, p.damaged_ranges
            );
        }
    }
    schema_failures(&mut out, &app.broker.schema_failures());
    crate::audit::metrics(&mut out, app.broker.audit().stats());
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
