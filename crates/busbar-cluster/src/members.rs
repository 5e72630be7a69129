//! The live brokers and group leases (issue 20, increment 2).
//!
//! - **Brokers**: each registers its node id with a random instance token and heartbeats every
//!   [`HEARTBEAT_EVERY`]; a broker is live while its heartbeat is younger than [`BROKER_SESSION`]
//!   by the database's clock. A second process with the id of a live broker is refused (it waits
//!   one session first, so a broker restarted after kill -9 gets its id back).
//! - **Leases** (kind `group`: a consumer group's coordinator; kind `subscription`: the broker
//!   running a bus subscription): the holder is the broker with the row in `leases`. Taking one succeeds when it is free, expired (by the database's `now()`), or
//!   already ours; every heartbeat renews all of ours. A holder acts on a lease only until
//!   [`LEASE_TTL`] − [`LEASE_MARGIN`] after the renewal was sent, by its own monotonic clock, so
//!   it has stopped before the database lets anyone else take the lease, whatever the brokers'
//!   wall clocks say. The stated bound: a broker's monotonic clock must not run more than
//!   `LEASE_MARGIN / LEASE_TTL` (30 %) slower than the database's.

use crate::pool::Pool;
use crate::Error;
use busbar_broker::shared::{AdvertisedListener, Member};
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// How often a broker heartbeats (and renews its leases).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How long after its last heartbeat a broker counts as live (database clock).
pub const BROKER_SESSION_MS: i64 = 6_000;
/// How long a lease lasts after it is taken or renewed (database clock).
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How long before the database's expiry a holder stops acting on a lease.
pub const LEASE_MARGIN: Duration = Duration::from_secs(3);
/// Most leases one broker holds; past it new groups and subscriptions wait (retriable).
pub const LEASES_MAX: usize = 100_000;
/// A lease no request used for this long is not renewed (it lapses; the next request for the
/// group takes it again and reloads): leases are held for active groups only.
pub const LEASE_IDLE: Duration = Duration::from_secs(60);

/// A lease's kind and name.
type LeaseKey = (Kind, String);

/// What a lease is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The coordinator of a consumer group.
    Group,
    /// The broker running a bus subscription.
    Subscription,
    /// The broker uploading a range of partitions to the cold tier (`upload`).
    Upload,
    /// The coordinator of a transactional id (`txn`).
    Txn,
}

impl Kind {
    /// Its name in the `leases` table.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Group => "group",
            Kind::Subscription => "subscription",
            Kind::Upload => "upload",
            Kind::Txn => "txn",
        }
    }
}

/// One lease this broker may act on.
struct Held {
    /// Until when (monotonic): `LEASE_TTL - LEASE_MARGIN` after the request that took or renewed
    /// it was sent.
    until: Instant,
    /// When a request last used it.
    used: Instant,
}

/// This broker's view of the cluster's members and of its own leases.
pub struct Membership {
    pub node_id: i32,
    instance: String,
    kafka_host: String,
    kafka_port: u16,
    /// Every Kafka listener, in order (empty: only the first is known).
    listeners: Vec<AdvertisedListener>,
    http_addr: String,
    live: RwLock<Vec<Member>>,
    /// The leases this broker may act on, by (kind, name).
    leases: Mutex<HashMap<LeaseKey, Held>>,
    /// Set by [`Membership::leave`]: heartbeats stop.
    left: std::sync::atomic::AtomicBool,
    /// Heartbeats' own connection: a busy pool never delays them.
    beat: tokio::sync::Mutex<Option<Client>>,
    pg: crate::pg::Pg,
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

/// The `listeners` column: `PROTOCOL://host:port` per line. Read up to the first line that does
/// not (the listeners from there on are not offered, `Member::addr`), and only when its first
/// line is the row's `kafka_host:kafka_port` (else it was left by another process: ignored).
fn parse_listeners(column: &str, first: (&str, u16)) -> Vec<AdvertisedListener> {
    let mut out = Vec::new();
    for line in column.lines() {
        let parsed = line.split_once("://").and_then(|(protocol, addr)| {
            let (host, port) = addr.rsplit_once(':')?;
            Some(AdvertisedListener {
                protocol: protocol.to_string(),
                host: host.to_string(),
                port: port.parse().ok()?,
            })
        });
        match parsed {
            Some(l) => out.push(l),
            None => break,
        }
    }
    match out.first() {
        Some(l) if (l.host.as_str(), l.port) == first => out,
        _ => Vec::new(),
    }
}

impl Membership {
    /// This broker, not registered yet.
    pub fn new(
        pg: crate::pg::Pg,
        node_id: i32,
        kafka_host: &str,
        kafka_port: u16,
        http_addr: &str,
    ) -> Membership {
        Membership {
            node_id,
            instance: instance_token(),
            kafka_host: kafka_host.to_string(),
            kafka_port,
            listeners: Vec::new(),
            http_addr: http_addr.to_string(),
            live: RwLock::new(Vec::new()),
            leases: Mutex::new(HashMap::new()),
            beat: tokio::sync::Mutex::new(None),
            left: Default::default(),
            pg,
        }
    }

    /// Runs `f` on the heartbeat connection (opened again when it broke).
    async fn on_beat<T>(
        &self,
        f: impl AsyncFnOnce(&Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, Error> {
        let mut beat = self.beat.lock().await;
        // Out of the slot while in use: a call cut short by a timeout drops it with itself, and
        // the next one connects afresh instead of waiting on a stuck connection.
        let c = match beat.take().filter(|c| !c.is_closed()) {
            Some(c) => c,
            None => {
                let c = crate::pool::connect(&self.pg).await?;
                // A renewal never waits long for a row a commit holds: it fails and the next
                // beat renews (liveness goes on).
                c.batch_execute("SET lock_timeout = '500ms'").await?;
                c
            }
        };
        let r = f(&c).await;
        if r.is_ok() {
            *beat = Some(c);
        }
        Ok(r?)
    }

    /// The same broker with every Kafka listener's advertised address, in order (the first
    /// stays the one given to [`Membership::new`] when `listeners` is empty).
    pub fn with_listeners(mut self, listeners: Vec<AdvertisedListener>) -> Membership {
        self.listeners = listeners;
        self
    }

    /// `PROTOCOL://host:port` per line, as the `listeners` column holds them.
    fn listeners_column(&self) -> String {
        let lines: Vec<String> = (self.listeners.iter())
            .map(|l| format!("{}://{}:{}", l.protocol, l.host, l.port))
            .collect();
        lines.join("\n")
    }

    /// Registers this broker; waits up to one session for a dead predecessor's heartbeat to
    /// expire; refuses while another live process has the id.
    pub async fn register(&self) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_millis(BROKER_SESSION_MS as u64 + 2_000);
        loop {
            let row = self
                .on_beat(async |c| {
                    c.query_opt(
                    "INSERT INTO brokers (node_id, instance, kafka_host, kafka_port, http_addr, \
                     heartbeat_at, listeners, schema_version) \
                     VALUES ($1, $2, $3, $4, $5, now(), $7, $8) \
                     ON CONFLICT (node_id) DO UPDATE SET instance = excluded.instance, \
                     kafka_host = excluded.kafka_host, kafka_port = excluded.kafka_port, \
                     http_addr = excluded.http_addr, heartbeat_at = now(), \
                     listeners = excluded.listeners, schema_version = excluded.schema_version \
                     WHERE brokers.heartbeat_at < now() - $6 * interval '1 millisecond' \
                     RETURNING node_id",
                    &[
                        &self.node_id,
                        &self.instance,
                        &self.kafka_host,
                        &i32::from(self.kafka_port),
                        &self.http_addr,
                        &(BROKER_SESSION_MS as f64),
                        &self.listeners_column(),
                        &crate::migrate::latest(),
                    ],
                )
                .await
                })
                .await?;
            if row.is_some() {
                self.announce().await?;
                return self.refresh().await;
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
    pub async fn heartbeat(&self) -> Result<(), Error> {
        if self.left.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let mine = self
            .on_beat(async |c| {
                c.execute(
                    "UPDATE brokers SET heartbeat_at = now() WHERE node_id = $1 AND instance = $2",
                    &[&self.node_id, &self.instance],
                )
                .await
            })
            .await?;
        if mine == 0 {
            // Our leases may be another process's now: stop acting on any of them at once.
            self.leases
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
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
            self.register().await?;
        }
        self.refresh().await?;
        self.renew().await
    }

    /// Reads the live brokers again (each heartbeat, and when another broker announces a change).
    pub async fn refresh(&self) -> Result<(), Error> {
        let rows = self
            .on_beat(async |c| {
                c.query(
                    "SELECT node_id, kafka_host, kafka_port, listeners FROM brokers \
                     WHERE heartbeat_at > now() - $1 * interval '1 millisecond' ORDER BY node_id",
                    &[&(BROKER_SESSION_MS as f64)],
                )
                .await
            })
            .await?;
        let live = rows
            .iter()
            .map(|r| {
                let (host, port): (String, u16) = (r.get(1), r.get::<_, i32>(2) as u16);
                Member {
                    node_id: r.get(0),
                    listeners: parse_listeners(r.get(3), (&host, port)),
                    host,
                    port,
                }
            })
            .collect();
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = live;
        Ok(())
    }

    /// Renews the leases requests used lately; lets the idle ones lapse (deleted now, so another
    /// broker may take them at once).
    async fn renew(&self) -> Result<(), Error> {
        let sent = Instant::now();
        // Idle leases leave the map before their rows go: no request acts on one after.
        let (active, idle): (Vec<LeaseKey>, Vec<LeaseKey>) = {
            let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
            let idle: Vec<LeaseKey> = leases
                .iter()
                .filter(|(_, h)| h.used.elapsed() >= LEASE_IDLE)
                .map(|(g, _)| g.clone())
                .collect();
            for g in &idle {
                leases.remove(g);
            }
            (leases.keys().cloned().collect(), idle)
        };
        let ttl = LEASE_TTL.as_millis() as f64;
        let columns = |keys: &[LeaseKey]| -> (Vec<&'static str>, Vec<String>) {
            keys.iter().map(|(k, n)| (k.as_str(), n.clone())).unzip()
        };
        let (idle_kinds, idle_names) = columns(&idle);
        let (kinds, names) = columns(&active);
        let rows = self
            .on_beat(async |c| {
                if !idle.is_empty() {
                    c.execute(
                        "DELETE FROM leases WHERE (kind, name) IN \
                         (SELECT * FROM unnest($1::text[], $2::text[])) \
                         AND holder = $3 AND holder_instance = $4",
                        &[&idle_kinds, &idle_names, &self.node_id, &self.instance],
                    )
                    .await?;
                }
                c.query(
                    "UPDATE leases SET expires_at = now() + $5 * interval '1 millisecond' \
                     WHERE (kind, name) IN (SELECT * FROM unnest($1::text[], $2::text[])) \
                     AND holder = $3 AND holder_instance = $4 RETURNING kind, name",
                    &[&kinds, &names, &self.node_id, &self.instance, &ttl],
                )
                .await
            })
            .await?;
        let held: std::collections::HashSet<LeaseKey> = rows
            .iter()
            .filter_map(|r| {
                let kind = match r.get::<_, &str>(0) {
                    "group" => Kind::Group,
                    "subscription" => Kind::Subscription,
                    "upload" => Kind::Upload,
                    "txn" => Kind::Txn,
                    _ => return None,
                };
                Some((kind, r.get::<_, String>(1)))
            })
            .collect();
        let until = sent + LEASE_TTL - LEASE_MARGIN;
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        // Leases confirmed while this renewal ran (not in its list) are kept as they are.
        leases.retain(|g, _| held.contains(g) || !active.contains(g));
        for (g, h) in leases.iter_mut() {
            if held.contains(g) {
                h.until = h.until.max(until);
            }
        }
        Ok(())
    }

    /// Ends this broker's membership (a clean stop): its leases are deleted and it stops counting
    /// as live, so clients and groups move at once instead of after a session.
    pub async fn leave(&self) -> Result<(), Error> {
        self.left.store(true, std::sync::atomic::Ordering::Relaxed);
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.on_beat(async |c| {
            c.execute(
                "DELETE FROM leases WHERE holder = $1 AND holder_instance = $2",
                &[&self.node_id, &self.instance],
            )
            .await?;
            c.execute(
                "UPDATE brokers SET heartbeat_at = '-infinity' WHERE node_id = $1 AND instance = $2",
                &[&self.node_id, &self.instance],
            )
            .await
        })
        .await?;
        self.announce().await
    }

    /// Tells the other brokers the live set changed (`busbar_brokers`): they read it again at
    /// once instead of at their next heartbeat, so that no broker answers Metadata with a
    /// shorter list than its peers (librdkafka drops the brokers a Metadata response leaves
    /// out, with their requests in flight).
    async fn announce(&self) -> Result<(), Error> {
        self.on_beat(async |c| {
            c.execute("SELECT pg_notify('busbar_brokers', '')", &[])
                .await
        })
        .await?;
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
            listeners: self.listeners.clone(),
        });
        live.sort_by_key(|m| m.node_id);
        live
    }

    /// The live holder of lease `name` of `kind` (a group's or a transactional id's), else the
    /// live broker rendezvous hashing prefers.
    pub async fn coordinator(
        &self,
        pool: &Pool,
        kind: Kind,
        name: &str,
    ) -> Result<Option<i32>, Error> {
        let c = pool.get().await?;
        let row = c
            .query_opt(
                "SELECT l.holder FROM leases l JOIN brokers b ON b.node_id = l.holder \
                 WHERE l.kind = $3 AND l.name = $1 AND l.expires_at > now() \
                 AND b.heartbeat_at > now() - $2 * interval '1 millisecond'",
                &[&name, &(BROKER_SESSION_MS as f64), &kind.as_str()],
            )
            .await?;
        if let Some(r) = row {
            return Ok(Some(r.get(0)));
        }
        let ids: Vec<i32> = self.members().iter().map(|m| m.node_id).collect();
        Ok(busbar_broker::shared::rendezvous(name, &ids))
    }

    /// True when this broker may act on lease `name` of `kind` now (marks the lease used).
    pub fn holds(&self, kind: Kind, name: &str) -> bool {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        match leases.get_mut(&(kind, name.to_string())) {
            Some(h) if Instant::now() < h.until => {
                h.used = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// [`Membership::holds`] without marking the lease used.
    pub fn holds_quietly(&self, kind: Kind, name: &str) -> bool {
        let leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        leases
            .get(&(kind, name.to_string()))
            .is_some_and(|h| Instant::now() < h.until)
    }

    /// Takes lease `name` of `kind` in the database when it is free, expired or this process's:
    /// the time the request was sent, to [`Membership::confirm`] once the state is loaded, and
    /// whether another process held it last; `None` when another live process holds it.
    pub async fn take(
        &self,
        pool: &Pool,
        kind: Kind,
        name: &str,
    ) -> Result<Option<(Instant, bool)>, Error> {
        {
            let leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
            let key = (kind, name.to_string());
            if leases.len() >= LEASES_MAX && !leases.contains_key(&key) {
                return Err(Error::Busy(format!(
                    "this broker holds {LEASES_MAX} leases already"
                )));
            }
        }
        let sent = Instant::now();
        let c = pool.get().await?;
        let row = c
            .query_opt(
                "WITH before AS (SELECT holder_instance FROM leases \
                                 WHERE kind = $5 AND name = $1) \
                 INSERT INTO leases (kind, name, holder, holder_instance, expires_at) \
                 VALUES ($5, $1, $2, $3, now() + $4 * interval '1 millisecond') \
                 ON CONFLICT (kind, name) DO UPDATE SET holder = excluded.holder, \
                 holder_instance = excluded.holder_instance, expires_at = excluded.expires_at \
                 WHERE (leases.holder = excluded.holder \
                        AND leases.holder_instance = excluded.holder_instance) \
                    OR leases.expires_at < now() \
                 RETURNING (SELECT holder_instance FROM before)",
                &[
                    &name,
                    &self.node_id,
                    &self.instance,
                    &(LEASE_TTL.as_millis() as f64),
                    &kind.as_str(),
                ],
            )
            .await?;
        // Moved: another process held it last (its members and generation are not ours).
        Ok(row.map(|r| {
            let before: Option<String> = r.get(0);
            (sent, before.is_some_and(|b| b != self.instance))
        }))
    }

    /// Makes a lease taken at `sent` usable (its state is loaded).
    pub fn confirm(&self, kind: Kind, name: &str, sent: Instant) {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        leases.insert(
            (kind, name.to_string()),
            Held {
                until: sent + LEASE_TTL - LEASE_MARGIN,
                used: now,
            },
        );
    }

    /// Lease `name` of `kind` is not to be used here (its state could not be loaded).
    pub fn release(&self, kind: Kind, name: &str) {
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(kind, name.to_string()));
    }

    /// Gives lease `name` of `kind` up: no longer used here, and deleted in the database when
    /// this process holds it (another broker may take it at once).
    pub async fn give_up(&self, pool: &Pool, kind: Kind, name: &str) -> Result<(), Error> {
        self.release(kind, name);
        let c = pool.get().await?;
        c.execute(
            "DELETE FROM leases WHERE kind = $1 AND name = $2 AND holder = $3 \
             AND holder_instance = $4",
            &[&kind.as_str(), &name, &self.node_id, &self.instance],
        )
        .await?;
        Ok(())
    }

    /// Gives lease `name` of `kind` up after its local window ran out (a worker's watchdog):
    /// forgotten here for good (a late renewal must not make the stopped worker look held), and
    /// its row deleted only once the database's clock has it expired. So a give-up that comes
    /// late, after this process took the lease again, never deletes the new take's row (its
    /// expiry was pushed on): at worst this process stops using it, and it lapses and is taken
    /// again. Otherwise the row lapses by itself within [`LEASE_MARGIN`].
    pub async fn give_up_lapsed(&self, pool: &Pool, kind: Kind, name: &str) -> Result<(), Error> {
        self.release(kind, name);
        let c = pool.get().await?;
        c.execute(
            "DELETE FROM leases WHERE kind = $1 AND name = $2 AND holder = $3 \
             AND holder_instance = $4 AND expires_at <= now()",
            &[&kind.as_str(), &name, &self.node_id, &self.instance],
        )
        .await?;
        Ok(())
    }

    /// Whether the process with instance token `instance` is a live broker, asked of the
    /// database now (its heartbeat younger than a session by the database's clock; this
    /// process always is).
    pub async fn is_live(&self, pool: &Pool, instance: &str) -> Result<bool, Error> {
        if instance == self.instance {
            return Ok(true);
        }
        let c = pool.get().await?;
        let row = c
            .query_opt(
                "SELECT 1 FROM brokers WHERE instance = $1 \
                 AND heartbeat_at > now() - $2 * interval '1 millisecond'",
                &[&instance, &(BROKER_SESSION_MS as f64)],
            )
            .await?;
        Ok(row.is_some())
    }

    /// This process's instance token (the lease fence in `catalog::write_offsets`).
    pub fn instance(&self) -> &str {
        &self.instance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(protocol: &str, host: &str, port: u16) -> AdvertisedListener {
        AdvertisedListener {
            protocol: protocol.into(),
            host: host.into(),
            port,
        }
    }

    #[test]
    fn the_listeners_column_reads_strictly() {
        let col = "PLAINTEXT://10.0.0.1:9092\nSASL_SSL://[::1]:9094";
        let want = vec![
            l("PLAINTEXT", "10.0.0.1", 9092),
            l("SASL_SSL", "[::1]", 9094),
        ];
        assert_eq!(parse_listeners(col, ("10.0.0.1", 9092)), want);
        // Left by another process (its first is not the row's): ignored.
        assert!(parse_listeners(col, ("10.0.0.2", 9092)).is_empty());
        // Read up to the first line that does not.
        let bad = "PLAINTEXT://10.0.0.1:9092\nnonsense\nSSL://h:1";
        assert_eq!(parse_listeners(bad, ("10.0.0.1", 9092)).len(), 1);
        for hostile in [
            "",
            "\n",
            "PLAINTEXT://h:99999",
            "://:",
            "x".repeat(10_000).as_str(),
        ] {
            assert!(parse_listeners(hostile, ("h", 1)).is_empty(), "{hostile:?}");
        }
    }

    #[test]
    fn a_member_is_given_by_its_listener_of_the_same_place_and_protocol() {
        let m = Member {
            node_id: 2,
            host: "a".into(),
            port: 1,
            listeners: vec![
                l("PLAINTEXT", "a", 1),
                l("SASL_SSL", "a", 2),
                l("SSL", "a", 3),
            ],
        };
        assert_eq!(m.addr(1, "SASL_SSL"), ("a", 2));
        // Another order on the client's broker: the first of the same protocol.
        assert_eq!(m.addr(2, "SASL_SSL"), ("a", 2));
        assert_eq!(m.addr(0, "SSL"), ("a", 3));
        // No listener of that protocol (or none registered): its first.
        assert_eq!(m.addr(1, "SASL_PLAINTEXT"), ("a", 1));
        let old = Member {
            listeners: Vec::new(),
            ..m
        };
        assert_eq!(old.addr(1, "SASL_SSL"), ("a", 1));
    }
}

#[cfg(test)]
mod lease_tests {
    use super::*;
    use crate::pg::Pg;
    use crate::pool::connect;
    use busbar_testkit::postgres::TestPostgres;

    async fn rows(pool: &Pool) -> i64 {
        let c = pool.get().await.unwrap();
        c.query_one("SELECT count(*) FROM leases", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// On a real PostgreSQL: a give-up after a lapse that comes late, once this process holds
    /// the lease again, forgets it here but leaves its row; once the row has expired there, it
    /// deletes it. The plain give-up deletes at once.
    #[tokio::test]
    async fn a_late_give_up_after_a_lapse_leaves_the_row_of_a_new_take() {
        let server = TestPostgres::start();
        let pg = Pg::new(&server.create_db("leases"), None, None).unwrap();
        crate::migrate::apply(&mut connect(&pg).await.unwrap())
            .await
            .unwrap();
        let pool = Pool::new(pg.clone(), 2);
        let m = Membership::new(pg, 1, "127.0.0.1", 9092, "127.0.0.1:8080");
        let (kind, name) = (Kind::Subscription, "s");
        let (sent, _) = m.take(&pool, kind, name).await.unwrap().unwrap();
        m.confirm(kind, name, sent);
        m.give_up_lapsed(&pool, kind, name).await.unwrap();
        assert!(!m.holds(kind, name), "forgotten here for good");
        assert_eq!(
            rows(&pool).await,
            1,
            "but the row of a take made again is not deleted"
        );
        // Expired in the database: deleted.
        let c = pool.get().await.unwrap();
        c.execute(
            "UPDATE leases SET expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
        drop(c);
        m.give_up_lapsed(&pool, kind, name).await.unwrap();
        assert_eq!(rows(&pool).await, 0);
        // The deliberate give-up deletes a held lease at once.
        let (sent, _) = m.take(&pool, kind, name).await.unwrap().unwrap();
        m.confirm(kind, name, sent);
        m.give_up(&pool, kind, name).await.unwrap();
        assert!(!m.holds(kind, name));
        assert_eq!(rows(&pool).await, 0);
    }
}
