#!/usr/bin/env python3
"""Writes avro_fastavro.json beside this file: Avro binary vectors made by fastavro (a real Avro
implementation), each with the schema, the bytes (hex) and the natural JSON busbar must decode
them to (and encode back to the same bytes). Run once by hand; tests/avro_binary.rs reads the
output. Needs `pip install fastavro` (made with fastavro 1.13.1).
"""
import io
import json
import math
import os

import fastavro

ORDER = {
    "type": "record", "name": "Order", "namespace": "shop",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "customer", "type": "string"},
        {"name": "paid", "type": "boolean"},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID", "SHIPPED"]}},
        {"name": "items", "type": {"type": "array", "items": {
            "type": "record", "name": "Item", "fields": [
                {"name": "sku", "type": "string"},
                {"name": "qty", "type": "int"},
                {"name": "price", "type": "double"},
                {"name": "discount", "type": ["null", "float"], "default": None},
            ]}}},
        {"name": "tags", "type": {"type": "map", "values": "string"}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}},
        {"name": "blob", "type": "bytes"},
    ],
}

LIST = {
    "type": "record", "name": "Node",
    "fields": [
        {"name": "value", "type": "int"},
        {"name": "next", "type": ["null", "Node"]},
    ],
}

UNION = ["null", "int", "long", "double", "string", "bytes",
         {"type": "array", "items": "long"}, {"type": "map", "values": "boolean"},
         {"type": "record", "name": "Point", "fields": [{"name": "x", "type": "int"}, {"name": "y", "type": "int"}]}]


def latin1(b):
    return b.decode("latin-1")


# (name, schema, python value given to fastavro, natural JSON expected from busbar)
CASES = [
    ("order", ORDER,
     {"id": 1234567890123, "customer": "Zoë", "paid": True, "status": "PAID",
      "items": [{"sku": "A-1", "qty": 2, "price": 9.99, "discount": 0.5},
                {"sku": "B-2", "qty": -1, "price": -0.0, "discount": None}],
      "tags": {"channel": "web", "gift": "yes"}, "note": None,
      "hash": b"\x00\x7f\x80\xff", "blob": bytes(range(0, 256, 51))},
     {"id": 1234567890123, "customer": "Zoë", "paid": True, "status": "PAID",
      "items": [{"sku": "A-1", "qty": 2, "price": 9.99, "discount": 0.5},
                {"sku": "B-2", "qty": -1, "price": -0.0, "discount": None}],
      "tags": {"channel": "web", "gift": "yes"}, "note": None,
      "hash": latin1(b"\x00\x7f\x80\xff"), "blob": latin1(bytes(range(0, 256, 51)))}),
    ("order-empty", ORDER,
     {"id": -1, "customer": "", "paid": False, "status": "NEW", "items": [], "tags": {},
      "note": "x" * 300, "hash": b"abcd", "blob": b""},
     {"id": -1, "customer": "", "paid": False, "status": "NEW", "items": [], "tags": {},
      "note": "x" * 300, "hash": "abcd", "blob": ""}),
    ("list", LIST,
     {"value": 1, "next": {"value": 2, "next": {"value": 3, "next": None}}},
     {"value": 1, "next": {"value": 2, "next": {"value": 3, "next": None}}}),
    ("long-min", "long", -(2 ** 63), -(2 ** 63)),
    ("long-max", "long", 2 ** 63 - 1, 2 ** 63 - 1),
    ("int-min", "int", -(2 ** 31), -(2 ** 31)),
    ("float", "float", 0.1, 0.1),
    ("double", "double", 1e300, 1e300),
    ("string-unicode", "string", "héllo wörld ✓ 😀", "héllo wörld ✓ 😀"),
    ("union-null", UNION, None, None),
    ("union-int", UNION, 7, 7),
    ("union-long", UNION, 2 ** 40, 2 ** 40),
    ("union-double", UNION, 2.5, 2.5),
    ("union-string", UNION, "s", "s"),
    ("union-array", UNION, [1, 2, 3], [1, 2, 3]),
    ("union-map", UNION, {"a": True}, {"a": True}),
    ("union-record", UNION, {"x": 1, "y": -1}, {"x": 1, "y": -1}),
    ("map-of-arrays", {"type": "map", "values": {"type": "array", "items": "string"}},
     {"k1": ["a", "b"], "k2": []}, {"k1": ["a", "b"], "k2": []}),
]


def main():
    out = []
    for name, schema, value, natural in CASES:
        parsed = fastavro.parse_schema(schema)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, value)
        raw = buf.getvalue()
        # fastavro must read its own bytes back to the value (a check of the case itself).
        back = fastavro.schemaless_reader(io.BytesIO(raw), parsed)
        if isinstance(value, float) and isinstance(back, float) and name == "float":
            assert math.isclose(back, value, rel_tol=1e-6)
        out.append({"name": name, "schema": schema, "hex": raw.hex(), "natural": natural})
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "avro_fastavro.json")
    with open(path, "w") as f:
        json.dump({"made_with": f"fastavro {fastavro.__version__}", "cases": out}, f, indent=1,
                  ensure_ascii=False)
        f.write("\n")
    print(f"{len(out)} cases written to {path}")


if __name__ == "__main__":
    main()
