//! The JSON Schema cases of the shared compatibility vectors (`tests/data/schema-compat-vectors.json`,
//! a copy of `spec/schema-compat-vectors.json`), run through `json_compat::can_read` with the mode
//! semantics of Confluent's `SchemaValidatorBuilder`: BACKWARD = new reads old, FORWARD = old reads
//! new, FULL = both; transitive modes against every previous version, others against the latest.

use busbar_schema::json_compat::can_read;
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/schema-compat-vectors.json"
    );
    let text = std::fs::read_to_string(path).expect("the vectors file is readable");
    let all: Vec<Value> = serde_json::from_str(&text).expect("the vectors file is JSON");
    all.into_iter().filter(|v| v["format"] == "JSON").collect()
}

/// The check a registry makes for `mode`: every error of every direction against every version.
fn check(mode: &str, new: &Value, history: &[Value], latest: &Value) -> Result<(), Vec<String>> {
    let against: Vec<&Value> = if mode.ends_with("_TRANSITIVE") {
        history.iter().collect()
    } else {
        vec![latest]
    };
    let (backward, forward) = match mode.trim_end_matches("_TRANSITIVE") {
        "BACKWARD" => (true, false),
        "FORWARD" => (false, true),
        "FULL" => (true, true),
        "NONE" => (false, false),
        other => panic!("unknown mode {other}"),
    };
    let mut errors = Vec::new();
    for old in against {
        if backward {
            errors.extend(can_read(new, old).err().unwrap_or_default());
        }
        if forward {
            errors.extend(can_read(old, new).err().unwrap_or_default());
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[test]
fn every_json_vector_gets_its_expected_answer() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 14, "the shared file has 14 JSON vectors");
    let mut wrong = Vec::new();
    for vector in &vectors {
        let history = vector["history"].as_array().expect("history is an array");
        let result = check(
            vector["mode"].as_str().expect("mode"),
            &vector["new_schema"],
            history,
            &vector["old_schema"],
        );
        let expected = vector["compatible"].as_bool().expect("compatible");
        if result.is_ok() != expected {
            wrong.push(format!(
                "{}: expected compatible={expected}, got {result:?}",
                vector["id"]
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn incompatible_vectors_name_the_change_and_its_path() {
    let vectors = vectors();
    let find = |id: &str| {
        vectors
            .iter()
            .find(|v| v["id"] == id)
            .expect("vector present")
    };
    let case = find("json-02");
    let errors = can_read(&case["new_schema"], &case["old_schema"]).unwrap_err();
    assert!(
        errors[0].starts_with("MAX_LENGTH_DECREASED at #/maxLength"),
        "{errors:?}"
    );
    let case = find("json-11");
    let errors = can_read(&case["new_schema"], &case["old_schema"]).unwrap_err();
    assert!(
        errors[0].starts_with("PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL at #/properties/bar"),
        "{errors:?}"
    );
    let case = find("json-13");
    let errors = can_read(&case["new_schema"], &case["old_schema"]).unwrap_err();
    assert!(
        errors[0].starts_with("REQUIRED_ATTRIBUTE_ADDED at #/required/foo"),
        "{errors:?}"
    );
}
