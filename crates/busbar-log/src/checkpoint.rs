//! The recovery checkpoint: how far the log is known valid and synced, whether the last shutdown was
//! clean, the log start offset and the epoch. Written only through the atomic replace protocol.

use crate::disk::{self, Storage};
use crate::error::{LogError, Result};

/// File name of the checkpoint.
pub const NAME: &str = "checkpoint";
const MAGIC: &[u8; 8] = b"BBCKPT01";
const VERSION: u16 = 1;
const BYTES: usize = 52;

/// Contents of the checkpoint file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    pub clean: bool,
    pub epoch: u32,
    /// Base offset of the segment holding the recovery point.
    pub segment: u64,
    /// Bytes of that segment known valid and synced.
    pub position: u64,
    /// Next offset at the recovery point.
    pub next_offset: u64,
    pub log_start: u64,
}

impl Checkpoint {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(BYTES);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_be_bytes());
        b.extend_from_slice(&u16::from(self.clean).to_be_bytes());
        b.extend_from_slice(&self.epoch.to_be_bytes());
        for v in [
            self.segment,
            self.position,
            self.next_offset,
            self.log_start,
        ] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    fn decode(b: &[u8], file: &str) -> Result<Self> {
        let damaged = |reason: &str| LogError::Corrupt {
            file: file.to_string(),
            position: 0,
            reason: reason.to_string(),
        };
        if b.len() != BYTES || &b[0..8] != MAGIC {
            return Err(damaged("bad magic or length"));
        }
        let version = u16::from_be_bytes([b[8], b[9]]);
        if version != VERSION {
            return Err(LogError::UnsupportedFormat {
                file: file.to_string(),
                reason: format!("checkpoint version {version}, this build reads {VERSION}"),
            });
        }
        let crc = u32::from_be_bytes(b[48..52].try_into().unwrap_or_default());
        if crc32c::crc32c(&b[..48]) != crc {
            return Err(damaged("CRC mismatch"));
        }
        let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().unwrap_or_default());
        Ok(Self {
            clean: u16::from_be_bytes([b[10], b[11]]) & 1 == 1,
            epoch: u32::from_be_bytes(b[12..16].try_into().unwrap_or_default()),
            segment: u64_at(16),
            position: u64_at(24),
            next_offset: u64_at(32),
            log_start: u64_at(40),
        })
    }

    /// Reads the checkpoint: `Ok(None)` when absent, an error when damaged or of another version.
    pub fn load(storage: &dyn Storage) -> Result<Option<Self>> {
        let bytes =
            disk::read_all(storage, NAME).map_err(|e| LogError::io("read checkpoint", e))?;
        bytes
            .map(|b| Self::decode(&b, &storage.describe(NAME)))
            .transpose()
    }

    /// Writes the checkpoint durably (atomic replace).
    pub fn store(&self, storage: &dyn Storage) -> Result<()> {
        disk::write_atomic(storage, NAME, &self.encode())
            .map_err(|e| LogError::io("write checkpoint", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let c = Checkpoint {
            clean: true,
            epoch: 3,
            segment: 10,
            position: 99,
            next_offset: 12,
            log_start: 4,
        };
        let b = c.encode();
        assert_eq!(Checkpoint::decode(&b, "c").unwrap(), c);
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x10;
            assert!(Checkpoint::decode(&d, "c").is_err(), "byte {i}");
        }
    }
}
