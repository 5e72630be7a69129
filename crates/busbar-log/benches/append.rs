//! Append throughput on the real disk under the default `batch` policy, against a baseline measured
//! in the same run: the same bytes written with `write` + `fdatasync` by the same number of threads
//! with no log at all (what the disk gives). Prints medians of 3 runs and the ratio log / baseline.
//!
//! `cargo bench -p busbar-log --bench append [-- <threads> <batches per thread> <records per batch>]`
//! Compiled in CI (`cargo bench --no-run`), run by hand: the machine is shared and noisy.

use busbar_log::batch::{self, NewRecord};
use busbar_log::disk::{FileStorage, Storage};
use busbar_log::{Log, LogConfig};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn payload(records: usize) -> Vec<u8> {
    let recs: Vec<_> = (0..records)
        .map(|i| NewRecord {
            key: Some(format!("key-{i}").into_bytes()),
            value: Some(vec![b'x'; 100]),
            headers: vec![],
            timestamp: 1_700_000_000_000,
        })
        .collect();
    batch::build(&recs)
}

fn run_log(threads: usize, per_thread: usize, batch: &[u8]) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(FileStorage::open(dir.path()).unwrap()) as Arc<dyn Storage>;
    let log = Arc::new(Log::open(storage, LogConfig::default()).unwrap());
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (log, batch) = (log.clone(), batch.to_vec());
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    log.append(&mut batch.clone()).unwrap();
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    start.elapsed().as_secs_f64()
}

/// Each thread writes then fdatasyncs the shared file: one sync per append, no group commit.
fn run_baseline(threads: usize, per_thread: usize, batch: &[u8]) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let file = Arc::new(Mutex::new(
        std::fs::File::create(dir.path().join("raw")).unwrap(),
    ));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (file, batch) = (file.clone(), batch.to_vec());
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    let f = file.lock().unwrap();
                    (&*f).write_all(&batch).unwrap();
                    let f = f.try_clone().unwrap();
                    f.sync_data().unwrap();
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let threads = *args.first().unwrap_or(&16);
    let per_thread = *args.get(1).unwrap_or(&500);
    let records = *args.get(2).unwrap_or(&10);
    let batch = payload(records);
    let total = (threads * per_thread) as f64;
    let (mut log, mut base) = (vec![], vec![]);
    for _ in 0..3 {
        log.push(run_log(threads, per_thread, &batch));
        base.push(run_baseline(threads, per_thread, &batch));
    }
    let (l, b) = (median(log), median(base));
    let mb = total * batch.len() as f64 / 1e6;
    println!("{threads} threads x {per_thread} batches x {records} records ({} B/batch), fsync before ack", batch.len());
    println!(
        "log (group commit):     {:>10.0} batches/s {:>10.0} records/s {:>7.1} MB/s",
        total / l,
        total * records as f64 / l,
        mb / l
    );
    println!(
        "baseline write+fsync:   {:>10.0} batches/s {:>10.0} records/s {:>7.1} MB/s",
        total / b,
        total * records as f64 / b,
        mb / b
    );
    println!("ratio log / baseline:   {:.2}", b / l);
}
