//! The records of replay runs: what a run was asked (`ReplaySpec`), its state and counts, its
//! stored record with per-partition places (`Cursor`), and the view the API shows. The running
//! part is in `replay.rs`, which re-exports these.

use serde::{Deserialize, Serialize};

/// A replay request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaySpec {
    pub name: String,
    /// RFC 3339, inclusive.
    pub from: String,
    /// RFC 3339, exclusive.
    pub to: String,
    #[serde(default = "default_rate")]
    pub rate: u32,
}

fn default_rate() -> u32 {
    100
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunState {
    Running,
    Completed,
    Cancelled,
    Failed,
    /// Its subscription was paused or updated.
    Stopped,
    /// The bus closed or the process died while it ran.
    Interrupted,
}

/// What a run counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    pub matched: u64,
    pub delivered: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub dropped: u64,
    #[serde(default)]
    pub undecodable: u64,
    /// Events of the range gone from the log before the run reached them (retention or
    /// DeleteRecords): the run moves on from the log start, as the live worker does.
    #[serde(default)]
    pub expired: u64,
}

/// A run as stored in the retry-state log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub name: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub rate: u32,
    pub started_ms: i64,
    pub state: RunState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every event stored before this time is replayed (the end of the last slice done).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_to_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<i64>,
    #[serde(default)]
    pub counts: RunCounts,
    /// Where the run is in each source partition (none before it first ran).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "crate::runrecord"
    )]
    pub cursors: Vec<Cursor>,
    /// The identity of the subscription spec the run runs under ([`crate::runrecord::spec_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_id: Option<String>,
    /// Cluster mode: the version of the subscription's record the run (re)started under; a
    /// broker taking the subscription over goes on with the run only while it is the same
    /// (any change since, a pause included, ends the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_version: Option<i64>,
}

/// Where a run is in one source partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub topic: String,
    /// The topic incarnation its offsets belong to.
    pub topic_id: String,
    pub partition: u32,
    /// The next offset to replay: every event before it is done.
    pub next: u64,
    /// The partition's end when the run started: the run covers what is stored before it.
    pub limit: u64,
}

impl RunRecord {
    /// Whether a new request `new` (same name) goes on with this run instead of replacing it:
    /// the run did not finish (stopped, interrupted, or failed on an event it left ahead of its
    /// place), the range is the same, and so is the subscription spec (after an update, events
    /// before its place may match now: the run starts over from `from`).
    pub(crate) fn resumed_by(&self, new: &RunRecord) -> bool {
        matches!(
            self.state,
            RunState::Stopped | RunState::Interrupted | RunState::Failed
        ) && (self.from_ms, self.to_ms) == (new.from_ms, new.to_ms)
            && self.spec_id.is_some()
            && self.spec_id == new.spec_id
    }
}

impl RunRecord {
    /// What the API shows of it.
    pub fn view(self) -> RunView {
        use busbar_broker::time::format_rfc3339;
        RunView {
            name: self.name,
            state: self.state,
            error: self.error,
            from: format_rfc3339(self.from_ms),
            to: format_rfc3339(self.to_ms),
            rate: self.rate,
            started: format_rfc3339(self.started_ms),
            ended: self.ended_ms.map(format_rfc3339),
            last_replayed_time: self.replayed_to_ms.map(format_rfc3339),
            counts: self.counts,
        }
    }
}

/// What `GET .../replays/{name}` shows.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    pub name: String,
    pub state: RunState,
    pub error: Option<String>,
    pub from: String,
    pub to: String,
    pub rate: u32,
    pub started: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    /// Where a new run resumes this one: every event before it is replayed.
    pub last_replayed_time: Option<String>,
    #[serde(flatten)]
    pub counts: RunCounts,
}
