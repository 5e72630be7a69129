//! `busbar cluster import`: moves a single node's data directory into a cluster (issue 20,
//! `docs/cluster.md` "Import"). Opens the data directory as `serve` does (so a running busbar on
//! it is refused by its lock), reads every topic, its partitions' batches and every group's
//! commits, and writes them into the cluster's database in one transaction
//! (`busbar_cluster::import`). The data directory stays a single node's (opening it runs the
//! recovery a start runs; its clean close writes a checkpoint).

use crate::config::Config;
use anyhow::{bail, Context, Result};
use busbar_broker::Broker;

/// Runs the import described by `config` (`data_dir`, `cluster.postgres_url`); answers what was
/// written.
pub fn run(config: &Config) -> Result<busbar_cluster::import::Imported> {
    if !config.cluster.enabled() {
        bail!("busbar cluster import needs the cluster's database: --cluster postgres://...");
    }
    let dir = &config.data_dir;
    if dir.join("cluster.id").exists() {
        bail!(
            "data directory {} is a cluster broker's copy, not a single node's: its data is in \
             the cluster already",
            dir.display()
        );
    }
    if !dir.is_dir() {
        bail!("data directory {} does not exist", dir.display());
    }
    let broker = Broker::open(config.broker_config())
        .with_context(|| format!("open data directory {}", dir.display()))?;
    let damage = broker.internal_damage();
    if !damage.is_empty() {
        bail!(
            "data directory {} has damaged internal logs ({}): rows after the damage (ACLs, \
             DENYs, deletions, users, commits) would be lost; nothing was imported",
            dir.display(),
            damage.join("; ")
        );
    }
    let (topics, commits) = broker.export().context("read the data directory")?;
    let mut tables = broker
        .export_tables()
        .context("read the users, tokens, ACLs and quotas")?;
    let registry = busbar_schema::registry::Registry::open_for(&broker, Default::default())
        .context("open the schema registry (internal/schemas)")?;
    tables.push((
        "schemas",
        registry.rows().context("read the schema registry")?,
    ));
    let _ = registry.close();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the runtime")?;
    let url = crate::cluster_config::redacted(&config.cluster.postgres_url);
    let done = config
        .cluster
        .pg()
        .and_then(|pg| {
            rt.block_on(busbar_cluster::import::import(
                &pg,
                config.cluster.hot_bytes_max,
                &topics,
                &commits,
                &tables,
            ))
            .map_err(Into::into)
        })
        .with_context(|| format!("import into the cluster at {url}"));
    if let Err(e) = broker.close() {
        // The import's outcome stands whatever the close did: say so, do not fail over it.
        busbar_broker::log::warn(
            "busbar",
            "import_close_failed",
            &format!("closing the data directory after the import failed: {e}"),
            &[],
        );
    }
    done
}
