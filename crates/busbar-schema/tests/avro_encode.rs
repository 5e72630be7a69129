//! Avro binary encoding through the public API (`avro::binary::encode`): natural JSON to bytes,
//! union branches chosen by the value (and Avro's `{"type-name": value}`), field defaults,
//! refused values named by path, and the limits. Round trips: random values of several schemas
//! encode and decode back to themselves; vectors written by fastavro (a real Avro
//! implementation, `tests/data/avro_fastavro.py`) decode to the expected JSON and encode back
//! to the same bytes.

use busbar_schema::avro::binary::{decode, encode};
use busbar_schema::avro::{Avro, CodecLimits};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn parse(schema: &Value) -> Avro {
    Avro::parse(&schema.to_string(), &Avro::default(), 64).expect("parses")
}

fn enc(schema: &Value, v: &Value) -> Result<Vec<u8>, String> {
    encode(&parse(schema), v, &CodecLimits::default())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn fastavro_vectors_decode_to_natural_json_and_encode_to_the_same_bytes() {
    let data: Value = serde_json::from_str(include_str!("data/avro_fastavro.json")).expect("json");
    let cases = data["cases"].as_array().expect("cases");
    assert!(cases.len() >= 18);
    for case in cases {
        let name = &case["name"];
        let avro = parse(&case["schema"]);
        let bytes = unhex(case["hex"].as_str().expect("hex"));
        let decoded = decode(&avro, &bytes, &CodecLimits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, case["natural"], "{name}");
        let encoded = encode(&avro, &case["natural"], &CodecLimits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(hex(&encoded), hex(&bytes), "{name}");
    }
}

#[test]
fn union_branches_are_chosen_by_the_value() {
    let u = json!(["null", "int", "long", "float", "double", "string",
        {"type": "map", "values": "int"}]);
    let branch = |v: Value| enc(&u, &v).map(|b| b[0] / 2);
    assert_eq!(branch(json!(null)), Ok(0));
    assert_eq!(branch(json!(5)), Ok(1));
    assert_eq!(branch(json!(1i64 << 40)), Ok(2));
    assert_eq!(branch(json!(0.5)), Ok(3), "a float holds 0.5 exactly");
    assert_eq!(branch(json!(0.1)), Ok(3), "a float decodes back to 0.1");
    assert_eq!(
        branch(json!(0.123456789)),
        Ok(4),
        "a float would show 0.12345679"
    );
    assert_eq!(
        branch(json!("NaN")),
        Ok(5),
        "a string branch comes before the NaN strings"
    );
    assert_eq!(branch(json!({"a": 1})), Ok(6));
    // Avro's JSON encoding: not taken when a branch takes the object as it is (the map).
    assert_eq!(branch(json!({"string": 1})), Ok(6));
    let u = json!(["null", "string", "long", {"type": "record", "name": "R",
        "fields": [{"name": "a", "type": "int"}]}]);
    assert_eq!(enc(&u, &json!({"string": "x"})), enc(&u, &json!("x")));
    assert_eq!(enc(&u, &json!({"long": 1})), Ok(vec![4, 2]));
    assert_eq!(enc(&u, &json!({"R": {"a": 1}})), Ok(vec![6, 2]));
    assert_eq!(enc(&u, &json!({"a": 1})), Ok(vec![6, 2]));
    let err = enc(&u, &json!(true)).expect_err("no branch");
    assert_eq!(
        err,
        "true fits no branch of the union [null, string, long, R]"
    );
    let err = enc(&u, &json!({"long": "x"})).expect_err("wrong inner");
    assert!(err.contains("fits no branch"), "{err}");
}

#[test]
fn missing_fields_take_their_defaults_and_unknown_fields_are_refused() {
    let schema = json!({"type": "record", "name": "R", "fields": [
        {"name": "a", "type": "int"},
        {"name": "b", "type": ["null", "string"], "default": null},
        {"name": "c", "type": ["string", "null"], "default": "dflt"},
        {"name": "d", "type": {"type": "record", "name": "In", "fields": [
            {"name": "x", "type": "long", "default": 7}]}, "default": {}},
        {"name": "e", "type": {"type": "array", "items": "int"}, "default": [1, 2]},
        {"name": "f", "type": "bytes", "default": "\u{00ff}"},
    ]});
    let avro = parse(&schema);
    let bytes = encode(&avro, &json!({"a": 1}), &CodecLimits::default()).expect("encodes");
    let back = decode(&avro, &bytes, &CodecLimits::default()).expect("decodes");
    assert_eq!(
        back,
        json!({"a": 1, "b": null, "c": "dflt", "d": {"x": 7}, "e": [1, 2], "f": "\u{00ff}"})
    );
    let err = enc(&schema, &json!({"b": "x"})).expect_err("a missing");
    assert_eq!(err, "field a: missing, and the field has no default");
    let err = enc(&schema, &json!({"a": 1, "z": 2})).expect_err("unknown");
    assert_eq!(err, "record R has no field \"z\"");
    let err = enc(&schema, &json!({"a": 1, "b": 3})).expect_err("b a number");
    assert_eq!(err, "field b: 3 fits no branch of the union [null, string]");
}

#[test]
fn refused_values_are_named_by_path() {
    let schema = json!({"type": "record", "name": "Root", "fields": [
        {"name": "order", "type": {"type": "record", "name": "Order", "fields": [
            {"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "Item",
                "fields": [{"name": "price", "type": "double"}]}}},
            {"name": "tags", "type": {"type": "map", "values": "int"}},
            {"name": "kind", "type": {"type": "enum", "name": "K", "symbols": ["A"]}},
            {"name": "hash", "type": {"type": "fixed", "name": "H", "size": 2}},
        ]}},
    ]});
    let order = |items: Value, tags: Value, kind: &str, hash: &str| json!({"order": {"items": items, "tags": tags, "kind": kind, "hash": hash}});
    let items = json!([{"price": 1}, {"price": 2}, {"price": 3}, {"price": "x"}]);
    let err = enc(&schema, &order(items, json!({}), "A", "ab")).expect_err("price");
    assert_eq!(
        err,
        "field order.items[3].price: expected a double, not \"x\""
    );
    let err = enc(&schema, &order(json!([]), json!({"k": 1.5}), "A", "ab")).expect_err("tag");
    assert_eq!(
        err,
        "field order.tags[\"k\"]: expected an int (32-bit integer), not 1.5"
    );
    let err = enc(&schema, &order(json!([]), json!({}), "B", "ab")).expect_err("kind");
    assert_eq!(err, "field order.kind: \"B\" is not a symbol of enum K");
    let err = enc(&schema, &order(json!([]), json!({}), "A", "abc")).expect_err("hash");
    assert_eq!(err, "field order.hash: fixed H takes 2 bytes, not 3");
    let err = enc(&schema, &order(json!([]), json!({}), "A", "a\u{100}")).expect_err("hash");
    assert!(
        err.starts_with("field order.hash: expected a string of code points"),
        "{err}"
    );
    let err = enc(&json!("int"), &json!(1i64 << 31)).expect_err("int range");
    assert_eq!(err, "expected an int (32-bit integer), not 2147483648");
    let err = enc(&json!("float"), &json!(1e300)).expect_err("float range");
    assert!(err.contains("out of a float's range"), "{err}");
}

#[test]
fn encoding_is_bounded_by_the_limits() {
    let limits = CodecLimits {
        depth_max: 3,
        items_max: 10,
    };
    let avro = parse(&json!({"type": "array", "items": "int"}));
    let err = encode(&avro, &json!(vec![1; 11]), &limits).expect_err("items");
    assert!(err.contains("more than 10 array items"), "{err}");
    let avro = parse(&json!({"type": "record", "name": "N", "fields": [
        {"name": "next", "type": ["null", "N"]}]}));
    let mut deep = json!({"next": null});
    for _ in 0..3 {
        deep = json!({"next": deep});
    }
    let err = encode(&avro, &deep, &limits).expect_err("depth");
    assert!(err.contains("nested more than 3 deep"), "{err}");
}

#[test]
fn non_finite_numbers_and_bytes_round_trip_as_strings() {
    let schema = json!({"type": "record", "name": "F", "fields": [
        {"name": "a", "type": "float"}, {"name": "b", "type": "double"},
        {"name": "c", "type": "bytes"}]});
    let v = json!({"a": "NaN", "b": "-Infinity", "c": "\u{0}\u{ff}"});
    let avro = parse(&schema);
    let bytes = encode(&avro, &v, &CodecLimits::default()).expect("encodes");
    assert_eq!(decode(&avro, &bytes, &CodecLimits::default()), Ok(v));
}

/// A tiny deterministic generator (xorshift), seeded by proptest.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random natural JSON value of `ty`.
fn random(avro: &Avro, ty: &busbar_schema::avro::Type, rng: &mut Rng, depth: usize) -> Value {
    use busbar_schema::avro::{Named, Type};
    match ty {
        Type::Null => Value::Null,
        Type::Boolean => json!(rng.below(2) == 1),
        Type::Int => json!(rng.next() as i32),
        Type::Long => json!(rng.next() as i64 >> rng.below(64)),
        Type::Float => {
            let f = f32::from_bits(rng.next() as u32);
            if f.is_finite() {
                // Decoding shows a float by its shortest decimal, as a JSON float.
                let shortest: f64 = f.to_string().parse().expect("a number");
                json!(shortest)
            } else {
                json!("NaN")
            }
        }
        Type::Double => {
            let f = f64::from_bits(rng.next());
            serde_json::Number::from_f64(f).map_or(json!("Infinity"), Value::Number)
        }
        Type::Bytes(_) => {
            let n = rng.below(8);
            Value::String((0..n).map(|_| char::from(rng.next() as u8)).collect())
        }
        Type::String => {
            let n = rng.below(8);
            let chars = ['a', 'é', '✓', '😀', '"', '\0'];
            Value::String((0..n).map(|_| chars[rng.below(6) as usize]).collect())
        }
        Type::Array(items) => {
            let n = if depth > 3 { 0 } else { rng.below(4) };
            Value::Array(
                (0..n)
                    .map(|_| random(avro, items, rng, depth + 1))
                    .collect(),
            )
        }
        Type::Map(values) => {
            let n = if depth > 3 { 0 } else { rng.below(4) };
            let mut m = Map::new();
            for i in 0..n {
                m.insert(format!("k{i}"), random(avro, values, rng, depth + 1));
            }
            Value::Object(m)
        }
        Type::Union(branches) => {
            // Past depth 3, the first branch (null in the recursive schemas here) ends the tree.
            let i = if depth > 3 {
                0
            } else {
                rng.below(branches.len() as u64)
            };
            random(avro, &branches[i as usize], rng, depth + 1)
        }
        Type::Named(name) => match &avro.named[name].kind {
            Named::Record { fields } => {
                let mut m = Map::new();
                for f in fields {
                    m.insert(f.name.clone(), random(avro, &f.ty, rng, depth + 1));
                }
                Value::Object(m)
            }
            Named::Enum { symbols, .. } => {
                json!(symbols[rng.below(symbols.len() as u64) as usize])
            }
            Named::Fixed { size, .. } => {
                Value::String((0..*size).map(|_| char::from(rng.next() as u8)).collect())
            }
        },
    }
}

fn round_trip_schemas() -> Vec<Avro> {
    [
        json!({"type": "record", "name": "R", "fields": [
            {"name": "a", "type": {"type": "array", "items": ["null", "string", "double"]}},
            {"name": "m", "type": {"type": "map", "values": {"type": "fixed", "name": "F", "size": 3}}},
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
            {"name": "n", "type": ["null", "R"]},
            {"name": "f", "type": "float"},
            {"name": "d", "type": "double"},
            {"name": "b", "type": "bytes"},
            {"name": "i", "type": "int"},
            {"name": "l", "type": "long"},
            {"name": "t", "type": "boolean"},
            {"name": "z", "type": {"type": "array", "items": "null"}},
        ]}),
        json!(["null", "int", "long", "float", "double", "string", "bytes",
            {"type": "array", "items": ["long", "string"]},
            {"type": "map", "values": ["null", "float"]},
            {"type": "record", "name": "P", "fields": [{"name": "x", "type": "int"}]}]),
        json!({"type": "map", "values": {"type": "record", "name": "Q", "fields": [
            {"name": "u", "type": ["null", "boolean", "Q"]}]}}),
    ]
    .iter()
    .map(parse)
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]
    #[test]
    fn random_values_encode_and_decode_back_to_themselves(seed in 1u64..) {
        let mut rng = Rng(seed);
        for avro in round_trip_schemas() {
            let v = random(&avro, avro.root.as_ref().expect("root"), &mut rng, 0);
            let bytes = encode(&avro, &v, &CodecLimits::default())
                .map_err(|e| TestCaseError::fail(format!("{v}: {e}")))?;
            let back = decode(&avro, &bytes, &CodecLimits::default())
                .map_err(|e| TestCaseError::fail(format!("{v}: {e}")))?;
            prop_assert_eq!(&back, &v);
            // And the bytes are what encoding the decoded value gives.
            prop_assert_eq!(encode(&avro, &back, &CodecLimits::default()), Ok(bytes));
        }
    }
}
