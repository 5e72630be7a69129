//! The live brokers and group leases (issue 20, increment 2).
//!
//! - **Brokers**: each registers its node id with a random instance token and heartbeats every
//!   [`HEARTBEAT_EVERY`]; a broker is live while its heartbeat is younger than [`BROKER_SESSION`]
//!   by the database's clock. A second process with the id of a live broker is refused (it waits
//!   one session first, so a broker restarted after kill -9 gets its id back).
//! - **Group leases**: the coordinator of a consumer group is the broker holding the group's row
//!   in `leases`. Taking one succeeds when it is free, expired (by the database's `now()`), or
//!   already ours; every heartbeat renews all of ours. A holder acts on a lease only until
//!   [`LEASE_TTL`] − [`LEASE_MARGIN`] after the renewal was sent, by its own monotonic clock, so
//!   it has stopped before the database lets anyone else take the lease, whatever the brokers'
//!   wall clocks say. The stated bound: a broker's monotonic clock must not run more than
//!   `LEASE_MARGIN / LEASE_TTL` (30 %) slower than the database's.

use crate::pool::Pool;
use crate::Error;
use busbar_broker::shared::Member;
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// How often a broker heartbeats (and renews its leases).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How long after its last heartbeat a broker counts as live (database clock).
pub const BROKER_SESSION_MS: i64 = 6_000;
/// How long a lease lasts after it is taken or renewed (database clock).
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How long before the database's expiry a holder stops acting on a lease.
pub const LEASE_MARGIN: Duration = Duration::from_secs(3);
/// Most group leases one broker holds; past it new groups are refused (retriable).
pub const LEASES_MAX: usize = 100_000;

/// This broker's view of the cluster's members and of its own leases.
pub struct Membership {
    pub node_id: i32,
    instance: String,
    kafka_host: String,
    kafka_port: u16,
    http_addr: String,
    live: RwLock<Vec<Member>>,
    /// Group → until when this broker may act as its coordinator (monotonic).
    leases: Mutex<HashMap<String, Instant>>,
}

fn instance_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

impl Membership {
    /// This broker, not registered yet.
    pub fn new(node_id: i32, kafka_host: &str, kafka_port: u16, http_addr: &str) -> Membership {
        Membership {
            node_id,
            instance: instance_token(),
            kafka_host: kafka_host.to_string(),
            kafka_port,
            http_addr: http_addr.to_string(),
            live: RwLock::new(Vec::new()),
            leases: Mutex::new(HashMap::new()),
        }
    }

    /// Registers this broker; waits up to one session for a dead predecessor's heartbeat to
    /// expire; refuses while another live process has the id.
    pub async fn register(&self, pool: &Pool) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_millis(BROKER_SESSION_MS as u64 + 1_000);
        loop {
            let c = pool.get().await?;
            let row = c
                .query_opt(
                    "INSERT INTO brokers (node_id, instance, kafka_host, kafka_port, http_addr, \
                     heartbeat_at) VALUES ($1, $2, $3, $4, $5, now()) \
                     ON CONFLICT (node_id) DO UPDATE SET instance = excluded.instance, \
                     kafka_host = excluded.kafka_host, kafka_port = excluded.kafka_port, \
                     http_addr = excluded.http_addr, heartbeat_at = now() \
                     WHERE brokers.heartbeat_at < now() - $6 * interval '1 millisecond' \
                     RETURNING node_id",
                    &[
                        &self.node_id,
                        &self.instance,
                        &self.kafka_host,
                        &i32::from(self.kafka_port),
                        &self.http_addr,
                        &(BROKER_SESSION_MS as f64),
                    ],
                )
                .await?;
            drop(c);
            if row.is_some() {
                return self.refresh(pool).await;
            }
            if Instant::now() >= deadline {
                return Err(Error::Config(format!(
                    "node id {} is used by a live broker (its heartbeat is younger than {} ms); \
                     give each broker its own cluster.node_id",
                    self.node_id, BROKER_SESSION_MS
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// One heartbeat: says this broker is alive, reads the live brokers, renews the leases.
    pub async fn heartbeat(&self, pool: &Pool) -> Result<(), Error> {
        let c = pool.get().await?;
        let mine = c
            .execute(
                "UPDATE brokers SET heartbeat_at = now() WHERE node_id = $1 AND instance = $2",
                &[&self.node_id, &self.instance],
            )
            .await?;
        drop(c);
        if mine == 0 {
            busbar_broker::log::error(
                "busbar",
                "cluster_node_id_taken",
                &format!(
                    "cluster: node id {} was taken over by another process (this broker was \
                     silent longer than {BROKER_SESSION_MS} ms); registering again",
                    self.node_id
                ),
                &[],
            );
            self.register(pool).await?;
        }
        self.refresh(pool).await?;
        self.renew(pool).await
    }

    async fn refresh(&self, pool: &Pool) -> Result<(), Error> {
        let c = pool.get().await?;
        let rows = c
            .query(
                "SELECT node_id, kafka_host, kafka_port FROM brokers \
                 WHERE heartbeat_at > now() - $1 * interval '1 millisecond' ORDER BY node_id",
                &[&(BROKER_SESSION_MS as f64)],
            )
            .await?;
        let live = rows
            .iter()
            .map(|r| Member {
                node_id: r.get(0),
                host: r.get(1),
                port: r.get::<_, i32>(2) as u16,
            })
            .collect();
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = live;
        Ok(())
    }

    async fn renew(&self, pool: &Pool) -> Result<(), Error> {
        let sent = Instant::now();
        let c = pool.get().await?;
        let rows = c
            .query(
                "UPDATE leases SET expires_at = now() + $2 * interval '1 millisecond' \
                 WHERE kind = 'group' AND holder = $1 RETURNING name",
                &[&self.node_id, &(LEASE_TTL.as_millis() as f64)],
            )
            .await?;
        let held: std::collections::HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
        let until = sent + LEASE_TTL - LEASE_MARGIN;
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        leases.retain(|g, _| held.contains(g));
        for v in leases.values_mut() {
            *v = until;
        }
        Ok(())
    }

    /// The live brokers (this one at least, before the first read).
    pub fn members(&self) -> Vec<Member> {
        let live = self.live.read().unwrap_or_else(|e| e.into_inner()).clone();
        if live.iter().any(|m| m.node_id == self.node_id) {
            return live;
        }
        let mut live = live;
        live.push(Member {
            node_id: self.node_id,
            host: self.kafka_host.clone(),
            port: self.kafka_port,
        });
        live.sort_by_key(|m| m.node_id);
        live
    }

    /// The live holder of `group`'s lease, else the live broker rendezvous hashing prefers.
    pub async fn coordinator(&self, pool: &Pool, group: &str) -> Result<Option<i32>, Error> {
        let c = pool.get().await?;
        let row = c
            .query_opt(
                "SELECT l.holder FROM leases l JOIN brokers b ON b.node_id = l.holder \
                 WHERE l.kind = 'group' AND l.name = $1 AND l.expires_at > now() \
                 AND b.heartbeat_at > now() - $2 * interval '1 millisecond'",
                &[&group, &(BROKER_SESSION_MS as f64)],
            )
            .await?;
        if let Some(r) = row {
            return Ok(Some(r.get(0)));
        }
        let ids: Vec<i32> = self.members().iter().map(|m| m.node_id).collect();
        Ok(busbar_broker::shared::rendezvous(group, &ids))
    }

    /// Takes or keeps `group`'s lease (see [`busbar_broker::shared::SharedLog::coordinate`]).
    pub async fn coordinate(&self, pool: &Pool, group: &str) -> Result<Option<bool>, Error> {
        {
            let leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
            if leases
                .get(group)
                .is_some_and(|until| Instant::now() < *until)
            {
                return Ok(Some(false));
            }
            if leases.len() >= LEASES_MAX && !leases.contains_key(group) {
                return Err(Error::Config(format!(
                    "this broker coordinates {LEASES_MAX} groups already"
                )));
            }
        }
        let sent = Instant::now();
        let c = pool.get().await?;
        let row = c
            .query_opt(
                "INSERT INTO leases (kind, name, holder, expires_at) \
                 VALUES ('group', $1, $2, now() + $3 * interval '1 millisecond') \
                 ON CONFLICT (kind, name) DO UPDATE SET holder = excluded.holder, \
                 expires_at = excluded.expires_at \
                 WHERE leases.holder = excluded.holder OR leases.expires_at < now() \
                 RETURNING holder",
                &[&group, &self.node_id, &(LEASE_TTL.as_millis() as f64)],
            )
            .await?;
        if row.is_none() {
            return Ok(None);
        }
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        leases.insert(group.to_string(), sent + LEASE_TTL - LEASE_MARGIN);
        Ok(Some(true))
    }
}
