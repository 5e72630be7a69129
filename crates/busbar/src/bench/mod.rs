//! `busbar bench produce|consume|e2e|fanout`: load against a running busbar over the Kafka
//! protocol, like `nats bench` or Kafka's perf-test tools. Message size, count or duration, fixed or
//! max rate, partitions, acks, batch size and requests in flight; live progress on stderr; a final
//! report of msgs/s, MB/s (payload bytes, 10^6) and latency p50/p99/p99.9/max from an HDR
//! histogram (`--output json` for scripts).
//!
//! Latency: `produce` measures request sent → acknowledgement received, counted once per message;
//! `e2e` measures the producer handing a message to the client → the consumer seeing it (a
//! timestamp in the payload; the first second is left out as warm-up, as in
//! `shared/spec/peers.md` W2). `consume` reads what is stored from the start (producing `--count`
//! messages first when the topic holds fewer); `fanout` runs `--consumers` independent readers
//! over the same messages while they are produced, and reports deliveries/s.
//!
//! `--topic-config key=value` sets configs of the topic the bench creates (an existing topic keeps
//! its own); `--schema-id N` frames each payload as a schema-registry client does (`framing`), so
//! topics with `value.schema.validation` can be measured against plain ones.

mod client;
mod framing;
mod secure;

use crate::client::{outln, CliError, CliResult, Output};
use anyhow::{bail, Context, Result};
use busbar_log::batch::{self, BatchHeader, NewRecord};
use bytes::Bytes;
use client::{Window, FETCH_VERSION, PRODUCE_VERSION};
use hdrhistogram::Histogram;
use kafka_protocol::messages::{ApiKey, FetchResponse, ProduceResponse};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    Produce,
    Consume,
    E2e,
    Fanout,
}

/// Flags of `busbar bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    pub workload: Workload,
    /// busbar's Kafka listener.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub kafka: String,
    /// Topic (created when missing); default `bench-<workload>`.
    #[arg(long)]
    pub topic: Option<String>,
    /// Partitions of a topic the bench creates.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Messages to send (ignored with --duration).
    #[arg(long, default_value_t = 1_000_000)]
    pub count: u64,
    /// Run this many seconds instead of a fixed count.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Messages per second; 0 = as fast as acknowledgements allow.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Messages per request (one batch per partition).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Requests in flight, unacknowledged.
    #[arg(long, default_value_t = 10)]
    pub window: usize,
    /// all, 1 or 0.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// Independent readers (fanout).
    #[arg(long, default_value_t = 4)]
    pub consumers: usize,
    /// Producer connections sending at once (produce, e2e, fanout and the fill of consume);
    /// --count and --rate are split between them.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// none, gzip, snappy, lz4 or zstd (batches are compressed by the bench, as a producer does).
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Connect over TLS (an SSL or SASL_SSL listener); needs --ca-file.
    #[arg(long)]
    pub tls: bool,
    /// PEM CA certificates busbar's certificate must chain to (with --tls).
    #[arg(long)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Authenticate each connection with SASL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (a SASL
    /// listener); needs --sasl-user and --sasl-password.
    #[arg(long)]
    pub sasl: Option<String>,
    /// SASL user (with --sasl).
    #[arg(long)]
    pub sasl_user: Option<String>,
    /// SASL password (with --sasl).
    #[arg(long)]
    pub sasl_password: Option<String>,
    /// A config of the topic the bench creates, `key=value` (repeatable), e.g.
    /// value.schema.validation=id; a topic that exists already keeps its own.
    #[arg(long = "topic-config", value_name = "KEY=VALUE")]
    pub topic_configs: Vec<String>,
    /// Frame payloads for a schema registry: magic byte 0, this schema id (big-endian), then an
    /// Avro `bytes` value filling --size; the schema registered under it must be "bytes".
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i32::MAX as i64))]
    pub schema_id: Option<u32>,
}

fn codec(name: &str) -> Result<u8> {
    Ok(match name {
        "none" => 0,
        "gzip" => 1,
        "snappy" => 2,
        "lz4" => 3,
        "zstd" => 4,
        other => bail!("--compression {other:?} must be none, gzip, snappy, lz4 or zstd"),
    })
}

/// An uncompressed batch rebuilt with its records section compressed by `codec`.
fn compressed(plain: Vec<u8>, codec: u8) -> Result<Vec<u8>> {
    if codec == 0 {
        return Ok(plain);
    }
    let mut h = BatchHeader::parse(&plain).map_err(|e| anyhow::anyhow!("{e}"))?;
    let packed = busbar_broker::codec::compress(codec, &plain[batch::HEADER_BYTES..])
        .map_err(|e| anyhow::anyhow!(e))?;
    h.attributes |= i16::from(codec);
    Ok(batch::assemble(&h, &packed))
}

/// A latency histogram in microseconds.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// Live counters shared with the progress printer.
#[derive(Default)]
struct Progress {
    sent: AtomicU64,
    done: AtomicU64,
}

fn acks(a: &str) -> Result<i16> {
    Ok(match a {
        "all" | "-1" => -1,
        "1" => 1,
        "0" => 0,
        other => bail!("--acks {other:?} must be all, 1 or 0"),
    })
}

/// `--topic-config` values as (key, value).
fn topic_configs(all: &[String]) -> Result<Vec<(String, String)>> {
    all.iter()
        .map(|c| match c.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => bail!("--topic-config {c:?} must be key=value"),
        })
        .collect()
}

/// The flags' values checked before anything is sent.
struct Checked {
    /// `--compression` as its codec number.
    codec: u8,
    /// `--acks` as Kafka's.
    acks: i16,
    configs: Vec<(String, String)>,
    frame: Option<framing::Frame>,
}

fn check(args: &BenchArgs) -> Result<Checked> {
    if args.size < 8 || args.size > 1 << 20 {
        bail!("--size {} must be 8..=1048576 bytes", args.size);
    }
    let codec = codec(&args.compression)?;
    if args.batch == 0 || args.window == 0 || args.partitions < 1 || args.consumers == 0 {
        bail!("--batch, --window, --partitions and --consumers must be at least 1");
    }
    if !(1..=1024).contains(&args.producers) {
        bail!("--producers {} must be 1..=1024", args.producers);
    }
    let frame = (args.schema_id)
        .map(|id| framing::Frame::new(id, args.size))
        .transpose()?;
    Ok(Checked {
        codec,
        acks: acks(&args.acks)?,
        configs: topic_configs(&args.topic_configs)?,
        frame,
    })
}

/// Runs the bench and prints the report. Exit codes as every client command: bad flags 2, a
/// server that cannot be reached or drops the connection 3, any other failure 1.
pub fn run(args: BenchArgs, output: Output) -> CliResult<()> {
    let checked = check(&args).map_err(|e| CliError::Usage(format!("bench: {e:#}")))?;
    secure::set(
        args.tls,
        args.ca_file.as_deref(),
        args.sasl.as_deref(),
        args.sasl_user.as_deref(),
        args.sasl_password.as_deref(),
    )
    .map_err(|e| CliError::Usage(format!("bench: {e:#}")))?;
    let report = load(args, checked).map_err(|e| {
        let io = e
            .chain()
            .any(|c| c.downcast_ref::<std::io::Error>().is_some());
        let message = format!("bench: {e:#}");
        if io {
            CliError::Connect(message)
        } else {
            CliError::Refused(message)
        }
    })?;
    report.print(output);
    Ok(())
}

fn load(args: BenchArgs, c: Checked) -> Result<Report> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start runtime")?;
    rt.block_on(async {
        let topic = args
            .topic
            .clone()
            .unwrap_or_else(|| format!("bench-{:?}", args.workload).to_lowercase());
        let partitions =
            client::ensure_topic(&args.kafka, &topic, args.partitions, &c.configs).await?;
        let b = Bench {
            args: args.clone(),
            topic,
            partitions,
            acks: c.acks,
            codec: c.codec,
            frame: c.frame,
        };
        match args.workload {
            Workload::Produce => b.produce_workload().await,
            Workload::Consume => b.consume_workload().await,
            Workload::E2e => b.e2e_workload().await,
            Workload::Fanout => b.fanout_workload().await,
        }
    })
}

/// The final figures.
pub struct Report {
    workload: Workload,
    messages: u64,
    bytes: u64,
    seconds: f64,
    latency: Option<Histogram<u64>>,
    extra: serde_json::Value,
}

impl Report {
    fn print(&self, output: Output) {
        let rate = self.messages as f64 / self.seconds.max(1e-9);
        let mb = self.bytes as f64 / 1e6 / self.seconds.max(1e-9);
        let lat = self.latency.as_ref().map(|h| {
            json!({"p50_us": h.value_at_quantile(0.5), "p99_us": h.value_at_quantile(0.99),
                   "p999_us": h.value_at_quantile(0.999), "max_us": h.max(), "samples": h.len()})
        });
        let j = json!({"workload": format!("{:?}", self.workload).to_lowercase(),
            "messages": self.messages, "bytes": self.bytes, "seconds": self.seconds,
            "msgs_per_s": rate, "mb_per_s": mb, "latency": lat, "details": self.extra});
        match output {
            Output::Json => outln!("{j}"),
            Output::Table => {
                outln!(
                    "{:?}: {} messages in {:.2} s = {:.0} msg/s, {:.1} MB/s",
                    self.workload,
                    self.messages,
                    self.seconds,
                    rate,
                    mb
                );
                if let Some(h) = &self.latency {
                    outln!(
                        "latency p50 {} µs  p99 {} µs  p99.9 {} µs  max {} µs  ({} samples)",
                        h.value_at_quantile(0.5),
                        h.value_at_quantile(0.99),
                        h.value_at_quantile(0.999),
                        h.max(),
                        h.len()
                    );
                }
                if !self.extra.is_null() {
                    outln!("{}", self.extra);
                }
            }
        }
    }
}

#[derive(Clone)]
struct Bench {
    args: BenchArgs,
    /// `--compression` as its Kafka codec number.
    codec: u8,
    topic: String,
    partitions: i32,
    acks: i16,
    /// `--schema-id`'s header, when payloads are framed.
    frame: Option<framing::Frame>,
}

/// Prints progress to stderr once a second until dropped.
fn progress(what: &'static str, p: Arc<Progress>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let done = p.done.load(Relaxed);
            eprintln!(
                "[{:>4.0} s] {what} {done} ({} /s)",
                start.elapsed().as_secs_f64(),
                done - last
            );
            last = done;
        }
    })
}

/// Where a payload's timestamp starts: after the schema framing, if any.
fn stamp_at(frame: Option<&framing::Frame>) -> usize {
    frame.map_or(0, framing::Frame::len)
}

fn payload(size: usize, stamp_ns: u64, frame: Option<&framing::Frame>) -> Vec<u8> {
    let mut v = vec![b'x'; size];
    let at = stamp_at(frame);
    if let Some(f) = frame {
        f.write(&mut v);
    }
    v[at..at + 8].copy_from_slice(&stamp_ns.to_be_bytes());
    v
}

impl Bench {
    /// Sends `total` messages (or for `duration`) at the configured rate; calls `on_ack` per
    /// acknowledged request with (messages, latency). Answers (messages sent, bytes, seconds).
    async fn send_all(
        &self,
        total: u64,
        clock: Instant,
        p: &Progress,
        hist: &mut Option<Histogram<u64>>,
    ) -> Result<(u64, u64, f64)> {
        let a = &self.args;
        let (mut tx, mut rx) = client::connect(&a.kafka).await?;
        let mut window: Window<(Instant, u64)> = Window::new();
        let start = Instant::now();
        let deadline = a.duration.map(|d| start + Duration::from_secs_f64(d));
        let (mut sent, mut acked, mut part) = (0u64, 0u64, 0i32);
        loop {
            let more = match deadline {
                Some(d) => Instant::now() < d,
                None => sent < total,
            };
            if more && window.len() < a.window {
                let mut n = match deadline {
                    Some(_) => a.batch as u64,
                    None => (a.batch as u64).min(total - sent),
                };
                // At a fixed rate, each message is handed over at its scheduled time and waits
                // there (like a client's linger) until the request that carries it goes out:
                // everything due is sent at once, up to a batch.
                let scheduled = |i: u64| start + Duration::from_secs_f64(i as f64 / a.rate as f64);
                if a.rate > 0 {
                    tokio::time::sleep_until(scheduled(sent).into()).await;
                    let due = (start.elapsed().as_secs_f64() * a.rate as f64) as u64 + 1;
                    n = n.min(due.saturating_sub(sent).max(1));
                }
                let recs: Vec<NewRecord> = (0..n)
                    .map(|i| {
                        let handed = if a.rate > 0 {
                            scheduled(sent + i)
                        } else {
                            Instant::now()
                        };
                        NewRecord {
                            key: None,
                            value: Some(payload(
                                a.size,
                                (handed - clock).as_nanos() as u64,
                                self.frame.as_ref(),
                            )),
                            headers: vec![],
                            timestamp: 0,
                        }
                    })
                    .collect();
                let req = client::produce(
                    &self.topic,
                    part,
                    self.acks,
                    Bytes::from(compressed(batch::build(&recs), self.codec)?),
                );
                part = (part + 1) % self.partitions;
                let id = tx.send(ApiKey::Produce, PRODUCE_VERSION, &req).await?;
                sent += n;
                p.sent.fetch_add(n, Relaxed);
                if self.acks == 0 {
                    acked += n;
                    p.done.fetch_add(n, Relaxed);
                    continue;
                }
                window.push_back((id, (Instant::now(), n)));
                continue;
            }
            let Some((id, (at, n))) = window.pop_front() else {
                break;
            };
            let resp: ProduceResponse = rx.recv(ApiKey::Produce, PRODUCE_VERSION, id).await?;
            let (code, _) = client::produce_result(&resp);
            if code != 0 {
                let why = client::produce_error(&resp);
                bail!("produce failed with Kafka error {code}{why}");
            }
            if let Some(h) = hist.as_mut() {
                let us = at.elapsed().as_micros().max(1) as u64;
                h.record_n(us.min(60_000_000), n).ok();
            }
            acked += n;
            p.done.fetch_add(n, Relaxed);
        }
        Ok((acked, acked * a.size as u64, start.elapsed().as_secs_f64()))
    }

    /// [`Bench::send_all`] on `--producers` connections at once, `total` and `--rate` split
    /// between them; answers (messages acknowledged, bytes, seconds of the slowest) and, with
    /// `latency`, the merged histogram.
    async fn send_parallel(
        &self,
        total: u64,
        clock: Instant,
        p: &Arc<Progress>,
        latency: bool,
    ) -> Result<(u64, u64, f64, Option<Histogram<u64>>)> {
        let n = self.args.producers as u64;
        let share = |all: u64, i: u64| all / n + u64::from(i < all % n);
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let mut b = self.clone();
                b.args.rate = share(self.args.rate, i);
                if self.args.rate > 0 && b.args.rate == 0 {
                    b.args.rate = 1;
                }
                let (p, count) = (p.clone(), share(total, i));
                tokio::spawn(async move {
                    let mut hist = latency.then(histogram);
                    let r = b.send_all(count, clock, &p, &mut hist).await;
                    r.map(|r| (r, hist))
                })
            })
            .collect();
        let (mut msgs, mut bytes, mut secs, mut merged) = (0, 0, 0f64, latency.then(histogram));
        for t in tasks {
            let ((m, b, s), h) = t.await.context("producer task")??;
            (msgs, bytes, secs) = (msgs + m, bytes + b, secs.max(s));
            if let (Some(all), Some(h)) = (merged.as_mut(), h) {
                all.add(&h).context("merge latency histograms")?;
            }
        }
        Ok((msgs, bytes, secs, merged))
    }

    async fn produce_workload(&self) -> Result<Report> {
        let p = Arc::new(Progress::default());
        let shown = progress("acknowledged", p.clone());
        let r = self
            .send_parallel(self.args.count, Instant::now(), &p, true)
            .await;
        shown.abort();
        let (messages, bytes, seconds, hist) = r?;
        Ok(Report {
            workload: Workload::Produce,
            messages,
            bytes,
            seconds,
            latency: hist,
            extra: json!({"acks": self.args.acks, "partitions": self.partitions,
                          "batch": self.args.batch, "window": self.args.window,
                          "producers": self.args.producers,
                          "compression": self.args.compression}),
        })
    }

    /// Reads every partition from offset 0 until `want` messages arrived (or `until` passes),
    /// calling `seen(record count, data)` for each fetched chunk.
    async fn read_from_start(
        &self,
        want: u64,
        p: &Progress,
        mut seen: impl FnMut(&Bytes),
    ) -> Result<(u64, u64)> {
        let (mut tx, mut rx) = client::connect(&self.args.kafka).await?;
        let mut positions: Vec<(i32, i64)> = (0..self.partitions).map(|q| (q, 0)).collect();
        let (mut got, mut bytes) = (0u64, 0u64);
        while got < want {
            let id = tx
                .send(
                    ApiKey::Fetch,
                    FETCH_VERSION,
                    &client::fetch(&self.topic, &positions, 500),
                )
                .await?;
            let resp: FetchResponse = rx.recv(ApiKey::Fetch, FETCH_VERSION, id).await?;
            for (part, data) in client::fetched(&resp)? {
                let mut pos = 0;
                while pos < data.len() {
                    let Ok(h) = BatchHeader::parse(&data[pos..]) else {
                        break;
                    };
                    let Some(len) = h.total_len().filter(|l| pos + l <= data.len()) else {
                        break;
                    };
                    let slot = &mut positions[part as usize].1;
                    if h.last_offset() >= *slot {
                        let fresh = (h.last_offset() - (*slot).max(h.base_offset) + 1) as u64;
                        got += fresh;
                        bytes += fresh * self.args.size as u64;
                        seen(&data.slice(pos..pos + len));
                        *slot = h.last_offset() + 1;
                    }
                    pos += len;
                }
            }
            p.done.store(got, Relaxed);
        }
        Ok((got, bytes))
    }

    async fn stored(&self) -> Result<u64> {
        let (mut tx, mut rx) = client::connect(&self.args.kafka).await?;
        let positions: Vec<(i32, i64)> = (0..self.partitions).map(|q| (q, 0)).collect();
        let id = tx
            .send(
                ApiKey::Fetch,
                FETCH_VERSION,
                &client::fetch(&self.topic, &positions, 0),
            )
            .await?;
        let resp: FetchResponse = rx.recv(ApiKey::Fetch, FETCH_VERSION, id).await?;
        Ok(resp
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| p.high_watermark.max(0) as u64)
            .sum())
    }

    async fn consume_workload(&self) -> Result<Report> {
        let want = self.args.count;
        let have = self.stored().await?;
        let p = Arc::new(Progress::default());
        if have < want {
            eprintln!("storing {} messages to read back", want - have);
            self.send_parallel(want - have, Instant::now(), &p, false)
                .await?;
        }
        let shown = progress("read", p.clone());
        let start = Instant::now();
        let r = self.read_from_start(want, &p, |_| {}).await;
        shown.abort();
        let (messages, bytes) = r?;
        Ok(Report {
            workload: Workload::Consume,
            messages,
            bytes,
            seconds: start.elapsed().as_secs_f64(),
            latency: None,
            extra: json!({"partitions": self.partitions}),
        })
    }

    async fn e2e_workload(&self) -> Result<Report> {
        let clock = Instant::now();
        let start_offsets = self.stored().await?;
        if start_offsets > 0 && self.partitions > 1 {
            bail!("e2e needs an empty topic with several partitions; pass a new --topic");
        }
        let duration = self.args.duration.unwrap_or(20.0);
        let rate = if self.args.rate == 0 {
            5000
        } else {
            self.args.rate
        };
        let mut bench = self.clone();
        (bench.args.duration, bench.args.rate) = (Some(duration), rate);
        let p = Arc::new(Progress::default());
        let sender = Arc::new(Progress::default());
        let sending = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let shown = progress("delivered", p.clone());
        let warmup_ns = 1_000_000_000u64;
        let reader = {
            let args = self.args.clone();
            let (topic, partitions, p) = (self.topic.clone(), self.partitions, p.clone());
            let at = stamp_at(self.frame.as_ref());
            let (sender, sending) = (sender.clone(), sending.clone());
            tokio::spawn(async move {
                let mut hist = histogram();
                let (mut tx, mut rx) = client::connect(&args.kafka).await?;
                let mut positions: Vec<(i32, i64)> = (0..partitions).map(|q| (q, 0)).collect();
                // Until everything sent arrived, or 5 s of nothing after the sender finished.
                let (mut got, mut idle) = (0u64, 0);
                while sending.load(Relaxed) || (got < sender.done.load(Relaxed) && idle < 50) {
                    let id = tx
                        .send(
                            ApiKey::Fetch,
                            FETCH_VERSION,
                            &client::fetch(&topic, &positions, 100),
                        )
                        .await?;
                    let resp: FetchResponse = rx.recv(ApiKey::Fetch, FETCH_VERSION, id).await?;
                    let now_ns = clock.elapsed().as_nanos() as u64;
                    let chunks = client::fetched(&resp)?;
                    idle = if chunks.is_empty() { idle + 1 } else { 0 };
                    for (part, data) in chunks {
                        let from = positions[part as usize].1 as u64;
                        for e in busbar_broker::event::decode(&topic, part as u32, &data, from)? {
                            positions[part as usize].1 = e.offset as i64 + 1;
                            got += 1;
                            let Some(v) = e.value.as_deref().filter(|v| v.len() >= at + 8) else {
                                continue;
                            };
                            let stamp = v[at..at + 8].try_into().expect("8 bytes");
                            let sent = u64::from_be_bytes(stamp);
                            if sent >= warmup_ns {
                                let us = (now_ns.saturating_sub(sent) / 1000).max(1);
                                hist.record(us.min(60_000_000)).ok();
                            }
                        }
                    }
                    p.done.store(got, Relaxed);
                }
                Ok::<_, anyhow::Error>((got, hist))
            })
        };
        let sent = bench.send_parallel(0, clock, &sender, false).await;
        sending.store(false, Relaxed);
        let (sent, _, seconds, _) = sent?;
        let (got, hist) = reader.await.context("reader task")??;
        shown.abort();
        Ok(Report {
            workload: Workload::E2e,
            messages: got,
            bytes: got * self.args.size as u64,
            seconds,
            latency: Some(hist),
            extra: json!({"rate": rate, "sent": sent, "lost": sent.saturating_sub(got),
                          "achieved_rate": sent as f64 / seconds, "warmup_s": 1}),
        })
    }

    async fn fanout_workload(&self) -> Result<Report> {
        if self.stored().await? > 0 {
            bail!("fanout needs an empty topic; pass a new --topic");
        }
        let want = self.args.count;
        let start = Instant::now();
        let sender = Arc::new(Progress::default());
        let shown = progress("produced", sender.clone());
        let readers: Vec<_> = (0..self.args.consumers)
            .map(|_| {
                let b = self.clone();
                tokio::spawn(async move {
                    let mine = Progress::default();
                    b.read_from_start(want, &mine, |_| {})
                        .await
                        .map(|(n, _)| (n, Instant::now()))
                })
            })
            .collect();
        let (sent, _, send_s, _) = self
            .send_parallel(want, Instant::now(), &sender, false)
            .await?;
        let mut delivered = 0;
        let mut last_delivery = start;
        for r in readers {
            let (n, at) = r.await.context("reader task")??;
            delivered += n;
            last_delivery = last_delivery.max(at);
        }
        shown.abort();
        Ok(Report {
            workload: Workload::Fanout,
            messages: delivered,
            bytes: delivered * self.args.size as u64,
            seconds: (last_delivery - start).as_secs_f64(),
            latency: None,
            extra: json!({"consumers": self.args.consumers, "produced": sent,
                          "producer_msgs_per_s": sent as f64 / send_s}),
        })
    }
}
