//! What `Broker::open` does to the data directory before serving: reading the topic document
//! (refusing start-up when it is lost beside topic data) and removing topic directories the
//! document does not list (a crash between a directory change and the metadata write).

use crate::broker::{io_err, Broker};
use crate::error::{BrokerError, Result};
use crate::metadata::{MetaStore, TopicMeta};
use crate::topic::Topic;
use std::collections::BTreeMap;
use std::sync::Arc;

impl Broker {
    /// The stored topics. A data directory without a topic document gets an empty one before any
    /// topic directory can exist, so a missing document beside topic directories means the
    /// metadata was lost: start-up refuses (never treats the data as orphans and deletes it).
    pub(crate) fn load_topics(
        data: &dyn crate::datadir::DataDir,
        meta: &MetaStore,
    ) -> Result<Vec<TopicMeta>> {
        if let Some(topics) = meta.load_existing()? {
            return Ok(topics);
        }
        let found = data
            .subdirs("topics")
            .map_err(|e| io_err("list topics", e))?;
        if !found.is_empty() {
            return Err(BrokerError::Storage(format!(
                "{} is missing but {} holds data of {} topic(s) ({}): the topic metadata is lost; \
                 nothing was changed. Restore the file from a backup, or move the topic directories \
                 away to start empty",
                meta.describe(),
                data.describe("topics"),
                found.len(),
                found.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        meta.save(&[])?;
        Ok(Vec::new())
    }

    /// Deletes topic directories that the metadata does not list (a crash between a directory
    /// change and the metadata write that makes it official).
    pub(crate) fn remove_orphans(
        data: &dyn crate::datadir::DataDir,
        topics: &BTreeMap<String, Arc<Topic>>,
    ) -> Result<()> {
        let names = data
            .subdirs("topics")
            .map_err(|e| io_err("list topics", e))?;
        for name in names {
            let rel = format!("topics/{name}");
            let remove = |rel: &str| {
                data.remove_dir(rel)
                    .map_err(|e| io_err(&format!("remove {}", data.describe(rel)), e))
            };
            match topics.get(&name).map(|t| t.partitions.len()) {
                None => remove(&rel)?,
                Some(n) => {
                    let parts = data
                        .subdirs(&rel)
                        .map_err(|e| io_err("list partitions", e))?;
                    for p in parts {
                        if p.parse::<usize>().ok().is_none_or(|i| i >= n) {
                            remove(&format!("{rel}/{p}"))?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
