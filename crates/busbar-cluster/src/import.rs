//! `busbar cluster import`: a single node's topics, events and committed offsets into a cluster's
//! database, in **one transaction** (all of it or nothing; run it again after a failure).
//!
//! Each topic keeps its id, partition count and configs; each partition's batches go into the
//! hot tier at their own offsets (the uploader moves them on to objects when the cluster has a
//! cold tier), its `next_offset` set to the log's end; each group's commits of the imported
//! topics go into `group_offsets` as the client sent them. The brokers learn of the topics at
//! the commit (`busbar_topics`) and fill their copies as for any other batches.
//!
//! Refused, with nothing written (`docs/cluster.md` "Import a single node" lists why): a topic
//! name or id the cluster has or had; a partition that does not start at offset 0, has gaps, or
//! holds transactional batches; an import past `hot_bytes_max` without a cold tier; a group
//! whose coordinator is live. Idempotent producers' state is not imported (producers get new
//! ids, above every imported one).

use crate::{migrate, pool, Error};
use busbar_broker::shared::{ExportedCommit, ExportedTopic};
use busbar_log::batch::BatchHeader;

/// What an import wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Imported {
    pub topics: u64,
    pub partitions: u64,
    pub batches: u64,
    /// Offsets (records, as the logs count them).
    pub offsets: u64,
    pub bytes: u64,
    pub commits: u64,
    /// The highest producer id in an imported batch.
    pub producer_id_max: i64,
    /// Rows of the shared tables (users, ACLs, quotas, schemas) copied in.
    pub table_rows: u64,
    /// Rows of the shared tables the cluster had under the same key already (kept).
    pub table_rows_kept: u64,
}

/// A single node's shared tables: (space, its rows).
pub type Tables = [(&'static str, Vec<(Vec<u8>, Vec<u8>)>)];

/// How many bytes of a log one read (and one insert) takes.
const CHUNK_BYTES: usize = 1 << 20;

/// Imports `topics` and `commits` (group, topic, partition, offset, metadata) into the cluster at
/// `url`, in one transaction.
pub async fn import(
    pg: &crate::pg::Pg,
    hot_bytes_max: u64,
    topics: &[ExportedTopic],
    commits: &[ExportedCommit],
    tables: &Tables,
) -> Result<Imported, Error> {
    let mut client = pool::connect(pg).await?;
    migrate::apply(&mut client).await?;
    // Reading a big log between statements may take longer than the pool's idle limit.
    client
        .batch_execute("SET idle_in_transaction_session_timeout = 0")
        .await?;
    let tx = client.transaction().await?;
    let names: Vec<&str> = topics.iter().map(|t| t.0.name.as_str()).collect();
    let ids: Vec<&str> = topics.iter().map(|t| t.0.id.as_str()).collect();
    let taken: Vec<String> = tx
        .query(
            "SELECT name FROM topics WHERE name = ANY($1) OR id = ANY($2) ORDER BY name",
            &[&names, &ids],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !taken.is_empty() {
        return Err(Error::Config(format!(
            "the cluster has topics of these names (or ids) already: {}; nothing was imported",
            taken.join(", ")
        )));
    }
    refuse_reused_ids(&tx, &ids).await?;
    refuse_live_groups(&tx, commits, &names).await?;
    let mut done = Imported::default();
    for (meta, partitions) in topics {
        let configs = serde_json::to_string(&meta.configs).expect("configs encode");
        tx.execute(
            "INSERT INTO topics (name, id, partitions, configs, created_ms) \
             VALUES ($1, $2, $3, $4::text::jsonb, $5)",
            &[
                &meta.name,
                &meta.id,
                &(meta.partitions as i32),
                &configs,
                &meta.created_ms,
            ],
        )
        .await?;
        for (index, log) in partitions.iter().enumerate() {
            copy_partition(&tx, meta, (index as u32, log), &mut done).await?;
        }
        check_hot_tier(&tx, hot_bytes_max, done.bytes).await?;
        done.topics += 1;
    }
    for (group, topic, partition, offset, metadata) in commits {
        if !names.contains(&topic.as_str()) {
            continue;
        }
        tx.execute(
            "INSERT INTO group_offsets (group_id, topic, partition, committed_offset, metadata, \
             commit_ms) VALUES ($1, $2, $3, $4, $5, (extract(epoch FROM now()) * 1000)::bigint)",
            &[group, topic, &(*partition as i32), offset, metadata],
        )
        .await?;
        done.commits += 1;
    }
    // The cluster's next producer ids start above every imported one: an id in an imported
    // batch is never issued to another producer.
    tx.execute(
        "SELECT setval('producer_ids', greatest((SELECT last_value FROM producer_ids), $1))",
        &[&done.producer_id_max.max(1)],
    )
    .await?;
    copy_tables(&tx, tables, &mut done).await?;
    tx.execute("SELECT pg_notify('busbar_topics', '')", &[])
        .await?;
    // The commit waits as long as the database needs (a synchronous standby's confirmation
    // must not be cut short by the statement timeout: the import would stand on one server).
    tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    tx.commit().await?;
    Ok(done)
}

/// Copies the shared tables into their spaces: a row whose key the cluster has already is kept
/// as the cluster has it (its first broker's admin, say). Schemas are refused when the cluster
/// has any (their ids would collide); the registry's rows are copied whole or not at all.
async fn copy_tables(
    tx: &tokio_postgres::Transaction<'_>,
    tables: &Tables,
    done: &mut Imported,
) -> Result<(), Error> {
    for (space, rows) in tables.iter().filter(|(_, rows)| !rows.is_empty()) {
        tx.execute(
            "INSERT INTO kv_spaces (space, version) VALUES ($1, 1) ON CONFLICT (space) \
             DO UPDATE SET version = kv_spaces.version + 1",
            &[space],
        )
        .await?;
        let had: i64 = tx
            .query_one("SELECT count(*) FROM kv_rows WHERE space = $1", &[space])
            .await?
            .get(0);
        if *space == "schemas" && had > 0 {
            return Err(Error::Config(
                "the cluster's schema registry has schemas already: the imported ids would \
                 collide with its ids; nothing was imported"
                    .into(),
            ));
        }
        let keys: Vec<&[u8]> = rows.iter().map(|(k, _)| k.as_slice()).collect();
        let values: Vec<&[u8]> = rows.iter().map(|(_, v)| v.as_slice()).collect();
        let copied = tx
            .execute(
                "INSERT INTO kv_rows (space, key, seq, value) \
                 SELECT $1, k, nextval('kv_seq'), v FROM unnest($2::bytea[], $3::bytea[]) AS r(k, v) \
                 ON CONFLICT (space, key) DO NOTHING",
                &[space, &keys, &values],
            )
            .await?;
        done.table_rows += copied;
        done.table_rows_kept += rows.len() as u64 - copied;
        tx.execute("SELECT pg_notify('busbar_kv', $1)", &[space])
            .await?;
    }
    Ok(())
}

/// Refuses topic ids the cluster used before (a deleted topic's objects may still wait for
/// deletion under keys naming the id: an upload of the imported topic would reuse them).
async fn refuse_reused_ids(
    tx: &tokio_postgres::Transaction<'_>,
    ids: &[&str],
) -> Result<(), Error> {
    let used: Vec<String> = tx
        .query(
            "SELECT id FROM unnest($1::text[]) AS i(id) WHERE \
             EXISTS (SELECT 1 FROM partitions WHERE topic_id = i.id) OR \
             EXISTS (SELECT 1 FROM objects WHERE topic_id = i.id) OR \
             EXISTS (SELECT 1 FROM doomed_objects WHERE key LIKE '%' || i.id || '/%')",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if used.is_empty() {
        return Ok(());
    }
    Err(Error::Config(format!(
        "the cluster used these topic ids before (a deleted topic's data may still be on its \
         way out): {}; nothing was imported (try again in a minute)",
        used.join(", ")
    )))
}

/// Refuses groups whose coordinator is live in the cluster: it answers from what it loaded when
/// it took the group, so it would not see the imported commits (and would overwrite them).
async fn refuse_live_groups(
    tx: &tokio_postgres::Transaction<'_>,
    commits: &[ExportedCommit],
    names: &[&str],
) -> Result<(), Error> {
    let mut groups: Vec<&str> = commits
        .iter()
        .filter(|c| names.contains(&c.1.as_str()))
        .map(|c| c.0.as_str())
        .collect();
    groups.sort_unstable();
    groups.dedup();
    let live: Vec<String> = tx
        .query(
            "SELECT name FROM leases WHERE kind = 'group' AND name = ANY($1) \
             AND expires_at > now() ORDER BY name",
            &[&groups],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if live.is_empty() {
        return Ok(());
    }
    Err(Error::Config(format!(
        "these groups are active in the cluster: {}; stop their consumers and try again \
         (nothing was imported)",
        live.join(", ")
    )))
}

/// Without a cold tier nothing ever drains the hot tier: refuses an import that would take it
/// to `hot_bytes_max` (every produce would be refused from then on).
async fn check_hot_tier(
    tx: &tokio_postgres::Transaction<'_>,
    hot_bytes_max: u64,
    imported: u64,
) -> Result<(), Error> {
    let row = tx
        .query_one(
            "SELECT (SELECT object_store FROM busbar_cluster), \
             (SELECT coalesce(sum(hot_bytes), 0)::bigint FROM partitions)",
            &[],
        )
        .await?;
    let store: Option<String> = row.get(0);
    let total: i64 = row.get(1);
    if store.is_none() && total as u64 >= hot_bytes_max {
        return Err(Error::Config(format!(
            "the import ({imported} bytes so far) takes the hot tier to {total} bytes, past \
             cluster.hot_bytes_max ({hot_bytes_max}), and this cluster has no cold tier to \
             drain it; nothing was imported"
        )));
    }
    Ok(())
}

/// Copies one partition's batches into the hot tier and sets its row.
async fn copy_partition(
    tx: &tokio_postgres::Transaction<'_>,
    meta: &busbar_broker::metadata::TopicMeta,
    (index, log): (u32, &busbar_log::Log),
    done: &mut Imported,
) -> Result<(), Error> {
    let stats = log.stats();
    let what = format!("{}/{index}", meta.name);
    // A partition trimmed (retention, DeleteRecords) starts there in the cluster too. The
    // cluster stores whole batches: a start inside one (DeleteRecords) keeps that batch, and the
    // partition's `deleted_below` hides its records below the start.
    let start = stats.log_start;
    let end = stats.high_watermark;
    let first = first_base(log, start, end, &what)?.unwrap_or(start);
    let (mut next, mut bytes) = (first, 0i64);
    while next < end {
        // The first read asks for the start (the log answers the batch holding it).
        let read = log
            .read(next.max(start), CHUNK_BYTES)
            .map_err(|e| Error::Config(format!("read {what} at offset {next}: {e}")))?;
        let batches = split(&read.data, &mut next, &what, &mut done.producer_id_max)?;
        if batches.is_empty() {
            break;
        }
        let base: Vec<i64> = batches.iter().map(|b| b.0 as i64).collect();
        let last: Vec<i64> = batches.iter().map(|b| b.1 as i64).collect();
        let size: Vec<i32> = batches.iter().map(|b| b.2.len() as i32).collect();
        let data: Vec<&[u8]> = batches.iter().map(|b| b.2).collect();
        tx.execute(
            "INSERT INTO batches (topic_id, partition, base_offset, last_offset, size, bytes) \
             SELECT $1, $2, * FROM unnest($3::bigint[], $4::bigint[], $5::int[], $6::bytea[])",
            &[&meta.id, &(index as i32), &base, &last, &size, &data],
        )
        .await?;
        done.batches += batches.len() as u64;
        bytes += size.iter().map(|s| i64::from(*s)).sum::<i64>();
    }
    if next != end {
        return Err(Error::Config(format!(
            "partition {what}: read up to offset {next}, its end is {end}; nothing was imported"
        )));
    }
    tx.execute(
        "INSERT INTO partitions (topic_id, partition, next_offset, hot_bytes, log_start, \
         deleted_below) VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &meta.id,
            &(index as i32),
            &(end as i64),
            &bytes,
            &(first as i64),
            &(start as i64),
        ],
    )
    .await?;
    done.partitions += 1;
    done.offsets += end - start;
    done.bytes += bytes as u64;
    Ok(())
}

/// The base offset of the batch holding offset `start` (`None`: the partition is empty).
fn first_base(
    log: &busbar_log::Log,
    start: u64,
    end: u64,
    what: &str,
) -> Result<Option<u64>, Error> {
    if start >= end {
        return Ok(None);
    }
    let read = log
        .read(start, 1)
        .map_err(|e| Error::Config(format!("read {what} at offset {start}: {e}")))?;
    let header = BatchHeader::parse(&read.data)
        .map_err(|e| Error::Config(format!("partition {what} at offset {start}: {e}")))?;
    Ok(Some(header.base_offset as u64))
}

/// A stored batch: (base offset, last offset, bytes).
type Stored<'a> = (u64, u64, &'a [u8]);

/// The batches of a read, checked to follow each other from `next` on
/// (which moves past them).
fn split<'a>(
    mut data: &'a [u8],
    next: &mut u64,
    what: &str,
    producer_id_max: &mut i64,
) -> Result<Vec<Stored<'a>>, Error> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let header = BatchHeader::parse(data)
            .map_err(|e| Error::Config(format!("partition {what} at offset {next}: {e}")))?;
        let len = header
            .total_len()
            .filter(|l| *l <= data.len())
            .ok_or_else(|| Error::Config(format!("partition {what}: a batch is cut short")))?;
        let (base, last) = (header.base_offset as u64, header.last_offset() as u64);
        if header.is_transactional() || header.is_control() {
            return Err(Error::Config(format!(
                "partition {what} holds transactional batches (offset {base}); an import does \
                 not carry the aborted-transaction index over, so the cluster could not hide \
                 aborted ones from read_committed readers; nothing was imported"
            )));
        }
        *producer_id_max = (*producer_id_max).max(header.producer_id);
        if base != *next || header.record_count != header.last_offset_delta.wrapping_add(1) {
            return Err(Error::Config(format!(
                "partition {what} has a gap at offset {next} (compaction, or a damaged range); a \
                 cluster copy keeps every offset, so it cannot be imported yet; nothing was \
                 imported"
            )));
        }
        out.push((base, last, &data[..len]));
        *next = last + 1;
        data = &data[len..];
    }
    Ok(out)
}
