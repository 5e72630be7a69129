//! `busbar serve`: opens the broker, serves HTTP, runs background work, and on SIGINT/SIGTERM stops
//! accepting, finishes in-flight requests, syncs every log and marks a clean shutdown. Both
//! listeners are bound before the data directory is touched, so an address that cannot be had
//! ([`Unbindable`], exit 2) leaves no trace.

use anyhow::{Context, Result};
use busbar::config::Config;
use busbar_broker::log;
use busbar_broker::Broker;
use busbar_bus::Bus;
use busbar_schema::Registry;
use std::sync::Arc;
use tokio::sync::watch;

/// SIGINT and SIGTERM handlers, installed before the ready line is printed: a signal sent as soon
/// as the line is read must find them (before it, the default action kills the process uncleanly).
fn stop_signals() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// A listen address that could not be bound (in use, not local, no permission): a configuration
/// error, reported before anything else happens.
#[derive(Debug)]
pub struct Unbindable(String);

impl std::fmt::Display for Unbindable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unbindable {}

/// `[tls]` names a file that cannot be read, holds no usable PEM, or a key that does not fit
/// its certificate: a configuration error (exit 2).
#[derive(Debug)]
pub struct BadTls(String);

impl std::fmt::Display for BadTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadTls {}

/// Authentication is on and the ACL or users log holds damage: the rows after it (an
/// acknowledged DENY, a tombstone) would be silently missing, so the start is refused (exit 2)
/// unless `--accept-damaged-acls` accepts the loss.
#[derive(Debug)]
pub struct DamagedAuth(String);

impl std::fmt::Display for DamagedAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DamagedAuth {}

/// Refuses a start with authentication on and a damaged ACL or users log (fail closed), unless
/// `accept` (the `--accept-damaged-acls` flag).
fn refuse_damaged_auth(broker: &Broker, data_dir: &std::path::Path, accept: bool) -> Result<()> {
    let auth = broker.auth();
    let damage: Vec<String> = broker
        .internal_damage()
        .into_iter()
        .filter(|d| d.starts_with("ACL log") || d.starts_with("users log"))
        .collect();
    if !auth.enabled() || damage.is_empty() || accept {
        return Ok(());
    }
    Err(DamagedAuth(format!(
        "auth.enabled is true and the ACL or users log is damaged ({}): rows after the damage \
         (ACLs, DENYs, deletions, users) are lost, so serving would decide without them. Start \
         with --accept-damaged-acls to serve with what remains and check it (busbar acl list), \
         or delete {}/internal/acls (every ACL) and re-create the ACLs (docs/security.md)",
        damage.join("; "),
        data_dir.display()
    ))
    .into())
}

/// Authentication is on, no user exists and `BUSBAR_ADMIN_PASSWORD` is not set: a configuration
/// error (exit 2).
#[derive(Debug)]
pub struct NoAdmin;

impl std::fmt::Display for NoAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "auth.enabled is true and no user exists: set BUSBAR_ADMIN_PASSWORD to create the \
             super user \"admin\" on this first start",
        )
    }
}

impl std::error::Error for NoAdmin {}

/// The user made on the first start with authentication on.
const ADMIN: &str = "admin";

/// With authentication on and a users log never written (the first start), creates `admin` from
/// `BUSBAR_ADMIN_PASSWORD` (a super user when `auth.super_users` names it; a warning says so
/// otherwise). Deleting every user later does not make it come back (a warning says no one can
/// log in with a password).
async fn bootstrap_admin(broker: &Broker) -> Result<()> {
    let auth = broker.auth();
    if auth.enabled() && auth.users().is_empty() && !auth.users().fresh() {
        let msg = "auth.enabled is true and every user was deleted: no one can log in with a \
                   password (BUSBAR_ADMIN_PASSWORD applies only to the first start; see \
                   docs/security.md)";
        log::warn("busbar", "no_users", msg, &[]);
    }
    if !auth.enabled() || !auth.users().fresh() {
        return Ok(());
    }
    let Ok(password) = std::env::var("BUSBAR_ADMIN_PASSWORD") else {
        return Err(NoAdmin.into());
    };
    auth.set_password(ADMIN, &password)
        .await
        .context("create user admin from BUSBAR_ADMIN_PASSWORD")?;
    if !auth.is_super(ADMIN) {
        let msg = "user \"admin\" created, but auth.super_users does not name it: add it to \
                   manage users";
        log::warn("busbar", "admin_created", msg, &[]);
    } else {
        let msg = "created super user \"admin\" from BUSBAR_ADMIN_PASSWORD";
        log::info("busbar", "admin_created", msg, &[]);
    }
    Ok(())
}

async fn bind(what: &str, key: &str, addr: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Unbindable(format!("cannot listen for {what} on {addr} ({key}): {e}")).into())
}

/// The schema registry's own listener: `None` when `schema_registry.addr` is empty, or when the
/// default address (not one configured) is in use, which is logged: the registry is still served
/// under `/schema-registry/` on the HTTP API (so several default instances can share a machine).
async fn bind_schema_registry(addr: &str) -> Result<Option<tokio::net::TcpListener>> {
    if addr.is_empty() {
        return Ok(None);
    }
    let default = busbar::schema_config::SchemaRegistrySection::default().addr;
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Ok(Some(l)),
        Err(e) if addr == default && e.kind() == std::io::ErrorKind::AddrInUse => {
            let msg = format!("the schema registry's default address {addr} is in use ({e}); serving it only under /schema-registry/ on the HTTP API (set schema_registry.addr)");
            log::warn("busbar", "schema_registry_addr_in_use", &msg, &[]);
            Ok(None)
        }
        Err(e) => Err(Unbindable(format!(
            "cannot listen for the schema registry on {addr} (schema_registry.addr): {e}"
        ))
        .into()),
    }
}

/// The bus's schema hook (issue 17): patterns and transforms see schema-framed values by their
/// decoded content, and topic targets may encode; both by the broker's enforcer (one cache of parsed schemas, the registry's codec
/// limits). `dataschema` names the schema on the registry's own listener when there is one,
/// else under `/schema-registry/` on the HTTP API.
fn schema_decoder(
    enforcer: Arc<busbar_schema::enforce::Enforcer>,
    sr: Option<&tokio::net::TcpListener>,
    http: &tokio::net::TcpListener,
    https: bool,
) -> busbar_bus::decode::Decoder {
    let scheme = if https { "https" } else { "http" };
    let base = match sr.and_then(|l| l.local_addr().ok()) {
        Some(a) => format!("{scheme}://{a}/schemas/ids/"),
        None => match http.local_addr() {
            Ok(a) => format!("{scheme}://{a}/schema-registry/schemas/ids/"),
            Err(_) => "/schema-registry/schemas/ids/".into(),
        },
    };
    let encode = Arc::new(SchemaEncode(enforcer.clone()));
    busbar_bus::decode::Decoder::new(base, move |v: &[u8]| enforcer.decode_json(v).ok())
        .with_encoder(encode)
}

/// Topic targets with `encode` encode through the broker's enforcer (the same schemas and
/// limits as HTTP publish with `?schema=`).
struct SchemaEncode(Arc<busbar_schema::enforce::Enforcer>);

impl busbar_bus::decode::Encode for SchemaEncode {
    fn resolve(&self, subject: &str, schema: &str) -> Result<u32, String> {
        self.0.resolve(subject, schema)
    }

    fn check(&self, id: u32, message: Option<&str>) -> Result<(), String> {
        self.0.check_encoding(id, message)
    }

    fn encode(
        &self,
        id: u32,
        message: Option<&str>,
        value: &serde_json::Value,
    ) -> Result<Vec<u8>, String> {
        self.0.encode_json(id, value, message)
    }
}

/// A data directory that does not exist yet or holds nothing: this start is its first.
fn first_start(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut entries| entries.next().is_none())
}

/// What the ready line says of the start: first, clean, or recovered after a crash.
fn recovery_summary(broker: &Broker, first: bool) -> String {
    let r = broker.recovery_summary();
    if first {
        "first start, new data directory".into()
    } else if r.clean == r.partitions {
        format!("clean start, {} partitions", r.partitions)
    } else {
        format!(
            "recovered {} of {} partitions after a crash: scanned {} bytes, cut {} torn bytes, {} damaged segments",
            r.partitions - r.clean,
            r.partitions,
            r.scanned_bytes,
            r.truncated_bytes,
            r.damaged_segments
        )
    }
}

/// Runs until a signal, then shuts down cleanly.
/// `accept_damaged_acls`: serve even when the ACL or users log is damaged (see [`DamagedAuth`]).
pub fn run(config: Config, accept_damaged_acls: bool) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start runtime")?;
    rt.block_on(serve(config, accept_damaged_acls))
}

/// How this broker is reached, for the cluster's `brokers` table: the first Kafka listener's
/// advertised address and the HTTP address.
fn advertised(
    config: &Config,
    kafka: &[(tokio::net::TcpListener, busbar_kafka::Listener)],
    http: &tokio::net::TcpListener,
) -> Result<busbar_cluster::Advertised> {
    let (_, first) = kafka.first().context("no Kafka listener")?;
    for (_, l) in kafka {
        let host: Option<std::net::IpAddr> = l.advertised_host.parse().ok();
        if l.advertised_host.is_empty() || host.is_some_and(|ip| ip.is_unspecified()) {
            anyhow::bail!(
                "cluster mode: a Kafka listener is bound to {:?} and advertises it; other \
                 brokers' clients cannot reach that address: set kafka.advertised_host",
                l.advertised_host
            );
        }
    }
    Ok(busbar_cluster::Advertised {
        node_id: config.cluster.node_id as i32,
        kafka_host: first.advertised_host.clone(),
        kafka_port: first.advertised_port,
        listeners: (kafka.iter())
            .map(|(_, l)| busbar_broker::shared::AdvertisedListener {
                protocol: l.security.name().to_string(),
                host: l.advertised_host.clone(),
                port: l.advertised_port,
            })
            .collect(),
        http_addr: http
            .local_addr()
            .context("HTTP listener address")?
            .to_string(),
    })
}

async fn serve(config: Config, accept_damaged_acls: bool) -> Result<()> {
    let started = std::time::Instant::now();
    log::set_format(config.log.format()?);
    let tracer = config.tracing.install()?;
    if let Some(w) = busbar_kafka::alloc::overcommit_warning() {
        log::warn("busbar", "overcommit", &w, &[]);
    }
    let tls = config.tls.load().map_err(|e| BadTls(format!("{e:#}")))?;
    let listener = bind("HTTP", "http.addr", &config.http.addr).await?;
    let sr_listener = bind_schema_registry(&config.schema_registry.addr).await?;
    let specs = config.listeners()?;
    let mut kafka_listeners = Vec::with_capacity(specs.len());
    for (place, spec) in specs.iter().enumerate() {
        let l = bind("Kafka", "kafka.listeners", &spec.addr).await?;
        let bound = l.local_addr().context("Kafka listener address")?;
        let info = busbar_kafka::Listener {
            place,
            ..config.listener(spec.security, bound)
        };
        kafka_listeners.push((l, info));
    }
    if !config.cluster.enabled() {
        busbar::cluster_config::refuse_cluster_copy(&config.data_dir)?;
    }
    let first = first_start(&config.data_dir);
    let data_dir = config.data_dir.clone();
    let broker_config = config.broker_config();
    let broker = tokio::task::spawn_blocking(move || Broker::open(broker_config))
        .await?
        .with_context(|| format!("open data directory {}", data_dir.display()))?;
    let broker = Arc::new(broker);
    let mut cluster = None;
    let checked = match refuse_damaged_auth(&broker, &config.data_dir, accept_damaged_acls) {
        Ok(()) if config.cluster.enabled() => {
            let me = advertised(&config, &kafka_listeners, &listener)?;
            match busbar::cluster_config::join(&broker, &config.cluster, me).await {
                Ok(c) => {
                    cluster = Some(c);
                    bootstrap_admin(&broker).await
                }
                Err(e) => Err(e),
            }
        }
        Ok(()) => bootstrap_admin(&broker).await,
        refused => refused,
    };
    if let Err(e) = checked {
        // Nothing was served: close cleanly so the next start needs no recovery.
        let b = broker.clone();
        let _ = tokio::task::spawn_blocking(move || b.close()).await;
        return Err(e);
    }
    // Taken before the configured subscriptions create their topics: those are new, not recovered.
    let recovery = recovery_summary(&broker, first);
    // The registry's check is installed before anything writes: the bus's topic targets and
    // every client produce are checked from the first record.
    let limits = config.schema_registry.limits();
    let b = broker.clone();
    let registry = tokio::task::spawn_blocking(move || Registry::open_for(&b, limits))
        .await?
        .context("open the schema registry (internal/schemas)")?;
    let registry = Arc::new(registry);
    if let Some(kv) = broker.shared_kv() {
        // Cluster mode: the cluster's registry (every broker the same ids). Watched before it
        // is loaded: a change in between is loaded by its notification.
        broker.add_shared_table("schemas", registry.clone());
        registry
            .share(kv)
            .await
            .context("load the cluster's schema registry")?;
    }
    let schemas = Arc::new(busbar_schema::enforce::Enforcer::new(
        registry.clone(),
        config.schema_registry.codec_limits(),
    ));
    broker.set_schema_checker(schemas.clone());
    let bus = match &cluster {
        Some(c) => Bus::open_shared(broker.clone(), config.bus_config(), c.clone()),
        None => Bus::open_with(broker.clone(), config.bus_config()),
    };
    let bus = Arc::new(bus.context("open subscriptions")?);
    let https = tls.is_some() && config.http.tls;
    // The configuration's subscriptions first: a topic target's `encode` is not checked against
    // the registry without the hook (spec.rs `check_encode`: a fresh registry is empty).
    busbar::config::apply_subscriptions(&bus, &config)
        .await
        .context("subscriptions in the configuration")?;
    let decoder = schema_decoder(schemas.clone(), sr_listener.as_ref(), &listener, https);
    bus.set_decoder(Some(decoder));
    bus.start().await;
    bus.run_cluster();
    let http_addr = listener.local_addr().context("HTTP listener address")?;
    let kafka_addr = kafka_listeners[0]
        .0
        .local_addr()
        .context("Kafka listener address")?;
    let kafka_all = busbar::listeners::describe(&kafka_listeners);
    let (stop_tx, stop_rx) = watch::channel(false);
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let background = tokio::spawn(broker.clone().run_background(wait(stop_rx.clone())));
    let mut kafka_config = config.kafka_config(kafka_addr);
    kafka_config.node_id = config.cluster.node_id as i32;
    if let Some(c) = &cluster {
        // Every broker of a cluster answers the same cluster id.
        kafka_config.cluster_id = busbar_cluster::kafka_cluster_id(&c.id);
    }
    kafka_config.tls = tls.as_ref().map(|t| t.kafka());
    let mut http_config = config.http_config();
    http_config.tls = tls.as_ref().filter(|_| config.http.tls).map(|t| t.http());
    let scheme = if http_config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let kafka = tokio::spawn(busbar_kafka::serve_listeners(
        kafka_listeners,
        broker.clone(),
        kafka_config,
        wait(stop_rx.clone()),
    ));
    let sr_addr = match &sr_listener {
        Some(l) => format!(
            "{scheme}://{}",
            l.local_addr().context("schema registry address")?
        ),
        None => "off".into(),
    };
    let sr = sr_listener.map(|l| {
        tokio::spawn(busbar_http::serve_schema_registry(
            l,
            bus.clone(),
            registry.clone(),
            http_config.clone(),
            wait(stop_rx.clone()),
        ))
    });
    let mut http = tokio::spawn(busbar_http::serve_with_schemas(
        listener,
        bus.clone(),
        Some(schemas),
        http_config,
        wait(stop_rx),
    ));
    for d in broker.internal_damage() {
        let msg = format!("damaged data skipped at start: {d}");
        log::warn("busbar", "damaged_data", &msg, &[]);
    }
    let signal = stop_signals()?;
    let ready_ms = started.elapsed().as_millis() as u64;
    let http_url = format!("{scheme}://{http_addr}");
    let data = config.data_dir.display().to_string();
    let ready = format!(
        "{} ready in {ready_ms} ms: {http_url} kafka {kafka_addr}{kafka_all} data {data} ({recovery}) schema-registry {sr_addr}",
        env!("CARGO_PKG_VERSION"),
    );
    // The text line is `busbar <version> ready ...` (no colon after the source): tests and
    // scripts wait for it as it always was.
    match log::format() {
        log::Format::Text => eprintln!("busbar {ready}"),
        log::Format::Json => log::info(
            "busbar",
            "ready",
            &ready,
            &[
                ("version", env!("CARGO_PKG_VERSION").into()),
                ("ready_ms", ready_ms.into()),
                ("http", http_url.into()),
                ("kafka", kafka_addr.to_string().into()),
                ("kafka_listeners", kafka_all.trim().to_string().into()),
                ("data_dir", data.into()),
                ("recovery", recovery.to_string().into()),
                ("schema_registry", sr_addr.clone().into()),
            ],
        ),
    }
    tokio::select! {
        _ = signal => log::info("busbar", "shutting_down", "shutting down", &[]),
        r = &mut http => {
            r??;
            anyhow::bail!("HTTP server stopped unexpectedly");
        }
    }
    let _ = stop_tx.send(true);
    // Stop accepting, let in-flight requests finish (open event streams and long polls get the
    // grace period, then are cut), then sync and mark the logs clean.
    let grace = std::time::Duration::from_millis(config.http.shutdown_grace_ms);
    if tokio::time::timeout(grace, &mut http).await.is_err() {
        let msg = format!(
            "cutting HTTP requests still open after {} ms",
            grace.as_millis()
        );
        log::info("busbar", "shutdown_grace_passed", &msg, &[]);
        http.abort();
    }
    if let Some(sr) = sr {
        if tokio::time::timeout(grace, sr).await.is_err() {
            let msg = "cutting schema registry requests still open";
            log::info("busbar", "shutdown_grace_passed", msg, &[]);
        }
    }
    let _ = kafka.await;
    let _ = background.await;
    registry.close().context("close the schema registry")?;
    bus.close().await.context("stop subscriptions")?;
    if let Some(c) = &cluster {
        // Its groups and clients move to the other brokers now, not after the lease expiries.
        c.leave().await;
    }
    tokio::task::spawn_blocking(move || broker.close())
        .await?
        .context("clean shutdown")?;
    if let Some(t) = tracer {
        // Sends the spans still waiting (bounded by tracing.export_timeout_ms).
        let timeout = std::time::Duration::from_millis(config.tracing.export_timeout_ms);
        let _ = tokio::task::spawn_blocking(move || busbar::otlp::shutdown(t, timeout)).await;
    }
    log::info("busbar", "stopped", "stopped cleanly", &[]);
    Ok(())
}
