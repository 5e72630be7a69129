//! `[cluster]`: cluster mode (issue 20, `docs/cluster.md`). Off unless `postgres_url` is set
//! (`--cluster URL`, `BUSBAR_CLUSTER_POSTGRES_URL`); then partition data and topics live in that
//! PostgreSQL database and this process is one broker of the cluster, keeping its data directory
//! as a local copy.

use anyhow::{bail, Context, Result};
use busbar_broker::Broker;
use serde::{Deserialize, Serialize, Serializer};
use std::path::Path;
use std::sync::Arc;

/// `[cluster]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// `postgres://user:password@host:port/database`; empty: single node (the default). Printed
    /// by `check-config` with the password hidden.
    #[serde(serialize_with = "hide_password")]
    pub postgres_url: String,
    /// This broker's id in Kafka Metadata, distinct per broker (0 to 65535).
    pub node_id: u64,
    /// Most connections for reads and admin work (the committer and the listener have one each
    /// besides).
    pub pg_connections_max: u64,
    /// Most bytes of batches waiting to be committed; past it produce is refused, retriably.
    pub commit_queue_bytes_max: u64,
    /// Most batches one commit transaction takes.
    pub commit_batches_max: u64,
    /// Most bytes the hot tier (the `batches` table) holds; past it produce is refused, retriably.
    pub hot_bytes_max: u64,
    /// How often the database is polled for partitions' ends besides its notifications.
    pub poll_interval_ms: u64,
    /// The cold tier: `s3://bucket` or `s3://bucket/prefix`; empty: no cold tier (the hot tier
    /// keeps everything, up to `hot_bytes_max`). Credentials come from the usual AWS variables
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
    pub object_store_url: String,
    /// An S3-compatible endpoint (`http://host:port`); empty: AWS's (or `AWS_ENDPOINT`).
    pub object_store_endpoint: String,
    /// The object store's region; empty: `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    pub object_store_region: String,
    /// A partition's hot bytes that make the uploader move them into one object.
    pub upload_bytes: u64,
    /// The longest hot data waits for an upload below `upload_bytes`.
    pub upload_after_ms: u64,
    /// How often a compacted topic's objects are looked at for a compaction.
    pub compaction_interval_ms: u64,
    /// Memory for one compaction of objects' key map (each key: its length plus 64 bytes).
    pub compaction_map_bytes: u64,
    /// With `sslmode=require` in `postgres_url`: a PEM file of the CA certificates the
    /// database's certificate must chain to; empty: the Mozilla roots compiled in. The server's
    /// name is checked against the URL's host either way.
    pub postgres_ca_file: String,
    /// With `sslmode=require`: a PEM client certificate (chain) to present to the database (its
    /// `pg_hba.conf` `cert` method checks its common name against the user); empty: none.
    pub postgres_cert_file: String,
    /// The PEM private key (unencrypted) of `postgres_cert_file`.
    pub postgres_key_file: String,
}

impl Default for ClusterSection {
    fn default() -> Self {
        let d = busbar_cluster::ClusterConfig::new("");
        Self {
            postgres_url: String::new(),
            node_id: 0,
            pg_connections_max: d.pg_connections_max as u64,
            commit_queue_bytes_max: d.commit_queue_bytes_max as u64,
            commit_batches_max: d.commit_batches_max as u64,
            hot_bytes_max: d.hot_bytes_max,
            poll_interval_ms: d.poll_interval.as_millis() as u64,
            object_store_url: String::new(),
            object_store_endpoint: String::new(),
            object_store_region: String::new(),
            upload_bytes: d.upload_bytes as u64,
            upload_after_ms: d.upload_after.as_millis() as u64,
            compaction_interval_ms: d.compaction_interval.as_millis() as u64,
            compaction_map_bytes: d.compaction_map_bytes,
            postgres_ca_file: String::new(),
            postgres_cert_file: String::new(),
            postgres_key_file: String::new(),
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db` (also `password=` in
/// key-value form).
fn hide_password<S: Serializer>(url: &str, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&redacted(url))
}

/// The URL with any password replaced by `***` (in the user part or a `password=` query
/// parameter).
pub fn redacted(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let rest = match rest.split_once('?') {
            Some((base, query)) => {
                let query: Vec<String> = (query.split('&'))
                    .map(|kv| match kv.split_once('=') {
                        Some(("password", _)) => "password=***".to_string(),
                        _ => kv.to_string(),
                    })
                    .collect();
                format!("{base}?{}", query.join("&"))
            }
            None => rest.to_string(),
        };
        if let Some((auth, host)) = rest.split_once('@') {
            if let Some((user, _)) = auth.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
        return format!("{scheme}://{rest}");
    }
    url.split(' ')
        .map(|kv| match kv.split_once('=') {
            Some(("password", _)) => "password=***".to_string(),
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl ClusterSection {
    /// True when this process runs as a cluster broker.
    pub fn enabled(&self) -> bool {
        !self.postgres_url.is_empty()
    }

    /// Range checks, and a URL PostgreSQL's client can read.
    pub fn validate(&self) -> Result<()> {
        crate::config::check_ranges(&[
            ("cluster.node_id", self.node_id, 0, 65_535),
            (
                "cluster.pg_connections_max",
                self.pg_connections_max,
                1,
                1_000,
            ),
            (
                "cluster.commit_queue_bytes_max",
                self.commit_queue_bytes_max,
                1 << 20,
                u32::MAX as u64,
            ),
            (
                "cluster.commit_batches_max",
                self.commit_batches_max,
                1,
                100_000,
            ),
            (
                "cluster.hot_bytes_max",
                self.hot_bytes_max,
                1 << 20,
                u64::MAX >> 1,
            ),
            (
                "cluster.poll_interval_ms",
                self.poll_interval_ms,
                100,
                3_600_000,
            ),
            (
                "cluster.upload_bytes",
                self.upload_bytes,
                64 << 10,
                64 << 20,
            ),
            (
                "cluster.upload_after_ms",
                self.upload_after_ms,
                100,
                86_400_000,
            ),
            (
                "cluster.compaction_interval_ms",
                self.compaction_interval_ms,
                100,
                86_400_000,
            ),
            (
                "cluster.compaction_map_bytes",
                self.compaction_map_bytes,
                64 << 10,
                16 << 30,
            ),
        ])?;
        self.validate_object_store()?;
        if self.enabled() {
            if let Err(e) = self.postgres_url.parse::<tokio_postgres::Config>() {
                bail!(
                    "cluster.postgres_url {:?} is not a PostgreSQL URL: {e}",
                    redacted(&self.postgres_url)
                );
            }
            // The TLS settings (the CA file read and checked) before anything starts.
            self.pg()?;
        } else if !self.postgres_ca_file.is_empty() {
            bail!("cluster.postgres_ca_file needs cluster.postgres_url");
        } else if self.client_cert().is_some() {
            bail!("cluster.postgres_cert_file needs cluster.postgres_url");
        }
        if self.postgres_cert_file.is_empty() != self.postgres_key_file.is_empty() {
            bail!("cluster.postgres_cert_file and cluster.postgres_key_file go together");
        }
        Ok(())
    }

    /// The database and how to reach it (`busbar_cluster::pg`).
    pub fn pg(&self) -> Result<busbar_cluster::pg::Pg> {
        let ca = (!self.postgres_ca_file.is_empty()).then(|| Path::new(&self.postgres_ca_file));
        busbar_cluster::pg::Pg::new(&self.postgres_url, ca, self.client_cert().as_ref())
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// The client certificate to present to the database, when one is set.
    fn client_cert(&self) -> Option<busbar_cluster::pg::ClientCert> {
        (!self.postgres_cert_file.is_empty() && !self.postgres_key_file.is_empty()).then(|| {
            busbar_cluster::pg::ClientCert {
                cert_file: self.postgres_cert_file.clone().into(),
                key_file: self.postgres_key_file.clone().into(),
            }
        })
    }

    /// The object store settings: a URL busbar reads, an endpoint that is an http(s) URL, and
    /// neither without the cluster.
    fn validate_object_store(&self) -> Result<()> {
        if self.object_store_url.is_empty() {
            if !self.object_store_endpoint.is_empty() || !self.object_store_region.is_empty() {
                bail!("cluster.object_store_endpoint and _region need cluster.object_store_url");
            }
            return Ok(());
        }
        if !self.enabled() {
            bail!("cluster.object_store_url needs cluster.postgres_url (the cold tier is cluster mode's)");
        }
        if let Err(e) = busbar_cluster::cold::parse_url(&self.object_store_url) {
            bail!("cluster.object_store_url {e}");
        }
        let e = &self.object_store_endpoint;
        if !(e.is_empty() || e.starts_with("http://") || e.starts_with("https://")) {
            bail!("cluster.object_store_endpoint {e:?} is not an http:// or https:// URL");
        }
        Ok(())
    }

    /// The cluster crate's settings.
    pub fn config(&self) -> busbar_cluster::ClusterConfig {
        let mut c = busbar_cluster::ClusterConfig::new(&self.postgres_url);
        c.pg_connections_max = self.pg_connections_max as usize;
        c.commit_queue_bytes_max = self.commit_queue_bytes_max as usize;
        c.commit_batches_max = self.commit_batches_max as usize;
        c.hot_bytes_max = self.hot_bytes_max;
        c.poll_interval = std::time::Duration::from_millis(self.poll_interval_ms);
        c.object_store =
            (!self.object_store_url.is_empty()).then(|| busbar_cluster::cold::ObjectStoreConfig {
                url: self.object_store_url.clone(),
                endpoint: self.object_store_endpoint.clone(),
                region: self.object_store_region.clone(),
            });
        c.upload_bytes = self.upload_bytes as usize;
        c.upload_after = std::time::Duration::from_millis(self.upload_after_ms);
        c.compaction_interval = std::time::Duration::from_millis(self.compaction_interval_ms);
        c.compaction_map_bytes = self.compaction_map_bytes;
        c.postgres_ca_file =
            (!self.postgres_ca_file.is_empty()).then(|| self.postgres_ca_file.clone().into());
        c.postgres_client_cert = self.client_cert();
        c
    }
}

/// The file in the data directory naming the cluster whose copy it holds.
const CLUSTER_ID_FILE: &str = "cluster.id";

/// Joins the cluster: connects (applying migrations), checks that the data directory is empty or
/// this cluster's copy, then brings the broker's topics level with the catalog and keeps them so.
/// A data directory with single-node topics is refused: joining would replace them with the
/// cluster's (`busbar cluster import` copies them into the cluster instead).
pub async fn join(
    broker: &Arc<Broker>,
    section: &ClusterSection,
    me: busbar_cluster::Advertised,
) -> Result<Arc<busbar_cluster::Cluster>> {
    let url = redacted(&section.postgres_url);
    let cluster = busbar_cluster::Cluster::connect(section.config(), me)
        .await
        .with_context(|| format!("join the cluster at {url}"))?;
    let file = broker.config().data_dir.join(CLUSTER_ID_FILE);
    match std::fs::read_to_string(&file) {
        Ok(id) if id.trim() == cluster.id => {}
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("read {}", file.display()))
        }
        Ok(id) => bail!(
            "data directory {} holds a copy of cluster {}, not of the cluster at {url} ({}); \
             give this broker an empty data directory",
            broker.config().data_dir.display(),
            id.trim(),
            cluster.id
        ),
        Err(_) if !broker.list_topics().is_empty() => bail!(
            "data directory {} holds single-node topics; a cluster broker needs an empty data \
             directory (its topics would be replaced by the cluster's; `busbar cluster import` \
             copies them into the cluster)",
            broker.config().data_dir.display()
        ),
        Err(_) => write_id(&file, &cluster.id)?,
    }
    cluster
        .attach(broker.clone())
        .await
        .context("apply the cluster's topics")?;
    busbar_broker::log::info(
        "busbar",
        "cluster_joined",
        &format!(
            "cluster: broker {} joined cluster {} at {url}",
            section.node_id, cluster.id
        ),
        &[],
    );
    Ok(cluster)
}

/// A single-node start on a cluster broker's data directory is refused: it would write to a copy
/// the cluster does not know of, and the copy would disagree with the cluster when it rejoins.
pub fn refuse_cluster_copy(data_dir: &std::path::Path) -> Result<()> {
    let file = data_dir.join(CLUSTER_ID_FILE);
    if file.exists() {
        bail!(
            "data directory {} is a cluster broker's copy ({} exists); start it with --cluster, \
             or use another data directory",
            data_dir.display(),
            file.display()
        );
    }
    Ok(())
}

/// Writes the cluster id durably (temp file, fsync, rename).
fn write_id(file: &std::path::Path, id: &str) -> Result<()> {
    use std::io::Write;
    let tmp = file.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    f.write_all(format!("{id}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, file).with_context(|| format!("rename to {}", file.display()))?;
    if let Some(dir) = file.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redacted("postgres://u:s3cret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redacted("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redacted("postgres://u@h/db?sslmode=require&password=s3cret"),
            "postgres://u@h/db?sslmode=require&password=***"
        );
        assert_eq!(
            redacted("host=h password=s3cret user=u"),
            "host=h password=*** user=u"
        );
    }
}
