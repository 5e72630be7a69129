//! DeleteRecords on the shared store (`docs/cluster.md`, "DeleteRecords").
//!
//! One transaction raises the partition's start to the offset asked for (`deleted_below`,
//! migration 008), deletes the hot batches and the objects whose records all lie below it (the
//! objects through `doomed_objects`, as retention's), raises `log_start` to the first batch
//! still stored (a batch's base offset: where a copy that lacks everything starts over) and
//! notifies every broker (`busbar_starts`), whose copies drop the records below the new start.
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

/// Raises the start of `partition` of the topic with id `topic_id` to `offset`; answers the
/// partition's start after it (`offset`, or more when it was past it already).
pub async fn delete_records(
    pool: &Pool,
    topic_id: &str,
    partition: u32,
    offset: u64,
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
    let freed: i64 = tx
        .query_one(
            "WITH gone AS (DELETE FROM batches WHERE topic_id = $1 AND partition = $2 \
             AND last_offset < $3 RETURNING size) SELECT coalesce(sum(size), 0)::bigint FROM gone",
            &[&topic_id, &p, &to],
        )
        .await
        .map_err(Error::from)?
        .get(0);
    tx.execute(
        "WITH gone AS (DELETE FROM objects WHERE topic_id = $1 AND partition = $2 \
         AND last_offset < $3 RETURNING key) \
         INSERT INTO doomed_objects (key) SELECT key FROM gone ON CONFLICT DO NOTHING",
        &[&topic_id, &p, &to],
    )
    .await
    .map_err(Error::from)?;
    tx.execute(
        "UPDATE partitions SET deleted_below = $3, log_start = greatest(log_start, $4), \
         hot_bytes = greatest(hot_bytes - $5, 0) WHERE topic_id = $1 AND partition = $2",
        &[&topic_id, &p, &to, &first_kept, &freed],
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
