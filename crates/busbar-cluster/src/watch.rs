//! Keeps this broker's copies current: one connection `LISTEN`s on `busbar_data` (payload: one
//! line `<topic id> <partition> <next offset>` per partition of a commit) and `busbar_topics` (any catalog
//! change); an applier task catches the named partitions up and re-applies the catalog.
//!
//! `busbar_kv` (payload: a shared table's space, `kv.rs`) makes the applier load that table again.
//! `busbar_brokers` (a broker registered or left) makes it read the live brokers again;
//! `busbar_offsets` (payload: a group a committed transaction staged offsets for) makes the
//! group's coordinator apply them. `busbar_starts` (payload: lines `<topic id> <partition>
//! <start>`, DeleteRecords) makes the partitions' copies drop the records below the new start;
//! the poll reads every partition's start too (lost notifications, the objects' retention).
//!
//! A notification can be lost while the listening connection is down, so the applier also asks
//! the database for every partition's end: every [`crate::POLL_DOWN`] while the listener is down,
//! and every `poll_interval` always. A lost notification costs latency, never data (and fetches
//! past the local end catch up on their own, `busbar_broker::shared`).

use crate::pg::Pg;
use crate::{catalog, Cluster, POLL_DOWN};
use busbar_broker::Broker;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;

/// What the applier has to do: partitions to catch up (to at least the offset), and whether the
/// catalog changed. Bounded by the number of partitions.
#[derive(Default)]
struct Dirty {
    parts: Mutex<HashMap<(String, u32), u64>>,
    topics: AtomicBool,
    /// The live brokers changed (`busbar_brokers`).
    brokers: AtomicBool,
    /// Groups a committed transaction staged offsets for (`busbar_offsets`), at most
    /// [`GROUPS_MAX`] waiting (past it, or lost, the coordinator tick finds them within a
    /// second).
    groups: Mutex<std::collections::BTreeSet<String>>,
    /// Partitions whose start moved (`busbar_starts`, polls), to the start. Bounded by the
    /// number of partitions (unknown ones are dropped when applied).
    starts: Mutex<HashMap<(String, u32), u64>>,
    /// Shared tables (`kv.rs`) another broker changed, by space (only the known spaces).
    spaces: Mutex<std::collections::BTreeSet<&'static str>>,
    /// Shared tables whose last load failed (logged once).
    failing: Mutex<std::collections::BTreeSet<&'static str>>,
    /// Woken by `busbar_asks` (the bus serves the asks of the subscriptions it runs).
    asks: Arc<Notify>,
    /// Ask every partition's end now (the listener just (re)connected).
    poll_now: AtomicBool,
    listening: AtomicBool,
    wake: Notify,
}

impl Dirty {
    fn note(&self, channel: &str, payload: &str) {
        if channel == crate::asks::CHANNEL {
            // Not the applier's work: the bus's ticker serves asks at once.
            self.asks.notify_one();
            return;
        }
        if channel == "busbar_topics" {
            self.topics.store(true, Ordering::Relaxed);
        } else if channel == "busbar_brokers" {
            self.brokers.store(true, Ordering::Relaxed);
        } else if channel == "busbar_offsets" {
            // An empty payload, or one past the cap: the coordinator tick finds them.
            let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
            if !payload.is_empty() && groups.len() < GROUPS_MAX {
                groups.insert(payload.to_string());
            }
        } else if channel == crate::records::CHANNEL {
            let mut starts = self.starts();
            for (topic_id, partition, start) in payload.lines().filter_map(parse) {
                let at = starts.entry((topic_id, partition)).or_insert(0);
                *at = (*at).max(start);
            }
        } else if channel == "busbar_kv" {
            if let Some(space) = Broker::SHARED_SPACES.iter().find(|s| **s == payload) {
                self.spaces().insert(space);
            }
        } else {
            let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
            for (topic_id, partition, end) in payload.lines().filter_map(parse) {
                let at = parts.entry((topic_id, partition)).or_insert(0);
                *at = (*at).max(end);
            }
        }
        self.wake.notify_one();
    }
}

impl Dirty {
    fn spaces(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<&'static str>> {
        self.spaces.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn starts(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), u64>> {
        self.starts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failing(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<&'static str>> {
        self.failing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One line of a `busbar_data` payload, `<topic id> <partition> <next offset>`, or of a
/// `busbar_starts` one, `<topic id> <partition> <start>`.
fn parse(payload: &str) -> Option<(String, u32, u64)> {
    let mut it = payload.split(' ');
    let (t, p, e) = (
        it.next()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    );
    it.next().is_none().then(|| (t.to_string(), p, e))
}

/// Starts the listener and the applier (for the broker's life).
pub fn start(cluster: Arc<Cluster>, broker: Arc<Broker>) {
    let dirty = Arc::new(Dirty {
        asks: cluster.asks.clone(),
        ..Dirty::default()
    });
    tokio::spawn(listen(cluster.pg.clone(), dirty.clone()));
    tokio::spawn(apply(cluster, broker, dirty));
}

/// Most groups waiting for a reload of their offsets (`busbar_offsets`).
const GROUPS_MAX: usize = 10_000;

/// How long the applier waits to read the live brokers again after `busbar_brokers` (and a
/// group's offsets after `busbar_offsets`).
const BROKERS_WAIT: Duration = Duration::from_secs(2);

/// How long the listener waits before connecting again.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

async fn listen(pg: Pg, dirty: Arc<Dirty>) {
    loop {
        if let Err(e) = listen_once(&pg, &dirty).await {
            busbar_broker::log::warn(
                "busbar",
                "cluster_listen_lost",
                &format!(
                    "cluster: the notification connection failed ({e}); polling until it is back"
                ),
                &[],
            );
        }
        dirty.listening.store(false, Ordering::Relaxed);
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

async fn listen_once(pg: &Pg, dirty: &Arc<Dirty>) -> Result<(), crate::Error> {
    let (client, mut conn) = pg
        .connect_with(|c| {
            c.connect_timeout(Duration::from_secs(5));
            c.keepalives_idle(Duration::from_secs(10));
        })
        .await?;
    let d = dirty.clone();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => d.note(n.channel(), n.payload()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    client
        .batch_execute(
            "LISTEN busbar_data; LISTEN busbar_topics; LISTEN busbar_kv; LISTEN busbar_brokers; \
             LISTEN busbar_offsets; LISTEN busbar_starts; LISTEN busbar_asks",
        )
        .await?;
    // Whatever was committed while nobody listened: one poll now, and the catalog read again (a
    // topic created between the broker's start and this LISTEN was announced to nobody here).
    dirty.listening.store(true, Ordering::Relaxed);
    dirty.poll_now.store(true, Ordering::Relaxed);
    dirty.topics.store(true, Ordering::Relaxed);
    dirty.brokers.store(true, Ordering::Relaxed);
    dirty.wake.notify_one();
    match driver.await {
        Ok(Err(e)) => Err(e.into()),
        Ok(Ok(())) => Err(crate::Error::Config(
            "the server closed the connection".into(),
        )),
        Err(e) => Err(crate::Error::Config(format!("listener task: {e}"))),
    }
}

async fn apply(cluster: Arc<Cluster>, broker: Arc<Broker>, dirty: Arc<Dirty>) {
    // The first pass polls: whatever was committed before this broker listened.
    let mut last_poll: Option<tokio::time::Instant> = None;
    loop {
        let period = if dirty.listening.load(Ordering::Relaxed) {
            cluster.config.poll_interval
        } else {
            POLL_DOWN
        };
        // A deadline from the last poll, not from the last wake-up: a busy broker still polls.
        let due = last_poll.map_or_else(tokio::time::Instant::now, |at| at + period);
        tokio::select! {
            _ = dirty.wake.notified() => {}
            _ = tokio::time::sleep_until(due) => {}
        }
        if dirty.poll_now.swap(false, Ordering::Relaxed)
            || last_poll.is_none_or(|at| at.elapsed() >= period)
        {
            poll(&cluster, &dirty).await;
            last_poll = Some(tokio::time::Instant::now());
        }
        if dirty.topics.swap(false, Ordering::Relaxed) {
            let before = broker.catalog_writes();
            match catalog::topics(&cluster.pool).await {
                Ok(metas) => match broker.sync_topics(&metas, before).await {
                    // This broker wrote the catalog after the read: read it again (and ask
                    // every partition's end: the pass may have added topics already).
                    Ok(None) => {
                        dirty.topics.store(true, Ordering::Relaxed);
                        dirty.poll_now.store(true, Ordering::Relaxed);
                        dirty.wake.notify_one();
                    }
                    Ok(Some(false)) => {}
                    // New topics or partitions: their data may predate them here.
                    Ok(Some(true)) | Err(_) => {
                        dirty.poll_now.store(true, Ordering::Relaxed);
                        dirty.wake.notify_one();
                    }
                },
                Err(_) => dirty.topics.store(true, Ordering::Relaxed),
            }
        }
        if dirty.brokers.swap(false, Ordering::Relaxed) {
            // Briefly (the heartbeat's connection may be stuck; copies wait behind this): a
            // failure waits for the next heartbeat, which reads them too.
            let _ = tokio::time::timeout(BROKERS_WAIT, cluster.members.refresh()).await;
        }
        let parts = std::mem::take(&mut *dirty.parts.lock().unwrap_or_else(|e| e.into_inner()));
        for ((topic_id, partition), end) in parts {
            broker.shared_advanced(&topic_id, partition, end).await;
        }
        // After the ends: a copy caught up above drops what lies below its start at once.
        let starts = std::mem::take(&mut *dirty.starts());
        for ((topic_id, partition), start) in starts {
            broker.shared_started(&topic_id, partition, start).await;
        }
        // After the partitions: groups' offsets committed in transactions (a failure is left
        // for the coordinator tick, every second) and a table's reload (a query each, or a
        // wait behind a schema registration) never hold up catching copies up.
        let groups = std::mem::take(&mut *dirty.groups.lock().unwrap_or_else(|e| e.into_inner()));
        for g in groups {
            let _ = tokio::time::timeout(BROKERS_WAIT, broker.apply_txn_offsets(&g)).await;
        }
        let spaces = std::mem::take(&mut *dirty.spaces());
        for space in spaces {
            refresh(&broker, &dirty, space).await;
        }
    }
}

/// Loads shared table `space` again if it changed; a failure is logged (once until it works
/// again: this broker's copy of users or ACLs is then behind the cluster's) and retried on the
/// next wake-up or poll.
async fn refresh(broker: &Broker, dirty: &Dirty, space: &'static str) {
    let result = broker.refresh_table(space).await;
    let was_failing = dirty.failing().contains(space);
    match result {
        Ok(()) if was_failing => {
            dirty.failing().remove(space);
            let msg = format!("cluster: the shared table {space} loads again");
            busbar_broker::log::info("busbar", "cluster_table_loaded", &msg, &[]);
        }
        Ok(()) => {}
        Err(e) => {
            dirty.spaces().insert(space);
            if dirty.failing().insert(space) {
                let msg = format!(
                    "cluster: loading the shared table {space} failed ({e}); this broker acts on \
                     its last copy until it loads"
                );
                busbar_broker::log::warn("busbar", "cluster_table_load_failed", &msg, &[]);
            }
        }
    }
}

/// Asks the database for every partition's end, as notifications would say (and the catalog
/// while notifications are down).
async fn poll(cluster: &Cluster, dirty: &Dirty) {
    let Ok(c) = cluster.pool.get().await else {
        return;
    };
    let Ok(rows) = c
        .query(
            "SELECT topic_id, partition, next_offset, greatest(log_start, deleted_below) \
             FROM partitions",
            &[],
        )
        .await
    else {
        return;
    };
    let mut parts = dirty.parts.lock().unwrap_or_else(|e| e.into_inner());
    let mut starts = dirty.starts();
    for r in rows {
        let key = (r.get::<_, String>(0), r.get::<_, i32>(1) as u32);
        let (end, start) = (r.get::<_, i64>(2) as u64, r.get::<_, i64>(3) as u64);
        if start > 0 {
            let at = starts.entry(key.clone()).or_insert(0);
            *at = (*at).max(start);
        }
        let at = parts.entry(key).or_insert(0);
        *at = (*at).max(end);
    }
    drop(starts);
    if !dirty.listening.load(Ordering::Relaxed) {
        dirty.topics.store(true, Ordering::Relaxed);
    }
    // A load of a space that did not change is one version read.
    dirty.spaces().extend(Broker::SHARED_SPACES);
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn payloads_parse_strictly() {
        assert_eq!(parse("abc 3 17"), Some(("abc".into(), 3, 17)));
        for bad in ["", "abc", "abc 3", "abc x 1", "abc 1 -1", "abc 1 2 3"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
