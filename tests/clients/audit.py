"""The audit log (issue 16) on the Kafka protocol with real clients against the real binary: failed
SASL logins (PLAIN and SCRAM, never the password) and the AdminClient's administrative requests
(CreateTopics, CreatePartitions, IncrementalAlterConfigs, DeleteTopics, AlterUserScramCredentials,
CreateAcls, DeleteAcls, AlterClientQuotas)
become one JSON line per resource in <data-dir>/audit.log with their outcome. Registered into
run.py's tests; the server comes from sasl.py.
"""
import json, os, time

import sasl

ADMIN_PW = sasl.ADMIN_PW


def audit_lines(b, want, timeout=10):
    """The audit lines once `want(lines)` holds (the writer runs behind the answers)."""
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


def register(test, Busbar):
    Sasl = sasl.sasl_server(Busbar)

    def own(fn):
        fn.own_server = True
        return test(fn)

    @own
    def audit_kafka_failed_logins_and_admin_requests_are_logged(_):
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                           NewPartitions, NewTopic, ResourceType, ScramCredentialInfo,
                                           ScramMechanism, UserScramCredentialUpsertion)
        # allow_if_no_acl off: alice (no ACL) may not alter credentials.
        b = Sasl(extra_env={"BUSBAR_AUTH_ALLOW_IF_NO_ACL": "false"})
        try:
            assert sasl.plain_login(b.sasl, "mallory", "guess-pw-1") == 58
            opened = sasl.scram_first(b.sasl, "ghost", "nonce-1")
            opened[0].close()
            admin = AdminClient(sasl.confluent_conf(b, "SCRAM-SHA-256", "admin", ADMIN_PW))
            admin.create_topics([NewTopic("audited", 1)])["audited"].result(timeout=20)
            try:
                admin.create_topics([NewTopic("audited", 1)])["audited"].result(timeout=20)
                raise AssertionError("created twice")
            except KafkaException as e:
                assert e.args[0].code() == 36, e  # TOPIC_ALREADY_EXISTS
            admin.create_partitions([NewPartitions("audited", 3)])["audited"].result(timeout=20)
            entry = ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)
            res = ConfigResource(ResourceType.TOPIC, "audited", incremental_configs=[entry])
            for f in admin.incremental_alter_configs([res]).values():
                f.result(timeout=20)
            admin.delete_topics(["audited"])["audited"].result(timeout=20)
            b.user("alice", "alice-pw")
            alice = AdminClient(sasl.confluent_conf(b, "PLAIN", "alice", "alice-pw"))
            zed = UserScramCredentialUpsertion("zed", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"zed-pw")
            try:
                alice.alter_user_scram_credentials([zed])["zed"].result(timeout=20)
                raise AssertionError("alice altered credentials")
            except KafkaException as e:
                assert e.args[0].code() == 31, e

            def kafka(lines):
                return [(l["operation"], l["resource"], l["outcome"]) for l in lines
                        if l["listener"].startswith("SASL_PLAINTEXT://")]
            want = [
                ("SaslAuthenticate", "USER:mallory", "failed"),
                ("SaslAuthenticate", "USER:ghost", "failed"),
                ("CreateTopics", "TOPIC:audited", "success"),
                ("CreateTopics", "TOPIC:audited", "failed"),
                ("CreatePartitions", "TOPIC:audited", "success"),
                ("IncrementalAlterConfigs", "TOPIC:audited", "success"),
                ("DeleteTopics", "TOPIC:audited", "success"),
                ("AlterUserScramCredentials", "USER:zed", "denied"),
            ]
            lines = audit_lines(b, lambda ls: all(w in kafka(ls) for w in want))
            got = kafka(lines)
            assert all(w in got for w in want), json.dumps(lines, indent=1)
            assert [w for w in got if w in want] == want, got  # in order
            by = {(l["operation"], l["resource"], l["outcome"]): l for l in lines}
            failed = by[("SaslAuthenticate", "USER:mallory", "failed")]
            assert failed["principal"] == "User:mallory" and failed["listener"] == f"SASL_PLAINTEXT://{b.sasl}", failed
            assert failed["peer"].startswith("127.0.0.1:"), failed
            assert "error 36" in by[("CreateTopics", "TOPIC:audited", "failed")]["detail"], lines
            created = by[("CreateTopics", "TOPIC:audited", "success")]
            assert created["principal"] == "User:admin", created
            assert by[("AlterUserScramCredentials", "USER:zed", "denied")]["principal"] == "User:alice"
            with open(os.path.join(b.data, "audit.log")) as f:
                raw = f.read()
            assert "guess-pw-1" not in raw and "zed-pw" not in raw, "no password is written"
        finally:
            b.stop()

    @own
    def audit_kafka_acl_and_quota_changes_are_logged(_):
        """A4: CreateAcls, DeleteAcls (confluent-kafka AdminClient) and AlterClientQuotas (a raw
        frame after a PLAIN login: librdkafka has no quota call) each write a success line."""
        import socket, struct
        import quotas
        from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                           AdminClient, ResourcePatternType, ResourceType)
        b = Sasl()
        try:
            admin = AdminClient(sasl.confluent_conf(b, "SCRAM-SHA-256", "admin", ADMIN_PW))
            acl = AclBinding(ResourceType.TOPIC, "orders-", ResourcePatternType.PREFIXED, "User:alice", "*",
                             AclOperation.WRITE, AclPermissionType.ALLOW)
            for f in admin.create_acls([acl]).values():
                f.result(timeout=20)
            gone = AclBindingFilter(ResourceType.TOPIC, "orders-", ResourcePatternType.PREFIXED, "User:alice",
                                    None, AclOperation.ANY, AclPermissionType.ANY)
            for f in admin.delete_acls([gone]).values():
                assert len(f.result(timeout=20)) == 1
            host, port = b.sasl.split(":")
            with socket.create_connection((host, int(port)), timeout=30) as s:
                assert sasl.handshake(s, "PLAIN") == 0
                assert sasl.authenticate(s, b"\0admin\0" + ADMIN_PW.encode())[0] == 0
                entity = quotas.string("user") + quotas.nullable("alice")
                op = quotas.string("producer_byte_rate") + struct.pack(">d?", 1048576.0, False)
                body = struct.pack(">i", 1) + struct.pack(">i", 1) + entity + struct.pack(">i", 1) + op
                s.sendall(sasl.frame(49, 0, 3, body + struct.pack(">?", False)))
                r = quotas.Reader(sasl.read_frame(s)[4:])
                r.take(">i")
                assert r.take(">i") == 1 and r.take(">h") == 0, "AlterClientQuotas answered an error"

            def kafka(lines):
                return [(l["principal"], l["operation"], l["outcome"]) for l in lines
                        if l["listener"].startswith("SASL_PLAINTEXT://")]
            want = [("User:admin", "CreateAcls", "success"), ("User:admin", "DeleteAcls", "success"),
                    ("User:admin", "AlterClientQuotas", "success")]
            lines = audit_lines(b, lambda ls: all(w in kafka(ls) for w in want))
            assert [w for w in kafka(lines) if w in want] == want, json.dumps(lines, indent=1)
            by = {l["operation"]: l for l in lines}
            assert "orders-" in by["CreateAcls"]["resource"], by["CreateAcls"]
            assert "orders-" in by["DeleteAcls"]["resource"], by["DeleteAcls"]
            assert "alice" in by["AlterClientQuotas"]["resource"], by["AlterClientQuotas"]
        finally:
            b.stop()
