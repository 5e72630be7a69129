"""PROTOBUF in the schema registry (issue 17) with confluent-kafka-python's ProtobufSerializer and
ProtobufDeserializer against the real binary: schema.registry.url at busbar's own registry
listener, message classes built at run time from a FileDescriptorProto (no protoc), a well-known
import (google/protobuf/timestamp.proto) resolved without a reference, a message that is not the
file's first (message indexes [1]), the evolution flow (v1, compatible v2, incompatible v3 refused
with 409/40901, a consumer reading both), then over HTTP: `.proto` text registered and kept as
sent, a reference as an import, and hostile schemas (malformed text and descriptor, 10,000 nested
messages, a reference to itself) refused with 42201. Registered into run.py's tests.
"""
import base64, json, urllib.error, urllib.request

CT = "application/vnd.schemaregistry.v1+json"


def order_class(extra_fields=(), id_type=None):
    """shop.Order (the second message of shop/order.proto) as a Python class, built from a
    FileDescriptorProto in a pool of its own."""
    from google.protobuf import descriptor_pb2, descriptor_pool, timestamp_pb2
    from google.protobuf.message_factory import GetMessageClass
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="shop/order.proto", package="shop", syntax="proto3",
                                             dependency=["google/protobuf/timestamp.proto"])
    meta = fdp.message_type.add(name="Meta")
    meta.field.add(name="source", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    order = fdp.message_type.add(name="Order")
    order.field.add(name="id", number=1, type=id_type or F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    order.field.add(name="at", number=2, type=F.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp",
                    label=F.LABEL_OPTIONAL)
    for name, number, t in extra_fields:
        order.field.add(name=name, number=number, type=t, label=F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(fdp.SerializeToString())
    return GetMessageClass(pool.FindMessageTypeByName("shop.Order"))


def register(test, Busbar, free_port):
    def start():
        port = free_port()
        b = Busbar(extra_env={"BUSBAR_SCHEMA_REGISTRY_ADDR": f"127.0.0.1:{port}"})
        return b, f"http://127.0.0.1:{port}"

    def post(url, body):
        req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": CT})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def get(url):
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.loads(r.read())

    def produce(b, sr, cls, values):
        from confluent_kafka import Producer
        from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
        from confluent_kafka.serialization import SerializationContext, MessageField
        ser = ProtobufSerializer(cls, sr, {"use.deprecated.format": False})
        p = Producer({"bootstrap.servers": b.kafka})
        for v in values:
            p.produce("orders", value=ser(cls(**v), SerializationContext("orders", MessageField.VALUE)))
        assert p.flush(30) == 0

    def consume(b, sr, cls, n):
        from confluent_kafka import Consumer
        from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
        from confluent_kafka.serialization import SerializationContext, MessageField
        de = ProtobufDeserializer(cls, {"use.deprecated.format": False}, sr)
        c = Consumer({"bootstrap.servers": b.kafka, "group.id": "sr-proto", "auto.offset.reset": "earliest"})
        c.subscribe(["orders"])
        got = []
        for _ in range(60):
            for m in c.consume(10, 1.0):
                assert not m.error(), m.error()
                assert m.value()[5] == 2 and m.value()[6] == 2, f"message indexes [1]: {m.value()[:8]!r}"
                got.append(de(m.value(), SerializationContext("orders", MessageField.VALUE)))
            if len(got) >= n:
                break
        c.close()
        return got

    @test
    def schema_registry_protobuf_evolution_with_confluent_serializers(_):
        from google.protobuf import descriptor_pb2
        from confluent_kafka.schema_registry import SchemaRegistryClient, Schema
        from confluent_kafka.schema_registry.error import SchemaRegistryError
        F = descriptor_pb2.FieldDescriptorProto
        b, url = start()
        try:
            sr = SchemaRegistryClient({"url": url})
            v1 = order_class()
            v2 = order_class(extra_fields=[("amount", 3, F.TYPE_DOUBLE)])
            produce(b, sr, v1, [{"id": "a"}])
            produce(b, sr, v2, [{"id": "b", "amount": 2.5}])
            assert sr.get_versions("orders-value") == [1, 2]
            registered = sr.get_latest_version("orders-value")
            assert registered.schema.schema_type == "PROTOBUF", registered.schema
            # The serializer's base64 FileDescriptorProto is kept as sent.
            v2_b64 = base64.standard_b64encode(v2.DESCRIPTOR.file.serialized_pb).decode()
            assert registered.schema.schema_str == v2_b64
            # v3 retypes field 1 (string -> int64): outside the scalar's group, refused.
            v3 = order_class(extra_fields=[("amount", 3, F.TYPE_DOUBLE)], id_type=F.TYPE_INT64)
            v3_schema = Schema(base64.standard_b64encode(v3.DESCRIPTOR.file.serialized_pb).decode(), "PROTOBUF")
            try:
                sr.register_schema("orders-value", v3_schema)
                raise AssertionError("v3 should be refused")
            except SchemaRegistryError as e:
                assert (e.http_status_code, e.error_code) == (409, 40901), (e.http_status_code, e.error_code, e)
            assert sr.test_compatibility("orders-value", v3_schema) is False
            status, body = post(f"{url}/compatibility/subjects/orders-value/versions/latest?verbose=true",
                                {"schema": v3_schema.schema_str, "schemaType": "PROTOBUF"})
            assert status == 200 and body["is_compatible"] is False, body
            assert any("FIELD_SCALAR_KIND_CHANGED at #/Order/1" in m for m in body["messages"]), body
            got = consume(b, sr, v2, 2)
            assert [(m.id, m.amount) for m in got] == [("a", 0.0), ("b", 2.5)], got
        finally:
            b.stop()

    schema_registry_protobuf_evolution_with_confluent_serializers.own_server = True

    @test
    def schema_registry_protobuf_text_references_and_hostile_schemas_over_http(_):
        b, url = start()
        try:
            money = 'syntax = "proto3";\npackage common;\nmessage Money { int64 units = 1; }\n'
            status, body = post(f"{url}/subjects/money/versions", {"schema": money, "schemaType": "PROTOBUF"})
            assert status == 200, body
            order = ('syntax = "proto3";\npackage shop;\nimport "common/money.proto";\n'
                     'message Order { string id = 1; common.Money total = 2; }\n')
            ref = [{"name": "common/money.proto", "subject": "money", "version": 1}]
            status, body = post(f"{url}/subjects/orders-value/versions",
                                {"schema": order, "schemaType": "PROTOBUF", "references": ref})
            assert status == 200, body
            stored = get(f"{url}/schemas/ids/{body['id']}")
            assert stored["schema"] == order and stored["schemaType"] == "PROTOBUF", stored
            assert stored["references"] == ref, stored
            # format=serialized answers the .proto text as a base64 FileDescriptorProto.
            import base64
            from google.protobuf import descriptor_pb2
            ser = get(f"{url}/schemas/ids/{body['id']}?format=serialized")
            fd = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(ser["schema"]))
            assert [m.name for m in fd.message_type] == ["Order"], fd
            assert list(fd.dependency) == ["common/money.proto"], fd
            assert "PROTOBUF" in get(f"{url}/schemas/types"), get(f"{url}/schemas/types")
            # The same text again: the same id.
            status, again = post(f"{url}/subjects/orders-value/versions",
                                 {"schema": order, "schemaType": "PROTOBUF", "references": ref})
            assert (status, again["id"]) == (200, body["id"]), again
            # Without its reference the import is missing.
            status, err = post(f"{url}/subjects/x/versions", {"schema": order, "schemaType": "PROTOBUF"})
            assert (status, err["error_code"]) == (422, 42201) and "common/money.proto" in err["message"], err
            nested = 'syntax = "proto3";' + "".join(f"message M{i} {{" for i in range(10_000)) + "}" * 10_000
            hostile = [
                ('syntax = "proto3";\nmessage M {\n  strin g = 1;\n}', "line 3"),
                ("CgtvcmRlci5wcm90bxIEc2hvcCITCgVPcmRlchIKCgJpZBgBIAEoCWIGcHJvd", "FileDescriptorProto"),
                (nested, "nested more than"),
            ]
            for text, want in hostile:
                status, err = post(f"{url}/subjects/bad/versions", {"schema": text, "schemaType": "PROTOBUF"})
                assert (status, err["error_code"]) == (422, 42201), err
                assert want in err["message"] and len(err["message"]) < 600, err
            # A reference to the subject being registered (the only way to point a cycle back).
            cyc = [{"name": "self.proto", "subject": "bad", "version": 1}]
            status, err = post(f"{url}/subjects/bad/versions",
                               {"schema": 'syntax = "proto3"; import "self.proto";', "schemaType": "PROTOBUF",
                                "references": cyc})
            assert (status, err["error_code"]) == (422, 42201), err
            assert get(f"{url}/subjects") == ["money", "orders-value"]
        finally:
            b.stop()

    schema_registry_protobuf_text_references_and_hostile_schemas_over_http.own_server = True
