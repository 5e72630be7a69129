//! `peerbench`: one workload against one system, one JSON line out. Driven by
//! `scripts/peers.sh`, which starts each server fresh, alternates systems, repeats and tabulates.
//!
//! ```text
//! peerbench busbar w1 --addr 127.0.0.1:19092 --count 1000000 --size 100 --server-pid 1234
//! ```

mod common;
mod kafka;
mod nats;
mod rabbit;
mod redis_streams;
mod workloads;

use anyhow::{bail, Result};
use clap::Parser;
use serde_json::{json, Value};
use std::sync::Arc;
use workloads::Params;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SystemKind {
    Busbar,
    Nats,
    Redis,
    Rabbitmq,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Workload {
    W1,
    W2,
    W3,
    W4,
}

#[derive(Debug, Parser)]
#[command(about = "One benchmark workload against one system; prints one JSON line")]
struct Args {
    system: SystemKind,
    workload: Workload,
    /// busbar: Kafka HOST:PORT; nats: nats://HOST:PORT; redis: redis://HOST:PORT; rabbitmq: stream port.
    #[arg(long)]
    addr: String,
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Unacknowledged messages allowed in flight.
    #[arg(long, default_value_t = 1024)]
    window: usize,
    /// W2: messages per second.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// W2: seconds.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// W4: subscribers.
    #[arg(long, default_value_t = 4)]
    consumers: usize,
    /// W3: drop the page cache between storing and reading (root).
    #[arg(long)]
    cold: bool,
    /// The server's pid: its peak and current RSS are reported.
    #[arg(long)]
    server_pid: Option<u32>,
    /// busbar: librdkafka linger.ms (0: send as soon as the connection is free; the window
    /// batches by itself).
    #[arg(long, default_value_t = 0)]
    linger_ms: u32,
}

/// VmHWM (peak RSS) and VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

async fn run<S: common::System>(sys: S, w: Workload, prm: &Params) -> Result<(Value, String)> {
    let sys = Arc::new(sys);
    let v = match w {
        Workload::W1 => workloads::w1(&*sys, prm).await?,
        Workload::W2 => workloads::w2(&*sys, prm).await?,
        Workload::W3 => workloads::w3(&*sys, prm).await?,
        Workload::W4 => workloads::w4(&sys, prm).await?,
    };
    Ok((v, sys.describe()))
}

fn main() -> Result<()> {
    let a = Args::parse();
    if a.size < common::HEADER {
        bail!(
            "--size {} is below the {}-byte sequence/timestamp header",
            a.size,
            common::HEADER
        );
    }
    if a.window == 0 {
        bail!("--window must be at least 1");
    }
    common::now_ns();
    let prm = Params {
        count: a.count,
        size: a.size,
        window: a.window,
        rate: a.rate,
        duration: a.duration,
        consumers: a.consumers,
        cold: a.cold,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (result, client) = rt.block_on(async {
        match a.system {
            SystemKind::Busbar => {
                run(
                    kafka::Busbar {
                        addr: a.addr.clone(),
                        linger_ms: a.linger_ms,
                    },
                    a.workload,
                    &prm,
                )
                .await
            }
            SystemKind::Nats => {
                run(
                    nats::Nats {
                        addr: a.addr.clone(),
                    },
                    a.workload,
                    &prm,
                )
                .await
            }
            SystemKind::Redis => {
                run(
                    redis_streams::Redis {
                        url: a.addr.clone(),
                    },
                    a.workload,
                    &prm,
                )
                .await
            }
            SystemKind::Rabbitmq => {
                run(
                    rabbit::Rabbit {
                        port: a.addr.parse()?,
                    },
                    a.workload,
                    &prm,
                )
                .await
            }
        }
    })?;
    let rss = a.server_pid.and_then(rss_kib);
    let out = json!({
        "system": format!("{:?}", a.system).to_lowercase(),
        "workload": format!("{:?}", a.workload).to_lowercase(),
        "count": a.count,
        "size": a.size,
        "window": a.window,
        "client": client,
        "result": result,
        "server_peak_rss_kib": rss.map(|r| r.0),
        "server_rss_kib": rss.map(|r| r.1),
    });
    println!("{out}");
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}
