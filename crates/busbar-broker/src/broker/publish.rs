//! Publishing events (the HTTP API and the bus): each event goes to its partition (explicit, by
//! key, or sticky round-robin), encoded into batches that fit the topic's `max_message_bytes`.
//! [`Broker::publish`] appends them as plain batches; the bus's transactional producer
//! (`txn/producer.rs`) routes them the same way ([`Broker::route`]) and stores them through the
//! produce path as batches of its transaction.

use super::Broker;
use crate::error::{BrokerError, Result};
use crate::event::{self, Event, Published};
use crate::partitioner;
use crate::schema_rules::BatchCheck;
use crate::topic::Topic;
use busbar_log::Appended;
use std::collections::BTreeMap;

/// Indexes of the events in one encoded batch, and its bytes.
pub(crate) type Chunk = (Vec<usize>, Vec<u8>);

/// Per partition, in order: the batches its events were encoded into.
pub(crate) type Routed = BTreeMap<u32, Vec<Chunk>>;

impl Broker {
    /// Publishes events: each goes to its partition (explicit, by key, or round-robin), one batch per
    /// partition. Everything is validated before anything is stored. Answers in input order.
    pub async fn publish(&self, topic: &str, events: Vec<Event>) -> Result<Vec<Published>> {
        let t = self.topic(topic)?;
        self.check_timestamps(&t, &events)?;
        let events = self.check_events(&t, events).await?;
        let n = events.len();
        let by_part = self.route(&t, &events)?;
        // Partitions are appended concurrently (their fsyncs overlap); batches of one partition
        // stay in order.
        let tasks: Vec<_> = by_part
            .into_iter()
            .map(|(p, chunks)| {
                let part = t.partitions[p as usize].clone();
                let (t, cluster) = (t.clone(), self.shared.get().cloned());
                tokio::spawn(async move {
                    let mut done = Vec::new();
                    for (idx, bytes) in chunks {
                        let at = match &cluster {
                            Some(c) => {
                                crate::shared::append(c, t.clone(), part.clone(), bytes).await?
                            }
                            None => Self::append(&part, bytes).await?,
                        };
                        done.push((idx, at));
                    }
                    Ok::<_, BrokerError>((p, done))
                })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            let r = task
                .await
                .map_err(|e| BrokerError::Storage(format!("append task failed: {e}")))?;
            results.push(r);
        }
        let mut done = Vec::new();
        for r in results {
            done.push(r?);
        }
        Ok(answers(n, done))
    }

    /// Checks the events' timestamps against the topic's window.
    pub(crate) fn check_timestamps(&self, t: &Topic, events: &[Event]) -> Result<()> {
        let now = self.config.clock.now_ms();
        for ts in events.iter().filter_map(|e| e.timestamp) {
            crate::validate::timestamp(ts, &t.config, now)?;
        }
        Ok(())
    }

    /// Picks each event's partition and encodes them into batches of at most
    /// `max_message_bytes`.
    pub(crate) fn route(&self, t: &Topic, events: &[Event]) -> Result<Routed> {
        let now = self.config.clock.now_ms();
        let n = t.partitions.len() as u32;
        let sticky = self.sticky.next(n);
        let mut by_partition: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, e) in events.iter().enumerate() {
            let p = match (e.partition, &e.key) {
                (Some(p), _) if p >= n => {
                    return Err(BrokerError::UnknownPartition {
                        topic: t.name.clone(),
                        partition: p as i64,
                    })
                }
                (Some(p), _) => p,
                (None, Some(k)) => partitioner::for_key(k, n),
                (None, None) => sticky,
            };
            by_partition.entry(p).or_default().push(i);
        }
        let limit = t.config.max_message_bytes;
        let mut out = Routed::new();
        for (p, idx) in by_partition {
            out.insert(p, split_to_fit(events, &idx, limit, now)?);
        }
        Ok(out)
    }

    /// Checks published events against the topic's schema settings; `strict` decoding runs on the
    /// blocking pool (CPU work bounded by the events' size).
    pub(crate) async fn check_events(&self, t: &Topic, events: Vec<Event>) -> Result<Vec<Event>> {
        let rules = t.config.schema;
        if !rules.active() {
            return Ok(events);
        }
        let (name, checker, failures) = (
            t.name.clone(),
            self.schema_checker(),
            self.schema_failures.clone(),
        );
        let check = move || {
            let mut check = BatchCheck::new(&name, rules, checker.as_deref());
            for (i, e) in events.iter().enumerate() {
                check.record(i, e.key.as_deref(), e.value.as_deref());
            }
            check.finish(&failures, "events").map(|()| events)
        };
        if !rules.heavy() {
            return check();
        }
        tokio::task::spawn_blocking(check)
            .await
            .map_err(|e| BrokerError::Storage(format!("schema check failed: {e}")))?
    }
}

/// One partition's appended batches, each with the input indexes of its events.
pub(crate) type PartitionAppends = (u32, Vec<(Vec<usize>, Appended)>);

/// Where each of `n` published events landed, in input order, from each partition's appended
/// batches.
pub(crate) fn answers(n: usize, done: Vec<PartitionAppends>) -> Vec<Published> {
    let mut out = vec![
        Published {
            partition: 0,
            offset: 0
        };
        n
    ];
    for (p, batches) in done {
        for (idx, at) in batches {
            for (k, i) in idx.iter().enumerate() {
                out[*i] = Published {
                    partition: p,
                    offset: at.base_offset + k as u64,
                };
            }
        }
    }
    out
}

/// Encodes the events at `idx` into batches of at most `limit` bytes (splitting as needed).
fn split_to_fit(events: &[Event], idx: &[usize], limit: usize, now: i64) -> Result<Vec<Chunk>> {
    let refs: Vec<&Event> = idx.iter().map(|i| &events[*i]).collect();
    let bytes = event::encode(&refs, now);
    if bytes.len() <= limit {
        return Ok(vec![(idx.to_vec(), bytes)]);
    }
    if idx.len() == 1 {
        return Err(BrokerError::MessageTooLarge {
            size: bytes.len(),
            limit,
        });
    }
    let (a, b) = idx.split_at(idx.len() / 2);
    let mut out = split_to_fit(events, a, limit, now)?;
    out.extend(split_to_fit(events, b, limit, now)?);
    Ok(out)
}
