//! Matching one event against 1, 100 and 10,000 rules: with the rule index, the time per event
//! should stay nearly flat as rules are added (it grows with the event, not the rule count).
//! `cargo bench -p busbar-rules --bench matching`

use busbar_rules::{Pattern, RuleSet};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use std::hint::black_box;

fn rules(n: usize) -> RuleSet<usize> {
    let mut set = RuleSet::new();
    for i in 0..n {
        let p = json!({
            "source": [format!("svc-{i}")],
            "detail": {"total": [{"numeric": [">", 10]}], "state": [{"prefix": "pa"}]},
        });
        set.add(i, Pattern::parse(&p).unwrap());
    }
    set
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("match one event");
    for n in [1usize, 100, 10_000] {
        let set = rules(n);
        let event = json!({
            "source": format!("svc-{}", n / 2),
            "detail-type": "order",
            "detail": {"total": 250, "state": "paid", "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}]},
        });
        assert_eq!(set.matching(&event).len(), 1);
        g.bench_function(format!("{n} rules"), |b| {
            b.iter(|| black_box(set.matching(black_box(&event)).len()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
