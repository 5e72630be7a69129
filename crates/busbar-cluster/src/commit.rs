//! The committer: one task per broker that commits queued batches to PostgreSQL in groups. A
//! group is one transaction, whatever partitions its batches belong to:
//!
//! 1. idempotent producers: their state rows are locked (`FOR UPDATE`, in key order) and each
//!    batch is judged in queue order: new, a retry of one of the last five (answered with its
//!    offsets, nothing stored), or out of order / fenced (refused);
//!    Transactions: a transactional batch is stored only while its partition's `txn_partitions`
//!    row exists at its producer's epoch (locked `FOR SHARE`); a transaction marker deletes its
//!    own transaction's row (matched by the transaction's number) and is stored only when it
//!    did, with an ABORT marker's `aborted_txns` row. All of a group's `txn_partitions` rows are
//!    touched in key order, after the producers' rows (every pid of the group, markers' too):
//!    so no batch of a transaction is ever stored after its marker, and groups never deadlock;
//! 2. each partition's row is advanced by its accepted records (`UPDATE ... RETURNING`, in key
//!    order, so two brokers' groups never deadlock); its row lock orders the partition's commits
//!    across brokers, so the committed offsets have no gaps;
//! 3. the batches are inserted with their offsets written in (the base offset is outside Kafka's
//!    CRC; one statement for the group), producer state saved, and `busbar_data` notified (one
//!    line per partition, as few notifications as fit the payload limit);
//! 4. `COMMIT`; only then does any batch of the group get its answer.
//!
//! Bounded: the queue holds at most `commit_queue_bytes_max` bytes (a produce past it is refused
//! with a retriable error), a group at most `commit_batches_max` batches; the hot tier's total is
//! checked against `hot_bytes_max` at most once a second (past it, retriable refusals).
//! A failed transaction fails its whole group with a retriable error; when the failure hit the
//! `COMMIT` itself the outcome is unknown, as with any database: an idempotent producer's retry is
//! then answered as a duplicate if it did commit.

use crate::pg::Pg;
use crate::Error;
use busbar_broker::shared::{BoxFuture, Committed};
use busbar_broker::BrokerError;
use busbar_log::batch::BatchHeader;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Statement, Transaction};

mod judge;

use judge::{index_aborts, judge, Judged, Key, State, Verdict};

type Reply = busbar_broker::Result<Committed>;

/// A queued batch.
struct Job {
    topic_id: String,
    partition: u32,
    batch: Vec<u8>,
    h: BatchHeader,
    /// A transaction marker: the number of the transaction it ends (`Txn::seq`) and whether it
    /// commits.
    marker: Option<(u64, bool)>,
    reply: oneshot::Sender<Reply>,
    _bytes: OwnedSemaphorePermit,
}

impl Job {
    fn records(&self) -> i64 {
        i64::from(self.h.last_offset_delta) + 1
    }
    fn last_seq(&self) -> i32 {
        seq_add(self.h.base_sequence, self.h.last_offset_delta)
    }
}

/// Sequence numbers wrap at `i32::MAX` to 0 (Kafka's rule).
fn seq_add(seq: i32, n: i32) -> i32 {
    (i64::from(seq) + i64::from(n)).rem_euclid(i64::from(i32::MAX) + 1) as i32
}

/// The producer side of the committer's queue.
pub struct Handle {
    tx: mpsc::UnboundedSender<Job>,
    bytes: Arc<Semaphore>,
    bytes_max: usize,
}

impl Handle {
    /// Queues `batch` now; the future answers after the group's `COMMIT`.
    pub fn submit(
        &self,
        topic_id: &str,
        partition: u32,
        batch: Vec<u8>,
    ) -> BoxFuture<'static, Reply> {
        self.queue(topic_id, partition, batch, None)
    }

    /// Queues the marker `batch` ending transaction number `seq` of its producer on the
    /// partition; answers [`Committed::Nothing`] when that transaction had ended there already.
    pub fn submit_marker(
        &self,
        topic_id: &str,
        partition: u32,
        batch: Vec<u8>,
        seq: u64,
    ) -> BoxFuture<'static, Reply> {
        match busbar_broker::txn::marker::kind(&batch) {
            Some(commit) => self.queue(topic_id, partition, batch, Some((seq, commit))),
            None => Box::pin(async {
                Err(BrokerError::InvalidRequest(
                    "not a transaction marker".into(),
                ))
            }),
        }
    }

    fn queue(
        &self,
        topic_id: &str,
        partition: u32,
        batch: Vec<u8>,
        marker: Option<(u64, bool)>,
    ) -> BoxFuture<'static, Reply> {
        let refused = |e: BrokerError| -> BoxFuture<'static, Reply> { Box::pin(async { Err(e) }) };
        let h = match BatchHeader::parse(&batch) {
            Ok(h) => h,
            Err(e) => return refused(BrokerError::CorruptMessage(e.to_string())),
        };
        if h.is_control() != marker.is_some() {
            return refused(BrokerError::InvalidRecord(
                "control batches are written by the transaction coordinator only".into(),
            ));
        }
        // The broker checked the batch whole (`shared::check_new`); the offset arithmetic here
        // must not depend on that alone.
        if h.last_offset_delta < 0 || h.record_count != h.last_offset_delta.wrapping_add(1) {
            return refused(BrokerError::InvalidRecord(format!(
                "record count {} is not last offset delta {} + 1",
                h.record_count, h.last_offset_delta
            )));
        }
        if batch.len() > self.bytes_max {
            return refused(BrokerError::MessageTooLarge {
                size: batch.len(),
                limit: self.bytes_max,
            });
        }
        let n = u32::try_from(batch.len().max(1)).unwrap_or(u32::MAX);
        let Ok(permit) = self.bytes.clone().try_acquire_many_owned(n) else {
            return refused(BrokerError::Storage(format!(
                "cluster store: the commit queue is full ({} bytes, cluster.commit_queue_bytes_max); try again",
                self.bytes_max
            )));
        };
        let (reply, answer) = oneshot::channel();
        let job = Job {
            topic_id: topic_id.to_string(),
            partition,
            batch,
            h,
            marker,
            reply,
            _bytes: permit,
        };
        if self.tx.send(job).is_err() {
            return refused(BrokerError::ShuttingDown);
        }
        Box::pin(async move {
            answer
                .await
                .map_err(|_| BrokerError::Storage("cluster store: the committer stopped".into()))?
        })
    }
}

/// Starts the committer task (it ends when the handle is dropped).
pub fn start(pg: Pg, config: &crate::ClusterConfig) -> Handle {
    let (tx, rx) = mpsc::unbounded_channel();
    let bytes_max = config
        .commit_queue_bytes_max
        .clamp(1 << 20, u32::MAX as usize);
    let committer = Committer {
        pg,
        client: None,
        stmts: None,
        group_max: config.commit_batches_max.max(1),
        hot_bytes_max: config.hot_bytes_max,
        hot_checked: None,
    };
    tokio::spawn(committer.run(rx));
    Handle {
        tx,
        bytes: Arc::new(Semaphore::new(bytes_max)),
        bytes_max,
    }
}

/// The committer's statements, prepared once per connection (a text query costs a second round
/// trip to parse).
#[derive(Clone)]
struct Stmts {
    hot: Statement,
    advance: Statement,
    insert: Statement,
    notify: Statement,
}

impl Stmts {
    async fn prepare(c: &Client) -> Result<Stmts, Error> {
        Ok(Stmts {
            hot: c
                .prepare("SELECT coalesce(sum(hot_bytes), 0)::bigint FROM partitions")
                .await?,
            advance: c
                .prepare(
                    "UPDATE partitions SET next_offset = next_offset + $3, \
                     hot_bytes = hot_bytes + $4 WHERE topic_id = $1 AND partition = $2 \
                     RETURNING next_offset",
                )
                .await?,
            insert: c
                .prepare(
                    "INSERT INTO batches (topic_id, partition, base_offset, last_offset, size, \
                     bytes) SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], \
                     $4::bigint[], $5::int[], $6::bytea[])",
                )
                .await?,
            notify: c.prepare("SELECT pg_notify('busbar_data', $1)").await?,
        })
    }
}

struct Committer {
    pg: Pg,
    client: Option<Client>,
    /// Prepared on `client` (dropped with it).
    stmts: Option<Stmts>,
    group_max: usize,
    hot_bytes_max: u64,
    /// When the hot tier's size was last read, and whether it was under the cap.
    hot_checked: Option<(Instant, bool)>,
}

/// The longest one group's transaction may take, COMMIT included (the server's statement
/// timeout is off for COMMIT: a synchronous standby's wait must never be cut short into a
/// local-only commit that would then be acknowledged).
const GROUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the hot tier's total size is read.
const HOT_CHECK_EVERY: Duration = Duration::from_secs(1);

impl Committer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>) {
        while let Some(first) = rx.recv().await {
            let mut jobs = vec![first];
            while jobs.len() < self.group_max {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            let answers = match tokio::time::timeout(GROUP_TIMEOUT, self.commit(&jobs)).await {
                Ok(Ok(a)) => a,
                done => {
                    let e = match done {
                        Ok(Err(e)) => e,
                        // The connection is dropped (the server rolls back what did not commit);
                        // whether a COMMIT in flight took effect is unknown: never an ack.
                        _ => {
                            self.client = None;
                            Error::Config(format!(
                                "no answer within {GROUP_TIMEOUT:?}; the outcome is unknown"
                            ))
                        }
                    };
                    if self.client.as_ref().is_some_and(|c| c.is_closed()) {
                        self.client = None;
                    }
                    let msg = format!("cluster store: {e}");
                    jobs.iter()
                        .map(|_| Err(BrokerError::Storage(msg.clone())))
                        .collect()
                }
            };
            for (job, answer) in jobs.into_iter().zip(answers) {
                let _ = job.reply.send(answer);
            }
        }
    }

    async fn commit(&mut self, jobs: &[Job]) -> Result<Vec<Reply>, Error> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.stmts = None;
            self.client = Some(crate::pool::connect(&self.pg).await?);
        }
        if self.stmts.is_none() {
            let client = self.client.as_ref().expect("connected");
            self.stmts = Some(Stmts::prepare(client).await?);
        }
        let st = self.stmts.clone().expect("prepared");
        let client = self.client.as_mut().expect("connected");
        let tx = client.transaction().await?;
        let hot_ok = match self.hot_checked {
            Some((at, ok)) if at.elapsed() < HOT_CHECK_EVERY => ok,
            _ => {
                let total: i64 = tx.query_one(&st.hot, &[]).await?.get(0);
                let ok = (total as u64) < self.hot_bytes_max;
                self.hot_checked = Some((Instant::now(), ok));
                ok
            }
        };
        let full = || {
            BrokerError::Storage(format!(
                "cluster store: the hot tier is full (cluster.hot_bytes_max = {} bytes); try again",
                self.hot_bytes_max
            ))
        };
        // Markers are stored even then: a transaction must be able to end (and release its
        // partitions' last stable offsets) while the hot tier drains.
        if !hot_ok && jobs.iter().all(|j| j.marker.is_none()) {
            return Ok(jobs.iter().map(|_| Err(full())).collect());
        }
        let Judged {
            verdicts: mut answers,
            states,
            firsts,
        } = judge(&tx, jobs).await?;
        if !hot_ok {
            for (j, v) in jobs.iter().zip(answers.iter_mut()) {
                if j.marker.is_none() {
                    *v = Verdict::Refused(full());
                }
            }
        }
        let ends = assign(&tx, &st, jobs, &mut answers).await?;
        // The rest is sent in one go (pipelined; PostgreSQL runs it in order): batches, producer
        // state, notifications, and the statement timeout's lifting before COMMIT (a timeout
        // during COMMIT's wait for a synchronous standby would make PostgreSQL answer success
        // for a commit only the primary has, with a warning).
        let payloads = payloads(&ends);
        let (txr, notify_st) = (&tx, &st.notify);
        let notify = futures_util::future::try_join_all(
            payloads
                .iter()
                .map(|p| async move { txr.execute(notify_st, &[p]).await }),
        );
        tokio::try_join!(
            store(&tx, &st, jobs, &answers),
            save_producers(&tx, states, &answers),
            index_aborts(&tx, jobs, &answers, &firsts),
            async { notify.await.map_err(Error::from) },
            async {
                tx.batch_execute("SET LOCAL statement_timeout = 0")
                    .await
                    .map_err(Error::from)
            },
        )?;
        tx.commit().await?;
        Ok(answers.into_iter().map(Verdict::reply).collect())
    }
}

/// The `busbar_data` notifications of a group: one line `<topic id> <partition> <next offset>`
/// per partition, as few notifications as fit PostgreSQL's payload limit.
fn payloads(ends: &BTreeMap<(String, u32), u64>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for ((topic_id, partition), end) in ends {
        let line = format!("{topic_id} {partition} {end}");
        match out.last_mut() {
            Some(last) if last.len() + 1 + line.len() <= NOTIFY_PAYLOAD_MAX => {
                last.push('\n');
                last.push_str(&line);
            }
            _ => out.push(line),
        }
    }
    out
}

/// The longest notification payload sent (PostgreSQL refuses 8000 bytes and more).
const NOTIFY_PAYLOAD_MAX: usize = 7900;

/// Advances each partition's row by its accepted records (in key order) and gives each
/// accepted job its offsets; answers each partition's new end.
async fn assign(
    tx: &Transaction<'_>,
    st: &Stmts,
    jobs: &[Job],
    verdicts: &mut [Verdict],
) -> Result<BTreeMap<(String, u32), u64>, Error> {
    let mut by_part: BTreeMap<(String, u32), Vec<usize>> = BTreeMap::new();
    for (i, j) in jobs.iter().enumerate() {
        if matches!(verdicts[i], Verdict::Accept(_)) {
            by_part
                .entry((j.topic_id.clone(), j.partition))
                .or_default()
                .push(i);
        }
    }
    // One UPDATE per partition, sent together (pipelined) and run in key order: two brokers'
    // groups lock partition rows in the same order and never deadlock.
    let sums: Vec<(i32, i64, i64)> = by_part
        .iter()
        .map(|((_, partition), idx)| {
            let n: i64 = idx.iter().map(|&i| jobs[i].records()).sum();
            let bytes: i64 = idx.iter().map(|&i| jobs[i].batch.len() as i64).sum();
            (*partition as i32, n, bytes)
        })
        .collect();
    let rows = futures_util::future::try_join_all(by_part.keys().zip(&sums).map(
        |((topic_id, _), (partition, n, bytes))| async move {
            tx.query_opt(&st.advance, &[topic_id, partition, n, bytes])
                .await
        },
    ))
    .await?;
    let mut ends = BTreeMap::new();
    for ((((topic_id, partition), idx), row), (_, n, _)) in by_part.into_iter().zip(rows).zip(sums)
    {
        let Some(row) = row else {
            for i in idx {
                verdicts[i] = Verdict::Refused(BrokerError::UnknownTopic(format!(
                    "partition {partition} of topic id {topic_id} is not in the cluster"
                )));
            }
            continue;
        };
        let end = row.get::<_, i64>(0) as u64;
        // n >= 1 per batch (checked in `submit`), and the row grew by n just now.
        let mut base = end.saturating_sub(n as u64);
        for i in idx {
            let last = base + jobs[i].records() as u64 - 1;
            verdicts[i] = Verdict::Accept(Some((base, last)));
            base = last + 1;
        }
        ends.insert((topic_id, partition), end);
    }
    for i in 0..verdicts.len() {
        if let Verdict::Duplicate(None, Some(of)) = verdicts[i] {
            verdicts[i] = Verdict::Duplicate(verdicts[of].offsets(), None);
        }
    }
    Ok(ends)
}

/// Inserts the accepted batches with their base offsets written in (one statement).
async fn store(
    tx: &Transaction<'_>,
    st: &Stmts,
    jobs: &[Job],
    verdicts: &[Verdict],
) -> Result<(), Error> {
    let rows: Vec<(&Job, u64, u64, Vec<u8>)> = jobs
        .iter()
        .zip(verdicts)
        .filter_map(|(j, v)| match v {
            Verdict::Accept(Some((base, last))) => {
                let mut bytes = j.batch.clone();
                bytes[..8].copy_from_slice(&(*base as i64).to_be_bytes());
                Some((j, *base, *last, bytes))
            }
            _ => None,
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let topics: Vec<&str> = rows.iter().map(|r| r.0.topic_id.as_str()).collect();
    let partitions: Vec<i32> = rows.iter().map(|r| r.0.partition as i32).collect();
    let bases: Vec<i64> = rows.iter().map(|r| r.1 as i64).collect();
    let lasts: Vec<i64> = rows.iter().map(|r| r.2 as i64).collect();
    let sizes: Vec<i32> = rows.iter().map(|r| r.3.len() as i32).collect();
    let bytes: Vec<&[u8]> = rows.iter().map(|r| r.3.as_slice()).collect();
    tx.execute(
        &st.insert,
        &[&topics, &partitions, &bases, &lasts, &sizes, &bytes],
    )
    .await?;
    Ok(())
}

/// Saves the idempotent producers' states with the offsets this group assigned.
async fn save_producers(
    tx: &Transaction<'_>,
    states: BTreeMap<Key, State>,
    verdicts: &[Verdict],
) -> Result<(), Error> {
    let mut pids = Vec::new();
    for ((pid, topic_id, partition), s) in states {
        // A key whose batches of this group were all refused after judging (their partition
        // went away) keeps its stored state.
        let mine: Vec<usize> = s.recent.iter().filter_map(|r| r.job).collect();
        if !mine.is_empty() && mine.iter().all(|&i| verdicts[i].offsets().is_none()) {
            continue;
        }
        pids.push(pid);
        let recent: Vec<[i64; 4]> = s
            .recent
            .iter()
            .filter_map(|r| {
                let (base, last) = r.stored.or_else(|| verdicts[r.job?].offsets())?;
                Some([r.first.into(), r.last.into(), base as i64, last as i64])
            })
            .collect();
        let recent = serde_json::to_string(&recent).unwrap_or_else(|_| "[]".into());
        tx.execute(
            "INSERT INTO producer_state (producer_id, topic_id, partition, epoch, recent) \
             VALUES ($1, $2, $3, $4, $5::text::jsonb) \
             ON CONFLICT (producer_id, topic_id, partition) \
             DO UPDATE SET epoch = excluded.epoch, recent = excluded.recent, used_at = now()",
            &[&pid, &topic_id, &(partition as i32), &s.epoch, &recent],
        )
        .await?;
    }
    if !pids.is_empty() {
        tx.execute(
            "UPDATE producers SET used_at = now() WHERE producer_id = ANY($1)",
            &[&pids],
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_carry_every_partition_within_the_payload_limit() {
        let ends: BTreeMap<(String, u32), u64> = (0..500u32)
            .map(|p| ((format!("{:032x}", p / 7), p), u64::from(p) * 1_000_003))
            .collect();
        let sent = payloads(&ends);
        assert!(sent.len() > 1);
        assert!(sent.iter().all(|p| p.len() <= NOTIFY_PAYLOAD_MAX));
        let lines: Vec<String> = ends
            .iter()
            .map(|((t, p), e)| format!("{t} {p} {e}"))
            .collect();
        assert_eq!(sent.join("\n").lines().collect::<Vec<_>>(), lines);
        assert_eq!(payloads(&BTreeMap::new()), Vec::<String>::new());
    }
}
