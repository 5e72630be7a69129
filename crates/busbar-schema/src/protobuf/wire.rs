//! The message-index list of Confluent's Protobuf wire format: after the magic byte and the
//! schema id, a zig-zag varint count, then that many zig-zag varint indexes (the path of the
//! message among the file's top-level messages, then among each one's nested messages). A count
//! of 0 stands for `[0]`, the first message, and `[0]` is written as that single byte `0x00`.

/// Most indexes one payload may carry (deeper than any real nesting; protox refuses more than
/// 31 levels of nested messages).
pub const INDEXES_MAX: usize = 1024;

/// Reads the message indexes at the start of `payload_after_id`: the indexes and the bytes they
/// took. Refuses a truncated or over-long varint, a negative count, and a count over
/// [`INDEXES_MAX`] or over the bytes left (each index takes at least one).
pub fn message_indexes(payload_after_id: &[u8]) -> Result<(Vec<i32>, usize), String> {
    let (count, mut at) = zigzag_at(payload_after_id, 0)?;
    if count == 0 {
        return Ok((vec![0], at));
    }
    let left = payload_after_id.len() - at;
    let count = usize::try_from(count)
        .ok()
        .filter(|n| *n <= INDEXES_MAX && *n <= left)
        .ok_or_else(|| {
            format!(
                "message index count {count} is negative, over {INDEXES_MAX} or over the {left} bytes left"
            )
        })?;
    let mut indexes = Vec::with_capacity(count);
    for _ in 0..count {
        let (index, next) = zigzag_at(payload_after_id, at)?;
        indexes.push(index);
        at = next;
    }
    Ok((indexes, at))
}

/// `indexes` as the wire writes them (`[0]` as the single byte `0x00`).
pub fn encode_indexes(indexes: &[i32]) -> Vec<u8> {
    if indexes == [0] {
        return vec![0];
    }
    let mut out = Vec::with_capacity(1 + indexes.len());
    let count = i32::try_from(indexes.len()).unwrap_or(i32::MAX);
    put_zigzag(&mut out, count);
    for i in indexes {
        put_zigzag(&mut out, *i);
    }
    out
}

/// One zig-zag varint (32-bit) at `at`: its value and the offset after it.
fn zigzag_at(bytes: &[u8], at: usize) -> Result<(i32, usize), String> {
    let mut value: u64 = 0;
    for (n, byte) in bytes.iter().skip(at).take(5).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * n);
        if byte & 0x80 == 0 {
            let raw = u32::try_from(value)
                .map_err(|_| format!("message index varint at byte {at} is over 32 bits"))?;
            let decoded = ((raw >> 1) as i32) ^ -((raw & 1) as i32);
            return Ok((decoded, at + n + 1));
        }
    }
    if bytes.len().saturating_sub(at) >= 5 {
        Err(format!(
            "message index varint at byte {at} is longer than 5 bytes"
        ))
    } else {
        Err(format!("message indexes truncated at byte {at}"))
    }
}

fn put_zigzag(out: &mut Vec<u8>, value: i32) {
    let mut raw = ((value << 1) ^ (value >> 31)) as u32;
    while raw >= 0x80 {
        out.push((raw as u8 & 0x7f) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}
