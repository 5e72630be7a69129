//! Payloads framed as schema-registry clients send them (`busbar bench --schema-id N`): the wire
//! header (magic byte 0, the schema id as a big-endian 4-byte int), then an Avro `bytes` value
//! (its length as a zig-zag varint, then the bytes). The whole payload is still `--size` bytes,
//! so framed and plain runs move the same bytes; the schema registered under the id must be
//! `"bytes"` for `strict` topics to accept it.
//!
//! Invariant: every payload of a run has the same header, so the bench's timestamp sits at the
//! same offset ([`Frame::len`]) in each.

use anyhow::{bail, Result};

/// Magic byte and schema id.
const WIRE_HEADER_BYTES: usize = 5;
/// The bench's timestamp at the start of the value: the Avro bytes must hold at least this.
const STAMP_BYTES: usize = 8;
/// Longest zig-zag varint of a length that fits a payload of `--size` (at most 1 MiB).
const VARINT_BYTES_MAX: usize = 5;

/// The bytes every framed payload of a run starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    header: Vec<u8>,
}

/// `n` as Avro writes a `long`: zig-zag, then 7 bits a byte, low first.
fn zigzag_varint(n: u64) -> Vec<u8> {
    let mut v = n << 1; // n is a length, never negative: zig-zag doubles it.
    let mut out = Vec::with_capacity(VARINT_BYTES_MAX);
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

/// The Avro value's length for a payload of `size` bytes, if one fits it exactly.
fn value_len(size: usize) -> Option<usize> {
    (1..=VARINT_BYTES_MAX).find_map(|k| {
        let n = size.checked_sub(WIRE_HEADER_BYTES + k)?;
        (zigzag_varint(n as u64).len() == k && n >= STAMP_BYTES).then_some(n)
    })
}

impl Frame {
    /// The header for schema `id` and payloads of `size` bytes. Some sizes cannot be framed
    /// exactly (at 70 B the length's varint grows by a byte as the value shrinks by one): the
    /// error names the nearest sizes that can.
    pub fn new(id: u32, size: usize) -> Result<Frame> {
        let least = WIRE_HEADER_BYTES + 1 + STAMP_BYTES;
        if size < least {
            bail!(
                "--size {size} is too small for --schema-id: at least {least} bytes (5 of \
                 header, a length, the 8-byte timestamp)"
            );
        }
        let Some(n) = value_len(size) else {
            let fits = |s: &usize| value_len(*s).is_some();
            let below = (least..size).rev().find(fits).unwrap_or(least);
            let above = (size + 1..).find(fits).unwrap_or(size);
            bail!(
                "--size {size} cannot be framed exactly with --schema-id (the Avro length's \
                 varint grows by a byte there): use {below} or {above}"
            );
        };
        let mut header = vec![0u8];
        header.extend_from_slice(&id.to_be_bytes());
        header.extend_from_slice(&zigzag_varint(n as u64));
        debug_assert_eq!(header.len() + n, size);
        Ok(Frame { header })
    }

    /// Bytes before the Avro value's contents (where the timestamp is).
    pub fn len(&self) -> usize {
        self.header.len()
    }

    /// Writes the header at the start of `payload` (of the run's size).
    pub fn write(&self, payload: &mut [u8]) {
        payload[..self.header.len()].copy_from_slice(&self.header);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_avro_longs() {
        assert_eq!(zigzag_varint(0), [0]);
        assert_eq!(zigzag_varint(63), [126]);
        assert_eq!(zigzag_varint(64), [0x80, 0x01]);
        assert_eq!(zigzag_varint(94), [0xbc, 0x01]);
    }

    #[test]
    fn a_frame_fills_the_size_exactly() {
        for size in [14, 69, 71, 100, 1024, 1 << 20] {
            let f = Frame::new(7, size).unwrap();
            let mut p = vec![b'x'; size];
            f.write(&mut p);
            assert_eq!(&p[..5], &[0, 0, 0, 0, 7]);
            let n = size - f.len();
            assert_eq!(&p[5..f.len()], zigzag_varint(n as u64).as_slice(), "{size}");
        }
        assert_eq!(Frame::new(1, 100).unwrap().len(), 7);
    }

    #[test]
    fn sizes_that_cannot_be_framed_name_their_neighbours() {
        let e = Frame::new(1, 70).unwrap_err().to_string();
        assert!(e.contains("use 69 or 71"), "{e}");
        let e = Frame::new(1, 13).unwrap_err().to_string();
        assert!(e.contains("at least 14"), "{e}");
    }
}
