//! `check-history FILE.jsonl`: checks a Jepsen-style history written by a test driver in another
//! language (the real-client kill loops) with busbar's checker. Prints one JSON object
//! `{"clean", "counts", "examples"}`; exits 1 when an anomaly was found, 2 on unreadable input.

use busbar_testkit::history::{check, from_jsonl};
use serde_json::json;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: check-history FILE.jsonl");
        std::process::exit(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("check-history: {path}: {e}");
            std::process::exit(2);
        }
    };
    let (history, drain) = match from_jsonl(&text) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("check-history: {path}: {e}");
            std::process::exit(2);
        }
    };
    let report = check(&history, &drain);
    println!(
        "{}",
        json!({"clean": report.is_clean(), "counts": report.counts, "examples": report.examples})
    );
    std::process::exit(if report.is_clean() { 0 } else { 1 });
}
