//! The catalog in PostgreSQL: topics (a row each, with a `partitions` row per partition), reads
//! of the hot tier, and producer ids. Every topic change notifies `busbar_topics`, so the other
//! brokers apply it at once (`watch.rs`).

use crate::cold::Cold;
use crate::pool::Pool;
use crate::Error;
use busbar_broker::metadata::TopicMeta;
use busbar_broker::shared::{OffsetRow, SharedBatch, SharedRead};
use busbar_broker::BrokerError;
use std::collections::BTreeMap;
use tokio_postgres::types::Type;

/// Every topic of the cluster.
pub async fn topics(pool: &Pool) -> Result<Vec<TopicMeta>, Error> {
    let c = pool.get().await?;
    let rows = c
        .query(
            "SELECT name, id, partitions, configs::text, created_ms FROM topics ORDER BY name",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let configs: String = r.get(3);
            let configs: BTreeMap<String, String> =
                serde_json::from_str(&configs).map_err(|e| {
                    Error::Config(format!("topic {}: bad configs: {e}", r.get::<_, String>(0)))
                })?;
            Ok(TopicMeta {
                name: r.get(0),
                id: r.get(1),
                partitions: r.get::<_, i32>(2) as u32,
                configs,
                created_ms: r.get(4),
            })
        })
        .collect()
}

fn configs_json(meta: &TopicMeta) -> String {
    serde_json::to_string(&meta.configs).unwrap_or_else(|_| "{}".into())
}

/// Adds a topic; `TopicExists` when another has the name.
pub async fn create_topic(pool: &Pool, meta: &TopicMeta) -> busbar_broker::Result<()> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await.map_err(Error::from)?;
    let added = tx
        .execute(
            "INSERT INTO topics (name, id, partitions, configs, created_ms) \
             VALUES ($1, $2, $3, $4::text::jsonb, $5) ON CONFLICT (name) DO NOTHING",
            &[
                &meta.name,
                &meta.id,
                &(meta.partitions as i32),
                &configs_json(meta),
                &meta.created_ms,
            ],
        )
        .await
        .map_err(Error::from)?;
    if added == 0 {
        return Err(BrokerError::TopicExists(meta.name.clone()));
    }
    finish_topic_change(tx, meta).await
}

/// Adds the partition rows `meta` has (those missing), notifies the brokers and commits.
async fn finish_topic_change(
    tx: tokio_postgres::Transaction<'_>,
    meta: &TopicMeta,
) -> busbar_broker::Result<()> {
    add_partition_rows(&tx, &meta.id, meta.partitions).await?;
    tx.execute("SELECT pg_notify('busbar_topics', '')", &[])
        .await
        .map_err(Error::from)?;
    tx.commit().await.map_err(Error::from)?;
    Ok(())
}

async fn add_partition_rows(
    tx: &tokio_postgres::Transaction<'_>,
    id: &str,
    partitions: u32,
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO partitions (topic_id, partition) \
         SELECT $1, p FROM generate_series(0, $2 - 1) AS p ON CONFLICT DO NOTHING",
        &[&id, &(partitions as i32)],
    )
    .await?;
    Ok(())
}

/// Replaces a topic's partition count (only grows) and configs.
pub async fn update_topic(pool: &Pool, meta: &TopicMeta) -> busbar_broker::Result<()> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await.map_err(Error::from)?;
    let changed = tx
        .execute(
            "UPDATE topics SET partitions = greatest(partitions, $2), configs = $3::text::jsonb \
             WHERE id = $1",
            &[&meta.id, &(meta.partitions as i32), &configs_json(meta)],
        )
        .await
        .map_err(Error::from)?;
    if changed == 0 {
        return Err(BrokerError::UnknownTopic(meta.name.clone()));
    }
    finish_topic_change(tx, meta).await
}

/// Removes a topic with its data and producer state (rows in the committer's lock order:
/// producer state, then partitions, so the two never deadlock); UnknownTopic when gone already.
pub async fn delete_topic(pool: &Pool, id: &str) -> busbar_broker::Result<()> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await.map_err(Error::from)?;
    let mut gone = 0;
    for sql in [
        "DELETE FROM producer_state WHERE topic_id = $1",
        // Its transactions' rows: a marker for it later finds its transaction ended there.
        "DELETE FROM txn_partitions WHERE topic_id = $1",
        "DELETE FROM aborted_txns WHERE topic_id = $1",
        "DELETE FROM partitions WHERE topic_id = $1",
        "DELETE FROM batches WHERE topic_id = $1",
        // Its objects are deleted from the store by an uploader (`upload::delete_doomed`).
        "INSERT INTO doomed_objects (key) SELECT key FROM objects WHERE topic_id = $1 \
         ON CONFLICT DO NOTHING",
        "DELETE FROM objects WHERE topic_id = $1",
        // Every group's commits of the topic go with it (a topic created again under the name
        // must not find them).
        "DELETE FROM group_offsets WHERE topic = (SELECT name FROM topics WHERE id = $1)",
        "DELETE FROM txn_offsets WHERE topic = (SELECT name FROM topics WHERE id = $1)",
        "DELETE FROM topics WHERE id = $1",
    ] {
        gone = tx.execute(sql, &[&id]).await.map_err(Error::from)?;
    }
    if gone == 0 {
        return Err(BrokerError::UnknownTopic(format!(
            "topic id {id} is not in the cluster"
        )));
    }
    tx.execute("SELECT pg_notify('busbar_topics', '')", &[])
        .await
        .map_err(Error::from)?;
    tx.commit().await.map_err(Error::from)?;
    Ok(())
}

/// How long an idempotent producer's state is kept after its last use (Kafka's
/// `producer.id.expiration.ms` default, one day).
const PRODUCER_EXPIRY_MS: f64 = 86_400_000.0;

/// Forgets producers idle past [`PRODUCER_EXPIRY_MS`] (ids and per-partition state).
pub async fn expire_producers(pool: &Pool) -> Result<(), Error> {
    let c = pool.get().await?;
    for sql in [
        "DELETE FROM producer_state WHERE used_at < now() - $1 * interval '1 millisecond'",
        "DELETE FROM producers WHERE used_at < now() - $1 * interval '1 millisecond'",
    ] {
        c.execute(sql, &[&PRODUCER_EXPIRY_MS]).await?;
    }
    Ok(())
}

/// Writes committed offsets (a `None` value deletes) in one transaction, fenced by the lease:
/// each group's lease must be this process's and unexpired by the database's clock, else
/// nothing is written (NotCoordinator). One statement for the upserts and one for the deletes.
pub async fn write_offsets(
    pool: &Pool,
    me: (i32, &str),
    rows: Vec<OffsetRow>,
) -> busbar_broker::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut c = pool.get().await?;
    let tx = c.transaction().await.map_err(Error::from)?;
    let mut groups: Vec<&str> = rows.iter().map(|r| r.group.as_str()).collect();
    groups.sort_unstable();
    groups.dedup();
    let held = tx
        .query(
            "SELECT name FROM leases WHERE kind = 'group' AND name = ANY($1) AND holder = $2 \
             AND holder_instance = $3 AND expires_at > now() FOR SHARE",
            &[&groups, &me.0, &me.1],
        )
        .await
        .map_err(Error::from)?;
    if held.len() != groups.len() {
        return Err(BrokerError::NotCoordinator(
            "this broker's lease on the group ended before the commit was written".into(),
        ));
    }
    // The last row per key, in key order (one upsert may not touch a row twice; the order is
    // every committer's lock order).
    let mut last: std::collections::BTreeMap<(&str, &str, u32), &OffsetRow> = Default::default();
    for r in &rows {
        last.insert((r.group.as_str(), r.topic.as_str(), r.partition), r);
    }
    let (set, gone): (Vec<&OffsetRow>, Vec<&OffsetRow>) =
        last.into_values().partition(|r| r.value.is_some());
    if !set.is_empty() {
        let g: Vec<&str> = set.iter().map(|r| r.group.as_str()).collect();
        let t: Vec<&str> = set.iter().map(|r| r.topic.as_str()).collect();
        let p: Vec<i32> = set.iter().map(|r| r.partition as i32).collect();
        let values: Vec<&(i64, String, i64)> =
            set.iter().filter_map(|r| r.value.as_ref()).collect();
        let o: Vec<i64> = values.iter().map(|v| v.0).collect();
        let m: Vec<&str> = values.iter().map(|v| v.1.as_str()).collect();
        let ms: Vec<i64> = values.iter().map(|v| v.2).collect();
        tx.execute(
            "INSERT INTO group_offsets (group_id, topic, partition, committed_offset, metadata, \
             commit_ms) SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], \
             $5::text[], $6::bigint[]) \
             ON CONFLICT (group_id, topic, partition) DO UPDATE SET \
             committed_offset = excluded.committed_offset, metadata = excluded.metadata, \
             commit_ms = excluded.commit_ms",
            &[&g, &t, &p, &o, &m, &ms],
        )
        .await
        .map_err(Error::from)?;
    }
    if !gone.is_empty() {
        let g: Vec<&str> = gone.iter().map(|r| r.group.as_str()).collect();
        let t: Vec<&str> = gone.iter().map(|r| r.topic.as_str()).collect();
        let p: Vec<i32> = gone.iter().map(|r| r.partition as i32).collect();
        tx.execute(
            "DELETE FROM group_offsets o USING unnest($1::text[], $2::text[], $3::int[]) \
             AS d(g, t, p) WHERE o.group_id = d.g AND o.topic = d.t AND o.partition = d.p",
            &[&g, &t, &p],
        )
        .await
        .map_err(Error::from)?;
    }
    tx.commit().await.map_err(Error::from)?;
    Ok(())
}

/// The groups with committed offsets, in name order (at most `limit`).
pub async fn group_ids(pool: &Pool, limit: usize) -> Result<Vec<String>, Error> {
    let c = pool.get().await?;
    let rows = c
        .query(
            "SELECT DISTINCT group_id FROM group_offsets ORDER BY 1 LIMIT $1",
            &[&(limit.min(i64::MAX as usize) as i64)],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Every committed offset of `group`.
pub async fn load_offsets(pool: &Pool, group: &str) -> Result<Vec<OffsetRow>, Error> {
    let c = pool.get().await?;
    let rows = c
        .query(
            "SELECT topic, partition, committed_offset, metadata, commit_ms FROM group_offsets \
             WHERE group_id = $1",
            &[&group],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| OffsetRow {
            group: group.to_string(),
            topic: r.get(0),
            partition: r.get::<_, i32>(1) as u32,
            value: Some((r.get(2), r.get(3), r.get(4))),
        })
        .collect())
}

/// Most batches one read answers.
pub(crate) const READ_BATCHES_MAX: i64 = 1000;

/// Batches of a partition from offset `from` on, in order: from the hot tier, or, when `from`
/// has moved to the cold tier, from the object that holds it (all of that object's batches from
/// `from` on, however many bytes: one object is at most `cluster.upload_bytes` plus a batch).
/// An offset is in exactly one of the two tables at any time, and the hot tier is read first, so
/// a batch moved between the two reads is found in the second. When the hot tier does not start
/// at `from`, the partition's log start comes with the answer (read with the object lookup, one
/// statement, so a retention pass is seen whole: below the start no object is looked for).
pub async fn read(
    pool: &Pool,
    cold: Option<&Cold>,
    topic_id: &str,
    partition: u32,
    from: u64,
    max_bytes: usize,
) -> Result<SharedRead, Error> {
    match read_once(pool, cold, topic_id, partition, from, max_bytes).await {
        // An object deleted (retention, a topic's deletion) after its row was looked up: the
        // lookup again finds the next object, or the start past it.
        Err(Error::Store(_)) => read_once(pool, cold, topic_id, partition, from, max_bytes).await,
        r => r,
    }
}

async fn read_once(
    pool: &Pool,
    cold: Option<&Cold>,
    topic_id: &str,
    partition: u32,
    from: u64,
    max_bytes: usize,
) -> Result<SharedRead, Error> {
    let hot = read_hot(pool, topic_id, partition, from, max_bytes).await?;
    if hot.first().is_some_and(|b| b.base_offset <= from) {
        return Ok(SharedRead {
            batches: hot,
            start: None,
            skip_to: None,
            gapped: false,
        });
    }
    let row = {
        let c = pool.get().await?;
        // The object starting at or before `from` (objects follow each other from the log
        // start): one step down the primary key, however many objects the partition has.
        c.query_typed(
            "SELECT p.log_start, o.key, o.base_offset, o.last_offset, o.size \
             FROM partitions p LEFT JOIN LATERAL (SELECT key, base_offset, last_offset, size \
               FROM objects WHERE topic_id = p.topic_id AND partition = p.partition \
               AND base_offset <= $3 ORDER BY base_offset DESC LIMIT 1) o ON true \
             WHERE p.topic_id = $1 AND p.partition = $2",
            &[
                (&topic_id, Type::TEXT),
                (&(partition as i32), Type::INT4),
                (&(from as i64), Type::INT8),
            ],
        )
        .await?
        .pop()
    };
    let Some(row) = row else {
        // The topic is gone: nothing to read.
        return Ok(SharedRead::default());
    };
    let start = row.get::<_, i64>(0) as u64;
    let found = match row.get::<_, Option<String>>(1) {
        Some(key) if start <= from => Some((key, row.get(2), row.get(3), row.get(4))),
        _ => None,
    };
    let (key, base, last, size): (String, i64, i64, i64) = match found {
        Some(f) if f.2 >= from as i64 => f,
        _ => {
            return Ok(SharedRead {
                batches: if start > from { Vec::new() } else { hot },
                start: Some(start),
                skip_to: None,
                gapped: false,
            })
        }
    };
    let Some(cold) = cold else {
        return Err(Error::Config(format!(
            "offset {from} of partition {partition} is in object {key}, but this broker has no \
             object store (cluster.object_store_url)"
        )));
    };
    let bytes = cold.get(&key).await?;
    if bytes.len() as i64 != size {
        return Err(Error::Store(format!(
            "object store: object {key} has {} bytes, its row says {size}",
            bytes.len()
        )));
    }
    let gapped = cold.is_rewritten(&key);
    let batches = crate::cold::decode(&key, &bytes, (base as u64, last as u64), from, gapped)?;
    // A compaction may have removed everything of the object from `from` on.
    let skip_to = batches.is_empty().then_some(last as u64 + 1);
    Ok(SharedRead {
        batches,
        start: None,
        skip_to,
        gapped,
    })
}

/// Batches of a partition in the hot tier from base offset `from` on, in order, about
/// `max_bytes` (at least one).
pub async fn read_hot(
    pool: &Pool,
    topic_id: &str,
    partition: u32,
    from: u64,
    max_bytes: usize,
) -> Result<Vec<SharedBatch>, Error> {
    let c = pool.get().await?;
    // Typed: one round trip (an untyped query is prepared first, a second one).
    let rows = c
        .query_typed(
            "SELECT base_offset, last_offset, bytes FROM ( \
               SELECT base_offset, last_offset, bytes, \
                      sum(size) OVER (ORDER BY base_offset) - size AS before \
               FROM batches WHERE topic_id = $1 AND partition = $2 AND base_offset >= $3 \
               ORDER BY base_offset LIMIT $4) b \
             WHERE before = 0 OR before < $5 ORDER BY base_offset",
            &[
                (&topic_id, Type::TEXT),
                (&(partition as i32), Type::INT4),
                (&(from as i64), Type::INT8),
                (&READ_BATCHES_MAX, Type::INT8),
                (&(max_bytes as i64), Type::INT8),
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| SharedBatch {
            base_offset: r.get::<_, i64>(0) as u64,
            last_offset: r.get::<_, i64>(1) as u64,
            bytes: r.get(2),
        })
        .collect())
}

/// A new producer id at epoch 0, or `current`'s id at the next epoch (KIP-360).
pub async fn init_producer_id(
    pool: &Pool,
    current: Option<(i64, i16)>,
) -> busbar_broker::Result<(i64, i16)> {
    let c = pool.get().await?;
    if let Some((pid, epoch)) = current.filter(|(pid, _)| *pid >= 0) {
        let row = c
            .query_opt(
                "UPDATE producers SET epoch = epoch + 1, used_at = now() \
                 WHERE producer_id = $1 AND epoch = $2 AND epoch < 32766 RETURNING epoch",
                &[&pid, &epoch],
            )
            .await
            .map_err(Error::from)?;
        if let Some(r) = row {
            return Ok((pid, r.get(0)));
        }
        return Err(BrokerError::InvalidProducerEpoch(format!(
            "producer {pid} is not at epoch {epoch}"
        )));
    }
    let row = c
        .query_one(
            "INSERT INTO producers (producer_id, epoch) VALUES (nextval('producer_ids'), 0) \
             RETURNING producer_id",
            &[],
        )
        .await
        .map_err(Error::from)?;
    Ok((row.get(0), 0))
}
