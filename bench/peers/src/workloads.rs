//! The workloads of `shared/spec/peers.md`, written once over the [`System`] traits:
//!
//! - W1 `produce`: one producer, `count` messages, every one acknowledged, at most `window`
//!   unacknowledged; msgs/s from the first send to the last ack.
//! - W2 `e2e`: a subscriber first, then a producer at a fixed rate for `duration` seconds; latency
//!   from the producer handing a message to the client to the subscriber seeing it, the first
//!   second left out. Also how far the producer fell behind its schedule, and losses.
//! - W3 `catchup`: `count` messages stored (not timed), then a new durable subscriber reads them
//!   all from the start; with `cold`, the page cache is dropped between the two.
//! - W4 `fanout`: `consumers` subscribers first, then one producer (same window) sends `count`
//!   messages; deliveries/s = consumers × count / (first send → last delivery).
//!
//! Every subscriber checks that sequence numbers arrive once and in order.

use crate::common::{self, Consumer, OrderCheck, Producer, System};
use anyhow::{bail, Context, Result};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a producer run measured.
pub struct Produced {
    pub elapsed: Duration,
    pub first_send: Instant,
    /// Nanoseconds the producer handed each message over after its scheduled time (rate mode).
    pub lag: Histogram<u64>,
}

/// Parameters of one run.
#[derive(Debug, Clone)]
pub struct Params {
    pub count: u64,
    pub size: usize,
    pub window: usize,
    pub rate: u64,
    pub duration: f64,
    pub consumers: usize,
    pub cold: bool,
}

/// Sends `count` messages (or, with `rate` > 0, `rate` per second), keeping at most `window`
/// unacknowledged; returns once every one is acknowledged.
pub async fn produce<P: Producer>(
    p: &mut P,
    count: u64,
    size: usize,
    window: usize,
    rate: u64,
) -> Result<Produced> {
    let mut acks = FuturesUnordered::new();
    let counter = p.counter();
    let mut scratch = Vec::with_capacity(size);
    let mut lag = common::histogram();
    let start = Instant::now();
    let tick = (rate > 0).then(|| Duration::from_secs_f64(1.0 / rate as f64));
    let mut seq = 0u64;
    while seq < count {
        if let Some(c) = &counter {
            if seq >= window as u64 {
                c.wait_for(seq + 1 - window as u64).await?;
            }
        } else if acks.len() >= window {
            acks.next().await.expect("non-empty")?;
            continue;
        }
        if let Some(tick) = tick {
            let due = start + tick * seq as u32;
            if Instant::now() < due {
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => {}
                    Some(r) = acks.next(), if !acks.is_empty() => { r?; continue; }
                }
            }
            lag.saturating_record(Instant::now().saturating_duration_since(due).as_nanos() as u64);
        }
        if let Some(ack) = p.send(common::payload(seq, size, &mut scratch)).await? {
            acks.push(ack);
            // First-poll the new send now (some clients only write a command when first polled).
            while let Some(Some(r)) = acks.next().now_or_never() {
                r?;
            }
        }
        seq += 1;
    }
    while let Some(r) = acks.next().await {
        r?;
    }
    if let Some(c) = &counter {
        c.wait_for(count).await?;
    }
    Ok(Produced {
        elapsed: start.elapsed(),
        first_send: start,
        lag,
    })
}

/// What a subscriber saw.
pub struct Consumed {
    pub check: OrderCheck,
    pub latency: Histogram<u64>,
    pub last: Instant,
}

/// Reads until `count` messages arrived (or `deadline` passed); latencies of messages sent at or
/// after `skip_before_ns` (process clock) are recorded.
pub async fn consume<C: Consumer>(
    mut c: C,
    count: u64,
    skip_before_ns: u64,
    deadline: Instant,
) -> Result<Consumed> {
    let mut check = OrderCheck::default();
    let mut latency = common::histogram();
    let mut bad = None;
    while check.received < count {
        let got = tokio::time::timeout_at(
            deadline.into(),
            c.recv(|p| match common::parse(p) {
                Ok((seq, ts)) => {
                    check.see(seq);
                    if ts >= skip_before_ns {
                        latency.saturating_record(common::now_ns().saturating_sub(ts));
                    }
                }
                Err(e) => bad = Some(e),
            }),
        )
        .await;
        match got {
            Err(_) => break,
            Ok(r) => {
                r?;
            }
        }
        if let Some(e) = bad.take() {
            return Err(e);
        }
    }
    Ok(Consumed {
        check,
        latency,
        last: Instant::now(),
    })
}

/// Microseconds with two decimals, for the report.
fn us(ns: u64) -> f64 {
    (ns as f64 / 10.0).round() / 100.0
}

fn latency_json(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "p50_us": us(h.value_at_quantile(0.50)),
        "p99_us": us(h.value_at_quantile(0.99)),
        "p999_us": us(h.value_at_quantile(0.999)),
        "max_us": us(h.max()),
    })
}

fn order_json(c: &OrderCheck) -> Value {
    json!({ "received": c.received, "out_of_order": c.out_of_order })
}

/// W1.
pub async fn w1<S: System>(sys: &S, prm: &Params) -> Result<Value> {
    sys.prepare().await?;
    let mut p = sys.producer().await?;
    let r = produce(&mut p, prm.count, prm.size, prm.window, 0).await?;
    let rate = prm.count as f64 / common::secs(r.elapsed);
    Ok(json!({
        "msgs_per_s": rate,
        "mb_per_s": rate * prm.size as f64 / 1e6,
        "seconds": r.elapsed.as_secs_f64(),
    }))
}

/// W3.
pub async fn w3<S: System>(sys: &S, prm: &Params) -> Result<Value> {
    sys.prepare().await?;
    let mut p = sys.producer().await?;
    produce(&mut p, prm.count, prm.size, prm.window, 0).await?;
    drop(p);
    if prm.cold {
        drop_caches()?;
    }
    let start = Instant::now();
    let c = sys.consumer("catchup").await?;
    let got = consume(c, prm.count, u64::MAX, start + Duration::from_secs(600)).await?;
    if got.check.received < prm.count {
        bail!(
            "catch-up read {} of {} messages",
            got.check.received,
            prm.count
        );
    }
    let elapsed = got.last - start;
    Ok(json!({
        "msgs_per_s": prm.count as f64 / common::secs(elapsed),
        "seconds": elapsed.as_secs_f64(),
        "cold": prm.cold,
        "order": order_json(&got.check),
    }))
}

/// W2.
pub async fn w2<S: System>(sys: &S, prm: &Params) -> Result<Value> {
    sys.prepare().await?;
    let count = (prm.rate as f64 * prm.duration) as u64;
    let c = sys.consumer("e2e").await?;
    let mut p = sys.producer().await?;
    let skip = common::now_ns() + 1_000_000_000;
    let deadline = Instant::now() + Duration::from_secs_f64(prm.duration + 30.0);
    let reader = tokio::spawn(consume(c, count, skip, deadline));
    let r = produce(&mut p, count, prm.size, prm.window, prm.rate).await?;
    let got = reader.await.context("consumer task")??;
    Ok(json!({
        "latency": latency_json(&got.latency),
        "achieved_rate": count as f64 / common::secs(r.elapsed),
        "send_lag": latency_json(&r.lag),
        "lost": count.saturating_sub(got.check.received),
        "order": order_json(&got.check),
    }))
}

/// W4.
pub async fn w4<S: System>(sys: &Arc<S>, prm: &Params) -> Result<Value> {
    sys.prepare().await?;
    let mut readers = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    for i in 0..prm.consumers {
        let c = sys.consumer(&format!("fanout-{i}")).await?;
        readers.push(tokio::spawn(consume(c, prm.count, u64::MAX, deadline)));
    }
    let mut p = sys.producer().await?;
    let r = produce(&mut p, prm.count, prm.size, prm.window, 0).await?;
    let mut last = r.first_send;
    let mut orders = Vec::new();
    for reader in readers {
        let got = reader.await.context("consumer task")??;
        if got.check.received < prm.count {
            bail!(
                "a fan-out subscriber got {} of {} messages",
                got.check.received,
                prm.count
            );
        }
        last = last.max(got.last);
        orders.push(order_json(&got.check));
    }
    let deliveries = prm.count * prm.consumers as u64;
    let elapsed = last - r.first_send;
    Ok(json!({
        "deliveries_per_s": deliveries as f64 / common::secs(elapsed),
        "producer_msgs_per_s": prm.count as f64 / common::secs(r.elapsed),
        "seconds": elapsed.as_secs_f64(),
        "order": orders,
    }))
}

/// Writes dirty pages and drops the page cache (root only), for a cold catch-up read.
fn drop_caches() -> Result<()> {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3\n")
        .context("dropping the page cache needs root (/proc/sys/vm/drop_caches)")
}
