//! DescribeLogDirs (v1–4): the one log directory (the data directory) with the size of every
//! partition asked for (null: all), as tools and consoles show topic sizes. Unknown topics and
//! partitions are left out, as in Kafka; `offset_lag` is 0 and `is_future_key` false (no
//! reassignment between directories). v4's volume totals come from statvfs (-1 if unknown).

use super::{sb, topic, Ctx};
use crate::authz::{Authz, Op, CLUSTER_DENIED};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
use std::collections::BTreeMap;

/// (total, usable) bytes of the volume holding `dir`, or -1s.
fn volume(dir: &std::path::Path) -> (i64, i64) {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return (-1, -1);
    };
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return (-1, -1);
    }
    let frag = s.f_frsize as i64;
    (s.f_blocks as i64 * frag, s.f_bavail as i64 * frag)
}

pub fn handle(ctx: &Ctx<'_>, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let broker = &ctx.shared.broker;
    if !Authz::new(ctx, "DescribeLogDirs").cluster(Op::Describe) {
        // As Kafka: no results, and the code from v3 (v1-2 have no field for it).
        let mut r = DescribeLogDirsResponse::default();
        r.error_code = CLUSTER_DENIED;
        return r;
    }
    let wanted: BTreeMap<String, Option<Vec<i32>>> = match req.topics {
        None => broker
            .list_topics()
            .into_iter()
            .map(|t| (t.name, None))
            .collect(),
        Some(ts) => ts
            .into_iter()
            .map(|t| (t.topic.0.as_str().to_string(), Some(t.partitions)))
            .collect(),
    };
    let mut result = DescribeLogDirsResult::default();
    for (name, parts) in wanted {
        let Ok(d) = broker.describe_topic(&name) else {
            continue;
        };
        let mut t = DescribeLogDirsTopic::default();
        t.name = topic(name);
        t.partitions = d
            .partitions
            .iter()
            .filter(|p| {
                parts
                    .as_ref()
                    .is_none_or(|ps| ps.contains(&(p.partition as i32)))
            })
            .map(|p| {
                let mut dp = DescribeLogDirsPartition::default();
                dp.partition_index = p.partition as i32;
                dp.partition_size = p.size_bytes as i64;
                dp
            })
            .collect();
        if !t.partitions.is_empty() {
            result.topics.push(t);
        }
    }
    let dir = &broker.config().data_dir;
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
    result.log_dir = sb(dir.display().to_string());
    if ctx.version >= 4 {
        (result.total_bytes, result.usable_bytes) = volume(&dir);
    }
    let mut r = DescribeLogDirsResponse::default();
    r.results = vec![result];
    r
}
