//! The cold tier's objects: where they live (an S3-compatible store through Apache Arrow's
//! `object_store`), how they are named, and their bytes (a segment in the local log's format,
//! `docs/log-format.md`: the 16-byte segment header, then the partition's batches back to back
//! with their offsets written in).
//!
//! An object read back is checked as the local log checks a segment: header magic, version and
//! CRC, every batch's structure and CRC, offsets increasing and inside the range its row names.
//! A damaged or missing object is an error (the read fails, retriably), never skipped.

use crate::Error;
use busbar_broker::shared::SharedBatch;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, PutPayload, RetryConfig};
use std::sync::Arc;
use std::time::Duration;

/// Where the cold tier's objects go (`[cluster] object_store_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStoreConfig {
    /// `s3://bucket` or `s3://bucket/prefix`.
    pub url: String,
    /// An S3-compatible endpoint (`http://127.0.0.1:8333`); empty: AWS's for the region (or
    /// `AWS_ENDPOINT` from the environment).
    pub endpoint: String,
    /// The region (signing); empty: `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: String,
}

/// How long one request to the object store may take (the client's own timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to the object store may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the client retries one failed request before it reports the failure (the uploader
/// tries again on its next round anyway).
const RETRY_FOR: Duration = Duration::from_secs(10);

/// The bucket and key prefix of an `s3://bucket/prefix` URL; the error says what is wrong.
pub fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{url:?} is not an s3://bucket[/prefix] URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if bucket.len() < 3 || bucket.len() > 63 || !bucket.chars().all(valid) {
        return Err(format!(
            "{url:?}: the bucket name must be 3 to 63 characters of a-z, 0-9, '-' and '.'"
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p == "." || p == "..")
        || prefix.chars().any(|c| c.is_control())
        || prefix.len() > 512
    {
        return Err(format!("{url:?}: the prefix is not a plain path"));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

/// The cold tier's store: the client and the key prefix.
pub struct Cold {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl Cold {
    /// A client for `config`; credentials come from the usual AWS variables
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, ...).
    pub fn new(config: &ObjectStoreConfig) -> Result<Cold, Error> {
        let (bucket, prefix) = parse_url(&config.url)
            .map_err(|e| Error::Config(format!("cluster.object_store_url {e}")))?;
        let retry = RetryConfig {
            max_retries: 3,
            retry_timeout: RETRY_FOR,
            ..RetryConfig::default()
        };
        let http = config.endpoint.starts_with("http://");
        let options = ClientOptions::new()
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_allow_http(http);
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(retry)
            .with_client_options(options);
        if !config.endpoint.is_empty() {
            b = b.with_endpoint(&config.endpoint).with_allow_http(http);
        }
        if !config.region.is_empty() {
            b = b.with_region(&config.region);
        }
        let store = b.build().map_err(|e| {
            Error::Config(format!("cluster.object_store_url {:?}: {e}", config.url))
        })?;
        Ok(Cold {
            store: Arc::new(store),
            prefix,
        })
    }

    /// The key of the object holding `base..=last` of a partition. Deterministic, so an upload
    /// tried again (after a failure between the upload and its commit) replaces its own leftover.
    pub fn key(&self, topic_id: &str, partition: u32, base: u64, last: u64) -> String {
        let name = format!("{topic_id}/{partition}/{base:020}-{last:020}.seg");
        if self.prefix.is_empty() {
            name
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// Up to `max` keys of objects under the prefix with when each was written (the store's
    /// clock), in the store's (lexical) order, after `after` when given (a sweep goes on where
    /// the last one stopped).
    pub async fn list(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> Result<Vec<(String, std::time::SystemTime)>, Error> {
        use futures_util::StreamExt;
        let prefix = (!self.prefix.is_empty()).then(|| Path::from(self.prefix.as_str()));
        let listing = match after {
            Some(a) => self.store.list_with_offset(prefix.as_ref(), &Path::from(a)),
            None => self.store.list(prefix.as_ref()),
        };
        let metas: Vec<_> = listing.take(max).collect().await;
        metas
            .into_iter()
            .map(|m| m.map(|m| (m.location.to_string(), m.last_modified.into())))
            .collect::<Result<_, _>>()
            .map_err(|e| store_error("list", &self.prefix, e))
    }

    /// The key of a compaction's object holding `base..=last` (with the gaps compaction left):
    /// [`Cold::key`]'s form with `.tag` before `.seg` (`tag`: 1 to 40 of `0-9a-z`, unique per
    /// rewrite, so a rewrite never replaces the object it rewrites).
    pub fn rewritten_key(
        &self,
        topic_id: &str,
        partition: u32,
        (base, last): (u64, u64),
        tag: &str,
    ) -> String {
        let key = self.key(topic_id, partition, base, last);
        format!("{}.{tag}.seg", key.strip_suffix(".seg").unwrap_or(&key))
    }

    /// What an object key of [`Cold::key`]'s or [`Cold::rewritten_key`]'s form names: (topic
    /// id, partition, base, last); `None` for any other key.
    pub fn parse_key(&self, key: &str) -> Option<(String, u32, u64, u64)> {
        self.parse_key_tagged(key).map(|(k, _)| k)
    }

    /// Whether `key` is a compaction's (its object may skip offsets: `decode`'s `gapped`).
    pub fn is_rewritten(&self, key: &str) -> bool {
        self.parse_key_tagged(key).is_some_and(|(_, tagged)| tagged)
    }

    /// [`Cold::parse_key`], and whether the key is a compaction's (its object may have gaps).
    pub fn parse_key_tagged(&self, key: &str) -> Option<((String, u32, u64, u64), bool)> {
        let name = if self.prefix.is_empty() {
            key
        } else {
            key.strip_prefix(self.prefix.as_str())?.strip_prefix('/')?
        };
        let mut parts = name.split('/');
        let (topic, partition, file) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || topic.is_empty() {
            return None;
        }
        let stem = file.strip_suffix(".seg")?;
        let (range, tag) = match stem.split_once('.') {
            Some((r, t)) => (r, Some(t)),
            None => (stem, None),
        };
        let (base, last) = range.split_once('-')?;
        let (partition, base, last): (u32, u64, u64) = (
            partition.parse().ok()?,
            base.parse().ok()?,
            last.parse().ok()?,
        );
        // Only the exact forms (zero-padded offsets, a plain tag) are ours.
        let ours = match tag {
            None => self.key(topic, partition, base, last) == key,
            Some(t) => valid_tag(t) && self.rewritten_key(topic, partition, (base, last), t) == key,
        };
        ours.then(|| ((topic.to_string(), partition, base, last), tag.is_some()))
    }

    /// Stores `bytes` under `key`.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), Error> {
        self.store
            .put(&Path::from(key), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| store_error("write", key, e))
    }

    /// The bytes of object `key`.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, Error> {
        let got = self
            .store
            .get(&Path::from(key))
            .await
            .map_err(|e| store_error("read", key, e))?;
        let bytes = got.bytes().await.map_err(|e| store_error("read", key, e))?;
        Ok(bytes.to_vec())
    }

    /// Deletes object `key` (done when it is gone already).
    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error("delete", key, e)),
        }
    }
}

/// A rewrite's tag: 1 to 40 characters of `0-9a-z`.
pub fn valid_tag(tag: &str) -> bool {
    (1..=40).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

fn store_error(what: &str, key: &str, e: object_store::Error) -> Error {
    Error::Store(format!("object store: {what} {key}: {e}"))
}

/// The object for a run of batches (in offset order, offsets written in).
pub fn encode(batches: &[SharedBatch]) -> Vec<u8> {
    let raw: Vec<&[u8]> = batches.iter().map(|b| b.bytes.as_slice()).collect();
    encode_raw(&raw)
}

/// [`encode`] of batches' bytes.
pub fn encode_raw<B: AsRef<[u8]>>(batches: &[B]) -> Vec<u8> {
    let size: usize = batches.iter().map(|b| b.as_ref().len()).sum();
    let mut out = Vec::with_capacity(busbar_log::SEGMENT_HEADER_BYTES as usize + size);
    out.extend_from_slice(&busbar_log::segment_header_bytes());
    for b in batches {
        out.extend_from_slice(b.as_ref());
    }
    out
}

/// The batches of object `key` (rows say it holds `base..=last`), checked; those ending before
/// `from` are left out. An uploaded object holds every offset of its range; a compaction's
/// (`gapped`) may skip offsets (removed records) but never goes back or past its range.
pub fn decode(
    key: &str,
    bytes: &[u8],
    (base, last): (u64, u64),
    from: u64,
    gapped: bool,
) -> Result<Vec<SharedBatch>, Error> {
    let damaged = |at: usize, why: String| {
        Error::Store(format!(
            "object store: object {key} is damaged at byte {at}: {why}"
        ))
    };
    busbar_log::check_segment_header(bytes).map_err(|e| damaged(0, e))?;
    let mut at = busbar_log::SEGMENT_HEADER_BYTES as usize;
    let mut next = base;
    let mut out = Vec::new();
    while at < bytes.len() {
        let rest = &bytes[at..];
        let header =
            busbar_log::batch::BatchHeader::parse(rest).map_err(|e| damaged(at, e.to_string()))?;
        let len = header
            .total_len()
            .filter(|l| *l <= rest.len())
            .ok_or_else(|| damaged(at, "a batch runs past the end".into()))?;
        let batch = &rest[..len];
        busbar_log::batch::validate_stored(batch).map_err(|e| damaged(at, e.to_string()))?;
        let (b, l) = (header.base_offset as u64, header.last_offset() as u64);
        let follows = b == next || (gapped && b > next);
        if header.base_offset < 0 || !follows || l < b || l > last {
            return Err(damaged(
                at,
                format!("batch {b}..={l} does not follow offset {next} inside {base}..={last}"),
            ));
        }
        next = l + 1;
        if l >= from {
            out.push(SharedBatch {
                base_offset: b,
                last_offset: l,
                bytes: batch.to_vec(),
            });
        }
        at += len;
    }
    if next != last + 1 && !gapped {
        return Err(damaged(
            at,
            format!("it ends at offset {next}, not {}", last + 1),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_parse_back_and_nothing_else_does() {
        let config = |url: &str| ObjectStoreConfig {
            url: url.into(),
            endpoint: "http://127.0.0.1:1".into(),
            region: "us-east-1".into(),
        };
        for url in ["s3://bkt/a/b", "s3://bkt"] {
            let cold = Cold::new(&config(url)).unwrap();
            let key = cold.key("t1", 3, 10, 20);
            assert_eq!(cold.parse_key(&key), Some(("t1".into(), 3, 10, 20)));
            let re = cold.rewritten_key("t1", 3, (10, 20), "4x1f");
            assert_eq!(
                cold.parse_key_tagged(&re),
                Some((("t1".into(), 3, 10, 20), true))
            );
            assert_eq!(cold.parse_key_tagged(&key).map(|k| k.1), Some(false));
            for bad in [".X1.seg", "..seg", ".a.b.seg", ".a/b.seg"] {
                let other = key.replace(".seg", bad);
                assert_eq!(cold.parse_key(&other), None, "{other}");
            }
            for other in [
                "t1/3/10-20.seg".to_string(),
                format!("{key}.tmp"),
                key.replace(".seg", ".log"),
                key.replace("/3/", "/x/"),
                format!("{key}/more"),
            ] {
                if other != key {
                    assert_eq!(cold.parse_key(&other), None, "{other}");
                }
            }
        }
    }

    #[test]
    fn urls_name_a_bucket_and_a_plain_prefix() {
        assert_eq!(parse_url("s3://bkt").unwrap(), ("bkt".into(), "".into()));
        assert_eq!(
            parse_url("s3://my-bkt/a/b/").unwrap(),
            ("my-bkt".into(), "a/b".into())
        );
        for bad in [
            "http://bkt",
            "s3://",
            "s3://B",
            "s3://bk",
            "s3://bkt/../x",
            "s3://b_k",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    fn batch(base: u64, n: usize) -> SharedBatch {
        let records: Vec<_> = (0..n)
            .map(|i| busbar_log::batch::NewRecord {
                key: None,
                value: Some(format!("v{i}").into_bytes()),
                headers: vec![],
                timestamp: 1,
            })
            .collect();
        let mut bytes = busbar_log::batch::build(&records);
        busbar_log::batch::patch(&mut bytes, base, 0);
        SharedBatch {
            base_offset: base,
            last_offset: base + n as u64 - 1,
            bytes,
        }
    }

    #[test]
    fn an_object_reads_back_as_its_batches_and_damage_is_refused() {
        let batches = vec![batch(10, 2), batch(12, 3)];
        let object = encode(&batches);
        assert_eq!(decode("k", &object, (10, 14), 0, false).unwrap(), batches);
        assert_eq!(
            decode("k", &object, (10, 14), 12, false).unwrap(),
            batches[1..]
        );
        // Not the range its row names, cut short, a flipped byte, a wrong header.
        assert!(decode("k", &object, (10, 15), 0, false).is_err());
        assert!(decode("k", &object, (11, 14), 0, false).is_err());
        assert!(decode("k", &object[..object.len() - 1], (10, 14), 0, false).is_err());
        let mut flipped = object.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(decode("k", &flipped, (10, 14), 0, false).is_err());
        let mut header = object;
        header[0] = b'X';
        assert!(decode("k", &header, (10, 14), 0, false).is_err());
        assert!(decode("k", b"", (10, 14), 0, false).is_err());
        // A gap between batches, or a first batch after the row's base, is damage too.
        let gap = encode(&[batch(10, 2), batch(13, 2)]);
        assert!(decode("k", &gap, (10, 14), 0, false).is_err());
        let late = encode(&[batch(11, 4)]);
        assert!(decode("k", &late, (10, 14), 0, false).is_err());
        // A compaction's object may skip offsets, at its start and end too, never go back or
        // past its range.
        assert_eq!(decode("k", &gap, (10, 14), 0, true).unwrap().len(), 2);
        assert_eq!(decode("k", &late, (10, 16), 0, true).unwrap().len(), 1);
        assert!(decode("k", &late, (10, 13), 0, true).is_err());
        assert!(decode("k", &late, (12, 16), 0, true).is_err());
        let back = encode(&[batch(10, 3), batch(11, 2)]);
        assert!(decode("k", &back, (10, 14), 0, true).is_err());
        assert!(decode("k", &encode(&[]), (10, 14), 0, true)
            .unwrap()
            .is_empty());
    }
}
