//! Transactions in cluster mode: each transactional id's coordinator record in `txns`, written
//! only by the holder of the id's lease (kind `txn`), with the producer's epoch in `producers`
//! (so every broker's committer refuses a fenced epoch) and the partitions joining the
//! transaction in `txn_partitions` (what the committer checks transactional batches against,
//! `commit.rs`), all in one database transaction. The markers themselves go through the
//! committer. Schema: `migrations/007_transactions.sql`.

use crate::pool::Pool;
use crate::Error;
use busbar_broker::shared::{
    StagedOffsets, TxnCommitted, TxnPartitionRow, TxnPartitionState, TxnWrite,
};
use busbar_broker::txn::{Aborted, Txn, TxnState};
use busbar_broker::BrokerError;

/// The advisory lock that serializes the creation of transactional ids ("bustxi").
const NEW_IDS_LOCK: i64 = 0x6275_7374_7869;

/// Writes `w` if this broker (`me`: node id and instance) holds the id's lease; answers the
/// first offset registered for each joining partition.
pub async fn write(pool: &Pool, me: (i32, &str), w: &TxnWrite) -> busbar_broker::Result<Vec<u64>> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await.map_err(Error::from)?;
    if let Some(max) = w.ids_max {
        // New ids are counted one at a time across the cluster (held until this commit; the
        // count then sees every new id committed before): `transactions.ids_max` holds exactly.
        // Writes of known ids do not take it.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&NEW_IDS_LOCK])
            .await
            .map_err(Error::from)?;
        let row = tx
            .query_one(
                "SELECT count(*), bool_or(transactional_id = $1) FROM txns",
                &[&w.id],
            )
            .await
            .map_err(Error::from)?;
        let (n, known): (i64, Option<bool>) = (row.get(0), row.get(1));
        if !known.unwrap_or(false) && n as u64 >= max as u64 {
            return Err(BrokerError::TooManyTransactions(format!(
                "{n} transactional ids are in use in the cluster (transactions.ids_max)"
            )));
        }
    }
    match &w.record {
        Some(record) => tx
            .execute(
                "INSERT INTO txns (transactional_id, record, open, producer_id) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (transactional_id) DO UPDATE SET record = excluded.record, \
                 open = excluded.open, producer_id = excluded.producer_id, updated_at = now()",
                &[&w.id, record, &w.open, &w.producer.map(|p| p.0)],
            )
            .await
            .map_err(Error::from)?,
        None => tx
            .execute("DELETE FROM txns WHERE transactional_id = $1", &[&w.id])
            .await
            .map_err(Error::from)?,
    };
    // The producers' rows before `txn_partitions`: the committer's lock order.
    if let Some((pid, epoch)) = w.producer {
        tx.execute(
            "INSERT INTO producers (producer_id, epoch) VALUES ($1, $2) \
             ON CONFLICT (producer_id) DO UPDATE SET epoch = excluded.epoch, used_at = now()",
            &[&pid, &epoch],
        )
        .await
        .map_err(Error::from)?;
    }
    let mut firsts = Vec::with_capacity(w.joined.len());
    if let (Some((pid, epoch)), false) = (w.producer, w.joined.is_empty()) {
        let mut joined: Vec<(usize, &(String, u32))> = w.joined.iter().enumerate().collect();
        joined.sort_by(|a, b| a.1.cmp(b.1));
        let mut found = vec![None; w.joined.len()];
        for (i, (topic_id, partition)) in joined {
            let row = tx
                .query_opt(
                    "INSERT INTO txn_partitions (topic_id, partition, producer_id, epoch, \
                     txn_seq, first) SELECT topic_id, partition, $3, $4, $5, next_offset \
                     FROM partitions WHERE topic_id = $1 AND partition = $2 \
                     ON CONFLICT (topic_id, partition, producer_id) DO UPDATE SET \
                     epoch = excluded.epoch, txn_seq = excluded.txn_seq, \
                     first = least(txn_partitions.first, excluded.first) RETURNING first",
                    &[
                        topic_id,
                        &(*partition as i32),
                        &pid,
                        &epoch,
                        &(w.seq as i64),
                    ],
                )
                .await
                .map_err(Error::from)?;
            let Some(row) = row else {
                return Err(BrokerError::UnknownTopic(format!(
                    "partition {partition} of topic id {topic_id} is not in the cluster"
                )));
            };
            found[i] = Some(row.get::<_, i64>(0) as u64);
        }
        firsts = found.into_iter().map(|f| f.unwrap_or(0)).collect();
    }
    // The lease last, just before COMMIT: its row is share-locked only from here (a commit
    // group holding a producer's row must not keep this broker's lease renewals waiting). A
    // takeover either committed before (the check fails) or waits for this commit.
    let held = tx
        .query_opt(
            "SELECT 1 FROM leases WHERE kind = 'txn' AND name = $1 AND holder = $2 \
             AND holder_instance = $3 AND expires_at > now() FOR SHARE",
            &[&w.id, &me.0, &me.1],
        )
        .await
        .map_err(Error::from)?;
    if held.is_none() {
        return Err(BrokerError::NotCoordinator(
            "this broker's lease on the transactional id ended before the write".into(),
        ));
    }
    tx.commit().await.map_err(Error::from)?;
    Ok(firsts)
}

/// The partitions registered in transaction number `seq` of producer `pid`.
pub async fn partitions_of(pool: &Pool, pid: i64, seq: u64) -> Result<Vec<(String, u32)>, Error> {
    let c = pool.get().await?;
    let rows = c
        .query(
            "SELECT topic_id, partition FROM txn_partitions \
             WHERE producer_id = $1 AND txn_seq = $2 ORDER BY topic_id, partition",
            &[&pid, &(seq as i64)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get::<_, i32>(1) as u32))
        .collect())
}

/// The transactional id producer `pid` belongs to, if any.
pub async fn owner(pool: &Pool, pid: i64) -> Result<Option<String>, Error> {
    let c = pool.get().await?;
    let row = c
        .query_opt(
            "SELECT transactional_id FROM txns WHERE producer_id = $1 LIMIT 1",
            &[&pid],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// The record of transactional id `id`, if any.
pub async fn load(pool: &Pool, id: &str) -> Result<Option<String>, Error> {
    let c = pool.get().await?;
    let row = c
        .query_opt(
            "SELECT record FROM txns WHERE transactional_id = $1",
            &[&id],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Every open transaction's partitions, and the aborted-transaction index of every partition
/// (`None`) or of those listed.
pub async fn partition_state(
    pool: &Pool,
    aborted_of: Option<&[(String, u32)]>,
) -> Result<TxnPartitionState, Error> {
    let c = pool.get().await?;
    let open = c
        .query(
            "SELECT topic_id, partition, producer_id, first FROM txn_partitions",
            &[],
        )
        .await?
        .iter()
        .map(|r| row(r, None))
        .collect();
    const COLUMNS: &str = "SELECT topic_id, partition, producer_id, first, last FROM aborted_txns";
    let rows = match aborted_of {
        None => c.query(COLUMNS, &[]).await?,
        Some([]) => Vec::new(),
        Some(list) => {
            let topics: Vec<&str> = list.iter().map(|(t, _)| t.as_str()).collect();
            let parts: Vec<i32> = list.iter().map(|(_, p)| *p as i32).collect();
            c.query(
                &format!(
                    "{COLUMNS} WHERE (topic_id, partition) IN \
                     (SELECT * FROM unnest($1::text[], $2::int[]))"
                ),
                &[&topics, &parts],
            )
            .await?
        }
    };
    let aborted = rows
        .iter()
        .map(|r| row(r, Some(r.get::<_, i64>(4) as u64)))
        .collect();
    let starts = match aborted_of {
        None => c
            .query(
                "SELECT topic_id, partition, log_start, greatest(log_start, deleted_below) \
                 FROM partitions WHERE log_start > 0 OR deleted_below > 0",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get::<_, i32>(1) as u32,
                    r.get::<_, i64>(2) as u64,
                    r.get::<_, i64>(3) as u64,
                )
            })
            .collect(),
        Some(_) => Vec::new(),
    };
    Ok(TxnPartitionState {
        open,
        aborted,
        starts,
    })
}

fn row(r: &tokio_postgres::Row, last: Option<u64>) -> TxnPartitionRow {
    let first = r.get::<_, i64>(3) as u64;
    TxnPartitionRow {
        topic_id: r.get(0),
        partition: r.get::<_, i32>(1) as u32,
        aborted: Aborted {
            producer_id: r.get(2),
            first,
            last: last.unwrap_or(first),
        },
    }
}

/// Transactional ids with an open transaction whose lease no live broker holds.
pub async fn orphans(pool: &Pool, limit: usize) -> Result<Vec<String>, Error> {
    let c = pool.get().await?;
    let rows = c
        .query(
            "SELECT t.transactional_id FROM txns t WHERE t.open AND NOT EXISTS \
             (SELECT 1 FROM leases l WHERE l.kind = 'txn' AND l.name = t.transactional_id \
              AND l.expires_at > now()) ORDER BY t.transactional_id LIMIT $1",
            &[&(limit as i64)],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// How long a transactional id without an open transaction is kept after its last change
/// (Kafka's `transactional.id.expiration.ms` default, 7 days), unless a broker coordinates it.
const IDLE_ID_MS: f64 = 604_800_000.0;

/// Forgets transactional ids no live process coordinates and no transaction holds open: a
/// client's after [`IDLE_ID_MS`] idle; the bus's (`__busbar.`, its topic targets' exactly-once
/// record, which must outlive any idle time) only once their subscription is gone. Also
/// aborted-index rows below their partition's log start.
pub async fn expire(pool: &Pool) -> Result<(), Error> {
    let c = pool.get().await?;
    c.execute(
        "DELETE FROM txns t WHERE NOT t.open AND NOT EXISTS \
         (SELECT 1 FROM leases l WHERE l.kind = 'txn' AND l.name = t.transactional_id \
          AND l.expires_at > now()) AND CASE \
           WHEN starts_with(t.transactional_id, '__busbar.subscription.') THEN NOT EXISTS \
             (SELECT 1 FROM subscriptions s WHERE s.name = substr(t.transactional_id, 23)) \
           WHEN starts_with(t.transactional_id, '__busbar.') THEN false \
           ELSE t.updated_at < now() - $1 * interval '1 millisecond' END",
        &[&IDLE_ID_MS],
    )
    .await?;
    // Below a partition's log start (retention deleted what they describe; a broker's copy
    // that still starts lower is trimmed to it when the broker starts, before it loads these).
    c.execute(
        "DELETE FROM aborted_txns a USING partitions p \
         WHERE a.topic_id = p.topic_id AND a.partition = p.partition AND a.last < p.log_start",
        &[],
    )
    .await?;
    Ok(())
}

/// TxnOffsetCommit: stages `s.offsets` in the open transaction of `s.id`, after checking its
/// record (share-locked until the commit, so the transaction cannot be prepared meanwhile).
pub async fn stage_offsets(pool: &Pool, s: &StagedOffsets) -> busbar_broker::Result<()> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await.map_err(Error::from)?;
    let row = tx
        .query_opt(
            "SELECT record FROM txns WHERE transactional_id = $1 FOR SHARE",
            &[&s.id],
        )
        .await
        .map_err(Error::from)?;
    let Some(row) = row else {
        return Err(BrokerError::InvalidProducerIdMapping(
            "the transactional id has no producer: call InitProducerId first".into(),
        ));
    };
    let t: Txn = serde_json::from_str(row.get::<_, &str>(0))
        .map_err(|e| BrokerError::Storage(format!("the transactional id's record: {e}")))?;
    if t.producer_id != s.pid {
        return Err(BrokerError::InvalidProducerIdMapping(format!(
            "the transactional id belongs to producer {}, not {}",
            t.producer_id, s.pid
        )));
    }
    if t.epoch != s.epoch {
        return Err(BrokerError::ProducerFenced(format!(
            "epoch {} is not the current epoch {}",
            s.epoch, t.epoch
        )));
    }
    if t.state != TxnState::Ongoing || !t.groups.contains(&s.group) {
        return Err(BrokerError::InvalidTxnState(
            "the group is not in an ongoing transaction (AddOffsetsToTxn first)".into(),
        ));
    }
    for (topic, partition, offset, metadata) in &s.offsets {
        tx.execute(
            "INSERT INTO txn_offsets (transactional_id, txn_seq, group_id, topic, partition, \
             committed_offset, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (transactional_id, txn_seq, group_id, topic, partition) DO UPDATE SET \
             committed_offset = excluded.committed_offset, metadata = excluded.metadata \
             WHERE NOT txn_offsets.committed",
            &[
                &s.id,
                &(t.seq as i64),
                &s.group,
                topic,
                &(*partition as i32),
                offset,
                metadata,
            ],
        )
        .await
        .map_err(Error::from)?;
    }
    // Counted after the upserts (a retry updates its rows): over the limit, nothing commits.
    let staged: i64 = tx
        .query_one(
            "SELECT count(*) FROM txn_offsets WHERE transactional_id = $1 AND txn_seq = $2",
            &[&s.id, &(t.seq as i64)],
        )
        .await
        .map_err(Error::from)?
        .get(0);
    if staged as usize > s.max {
        return Err(BrokerError::InvalidRequest(format!(
            "a transaction holds at most {} offsets (transactions.partitions_max)",
            s.max
        )));
    }
    tx.commit().await.map_err(Error::from)?;
    Ok(())
}

/// Longest group id sent as a `busbar_offsets` payload; a longer one is announced with an empty
/// payload (every broker looks for its groups' committed rows).
const NOTIFY_GROUP_MAX: usize = 1000;

/// Ends the offsets staged in transaction `seq` of `id`: marks them committed (`commit`; the
/// groups' coordinators apply them, told through `busbar_offsets`) or deletes them; staged rows
/// of earlier transactions of the id that were never committed go too.
pub async fn settle_offsets(pool: &Pool, id: &str, seq: u64, commit: bool) -> Result<(), Error> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    let seq = seq as i64;
    let mut groups: Vec<String> = Vec::new();
    if commit {
        let rows = tx
            .query(
                "UPDATE txn_offsets SET committed = true, \
                 commit_order = nextval('txn_offsets_order') \
                 WHERE transactional_id = $1 AND txn_seq = $2 AND NOT committed \
                 RETURNING group_id",
                &[&id, &seq],
            )
            .await?;
        groups = rows.iter().map(|r| r.get(0)).collect();
    }
    tx.execute(
        "DELETE FROM txn_offsets WHERE transactional_id = $1 AND txn_seq <= $2 \
         AND NOT committed",
        &[&id, &seq],
    )
    .await?;
    groups.sort();
    groups.dedup();
    for g in &groups {
        let payload = if g.len() <= NOTIFY_GROUP_MAX {
            g.as_str()
        } else {
            ""
        };
        tx.execute("SELECT pg_notify('busbar_offsets', $1)", &[&payload])
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The committed transactions' offsets of `group` not applied yet, in the order their
/// transactions committed (across transactional ids):
/// (transactional id, transaction number, topic, partition, offset, metadata).
pub async fn committed_offsets(pool: &Pool, group: &str) -> Result<Vec<TxnCommitted>, Error> {
    let c = pool.get().await?;
    let rows = c
        .query(
            "SELECT transactional_id, txn_seq, topic, partition, committed_offset, metadata \
             FROM txn_offsets WHERE group_id = $1 AND committed ORDER BY commit_order",
            &[&group],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| TxnCommitted {
            id: r.get(0),
            seq: r.get::<_, i64>(1) as u64,
            topic: r.get(2),
            partition: r.get::<_, i32>(3) as u32,
            offset: r.get(4),
            metadata: r.get(5),
        })
        .collect())
}

/// Deletes applied rows of `group`.
pub async fn forget_committed(
    pool: &Pool,
    group: &str,
    rows: &[TxnCommitted],
) -> Result<(), Error> {
    let c = pool.get().await?;
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq as i64).collect();
    let topics: Vec<&str> = rows.iter().map(|r| r.topic.as_str()).collect();
    let parts: Vec<i32> = rows.iter().map(|r| r.partition as i32).collect();
    c.execute(
        "DELETE FROM txn_offsets o USING unnest($2::text[], $3::bigint[], $4::text[], $5::int[]) \
         AS d(id, seq, topic, partition) WHERE o.group_id = $1 AND o.committed \
         AND o.transactional_id = d.id AND o.txn_seq = d.seq AND o.topic = d.topic \
         AND o.partition = d.partition",
        &[&group, &ids, &seqs, &topics, &parts],
    )
    .await?;
    Ok(())
}

/// Groups this broker (`me`) coordinates with committed transactions' offsets not applied yet
/// (at most `limit`).
pub async fn groups_with_committed(
    pool: &Pool,
    me: (i32, &str),
    limit: usize,
) -> Result<Vec<String>, Error> {
    let c = pool.get().await?;
    let rows = c
        .query(
            "SELECT DISTINCT o.group_id FROM txn_offsets o JOIN leases l \
             ON l.kind = 'group' AND l.name = o.group_id \
             WHERE o.committed AND l.holder = $1 AND l.holder_instance = $2 \
             AND l.expires_at > now() ORDER BY o.group_id LIMIT $3",
            &[&me.0, &me.1, &(limit as i64)],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The partitions of `group` with offsets staged in a transaction and not yet applied.
pub async fn staged_of(pool: &Pool, group: &str) -> Result<Vec<(String, u32)>, Error> {
    let c = pool.get().await?;
    let rows = c
        .query(
            "SELECT DISTINCT topic, partition FROM txn_offsets WHERE group_id = $1",
            &[&group],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get::<_, i32>(1) as u32))
        .collect())
}
