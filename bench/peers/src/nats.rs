//! NATS JetStream through `async-nats`: a file-storage stream with one replica and limits
//! retention; a JetStream publish ack per message; durable pull consumers with `AckPolicy::None`
//! fetching 1,000 messages a batch (the server keeps their position). async-nats sets
//! TCP_NODELAY itself. Whether an ack means "on disk" depends on the server's `sync_interval`,
//! which the run script sets and states.

use crate::common::{Ack, Consumer, Producer, System};
use anyhow::{anyhow, Result};
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use std::future::Future;

pub const SUBJECT: &str = "peerbench";

/// A nats-server with JetStream at `addr`.
pub struct Nats {
    pub addr: String,
}

impl Nats {
    async fn context(&self) -> Result<jetstream::Context> {
        let client = async_nats::connect(&self.addr).await?;
        Ok(jetstream::new(client))
    }
}

pub struct NProducer(jetstream::Context);

impl Producer for NProducer {
    fn send(&mut self, payload: Bytes) -> impl Future<Output = Result<Option<Ack>>> + Send {
        let js = self.0.clone();
        async move {
            let fut = js
                .publish(SUBJECT, payload)
                .await
                .map_err(|e| anyhow!("publish: {e}"))?;
            let ack: Ack = Box::pin(async move {
                fut.await.map_err(|e| anyhow!("publish ack: {e}"))?;
                Ok(())
            });
            Ok(Some(ack))
        }
    }
}

pub struct NConsumer(consumer::pull::Stream);

impl Consumer for NConsumer {
    async fn recv<F: FnMut(&[u8]) + Send>(&mut self, mut f: F) -> Result<usize> {
        match self.0.next().await {
            Some(Ok(m)) => {
                f(&m.payload);
                Ok(1)
            }
            Some(Err(e)) => Err(anyhow!("pull: {e}")),
            None => Err(anyhow!("consumer stream ended")),
        }
    }
}

impl System for Nats {
    type P = NProducer;
    type C = NConsumer;

    async fn prepare(&self) -> Result<()> {
        let js = self.context().await?;
        js.get_or_create_stream(stream::Config {
            name: SUBJECT.into(),
            subjects: vec![SUBJECT.into()],
            storage: stream::StorageType::File,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow!("create stream: {e}"))?;
        Ok(())
    }

    async fn producer(&self) -> Result<NProducer> {
        Ok(NProducer(self.context().await?))
    }

    async fn consumer(&self, group: &str) -> Result<NConsumer> {
        let js = self.context().await?;
        let s = js
            .get_stream(SUBJECT)
            .await
            .map_err(|e| anyhow!("get stream: {e}"))?;
        let c = s
            .create_consumer(consumer::pull::Config {
                durable_name: Some(group.into()),
                ack_policy: consumer::AckPolicy::None,
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow!("create consumer: {e}"))?;
        let msgs = c
            .stream()
            .max_messages_per_batch(1000)
            .messages()
            .await
            .map_err(|e| anyhow!("pull stream: {e}"))?;
        Ok(NConsumer(msgs))
    }

    fn describe(&self) -> String {
        "async-nats 0.51; JetStream publish ack per message; durable pull consumer, AckPolicy::None, batches of 1000".into()
    }
}
