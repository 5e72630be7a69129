"""Schema enforcement on every way in (issue 17) against the real binary, with real clients:
confluent-kafka's Producer (plain and gzip batches), AdminClient topic configs, its
SchemaRegistryClient and AvroSerializer, and HTTP publish. Topics with
`value.schema.validation = id | strict` (and Confluent's `confluent.value.schema.validation=true`
alias) refuse unframed bytes, unknown ids, ids of another subject and (strict) payloads that do
not decode with INVALID_RECORD (87) on Kafka and 422 on HTTP; a refused batch stores nothing,
good batches on the same connection are accepted, null values pass, and
`busbar_schema_validation_failures_total{topic,reason}` counts each refusal.
Registered into run.py's tests.
"""
import base64, json, struct, urllib.error, urllib.request

ORDER = json.dumps({"type": "record", "name": "Order", "namespace": "shop",
                    "fields": [{"name": "id", "type": "string"}, {"name": "qty", "type": "int"}]})
OTHER = json.dumps({"type": "record", "name": "Other", "fields": [{"name": "x", "type": "long"}]})


def register(test, Busbar, free_port):
    def start():
        port = free_port()
        b = Busbar(extra_env={"BUSBAR_SCHEMA_REGISTRY_ADDR": f"127.0.0.1:{port}"})
        return b, f"http://127.0.0.1:{port}"

    def create_topics(b, topics):
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": b.kafka})
        fs = admin.create_topics([NewTopic(name, 1, 1, config=cfg) for name, cfg in topics])
        for f in fs.values():
            f.result(30)

    def send(b, topic, values, **conf):
        """Produces `values` (bytes or None) in one flush; answers each delivery's error code
        (None when stored)."""
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": b.kafka, "linger.ms": 50, "retries": 0, **conf})
        results = [None] * len(values)

        def done(i):
            def cb(err, _msg):
                results[i] = err.code() if err else "ok"
            return cb
        for i, v in enumerate(values):
            p.produce(topic, key=b"k", value=v, on_delivery=done(i))
        assert p.flush(30) == 0
        return [None if r == "ok" else r for r in results]

    def stored(b, topic):
        """The events a reader sees in partition 0 of `topic` (a topic target delivers in
        transactions: its commit markers take offsets but are no events)."""
        n, at = 0, 0
        while True:
            with urllib.request.urlopen(f"http://{b.http}/topics/{topic}/partitions/0/events"
                                        f"?offset={at}&limit=1000", timeout=30) as r:
                page = json.loads(r.read())
            n += len(page["events"])
            if page["next_offset"] == at:
                return n
            at = page["next_offset"]

    def publish(b, topic, events, query=""):
        req = urllib.request.Request(f"http://{b.http}/topics/{topic}/events{query}",
                                     data=json.dumps(events).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def get(b, path):
        try:
            with urllib.request.urlopen(f"http://{b.http}{path}", timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def failures(b):
        with urllib.request.urlopen(f"http://{b.http}/metrics", timeout=30) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith("busbar_schema_validation_failures_total{"):
                labels, n = line.rsplit(" ", 1)
                out[labels[len("busbar_schema_validation_failures_total"):]] = int(n)
        return out

    def framed(schema_id, body):
        return b"\0" + struct.pack(">I", schema_id) + body

    @test
    def schema_enforcement_refuses_bad_records_on_kafka_and_http_and_counts_them(_):
        from confluent_kafka import KafkaError
        from confluent_kafka.schema_registry import SchemaRegistryClient, Schema
        from confluent_kafka.schema_registry.avro import AvroSerializer
        from confluent_kafka.serialization import SerializationContext, MessageField
        b, url = start()
        try:
            create_topics(b, [("orders", {"value.schema.validation": "id"}),
                              ("strict", {"value.schema.validation": "strict"}),
                              ("legacy", {"confluent.value.schema.validation": "true"}),
                              ("free", {})])
            sr = SchemaRegistryClient({"url": url})
            other_id = sr.register_schema("other-value", Schema(OTHER, "AVRO"))

            def ser(topic):
                s = AvroSerializer(sr, ORDER)
                return lambda v: s(v, SerializationContext(topic, MessageField.VALUE))
            good = ser("orders")({"id": "a", "qty": 1})
            order_id = struct.unpack(">I", good[1:5])[0]
            INVALID = KafkaError.INVALID_RECORD
            assert INVALID == 87

            # id: a serialized event passes; a tombstone passes; unframed, unknown id and another
            # subject's id are refused with 87 and nothing of theirs is stored.
            assert send(b, "orders", [good, None]) == [None, None]
            assert send(b, "orders", [b"plain bytes"]) == [INVALID]
            assert send(b, "orders", [framed(99999, b"x")]) == [INVALID]
            assert send(b, "orders", [framed(other_id, b"\x02")]) == [INVALID]
            assert stored(b, "orders") == 2
            # A gzip batch of five with one bad record is refused whole; the same producer's next
            # batch is accepted.
            from confluent_kafka import Producer
            p = Producer({"bootstrap.servers": b.kafka, "linger.ms": 200, "retries": 0,
                          "compression.type": "gzip"})
            codes = []
            for v in [good, good, b"bad", good, good]:
                p.produce("orders", value=v, on_delivery=lambda e, m: codes.append(e.code() if e else None))
            assert p.flush(30) == 0
            assert codes == [INVALID] * 5, codes
            p.produce("orders", value=good, on_delivery=lambda e, m: codes.append(e.code() if e else None))
            assert p.flush(30) == 0
            assert codes[-1] is None, codes
            assert stored(b, "orders") == 3

            # The alias turns on id checks as well; a topic without settings takes anything.
            assert send(b, "legacy", [b"plain"]) == [INVALID]
            assert send(b, "free", [b"plain"]) == [None]

            # strict: the id must be the subject's and the body must decode as Avro.
            strict_good = ser("strict")({"id": "b", "qty": 2})
            strict_id = struct.unpack(">I", strict_good[1:5])[0]
            assert send(b, "strict", [strict_good]) == [None]
            # "b" as an Avro string, then a truncated int: does not decode.
            assert send(b, "strict", [framed(strict_id, b"\x02b")]) == [INVALID]
            # trailing bytes after a whole value are refused too
            assert send(b, "strict", [strict_good + b"\x00"]) == [INVALID]
            # the same bytes pass an id-only topic (the id is registered under orders-value)
            assert send(b, "orders", [framed(order_id, b"\x02b")]) == [None]
            assert stored(b, "strict") == 1

            # HTTP publish: 422 naming the refused events; nothing stored; good events pass.
            ok = base64.b64encode(good).decode()
            status, body = publish(b, "orders", [{"value_base64": ok}, {"value": "not framed"},
                                                 {"value_base64": ok}, {"value": {"json": 1}}])
            assert status == 422, (status, body)
            assert body["error"]["code"] == "schema_invalid", body
            msg = body["error"]["message"]
            assert msg.startswith("2 events refused by the schema registry, nothing stored"), msg
            assert "event 1: value: not in the schema registry's wire format" in msg, msg
            assert "event 3: value:" in msg, msg
            assert "event 0" not in msg and "event 2" not in msg, msg
            assert stored(b, "orders") == 4
            status, body = publish(b, "orders", [{"value_base64": ok}, {"key": "tombstone"}])
            assert status == 200, (status, body)
            assert stored(b, "orders") == 6

            f = failures(b)
            assert f['{topic="orders",reason="unframed"}'] == 1 + 1 + 2, f
            assert f['{topic="orders",reason="unknown_id"}'] == 1, f
            assert f['{topic="orders",reason="wrong_subject"}'] == 1, f
            assert f['{topic="strict",reason="invalid_payload"}'] == 2, f
            assert f['{topic="legacy",reason="unframed"}'] == 1, f
            assert not any('topic="free"' in k for k in f), f

            # The setting is a topic config like the others: described, changed, turned off.
            from confluent_kafka.admin import AdminClient, ConfigResource
            admin = AdminClient({"bootstrap.servers": b.kafka})
            res = ConfigResource(ConfigResource.Type.TOPIC, "orders")
            desc = admin.describe_configs([res])[res].result(30)
            assert desc["value.schema.validation"].value == "id", desc
            assert desc["value.subject.name.strategy"].value == "TopicNameStrategy", desc
            res.set_config("value.schema.validation", "none")
            admin.alter_configs([res])[res].result(30)
            assert send(b, "orders", [b"plain bytes"]) == [None]
            # A bad value is refused with the key named.
            bad = ConfigResource(ConfigResource.Type.TOPIC, "orders")
            bad.set_config("value.schema.validation", "sometimes")
            try:
                admin.alter_configs([bad])[bad].result(30)
                raise AssertionError("an unknown validation mode was accepted")
            except Exception as e:  # KafkaException(INVALID_CONFIG)
                assert "none, id or strict" in str(e), e
        finally:
            b.stop()

    @test
    def schema_enforcement_record_name_strategy_and_keys(_):
        from confluent_kafka import KafkaError
        from confluent_kafka.schema_registry import SchemaRegistryClient, Schema
        b, url = start()
        try:
            create_topics(b, [("mixed", {"value.schema.validation": "strict",
                                         "value.subject.name.strategy":
                                             "io.confluent.kafka.serializers.subject.RecordNameStrategy",
                                         "key.schema.validation": "id"})])
            sr = SchemaRegistryClient({"url": url})
            order_id = sr.register_schema("shop.Order", Schema(ORDER, "AVRO"))
            key_id = sr.register_schema("mixed-key", Schema('"string"', "AVRO"))
            # topic-named subject does not hold the order schema: only the record name does
            sr.register_schema("mixed-value", Schema(OTHER, "AVRO"))
            from confluent_kafka import Producer
            codes = []
            p = Producer({"bootstrap.servers": b.kafka, "retries": 0})

            def put(key, value):
                p.produce("mixed", key=key, value=value,
                          on_delivery=lambda e, m: codes.append(e.code() if e else None))
                assert p.flush(30) == 0
                return codes[-1]
            body = b"\x02a\x04"  # {"id": "a", "qty": 2}
            key = framed(key_id, b"\x02k")
            assert put(key, framed(order_id, body)) is None
            assert put(b"unframed key", framed(order_id, body)) == KafkaError.INVALID_RECORD
            assert put(None, framed(order_id, body)) is None  # a null key passes
            assert put(key, framed(key_id, b"\x02k")) == KafkaError.INVALID_RECORD
        finally:
            b.stop()

    @test
    def http_publish_encodes_with_schema_and_reads_decode(_):
        from confluent_kafka import Consumer
        from confluent_kafka.schema_registry import SchemaRegistryClient, Schema
        from confluent_kafka.schema_registry.avro import AvroDeserializer
        from confluent_kafka.serialization import SerializationContext, MessageField
        b, url = start()
        try:
            create_topics(b, [("orders", {"value.schema.validation": "strict"})])
            sr = SchemaRegistryClient({"url": url})
            order_id = sr.register_schema("orders-value", Schema(ORDER, "AVRO"))
            status, body = publish(b, "orders", [{"key": "k1", "value": {"id": "a", "qty": 3}},
                                                 {"key": "k2"}], "?schema=latest")
            assert status == 200, (status, body)
            status, body = publish(b, "orders", [{"value": {"id": "b", "qty": 4}}], f"?schema=id:{order_id}")
            assert status == 200, (status, body)
            # Events that do not fit the schema refuse the request, each named; nothing stored.
            status, body = publish(b, "orders", [{"value": {"id": "c", "qty": 1}}, {"value": {"id": 5}},
                                                 {"value": "not a record"}], "?schema=1")
            assert status == 422, (status, body)
            msg = body["error"]["message"]
            assert msg.startswith("2 events do not encode"), msg
            assert "event 1:" in msg and "event 2:" in msg and "event 0" not in msg, msg
            status, body = publish(b, "orders", [{"value": {"id": "c", "qty": 1}}], "?schema=9")
            assert status == 422 and "Version 9 not found" in body["error"]["message"], body
            status, body = publish(b, "orders", [{"value": {"id": "c", "qty": 1}}], "?schema=id:4242")
            assert status == 422 and "4242 is not registered" in body["error"]["message"], body
            status, body = publish(b, "orders", [{"value": 1}], "?subject=x")
            assert status == 400, (status, body)

            # A Kafka consumer with Confluent's deserializer reads what HTTP encoded.
            de = AvroDeserializer(sr)
            c = Consumer({"bootstrap.servers": b.kafka, "group.id": "enc", "auto.offset.reset": "earliest"})
            c.subscribe(["orders"])
            got = []
            for _ in range(30):
                for m in c.consume(10, 1.0):
                    assert not m.error(), m.error()
                    got.append(None if m.value() is None else
                               de(m.value(), SerializationContext("orders", MessageField.VALUE)))
                if len(got) >= 3:
                    break
            c.close()
            assert got == [{"id": "a", "qty": 3}, None, {"id": "b", "qty": 4}], got

            # HTTP reads decode on request.
            status, page = get(b, "/topics/orders/partitions/0/events?decode=schema")
            assert status == 200, page
            ev = page["events"]
            assert ev[0]["value"] == {"id": "a", "qty": 3} and ev[0]["value_schema_id"] == order_id, ev[0]
            assert ev[0]["key"] == "k1" and "key_schema_id" not in ev[0], ev[0]
            assert ev[1]["value"] is None, ev[1]
            status, page = get(b, "/topics/orders/partitions/0/events")
            assert "value_schema_id" not in page["events"][0], page
            status, body = get(b, "/topics/orders/partitions/0/events?decode=avro")
            assert status == 400 and "decode" in body["error"]["message"], body
            # A consumer instance's poll and both SSE streams decode the same way.
            req = urllib.request.Request(f"http://{b.http}/groups/dec/consumers", method="POST",
                                         data=json.dumps({"topics": ["orders"], "start": "earliest"}).encode(),
                                         headers={"content-type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                cid = json.loads(r.read())["consumer_id"]
            status, body = get(b, f"/groups/dec/consumers/{cid}/events?decode=avro")
            assert status == 400 and "decode" in body["error"]["message"], body
            status, polled = get(b, f"/groups/dec/consumers/{cid}/events?decode=schema&wait_ms=2000")
            assert status == 200, polled
            assert [e["value"] for e in polled["events"]] == [{"id": "a", "qty": 3}, None, {"id": "b", "qty": 4}], polled
            assert polled["events"][0]["value_schema_id"] == order_id, polled

            def first_sse(path):
                with urllib.request.urlopen(f"http://{b.http}{path}", timeout=30) as r:
                    for line in r:
                        if line.startswith(b"data:"):
                            return json.loads(line[5:])
            ev = first_sse("/topics/orders/partitions/0/stream?start=earliest&decode=schema")
            assert ev["value"] == {"id": "a", "qty": 3} and ev["value_schema_id"] == order_id, ev
            ev = first_sse("/groups/dec-sse/stream?topics=orders&start=earliest&decode=schema")
            assert ev["value"] == {"id": "a", "qty": 3} and ev["value_schema_id"] == order_id, ev
            ev = first_sse("/topics/orders/partitions/0/stream?start=earliest")
            assert "value_schema_id" not in ev, ev
            status, body = get(b, "/groups/x/stream?topics=orders&decode=yes")
            assert status == 400 and "decode" in body["error"]["message"], body
        finally:
            b.stop()

    @test
    def schema_refusal_by_a_topic_target_dead_letters_only_the_bad_event(_):
        """A subscription's topic target that enforces schemas: the refused event is a permanent
        failure (dead letter, reason schema_invalid) and the framed events batched with it are
        delivered at once, not retried."""
        import time
        from confluent_kafka.schema_registry import SchemaRegistryClient, Schema
        b, url = start()
        try:
            create_topics(b, [("src", {}), ("checked", {"value.schema.validation": "id"}), ("dlq", {})])
            sr = SchemaRegistryClient({"url": url})
            sid = sr.register_schema("checked-value", Schema(ORDER, "AVRO"))
            req = urllib.request.Request(f"http://{b.http}/subscriptions", method="POST",
                                         headers={"Content-Type": "application/json"},
                                         data=json.dumps({"name": "fwd", "sources": ["src"],
                                                          "target": {"topic": "checked"},
                                                          "dead_letter_topic": "dlq"}).encode())
            urllib.request.urlopen(req, timeout=30).read()
            good = base64.b64encode(framed(sid, b"\x02a\x02")).decode()
            status, body = publish(b, "src", [{"value_base64": good}, {"value": "unframed"},
                                              {"value_base64": good}])
            assert status == 200, (status, body)
            deadline = time.time() + 30
            while time.time() < deadline and (stored(b, "checked") < 2 or stored(b, "dlq") < 1):
                time.sleep(0.2)
            assert stored(b, "checked") == 2 and stored(b, "dlq") == 1, (stored(b, "checked"), stored(b, "dlq"))
            status, page = get(b, "/topics/dlq/partitions/0/events?encoding=utf8")
            hdrs = {h["key"]: h["value"] for h in page["events"][0]["headers"]}
            assert any("schema_invalid" in v for v in hdrs.values()), hdrs
            with urllib.request.urlopen(f"http://{b.http}/metrics", timeout=30) as r:
                text = r.read().decode()
            assert 'busbar_subscription_retried_total{subscription="fwd"} 0' in text, text
            assert 'busbar_subscription_delivered_total{subscription="fwd"} 2' in text, text
        finally:
            b.stop()
