//! Wildcard matching on hostile input: `*aaa…ab*` (a long piece after a star that never matches)
//! against a long text of `a`s. A backtracking glob retries the piece at every text position
//! (text x pattern work); the piece-by-piece matcher stays linear in the text.
//! `cargo bench -p busbar-rules --bench wildcard`

use busbar_rules::Pattern;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("hostile wildcard");
    for piece in [64usize, 1024] {
        let glob = format!("*{}b*", "a".repeat(piece));
        let pattern = Pattern::parse(&json!({"s": [{"wildcard": glob}]})).unwrap();
        let event = json!({"s": "a".repeat(16 * 1024)});
        assert!(!pattern.matches(&event));
        g.bench_function(format!("{piece}-char piece, 16 KiB text"), |b| {
            b.iter(|| black_box(pattern.matches(black_box(&event))))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
