//! RabbitMQ Streams through `rabbitmq-stream-client` 0.4.4 (0.5+ cannot talk to Debian's 3.10):
//! publish confirm per message (client batch size 100, flushed every 1 ms: its 100 ms default
//! would dominate latency); named consumers from the first offset storing their offset every
//! 10,000 messages, with the client's fixed credit of one chunk. The client gives no socket hook,
//! so TCP_NODELAY is set on this process's sockets through /proc/self/fd after each connection.
//! RabbitMQ 3.10 streams never fsync: a confirm follows the write to the segment file.

use crate::common::{self, Ack, Consumer, Producer, System};
use anyhow::{anyhow, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use rabbitmq_stream_client::error::StreamCreateError;
use rabbitmq_stream_client::types::{Message, OffsetSpecification, ResponseCode};
use rabbitmq_stream_client::{Environment, NoDedup};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const STREAM: &str = "peerbench";

/// A rabbitmq-server with the stream plugin; its stream port.
pub struct Rabbit {
    pub port: u16,
}

impl Rabbit {
    async fn env(&self) -> Result<Environment> {
        let env = Environment::builder()
            .host("127.0.0.1")
            .port(self.port)
            .build()
            .await?;
        common::nodelay_all_sockets();
        Ok(env)
    }
}

pub struct QProducer(rabbitmq_stream_client::Producer<NoDedup>);

impl Producer for QProducer {
    fn send(&mut self, payload: Bytes) -> impl Future<Output = Result<Option<Ack>>> + Send {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<()>>();
        let tx = Arc::new(Mutex::new(Some(tx)));
        let msg = Message::builder().body(payload.to_vec()).build();
        async move {
            self.0
                .send(msg, move |status| {
                    let r = match status {
                        Ok(s) if s.confirmed() => Ok(()),
                        Ok(s) => Err(anyhow!("not confirmed: {:?}", s.status())),
                        Err(e) => Err(anyhow!("publish: {e}")),
                    };
                    if let Some(tx) = tx.lock().expect("not poisoned").take() {
                        let _ = tx.send(r);
                    }
                    std::future::ready(())
                })
                .await
                .map_err(|e| anyhow!("send: {e}"))?;
            let ack: Ack =
                Box::pin(async move { rx.await.map_err(|_| anyhow!("confirm dropped"))? });
            Ok(Some(ack))
        }
    }
}

pub struct QConsumer {
    inner: rabbitmq_stream_client::Consumer,
    seen: u64,
}

impl Consumer for QConsumer {
    async fn recv<F: FnMut(&[u8]) + Send>(&mut self, mut f: F) -> Result<usize> {
        let d = match self.inner.next().await {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(anyhow!("deliver: {e}")),
            None => return Err(anyhow!("consumer closed")),
        };
        f(d.message().data().unwrap_or_default());
        self.seen += 1;
        if self.seen.is_multiple_of(10_000) {
            self.inner
                .store_offset(d.offset())
                .await
                .map_err(|e| anyhow!("store_offset: {e}"))?;
        }
        Ok(1)
    }
}

impl System for Rabbit {
    type P = QProducer;
    type C = QConsumer;

    async fn prepare(&self) -> Result<()> {
        let env = self.env().await?;
        match env.stream_creator().create(STREAM).await {
            Ok(()) => Ok(()),
            Err(StreamCreateError::Create {
                status: ResponseCode::StreamAlreadyExists,
                ..
            }) => Ok(()),
            Err(e) => Err(anyhow!("create stream: {e}")),
        }
    }

    async fn producer(&self) -> Result<QProducer> {
        let env = self.env().await?;
        let p = env
            .producer()
            .batch_size(100)
            .batch_delay(Duration::from_millis(1))
            .build(STREAM)
            .await?;
        common::nodelay_all_sockets();
        Ok(QProducer(p))
    }

    async fn consumer(&self, group: &str) -> Result<QConsumer> {
        let env = self.env().await?;
        let c = env
            .consumer()
            .offset(OffsetSpecification::First)
            .name(group)
            .build(STREAM)
            .await?;
        common::nodelay_all_sockets();
        Ok(QConsumer { inner: c, seen: 0 })
    }

    fn describe(&self) -> String {
        "rabbitmq-stream-client 0.4.4; confirm per message, batch 100, flush 1 ms; named consumer from first, store_offset every 10k, TCP_NODELAY set by the harness".into()
    }
}
