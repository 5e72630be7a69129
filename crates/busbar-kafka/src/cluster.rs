//! The cluster id Kafka clients see (Metadata v2+, DescribeCluster): made once per data directory
//! and kept in `<data>/kafka/cluster.id`, so it stays the same across restarts and differs between
//! data directories, as a Kafka cluster's does (clients and tools use it to tell clusters apart).
//! The file belongs to the Kafka front end: it is written before the listener serves (new file,
//! fsync, rename, directory fsync) and only read after that. The id has Kafka's form: 16 random
//! bytes in URL-safe base64 without padding (22 characters).

use busbar_broker::Broker;
use std::io;

const DIR: &str = "kafka";
const FILE: &str = "cluster.id";

/// The data directory's cluster id, made and stored on first use.
pub fn load_or_create(broker: &Broker) -> io::Result<String> {
    let storage = broker.config().data().storage(DIR)?;
    if let Ok(f) = storage.open(FILE) {
        let mut buf = vec![0; f.len().min(256) as usize];
        let n = f.read_at(0, &mut buf)?;
        let id = String::from_utf8_lossy(&buf[..n]).trim().to_string();
        if !id.is_empty() {
            return Ok(id);
        }
    }
    let id = new_id();
    let tmp = format!("{FILE}.tmp");
    let f = storage.create(&tmp)?;
    f.append(format!("{id}\n").as_bytes())?;
    f.sync()?;
    storage.rename(&tmp, FILE)?;
    storage.sync_dir()?;
    Ok(id)
}

/// 16 random bytes (from the standard library's per-process random hash keys, the clock and the
/// pid) as URL-safe base64.
fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut bytes = Vec::with_capacity(16);
    for salt in 0..2u8 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(now);
        h.write_u32(std::process::id());
        h.write_u8(salt);
        bytes.extend_from_slice(&h.finish().to_be_bytes());
    }
    base64_url(&bytes)
}

/// URL-safe base64 without padding (RFC 4648 §5), as Kafka's `Uuid.toString`.
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_url_matches_rfc_4648() {
        assert_eq!(super::base64_url(b"f"), "Zg");
        assert_eq!(super::base64_url(b"fo"), "Zm8");
        assert_eq!(super::base64_url(b"foo"), "Zm9v");
        assert_eq!(super::base64_url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn ids_have_kafkas_form_and_differ() {
        let (a, b) = (super::new_id(), super::new_id());
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
    }
}
