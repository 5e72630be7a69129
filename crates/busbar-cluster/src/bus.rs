//! The bus's subscriptions in PostgreSQL (`busbar_bus::cluster::SharedBus`): records in
//! `subscriptions`, their state in `bus_state`, one lease (kind `subscription`) per running
//! subscription in `leases`.
//!
//! Lock order, so that no two of these transactions wait on each other in a cycle: the lease row
//! first (a worker's write takes it `FOR SHARE` as its fence; a delete removes it first), then the
//! subscription's state rows. Versions and state rows' sequence numbers come from one sequence, so
//! a subscription deleted and created again never shows an earlier version.

use crate::members::Kind;
use crate::pool::Pool;
use crate::{bounded, bounded_b, Cluster, Error};
use busbar_broker::shared::BoxFuture;
use busbar_broker::BrokerError;
use busbar_bus::cluster::{
    AskRow, RecordChange, SharedBus, Space, StateRow, StoredRecord, WriteRow,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_postgres::Transaction;

type Result<T> = busbar_broker::Result<T>;

fn db(e: tokio_postgres::Error) -> BrokerError {
    Error::from(e).into()
}

/// Every subscription record.
async fn records(pool: &Pool) -> Result<Vec<StoredRecord>> {
    let c = pool.get().await?;
    let rows = c
        .query(
            "SELECT name, version, record FROM subscriptions ORDER BY name",
            &[],
        )
        .await
        .map_err(db)?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Every state row of `sub`, its record locked meanwhile; `None` when the record is gone or not
/// at `version`.
async fn load(pool: &Pool, sub: &str, version: Option<i64>) -> Result<Option<Vec<StateRow>>> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await.map_err(db)?;
    let record = tx
        .query_opt(
            "SELECT version FROM subscriptions WHERE name = $1 FOR SHARE",
            &[&sub],
        )
        .await
        .map_err(db)?;
    let at: Option<i64> = record.map(|r| r.get(0));
    if at.is_none() || (version.is_some() && at != version) {
        return Ok(None);
    }
    let rows = tx
        .query(
            "SELECT space, seq, key, value FROM bus_state WHERE sub = $1",
            &[&sub],
        )
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(Some(
        rows.iter()
            .filter_map(|r| {
                Some(StateRow {
                    space: Space::from_code(r.get(0))?,
                    seq: r.get::<_, i64>(1) as u64,
                    key: r.get(2),
                    value: r.get(3),
                })
            })
            .collect(),
    ))
}

/// Writes `rows` of `sub` (the last row per key counts); `only_new`: a key that has a row keeps
/// it. The sequence numbers given to `rows`, in order.
async fn put_rows(
    tx: &Transaction<'_>,
    sub: &str,
    rows: Vec<WriteRow>,
    only_new: bool,
) -> Result<Vec<u64>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let fetched = tx
        .query(
            "SELECT nextval('bus_state_seq') FROM generate_series(1, $1)",
            &[&(rows.len() as i32)],
        )
        .await
        .map_err(db)?;
    let mut seqs: Vec<i64> = fetched.iter().map(|r| r.get(0)).collect();
    seqs.sort_unstable();
    // The last row per key, in key order (one statement may not touch a row twice).
    let mut last: BTreeMap<StateKey, (i64, Option<&[u8]>)> = BTreeMap::new();
    for ((space, key, value), seq) in rows.iter().zip(&seqs) {
        last.insert((space.code(), key), (*seq, value.as_deref()));
    }
    let (mut set, mut gone) = (Columns::default(), Columns::default());
    for ((space, key), (seq, value)) in last {
        match value {
            Some(v) => set.push(space, key, seq, v),
            None => gone.push(space, key, seq, &[]),
        }
    }
    let conflict = if only_new {
        "DO NOTHING"
    } else {
        "DO UPDATE SET seq = excluded.seq, value = excluded.value"
    };
    if !set.spaces.is_empty() {
        let sql = format!(
            "INSERT INTO bus_state (sub, space, key, seq, value) SELECT $1, * FROM \
             unnest($2::smallint[], $3::bytea[], $4::bigint[], $5::bytea[]) \
             ON CONFLICT (sub, space, key) {conflict}"
        );
        let args: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&sub, &set.spaces, &set.keys, &set.seqs, &set.values];
        tx.execute(&sql, &args).await.map_err(db)?;
    }
    if !gone.spaces.is_empty() && !only_new {
        tx.execute(
            "DELETE FROM bus_state WHERE sub = $1 AND (space, key) IN \
             (SELECT * FROM unnest($2::smallint[], $3::bytea[]))",
            &[&sub, &gone.spaces, &gone.keys],
        )
        .await
        .map_err(db)?;
    }
    Ok(seqs.into_iter().map(|s| s as u64).collect())
}

/// A state row's place: (space, key).
type StateKey<'a> = (i16, &'a [u8]);

/// Rows as the arrays one statement takes.
#[derive(Default)]
struct Columns<'a> {
    spaces: Vec<i16>,
    keys: Vec<&'a [u8]>,
    seqs: Vec<i64>,
    values: Vec<&'a [u8]>,
}

impl<'a> Columns<'a> {
    fn push(&mut self, space: i16, key: &'a [u8], seq: i64, value: &'a [u8]) {
        self.spaces.push(space);
        self.keys.push(key);
        self.seqs.push(seq);
        self.values.push(value);
    }
}

/// Writes `rows` of `sub` under this process's unexpired lease on it (held `FOR SHARE` until the
/// commit, so no other broker takes the lease and loads the state in between).
async fn write(pool: &Pool, me: (i32, &str), sub: &str, rows: Vec<WriteRow>) -> Result<Vec<u64>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut c = pool.get().await?;
    let tx = c.transaction().await.map_err(db)?;
    let held = tx
        .query_opt(
            "SELECT 1 FROM leases WHERE kind = 'subscription' AND name = $1 AND holder = $2 \
             AND holder_instance = $3 AND expires_at > now() FOR SHARE",
            &[&sub, &me.0, &me.1],
        )
        .await
        .map_err(db)?;
    if held.is_none() {
        return Err(BrokerError::NotCoordinator(format!(
            "this broker's lease on subscription {sub:?} ended before its state was written"
        )));
    }
    let seqs = put_rows(&tx, sub, rows, false).await?;
    tx.commit().await.map_err(db)?;
    Ok(seqs)
}

/// Applies one change of a subscription record (see [`RecordChange`]).
async fn change(pool: &Pool, change: RecordChange) -> Result<Option<i64>> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await.map_err(db)?;
    let version = match change {
        RecordChange::Create {
            name,
            record,
            start,
            limit,
        } => {
            // Creates on all brokers one at a time (this lock conflicts with itself and with
            // writes, not with reads), so the count holds until the commit.
            tx.batch_execute("LOCK TABLE subscriptions IN SHARE ROW EXCLUSIVE MODE")
                .await
                .map_err(db)?;
            let count: i64 = tx
                .query_one("SELECT count(*) FROM subscriptions", &[])
                .await
                .map_err(db)?
                .get(0);
            if count as u64 >= limit {
                return Ok(None);
            }
            let made = tx
                .query_opt(
                    "INSERT INTO subscriptions (name, version, record) \
                     VALUES ($1, nextval('bus_state_seq'), $2) \
                     ON CONFLICT (name) DO NOTHING RETURNING version",
                    &[&name, &record],
                )
                .await
                .map_err(db)?;
            let Some(made) = made else {
                return Ok(None);
            };
            clear(&tx, &name).await?;
            put_rows(&tx, &name, start, false).await?;
            made.get(0)
        }
        RecordChange::Update {
            name,
            version,
            record,
            start,
        } => {
            let moved = tx
                .query_opt(
                    "UPDATE subscriptions SET version = nextval('bus_state_seq'), record = $3 \
                     WHERE name = $1 AND version = $2 RETURNING version",
                    &[&name, &version, &record],
                )
                .await
                .map_err(db)?;
            let Some(moved) = moved else {
                return Ok(None);
            };
            put_rows(&tx, &name, start, true).await?;
            moved.get(0)
        }
        RecordChange::Delete { name, version } => {
            let gone = tx
                .execute(
                    "DELETE FROM subscriptions WHERE name = $1 AND version = $2",
                    &[&name, &version],
                )
                .await
                .map_err(db)?;
            if gone == 0 {
                return Ok(None);
            }
            clear(&tx, &name).await?;
            0
        }
    };
    tx.commit().await.map_err(db)?;
    Ok(Some(version))
}

/// Removes `name`'s lease (first: the lock order) and state.
async fn clear(tx: &Transaction<'_>, name: &str) -> Result<()> {
    for sql in [
        "DELETE FROM leases WHERE kind = 'subscription' AND name = $1",
        "DELETE FROM bus_state WHERE sub = $1",
    ] {
        tx.execute(sql, &[&name]).await.map_err(db)?;
    }
    Ok(())
}

impl SharedBus for Cluster {
    fn records(&self) -> BoxFuture<'_, Result<Vec<StoredRecord>>> {
        Box::pin(bounded_b(records(&self.pool)))
    }

    fn change(&self, c: RecordChange) -> BoxFuture<'_, Result<Option<i64>>> {
        Box::pin(bounded_b(change(&self.pool, c)))
    }

    fn load(
        &self,
        sub: &str,
        version: Option<i64>,
    ) -> BoxFuture<'_, Result<Option<Vec<StateRow>>>> {
        let sub = sub.to_string();
        Box::pin(async move { bounded_b(load(&self.pool, &sub, version)).await })
    }

    fn write(&self, sub: &str, rows: Vec<WriteRow>) -> BoxFuture<'_, Result<Vec<u64>>> {
        let sub = sub.to_string();
        let me = (self.members.node_id, self.members.instance().to_string());
        Box::pin(async move {
            let written = bounded_b(write(&self.pool, (me.0, &me.1), &sub, rows)).await;
            if let Err(BrokerError::NotCoordinator(_)) = &written {
                // The database says the lease is gone: stop acting on it now (the worker's
                // watchdog sees it), not at the next renewal.
                self.members.release(Kind::Subscription, &sub);
            }
            written
        })
    }

    fn take(&self, sub: &str) -> BoxFuture<'_, Result<Option<Instant>>> {
        let sub = sub.to_string();
        Box::pin(async move {
            let taken = bounded(self.members.take(&self.pool, Kind::Subscription, &sub)).await?;
            Ok(taken.map(|(sent, _)| sent))
        })
    }

    fn confirm(&self, sub: &str, sent: Instant) {
        self.members.confirm(Kind::Subscription, sub, sent)
    }

    fn holds(&self, sub: &str) -> bool {
        self.members.holds(Kind::Subscription, sub)
    }

    fn release(&self, sub: &str) -> BoxFuture<'_, ()> {
        let sub = sub.to_string();
        Box::pin(async move {
            let gone = self.members.give_up(&self.pool, Kind::Subscription, &sub);
            if let Err(e) = bounded(gone).await {
                // The lease lapses by itself at its expiry.
                let msg = format!("cluster: giving up the lease of subscription {sub:?}: {e}");
                busbar_broker::log::warn("busbar", "cluster_lease", &msg, &[]);
            }
        })
    }

    fn release_lapsed(&self, sub: &str) -> BoxFuture<'_, ()> {
        let sub = sub.to_string();
        Box::pin(async move {
            let gone = self
                .members
                .give_up_lapsed(&self.pool, Kind::Subscription, &sub);
            if let Err(e) = bounded(gone).await {
                // The lease lapses by itself at its expiry.
                let msg = format!("cluster: giving up the lease of subscription {sub:?}: {e}");
                busbar_broker::log::warn("busbar", "cluster_lease", &msg, &[]);
            }
        })
    }

    fn preferred(&self, sub: &str) -> bool {
        let ids: Vec<i32> = self.members.members().iter().map(|m| m.node_id).collect();
        busbar_broker::shared::rendezvous(sub, &ids) == Some(self.members.node_id)
    }

    fn ask(
        &self,
        sub: &str,
        body: Vec<u8>,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Option<Vec<u8>>>> {
        let sub = sub.to_string();
        Box::pin(async move { crate::asks::ask(&self.pool, &sub, body, wait).await })
    }

    fn asked(&self, subs: Vec<String>, fresh: Duration) -> BoxFuture<'_, Result<Option<AskRow>>> {
        Box::pin(async move {
            let me = self.members.instance();
            bounded_b(crate::asks::take(&self.pool, me, &subs, fresh)).await
        })
    }

    fn instance(&self) -> String {
        self.members.instance().to_string()
    }

    fn is_live(&self, instance: &str) -> BoxFuture<'_, Result<bool>> {
        let instance = instance.to_string();
        Box::pin(async move {
            let live = bounded(self.members.is_live(&self.pool, &instance)).await;
            live.map_err(BrokerError::from)
        })
    }

    fn asks_made(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.asks.clone()
    }

    fn answer(&self, id: i64, answer: Vec<u8>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { bounded_b(crate::asks::answer(&self.pool, id, &answer)).await })
    }
}
