//! The Kafka produce path of the [`Broker`]: a batch stored as received, checked against its
//! idempotent producer's sequence and the topic's schema settings (`schema_rules`), written in call order and acknowledged once durable
//! ([`PendingAppend`]), and producer ids for InitProducerId.

use crate::broker::Broker;
use crate::error::Result;
use crate::schema_rules::{BatchCheck, SchemaChecker, SchemaRules};
use crate::topic::Partition;
use busbar_log::Appended;
use std::sync::Arc;

/// A produced batch that is written; [`PendingAppend::durable`] answers once it is as durable as
/// the topic's sync policy promises (and only then is it acknowledged).
pub enum PendingAppend {
    Ready(Result<Appended>),
    /// Written (or, when `duplicate`, a retry of a batch still being written), durable once
    /// `ticket` is synced.
    Wait {
        p: Arc<Partition>,
        at: Appended,
        ticket: u64,
        duplicate: bool,
    },
    /// A retry answered from producer state with its durable original's offsets.
    Duplicate(Appended),
    /// Cluster mode: committed in the shared store when the future answers (base, last,
    /// duplicate) (`shared.rs`).
    Shared(crate::shared::BoxFuture<'static, Result<(u64, u64, bool)>>),
}

impl PendingAppend {
    /// Where a batch still to become durable was written (`None` for an answer already final).
    pub fn written(&self) -> Option<Appended> {
        match self {
            PendingAppend::Ready(_) | PendingAppend::Duplicate(_) | PendingAppend::Shared(_) => {
                None
            }
            PendingAppend::Wait { at, .. } => Some(*at),
        }
    }

    /// True for a retry answered from producer state: it stores nothing (metrics count it as
    /// a duplicate, not as events).
    pub fn is_duplicate(&self) -> bool {
        matches!(
            self,
            PendingAppend::Duplicate(_)
                | PendingAppend::Wait {
                    duplicate: true,
                    ..
                }
        )
    }

    /// Waits for durability; answers the batch's offsets.
    pub async fn durable(self) -> Result<Appended> {
        match self {
            PendingAppend::Ready(r) => r,
            PendingAppend::Duplicate(at) => Ok(at),
            PendingAppend::Wait { p, at, ticket, .. } => {
                crate::sync::durable(&p, ticket).await?;
                Ok(at)
            }
            PendingAppend::Shared(f) => {
                let (base_offset, last_offset, _) = f.await?;
                Ok(Appended {
                    base_offset,
                    last_offset,
                })
            }
        }
    }
}

impl Broker {
    /// Stores one Kafka RecordBatch v2 as received (the Kafka produce path). A batch from an
    /// idempotent producer is checked against that producer's sequence: a retry of one of its last
    /// five batches answers with the original offsets and stores nothing.
    pub async fn produce(&self, topic: &str, partition: i64, batch: Vec<u8>) -> Result<Appended> {
        self.produce_start(topic, partition, batch)
            .await?
            .durable()
            .await
    }

    /// The first half of [`Broker::produce`]: checks and writes the batch, in call order, and
    /// answers a handle to await its durability. A connection's requests call this one after the
    /// other and await durability together, so their batches keep their order and share fsyncs.
    pub async fn produce_start(
        &self,
        topic: &str,
        partition: i64,
        mut batch: Vec<u8>,
    ) -> Result<PendingAppend> {
        let t = self.topic(topic)?;
        let p = t.partition(partition)?.clone();
        let Ok(h) = busbar_log::batch::BatchHeader::parse(&batch) else {
            if self.shared.get().is_some() {
                crate::shared::check_new(&t, &batch)?;
            }
            // The log refuses it with the precise reason.
            return Ok(PendingAppend::Ready(Self::append(&p, batch).await));
        };
        let shared = self.shared.get();
        if h.producer_id >= 0 && shared.is_none() && !self.producer_ids.issued(h.producer_id) {
            // Only ids InitProducerId handed out get state: a forged id cannot grow it.
            return Err(crate::error::BrokerError::UnknownProducerId(format!(
                "producer id {} was never issued by InitProducerId",
                h.producer_id
            )));
        }
        let now = self.config.clock.now_ms();
        let rules = t.config.schema;
        if h.compression() == 0 && !rules.heavy() {
            let checked = crate::validate::produced(&batch, &h, &t.config, now)?;
            if rules.active() {
                let checker = self.schema_checker();
                self.check_schema(&t.name, rules, checker.as_deref(), &batch, &checked)?;
            }
        } else {
            // Decompression and decoding are CPU work bounded by size, not microseconds: off the
            // async workers.
            let config = t.config.clone();
            let (name, checker, failures) = (
                t.name.clone(),
                self.schema_checker(),
                self.schema_failures.clone(),
            );
            batch = tokio::task::spawn_blocking(move || {
                let checked = crate::validate::produced(&batch, &h, &config, now)?;
                if rules.active() {
                    let mut check = BatchCheck::new(&name, rules, checker.as_deref());
                    if let Some(section) = checked.records(&batch) {
                        check.section(section);
                    }
                    check.finish(&failures, "records")?;
                }
                Ok::<_, crate::error::BrokerError>(batch)
            })
            .await
            .map_err(|e| crate::error::BrokerError::Storage(format!("validation failed: {e}")))??;
        }
        if let Some(shared) = shared {
            // A transactional batch is checked against its transaction in the commit that
            // stores it (`txn/cluster.rs`); control batches never get here (`validate`).
            // The local log's structural checks (length, CRC, record count, size) run here,
            // before the commit: a batch the copies could not take must never be acknowledged.
            crate::shared::check_new(&t, &batch)?;
            return Ok(PendingAppend::Shared(crate::shared::produce(
                shared, t, p, batch,
            )));
        }
        // Check, write and record under the producer state's lock: a retry on another
        // connection cannot pass the check while this write is under way. The write is inline,
        // not on the blocking pool: it goes to the page cache (microseconds), and a hand-off per
        // request cost more than the write (docs/decisions.md, "produce path").
        let a = if h.producer_id >= 0 {
            // A transactional producer's transaction cannot change state between its check and
            // the write (`txn.rs`, Locking); other producers (never transactional: a
            // transactional id gets producer ids of its own) do not hold the lock while they write.
            let txns = self.txns.read();
            crate::txn::Transactions::check_produce(&txns, &h, &t.name, &t.id, p.index)?;
            let held = txns.by_pid.contains_key(&h.producer_id).then_some(txns);
            let a = p
                .producers
                .admit(&h, now, || Ok(p.log.append_start(&mut batch)?))?;
            drop(held);
            a
        } else {
            p.producers
                .admit(&h, now, || Ok(p.log.append_start(&mut batch)?))?
        };
        if a.duplicate {
            self.metrics().producer_duplicates.add(&[&t.name], 1);
        }
        match a.ticket {
            Some(ticket) => {
                crate::sync::kick(&p);
                Ok(PendingAppend::Wait {
                    p,
                    at: a.at,
                    ticket,
                    duplicate: a.duplicate,
                })
            }
            None if a.duplicate => {
                // The original is durable (or its policy does not wait): answer as it was, unless
                // the log went offline since (then the retry learns the log's error).
                // (`wait_durable(0)` never blocks: it only reports a failed log.)
                p.log.wait_durable(0)?;
                Ok(PendingAppend::Duplicate(a.at))
            }
            None => {
                p.appended.notify_waiters();
                Ok(PendingAppend::Ready(Ok(a.at)))
            }
        }
    }

    /// Checks the records of a produced batch against the topic's schema settings.
    fn check_schema(
        &self,
        topic: &str,
        rules: SchemaRules,
        checker: Option<&dyn SchemaChecker>,
        batch: &[u8],
        checked: &crate::validate::Checked,
    ) -> Result<()> {
        let mut check = BatchCheck::new(topic, rules, checker);
        if let Some(section) = checked.records(batch) {
            check.section(section);
        }
        check.finish(&self.schema_failures, "records")
    }

    /// InitProducerId for an idempotent producer: a new id at epoch 0, or the same id with the
    /// next epoch when `current` names it (KIP-360).
    pub fn init_producer_id(&self, current: Option<(i64, i16)>) -> Result<(i64, i16)> {
        self.producer_ids.init(current)
    }
}
