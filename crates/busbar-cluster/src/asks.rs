//! Work one broker asks of the broker that runs a subscription (`busbar_bus::ask`): only the
//! holder of a subscription's lease may write its state, so a replay started, a replay
//! cancelled or letters redriven on another broker are asked of it through `bus_asks`.
//!
//! The asker inserts a row (announced on [`CHANNEL`]) and polls it; the holder takes the open
//! asks of the subscriptions it runs when one is announced and on each of its ticks (once a
//! second, for announcements lost), one at a time, and writes the answer. An ask
//! nobody took within the asker's wait is withdrawn (deleted while still untaken: it was not
//! done); a row older than that is never taken, by the database's clock (so an asker that went
//! away, or could not delete its row, leaves nothing that is done later). One taken is waited
//! for up to [`TAKEN_WAIT`]; past it the asker says it may have been done. Bounds: at most
//! [`ASKS_OPEN_MAX`] untaken asks per subscription at a time (an ask past it is refused), rows
//! older than [`ASK_ROWS_KEPT`] (their asker died) are deleted by the minute pass, and an asker
//! looks at its row every 50 ms at first, then less often (at most every 500 ms).

use crate::pool::Pool;
use crate::{bounded_b, Error};
use busbar_broker::BrokerError;
use std::time::{Duration, Instant};

type Result<T> = busbar_broker::Result<T>;

/// The channel an ask is announced on (payload: its subscription), so its runner serves it at
/// once rather than on its next tick.
pub const CHANNEL: &str = "busbar_asks";

/// Most asks of one subscription waiting to be taken at a time.
pub const ASKS_OPEN_MAX: i64 = 64;
/// How long an asker waits for the answer of an ask once a broker took it.
pub const TAKEN_WAIT: Duration = Duration::from_secs(30);
/// How often an asker looks at its ask at first, and at most.
const POLL: (Duration, Duration) = (Duration::from_millis(50), Duration::from_millis(500));
/// How long rows stay at most (an asker that died leaves its row).
pub const ASK_ROWS_KEPT: &str = "2 minutes";

fn db(e: tokio_postgres::Error) -> BrokerError {
    Error::from(e).into()
}

/// Stores the ask, which waits `wait_ms` at most; its id (`PolicyViolation` past
/// [`ASKS_OPEN_MAX`]).
async fn insert(pool: &Pool, sub: &str, body: &[u8], wait_ms: f64) -> Result<i64> {
    let c = pool.get().await?;
    let made = c
        .query_opt(
            "WITH made AS (INSERT INTO bus_asks (sub, body) SELECT $1, $2 \
             WHERE (SELECT count(*) FROM bus_asks WHERE sub = $1 AND taken_by IS NULL \
             AND made_at > now() - $4 * interval '1 millisecond') < $3 RETURNING id) \
             SELECT id, pg_notify('busbar_asks', $1) FROM made",
            &[&sub, &body, &ASKS_OPEN_MAX, &(wait_ms)],
        )
        .await
        .map_err(db)?;
    made.map(|r| r.get(0)).ok_or_else(|| {
        BrokerError::PolicyViolation(format!(
            "{ASKS_OPEN_MAX} requests for subscription {sub:?} are waiting for its broker; \
             try again later"
        ))
    })
}

/// Where an ask is: gone, taken or not, and its answer.
async fn look(pool: &Pool, id: i64) -> Result<Option<(bool, Option<Vec<u8>>)>> {
    let c = pool.get().await?;
    let row = c
        .query_opt(
            "SELECT taken_by IS NOT NULL, answer FROM bus_asks WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(db)?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Deletes ask `id`; `untaken_only`: only while no broker took it. Whether a row went.
async fn remove(pool: &Pool, id: i64, untaken_only: bool) -> Result<bool> {
    let c = pool.get().await?;
    let sql = if untaken_only {
        "DELETE FROM bus_asks WHERE id = $1 AND taken_by IS NULL"
    } else {
        "DELETE FROM bus_asks WHERE id = $1"
    };
    Ok(c.execute(sql, &[&id]).await.map_err(db)? == 1)
}

/// Asks the holder of `sub` to do `body`; its answer, or `None` when no broker took it within
/// `wait` (withdrawn: not done).
pub async fn ask(pool: &Pool, sub: &str, body: Vec<u8>, wait: Duration) -> Result<Option<Vec<u8>>> {
    let id = bounded_b(insert(pool, sub, &body, wait.as_secs_f64() * 1000.0)).await?;
    let asked = Instant::now();
    let mut taken_at: Option<Instant> = None;
    let mut poll = POLL.0;
    loop {
        tokio::time::sleep(poll).await;
        poll = (poll * 3 / 2).min(POLL.1);
        let seen = match bounded_b(look(pool, id)).await {
            Ok(seen) => seen,
            Err(e) => {
                // A store that stopped answering: withdraw if possible, else say what is known.
                let _ = bounded_b(remove(pool, id, taken_at.is_none())).await;
                return Err(e);
            }
        };
        match seen {
            None => {
                return Err(BrokerError::Storage(format!(
                    "the request for subscription {sub:?} was dropped before it was answered; \
                     it may have been done"
                )))
            }
            Some((_, Some(answer))) => {
                let _ = bounded_b(remove(pool, id, false)).await;
                return Ok(Some(answer));
            }
            Some((true, None)) => {
                let since = *taken_at.get_or_insert_with(Instant::now);
                if since.elapsed() >= TAKEN_WAIT {
                    let _ = bounded_b(remove(pool, id, false)).await;
                    return Err(BrokerError::Storage(format!(
                        "the broker running subscription {sub:?} took the request but did not \
                         answer within {TAKEN_WAIT:?}; it may have been done"
                    )));
                }
            }
            Some((false, None)) if asked.elapsed() >= wait => {
                if bounded_b(remove(pool, id, true)).await? {
                    return Ok(None);
                }
                // Taken just now: wait for its answer.
            }
            Some((false, None)) => {}
        }
    }
}

/// Takes the oldest open ask of `subs` younger than `fresh` (its asker still waits for it to
/// be taken): (id, subscription, body).
pub async fn take(
    pool: &Pool,
    instance: &str,
    subs: &[String],
    fresh: Duration,
) -> Result<Option<(i64, String, Vec<u8>)>> {
    let c = pool.get().await?;
    let fresh_ms = fresh.as_secs_f64() * 1000.0;
    let row = c
        .query_opt(
            "UPDATE bus_asks SET taken_by = $1 WHERE id = (SELECT id FROM bus_asks \
             WHERE taken_by IS NULL AND sub = ANY($2) \
             AND made_at > now() - $3 * interval '1 millisecond' ORDER BY id LIMIT 1 \
             FOR UPDATE SKIP LOCKED) RETURNING id, sub, body",
            &[&instance, &subs, &fresh_ms],
        )
        .await
        .map_err(db)?;
    Ok(row.map(|r| (r.get(0), r.get(1), r.get(2))))
}

/// Writes the answer of ask `id` (gone: its asker stopped waiting; nothing to do).
pub async fn answer(pool: &Pool, id: i64, answer: &[u8]) -> Result<()> {
    let c = pool.get().await?;
    c.execute(
        "UPDATE bus_asks SET answer = $2 WHERE id = $1",
        &[&id, &answer],
    )
    .await
    .map_err(db)?;
    Ok(())
}

/// Deletes rows older than [`ASK_ROWS_KEPT`].
pub async fn expire(pool: &Pool) -> std::result::Result<u64, Error> {
    let c = pool.get().await?;
    let sql = format!("DELETE FROM bus_asks WHERE made_at < now() - interval '{ASK_ROWS_KEPT}'");
    Ok(c.execute(&sql, &[]).await?)
}
