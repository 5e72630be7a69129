//! Redis Streams through `redis-rs`: a multiplexed connection (TCP_NODELAY), one `XADD` reply per
//! message as the ack, sent in order (redis-rs writes a command when its future is first polled;
//! the producer loop first-polls each send at once, in order, and subscribers check sequence
//! numbers); one consumer group per subscriber reading with `XREADGROUP COUNT 1000 BLOCK 100
//! NOACK`. Whether a reply means "on disk" depends on `appendfsync`, set and stated by the run
//! script.

use crate::common::{Ack, Consumer, Producer, System};
use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};
use std::future::Future;
use std::time::Duration;

pub const KEY: &str = "peerbench";

/// A redis-server at `url` (`redis://127.0.0.1:PORT`).
pub struct Redis {
    pub url: String,
}

impl Redis {
    async fn connect(&self) -> Result<MultiplexedConnection> {
        let client = redis::Client::open(self.url.as_str())?;
        let cfg = AsyncConnectionConfig::new()
            .set_response_timeout(Some(Duration::from_secs(60)))
            // Larger than any window: a full command channel would let later sends overtake.
            .set_pipeline_buffer_size(1 << 16);
        Ok(client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await?)
    }
}

pub struct RProducer(MultiplexedConnection);

impl Producer for RProducer {
    fn send(&mut self, payload: Bytes) -> impl Future<Output = Result<Option<Ack>>> + Send {
        let mut conn = self.0.clone();
        // Unconstrained: tokio's cooperative budget would otherwise make some first polls
        // return Pending before the command is queued, so a later send could overtake it.
        let ack: Ack = Box::pin(tokio::task::unconstrained(async move {
            let mut cmd = redis::cmd("XADD");
            cmd.arg(KEY).arg("*").arg("d").arg(&payload[..]);
            let _: Value = cmd.query_async(&mut conn).await?;
            Ok(())
        }));
        std::future::ready(Ok(Some(ack)))
    }
}

pub struct RConsumer {
    conn: MultiplexedConnection,
    cmd: redis::Cmd,
}

impl Consumer for RConsumer {
    async fn recv<F: FnMut(&[u8]) + Send>(&mut self, mut f: F) -> Result<usize> {
        let reply: Value = self.cmd.query_async(&mut self.conn).await?;
        let mut n = 0;
        for_each_payload(&reply, &mut |p| {
            n += 1;
            f(p)
        })?;
        Ok(n)
    }
}

/// Walks an XREADGROUP reply (RESP2 arrays or RESP3 maps): streams → entries → field/value pairs.
fn for_each_payload(reply: &Value, f: &mut dyn FnMut(&[u8])) -> Result<()> {
    let streams: Vec<&Value> = match reply {
        Value::Nil => return Ok(()),
        Value::Array(s) => s.iter().collect(),
        Value::Map(m) => m.iter().map(|(_, v)| v).collect(),
        other => bail!("unexpected XREADGROUP reply {other:?}"),
    };
    for s in streams {
        let entries = match s {
            Value::Array(kv) if kv.len() == 2 => &kv[1],
            other => other,
        };
        let Value::Array(entries) = entries else {
            bail!("unexpected stream entry list")
        };
        for e in entries {
            let Value::Array(idf) = e else {
                bail!("unexpected stream entry")
            };
            let Some(Value::Array(fields)) = idf.get(1) else {
                bail!("entry without fields")
            };
            match fields.get(1) {
                Some(Value::BulkString(p)) => f(p),
                _ => bail!("entry without a payload field"),
            }
        }
    }
    Ok(())
}

impl System for Redis {
    type P = RProducer;
    type C = RConsumer;

    async fn prepare(&self) -> Result<()> {
        let _ = self.connect().await?;
        Ok(())
    }

    async fn producer(&self) -> Result<RProducer> {
        Ok(RProducer(self.connect().await?))
    }

    async fn consumer(&self, group: &str) -> Result<RConsumer> {
        let mut conn = self.connect().await?;
        let r: redis::RedisResult<Value> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(KEY)
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        if let Err(e) = r {
            if e.code() != Some("BUSYGROUP") {
                return Err(anyhow!("XGROUP CREATE {group}: {e}"));
            }
        }
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(group)
            .arg("c")
            .arg("COUNT")
            .arg(1000)
            .arg("BLOCK")
            .arg(100);
        cmd.arg("NOACK").arg("STREAMS").arg(KEY).arg(">");
        Ok(RConsumer { conn, cmd })
    }

    fn describe(&self) -> String {
        "redis-rs 1.8 (multiplexed, TCP_NODELAY); XADD reply per message; XREADGROUP COUNT 1000 BLOCK 100 NOACK, one group per subscriber".into()
    }
}
