//! The committer's judging of a group (step 1 of `commit.rs`): idempotent producers' batches
//! judged against their stored state (new, a retry of one of the last five, out of order,
//! fenced), transactional batches against their partitions' `txn_partitions` rows, and
//! transaction markers against their own transaction's rows (with an ABORT marker's
//! `aborted_txns` index row).

use super::{seq_add, Job, Reply};
use crate::Error;
use busbar_broker::shared::Committed;
use busbar_broker::BrokerError;
use std::collections::{BTreeMap, HashMap};
use tokio_postgres::Transaction;

/// What became of one job in the transaction.
pub(super) enum Verdict {
    /// To be stored; its offsets once assigned.
    Accept(Option<(u64, u64)>),
    /// A retry of a stored batch (its offsets), or of job `i` of this group.
    Duplicate(Option<(u64, u64)>, Option<usize>),
    Refused(BrokerError),
    /// A marker whose transaction had ended on the partition already: nothing stored.
    Ended,
}

impl Verdict {
    pub(super) fn reply(self) -> Reply {
        match self {
            Verdict::Accept(Some((base_offset, last_offset))) => Ok(Committed::Appended {
                base_offset,
                last_offset,
            }),
            Verdict::Duplicate(Some((base_offset, last_offset)), _) => Ok(Committed::Duplicate {
                base_offset,
                last_offset,
            }),
            Verdict::Refused(e) => Err(e),
            Verdict::Ended => Ok(Committed::Nothing),
            Verdict::Accept(None) | Verdict::Duplicate(None, _) => Err(BrokerError::Storage(
                "cluster store: the batch's partition is gone".into(),
            )),
        }
    }

    pub(super) fn offsets(&self) -> Option<(u64, u64)> {
        match self {
            Verdict::Accept(o) | Verdict::Duplicate(o, _) => *o,
            Verdict::Refused(_) | Verdict::Ended => None,
        }
    }
}

/// An idempotent producer's state in one partition: (producer id, topic id, partition).
pub(super) type Key = (i64, String, u32);

/// Batches an idempotent producer's state remembers per partition (Kafka's five in flight).
pub(super) const RECENT_MAX: usize = 5;

/// One remembered batch: first and last sequence, and where it is (stored, or job `i` of this
/// group until offsets are assigned).
#[derive(Clone, Copy)]
pub(super) struct Recent {
    pub(super) first: i32,
    pub(super) last: i32,
    pub(super) stored: Option<(u64, u64)>,
    pub(super) job: Option<usize>,
}

pub(super) struct State {
    pub(super) epoch: i16,
    pub(super) recent: Vec<Recent>,
}

/// Locks and reads the idempotent producers' states; judges every job in queue order.
pub(super) async fn judge(tx: &Transaction<'_>, jobs: &[Job]) -> Result<Judged, Error> {
    let mut states: BTreeMap<Key, Option<State>> = jobs
        .iter()
        .filter(|j| j.h.producer_id >= 0 && j.marker.is_none())
        .map(|j| ((j.h.producer_id, j.topic_id.clone(), j.partition), None))
        .collect();
    let mut issued: HashMap<i64, i16> = HashMap::new();
    let mut pids: Vec<i64> = jobs
        .iter()
        .map(|j| j.h.producer_id)
        .filter(|p| *p >= 0)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    if !pids.is_empty() {
        // Locked (in id order, as every committer does): a producer's batches in two brokers'
        // transactions are judged one after the other, even before its state row exists.
        for r in tx
            .query(
                "SELECT producer_id, epoch FROM producers WHERE producer_id = ANY($1) \
                 ORDER BY producer_id FOR UPDATE",
                &[&pids],
            )
            .await?
        {
            issued.insert(r.get(0), r.get(1));
        }
    }
    for (key, state) in states.iter_mut() {
        let row = tx
            .query_opt(
                "SELECT epoch, recent::text FROM producer_state \
                 WHERE producer_id = $1 AND topic_id = $2 AND partition = $3 FOR UPDATE",
                &[&key.0, &key.1, &(key.2 as i32)],
            )
            .await?;
        *state = row.map(|r| State {
            epoch: r.get(0),
            recent: parse_recent(&r.get::<_, String>(1)),
        });
    }
    let mut txn = txn_rows(tx, jobs).await?;
    let mut verdicts = Vec::with_capacity(jobs.len());
    for (i, j) in jobs.iter().enumerate() {
        if j.marker.is_some() {
            verdicts.push(match txn.firsts.get(&i) {
                Some(_) => Verdict::Accept(None),
                None => Verdict::Ended,
            });
            continue;
        }
        if j.h.producer_id < 0 && j.h.is_transactional() {
            verdicts.push(Verdict::Refused(BrokerError::InvalidRecord(
                "a transactional batch needs a producer id".into(),
            )));
            continue;
        }
        if j.h.producer_id < 0 {
            verdicts.push(Verdict::Accept(None));
            continue;
        }
        if let Some(e) = txn.refused.remove(&i) {
            verdicts.push(Verdict::Refused(e));
            continue;
        }
        let key = (j.h.producer_id, j.topic_id.clone(), j.partition);
        let state = states
            .get_mut(&key)
            .expect("every idempotent job's key is loaded");
        verdicts.push(judge_one(
            i,
            j,
            issued.get(&j.h.producer_id).copied(),
            state,
        ));
    }
    let states = states
        .into_iter()
        .filter_map(|(k, s)| s.map(|s| (k, s)))
        .collect();
    Ok(Judged {
        verdicts,
        states,
        firsts: txn.firsts,
    })
}

/// What [`judge`] found.
pub(super) struct Judged {
    pub(super) verdicts: Vec<Verdict>,
    pub(super) states: BTreeMap<Key, State>,
    /// Markers to store, by job: the first offset their transaction registered here.
    pub(super) firsts: HashMap<usize, u64>,
}

/// The transactions side of judging: transactional batches refused, markers that end their
/// transaction (with its registered first offset).
#[derive(Default)]
pub(super) struct TxnRows {
    pub(super) refused: HashMap<usize, BrokerError>,
    pub(super) firsts: HashMap<usize, u64>,
}

/// Checks the group's transactional batches and markers against `txn_partitions`, key by key in
/// key order and, within a key, in queue order (a batch after its transaction's marker is
/// refused); deletes the rows the markers end.
pub(super) async fn txn_rows(tx: &Transaction<'_>, jobs: &[Job]) -> Result<TxnRows, Error> {
    let mut keys: BTreeMap<(&str, u32, i64), Vec<usize>> = BTreeMap::new();
    for (i, j) in jobs.iter().enumerate() {
        if j.h.producer_id >= 0 && (j.h.is_transactional() || j.marker.is_some()) {
            let key = (j.topic_id.as_str(), j.partition, j.h.producer_id);
            keys.entry(key).or_default().push(i);
        }
    }
    let mut out = TxnRows::default();
    for ((topic_id, partition, pid), idx) in keys {
        let ends = idx.iter().any(|&i| jobs[i].marker.is_some());
        let lock = if ends { "FOR UPDATE" } else { "FOR SHARE" };
        let row = tx
            .query_opt(
                &format!(
                    "SELECT epoch, txn_seq, first FROM txn_partitions \
                     WHERE topic_id = $1 AND partition = $2 AND producer_id = $3 {lock}"
                ),
                &[&topic_id, &(partition as i32), &pid],
            )
            .await?;
        let mut row: Option<(i16, i64, i64)> = row.map(|r| (r.get(0), r.get(1), r.get(2)));
        let mut ended = false;
        for i in idx {
            let j = &jobs[i];
            match (j.marker, row) {
                (Some((seq, _)), Some((_, at, first))) if at as u64 == seq => {
                    out.firsts.insert(i, first as u64);
                    row = None;
                    ended = true;
                }
                (Some(_), _) => {}
                (None, Some((epoch, _, _))) if epoch == j.h.producer_epoch => {}
                (None, Some((epoch, _, _))) if j.h.producer_epoch < epoch => {
                    out.refused.insert(
                        i,
                        BrokerError::InvalidProducerEpoch(format!(
                            "epoch {} is older than {epoch}: this producer was fenced",
                            j.h.producer_epoch
                        )),
                    );
                }
                (None, _) => {
                    out.refused.insert(
                        i,
                        BrokerError::InvalidTxnState(format!(
                            "partition {partition} of topic id {topic_id} is not in an ongoing \
                             transaction of producer {pid} epoch {}",
                            j.h.producer_epoch
                        )),
                    );
                }
            }
        }
        if ended {
            tx.execute(
                "DELETE FROM txn_partitions \
                 WHERE topic_id = $1 AND partition = $2 AND producer_id = $3",
                &[&topic_id, &(partition as i32), &pid],
            )
            .await?;
        }
    }
    Ok(out)
}

/// Indexes the group's stored ABORT markers (`aborted_txns`).
pub(super) async fn index_aborts(
    tx: &Transaction<'_>,
    jobs: &[Job],
    verdicts: &[Verdict],
    firsts: &HashMap<usize, u64>,
) -> Result<(), Error> {
    for (i, j) in jobs.iter().enumerate() {
        let (Some((_, false)), Some(first), Verdict::Accept(Some((at, _)))) =
            (j.marker, firsts.get(&i), &verdicts[i])
        else {
            continue;
        };
        tx.execute(
            "INSERT INTO aborted_txns (topic_id, partition, producer_id, first, last) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[
                &j.topic_id,
                &(j.partition as i32),
                &j.h.producer_id,
                &(*first as i64),
                &(*at as i64),
            ],
        )
        .await?;
    }
    Ok(())
}

/// Kafka's idempotence rules for job `i`; records an accepted batch in `state`.
pub(super) fn judge_one(
    i: usize,
    j: &Job,
    issued: Option<i16>,
    state: &mut Option<State>,
) -> Verdict {
    let (pid, epoch, seq) = (j.h.producer_id, j.h.producer_epoch, j.h.base_sequence);
    let Some(issued) = issued else {
        return Verdict::Refused(BrokerError::UnknownProducerId(format!(
            "producer id {pid} was never issued by InitProducerId"
        )));
    };
    if epoch != issued {
        return Verdict::Refused(BrokerError::InvalidProducerEpoch(format!(
            "producer {pid} is at epoch {issued}, not {epoch}"
        )));
    }
    let accept = |state: &mut Option<State>, fresh: bool| {
        let s = state.get_or_insert(State {
            epoch,
            recent: Vec::new(),
        });
        if fresh {
            s.recent.clear();
        }
        s.epoch = epoch;
        s.recent.push(Recent {
            first: seq,
            last: j.last_seq(),
            stored: None,
            job: Some(i),
        });
        if s.recent.len() > RECENT_MAX {
            s.recent.remove(0);
        }
        Verdict::Accept(None)
    };
    let Some(s) = state.as_ref() else {
        return accept(state, true);
    };
    if epoch < s.epoch {
        return Verdict::Refused(BrokerError::InvalidProducerEpoch(format!(
            "producer {pid} wrote at epoch {}, this batch has {epoch}",
            s.epoch
        )));
    }
    if epoch > s.epoch {
        return if seq == 0 {
            accept(state, true)
        } else {
            Verdict::Refused(BrokerError::OutOfOrderSequence(format!(
                "producer {pid}'s new epoch {epoch} must start at sequence 0, not {seq}"
            )))
        };
    }
    if let Some(r) = s
        .recent
        .iter()
        .find(|r| r.first == seq && r.last == j.last_seq())
    {
        return Verdict::Duplicate(r.stored, r.job);
    }
    let newest = s.recent.last().map_or(-1, |r| r.last);
    if seq == seq_add(newest, 1) {
        accept(state, false)
    } else {
        Verdict::Refused(BrokerError::OutOfOrderSequence(format!(
            "producer {pid} sent sequence {seq} after {newest}"
        )))
    }
}

pub(super) fn parse_recent(json: &str) -> Vec<Recent> {
    let v: Vec<[i64; 4]> = serde_json::from_str(json).unwrap_or_default();
    v.into_iter()
        .map(|[first, last, base, end]| Recent {
            first: first as i32,
            last: last as i32,
            stored: Some((base as u64, end as u64)),
            job: None,
        })
        .collect()
}
