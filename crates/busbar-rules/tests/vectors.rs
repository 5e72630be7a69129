//! Every case of the spec's event-pattern vectors through the public API. `data/` holds a copy of
//! the spec's `event-pattern-vectors.json`, so the test runs from a clone of this repository alone.

use busbar_rules::Pattern;
use serde_json::Value;

#[test]
fn every_vector_gives_the_expected_answer() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/event-pattern-vectors.json"
    );
    let text = std::fs::read_to_string(path).expect("tests/data/event-pattern-vectors.json");
    let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert!(cases.len() >= 40);
    let mut wrong = Vec::new();
    for c in &cases {
        let id = c["id"].as_str().unwrap();
        let p = match Pattern::parse(&c["pattern"]) {
            Ok(p) => p,
            Err(e) => {
                wrong.push(format!("{id}: pattern refused: {e}"));
                continue;
            }
        };
        let want = c["match"].as_bool().unwrap();
        if p.matches(&c["event"]) != want {
            wrong.push(format!(
                "{id}: expected match={want} ({})",
                c["note"].as_str().unwrap_or("")
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} vectors failed:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

/// Reliability I1 in CI: random and JSON-ish texts as patterns (and events) never panic; the same
/// entry point `fuzz/fuzz_targets/event_pattern.rs` fuzzes with libFuzzer.
#[test]
fn random_pattern_texts_parse_to_ok_or_a_located_error() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let pool: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"a\"",
        "\"b\"",
        "0",
        "-1",
        "1e400",
        "2.5",
        "true",
        "null",
        "\"numeric\"",
        "\">\"",
        "\"<=\"",
        "\"prefix\"",
        "\"suffix\"",
        "\"anything-but\"",
        "\"$or\"",
        "\"exists\"",
        "\"wildcard\"",
        "\"*\"",
        "\"cidr\"",
        "\"10.0.0.0/8\"",
        "\"equals-ignore-case\"",
    ];
    for _ in 0..20_000 {
        let len = 1 + next() % 40;
        let text: String = (0..len)
            .map(|_| pool[(next() % pool.len() as u64) as usize])
            .collect();
        match busbar_rules::Pattern::parse_str(&text) {
            Ok(p) => {
                let event = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
                let _ = p.matches(&event);
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}
