//! Every case of shared/spec/event-pattern-vectors.json through the public API.

use busbar_rules::Pattern;
use serde_json::Value;

#[test]
fn every_vector_gives_the_expected_answer() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/spec/event-pattern-vectors.json"
    );
    let text =
        std::fs::read_to_string(path).expect("the spec's vector file is beside the repository");
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
