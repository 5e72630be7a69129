//! Property test against a simple in-memory model: random appends, reads, rolls (small segments),
//! retention, delete-records, compaction, clean reopens and crashes give the model's answers.
//!
//! The model is a list of batches. Reads must return a run of the model's batches starting with the
//! one holding the offset; cleaning may only remove what its rule allows, and what it removed
//! becomes the model.

use crate::common::*;
use busbar_log::batch::BatchHeader;
use busbar_log::{CleanupPolicy, Log, LogConfig, ManualClock};
use proptest::prelude::*;
use std::collections::HashMap;

#[derive(Debug, Clone)]
enum Op {
    Append { records: usize, key_space: usize },
    Read { at: u16, max_bytes: u16 },
    Time { at: u16 },
    DeleteRecords { at: u16 },
    Retention,
    Compact,
    Reopen,
    Crash,
    Tick(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..5, 1usize..6).prop_map(|(records, key_space)| Op::Append { records, key_space }),
        4 => (any::<u16>(), 1u16..3000).prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        1 => any::<u16>().prop_map(|at| Op::Time { at }),
        1 => any::<u16>().prop_map(|at| Op::DeleteRecords { at }),
        1 => Just(Op::Retention),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        1 => (0u16..5000).prop_map(Op::Tick),
    ]
}

struct Model {
    /// (first offset, last offset, records (offset, key, value, ts)) per stored batch.
    batches: Vec<(u64, u64, Vec<Event>)>,
    next: u64,
    log_start: u64,
    seq: u64,
}

impl Model {
    fn events(&self) -> Vec<Event> {
        self.batches
            .iter()
            .flat_map(|b| b.2.clone())
            .filter(|e| e.0 >= self.log_start)
            .collect()
    }

    /// Takes the log's batches as the new model after checking they only lost records.
    fn adopt(&mut self, log: &Log) {
        let before = self.events();
        self.log_start = log.stats().log_start;
        let mut actual = Vec::new();
        let mut offset = self.log_start;
        while offset < self.next {
            let r = log.read(offset, 1 << 20).unwrap();
            for (h, b) in batches(&r.data) {
                actual.push((h.base_offset as u64, h.last_offset() as u64, events(&b)));
                offset = h.last_offset() as u64 + 1;
            }
        }
        self.batches = actual;
        for e in self.events() {
            assert!(before.contains(&e), "{e:?} appeared from nowhere");
        }
    }
}

fn check_read(model: &Model, log: &Log, offset: u64, max_bytes: usize) {
    let r = log.read(offset, max_bytes).expect("in-range read");
    let got = batches(&r.data);
    let i = model.batches.iter().position(|b| b.1 >= offset);
    let Some(i) = i else {
        assert!(got.is_empty());
        return;
    };
    assert!(
        !got.is_empty(),
        "a read below the high watermark returns at least one batch"
    );
    let mut total = 0;
    for (k, (h, b)) in got.iter().enumerate() {
        let want = &model.batches[i + k];
        assert_eq!(
            (h.base_offset as u64, h.last_offset() as u64),
            (want.0, want.1)
        );
        assert_eq!(
            events(b)
                .into_iter()
                .filter(|e| e.0 >= model.log_start)
                .collect::<Vec<_>>(),
            want.2
                .iter()
                .filter(|e| e.0 >= model.log_start)
                .cloned()
                .collect::<Vec<_>>()
        );
        total += b.len();
    }
    assert!(
        got.len() == 1 || total <= max_bytes,
        "read exceeded max_bytes with more than one batch"
    );
}

fn run(ops: Vec<Op>) {
    let clock = ManualClock::new(1_000_000);
    let cfg = LogConfig {
        cleanup: CleanupPolicy::CompactDelete,
        retention_bytes: Some(6000),
        retention_ms: Some(20_000),
        delete_retention_ms: 3000,
        clock: clock.clone(),
        ..small(1024)
    };
    let (storage, mut log) = mem_log(cfg.clone());
    let mut m = Model {
        batches: vec![],
        next: 0,
        log_start: 0,
        seq: 0,
    };
    for op in ops {
        match op {
            Op::Append { records, key_space } => {
                let ts = clock.now_ms_for_test();
                let evs: Vec<_> = (0..records)
                    .map(|i| {
                        m.seq += 1;
                        let key = format!("k{}", m.seq % key_space as u64).into_bytes();
                        let val =
                            (!m.seq.is_multiple_of(7)).then(|| format!("v{}", m.seq).into_bytes());
                        (m.next + i as u64, Some(key), val, ts)
                    })
                    .collect();
                let recs: Vec<_> = evs
                    .iter()
                    .map(|e| rec(e.1.as_deref(), e.2.as_deref(), e.3))
                    .collect();
                let mut b = busbar_log::batch::build(&recs);
                let at = log.append(&mut b).unwrap();
                assert_eq!(at.base_offset, m.next);
                let h = BatchHeader::parse(&b).unwrap();
                m.batches.push((m.next, h.last_offset() as u64, evs));
                m.next += records as u64;
            }
            Op::Read { at, max_bytes } => {
                let span = m.next - m.log_start + 1;
                check_read(&m, &log, m.log_start + at as u64 % span, max_bytes as usize);
            }
            Op::Time { at } => {
                let ts = 1_000_000 + at as i64 * 10;
                let want = m.events().into_iter().find(|e| e.3 >= ts).map(|e| e.0);
                assert_eq!(log.offset_for_timestamp(ts).unwrap(), want);
            }
            Op::DeleteRecords { at } => {
                let to = m.log_start + at as u64 % (m.next - m.log_start + 1);
                m.log_start = log.delete_records(to).unwrap();
                assert_eq!(m.log_start, to.max(m.log_start));
                m.batches.retain(|b| b.1 >= m.log_start);
            }
            Op::Retention => {
                log.enforce_retention().unwrap();
                m.adopt(&log);
            }
            Op::Compact => {
                let latest: HashMap<_, _> =
                    m.events().into_iter().map(|e| (e.1.clone(), e.0)).collect();
                log.compact().unwrap();
                let after = read_all(&log);
                for (key, off) in latest {
                    let kept = after.iter().any(|e| e.0 == off && e.1 == key);
                    let tomb = m.events().iter().any(|e| e.0 == off && e.2.is_none());
                    assert!(
                        kept || tomb,
                        "latest record of {key:?} at {off} was removed"
                    );
                }
                m.adopt(&log);
            }
            Op::Reopen => {
                log.close().unwrap();
                log = reopen(&storage, cfg.clone());
            }
            Op::Crash => {
                drop(log);
                storage.fs().crash(Some(m.seq));
                log = reopen(&storage, cfg.clone());
            }
            Op::Tick(ms) => clock.advance(ms as i64),
        }
        assert_eq!(read_all(&log), m.events());
        assert_eq!(log.stats().high_watermark, m.next);
    }
}

trait NowForTest {
    fn now_ms_for_test(&self) -> i64;
}

impl NowForTest for ManualClock {
    fn now_ms_for_test(&self) -> i64 {
        busbar_log::Clock::now_ms(self)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(200), ..ProptestConfig::default() })]
    #[test]
    fn the_log_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops);
    }
}

/// `PROPTEST_CASES` when set (the reliability battery's long tier raises it), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
