//! Avro binary decoding through the public API (`avro::binary::decode`): every type of the
//! spec, the natural JSON mapping, errors that name the failing path, and hostile payloads
//! (huge declared counts and lengths, deep nesting, varint overflow, random bytes) that must
//! fail fast without panicking or allocating beyond the input.

use busbar_schema::avro::binary::decode;
use busbar_schema::avro::{Avro, CodecLimits};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn parse(schema: &Value) -> Avro {
    Avro::parse(&schema.to_string(), &Avro::default(), 64).expect("parses")
}

fn dec(schema: &Value, bytes: &[u8]) -> Result<Value, String> {
    decode(&parse(schema), bytes, &CodecLimits::default())
}

/// Zig-zag varint of `n` (the spec's encoding of int and long).
fn zz(n: i64) -> Vec<u8> {
    let mut v = ((n << 1) ^ (n >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        if v < 0x80 {
            out.push(v as u8);
            return out;
        }
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
}

fn string(s: &str) -> Vec<u8> {
    let mut out = zz(s.len() as i64);
    out.extend_from_slice(s.as_bytes());
    out
}

#[test]
fn primitives_decode_to_their_natural_json() {
    let schema = json!({"type": "record", "name": "P", "fields": [
        {"name": "n", "type": "null"},
        {"name": "b", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "y", "type": "bytes"},
        {"name": "s", "type": "string"},
    ]});
    let mut bytes = vec![1];
    bytes.extend(zz(-3));
    bytes.extend(zz(1 << 40));
    bytes.extend(0.1f32.to_le_bytes());
    bytes.extend((-2.5f64).to_le_bytes());
    bytes.extend(zz(3));
    bytes.extend([0x00, 0x7f, 0xff]);
    bytes.extend(string("héllo"));
    let v = dec(&schema, &bytes).expect("decodes");
    assert_eq!(
        v,
        json!({"n": null, "b": true, "i": -3, "l": 1i64 << 40, "f": 0.1, "d": -2.5,
               "y": "\u{0}\u{7f}\u{ff}", "s": "héllo"})
    );
}

#[test]
fn varints_round_the_edges_and_overflow_is_refused() {
    for n in [
        0,
        -1,
        1,
        63,
        -64,
        64,
        i64::from(i32::MAX),
        i64::MIN,
        i64::MAX,
    ] {
        assert_eq!(dec(&json!("long"), &zz(n)), Ok(json!(n)), "{n}");
    }
    for n in [i32::MIN, i32::MAX, 0, -1] {
        assert_eq!(dec(&json!("int"), &zz(n.into())), Ok(json!(n)), "{n}");
    }
    let err = dec(&json!("int"), &zz(1 << 31)).expect_err("too big for an int");
    assert!(err.contains("does not fit an int"), "{err}");
    // 10 bytes whose last carries more than the 64th bit.
    let mut over = vec![0xff; 9];
    over.push(0x02);
    let err = dec(&json!("long"), &over).expect_err("overflows");
    assert!(err.contains("overflows 64 bits"), "{err}");
    let err = dec(&json!("long"), &[0xff; 11]).expect_err("overflows");
    assert!(err.contains("overflows 64 bits"), "{err}");
    let err = dec(&json!("long"), &[0x80]).expect_err("truncated");
    assert!(err.contains("ends inside a number"), "{err}");
}

#[test]
fn complex_types_decode_blocks_unions_enums_fixed_and_maps() {
    let schema = json!({"type": "record", "name": "C", "fields": [
        {"name": "a", "type": {"type": "array", "items": "int"}},
        {"name": "m", "type": {"type": "map", "values": "string"}},
        {"name": "u", "type": ["null", "string", "long"]},
        {"name": "v", "type": ["null", "string"]},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y", "Z"]}},
        {"name": "x", "type": {"type": "fixed", "name": "F", "size": 2}},
    ]});
    let mut b = Vec::new();
    // Array: a block of 2, then a negative block of 1 with its byte size, then the end.
    b.extend(zz(2));
    b.extend(zz(1));
    b.extend(zz(2));
    b.extend(zz(-1));
    b.extend(zz(1));
    b.extend(zz(3));
    b.push(0);
    // Map {"k": "v"}.
    b.extend(zz(1));
    b.extend(string("k"));
    b.extend(string("v"));
    b.push(0);
    b.extend(zz(2)); // union branch long
    b.extend(zz(-7));
    b.extend(zz(0)); // union branch null
    b.extend(zz(2)); // enum Z
    b.extend([0x41, 0xe9]); // fixed
    let v = dec(&schema, &b).expect("decodes");
    assert_eq!(
        v,
        json!({"a": [1, 2, 3], "m": {"k": "v"}, "u": -7, "v": null, "e": "Z", "x": "A\u{e9}"})
    );
}

#[test]
fn recursive_types_decode_through_named_references() {
    let schema = json!({"type": "record", "name": "Node", "fields": [
        {"name": "value", "type": "int"},
        {"name": "next", "type": ["null", "Node"]},
    ]});
    let mut b = Vec::new();
    for v in [1, 2, 3] {
        b.extend(zz(v));
        b.extend(zz(1));
    }
    b.extend(zz(4));
    b.extend(zz(0));
    let v = dec(&schema, &b).expect("decodes");
    assert_eq!(
        v,
        json!({"value": 1, "next": {"value": 2, "next": {"value": 3, "next": {"value": 4, "next": null}}}})
    );
}

#[test]
fn trailing_bytes_are_refused_with_their_count() {
    let err = dec(&json!("int"), &[2, 0, 0]).expect_err("trailing");
    assert_eq!(err, "2 bytes left after the value");
}

#[test]
fn errors_name_the_path_of_the_failing_value() {
    let schema = json!({"type": "record", "name": "Root", "fields": [
        {"name": "order", "type": {"type": "record", "name": "Order", "fields": [
            {"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "Item",
                "fields": [{"name": "price", "type": "int"}]}}},
        ]}},
        {"name": "tags", "type": {"type": "map", "values": "boolean"}},
    ]});
    let mut b = zz(4);
    for _ in 0..3 {
        b.extend(zz(5));
    }
    b.extend(zz(1 << 31)); // item 3's price is too big for an int
    b.push(0);
    let err = dec(&schema, &b).expect_err("not an int");
    assert_eq!(
        err,
        "field order.items[3].price: 2147483648 does not fit an int (32 bits)"
    );

    let mut b = zz(0);
    b.extend(zz(1));
    b.extend(string("k"));
    b.push(7);
    b.push(0);
    let err = dec(&schema, &b).expect_err("bad boolean");
    assert_eq!(err, "field tags[\"k\"]: a boolean is 0 or 1, not 7");

    let err = dec(&json!(["null", "int"]), &zz(2)).expect_err("no branch 2");
    assert_eq!(err, "union branch 2 does not exist (the union has 2)");
    let enum_schema = json!({"type": "enum", "name": "E", "symbols": ["A"]});
    let err = dec(&enum_schema, &zz(1)).expect_err("no symbol 1");
    assert_eq!(err, "enum E has no symbol 1 (it has 1)");
    let err = dec(&json!("string"), &[6, b'a', b'b']).expect_err("short string");
    assert_eq!(err, "a string of length 3 but 2 bytes are left");
    let err = dec(&json!("string"), &[4, b'a', 0xfe]).expect_err("not UTF-8");
    assert_eq!(err, "a string is not UTF-8 (byte 1 of 2)");
}

#[test]
fn non_finite_floats_are_strings() {
    let mut b = f32::NAN.to_le_bytes().to_vec();
    b.extend(f64::NEG_INFINITY.to_le_bytes());
    let schema = json!({"type": "record", "name": "F", "fields": [
        {"name": "a", "type": "float"}, {"name": "b", "type": "double"}]});
    assert_eq!(dec(&schema, &b), Ok(json!({"a": "NaN", "b": "-Infinity"})));
}

/// Runs `f` and fails if it took more than a second (a hostile payload must fail fast).
fn fast<T>(f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
    out
}

#[test]
fn a_huge_declared_count_fails_fast_without_allocating() {
    // Five bytes: a block of 2^60 longs, then one item.
    let mut b = zz(1 << 60);
    b.push(2);
    assert!(b.len() <= 10);
    let err = fast(|| dec(&json!({"type": "array", "items": "long"}), &b)).expect_err("huge");
    assert!(err.contains("more than 1000000 array items"), "{err}");
    // Within items_max but beyond the bytes left.
    let b = zz(500_000);
    let err = fast(|| dec(&json!({"type": "array", "items": "long"}), &b)).expect_err("huge");
    assert_eq!(
        err,
        "a block declares 500000 array items of at least 1 bytes each, but 0 bytes are left"
    );
    // Items of zero bytes (nulls) are bounded by items_max alone.
    let limits = CodecLimits {
        items_max: 100,
        ..CodecLimits::default()
    };
    let schema = parse(&json!({"type": "array", "items": "null"}));
    let err =
        decode(&schema, &[zz(60), zz(60), vec![0]].concat(), &limits).expect_err("over items_max");
    assert!(err.contains("schema_registry.codec_items_max"), "{err}");
    // ... and by the input's size: a million nulls from four bytes would be a million values
    // per record of a batch (found by the adversarial review).
    let err = fast(|| {
        let b = [zz(1_000_000), vec![0]].concat();
        dec(&json!({"type": "array", "items": "null"}), &b)
    })
    .expect_err("a million nulls from 4 bytes");
    assert!(err.contains("more than 8 items per byte"), "{err}");
    let b = [zz(256), vec![0]].concat();
    let v = dec(&json!({"type": "array", "items": "null"}), &b).expect("256 nulls pass");
    assert_eq!(v.as_array().map(Vec::len), Some(256));
    // Lengths beyond the input.
    let err = fast(|| dec(&json!("bytes"), &zz(1 << 60))).expect_err("huge");
    assert_eq!(
        err,
        "bytes of length 1152921504606846976 but 0 bytes are left"
    );
    let err = fast(|| dec(&json!("string"), &zz(-1))).expect_err("negative");
    assert_eq!(err, "a string of length -1 but 0 bytes are left");
    // A negative block whose byte size exceeds the input.
    let b = [zz(-1), zz(1000)].concat();
    let err = dec(&json!({"type": "array", "items": "int"}), &b).expect_err("size");
    assert_eq!(
        err,
        "a block of array items declares 1000 bytes but 0 are left"
    );
    let b = [zz(i64::MIN), zz(0)].concat();
    let err = dec(&json!({"type": "map", "values": "int"}), &b).expect_err("min");
    assert!(err.contains("more than 1000000"), "{err}");
}

#[test]
fn deep_nesting_is_refused_at_depth_max_without_overflowing_the_stack() {
    let schema = json!({"type": "record", "name": "Node", "fields": [
        {"name": "next", "type": ["null", "Node"]},
    ]});
    // 100,000 levels of "branch 1" then the end: refused at depth_max, not by a stack overflow.
    let mut b = vec![2u8; 100_000];
    b.push(0);
    let err = fast(|| dec(&schema, &b)).expect_err("too deep");
    assert!(err.contains("nested more than 128 deep"), "{err}");
    assert!(err.starts_with("field next.next.next."), "{err}");
    let schema = json!({"type": "array", "items": {"type": "array", "items": "null"}});
    let limits = CodecLimits {
        depth_max: 1,
        ..CodecLimits::default()
    };
    let b = [zz(1), zz(1), zz(0), zz(0)].concat();
    assert!(decode(&parse(&schema), &b, &limits).is_ok());
    let limits = CodecLimits {
        depth_max: 0,
        ..CodecLimits::default()
    };
    let err = decode(&parse(&schema), &b, &limits).expect_err("too deep");
    assert_eq!(
        err,
        "field [0]: values nested more than 0 deep (schema_registry.codec_depth_max)"
    );
}

fn schemas() -> Vec<Avro> {
    [
        json!("long"),
        json!({"type": "record", "name": "R", "fields": [
            {"name": "a", "type": {"type": "array", "items": ["null", "string", "double"]}},
            {"name": "m", "type": {"type": "map", "values": {"type": "fixed", "name": "F", "size": 3}}},
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
            {"name": "n", "type": ["null", "R"]},
            {"name": "f", "type": "float"},
            {"name": "b", "type": "bytes"},
            {"name": "z", "type": {"type": "array", "items": "null"}},
        ]}),
    ]
    .iter()
    .map(parse)
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        for avro in schemas() {
            let _ = decode(&avro, &bytes, &CodecLimits::default());
        }
    }
}
