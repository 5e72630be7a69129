//! Rate trackers are bounded in bytes, not only in number: a client id can be 32 KiB (a Kafka
//! request header's string), so keeping it in each tracker's key let 100,000 trackers take ~3 GB.
//! Measured with a counting allocator (this test binary's own), through the public quota API.

use busbar_broker::quota::{Entity, Kind, Op, QuotaConfig, Quotas};
use busbar_log::disk::MemStorage;
use busbar_log::SystemClock;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn trackers_of_long_client_ids_hold_a_fixed_size_key() {
    let q = Quotas::open(
        Arc::new(MemStorage::default()),
        Arc::new(SystemClock),
        QuotaConfig::default(),
    )
    .unwrap();
    let every_client = Entity::from_parts([("client-id", None)]).unwrap();
    let ops = [Op::Set("request_percentage".into(), 1e9)];
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(q.alter(&every_client, &ops, false))
        .unwrap();
    const N: usize = 1_000;
    let ids: Vec<String> = (0..N)
        .map(|i| format!("{i:08}{}", "c".repeat(32_759)))
        .collect();
    let before = LIVE.load(Ordering::Relaxed);
    for id in &ids {
        assert_eq!(q.record("", id, Kind::Request, 1.0, true), 0);
    }
    let per_tracker = (LIVE.load(Ordering::Relaxed) - before) / N as isize;
    // A tracker is its key, a few samples and its index entries: well under 1 KiB, whatever the
    // length of the names (it was the client id's 32 KiB and more).
    assert!(per_tracker < 1024, "{per_tracker} bytes per tracker");
}
