"""The schema registry (issue 17) with confluent-kafka-python's SchemaRegistryClient, AvroSerializer
and AvroDeserializer against the real binary: schema.registry.url at busbar's own registry listener,
events produced and consumed through busbar's Kafka listener, the evolution flow (v1, compatible v2,
incompatible v3 refused with 409/40901, a consumer reading both), the same registry under
/schema-registry/ on the HTTP API, and kill -9: ids and versions unchanged, no id reused.
Schema changes are audit lines. The curl walk-through of docs/schema-registry.md runs as written.
Registered into run.py's tests.
"""
import json, os, re, subprocess, time, urllib.request

V1 = json.dumps({"type": "record", "name": "Order", "namespace": "shop",
                 "fields": [{"name": "id", "type": "string"}]})
V2 = json.dumps({"type": "record", "name": "Order", "namespace": "shop",
                 "fields": [{"name": "id", "type": "string"},
                            {"name": "amount", "type": "double", "default": 0.0}]})
# Incompatible under BACKWARD: a new field without a default cannot be filled from v2 data.
V3 = json.dumps({"type": "record", "name": "Order", "namespace": "shop",
                 "fields": [{"name": "id", "type": "string"},
                            {"name": "amount", "type": "double", "default": 0.0},
                            {"name": "customer", "type": "string"}]})


def register(test, Busbar, free_port):
    def start():
        port = free_port()
        b = Busbar(extra_env={"BUSBAR_SCHEMA_REGISTRY_ADDR": f"127.0.0.1:{port}"})
        assert f"schema-registry http://127.0.0.1:{port}" in b.ready_line, b.ready_line
        return b, f"http://127.0.0.1:{port}"

    def produce(b, sr, schema, values):
        from confluent_kafka import Producer
        from confluent_kafka.schema_registry.avro import AvroSerializer
        from confluent_kafka.serialization import SerializationContext, MessageField
        ser = AvroSerializer(sr, schema)
        p = Producer({"bootstrap.servers": b.kafka})
        for v in values:
            p.produce("orders", value=ser(v, SerializationContext("orders", MessageField.VALUE)))
        assert p.flush(30) == 0

    def consume(b, sr, n):
        from confluent_kafka import Consumer
        from confluent_kafka.schema_registry.avro import AvroDeserializer
        from confluent_kafka.serialization import SerializationContext, MessageField
        de = AvroDeserializer(sr)
        c = Consumer({"bootstrap.servers": b.kafka, "group.id": "sr-check", "auto.offset.reset": "earliest"})
        c.subscribe(["orders"])
        got = []
        for _ in range(60):
            for m in c.consume(10, 1.0):
                assert not m.error(), m.error()
                got.append(de(m.value(), SerializationContext("orders", MessageField.VALUE)))
            if len(got) >= n:
                break
        c.close()
        return got

    def audit_lines(b, want, timeout=10):
        path = os.path.join(b.data, "audit.log")
        deadline = time.time() + timeout
        while True:
            lines = []
            if os.path.exists(path):
                with open(path) as f:
                    lines = [json.loads(line) for line in f]
            if want(lines) or time.time() > deadline:
                return lines
            time.sleep(0.05)

    def http_json(url):
        with urllib.request.urlopen(url, timeout=30) as r:
            assert r.headers["content-type"] == "application/vnd.schemaregistry.v1+json", r.headers
            return json.loads(r.read())

    @test
    def schema_registry_avro_evolution_with_confluent_serializers_and_kill_9(_):
        from confluent_kafka.schema_registry import SchemaRegistryClient, Schema
        from confluent_kafka.schema_registry.error import SchemaRegistryError
        b, url = start()
        try:
            sr = SchemaRegistryClient({"url": url})
            produce(b, sr, V1, [{"id": "a"}])
            produce(b, sr, V2, [{"id": "b", "amount": 2.5}])
            try:
                sr.register_schema("orders-value", Schema(V3, "AVRO"))
                raise AssertionError("v3 should be refused")
            except SchemaRegistryError as e:
                assert (e.http_status_code, e.error_code) == (409, 40901), (e.http_status_code, e.error_code, e)
            audit = audit_lines(b, lambda ls: any(l["outcome"] == "409" for l in ls))
            writes = [(l["listener"], l["operation"], l["resource"], l["outcome"]) for l in audit
                      if "schema-registry" in l["operation"]]
            route = "POST /schema-registry/subjects/{subject}/versions"
            assert ("schema-registry", route, "SUBJECT:orders-value", "200") in writes, writes
            assert ("schema-registry", route, "SUBJECT:orders-value", "409") in writes, writes
            assert sr.test_compatibility("orders-value", Schema(V3, "AVRO")) is False
            assert sr.test_compatibility("orders-value", Schema(V2, "AVRO")) is True
            got = consume(b, sr, 2)
            assert got == [{"id": "a"}, {"id": "b", "amount": 2.5}], got
            assert sr.get_versions("orders-value") == [1, 2]
            latest = sr.get_latest_version("orders-value")
            assert (latest.version, latest.schema_id) == (2, 2), latest
            # The same registry under /schema-registry/ on the HTTP API, %2F in a subject name.
            assert http_json(f"http://{b.http}/schema-registry/subjects") == ["orders-value"]
            sr.register_schema("team/orders", Schema(V1, "AVRO"))
            assert http_json(f"http://{b.http}/schema-registry/subjects/team%2Forders/versions/1")["id"] == 1
            b.restart(hard=True)  # kill -9
            sr = SchemaRegistryClient({"url": url})  # no cache
            assert sr.get_versions("orders-value") == [1, 2]
            latest = sr.get_latest_version("orders-value")
            assert (latest.version, latest.schema_id) == (2, 2), latest
            assert json.loads(sr.get_schema(1).schema_str) == json.loads(V1)
            assert sr.register_schema("orders-value", Schema(V2, "AVRO")) == 2, "same schema, same id"
            # A new group reads everything again, old and new events, with a fresh deserializer.
            produce(b, sr, V2, [{"id": "c", "amount": 1.0}])
            from confluent_kafka import Consumer
            c = Consumer({"bootstrap.servers": b.kafka, "group.id": "sr-after", "auto.offset.reset": "earliest"})
            c.subscribe(["orders"])
            from confluent_kafka.schema_registry.avro import AvroDeserializer
            from confluent_kafka.serialization import SerializationContext, MessageField
            de = AvroDeserializer(sr)
            seen = []
            for _ in range(60):
                seen += [de(m.value(), SerializationContext("orders", MessageField.VALUE)) for m in c.consume(10, 1.0)]
                if len(seen) >= 3:
                    break
            c.close()
            assert seen == [{"id": "a"}, {"id": "b", "amount": 2.5}, {"id": "c", "amount": 1.0}], seen
            # A new schema after the restart gets a new id, never one issued before.
            new = json.dumps({"type": "record", "name": "Other", "fields": [{"name": "x", "type": "int"}]})
            assert sr.register_schema("other-value", Schema(new, "AVRO")) == 3
        finally:
            b.stop()

    schema_registry_avro_evolution_with_confluent_serializers_and_kill_9.own_server = True

    @test
    def schema_registry_json_schema_evolution_with_confluent_serializers(_):
        """The evolution flow with JSONSerializer/JSONDeserializer: v1 (a closed object with
        `id`), produce; v2 adds an optional `amount` (compatible under BACKWARD: v1's writers
        never wrote one); v3 makes `amount` an integer and required (refused with 409); a
        consumer with JSONDeserializer reads both events, each validated against its own id."""
        from confluent_kafka import Producer, Consumer
        from confluent_kafka.schema_registry import SchemaRegistryClient, Schema
        from confluent_kafka.schema_registry.error import SchemaRegistryError
        from confluent_kafka.schema_registry.json_schema import JSONSerializer, JSONDeserializer
        from confluent_kafka.serialization import SerializationContext, MessageField
        j1 = {"$schema": "http://json-schema.org/draft-07/schema#", "title": "OrderJ", "type": "object",
              "properties": {"id": {"type": "string"}}, "required": ["id"], "additionalProperties": False}
        j2 = json.loads(json.dumps(j1))
        j2["properties"]["amount"] = {"type": "number"}
        j3 = json.loads(json.dumps(j2))
        j3["properties"]["amount"] = {"type": "integer"}
        j3["required"] = ["id", "amount"]
        b, url = start()
        try:
            sr = SchemaRegistryClient({"url": url})
            ctx = SerializationContext("orders-j", MessageField.VALUE)
            p = Producer({"bootstrap.servers": b.kafka})
            for schema, value in [(j1, {"id": "a"}), (j2, {"id": "b", "amount": 2.5})]:
                ser = JSONSerializer(json.dumps(schema), sr)
                p.produce("orders-j", value=ser(value, ctx))
                p.flush(30)
            try:
                sr.register_schema("orders-j-value", Schema(json.dumps(j3), "JSON"))
                raise AssertionError("v3 should be refused")
            except SchemaRegistryError as e:
                assert (e.http_status_code, e.error_code) == (409, 40901), (e.http_status_code, e.error_code, e)
            assert sr.get_versions("orders-j-value") == [1, 2]
            assert sr.test_compatibility("orders-j-value", Schema(json.dumps(j3), "JSON")) is False
            de = JSONDeserializer(None, schema_registry_client=sr)
            c = Consumer({"bootstrap.servers": b.kafka, "group.id": "json-evo", "auto.offset.reset": "earliest"})
            c.subscribe(["orders-j"])
            seen = []
            for _ in range(60):
                seen += [de(m.value(), ctx) for m in c.consume(10, 1.0) if not m.error()]
                if len(seen) >= 2:
                    break
            c.close()
            assert seen == [{"id": "a"}, {"id": "b", "amount": 2.5}], seen
        finally:
            b.stop()

    schema_registry_json_schema_evolution_with_confluent_serializers.own_server = True

    @test
    def schema_registry_docs_walk_through_runs_as_written(_):
        """The curl commands of docs/schema-registry.md's five-minute walk-through, with $SR at this
        server's registry: each answers what its comment says."""
        doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "schema-registry.md")).read()
        block = doc.split("## Five minutes with curl", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
        commands, cur = [], ""
        for line in block.splitlines():
            line = line.split("  #", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
            if not line or line.startswith(("busbar serve", "SR=", "CT=")):
                continue
            cur += line[:-1] + " " if line.endswith("\\") else line
            if not line.endswith("\\"):
                commands.append(cur)
                cur = ""
        b, url = start()
        try:
            env = dict(os.environ, SR=url, CT="Content-Type: application/vnd.schemaregistry.v1+json")
            out = []
            for c in commands:
                c = c.replace("http://127.0.0.1:8080", f"http://{b.http}")
                r = subprocess.run(["bash", "-c", c], capture_output=True, text=True, env=env, timeout=30)
                assert r.returncode == 0, (c, r.stderr)
                out.append(json.loads(r.stdout))
            assert len(out) == 10, out
            assert out[0] == {"id": 1} or out[0]["id"] == 1, out[0]
            assert out[1]["id"] == 2 and out[1]["version"] == 2, out[1]
            assert out[2]["is_compatible"] is False and out[2]["messages"], out[2]
            assert out[3] == ["orders-value"] and out[4] == [1, 2], out[3:5]
            assert json.loads(out[5]["schema"])["name"] == "Order", out[5]
            assert out[6] == {"compatibilityLevel": "BACKWARD"} and out[7] == {"compatibility": "FULL"}, out[6:8]
            assert out[8] == ["orders-value"], out[8]
            assert out[9]["error_code"] == 40901, out[9]
        finally:
            b.stop()

    schema_registry_docs_walk_through_runs_as_written.own_server = True
