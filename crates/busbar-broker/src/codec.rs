//! Decompression of Kafka record batches (gzip, snappy raw or xerial-framed, lz4 frame, zstd), for
//! reading compressed events back as events. Bounded: output past `limit` bytes is an error (a
//! decompression bomb never allocates more than the limit). Pure Rust, no C libraries.

use std::io::Read;

/// The codec name for a compression id.
pub fn name(codec: u8) -> &'static str {
    match codec {
        0 => "none",
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        _ => "unknown",
    }
}

fn bounded(mut r: impl Read, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    r.by_ref()
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() > limit {
        return Err(format!("decompresses past the limit of {limit} bytes"));
    }
    Ok(out)
}

const XERIAL_MAGIC: &[u8] = &[0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];

fn snappy_block(block: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let len = snap::raw::decompress_len(block).map_err(|e| e.to_string())?;
    if len > limit {
        return Err(format!("decompresses past the limit of {limit} bytes"));
    }
    snap::raw::Decoder::new()
        .decompress_vec(block)
        .map_err(|e| e.to_string())
}

fn snappy(data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    if !data.starts_with(XERIAL_MAGIC) {
        return snappy_block(data, limit);
    }
    // Java's xerial framing: magic, version, compatible version, then (int32 length, block)*.
    let mut pos = XERIAL_MAGIC.len() + 8;
    let mut out = Vec::new();
    while pos < data.len() {
        let len_bytes = data
            .get(pos..pos + 4)
            .ok_or("truncated xerial chunk length")?;
        let len =
            u32::from_be_bytes(len_bytes.try_into().map_err(|_| "bad chunk length")?) as usize;
        let block = data
            .get(pos + 4..pos + 4 + len)
            .ok_or("truncated xerial chunk")?;
        out.extend(snappy_block(block, limit - out.len())?);
        pos += 4 + len;
    }
    Ok(out)
}

/// Compresses a records section with `codec` (1 gzip, 2 snappy (raw), 3 lz4 frame, 4 zstd), as a
/// producer would (the bench uses it; the broker recompresses only what compaction rebuilds).
pub fn compress(codec: u8, data: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write;
    match codec {
        0 => Ok(data.to_vec()),
        1 => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(data).map_err(|e| e.to_string())?;
            gz.finish().map_err(|e| e.to_string())
        }
        2 => snap::raw::Encoder::new()
            .compress_vec(data)
            .map_err(|e| e.to_string()),
        3 => {
            let mut lz = lz4_flex::frame::FrameEncoder::new(Vec::new());
            lz.write_all(data).map_err(|e| e.to_string())?;
            lz.finish().map_err(|e| e.to_string())
        }
        4 => Ok(ruzstd::encoding::compress_to_vec(
            data,
            ruzstd::encoding::CompressionLevel::Fastest,
        )),
        other => Err(format!("unknown compression codec {other}")),
    }
}

/// Decompresses a batch's records section.
pub fn decompress(codec: u8, data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let r = match codec {
        0 => Ok(data.to_vec()),
        1 => bounded(flate2::read::GzDecoder::new(data), limit),
        2 => snappy(data, limit),
        3 => bounded(lz4_flex::frame::FrameDecoder::new(data), limit),
        4 => ruzstd::decoding::StreamingDecoder::new(data)
            .map_err(|e| e.to_string())
            .and_then(|d| bounded(d, limit)),
        other => Err(format!("unknown compression codec {other}")),
    };
    r.map_err(|e| format!("{} data: {e}", name(codec)))
}

/// Kafka's codecs for compaction, which inflates a compressed batch to filter its records and
/// compresses the kept ones again with the batch's codec. Inflation is bounded by
/// [`crate::event::DECOMPRESSED_BYTES_MAX`], as a read's is: a stored batch passed the ratio
/// check when produced, and one compaction rebuilt may inflate past that ratio (its superseded
/// records gone, what stays may compress better).
pub struct KafkaCodecs;

impl busbar_log::Codec for KafkaCodecs {
    fn decompress(&self, codec: u8, data: &[u8]) -> Result<Vec<u8>, String> {
        decompress(codec, data, crate::event::DECOMPRESSED_BYTES_MAX)
    }

    fn compress(&self, codec: u8, data: &[u8]) -> Result<Vec<u8>, String> {
        compress(codec, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn every_codec_round_trips() {
        let plain: Vec<u8> = (0..50_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect();
        for codec in 0..=4 {
            let packed = compress(codec, &plain).unwrap();
            assert_eq!(
                decompress(codec, &packed, 1 << 20).unwrap(),
                plain,
                "codec {codec}"
            );
        }
        assert!(compress(9, b"x").is_err());
    }

    #[test]
    fn gzip_and_snappy_round_trip_and_bombs_stop_at_the_limit() {
        let plain = vec![7u8; 100_000];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(decompress(1, &gz, 1 << 20).unwrap(), plain);
        assert!(decompress(1, &gz, 1000).unwrap_err().contains("limit"));
        let raw = snap::raw::Encoder::new().compress_vec(&plain).unwrap();
        assert_eq!(decompress(2, &raw, 1 << 20).unwrap(), plain);
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        framed.extend_from_slice(&(raw.len() as u32).to_be_bytes());
        framed.extend_from_slice(&raw);
        assert_eq!(decompress(2, &framed, 1 << 20).unwrap(), plain);
        assert!(decompress(2, &raw, 10).is_err());
        let mut lz = lz4_flex::frame::FrameEncoder::new(Vec::new());
        lz.write_all(&plain).unwrap();
        assert_eq!(
            decompress(3, &lz.finish().unwrap(), 1 << 20).unwrap(),
            plain
        );
        for codec in 1..=4 {
            assert!(
                decompress(codec, b"garbage bytes", 1 << 20).is_err(),
                "codec {codec}"
            );
        }
    }
}
