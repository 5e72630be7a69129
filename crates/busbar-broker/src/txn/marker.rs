//! Transaction markers (Kafka's control batches, `shared/spec/wave2-facts.md` §2.3): a batch with
//! the control (bit 5) and transactional (bit 4) attribute bits, the producer's id and epoch, no
//! sequence, and one record whose key is `{version i16 = 0, type i16}` (ABORT = 0, COMMIT = 1) and
//! whose value is `{version i16 = 0, coordinator_epoch i32}`. Consumers skip these batches; a
//! `read_committed` consumer uses an ABORT marker to end the aborted range of its producer.

use busbar_log::batch::{self, BatchHeader, NewRecord};

/// The control (bit 5) and transactional (bit 4) attribute bits of a marker.
const MARKER_ATTRIBUTES: i16 = 0x20 | 0x10;

/// True for a batch written inside a transaction (attribute bit 4).
pub fn is_transactional(h: &BatchHeader) -> bool {
    h.is_transactional()
}

/// The marker of a transaction's end on one partition.
pub fn build(producer_id: i64, producer_epoch: i16, commit: bool, now_ms: i64) -> Vec<u8> {
    let key = [0, 0, 0, u8::from(commit)].to_vec();
    let value = [0u8; 6].to_vec();
    let record = NewRecord {
        key: Some(key),
        value: Some(value),
        headers: vec![],
        timestamp: now_ms,
    };
    let plain = batch::build(&[record]);
    let mut h = BatchHeader::parse(&plain).expect("a built batch parses");
    h.attributes = MARKER_ATTRIBUTES;
    h.producer_id = producer_id;
    h.producer_epoch = producer_epoch;
    h.base_sequence = -1;
    batch::assemble(&h, &plain[batch::HEADER_BYTES..])
}

/// Whether a control batch marks a commit (`Some(true)`), an abort (`Some(false)`), or is not a
/// transaction marker (`None`).
pub fn kind(data: &[u8]) -> Option<bool> {
    let h = BatchHeader::parse(data).ok()?;
    if !h.is_control() {
        return None;
    }
    let len = h.total_len()?.min(data.len());
    let rec = batch::Records::new(data.get(batch::HEADER_BYTES..len)?)
        .next()?
        .ok()?;
    match rec.key? {
        [0, 0, 0, 0] => Some(false),
        [0, 0, 0, 1] => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_a_valid_control_batch_of_one_record() {
        for commit in [true, false] {
            let b = build(7, 3, commit, 1000);
            let h = batch::validate_stored(&b).unwrap();
            assert!(h.is_control() && is_transactional(&h));
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (7, 3, -1)
            );
            assert_eq!(h.record_count, 1);
            assert_eq!(kind(&b), Some(commit));
        }
        let plain = batch::build(&[NewRecord::default()]);
        assert_eq!(kind(&plain), None);
    }
}
