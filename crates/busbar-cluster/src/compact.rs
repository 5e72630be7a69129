//! Key compaction of the cold tier's objects: the objects of a compacted topic's partition
//! (`cleanup.policy` with `compact`) are rewritten without the records a later record of the
//! same key supersedes, without expired tombstones, and without records below the log start, as
//! busbar-log compacts a local log's segments (its batch filter and key map do the work here
//! too). The hot tier is the partition's active segment: it is never compacted.
//!
//! The holder of a partition's upload range compacts it, in the uploader's rounds (`upload.rs`),
//! one partition at a time per broker. A partition is due when the objects not yet mapped (from
//! `partitions.compacted_to` on) hold at least the topic's `min.cleanable.dirty.ratio` of its
//! object bytes (Kafka's 0.5 by default), or when the earliest delete horizon of the tombstones
//! the last compaction kept has passed. A compaction:
//!
//! 1. maps key → latest offset over the unmapped objects, into a map of at most
//!    `cluster.compaction_map_bytes`; where the map is full, mapping stops (`upto`) and the rest
//!    waits for the next compaction; when every object is mapped, `upto` is the base of the
//!    partition's last batch, which is kept whole (the hot tier may be empty, and a partition
//!    must still end with a batch: a reader at the end would otherwise wait below an end it can
//!    never read);
//! 2. rewrites the objects below `upto` from the log start on: consecutive objects are packed into
//!    new objects of about `cluster.upload_bytes` (an object of that size that lost nothing is
//!    left as it is). Each new object is one transaction, fenced by the range's lease, that
//!    deletes the rows of the objects it replaces (rolled back unless every one is still there),
//!    records it over their whole offset range and queues the old keys for deletion a minute
//!    later (a read that looked up an old row just before still finds its object);
//! 3. records `compacted_to`, where mapping ended (`upto`, or the end of the objects when all
//!    were mapped: the last batch, kept whole, was mapped too), and the oldest tombstone kept.
//!
//! Each uploader round reads at most [`OBJECTS_PER_ROUND`] objects (fewer when they are big:
//! about [`ROUND_BYTES`]); the compaction goes on in the
//! next round. A new object's key carries a tag of its own (`Cold::rewritten_key`), so a rewrite
//! never overwrites the object it replaces, and it is queued for deletion an hour later *before*
//! it is written; the commit that records it takes it off the queue. A compaction cut short (the
//! lease lost, the broker killed) leaves only objects no row names, deleted by that queue.
//!
//! Rewritten objects have offset gaps (`cold::decode` accepts them for tagged keys); readers skip
//! them (`SharedRead::skip_to`), and the brokers' copies take the batches at their offsets
//! (`busbar_log::Log::append_copied`).

use crate::cold::{self, Cold};
use crate::members::Kind;
use crate::pool::Pool;
use crate::upload::{holds_range, range_of};
use crate::{bounded, Cluster, Error};
use busbar_broker::codec::KafkaCodecs;
use busbar_broker::shared::{Compaction, SharedBatch};
use busbar_log::{for_each_keyed, CompactionFilter, HeldKeys, Kept, KeyMap};
use std::time::Instant;

/// Most objects one round reads, mapping or rewriting (the compaction goes on next round).
pub const OBJECTS_PER_ROUND: usize = 16;
/// About the most object bytes one round reads: with big objects, fewer than
/// [`OBJECTS_PER_ROUND`] (at least one), so a round never holds the uploads up for long.
pub const ROUND_BYTES: usize = 32 << 20;
/// How long a partition is passed over after a compaction that failed (a damaged or missing
/// object must not keep every other partition from being compacted) or that wrote nothing.
pub const FAILED_BACKOFF: std::time::Duration = std::time::Duration::from_secs(600);
/// The schema version from which brokers read compacted objects: their gaps (11) and their
/// batches' delete horizons (12). A live broker below it holds compaction off.
pub const COMPACTED_READERS_SINCE: i32 = 12;
/// How long an object replaced by a rewrite stays in the store after the commit.
const REPLACED_KEPT: &str = "1 minute";
/// How long a rewrite's object that no commit recorded stays in the store.
const UNRECORDED_KEPT: &str = "1 hour";
/// The age (by the store's clock) past which the sweep deletes a rewrite's object no row names
/// (should its queued row have been lost; past [`UNRECORDED_KEPT`], with room for clock skew).
pub const TAGGED_SWEEP_AFTER: std::time::Duration = std::time::Duration::from_secs(2 * 3600);

/// What compaction remembers between uploader rounds (one compaction at a time).
#[derive(Default)]
pub struct State {
    job: Option<Job>,
    /// When partitions were last looked at for a compaction.
    looked: Option<Instant>,
    /// Rewrites made by this process (part of each new object's tag).
    rewrites: u64,
    /// Partitions whose compaction failed, and when (bounded by the partitions of the held
    /// ranges: entries older than [`FAILED_BACKOFF`] are dropped).
    failed: std::collections::HashMap<(String, u32), Instant>,
}

/// One partition's compaction in progress.
struct Job {
    topic_id: String,
    partition: u32,
    lease: String,
    log_start: u64,
    /// The database's time at the start (ms): tombstones whose delete horizon is past go.
    now: i64,
    /// The topic's `delete.retention.ms`: the delete horizon a compaction sets.
    delete_retention_ms: i64,
    map: KeyMap,
    /// Keys of the transactional batches met so far (their tombstones are held).
    held: HeldKeys,
    phase: Phase,
    /// The oldest tombstone kept so far.
    tomb: Option<i64>,
    /// Whether it replaced any object.
    wrote: bool,
    /// Where mapping ended (the next compaction maps from there; objects ending there or
    /// after are dirty).
    mapped: u64,
    group: Group,
}

enum Phase {
    /// Mapping keys from offset `from` on; the next object to map starts at or after `next`;
    /// the base offset of the last batch mapped.
    Mapping {
        from: u64,
        next: u64,
        last_batch: Option<u64>,
    },
    /// Rewriting the objects below `upto`; the next starts at or after `cursor`.
    Rewriting { upto: u64, cursor: u64 },
}

/// An object as compaction sees it.
#[derive(Clone)]
struct Old {
    key: String,
    base: u64,
    last: u64,
    max_timestamp: Option<i64>,
}

/// Consecutive objects being packed into one new object.
#[derive(Default)]
struct Group {
    olds: Vec<Old>,
    batches: Vec<Vec<u8>>,
    bytes: usize,
    /// Whether any batch was rebuilt or dropped (records removed, or tombstones' delete
    /// horizon set).
    changed: bool,
}

/// One round of compaction for the `held` ranges: goes on with the compaction in progress, or,
/// every `cluster.compaction_interval`, starts one on a due partition.
pub async fn step(
    cluster: &Cluster,
    cold: &Cold,
    topics: &[Compaction],
    held: &[u32],
    state: &mut State,
) -> Result<(), Error> {
    if let Some(job) = &state.job {
        let gone = !topics.iter().any(|t| t.topic_id == job.topic_id);
        if gone || !cluster.members.holds(Kind::Upload, &job.lease) {
            state.job = None;
        }
    }
    if state.job.is_none() {
        if state
            .looked
            .is_some_and(|t| t.elapsed() < cluster.config.compaction_interval)
        {
            return Ok(());
        }
        state.looked = Some(Instant::now());
        state.failed.retain(|_, at| at.elapsed() < FAILED_BACKOFF);
        state.job = bounded(due(cluster, topics, held, &state.failed)).await?;
    }
    let Some(mut job) = state.job.take() else {
        return Ok(());
    };
    let result = run_round(cluster, cold, &mut job, &mut state.rewrites).await;
    match result {
        Ok(true) => state.job = Some(job),
        Ok(false) if job.wrote => {}
        // Failed, or nothing to gain there now: the others go first.
        Ok(false) | Err(_) => {
            state
                .failed
                .insert((job.topic_id.clone(), job.partition), Instant::now());
        }
    }
    result.map(|_| ())
}

/// One round of `job`; answers whether it goes on.
async fn run_round(
    cluster: &Cluster,
    cold: &Cold,
    job: &mut Job,
    rewrites: &mut u64,
) -> Result<bool, Error> {
    Ok(match job.phase {
        Phase::Mapping {
            from,
            next,
            last_batch,
        } => map_round(cluster, cold, job, (from, next), last_batch).await?,
        Phase::Rewriting { upto, cursor } => {
            rewrite_round(cluster, cold, job, (upto, cursor), rewrites).await?
        }
    })
}

/// The first due partition of the held ranges, as a new compaction.
async fn due(
    cluster: &Cluster,
    topics: &[Compaction],
    held: &[u32],
    failed: &std::collections::HashMap<(String, u32), Instant>,
) -> Result<Option<Job>, Error> {
    if topics.is_empty() || held.is_empty() {
        return Ok(None);
    }
    let ids: Vec<&str> = topics.iter().map(|t| t.topic_id.as_str()).collect();
    let c = cluster.pool.get().await?;
    let older: i64 = c
        .query_one(
            "SELECT count(*) FROM brokers WHERE schema_version < $1 \
             AND heartbeat_at > now() - $2 * interval '1 millisecond'",
            &[
                &COMPACTED_READERS_SINCE,
                &(crate::members::BROKER_SESSION_MS as f64),
            ],
        )
        .await?
        .get(0);
    if older > 0 {
        // A live broker older than this version would refuse compacted objects' gaps.
        return Ok(None);
    }
    let rows = c
        .query(
            "SELECT o.topic_id, o.partition, p.log_start, p.compacted_to, \
             p.compaction_tombstone_ms, \
             coalesce(sum(o.size) FILTER (WHERE o.last_offset >= p.compacted_to), 0)::bigint, \
             sum(o.size)::bigint, (extract(epoch FROM now()) * 1000)::bigint \
             FROM objects o JOIN partitions p USING (topic_id, partition) \
             WHERE o.topic_id = ANY($1) \
             GROUP BY o.topic_id, o.partition, p.log_start, p.compacted_to, \
             p.compaction_tombstone_ms \
             ORDER BY coalesce(sum(o.size) FILTER (WHERE o.last_offset >= p.compacted_to), 0) \
             ::float8 / greatest(sum(o.size), 1) DESC",
            &[&ids],
        )
        .await?;
    for r in rows {
        let (topic_id, partition): (String, u32) = (r.get(0), r.get::<_, i32>(1) as u32);
        let lease = range_of(&topic_id, partition);
        let Some(t) = topics.iter().find(|t| t.topic_id == topic_id) else {
            continue;
        };
        let (log_start, compacted_to): (i64, i64) = (r.get(2), r.get(3));
        let tomb: Option<i64> = r.get(4);
        let (dirty, total, now): (i64, i64, i64) = (r.get(5), r.get(6), r.get(7));
        let by_dirt = dirty > 0 && dirty as f64 >= t.min_cleanable_dirty_ratio.0 * total as f64;
        let backing_off = failed.contains_key(&(topic_id.clone(), partition));
        if backing_off || !held.contains(&lease) || !(by_dirt || tomb.is_some_and(|due| due <= now))
        {
            continue;
        }
        let log_start = log_start as u64;
        let from = (compacted_to as u64).max(log_start);
        return Ok(Some(Job {
            topic_id,
            partition,
            lease: lease.to_string(),
            log_start,
            now,
            delete_retention_ms: t.delete_retention_ms,
            map: KeyMap::new(cluster.config.compaction_map_bytes),
            held: HeldKeys::new(cluster.config.compaction_map_bytes),
            phase: Phase::Mapping {
                from,
                next: from,
                last_batch: None,
            },
            tomb: None,
            wrote: false,
            mapped: from,
            group: Group::default(),
        }));
    }
    Ok(None)
}

/// How many objects one round reads: [`OBJECTS_PER_ROUND`], fewer for big objects.
fn per_round(cluster: &Cluster) -> usize {
    (ROUND_BYTES / cluster.config.upload_bytes.max(1)).clamp(1, OBJECTS_PER_ROUND)
}

/// Up to `n` objects of the job's partition whose ranges end at or after `from`, below
/// `below`, in offset order.
async fn objects(
    pool: &Pool,
    job: &Job,
    (from, below): (u64, u64),
    n: usize,
) -> Result<Vec<Old>, Error> {
    let c = pool.get().await?;
    let rows = c
        .query(
            "SELECT key, base_offset, last_offset, max_timestamp FROM objects \
             WHERE topic_id = $1 AND partition = $2 AND last_offset >= $3 AND base_offset < $4 \
             ORDER BY base_offset LIMIT $5",
            &[
                &job.topic_id,
                &(job.partition as i32),
                &(from as i64),
                &(below.min(i64::MAX as u64) as i64),
                &(n as i64),
            ],
        )
        .await?;
    Ok(rows.iter().map(old_of).collect())
}

/// An object of a row of (key, base_offset, last_offset, max_timestamp).
fn old_of(r: &tokio_postgres::Row) -> Old {
    Old {
        key: r.get(0),
        base: r.get::<_, i64>(1) as u64,
        last: r.get::<_, i64>(2) as u64,
        max_timestamp: r.get(3),
    }
}

/// The batches of object `o`, read and checked.
async fn batches_of(cold: &Cold, o: &Old) -> Result<Vec<SharedBatch>, Error> {
    let bytes = cold.get(&o.key).await?;
    cold::decode(
        &o.key,
        &bytes,
        (o.base, o.last),
        0,
        cold.is_rewritten(&o.key),
    )
}

/// Maps the keys of the next objects; answers whether the compaction goes on.
async fn map_round(
    cluster: &Cluster,
    cold: &Cold,
    job: &mut Job,
    (from, next): (u64, u64),
    mut last_batch: Option<u64>,
) -> Result<bool, Error> {
    let n = per_round(cluster);
    let found = bounded(objects(&cluster.pool, job, (next, u64::MAX), n)).await?;
    let mut next = next;
    for o in &found {
        let mut full_at = None;
        let batches = batches_of(cold, o).await?;
        cpu(|| {
            for b in &batches {
                last_batch = Some(b.base_offset);
                for_each_keyed(&b.bytes, Some(&KafkaCodecs), |key, offset| {
                    if full_at.is_none() && offset >= from && !job.map.put(key, offset) {
                        full_at = Some(offset);
                    }
                });
            }
        });
        if let Some(upto) = full_at {
            job.mapped = upto;
            job.phase = Phase::Rewriting {
                upto,
                cursor: job.log_start,
            };
            return Ok(true);
        }
        next = o.last + 1;
    }
    if found.len() < n {
        job.mapped = next;
        if last_batch.is_none() {
            // Nothing new to map (a compaction a tombstone's horizon started): the partition's
            // last batch is still the one to keep whole.
            last_batch = last_batch_base(cluster, cold, job).await?;
        }
    }
    job.phase = if found.len() < n {
        // Every object is mapped: the rewrite covers them all but the partition's last batch,
        // kept whole as the local log keeps its active segment (so the partition still ends
        // with a batch, and a reader at its end is not left below an end it can never read).
        Phase::Rewriting {
            upto: last_batch.map_or(next, |b| b.min(next)),
            cursor: job.log_start,
        }
    } else {
        Phase::Mapping {
            from,
            next,
            last_batch,
        }
    };
    Ok(true)
}

/// The base offset of the partition's last batch in the objects (`None`: no object).
async fn last_batch_base(cluster: &Cluster, cold: &Cold, job: &Job) -> Result<Option<u64>, Error> {
    let Some(last) = bounded(last_object(&cluster.pool, job)).await? else {
        return Ok(None);
    };
    Ok(batches_of(cold, &last).await?.last().map(|b| b.base_offset))
}

/// The partition's last object.
async fn last_object(pool: &Pool, job: &Job) -> Result<Option<Old>, Error> {
    let c = pool.get().await?;
    let row = c
        .query_opt(
            "SELECT key, base_offset, last_offset, max_timestamp FROM objects \
             WHERE topic_id = $1 AND partition = $2 ORDER BY base_offset DESC LIMIT 1",
            &[&job.topic_id, &(job.partition as i32)],
        )
        .await?;
    Ok(row.as_ref().map(old_of))
}

/// Rewrites the next objects below `upto`; answers whether the compaction goes on.
async fn rewrite_round(
    cluster: &Cluster,
    cold: &Cold,
    job: &mut Job,
    (upto, cursor): (u64, u64),
    rewrites: &mut u64,
) -> Result<bool, Error> {
    let n = per_round(cluster);
    let found = bounded(objects(&cluster.pool, job, (cursor, upto), n)).await?;
    let target = cluster.config.upload_bytes;
    let mut cursor = cursor;
    for o in &found {
        let (kept, changed) = filter_object(cold, job, o, upto).await?;
        let bytes: usize = kept.iter().map(Vec::len).sum();
        let unchanged = !changed;
        let left_alone = unchanged && bytes >= target / 2;
        if (!job.group.olds.is_empty() && job.group.bytes + bytes > target) || left_alone {
            // Full, or an object worth leaving as it is comes next: the group is written.
            let group = std::mem::take(&mut job.group);
            if !write_group(cluster, cold, job, group, rewrites).await? {
                return Ok(false);
            }
        }
        cursor = o.last + 1;
        if left_alone {
            continue;
        }
        job.group.olds.push(o.clone());
        job.group.bytes += bytes;
        job.group.changed |= changed;
        job.group.batches.extend(kept);
    }
    if found.len() == n {
        job.phase = Phase::Rewriting { upto, cursor };
        return Ok(true);
    }
    let group = std::mem::take(&mut job.group);
    if !write_group(cluster, cold, job, group, rewrites).await? {
        return Ok(false);
    }
    bounded(finish(cluster, job, job.mapped)).await?;
    Ok(false)
}

/// The batches of object `o` that the job keeps, and whether it changed any batch.
async fn filter_object(
    cold: &Cold,
    job: &mut Job,
    o: &Old,
    upto: u64,
) -> Result<(Vec<Vec<u8>>, bool), Error> {
    let filter = CompactionFilter {
        map: &job.map,
        now: job.now,
        delete_retention_ms: job.delete_retention_ms,
        log_start: job.log_start,
        upto,
        codec: Some(&KafkaCodecs),
    };
    let (mut kept, mut changed) = (Vec::new(), false);
    let batches = batches_of(cold, o).await?;
    let held = &mut job.held;
    // Inflating, filtering and compressing again is CPU work: off the async workers.
    let filtered: Vec<_> = cpu(|| {
        batches
            .into_iter()
            .map(|b| (filter.batch(&b.bytes, held), b))
            .collect()
    });
    for ((k, _, tomb), b) in filtered {
        // A tombstone at or past `upto` is not this compaction's to expire: it is due when the
        // next compaction (which maps past it) finds it old.
        if let Some(t) = tomb.filter(|_| b.base_offset < upto) {
            job.tomb = Some(job.tomb.map_or(t, |x| x.min(t)));
        }
        match k {
            Kept::Whole => kept.push(b.bytes),
            Kept::Rebuilt(r) => {
                changed = true;
                kept.push(r);
            }
            Kept::Nothing => changed = true,
        }
    }
    Ok((kept, changed))
}

/// Runs `f`, CPU-bound work, where it does not hold up the runtime's other tasks (in place of
/// this worker on a multi-threaded runtime, which hands its other tasks to another).
fn cpu<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Writes `group` as one object and records it in place of the objects it packs; answers
/// false when the compaction must stop (the lease lost, or the objects changed meanwhile).
async fn write_group(
    cluster: &Cluster,
    cold: &Cold,
    job: &mut Job,
    group: Group,
    rewrites: &mut u64,
) -> Result<bool, Error> {
    let (Some(first), Some(last)) = (group.olds.first(), group.olds.last()) else {
        return Ok(true);
    };
    if group.olds.len() == 1 && !group.changed {
        return Ok(true); // nothing to gain
    }
    *rewrites += 1;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let tag = format!("{}x{nanos:x}x{}", cluster.members.node_id, *rewrites);
    let range = (first.base, last.last);
    let key = cold.rewritten_key(&job.topic_id, job.partition, range, &tag);
    let object = cold::encode_raw(&group.batches);
    // Read back as a reader will, before anything refers to it.
    cold::decode(&key, &object, range, 0, true)?;
    let size = object.len() as i64;
    let newest = group.olds.iter().filter_map(|o| o.max_timestamp).max();
    bounded(doom_later(&cluster.pool, &key, UNRECORDED_KEPT)).await?;
    cold.put(&key, object).await?;
    let me = (cluster.members.node_id, cluster.members.instance());
    let new = NewObject {
        key: &key,
        range,
        size,
        max_timestamp: newest,
    };
    let replaced = bounded(replace(&cluster.pool, me, job, &group.olds, &new)).await?;
    job.wrote |= replaced;
    if !replaced {
        // The queue deletes the new object in an hour; the next compaction starts over.
        busbar_broker::log::info(
            "busbar",
            "cluster_compaction_stopped",
            &format!(
                "cluster: compaction of {}/{} stopped: the range's lease ended or its objects \
                 changed meanwhile; the next compaction starts over",
                job.topic_id, job.partition
            ),
            &[],
        );
    }
    Ok(replaced)
}

/// Queues `key` for deletion from the store after `after` (an SQL interval).
async fn doom_later(pool: &Pool, key: &str, after: &str) -> Result<(), Error> {
    let c = pool.get().await?;
    c.execute(
        "INSERT INTO doomed_objects (key, since) VALUES ($1, now() + $2::text::interval) \
         ON CONFLICT (key) DO UPDATE SET since = excluded.since",
        &[&key, &after],
    )
    .await?;
    Ok(())
}

/// A rewrite's object to record.
struct NewObject<'a> {
    key: &'a str,
    range: (u64, u64),
    size: i64,
    max_timestamp: Option<i64>,
}

/// The transaction that records `new` in place of `olds`, fenced by the range lease; false when
/// it changed nothing (the partition or one of `olds` is gone, or the lease ended).
async fn replace(
    pool: &Pool,
    me: (i32, &str),
    job: &Job,
    olds: &[Old],
    new: &NewObject<'_>,
) -> Result<bool, Error> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    let p = job.partition as i32;
    // The partition row first, as the committer, the uploader and retention lock it.
    let row = tx
        .query_opt(
            "SELECT log_start FROM partitions WHERE topic_id = $1 AND partition = $2 \
             FOR NO KEY UPDATE",
            &[&job.topic_id, &p],
        )
        .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    // An object wholly below the start now (a DeleteRecords whose purge has not run yet) is
    // not merged into one that outlives the purge.
    let start = row.get::<_, i64>(0) as u64;
    if olds.iter().any(|o| o.last < start) {
        return Ok(false);
    }
    let keys: Vec<&str> = olds.iter().map(|o| o.key.as_str()).collect();
    let gone = tx
        .execute(
            "DELETE FROM objects WHERE topic_id = $1 AND partition = $2 AND key = ANY($3)",
            &[&job.topic_id, &p, &keys],
        )
        .await?;
    if gone != olds.len() as u64 {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO objects (topic_id, partition, base_offset, last_offset, key, size, \
         max_timestamp) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &job.topic_id,
            &p,
            &(new.range.0 as i64),
            &(new.range.1 as i64),
            &new.key,
            &new.size,
            &new.max_timestamp,
        ],
    )
    .await?;
    tx.execute(
        "INSERT INTO doomed_objects (key, since) \
         SELECT k, now() + $2::text::interval FROM unnest($1::text[]) AS k \
         ON CONFLICT (key) DO UPDATE SET since = excluded.since",
        &[&keys, &REPLACED_KEPT],
    )
    .await?;
    if !holds_range(&tx, &job.lease, me).await? {
        return Ok(false);
    }
    tx.commit().await?;
    Ok(true)
}

/// Records the finished compaction: mapped up to `upto` (the next maps from there), the oldest
/// tombstone kept.
async fn finish(cluster: &Cluster, job: &Job, upto: u64) -> Result<(), Error> {
    let mut c = cluster.pool.get().await?;
    let tx = c.transaction().await?;
    tx.execute(
        "UPDATE partitions SET compaction_tombstone_ms = CASE WHEN $3 >= compacted_to \
         THEN $4 ELSE compaction_tombstone_ms END, compacted_to = greatest(compacted_to, $3) \
         WHERE topic_id = $1 AND partition = $2",
        &[
            &job.topic_id,
            &(job.partition as i32),
            &(upto as i64),
            &job.tomb,
        ],
    )
    .await?;
    let me = (cluster.members.node_id, cluster.members.instance());
    if holds_range(&tx, &job.lease, me).await? {
        tx.commit().await?;
    }
    Ok(())
}
