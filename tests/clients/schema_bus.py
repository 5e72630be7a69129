"""The bus matches schema-framed events by their decoded content (issue 17), against the real
binary with confluent-kafka's AvroSerializer and JSONSerializer: a subscription with
`{"data": {"qty": [{"numeric": [">", 5]}]}}` on a topic of Avro events routes only the matching
ones to a target topic and to an HTTP target (both get the stored bytes, which Avro consumers
read back); events that are not framed still match as JSON; a framed event with an unknown id
is not matched on `data` and does not stop the subscription; `dataschema` names the schema in
the registry; JSON Schema and Protobuf (ProtobufSerializer, message indexes [1]) framed events
match the same way. A transform reads the decoded `data`, and a topic target with `encode`
stores what it delivers encoded with a schema of the registry (Avro, JSON Schema), read back by
Confluent's deserializers; an event that does not encode is dead-lettered with reason
`schema_encode_failed`; a subject that does not resolve is refused when the subscription is
created. Registered into run.py's tests; run with
`python3 tests/clients/run.py target/debug/busbar bus_patterns`.
"""
import json, struct, time

ORDER = json.dumps({"type": "record", "name": "Order", "namespace": "shop",
                    "fields": [{"name": "id", "type": "string"}, {"name": "qty", "type": "int"}]})
ORDER_JSON = json.dumps({"$schema": "http://json-schema.org/draft-07/schema#", "title": "OrderJ",
                         "type": "object",
                         "properties": {"id": {"type": "string"}, "qty": {"type": "integer"}},
                         "required": ["id", "qty"]})
BIG = {"data": {"qty": [{"numeric": [">", 5]}]}}


def register(test, Busbar, free_port, HookServer):
    def start():
        port = free_port()
        b = Busbar(extra_env={"BUSBAR_SCHEMA_REGISTRY_ADDR": f"127.0.0.1:{port}"})
        return b, f"http://127.0.0.1:{port}"

    def produce(b, topic, values):
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": b.kafka, "linger.ms": 5})
        errors = []
        for v in values:
            p.produce(topic, value=v, on_delivery=lambda e, _m: e and errors.append(e))
            # One record per batch: the bus reads them as they come, in order.
            p.flush(30)
        assert not errors, errors

    def read(b, topic, n, timeout=30):
        """The values of `topic` once it holds `n` (then a moment more for any extra)."""
        from confluent_kafka import Consumer
        c = Consumer({"bootstrap.servers": b.kafka, "group.id": f"read-{topic}-{time.time()}",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe([topic])
        out, end, extra = [], time.time() + timeout, None
        while time.time() < end:
            m = c.poll(0.3)
            if m is not None and not m.error():
                out.append(m.value())
            if len(out) >= n and extra is None:
                extra = time.time() + 1.0
            if extra is not None and time.time() > extra:
                break
        c.close()
        assert len(out) == n, (topic, n, out)
        return out

    def framed(schema_id, body):
        return b"\0" + struct.pack(">I", schema_id) + body

    def own(fn):
        fn.own_server = True  # starts the busbar it needs (with the registry's listener)
        return test(fn)

    @own
    def bus_patterns_match_avro_events_by_their_decoded_content(_):
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroSerializer, AvroDeserializer
        from confluent_kafka.serialization import SerializationContext, MessageField
        b, url = start()
        hook = HookServer()
        try:
            for t in ("orders", "big", "by-schema"):
                b.post("/topics", {"name": t, "partitions": 1})
            ctx = SerializationContext("orders", MessageField.VALUE)
            ser = AvroSerializer(SchemaRegistryClient({"url": url}), ORDER)
            order = lambda i, q: ser({"id": f"o{i}", "qty": q}, ctx)
            first = order(0, 0)
            order_id = struct.unpack(">I", first[1:5])[0]
            b.post("/subscriptions", {"name": "big", "sources": ["orders"], "pattern": BIG,
                                      "target": {"topic": "big"}})
            b.post("/subscriptions", {"name": "big-hook", "sources": ["orders"], "pattern": BIG,
                                      "target": {"url": hook.url + "/big"}})
            b.post("/subscriptions", {"name": "by-schema", "sources": ["orders"],
                                      "pattern": {"dataschema": [f"{url}/schemas/ids/{order_id}"]},
                                      "target": {"topic": "by-schema"}})
            avro = [first] + [order(q, q) for q in range(1, 11)]
            plain = json.dumps({"id": "plain", "qty": 9}).encode()
            unknown = framed(order_id + 1000, b"\x04ab\x14")
            late = order(99, 7)
            produce(b, "orders", avro + [plain, unknown, b"not json", late])
            big = read(b, "big", 7)
            de = AvroDeserializer(SchemaRegistryClient({"url": url}))
            decoded = [de(v, SerializationContext("big", MessageField.VALUE)) if v[0] == 0 else json.loads(v)
                       for v in big]
            assert [d["qty"] for d in decoded] == [6, 7, 8, 9, 10, 9, 7], decoded
            assert big[:5] == avro[6:11] and big[5] == plain and big[6] == late, big
            # The HTTP target gets the same events, the stored bytes as the body.
            bodies = [body for path, _h, body in hook.wait(7)]
            time.sleep(0.5)
            assert len(hook.requests) == 7, hook.requests
            assert sorted(bodies) == sorted(big), bodies
            # `dataschema` names the schema; the unknown id and unframed values have none.
            assert read(b, "by-schema", 12) == avro + [late]
        finally:
            b.stop()

    @own
    def bus_patterns_match_json_schema_events_by_their_decoded_content(_):
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.json_schema import JSONSerializer
        from confluent_kafka.serialization import SerializationContext, MessageField
        b, url = start()
        try:
            for t in ("orders-j", "big-j"):
                b.post("/topics", {"name": t, "partitions": 1})
            b.post("/subscriptions", {"name": "big-j", "sources": ["orders-j"], "pattern": BIG,
                                      "target": {"topic": "big-j"}})
            ctx = SerializationContext("orders-j", MessageField.VALUE)
            ser = JSONSerializer(ORDER_JSON, SchemaRegistryClient({"url": url}))
            values = [ser({"id": f"j{q}", "qty": q}, ctx) for q in (3, 8, 5, 12)]
            produce(b, "orders-j", values)
            assert read(b, "big-j", 2) == [values[1], values[3]]
        finally:
            b.stop()

    @own
    def bus_patterns_match_protobuf_events_by_their_decoded_content(_):
        from google.protobuf import descriptor_pb2
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
        from confluent_kafka.serialization import SerializationContext, MessageField
        from schema_registry_protobuf import order_class  # shop.Order, message indexes [1]
        b, url = start()
        try:
            for t in ("orders-p", "big-p"):
                b.post("/topics", {"name": t, "partitions": 1})
            b.post("/subscriptions", {"name": "big-p", "sources": ["orders-p"], "pattern": BIG,
                                      "target": {"topic": "big-p"}})
            cls = order_class(extra_fields=[("qty", 3, descriptor_pb2.FieldDescriptorProto.TYPE_INT32)])
            ser = ProtobufSerializer(cls, SchemaRegistryClient({"url": url}), {"use.deprecated.format": False})
            ctx = SerializationContext("orders-p", MessageField.VALUE)
            values = [ser(cls(id=f"p{q}", qty=q), ctx) for q in (2, 9, 4, 6)]
            produce(b, "orders-p", values)
            assert read(b, "big-p", 2) == [values[1], values[3]]
        finally:
            b.stop()

    @own
    def bus_transforms_read_decoded_data_and_topic_targets_encode_with_a_subject(_):
        import urllib.error
        from confluent_kafka.schema_registry import SchemaRegistryClient, Schema
        from confluent_kafka.schema_registry.avro import AvroSerializer, AvroDeserializer
        from confluent_kafka.schema_registry.json_schema import JSONDeserializer
        from confluent_kafka.serialization import SerializationContext, MessageField
        b, url = start()
        try:
            for t in ("orders-e", "summaries", "orders-json", "dlq-e"):
                b.post("/topics", {"name": t, "partitions": 1})
            sr = SchemaRegistryClient({"url": url})
            summary = {"type": "record", "name": "Summary", "namespace": "shop",
                       "fields": [{"name": "order", "type": "string"}, {"name": "count", "type": "int"}]}
            sr.register_schema("summaries-value", Schema(json.dumps(summary), "AVRO"))
            capped = json.loads(ORDER_JSON)
            capped["properties"]["qty"]["maximum"] = 100
            sr.register_schema("orders-json-value", Schema(json.dumps(capped), "JSON"))
            def refused(encode, *needles):
                try:
                    b.post("/subscriptions", {"name": "nope", "sources": ["orders-e"],
                                              "target": {"topic": "summaries", "encode": encode}})
                    raise AssertionError(f"created with encode {encode}")
                except urllib.error.HTTPError as e:
                    body = json.dumps(json.loads(e.read()))
                    assert e.code == 400 and all(n in body for n in needles), body
            # A subject that does not resolve is refused when the subscription is created, and
            # so is a Protobuf message name on an Avro subject.
            refused({"subject": "missing-value"}, "target.encode", "missing-value")
            refused({"message": "shop.Summary"}, "target.encode.message")
            b.post("/subscriptions", {
                "name": "summarize", "sources": ["orders-e"],
                "transform": {"paths": {"id": "$.data.id", "qty": "$.data.qty"},
                              "template": '{"order": <id>, "count": <qty>}'},
                "target": {"topic": "summaries", "encode": {"schema": "latest"}}})
            b.post("/subscriptions", {
                "name": "to-json", "sources": ["orders-e"], "dead_letter_topic": "dlq-e",
                "target": {"topic": "orders-json", "encode": {"schema": 1}}})
            ctx = SerializationContext("orders-e", MessageField.VALUE)
            ser = AvroSerializer(sr, ORDER)
            produce(b, "orders-e", [ser({"id": f"o{q}", "qty": q}, ctx) for q in (1, 500, 3)])
            de = AvroDeserializer(SchemaRegistryClient({"url": url}))
            got = [de(v, SerializationContext("summaries", MessageField.VALUE))
                   for v in read(b, "summaries", 3)]
            assert got == [{"order": "o1", "count": 1}, {"order": "o500", "count": 500},
                           {"order": "o3", "count": 3}], got
            jde = JSONDeserializer(json.dumps(capped), from_dict=None)
            got = [jde(v, SerializationContext("orders-json", MessageField.VALUE))
                   for v in read(b, "orders-json", 2)]
            assert got == [{"id": "o1", "qty": 1}, {"id": "o3", "qty": 3}], got
            deadline = time.time() + 30
            while time.time() < deadline:
                letters = b.get("/dead-letters/dlq-e")["dead_letters"]
                if letters:
                    break
                time.sleep(0.2)
            assert len(letters) == 1, letters
            assert letters[0]["reason"] == "schema_encode_failed", letters
            assert "maximum" in letters[0]["error"] or "500" in letters[0]["error"], letters
            view = b.get("/subscriptions/to-json")
            assert view["target"]["encode"] == {"schema": "1"}, view
        finally:
            b.stop()
