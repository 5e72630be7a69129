//! How a replay run's record is stored (`replay.rs`): its cursors grouped by topic incarnation
//! (`[partition, next, limit]` triples, so thousands of partitions of a long topic name fit one
//! internal row), the size a record may have ([`RUN_RECORD_BYTES_MAX`]), and the identity of the
//! subscription spec it runs under ([`spec_id`]), so a run is only resumed under the same spec.

use crate::replay::{Cursor, RunRecord};
use crate::spec::SubscriptionSpec;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest encoded run record: a record is one row of the internal retry-state log, whose batches
/// hold at most 1 MiB (`batch_bytes_max`); the rest is left for the key and the batch header. A
/// run whose record could exceed it is refused when it starts.
pub const RUN_RECORD_BYTES_MAX: usize = 1_000_000;

/// The identity of `spec`: FNV-1a (64 bit) of its stored JSON form. Any change of the spec
/// (pattern, transform, target, sources, delivery) changes it.
pub fn spec_id(spec: &SubscriptionSpec) -> String {
    let bytes = serde_json::to_vec(spec).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The encoded size of `record`.
pub fn encoded_len(record: &RunRecord) -> usize {
    serde_json::to_vec(record).map_or(usize::MAX, |v| v.len())
}

/// Cursors of one topic incarnation, as stored.
#[derive(Serialize, Deserialize)]
struct Grouped {
    topic: String,
    topic_id: String,
    /// `[partition, next, limit]`.
    parts: Vec<(u32, u64, u64)>,
}

/// Either form: grouped (written now) or one object per cursor (written before).
#[derive(Deserialize)]
#[serde(untagged)]
enum Stored {
    Grouped(Vec<Grouped>),
    Each(Vec<Cursor>),
}

/// Serializes cursors grouped by consecutive topic incarnation.
pub fn serialize<S: Serializer>(cursors: &[Cursor], s: S) -> Result<S::Ok, S::Error> {
    let mut out: Vec<Grouped> = Vec::new();
    for c in cursors {
        let same = out
            .last()
            .is_some_and(|g| g.topic == c.topic && g.topic_id == c.topic_id);
        if !same {
            out.push(Grouped {
                topic: c.topic.clone(),
                topic_id: c.topic_id.clone(),
                parts: Vec::new(),
            });
        }
        let g = out.last_mut().expect("pushed");
        g.parts.push((c.partition, c.next, c.limit));
    }
    out.serialize(s)
}

/// Reads either stored form.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Cursor>, D::Error> {
    Ok(match Stored::deserialize(d)? {
        Stored::Each(v) => v,
        Stored::Grouped(groups) => groups
            .into_iter()
            .flat_map(|g| {
                let (topic, topic_id) = (g.topic, g.topic_id);
                g.parts
                    .into_iter()
                    .map(move |(partition, next, limit)| Cursor {
                        topic: topic.clone(),
                        topic_id: topic_id.clone(),
                        partition,
                        next,
                        limit,
                    })
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::{RunCounts, RunState};

    fn record(cursors: Vec<Cursor>) -> RunRecord {
        RunRecord {
            sub_version: None,
            name: "r".into(),
            from_ms: 0,
            to_ms: 1,
            rate: 1,
            started_ms: 0,
            state: RunState::Running,
            error: None,
            replayed_to_ms: None,
            ended_ms: None,
            counts: RunCounts::default(),
            cursors,
            spec_id: None,
        }
    }

    fn cursor(topic: &str, partition: u32) -> Cursor {
        Cursor {
            topic: topic.into(),
            topic_id: "id".into(),
            partition,
            next: 7,
            limit: 9,
        }
    }

    #[test]
    fn cursors_round_trip_grouped_and_read_the_old_form() {
        let r = record(vec![cursor("a", 0), cursor("a", 1), cursor("b", 0)]);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["cursors"].as_array().unwrap().len(), 2, "{v}");
        assert_eq!(serde_json::from_value::<RunRecord>(v).unwrap(), r);
        let mut old = serde_json::to_value(&r).unwrap();
        old["cursors"] = serde_json::json!([{"topic": "a", "topic_id": "id", "partition": 0,
            "next": 7, "limit": 9}]);
        let back: RunRecord = serde_json::from_value(old).unwrap();
        assert_eq!(back.cursors, vec![cursor("a", 0)]);
    }

    #[test]
    fn ten_thousand_partitions_of_a_long_topic_fit_one_row() {
        let topic = "t".repeat(249);
        let r = record((0..10_000).map(|p| cursor(&topic, p)).collect());
        assert!(
            encoded_len(&r) < RUN_RECORD_BYTES_MAX / 4,
            "{}",
            encoded_len(&r)
        );
    }
}
