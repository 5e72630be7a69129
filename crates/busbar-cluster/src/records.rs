//! DeleteRecords on the shared store (`docs/cluster.md`, "DeleteRecords").
//!
//! A short transaction raises the partition's start to the offset asked for (`deleted_below`,
//! migration 008) and `log_start` to the first batch still stored (a batch's base offset: where
//! a copy that lacks everything starts over), and notifies every broker (`busbar_starts`),
//! whose copies drop the records below the new start. Then the hot batches and the objects whose
//! records all lie below it are deleted (the objects through `doomed_objects`, as retention's)
//! in transactions of a bounded number of rows; what a crash or [`PURGE_INLINE`] leaves is
//! deleted by [`purge_leftovers`] (every broker, every minute).
//! The batch or object that holds the new start itself is kept whole; its records below the
//! start are hidden by each copy's log start, as the single node hides them in its segment.
//!
//! Locks: the partition row first (`FOR UPDATE`, as the committer and the uploader take it), so
//! commits, uploads and retention passes of the partition wait for it, and it for them. An
//! upload in flight whose batches this deleted fails its count check and is not recorded (its
//! object is a leftover the sweep removes: its offsets are below the log start).

use crate::pool::Pool;
use crate::Error;
use busbar_broker::BrokerError;

/// The notification channel of a partition's new start (payload `<topic id> <partition>
/// <start>`).
pub const CHANNEL: &str = "busbar_starts";

/// Most rows (hot batches, and objects) one purge transaction deletes: a partition with more
/// below its new start is purged in several short transactions, each holding the partition row
/// (which the committer waits for) only for its own chunk.
const PURGE_ROWS_MAX: i64 = 2000;

/// Most partitions one leftover pass purges ([`purge_leftovers`]).
const LEFTOVER_PARTITIONS_MAX: i64 = 100;

/// Raises the start of `partition` of the topic with id `topic_id` to `offset` (`None`: the
/// partition's end as the database has it); answers the partition's start after it (`offset`,
/// or more when it was past it already). The rows wholly below the start are then purged.
pub async fn delete_records(
    pool: &Pool,
    topic_id: &str,
    partition: u32,
    offset: Option<u64>,
) -> busbar_broker::Result<u64> {
    let start = raise_start(pool, topic_id, partition, offset).await?;
    // The start has moved: the answer is success whatever the purge does. What it leaves
    // (cut short by its time or an error) the next pass of [`purge_leftovers`] deletes.
    let purge = purge_below_start(pool, topic_id, partition);
    if !matches!(tokio::time::timeout(PURGE_INLINE, purge).await, Ok(Ok(()))) {
        let msg = format!(
            "cluster: DeleteRecords of {topic_id}/{partition} moved its start to {start}; \
             the rows below it are deleted in the background"
        );
        busbar_broker::log::info("busbar", "cluster_purge_later", &msg, &[]);
    }
    Ok(start)
}

/// How long DeleteRecords purges before it answers (the rest is left to the background).
const PURGE_INLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// The short transaction that moves the start (and notifies); deletes nothing.
async fn raise_start(
    pool: &Pool,
    topic_id: &str,
    partition: u32,
    offset: Option<u64>,
) -> busbar_broker::Result<u64> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await.map_err(Error::from)?;
    let p = partition as i32;
    let row = tx
        .query_opt(
            "SELECT next_offset, greatest(log_start, deleted_below) FROM partitions \
             WHERE topic_id = $1 AND partition = $2 FOR UPDATE",
            &[&topic_id, &p],
        )
        .await
        .map_err(Error::from)?
        .ok_or_else(|| BrokerError::UnknownPartition {
            topic: topic_id.to_string(),
            partition: i64::from(partition),
        })?;
    let (end, start): (i64, i64) = (row.get(0), row.get(1));
    let offset = offset.unwrap_or(end as u64);
    if offset > end as u64 {
        return Err(BrokerError::OffsetOutOfRange {
            offset,
            start: start as u64,
            end: end as u64,
        });
    }
    let to = offset as i64;
    if to <= start {
        return Ok(start as u64);
    }
    let first_kept = first_stored_from(&tx, (topic_id, p), to, end).await?;
    tx.execute(
        "UPDATE partitions SET deleted_below = $3, log_start = greatest(log_start, $4) \
         WHERE topic_id = $1 AND partition = $2",
        &[&topic_id, &p, &to, &first_kept],
    )
    .await
    .map_err(Error::from)?;
    let payload = format!("{topic_id} {partition} {to}");
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
        .await
        .map_err(Error::from)?;
    tx.commit().await.map_err(Error::from)?;
    Ok(to as u64)
}

/// Deletes the hot batches (lowering the partition's hot bytes by theirs) and the objects
/// (through `doomed_objects`) of a partition whose records all lie below its start, in
/// transactions of at most [`PURGE_ROWS_MAX`] rows of each.
pub async fn purge_below_start(pool: &Pool, topic_id: &str, partition: u32) -> Result<(), Error> {
    while purge_chunk(pool, topic_id, partition).await? {}
    Ok(())
}

/// One purge transaction; answers whether rows may be left.
async fn purge_chunk(pool: &Pool, topic_id: &str, partition: u32) -> Result<bool, Error> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    let p = partition as i32;
    // The partition row first, as the committer and the uploader lock it.
    let Some(row) = tx
        .query_opt(
            "SELECT greatest(log_start, deleted_below) FROM partitions \
             WHERE topic_id = $1 AND partition = $2 FOR UPDATE",
            &[&topic_id, &p],
        )
        .await?
    else {
        return Ok(false);
    };
    let start: i64 = row.get(0);
    let below = "topic_id = $1 AND partition = $2 AND base_offset IN (SELECT base_offset FROM";
    let chosen = "WHERE topic_id = $1 AND partition = $2 AND last_offset < $3 \
                  ORDER BY base_offset LIMIT $4)";
    let hot = tx
        .query_one(
            &format!(
                "WITH gone AS (DELETE FROM batches WHERE {below} batches {chosen} \
                 RETURNING size) SELECT count(*), coalesce(sum(size), 0)::bigint FROM gone"
            ),
            &[&topic_id, &p, &start, &PURGE_ROWS_MAX],
        )
        .await?;
    let (batches, freed): (i64, i64) = (hot.get(0), hot.get(1));
    let objects = tx
        .execute(
            &format!(
                "WITH gone AS (DELETE FROM objects WHERE {below} objects {chosen} \
                 RETURNING key) \
                 INSERT INTO doomed_objects (key) SELECT key FROM gone ON CONFLICT DO NOTHING"
            ),
            &[&topic_id, &p, &start, &PURGE_ROWS_MAX],
        )
        .await? as i64;
    if batches > 0 {
        tx.execute(
            "UPDATE partitions SET hot_bytes = greatest(hot_bytes - $3, 0) \
             WHERE topic_id = $1 AND partition = $2",
            &[&topic_id, &p, &freed],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(batches == PURGE_ROWS_MAX || objects == PURGE_ROWS_MAX)
}

/// Purges the partitions that still have rows below their start (a DeleteRecords cut short
/// between its start's commit and the end of its purge), at most
/// [`LEFTOVER_PARTITIONS_MAX`] per pass: one probe of each table's primary key per partition.
pub async fn purge_leftovers(pool: &Pool) -> Result<(), Error> {
    let rows = {
        let c = pool.get().await?;
        c.query(
            "SELECT p.topic_id, p.partition FROM partitions p WHERE p.deleted_below > 0 AND ( \
               EXISTS (SELECT 1 FROM batches b WHERE b.topic_id = p.topic_id \
                 AND b.partition = p.partition AND b.base_offset < p.deleted_below \
                 AND b.last_offset < greatest(p.log_start, p.deleted_below)) \
               OR EXISTS (SELECT 1 FROM objects o WHERE o.topic_id = p.topic_id \
                 AND o.partition = p.partition AND o.base_offset < p.deleted_below \
                 AND o.last_offset < greatest(p.log_start, p.deleted_below))) LIMIT $1",
            &[&LEFTOVER_PARTITIONS_MAX],
        )
        .await?
    };
    for r in rows {
        purge_below_start(pool, r.get(0), r.get::<_, i32>(1) as u32).await?;
    }
    Ok(())
}

/// The base offset of the object or hot batch that holds offset `to` (the partition's end when
/// `to` is it): the first stored offset once everything below `to` is deleted.
async fn first_stored_from(
    tx: &tokio_postgres::Transaction<'_>,
    (topic_id, p): (&str, i32),
    to: i64,
    end: i64,
) -> Result<i64, Error> {
    if to >= end {
        return Ok(end);
    }
    for table in ["objects", "batches"] {
        let row = tx
            .query_opt(
                &format!(
                    "SELECT base_offset FROM {table} WHERE topic_id = $1 AND partition = $2 \
                     AND last_offset >= $3 ORDER BY base_offset LIMIT 1"
                ),
                &[&topic_id, &p, &to],
            )
            .await?;
        if let Some(r) = row {
            return Ok(r.get::<_, i64>(0).min(to));
        }
    }
    // Nothing stored holds it (cannot happen below the end): the offset itself.
    Ok(to)
}
