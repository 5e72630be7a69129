//! The uploader: moves committed batches from the hot tier (`batches`) into segment objects in
//! object storage (`cold`), so the database holds only the recent tail of each partition.
//!
//! Partitions fall into [`RANGES`] ranges by a stable hash; each range is a lease (kind `upload`,
//! the group-lease rules): one broker uploads a range at a time. The broker rendezvous hashing
//! prefers takes a free range at once, any other after [`FALLBACK_AFTER`] (the same as
//! subscriptions). Every [`TICK`] the holder looks at its ranges' partitions and uploads one
//! whose hot bytes reached `cluster.upload_bytes`, or whose oldest hot data it first saw
//! `cluster.upload_after_ms` ago.
//!
//! One upload: read the partition's oldest hot batches (contiguous, up to `upload_bytes`, at
//! least one), `PUT` them as one object, then one transaction lowers the partition's hot bytes,
//! deletes exactly those batches (rolled back unless every one of them is still there) and
//! records the object, fenced by the range's lease (this process's, unexpired, checked last). An offset is always in exactly one of
//! `batches` and `objects`, so readers look in one and then the other (`catalog::read`).
//! A failure between the `PUT` and the commit leaves an object no row names; the key is
//! deterministic, so the next try of the same run writes the same key; a run cut differently
//! leaves a leftover, which the holder of range 0 sweeps (`sweep`).
//!
//! While the store is unreachable, uploads fail (logged once per outage), the hot tier grows, and
//! past `cluster.hot_bytes_max` produce is refused with a retriable error; uploads resume on
//! their own. The holder of range 0 also deletes the objects of deleted topics (`doomed_objects`).
//!
//! Retention (`retain`, every [`RETAIN_EVERY`]): the holder of a range deletes its partitions'
//! oldest objects past `retention.ms` or beyond `retention.bytes` and raises their log start,
//! in one transaction fenced by the lease; brokers whose copies end below it start them over
//! there (`busbar_broker::shared`).

use crate::cold::{self, Cold};
use crate::members::Kind;
use crate::pool::Pool;
use crate::{bounded, Cluster, Error};
use busbar_broker::shared::{Retention, SharedBatch};
use busbar_broker::Broker;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many partition ranges (leases) the uploads are spread over.
pub const RANGES: u32 = 16;
/// How often the uploader looks for work.
const TICK: Duration = Duration::from_secs(1);
/// How long a broker rendezvous hashing does not prefer waits before it takes a free range.
const FALLBACK_AFTER: Duration = Duration::from_secs(5);
/// Most objects one round uploads (the next round goes on).
const UPLOADS_PER_ROUND: usize = 64;
/// Most doomed objects one round deletes.
const DELETES_PER_ROUND: i64 = 100;
/// How often the holder of range 0 lists the store for leftover objects.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// Most keys one sweep lists (the next goes on after the last).
const SWEEP_KEYS_MAX: usize = 1000;
/// How often the holder of a range applies retention to its partitions' objects.
const RETAIN_EVERY: Duration = Duration::from_secs(10);
/// Most partitions one retention pass deletes objects of (the next pass goes on).
const RETAIN_PARTITIONS_MAX: usize = 64;
/// Most objects of one partition one retention pass looks at (the next pass goes on).
const RETAIN_OBJECTS_MAX: i64 = 1000;

/// The range of a partition: FNV-1a over the topic id and the partition, stable everywhere.
pub fn range_of(topic_id: &str, partition: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in topic_id.bytes().chain(partition.to_be_bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % RANGES
}

/// What the uploader remembers between rounds (bounded by the number of partitions).
#[derive(Default)]
struct Memory {
    /// When each range was first seen free here (a broker not preferred waits).
    waiting: HashMap<u32, Instant>,
    /// When each partition was first seen with hot data.
    hot_since: HashMap<(String, u32), Instant>,
    /// The failure being reported (logged once until uploads work again).
    failing: Option<String>,
    /// When the store was last swept for leftovers, and the key the sweep goes on after.
    swept: Option<Instant>,
    sweep_after: Option<String>,
    /// Retention fails (logged once until it works again).
    retain_failing: bool,
    /// The compaction of objects in progress (`compact.rs`).
    compaction: crate::compact::State,
    /// Compaction fails (logged once until it works again).
    compact_failing: bool,
}

/// Runs the uploader for the broker's life (only with an object store configured).
pub async fn run(cluster: Arc<Cluster>, cold: Arc<Cold>, broker: Arc<Broker>) {
    let mut memory = Memory::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retained = Instant::now();
    loop {
        tick.tick().await;
        let held = take_ranges(&cluster, &mut memory).await;
        if held.is_empty() {
            memory.hot_since.clear();
            continue;
        }
        let result = round(&cluster, &cold, &held, &mut memory).await;
        report(&mut memory, result);
        let topics = broker.shared_compaction();
        let result =
            crate::compact::step(&cluster, &cold, &topics, &held, &mut memory.compaction).await;
        let what = (
            "compaction",
            "cluster_compaction_failing",
            "it goes on next round",
        );
        report_once(&mut memory.compact_failing, result, what);
        if retained.elapsed() >= RETAIN_EVERY {
            retained = Instant::now();
            let result = retain(&cluster, &broker.shared_retention(), &held).await;
            let every = format!("tried again every {} s", RETAIN_EVERY.as_secs());
            let what = ("retention", "cluster_retention_failed", every.as_str());
            report_once(&mut memory.retain_failing, result, what);
        }
    }
}

/// Logs the first failure of a background task (`what`: its name, the failure's event and
/// when it is tried again) and the recovery after it; `failing` remembers which was logged.
fn report_once(failing: &mut bool, result: Result<(), Error>, what: (&str, &str, &str)) {
    let (name, event, again) = what;
    match (result, *failing) {
        (Err(e), false) => {
            busbar_broker::log::warn(
                "busbar",
                event,
                &format!(
                    "cluster: {name} of the cold tier fails ({e}); {again} (logged again once \
                     it works)"
                ),
                &[],
            );
            *failing = true;
        }
        (Ok(()), true) => {
            busbar_broker::log::info(
                "busbar",
                &format!("cluster_{name}_resumed"),
                &format!("cluster: {name} of the cold tier works again"),
                &[],
            );
            *failing = false;
        }
        _ => {}
    }
}

/// Logs the first failure of an outage and the recovery after it.
fn report(memory: &mut Memory, result: Result<(), Error>) {
    match (result, memory.failing.take()) {
        (Err(e), None) => {
            busbar_broker::log::warn(
                "busbar",
                "cluster_upload_failing",
                &format!(
                    "cluster: uploads to the object store fail ({e}); the hot tier grows until \
                     cluster.hot_bytes_max, then produce is refused until uploads work again"
                ),
                &[],
            );
            memory.failing = Some(e.to_string());
        }
        (Err(_), Some(was)) => memory.failing = Some(was),
        (Ok(()), Some(_)) => busbar_broker::log::info(
            "busbar",
            "cluster_upload_resumed",
            "cluster: uploads to the object store work again",
            &[],
        ),
        (Ok(()), None) => {}
    }
}

/// The ranges this broker holds now, taking those it should.
async fn take_ranges(cluster: &Cluster, memory: &mut Memory) -> Vec<u32> {
    let members = &cluster.members;
    let ids: Vec<i32> = members.members().iter().map(|m| m.node_id).collect();
    let mut held = Vec::new();
    for r in 0..RANGES {
        let name = r.to_string();
        if members.holds(Kind::Upload, &name) {
            memory.waiting.remove(&r);
            held.push(r);
            continue;
        }
        let preferred = busbar_broker::shared::rendezvous(&name, &ids) == Some(members.node_id);
        let first = *memory.waiting.entry(r).or_insert_with(Instant::now);
        if !preferred && first.elapsed() < FALLBACK_AFTER {
            continue;
        }
        let taken = bounded(members.take(&cluster.pool, Kind::Upload, &name)).await;
        if let Ok(Some((sent, _))) = taken {
            members.confirm(Kind::Upload, &name, sent);
            if members.holds(Kind::Upload, &name) {
                memory.waiting.remove(&r);
                held.push(r);
            }
        } else {
            // Held elsewhere (or no answer): wait again before the next try.
            memory.waiting.insert(r, Instant::now());
        }
    }
    held
}

/// One round over the held ranges: uploads what is due, deletes doomed objects.
async fn round(
    cluster: &Cluster,
    cold: &Cold,
    held: &[u32],
    memory: &mut Memory,
) -> Result<(), Error> {
    let cfg = &cluster.config;
    let hot = bounded(hot_partitions(&cluster.pool)).await?;
    let now = Instant::now();
    let mine: Vec<_> = hot
        .into_iter()
        .filter(|(t, p, _)| held.contains(&range_of(t, *p)))
        .collect();
    // Rebuilt from this round's partitions: those no longer hot (or no longer ours) drop out.
    let seen = std::mem::take(&mut memory.hot_since);
    let mut due = Vec::new();
    for (t, p, bytes) in mine {
        let since = seen.get(&(t.clone(), p)).copied().unwrap_or(now);
        if bytes >= cfg.upload_bytes as i64 || since.elapsed() >= cfg.upload_after {
            due.push((t.clone(), p));
        }
        memory.hot_since.insert((t, p), since);
    }
    let mut result = Ok(());
    let mut budget = UPLOADS_PER_ROUND;
    'partitions: for (t, p) in due {
        let lease = range_of(&t, p).to_string();
        // A partition with more than one object's worth goes on until it is drained (or the
        // round's budget is spent): one object per round would cap a partition's throughput.
        loop {
            if budget == 0 {
                break 'partitions;
            }
            if !cluster.members.holds(Kind::Upload, &lease) {
                break;
            }
            budget -= 1;
            match upload(cluster, cold, &lease, &t, p).await {
                Ok(true) => continue,
                Ok(false) => {
                    memory.hot_since.remove(&(t.clone(), p));
                    break;
                }
                Err(e) => {
                    result = Err(e);
                    break 'partitions;
                }
            }
        }
    }
    if held.contains(&0) {
        if memory.swept.is_none_or(|t| t.elapsed() >= SWEEP_EVERY) {
            memory.swept = Some(Instant::now());
            result = result.and(sweep(cluster, cold, &mut memory.sweep_after).await);
        }
        result = result.and(delete_doomed(&cluster.pool, cold).await);
    }
    result
}

/// Partitions with data in the hot tier: (topic id, partition, hot bytes).
async fn hot_partitions(pool: &Pool) -> Result<Vec<(String, u32, i64)>, Error> {
    let c = pool.get().await?;
    let rows = c
        .query(
            "SELECT topic_id, partition, hot_bytes FROM partitions WHERE hot_bytes > 0",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get::<_, i32>(1) as u32, r.get(2)))
        .collect())
}

/// Uploads the oldest run of a partition's hot batches; answers whether more remain.
async fn upload(
    cluster: &Cluster,
    cold: &Cold,
    lease: &str,
    topic_id: &str,
    partition: u32,
) -> Result<bool, Error> {
    let limit = cluster.config.upload_bytes;
    let run = bounded(oldest_run(&cluster.pool, topic_id, partition, limit)).await?;
    let (Some(first), Some(last)) = (run.first(), run.last()) else {
        return Ok(false);
    };
    let (base, last) = (first.base_offset, last.last_offset);
    let batches = run.len() as i64;
    let object = cold::encode(&run);
    let object_len = object.len() as i64;
    let size: i64 = run.iter().map(|b| b.bytes.len() as i64).sum();
    // Batches without a timestamp (-1) leave it unknown: the upload time stands in.
    let max_timestamp = run
        .iter()
        .filter_map(|b| max_timestamp(&b.bytes))
        .filter(|t| *t >= 0)
        .max();
    let key = cold.key(topic_id, partition, base, last);
    cold.put(&key, object).await?;
    let me = (cluster.members.node_id, cluster.members.instance());
    let outcome = bounded(record(
        &cluster.pool,
        me,
        lease,
        Upload {
            topic_id,
            partition,
            base,
            last,
            batches: run.len() as u64,
            size,
            object: (&key, object_len),
            max_timestamp,
        },
    ))
    .await?;
    match outcome {
        // More remains when the run was cut by size or by the read's batch count.
        Recorded::Done => Ok(size >= limit as i64 || batches >= crate::catalog::READ_BATCHES_MAX),
        Recorded::TopicGone => {
            cold.delete(&key).await?;
            Ok(false)
        }
        Recorded::LeaseLost => {
            cluster.members.release(Kind::Upload, lease);
            Ok(false)
        }
    }
}

/// The oldest hot batches of a partition, contiguous, about `limit` bytes (at least one).
async fn oldest_run(
    pool: &Pool,
    topic_id: &str,
    partition: u32,
    limit: usize,
) -> Result<Vec<SharedBatch>, Error> {
    let mut run = crate::catalog::read_hot(pool, topic_id, partition, 0, limit).await?;
    // Stop at a gap (never expected: an offset is in one table or the other).
    let contiguous = run
        .windows(2)
        .position(|w| w[1].base_offset != w[0].last_offset + 1)
        .map_or(run.len(), |i| i + 1);
    run.truncate(contiguous);
    Ok(run)
}

/// An upload to record.
struct Upload<'a> {
    topic_id: &'a str,
    partition: u32,
    base: u64,
    last: u64,
    batches: u64,
    size: i64,
    object: (&'a str, i64),
    /// The newest record timestamp in the object (time retention).
    max_timestamp: Option<i64>,
}

/// What recording an upload did.
enum Recorded {
    Done,
    /// The topic was deleted meanwhile: the object is nobody's.
    TopicGone,
    /// This process's lease on the range ended: nothing changed (another broker uploads).
    LeaseLost,
}

/// The transaction that moves a run from the hot tier to its object, fenced by the range lease.
/// Row locks in the committer's order (the partition row first, then batches), the lease last.
async fn record(
    pool: &Pool,
    me: (i32, &str),
    lease: &str,
    u: Upload<'_>,
) -> Result<Recorded, Error> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    let p = u.partition as i32;
    let Some(row) = tx
        .query_opt(
            "UPDATE partitions SET hot_bytes = hot_bytes - $3 \
             WHERE topic_id = $1 AND partition = $2 RETURNING log_start",
            &[&u.topic_id, &p, &u.size],
        )
        .await?
    else {
        return Ok(Recorded::TopicGone);
    };
    // A run that begins below the start (DeleteRecords moved it while the run was uploaded) is
    // not recorded: the sweep may have deleted its object already (a key whose base is below
    // the start is a leftover for certain), and its first batches are being purged.
    let start: i64 = row.get(0);
    if (u.base as i64) < start {
        return Err(Error::Busy(format!(
            "cluster: upload of {}/{} {}..={}: the partition now starts at {start}; not recorded",
            u.topic_id, u.partition, u.base, u.last
        )));
    }
    let deleted = tx
        .execute(
            "DELETE FROM batches WHERE topic_id = $1 AND partition = $2 \
             AND base_offset >= $3 AND last_offset <= $4",
            &[&u.topic_id, &p, &(u.base as i64), &(u.last as i64)],
        )
        .await?;
    if deleted != u.batches {
        return Err(Error::Busy(format!(
            "cluster: upload of {}/{} {}..={}: {deleted} hot batches, not {}; not recorded",
            u.topic_id, u.partition, u.base, u.last, u.batches
        )));
    }
    tx.execute(
        "INSERT INTO objects (topic_id, partition, base_offset, last_offset, key, size, \
         max_timestamp) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &u.topic_id,
            &p,
            &(u.base as i64),
            &(u.last as i64),
            &u.object.0,
            &u.object.1,
            &u.max_timestamp,
        ],
    )
    .await?;
    // The lease is checked last, `FOR KEY SHARE`: it does not block the holder's own renewal
    // (an `UPDATE` of a non-key column), however long the row locks above took. Safety does not
    // rest on it: the batch rows' locks and the count check above make an overlapping upload of
    // another broker roll back. It keeps a broker that lost the range from recording work.
    if !holds_range(&tx, lease, me).await? {
        return Ok(Recorded::LeaseLost);
    }
    tx.commit().await?;
    Ok(Recorded::Done)
}

/// The newest timestamp a stored batch's header names (`None` for bytes that are no batch).
fn max_timestamp(batch: &[u8]) -> Option<i64> {
    busbar_log::batch::BatchHeader::parse(batch)
        .ok()
        .map(|h| h.max_timestamp)
}

/// Retention of the cold tier for the partitions of the `held` ranges: per partition, the
/// oldest objects past `retention.ms` (by their newest record) or beyond `retention.bytes`
/// (counting the hot tier, which retention never touches: it is the active segment) are
/// deleted, as the local log deletes whole segments. One transaction per partition raises its
/// log start past them, deletes their rows and queues their keys in `doomed_objects` (the store
/// deletes follow, by the holder of range 0); fenced by the range's lease like an upload.
async fn retain(cluster: &Cluster, topics: &[Retention], held: &[u32]) -> Result<(), Error> {
    // The database's clock, as for leases: a broker whose clock runs ahead deletes nothing early.
    let (now_ms, sizes) = bounded(cold_sizes(&cluster.pool)).await?;
    let (mut budget, mut first_error) = (RETAIN_PARTITIONS_MAX, None);
    for r in topics {
        for p in 0..r.partitions {
            let lease = range_of(&r.topic_id, p);
            let Some(&(cold_bytes, hot_bytes, oldest)) = sizes.get(&(r.topic_id.clone(), p)) else {
                continue;
            };
            let by_time = r.ms.is_some_and(|ms| oldest < now_ms.saturating_sub(ms));
            let by_size = r.bytes.is_some_and(|b| (cold_bytes + hot_bytes) as u64 > b);
            if !held.contains(&lease) || !(by_time || by_size) {
                continue;
            }
            if budget == 0 {
                return first_error.map_or(Ok(()), Err);
            }
            budget -= 1;
            // One partition's failure does not keep the others' retention from running.
            let total = cold_bytes + hot_bytes;
            if let Err(e) = retain_partition(cluster, r, (p, lease), total, now_ms).await {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Retention of one partition (`total` bytes in objects and hot tier).
async fn retain_partition(
    cluster: &Cluster,
    r: &Retention,
    (p, lease): (u32, u32),
    total: i64,
    now_ms: i64,
) -> Result<(), Error> {
    let objects = bounded(oldest_objects(&cluster.pool, &r.topic_id, p)).await?;
    let Some(upto) = expired(&objects, r, total, now_ms) else {
        return Ok(());
    };
    let me = (cluster.members.node_id, cluster.members.instance());
    let name = lease.to_string();
    let dropped = bounded(drop_objects(
        &cluster.pool,
        me,
        &name,
        (&r.topic_id, p),
        upto,
    ))
    .await?;
    if !dropped {
        cluster.members.release(Kind::Upload, &name);
    }
    Ok(())
}

/// The database's time (ms since the epoch), and per partition with objects: (bytes in
/// objects, hot bytes, the oldest object's newest timestamp, or its upload time when that is
/// unknown).
async fn cold_sizes(pool: &Pool) -> Result<(i64, ColdSizes), Error> {
    let c = pool.get().await?;
    let now: i64 = c
        .query_one("SELECT (extract(epoch FROM now()) * 1000)::bigint", &[])
        .await?
        .get(0);
    let rows = c
        .query(
            "SELECT o.topic_id, o.partition, sum(o.size)::bigint, max(p.hot_bytes), \
             min(coalesce(o.max_timestamp, (extract(epoch FROM o.created_at) * 1000)::bigint)) \
             FROM objects o JOIN partitions p USING (topic_id, partition) GROUP BY 1, 2",
            &[],
        )
        .await?;
    let sizes = rows
        .iter()
        .map(|r| {
            let key = (r.get::<_, String>(0), r.get::<_, i32>(1) as u32);
            (key, (r.get(2), r.get(3), r.get(4)))
        })
        .collect();
    Ok((now, sizes))
}

/// Per partition: (bytes in objects, hot bytes, the oldest object's newest timestamp).
type ColdSizes = HashMap<(String, u32), (i64, i64, i64)>;

/// One object as retention sees it: its last offset, size and newest timestamp.
type ObjectAge = (i64, i64, i64);

/// A partition's oldest objects, oldest first (at most [`RETAIN_OBJECTS_MAX`]).
async fn oldest_objects(
    pool: &Pool,
    topic_id: &str,
    partition: u32,
) -> Result<Vec<ObjectAge>, Error> {
    let c = pool.get().await?;
    let rows = c
        .query(
            "SELECT last_offset, size, \
             coalesce(max_timestamp, (extract(epoch FROM created_at) * 1000)::bigint) \
             FROM objects WHERE topic_id = $1 AND partition = $2 ORDER BY base_offset LIMIT $3",
            &[&topic_id, &(partition as i32), &RETAIN_OBJECTS_MAX],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// The last offset of the oldest objects retention deletes (`None`: none): from the oldest on,
/// each past `retention.ms` or whose deletion leaves at least `retention.bytes` (Kafka's rule
/// for segments), stopping at the first that is neither.
fn expired(objects: &[ObjectAge], r: &Retention, total: i64, now_ms: i64) -> Option<i64> {
    let mut left = total;
    let mut upto = None;
    for &(last, size, newest) in objects {
        let by_time = r.ms.is_some_and(|ms| newest < now_ms.saturating_sub(ms));
        let by_size = r.bytes.is_some_and(|b| left - size >= b as i64);
        if !(by_time || by_size) {
            break;
        }
        left -= size;
        upto = Some(last);
    }
    upto
}

/// The transaction that deletes a partition's objects up to offset `upto` and raises its log
/// start past them; `false` when this process no longer holds the range (nothing changed).
async fn drop_objects(
    pool: &Pool,
    me: (i32, &str),
    lease: &str,
    (topic_id, partition): (&str, u32),
    upto: i64,
) -> Result<bool, Error> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    let p = partition as i32;
    // The partition row first, as the committer and the uploader lock it.
    tx.execute(
        "UPDATE partitions SET log_start = greatest(log_start, $3::bigint + 1) \
         WHERE topic_id = $1 AND partition = $2",
        &[&topic_id, &p, &upto],
    )
    .await?;
    tx.execute(
        "WITH gone AS (DELETE FROM objects WHERE topic_id = $1 AND partition = $2 \
         AND last_offset <= $3 RETURNING key) \
         INSERT INTO doomed_objects (key) SELECT key FROM gone ON CONFLICT DO NOTHING",
        &[&topic_id, &p, &upto],
    )
    .await?;
    if !holds_range(&tx, lease, me).await? {
        return Ok(false);
    }
    tx.commit().await?;
    Ok(true)
}

/// Keys with what they name, as columns for `unnest`: key, topic id, partition, base, last.
type KeyColumns = (Vec<String>, Vec<String>, Vec<i32>, Vec<i64>, Vec<i64>);

/// Lists up to [`SWEEP_KEYS_MAX`] keys of the store (after the last sweep's) and queues in
/// `doomed_objects` those that are leftovers for certain: an object no row names (an upload
/// that failed between its `PUT` and its commit, then cut its run differently) whose topic is
/// gone, whose base offset is below the log start (an upload of a run that begins there is
/// never recorded: `record` checks it under the partition row's lock), or whose base offset another object's row
/// covers. An offset never moves back from an object to the hot tier, so no upload can write
/// such a key again, and an upload still in flight with it fails its commit (its batches are
/// gone). Keys of another form are left alone.
async fn sweep(cluster: &Cluster, cold: &Cold, after: &mut Option<String>) -> Result<(), Error> {
    let keys = cold.list(after.as_deref(), SWEEP_KEYS_MAX).await?;
    *after = if keys.len() < SWEEP_KEYS_MAX {
        None
    } else {
        keys.last().map(|(k, _)| k.clone())
    };
    let mut cols = KeyColumns::default();
    for (key, written) in keys {
        // A compaction's key (tagged) is queued for deletion before its object is written, and
        // a rewrite in progress lies inside existing ranges: it is swept only once it is older
        // than any rewrite can take (in case its queued row was lost to a race).
        let old = written
            .elapsed()
            .is_ok_and(|age| age >= crate::compact::TAGGED_SWEEP_AFTER);
        if let Some(((topic, partition, base, last), tagged)) = cold.parse_key_tagged(&key) {
            if tagged && !old {
                continue;
            }
            cols.0.push(key);
            cols.1.push(topic);
            cols.2.push(partition as i32);
            cols.3.push(base as i64);
            cols.4.push(last as i64);
        }
    }
    if cols.0.is_empty() {
        return Ok(());
    }
    let found = bounded(async {
        let c = cluster.pool.get().await?;
        let n = c
            .execute(
                "INSERT INTO doomed_objects (key) \
                 SELECT k.key FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], \
                   $5::bigint[]) AS k(key, topic_id, partition, base, last) \
                 LEFT JOIN partitions p \
                   ON p.topic_id = k.topic_id AND p.partition = k.partition \
                 LEFT JOIN LATERAL (SELECT last_offset FROM objects o \
                   WHERE o.topic_id = k.topic_id AND o.partition = k.partition \
                   AND o.base_offset <= k.base ORDER BY o.base_offset DESC LIMIT 1) c ON true \
                 WHERE NOT EXISTS (SELECT 1 FROM objects o WHERE o.key = k.key) \
                 AND (p.topic_id IS NULL OR k.base < p.log_start OR c.last_offset >= k.base) \
                 ON CONFLICT DO NOTHING",
                &[&cols.0, &cols.1, &cols.2, &cols.3, &cols.4],
            )
            .await?;
        Ok::<_, Error>(n)
    })
    .await?;
    if found > 0 {
        busbar_broker::log::info(
            "busbar",
            "cluster_leftover_objects",
            &format!(
                "cluster: {found} leftover objects in the store (no row names them); deleting them"
            ),
            &[],
        );
    }
    Ok(())
}

/// Whether this process (`me`: node id, instance) holds the range lease `lease`, unexpired by
/// the database's clock, read inside `tx` with `FOR KEY SHARE` (it does not block the holder's
/// own renewal, an `UPDATE` of a non-key column).
pub(crate) async fn holds_range(
    tx: &tokio_postgres::Transaction<'_>,
    lease: &str,
    me: (i32, &str),
) -> Result<bool, Error> {
    let held = tx
        .query_opt(
            "SELECT 1 FROM leases WHERE kind = 'upload' AND name = $1 AND holder = $2 \
             AND holder_instance = $3 AND expires_at > now() FOR KEY SHARE",
            &[&lease, &me.0, &me.1],
        )
        .await?;
    Ok(held.is_some())
}

/// Deletes objects of deleted topics from the store, then their rows.
async fn delete_doomed(pool: &Pool, cold: &Cold) -> Result<(), Error> {
    let keys: Vec<String> = {
        let c = pool.get().await?;
        // A key an object row names again is not deleted (its row is dropped instead).
        c.execute(
            "DELETE FROM doomed_objects d USING objects o WHERE o.key = d.key",
            &[],
        )
        .await?;
        c.query(
            "SELECT key FROM doomed_objects d WHERE since <= now() AND NOT EXISTS \
             (SELECT 1 FROM objects o WHERE o.key = d.key) ORDER BY since LIMIT $1",
            &[&DELETES_PER_ROUND],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    // A key whose delete fails goes to the back of the queue (one bad key does not hold up the
    // others), and the round stops there (a store that is down costs one timeout per round).
    let (mut gone, mut failed, mut first_error) = (Vec::new(), Vec::new(), None);
    for key in keys {
        match cold.delete(&key).await {
            Ok(()) => gone.push(key),
            Err(e) => {
                first_error = Some(e);
                failed.push(key);
                break;
            }
        }
    }
    let c = pool.get().await?;
    if !gone.is_empty() {
        c.execute("DELETE FROM doomed_objects WHERE key = ANY($1)", &[&gone])
            .await?;
    }
    if !failed.is_empty() {
        c.execute(
            "UPDATE doomed_objects SET since = now() WHERE key = ANY($1)",
            &[&failed],
        )
        .await?;
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retention(ms: Option<i64>, bytes: Option<u64>) -> Retention {
        Retention {
            topic_id: "t".into(),
            partitions: 1,
            ms,
            bytes,
        }
    }

    #[test]
    fn retention_deletes_the_oldest_objects_past_time_or_size_and_stops_at_the_first_kept() {
        let objects = [(9, 100, 1_000), (19, 100, 2_000), (29, 100, 5_000)];
        // 300 bytes in objects, 50 hot.
        let at = |ms, bytes| expired(&objects, &retention(ms, bytes), 350, 6_000);
        assert_eq!(at(Some(3_000), None), Some(19), "the two older than 3 s");
        assert_eq!(at(Some(100_000), None), None);
        assert_eq!(
            at(None, Some(200)),
            Some(9),
            "350 - 100 >= 200, 250 - 100 < 200"
        );
        assert_eq!(
            at(None, Some(50)),
            Some(29),
            "every object; the hot tier stays"
        );
        assert_eq!(at(None, Some(1_000)), None);
        assert_eq!(at(Some(4_500), Some(300)), Some(9), "either limit deletes");
        // Time stops at the first object it keeps, even with an older one behind it.
        let skewed = [(9, 100, 5_000), (19, 100, 1_000)];
        assert_eq!(
            expired(&skewed, &retention(Some(3_000), None), 200, 6_000),
            None
        );
        assert_eq!(expired(&[], &retention(Some(1), Some(0)), 0, 6_000), None);
    }

    #[test]
    fn ranges_are_stable_and_spread() {
        assert_eq!(range_of("t", 0), range_of("t", 0));
        let used: std::collections::HashSet<u32> = (0..256).map(|p| range_of("topic", p)).collect();
        assert_eq!(used.len(), RANGES as usize);
        assert!(used.iter().all(|r| *r < RANGES));
    }
}
