//! Consumer lag as an operator reads it (`docs/metrics.md`, M3): per committed partition the
//! offset lag, the time lag (age of the first unconsumed event) and Burrow's status, evaluated
//! over the partition's last [`WINDOW`] commits (linkedin/Burrow's rules,
//! `shared/spec/wave2-facts.md` §4.3):
//!
//! 1. current lag 0, or any commit in the window at lag 0: **OK**;
//! 2. an offset went backwards in the window: **REWIND**;
//! 3. the time since the last commit exceeds the window's span: **STOP**;
//! 4. every offset in the window is the same: **STALL**;
//! 5. the lag never went down across the window: **WARN**;
//! 6. otherwise **OK**.
//!
//! Busbar's choices where Burrow has a full window: with one commit the window has no span, so
//! STOP needs that commit to be older than [`LONE_COMMIT_STOP_MS`]; STALL and WARN need two
//! commits. A group's status is its worst partition's (OK < WARN < STALL < REWIND < STOP).
//!
//! The windows live in memory (a restart starts them afresh, as Burrow's do), one per committed
//! partition: no more than the offsets store holds, and pruned when those offsets go.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// Commits kept per partition (Burrow's `intervals` default).
pub const WINDOW: usize = 10;
/// Age past which a partition with lag and a single commit in its window is STOP.
pub const LONE_COMMIT_STOP_MS: i64 = 10 * 60 * 1000;

/// A partition's or a group's lag status, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Warn,
    Stall,
    Rewind,
    Stop,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Ok,
        Status::Warn,
        Status::Stall,
        Status::Stop,
        Status::Rewind,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Stall => "STALL",
            Status::Rewind => "REWIND",
            Status::Stop => "STOP",
        }
    }
}

/// One commit as the window keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub offset: u64,
    pub at_ms: i64,
    /// The high watermark minus the offset when the commit arrived.
    pub lag: u64,
}

type Key = (String, String, u32);

/// The windows of every committed partition.
#[derive(Default)]
pub struct Windows {
    map: Mutex<BTreeMap<Key, VecDeque<Sample>>>,
}

impl Windows {
    /// Adds a commit to its partition's window.
    pub fn record(&self, group: &str, topic: &str, partition: u32, s: Sample) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let key = (group.to_string(), topic.to_string(), partition);
        let w = map.entry(key).or_default();
        if w.len() == WINDOW {
            w.pop_front();
        }
        w.push_back(s);
    }

    /// The status of a partition whose lag is `lag` now.
    pub fn status(&self, group: &str, topic: &str, partition: u32, lag: u64, now: i64) -> Status {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let key = (group.to_string(), topic.to_string(), partition);
        let window: Vec<Sample> = map
            .get(&key)
            .map_or(Vec::new(), |w| w.iter().copied().collect());
        evaluate(&window, lag, now)
    }

    /// Forgets the windows of partitions `keep` says no longer have committed offsets.
    pub fn retain(&self, mut keep: impl FnMut(&str, &str, u32) -> bool) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|(g, t, p), _| keep(g, t, *p));
    }
}

/// Burrow's rules over one partition's window (oldest first).
pub fn evaluate(window: &[Sample], lag: u64, now: i64) -> Status {
    if lag == 0 || window.iter().any(|s| s.lag == 0) {
        return Status::Ok;
    }
    let (Some(first), Some(last)) = (window.first(), window.last()) else {
        return Status::Ok;
    };
    if window.windows(2).any(|w| w[1].offset < w[0].offset) {
        return Status::Rewind;
    }
    let idle = now - last.at_ms;
    if window.len() == 1 {
        return if idle > LONE_COMMIT_STOP_MS {
            Status::Stop
        } else {
            Status::Ok
        };
    }
    if idle > last.at_ms - first.at_ms {
        return Status::Stop;
    }
    if window.iter().all(|s| s.offset == first.offset) {
        return Status::Stall;
    }
    if window.windows(2).all(|w| w[1].lag >= w[0].lag) {
        return Status::Warn;
    }
    Status::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(points: &[(u64, i64, u64)]) -> Vec<Sample> {
        (points.iter())
            .map(|&(offset, at_ms, lag)| Sample { offset, at_ms, lag })
            .collect()
    }

    #[test]
    fn burrow_rules_in_order() {
        // Burrow's wiki examples, at a commit every 60 s.
        let caught_up = w(&[(10, 0, 5), (20, 60_000, 0), (30, 120_000, 3)]);
        assert_eq!(
            evaluate(&caught_up, 3, 130_000),
            Status::Ok,
            "a zero lag in the window"
        );
        assert_eq!(evaluate(&caught_up, 0, 900_000), Status::Ok, "no lag now");
        let rewound = w(&[(10, 0, 5), (30, 60_000, 5), (20, 120_000, 15)]);
        assert_eq!(evaluate(&rewound, 15, 130_000), Status::Rewind);
        // A steady lag never decreased: Burrow calls that WARN (rule 5), not OK.
        let steady = w(&[(10, 0, 5), (20, 60_000, 5), (30, 120_000, 5)]);
        assert_eq!(
            evaluate(&steady, 5, 130_000),
            Status::Warn,
            "lag never went down"
        );
        let stopped = w(&[(10, 0, 5), (20, 60_000, 3), (30, 120_000, 5)]);
        assert_eq!(evaluate(&stopped, 5, 130_000), Status::Ok, "keeping pace");
        assert_eq!(
            evaluate(&stopped, 5, 241_000),
            Status::Stop,
            "idle longer than the window"
        );
        let stalled = w(&[(10, 0, 5), (10, 60_000, 8), (10, 120_000, 12)]);
        assert_eq!(evaluate(&stalled, 12, 130_000), Status::Stall);
        let falling_behind = w(&[(10, 0, 5), (20, 60_000, 8), (30, 120_000, 12)]);
        assert_eq!(evaluate(&falling_behind, 12, 130_000), Status::Warn);
        let catching_up = w(&[(10, 0, 12), (20, 60_000, 8), (30, 120_000, 9)]);
        assert_eq!(evaluate(&catching_up, 9, 130_000), Status::Ok);
    }

    #[test]
    fn a_lone_commit_is_stop_only_once_old() {
        let one = w(&[(10, 0, 5)]);
        assert_eq!(evaluate(&one, 5, LONE_COMMIT_STOP_MS), Status::Ok);
        assert_eq!(evaluate(&one, 5, LONE_COMMIT_STOP_MS + 1), Status::Stop);
        assert_eq!(
            evaluate(&[], 5, i64::MAX),
            Status::Ok,
            "never committed here"
        );
    }

    #[test]
    fn windows_keep_the_last_commits_and_can_be_pruned() {
        let ws = Windows::default();
        for i in 0..(WINDOW as u64 + 5) {
            ws.record(
                "g",
                "t",
                0,
                Sample {
                    offset: 7,
                    at_ms: i as i64 * 1000,
                    lag: 3,
                },
            );
        }
        // A window of equal offsets: only the last WINDOW count (span 9 s, idle 1 s).
        assert_eq!(ws.status("g", "t", 0, 3, 15_000), Status::Stall);
        ws.retain(|_, _, _| false);
        assert_eq!(ws.status("g", "t", 0, 3, 15_000), Status::Ok);
    }
}
