//! busbar through librdkafka (the `rdkafka` crate): the Kafka client most applications use.
//!
//! Producer: `ThreadedProducer` whose delivery callback counts acks, `acks=all`, idempotence off (as the peers' clients), compression off,
//! Nagle off. Acks mean on disk: busbar's default sync policy fsyncs before it answers.
//! Subscriber: a `StreamConsumer` per consumer group (await a message, then drain what is queued
//! without waiting), the partition assigned from the beginning
//! (no rebalance wait), its position committed by auto-commit every second.

use crate::common::{Ack, AckCounter, Consumer, Producer, System};
use anyhow::{anyhow, Result};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::sync::Arc;

pub const TOPIC: &str = "peerbench";

/// busbar at `addr` (its Kafka listener).
pub struct Busbar {
    pub addr: String,
    /// librdkafka `linger.ms`.
    pub linger_ms: u32,
}

impl Busbar {
    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.addr)
            .set("socket.nagle.disable", "true")
            .set("broker.address.family", "v4");
        c
    }
}

/// Counts acks from librdkafka's delivery callback (no future per message).
pub struct Deliveries(Arc<AckCounter>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.0.ack(),
            Err((e, _)) => self.0.fail(e.to_string()),
        }
    }
}

pub struct KProducer {
    producer: ThreadedProducer<Deliveries>,
    counter: Arc<AckCounter>,
}

impl Producer for KProducer {
    async fn send(&mut self, payload: Bytes) -> Result<Option<Ack>> {
        loop {
            let rec = BaseRecord::<(), [u8]>::to(TOPIC)
                .payload(&payload[..])
                .partition(0);
            match self.producer.send(rec) {
                Ok(()) => return Ok(None),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await
                }
                Err((e, _)) => return Err(anyhow!("enqueue: {e}")),
            }
        }
    }

    fn counter(&self) -> Option<Arc<AckCounter>> {
        Some(self.counter.clone())
    }
}

pub struct KConsumer(StreamConsumer);

/// Messages handed over per `recv` call at most.
const DRAIN: usize = 1000;

impl Consumer for KConsumer {
    async fn recv<F: FnMut(&[u8]) + Send>(&mut self, mut f: F) -> Result<usize> {
        // Await the first message, then drain what librdkafka already queued without waiting
        // (one waker registration per batch instead of per message).
        let mut stream = self.0.stream();
        let first = stream
            .next()
            .await
            .ok_or_else(|| anyhow!("consumer stream ended"))??;
        f(first.payload().unwrap_or_default());
        drop(first);
        let mut n = 1;
        while n < DRAIN {
            match stream.next().now_or_never() {
                Some(Some(m)) => f(m?.payload().unwrap_or_default()),
                _ => break,
            }
            n += 1;
        }
        Ok(n)
    }
}

impl System for Busbar {
    type P = KProducer;
    type C = KConsumer;

    async fn prepare(&self) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self.config().create()?;
        let topic = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(1));
        let r = admin.create_topics([&topic], &AdminOptions::new()).await?;
        for t in r {
            match t {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, e)) => return Err(anyhow!("create topic {name}: {e}")),
            }
        }
        Ok(())
    }

    async fn producer(&self) -> Result<KProducer> {
        let counter = Arc::new(AckCounter::default());
        let producer: ThreadedProducer<Deliveries> = self
            .config()
            .set("acks", "all")
            .set("enable.idempotence", "false")
            .set("linger.ms", self.linger_ms.to_string())
            .set("queue.buffering.max.messages", "1000000")
            .create_with_context(Deliveries(counter.clone()))?;
        Ok(KProducer { producer, counter })
    }

    async fn consumer(&self, group: &str) -> Result<KConsumer> {
        let c: StreamConsumer = self
            .config()
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("auto.offset.reset", "earliest")
            // librdkafka 2.4+ postpones a partition's next fetch by up to 1 s once its local queue
            // is over its threshold; with a reader this fast that stalled some catch-up runs
            // (448 k vs 780 k msg/s, same machine, back to back), so fetch again after 1 ms.
            .set("fetch.queue.backoff.ms", "1")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)?;
        c.assign(&tpl)?;
        Ok(KConsumer(c))
    }

    fn describe(&self) -> String {
        let (_, v) = rdkafka::util::get_rdkafka_version();
        format!(
            "rdkafka 0.38 (librdkafka {v}); acks=all, linger.ms={}, idempotence off; consumer: assigned partition, auto-commit 1 s",
            self.linger_ms
        )
    }
}
