//! `[audit]` of `busbar serve`: where the audit log goes (`file`: empty for
//! `<data-dir>/audit.log`, `"stdout"`, or a path) and how it rotates; checked here and turned into
//! the broker's [`AuditConfig`]. The writer itself is `busbar_broker::audit`.

use anyhow::Result;
use busbar_broker::audit::{AuditConfig, AuditTarget};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[audit]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Empty: `<data-dir>/audit.log`; `"stdout"`: standard output; else a file path.
    pub file: String,
    /// Rotate when the next line would take the file past this, bytes.
    pub max_bytes: u64,
    /// Rotated files kept (`audit.log.1` ..).
    pub files_kept: u64,
    /// Audit lines waiting for the writer; past it new ones are dropped and counted.
    pub queue_max: u64,
}

impl Default for AuditSection {
    fn default() -> Self {
        let a = AuditConfig::default();
        Self {
            file: String::new(),
            max_bytes: a.max_bytes,
            files_kept: a.files_kept as u64,
            queue_max: a.queue_max as u64,
        }
    }
}

impl AuditSection {
    /// Range checks.
    pub fn validate(&self) -> Result<()> {
        let checks: &[(&str, u64, u64, u64)] = &[
            ("audit.max_bytes", self.max_bytes, 4096, 1 << 40),
            ("audit.files_kept", self.files_kept, 0, 1000),
            ("audit.queue_max", self.queue_max, 1, 10_000_000),
        ];
        crate::config::check_ranges(checks)
    }

    /// The broker's settings.
    pub fn broker_config(&self) -> AuditConfig {
        AuditConfig {
            target: match self.file.as_str() {
                "" => AuditTarget::DataDir,
                "stdout" => AuditTarget::Stdout,
                path => AuditTarget::File(PathBuf::from(path)),
            },
            max_bytes: self.max_bytes,
            files_kept: self.files_kept as u32,
            queue_max: self.queue_max as usize,
        }
    }
}
