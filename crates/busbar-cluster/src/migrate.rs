//! Schema migrations: the SQL files of `migrations/`, numbered, compiled into the binary and applied
//! at start in one transaction under a transaction-level advisory lock, so brokers starting together
//! apply each once. A database whose schema is newer than this binary knows is refused (an older
//! busbar must not write to tables it does not understand).

use crate::Error;
use tokio_postgres::Client;

/// (version, name, SQL), in order.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "hot_tier",
        include_str!("../migrations/001_hot_tier.sql"),
    ),
    (2, "members", include_str!("../migrations/002_members.sql")),
    (
        3,
        "subscriptions",
        include_str!("../migrations/003_subscriptions.sql"),
    ),
    (
        4,
        "cold_tier",
        include_str!("../migrations/004_cold_tier.sql"),
    ),
    (
        5,
        "shared_tables",
        include_str!("../migrations/005_shared_tables.sql"),
    ),
    (
        6,
        "retention",
        include_str!("../migrations/006_retention.sql"),
    ),
    (
        7,
        "transactions",
        include_str!("../migrations/007_transactions.sql"),
    ),
    (
        8,
        "delete_records",
        include_str!("../migrations/008_delete_records.sql"),
    ),
    (
        9,
        "bus_asks",
        include_str!("../migrations/009_bus_asks.sql"),
    ),
    (
        10,
        "listeners",
        include_str!("../migrations/010_listeners.sql"),
    ),
    (
        11,
        "object_compaction",
        include_str!("../migrations/011_object_compaction.sql"),
    ),
    (
        12,
        "delete_horizons",
        include_str!("../migrations/012_delete_horizons.sql"),
    ),
];

/// The advisory lock key migrations hold ("busbar" in ASCII).
const LOCK_KEY: i64 = 0x6275_7362_6172;

/// The newest schema version this binary knows.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Brings the database to [`latest`]; answers the versions applied now.
pub async fn apply(client: &mut Client) -> Result<Vec<i32>, Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS busbar_migrations (version integer PRIMARY KEY, \
         name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let have: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM busbar_migrations",
            &[],
        )
        .await?
        .get(0);
    if have > latest() {
        return Err(Error::Config(format!(
            "the database's busbar schema is version {have}, newer than this busbar knows ({}); \
             run a busbar at least as new as the one that upgraded it",
            latest()
        )));
    }
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > have) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO busbar_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        applied.push(*version);
    }
    tx.commit().await?;
    Ok(applied)
}
