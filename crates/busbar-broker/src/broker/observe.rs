//! What the broker tells `/metrics` beyond its recorded counters: consumer-group lag with its
//! Burrow status (`lag.rs`), and the disk space of the data directory.
//!
//! A scrape's cost is bounded: at most `metrics_series_max` committed partitions are reported,
//! read in one pass over the offsets table, and each partition with lag costs one small read of
//! the log (the header of the batch holding the first unconsumed offset, never decoded).

use super::Broker;
use crate::lag::{Sample, Status};
use std::collections::BTreeSet;

/// Bytes read to find the first unconsumed batch's header (a batch is read whole by the log, so
/// this only bounds reads past it).
const AGE_READ_BYTES: usize = 64 << 10;

/// One committed partition of a group, as `/metrics` exports it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPartitionLag {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    /// The last stable offset (the high watermark without open transactions) minus the
    /// committed offset.
    pub lag: u64,
    /// Age of the first unconsumed event, seconds (0 without lag): from the timestamp of the
    /// batch holding it (or of the first batch left, when retention removed it).
    pub lag_seconds: f64,
    pub status: Status,
}

/// The file system holding the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes an unprivileged writer may still use.
    pub free: u64,
    pub total: u64,
}

impl Broker {
    /// The broker's recorded counters and histograms.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// Whether the topic exists (metrics label a missing topic's requests `""`).
    pub fn has_topic(&self, name: &str) -> bool {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        topics.contains_key(name)
    }

    /// Adds commits that were just stored to their partitions' lag windows.
    pub(crate) fn record_commits(&self, group: &str, commits: &[(String, u32, i64)]) {
        let now = self.config.clock.now_ms();
        for (topic, partition, offset) in commits {
            let Ok(offset) = u64::try_from(*offset) else {
                continue;
            };
            let lag = self.last_stable(topic, *partition).saturating_sub(offset);
            let s = Sample {
                offset,
                at_ms: now,
                lag,
            };
            self.lag_windows.record(group, topic, *partition, s);
        }
    }

    /// The partition's last stable offset (0 when it does not exist).
    fn last_stable(&self, topic: &str, partition: u32) -> u64 {
        let Ok(t) = self.topic(topic) else { return 0 };
        let Ok(p) = t.partition(partition as i64) else {
            return 0;
        };
        p.last_stable(p.reported_end())
    }

    /// Forgets the lag windows of partitions that no longer have a committed offset (called
    /// when offsets, groups or topics are deleted, and at each report).
    pub(crate) fn prune_lag_windows(&self) {
        let keys: BTreeSet<(String, String, u32)> = (self.offsets.all(usize::MAX).into_iter())
            .map(|(g, t, p, _)| (g, t, p))
            .collect();
        self.lag_windows
            .retain(|g, t, p| keys.contains(&(g.to_string(), t.to_string(), p)));
    }

    /// Committed partitions of every group (at most `metrics_series_max`): lag, time lag and
    /// status. Blocking: reads the logs (call it off the async workers).
    pub fn group_lag(&self) -> Vec<GroupPartitionLag> {
        let now = self.config.clock.now_ms();
        let mut out = Vec::new();
        for (group, topic, partition, c) in self.offsets.all(self.config.metrics_series_max) {
            let Ok(t) = self.topic(&topic) else { continue };
            let Ok(p) = t.partition(partition as i64) else {
                continue;
            };
            let s = p.log.stats();
            let lag = p.last_stable(p.reported_end()).saturating_sub(c.offset);
            // The committed offset's record is read from the local copy: a copy caught up on
            // read (cluster mode) may not hold it yet, and then the age is not known here.
            let at = c.offset.max(s.log_start);
            let lag_seconds = if lag == 0 || at >= s.high_watermark {
                0.0
            } else {
                age_at(&p.log, at, now)
            };
            let status = self.lag_windows.status(&group, &topic, partition, lag, now);
            out.push(GroupPartitionLag {
                group,
                topic,
                partition,
                lag,
                lag_seconds,
                status,
            });
        }
        self.prune_lag_windows();
        out
    }

    /// Free and total bytes of the file system holding the data directory (`None` for data not
    /// on the real file system, or when the system call fails).
    pub fn disk_space(&self) -> Option<DiskSpace> {
        if self.config.data.is_some() {
            return None;
        }
        statvfs(&self.config.data_dir)
    }
}

/// Seconds since the timestamp of the batch holding `offset` (0 when there is none, or its
/// timestamp is not a time: negative, or in the future).
fn age_at(log: &busbar_log::Log, offset: u64, now: i64) -> f64 {
    let Ok(read) = log.read(offset, AGE_READ_BYTES) else {
        return 0.0;
    };
    let Ok(h) = busbar_log::batch::BatchHeader::parse(&read.data) else {
        return 0.0;
    };
    let first = h.first_timestamp();
    if first < 0 {
        return 0.0;
    }
    now.saturating_sub(first).max(0) as f64 / 1000.0
}

fn statvfs(path: &std::path::Path) -> Option<DiskSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs the call fills.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let block = st.f_frsize as u64;
    Some(DiskSpace {
        free: (st.f_bavail as u64).saturating_mul(block),
        total: (st.f_blocks as u64).saturating_mul(block),
    })
}
