//! Logs written by every released format version must keep opening. `fixtures/v1` was written by
//! this build's format 1 (regenerate only when adding a version: `BUSBAR_WRITE_FIXTURES=1`).

use crate::common::*;
use busbar_log::disk::{FileStorage, Storage};
use busbar_log::{Log, LogConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

fn config() -> LogConfig {
    small(1024)
}

fn write_fixture(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    let log = Log::open(
        Arc::new(FileStorage::open(dir).unwrap()) as Arc<dyn Storage>,
        config(),
    )
    .unwrap();
    for i in 0..30 {
        log.append(&mut batch_of(
            2,
            &format!("fixture{i}"),
            3,
            1_600_000_000_000 + i,
        ))
        .unwrap();
    }
    log.delete_records(3).unwrap();
    log.close().unwrap();
}

#[test]
fn version_1_logs_open_and_read_back() {
    if std::env::var_os("BUSBAR_WRITE_FIXTURES").is_some() {
        write_fixture(&fixture_dir());
    }
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture_dir()).expect("fixtures/v1 exists") {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    let log = Log::open(
        Arc::new(FileStorage::open(tmp.path()).unwrap()) as Arc<dyn Storage>,
        config(),
    )
    .unwrap();
    assert!(log.recovery().clean, "{:?}", log.recovery());
    let stats = log.stats();
    assert_eq!((stats.log_start, stats.high_watermark), (3, 60));
    let evs = read_all(&log);
    assert_eq!(evs.len(), 57);
    assert_eq!(evs.last().unwrap().2.as_deref(), Some(&b"fixture29-1"[..]));
    assert_eq!(
        log.offset_for_timestamp(1_600_000_000_000 + 10).unwrap(),
        Some(19)
    );
}
