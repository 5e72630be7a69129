//! Events as the broker's callers see them, and their encoding to and from stored record batches.
//! HTTP publish and the in-process API build uncompressed batches here; reads decode them back.

use crate::error::{BrokerError, Result};
use busbar_log::batch::{self, BatchHeader, NewRecord, Records, HEADER_BYTES};

/// An event to publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Milliseconds since the epoch; the broker's clock when absent.
    pub timestamp: Option<i64>,
    /// A fixed partition; chosen from the key (murmur2) or round-robin when absent.
    pub partition: Option<u32>,
}

impl Event {
    /// An event with just a value.
    pub fn value(v: impl Into<Vec<u8>>) -> Self {
        Self {
            value: Some(v.into()),
            ..Self::default()
        }
    }

    /// An event with a key and a value.
    pub fn keyed(k: impl Into<Vec<u8>>, v: impl Into<Vec<u8>>) -> Self {
        Self {
            key: Some(k.into()),
            value: Some(v.into()),
            ..Self::default()
        }
    }
}

/// Where a published event was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub partition: u32,
    pub offset: u64,
}

/// An event read back from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Builds one uncompressed batch from events (timestamps already resolved).
pub fn encode(events: &[&Event], now_ms: i64) -> Vec<u8> {
    let recs: Vec<NewRecord> = events
        .iter()
        .map(|e| NewRecord {
            key: e.key.clone(),
            value: e.value.clone(),
            headers: e
                .headers
                .iter()
                .map(|(k, v)| (k.clone().into_bytes(), Some(v.clone())))
                .collect(),
            timestamp: e.timestamp.unwrap_or(now_ms),
        })
        .collect();
    batch::build(&recs)
}

/// Most bytes one compressed batch may inflate to when read as events.
pub const DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

/// Decodes every event at or after `from` in `data` (whole stored batches, back to back).
pub fn decode(topic: &str, partition: u32, data: &[u8], from: u64) -> Result<Vec<StoredEvent>> {
    let mut out = Vec::new();
    for stored in batches(data) {
        let (h, bytes) = stored?;
        decode_batch(topic, partition, &h, bytes, from, &mut out)?;
    }
    Ok(out)
}

/// What [`decode_each`] found at a place in the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Event(StoredEvent),
    /// A stored batch whose records cannot be read (a compressed payload that does not inflate
    /// within [`DECOMPRESSED_BYTES_MAX`], records that do not parse): its offsets, its timestamp
    /// and why.
    Undecodable {
        first: u64,
        last: u64,
        timestamp: i64,
        error: String,
    },
}

/// Like [`decode`], but a batch whose records cannot be read is answered as
/// [`Decoded::Undecodable`] (so a reader can set it aside and go on) instead of failing the
/// whole read. Data that cannot even be split into batches is still an error.
pub fn decode_each(topic: &str, partition: u32, data: &[u8], from: u64) -> Result<Vec<Decoded>> {
    let mut out = Vec::new();
    for stored in batches(data) {
        let (h, bytes) = stored?;
        let mut events = Vec::new();
        match decode_batch(topic, partition, &h, bytes, from, &mut events) {
            Ok(()) => out.extend(events.into_iter().map(Decoded::Event)),
            Err(e) => {
                let last = h.last_offset().max(0) as u64;
                if last >= from {
                    out.push(Decoded::Undecodable {
                        first: (h.base_offset.max(0) as u64).max(from),
                        last,
                        timestamp: h.first_timestamp(),
                        error: e.to_string(),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The stored batches of `data`, each with its parsed header.
fn batches(data: &[u8]) -> impl Iterator<Item = Result<(BatchHeader, &[u8])>> {
    let mut pos = 0;
    let mut failed = false;
    std::iter::from_fn(move || {
        if pos >= data.len() || failed {
            return None;
        }
        let next = (|| {
            let h = BatchHeader::parse(&data[pos..])
                .map_err(|e| BrokerError::Storage(e.to_string()))?;
            let len = h
                .total_len()
                .ok_or_else(|| BrokerError::Storage("bad stored batch length".into()))?;
            let bytes = data
                .get(pos..pos + len)
                .filter(|b| b.len() >= HEADER_BYTES)
                .ok_or_else(|| BrokerError::Storage("batch longer than the data read".into()))?;
            pos += len;
            Ok((h, bytes))
        })();
        failed = next.is_err();
        Some(next)
    })
}

/// Appends the events at or after `from` of one stored batch to `out` (nothing when it fails).
fn decode_batch(
    topic: &str,
    partition: u32,
    h: &BatchHeader,
    bytes: &[u8],
    from: u64,
    out: &mut Vec<StoredEvent>,
) -> Result<()> {
    if h.is_control() {
        return Ok(());
    }
    let section = match h.compression() {
        0 => std::borrow::Cow::Borrowed(&bytes[HEADER_BYTES..]),
        codec => std::borrow::Cow::Owned(
            crate::codec::decompress(codec, &bytes[HEADER_BYTES..], DECOMPRESSED_BYTES_MAX)
                .map_err(|e| {
                    BrokerError::InvalidRecord(format!("batch at offset {}: {e}", h.base_offset))
                })?,
        ),
    };
    let mut events = Vec::new();
    for r in Records::new(&section) {
        let r = r.map_err(|e| BrokerError::Storage(e.to_string()))?;
        let offset = u64::try_from(h.base_offset)
            .ok()
            .and_then(|b| b.checked_add(u64::try_from(r.offset_delta).ok()?))
            .ok_or_else(|| BrokerError::Storage("record offset out of range".into()))?;
        if offset < from {
            continue;
        }
        events.push(StoredEvent {
            topic: topic.to_string(),
            partition,
            offset,
            timestamp: h.base_timestamp.wrapping_add(r.timestamp_delta),
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).into_owned(),
                        v.map(<[u8]>::to_vec).unwrap_or_default(),
                    )
                })
                .collect(),
        });
    }
    out.append(&mut events);
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Found by `fuzz/fuzz_targets/record_batch.rs`: a header whose length runs past the data.
    #[test]
    fn a_batch_longer_than_the_data_is_an_error_not_a_panic() {
        let mut data = vec![0x01];
        data.extend(std::iter::repeat_n(0x79u8, 30));
        data.extend([0xff; 8]);
        data.extend(std::iter::repeat_n(0x79u8, 24));
        assert!(super::decode("t", 0, &data, 0).is_err());
    }

    /// Found by the same target: deltas that overflow the batch's base offset or timestamp.
    #[test]
    fn overflowing_deltas_are_an_error_not_a_panic() {
        let crash = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/fuzz-record-overflow.bin"
        ))
        .unwrap();
        let _ = super::decode("t", 0, &crash, 0);
    }
}
