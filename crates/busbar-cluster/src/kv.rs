//! The small tables every broker of a cluster must agree on (users, API tokens, ACLs, quotas:
//! `busbar_broker::kvlog::SharedKv`), as spaces of key/value rows in `kv_rows`, each with a
//! version in `kv_spaces` that moves by one with every write.
//!
//! A write is one transaction: the space's version row is locked and raised first (so writes
//! to one space are serialised, in every broker the same order), then the rows, then a
//! notification on `busbar_kv` naming the space, which every broker's watcher turns into a load
//! of that space (`watch.rs`). A load reads the version and the rows at one point in time.

use crate::pool::Pool;
use crate::{bounded_b, Cluster, Error};
use busbar_broker::kvlog::{KvSnapshot, Row, SharedKv};
use busbar_broker::shared::BoxFuture;
use busbar_broker::BrokerError;
use std::collections::BTreeMap;
use tokio_postgres::IsolationLevel;

/// Most rows one space may have when loaded: far above every table's own limit
/// (`auth.tokens_max` is 100,000 by default); a space past it is refused as damaged rather
/// than loaded into memory.
pub const SPACE_ROWS_MAX: i64 = 1_000_000;

/// Every row of `space` with its version; `None` when the version is `unless`.
pub async fn load(
    pool: &Pool,
    space: &str,
    unless: Option<i64>,
) -> busbar_broker::Result<Option<KvSnapshot>> {
    let mut c = pool.get().await?;
    let tx = c
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(Error::from)?;
    let version: i64 = tx
        .query_opt("SELECT version FROM kv_spaces WHERE space = $1", &[&space])
        .await
        .map_err(Error::from)?
        .map_or(0, |r| r.get(0));
    if unless == Some(version) {
        return Ok(None);
    }
    let rows = tx
        .query(
            "SELECT key, seq, value FROM kv_rows WHERE space = $1 ORDER BY key LIMIT $2",
            &[&space, &(SPACE_ROWS_MAX + 1)],
        )
        .await
        .map_err(Error::from)?;
    if rows.len() as i64 > SPACE_ROWS_MAX {
        return Err(BrokerError::Storage(format!(
            "cluster store: shared table {space:?} has more than {SPACE_ROWS_MAX} rows; not loaded"
        )));
    }
    tx.commit().await.map_err(Error::from)?;
    let rows = rows
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1) as u64, r.get(2)))
        .collect();
    Ok(Some(KvSnapshot { version, rows }))
}

/// Writes `rows` of `space` (`None` deletes; the last row per key counts) in one transaction,
/// if the space is at version `expect`; the sequence numbers given to `rows`, in order, and the
/// space's new version.
pub async fn write(
    pool: &Pool,
    space: &str,
    rows: Vec<Row>,
    expect: i64,
) -> busbar_broker::Result<(Vec<u64>, i64)> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await.map_err(Error::from)?;
    let version: i64 = tx
        .query_one(
            "INSERT INTO kv_spaces (space, version) VALUES ($1, 1) ON CONFLICT (space) \
             DO UPDATE SET version = kv_spaces.version + 1 RETURNING version",
            &[&space],
        )
        .await
        .map_err(Error::from)?
        .get(0);
    if version != expect + 1 {
        // Rolled back when `tx` drops: the caller decided on an older copy.
        return Err(BrokerError::Storage(format!(
            "the cluster's {space} were changed on another broker at the same time; nothing \
             was written: try again"
        )));
    }
    let seqs: Vec<i64> = tx
        .query(
            "SELECT nextval('kv_seq') FROM generate_series(1, $1)",
            &[&(rows.len() as i32)],
        )
        .await
        .map_err(Error::from)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut seqs_sorted = seqs.clone();
    seqs_sorted.sort_unstable();
    // The last row per key, in key order (one statement may not touch a row twice).
    let mut last: BTreeMap<&[u8], (i64, Option<&[u8]>)> = BTreeMap::new();
    for ((key, value), seq) in rows.iter().zip(&seqs_sorted) {
        last.insert(key, (*seq, value.as_deref()));
    }
    let (mut keys, mut at, mut values, mut gone) = (vec![], vec![], vec![], vec![]);
    for (key, (seq, value)) in last {
        match value {
            Some(v) => {
                keys.push(key);
                at.push(seq);
                values.push(v);
            }
            None => gone.push(key),
        }
    }
    if !keys.is_empty() {
        tx.execute(
            "INSERT INTO kv_rows (space, key, seq, value) SELECT $1, * FROM \
             unnest($2::bytea[], $3::bigint[], $4::bytea[]) \
             ON CONFLICT (space, key) DO UPDATE SET seq = excluded.seq, value = excluded.value",
            &[&space, &keys, &at, &values],
        )
        .await
        .map_err(Error::from)?;
    }
    if !gone.is_empty() {
        tx.execute(
            "DELETE FROM kv_rows WHERE space = $1 AND key = ANY($2)",
            &[&space, &gone],
        )
        .await
        .map_err(Error::from)?;
    }
    tx.execute("SELECT pg_notify('busbar_kv', $1)", &[&space])
        .await
        .map_err(Error::from)?;
    tx.commit().await.map_err(Error::from)?;
    Ok((seqs_sorted.into_iter().map(|s| s as u64).collect(), version))
}

impl SharedKv for Cluster {
    fn load(
        &self,
        space: &str,
        unless: Option<i64>,
    ) -> BoxFuture<'_, busbar_broker::Result<Option<KvSnapshot>>> {
        let space = space.to_string();
        Box::pin(async move { bounded_b(load(&self.pool, &space, unless)).await })
    }

    fn write(
        &self,
        space: &str,
        rows: Vec<Row>,
        expect: i64,
    ) -> BoxFuture<'_, busbar_broker::Result<(Vec<u64>, i64)>> {
        let space = space.to_string();
        Box::pin(async move { bounded_b(write(&self.pool, &space, rows, expect)).await })
    }
}

#[cfg(test)]
mod tests {
    use super::{load, write};
    use crate::pg::Pg;
    use crate::pool::{connect, Pool};
    use busbar_testkit::postgres::TestPostgres;

    fn row(k: &str, v: Option<&str>) -> busbar_broker::kvlog::Row {
        (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec()))
    }

    /// On a real PostgreSQL: a write decided on an older version of the space is refused and
    /// changes nothing; the last row per key counts; deletes remove rows; a load answers `None`
    /// when the version is the one the caller has.
    #[tokio::test]
    async fn a_write_decided_on_a_stale_copy_is_refused_and_changes_nothing() {
        let pg = TestPostgres::start();
        let pg = Pg::new(&pg.create_db("kv"), None, None).unwrap();
        crate::migrate::apply(&mut connect(&pg).await.unwrap())
            .await
            .unwrap();
        let pool = Pool::new(pg, 2);
        let (seqs, v) = write(
            &pool,
            "users",
            vec![row("a", Some("1")), row("b", Some("1"))],
            0,
        )
        .await
        .unwrap();
        assert_eq!((seqs.len(), v), (2, 1));
        // Another broker, still at version 0, deletes "a": refused, nothing written.
        let stale = write(&pool, "users", vec![row("a", None)], 0).await;
        let err = stale.unwrap_err().to_string();
        assert!(err.contains("changed on another broker"), "{err}");
        let snap = load(&pool, "users", None).await.unwrap().unwrap();
        assert_eq!((snap.version, snap.rows.len()), (1, 2));
        assert!(load(&pool, "users", Some(1)).await.unwrap().is_none());
        // At the current version: the last row per key counts, a delete removes.
        let rows = vec![row("a", Some("2")), row("a", Some("3")), row("b", None)];
        let (_, v) = write(&pool, "users", rows, 1).await.unwrap();
        assert_eq!(v, 2);
        let snap = load(&pool, "users", Some(1)).await.unwrap().unwrap();
        let got: Vec<(Vec<u8>, Vec<u8>)> = snap.rows.into_iter().map(|(k, _, v)| (k, v)).collect();
        assert_eq!(got, vec![(b"a".to_vec(), b"3".to_vec())]);
        // Spaces are apart.
        assert_eq!(load(&pool, "acls", None).await.unwrap().unwrap().version, 0);
    }
}
