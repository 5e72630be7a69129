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
//!
//! The SLI series of `docs/metrics.md` (M1-M10): those the broker records as it works
//! (`busbar_broker::metrics`), and those read here from state at each scrape (deliveries, lag,
//! storage, availability). [`timed`] records each HTTP request's latency by route.

use crate::App;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use busbar_broker::metrics::{header, label_set};
use busbar_bus::stats::LATENCY_BOUNDS_MS;
use std::fmt::Write;

/// Middleware on matched routes: `busbar_request_latency_seconds{api="http",request="METHOD
/// /route/{param}"}` (the route's template, never the path a client sent).
pub async fn timed(State(app): State<App>, req: Request, next: Next) -> Response {
    time_route(&app.broker, "http", req, next).await
}

/// Runs `req` and observes its latency as `api` and its method and matched route template.
pub async fn time_route(
    broker: &busbar_broker::Broker,
    api: &str,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("", |p| p.as_str());
    let request = format!("{} {route}", req.method());
    let start = std::time::Instant::now();
    let resp = next.run(req).await;
    let latency = &broker.metrics().request_latency;
    latency.observe(&[api, &request], start.elapsed());
    resp
}

/// M1, M2, M8, M10 per subscription: deliveries by outcome, delivery latency in seconds, dead
/// letters by reason and failed attempts by kind.
fn deliveries(out: &mut String, subs: &[busbar_bus::SubscriptionView]) {
    let d = "busbar_deliveries_total";
    header(
        out,
        d,
        "Events a subscription settled since start (retried: an attempt failed and another is scheduled).",
        "counter",
    );
    for s in subs {
        let c = &s.counters.live;
        for (outcome, v) in busbar_bus::stats::OUTCOMES.iter().zip(c.outcomes) {
            let set = label_set(&["subscription", "outcome"], &[&s.spec.name, outcome], None);
            let _ = writeln!(out, "{d}{set} {v}");
        }
    }
    let h = "busbar_delivery_latency_seconds";
    header(
        out,
        h,
        "Event time to the target's acknowledgement.",
        "histogram",
    );
    for s in subs {
        let c = &s.counters.live;
        for (i, count) in c.latency_buckets.iter().enumerate() {
            let le = LATENCY_BOUNDS_MS
                .get(i)
                .map_or("+Inf".to_string(), |ms| (*ms as f64 / 1000.0).to_string());
            let set = label_set(&["subscription"], &[&s.spec.name], Some(&le));
            let _ = writeln!(out, "{h}_bucket{set} {count}");
        }
        let set = label_set(&["subscription"], &[&s.spec.name], None);
        let _ = writeln!(out, "{h}_sum{set} {}", c.latency_sum_ms as f64 / 1000.0);
        let count = c.latency_buckets.last().copied().unwrap_or_default();
        let _ = writeln!(out, "{h}_count{set} {count}");
    }
    for (name, help, label) in [
        (
            "busbar_dead_letters_total",
            "Dead letters written, by the failure that ended the event (since start).",
            "reason",
        ),
        (
            "busbar_delivery_errors_total",
            "Failed delivery attempts, by kind (since start).",
            "kind",
        ),
    ] {
        header(out, name, help, "counter");
        for s in subs {
            let map = if label == "reason" {
                &s.counters.live.letters
            } else {
                &s.counters.live.errors
            };
            for (k, v) in map {
                let set = label_set(&["subscription", label], &[&s.spec.name, k], None);
                let _ = writeln!(out, "{name}{set} {v}");
            }
        }
    }
}

/// M3: consumer-group lag in offsets and seconds per committed partition, and each group's
/// Burrow status.
async fn group_lag(out: &mut String, app: &App) {
    let broker = app.broker.clone();
    let lags = tokio::task::spawn_blocking(move || broker.group_lag())
        .await
        .unwrap_or_default();
    let labels = ["group", "topic", "partition"];
    let (l, ls) = (
        "busbar_consumer_group_lag",
        "busbar_consumer_group_lag_seconds",
    );
    header(
        out,
        l,
        "High watermark minus the group's committed offset.",
        "gauge",
    );
    for g in &lags {
        let p = g.partition.to_string();
        let set = label_set(&labels, &[&g.group, &g.topic, &p], None);
        let _ = writeln!(out, "{l}{set} {}", g.lag);
    }
    header(
        out,
        ls,
        "Age of the group's first unconsumed event, seconds (0 when caught up).",
        "gauge",
    );
    for g in &lags {
        let p = g.partition.to_string();
        let set = label_set(&labels, &[&g.group, &g.topic, &p], None);
        let _ = writeln!(out, "{ls}{set} {}", g.lag_seconds);
    }
    let st = "busbar_consumer_group_status";
    header(out, st, "1 for the group's lag status (Burrow's rules, worst partition): OK, WARN, STALL, STOP, REWIND.", "gauge");
    let mut worst: std::collections::BTreeMap<&str, busbar_broker::lag::Status> =
        Default::default();
    for g in &lags {
        let w = worst.entry(&g.group).or_insert(g.status);
        *w = (*w).max(g.status);
    }
    for (group, status) in worst {
        for s in busbar_broker::lag::Status::ALL {
            let set = label_set(&["group", "status"], &[group, s.name()], None);
            let _ = writeln!(out, "{st}{set} {}", u8::from(s == status));
        }
    }
}

/// A per-partition gauge: name, help and how to read it.
type PartitionGauge = (
    &'static str,
    &'static str,
    fn(&busbar_broker::PartitionInfo) -> u64,
);

/// M6 and M7: up, build, per-partition offline, damaged ranges and storage; disk space.
fn partitions_and_disk(out: &mut String, app: &App) {
    header(out, "busbar_up", "1 while busbar serves.", "gauge");
    let _ = writeln!(out, "busbar_up 1");
    header(
        out,
        "busbar_build_info",
        "busbar's version (the value is 1).",
        "gauge",
    );
    let _ = writeln!(
        out,
        "busbar_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let topics: Vec<_> = (app.broker.list_topics().into_iter())
        .filter_map(|t| app.broker.describe_topic(&t.name).ok())
        .collect();
    let families: [PartitionGauge; 3] = [
        (
            "busbar_partition_offline",
            "1 while a partition refuses writes after a failed write or fsync (until restart).",
            |p| u64::from(p.offline),
        ),
        (
            "busbar_partition_damaged_ranges",
            "Damaged log ranges found (never served) since start-up.",
            |p| p.damaged_ranges,
        ),
        (
            "busbar_storage_bytes",
            "Bytes of the partition's log on disk.",
            |p| p.size_bytes,
        ),
    ];
    let mut used = 0;
    for (name, help, value) in families {
        header(out, name, help, "gauge");
        for t in &topics {
            for p in &t.partitions {
                let n = p.partition.to_string();
                let set = label_set(&["topic", "partition"], &[&t.name, &n], None);
                let _ = writeln!(out, "{name}{set} {}", value(p));
                if name == "busbar_storage_bytes" {
                    used += p.size_bytes;
                }
            }
        }
    }
    if let Some(space) = app.broker.disk_space() {
        header(
            out,
            "busbar_disk_free_bytes",
            "Free bytes of the file system holding the data directory.",
            "gauge",
        );
        let _ = writeln!(out, "busbar_disk_free_bytes {}", space.free);
        header(
            out,
            "busbar_storage_quota_bytes",
            "What the logs can grow to: free bytes plus the bytes they use.",
            "gauge",
        );
        let _ = writeln!(out, "busbar_storage_quota_bytes {}", space.free + used);
    }
}

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
const STATES: [&str; 7] = [
    "starting",
    "running",
    "paused",
    "elsewhere",
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
    deliveries(&mut out, &subs);
    group_lag(&mut out, &app).await;
    partitions_and_disk(&mut out, &app);
    app.broker.metrics().encode(&mut out);
    schema_failures(&mut out, &app.broker.schema_failures());
    crate::audit::metrics(&mut out, app.broker.audit().stats());
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
