"""ACLs on the Kafka protocol (issue 16) with real clients against the real binary: the
AdminClient's create_acls / describe_acls / delete_acls (literal, prefixed, MATCH filters), and
enforcement: produce without WRITE, a group without READ, DENY over ALLOW, prefixed grants, Metadata
hiding topics (and naming one answers 29 whether or not it exists), a PLAINTEXT client
(User:ANONYMOUS) refused, super users allowed everything, `auth.allow_if_no_acl`, one audit line
per denial. Registered into run.py's tests; the servers come from sasl.py.
"""
import json, os, time

import sasl

ADMIN_PW = sasl.ADMIN_PW


def register(test, Busbar):
    Sasl = sasl.sasl_server(Busbar)

    def own(fn):
        fn.own_server = True
        return test(fn)

    def conf(b, user, password, **extra):
        return sasl.confluent_conf(b, "SCRAM-SHA-256", user, password, **extra)

    def binding(ty, name, pattern, who, op, perm):
        from confluent_kafka.admin import AclBinding
        return AclBinding(ty, name, pattern, f"User:{who}", "*", op, perm)

    def produce_error(c, topic):
        """The error of one message produced to `topic` (None when stored)."""
        from confluent_kafka import Producer
        errs = []
        p = Producer(dict(c, **{"message.timeout.ms": 10000}))
        p.produce(topic, value=b"v", on_delivery=lambda e, m: errs.append(e))
        p.flush(20)
        assert len(errs) == 1, errs
        return errs[0]

    @own
    def acl_admin_round_trips_and_every_rule_with_real_clients(_):
        from confluent_kafka import Consumer, KafkaError, KafkaException
        from confluent_kafka.admin import (AclBindingFilter, AclOperation as Op, AclPermissionType as Perm,
                                           AdminClient, NewTopic, ResourcePatternType as Pat,
                                           ResourceType as Ty)
        b = Sasl(extra_env={"BUSBAR_AUTH_ALLOW_IF_NO_ACL": "false"})
        try:
            b.user("alice", "alice-pw")
            admin = AdminClient(conf(b, "admin", ADMIN_PW))
            for f in admin.create_topics([NewTopic(t, 1) for t in
                                          ["orders", "secret", "team-a", "team-locked"]]).values():
                f.result(20)
            acls = [binding(Ty.TOPIC, "orders", Pat.LITERAL, "alice", Op.WRITE, Perm.ALLOW),
                    binding(Ty.TOPIC, "orders", Pat.LITERAL, "alice", Op.READ, Perm.ALLOW),
                    binding(Ty.GROUP, "g-ok", Pat.LITERAL, "alice", Op.READ, Perm.ALLOW),
                    binding(Ty.TOPIC, "team-", Pat.PREFIXED, "alice", Op.ALL, Perm.ALLOW),
                    binding(Ty.TOPIC, "team-locked", Pat.LITERAL, "alice", Op.WRITE, Perm.DENY)]
            for f in admin.create_acls(acls).values():
                f.result(20)
            every = AclBindingFilter(Ty.ANY, None, Pat.ANY, None, None, Op.ANY, Perm.ANY)
            got = admin.describe_acls(every).result(20)
            assert sorted(map(str, got)) == sorted(map(str, acls)), got
            # MATCH: every ACL that applies to the named resource (literal, prefixed, wildcard).
            match = AclBindingFilter(Ty.TOPIC, "team-locked", Pat.MATCH, None, None, Op.ANY, Perm.ANY)
            got = admin.describe_acls(match).result(20)
            assert sorted((a.name, a.resource_pattern_type) for a in got) == \
                [("team-", Pat.PREFIXED), ("team-locked", Pat.LITERAL)], got
            prefixed = AclBindingFilter(Ty.ANY, None, Pat.PREFIXED, None, None, Op.ANY, Perm.ANY)
            assert [a.name for a in admin.describe_acls(prefixed).result(20)] == ["team-"]

            alice = conf(b, "alice", "alice-pw")
            assert produce_error(alice, "orders") is None, "WRITE on orders allows"
            err = produce_error(alice, "secret")
            assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
            assert produce_error(alice, "team-a") is None, "the prefixed ALLOW grants team-a"
            err = produce_error(alice, "team-locked")
            assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, \
                f"DENY overrides the prefixed ALLOW: {err}"

            # Metadata hides what alice may not DESCRIBE; naming it answers 29, existing or not.
            md = AdminClient(alice).list_topics(timeout=20)
            assert sorted(md.topics) == ["orders", "team-a", "team-locked"], sorted(md.topics)
            for name in ["secret", "no-such-topic"]:
                t = AdminClient(alice).list_topics(topic=name, timeout=20).topics[name]
                assert t.error is not None and t.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, t.error
            assert "no-such-topic" not in admin.list_topics(timeout=20).topics, "not auto-created"

            # A group alice may not READ: GroupAuthorizationFailed; g-ok consumes.
            c = Consumer(dict(alice, **{"group.id": "g-bad", "auto.offset.reset": "earliest"}))
            c.subscribe(["orders"])
            seen, deadline = None, time.time() + 20
            while seen is None and time.time() < deadline:
                m = c.poll(0.5)
                if m is not None and m.error():
                    seen = m.error()
            c.close()
            assert seen is not None and seen.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, seen
            c = Consumer(dict(alice, **{"group.id": "g-ok", "auto.offset.reset": "earliest"}))
            c.subscribe(["orders"])
            got, deadline = [], time.time() + 30
            while not got and time.time() < deadline:
                m = c.poll(0.5)
                if m is not None and not m.error():
                    got.append(m.value())
            c.close()
            assert got == [b"v"], got

            # alice may not manage ACLs (ALTER / DESCRIBE on the cluster). The client must outlive
            # its futures, and their dict must stay whole (the client sets futures through it).
            admin_a = AdminClient(alice)
            try:
                fs = admin_a.create_acls(
                    [binding(Ty.TOPIC, "secret", Pat.LITERAL, "alice", Op.ALL, Perm.ALLOW)])
                list(fs.values())[0].result(20)
                raise AssertionError("alice created an ACL")
            except KafkaException as e:
                assert e.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED, e
            # librdkafka drops DescribeAcls' error code (an empty list); kafka-python raises it.
            assert admin_a.describe_acls(every).result(20) == []
            from kafka.admin import (ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                                     KafkaAdminClient, ResourcePatternFilter, ResourceType as KType)
            from kafka.errors import ClusterAuthorizationFailedError
            kadmin = KafkaAdminClient(bootstrap_servers=b.sasl, security_protocol="SASL_PLAINTEXT",
                                      sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="alice",
                                      sasl_plain_password="alice-pw")
            try:
                kfilter = ACLFilter(None, "*", ACLOperation.ANY, ACLPermissionType.ANY,
                                    ResourcePatternFilter(KType.ANY, None, ACLResourcePatternType.ANY))
                got = kadmin.describe_acls(kfilter)
                raise AssertionError(f"alice described ACLs: {got}")
            except ClusterAuthorizationFailedError:
                pass
            finally:
                kadmin.close()

            # PLAINTEXT listener: User:ANONYMOUS, no ACLs: sees nothing, may write nothing.
            anon = {"bootstrap.servers": b.plain}
            assert AdminClient(anon).list_topics(timeout=20).topics == {}
            err = produce_error(anon, "orders")
            assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err

            # The super user is allowed everything, ACLs or not.
            assert produce_error(conf(b, "admin", ADMIN_PW), "team-locked") is None

            # kafka-python: the same denials.
            from kafka import KafkaConsumer, KafkaProducer
            from kafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError
            kp = dict(bootstrap_servers=b.sasl, security_protocol="SASL_PLAINTEXT",
                      sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="alice",
                      sasl_plain_password="alice-pw")
            p = KafkaProducer(max_block_ms=10000, **kp)  # idempotent: WRITE on any topic suffices
            try:
                p.send("secret", b"x").get(timeout=20)
                raise AssertionError("kafka-python produced to secret")
            except TopicAuthorizationFailedError:
                pass
            p.send("orders", b"kp").get(timeout=20)
            p.close()
            kc = KafkaConsumer("orders", group_id="g-kp", auto_offset_reset="earliest", **kp)
            try:
                kc.poll(timeout_ms=10000)
                kc.poll(timeout_ms=5000)
                raise AssertionError("kafka-python consumed in g-kp")
            except GroupAuthorizationFailedError:
                pass
            finally:
                kc.close()

            # delete_acls with MATCH: both ACLs applying to team-locked; the DENY goes with them.
            deleted = list(admin.delete_acls([match]).values())[0].result(20)
            assert sorted(a.name for a in deleted) == ["team-", "team-locked"], deleted
            assert sorted(a.name for a in admin.describe_acls(every).result(20)) == ["g-ok", "orders", "orders"]
            err = produce_error(alice, "team-a")
            assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err

            # One audit line per denial, naming principal, API and resource.
            path = os.path.join(b.data, "audit.log")
            deadline = time.time() + 10
            while time.time() < deadline:
                lines = [json.loads(x) for x in open(path)] if os.path.exists(path) else []
                denied = [(x["principal"], x["operation"], x["resource"]) for x in lines
                          if x.get("outcome") == "denied"]
                if ("User:ANONYMOUS", "Metadata", "TOPIC:orders") in denied:
                    break
                time.sleep(0.2)
            for line in [("User:alice", "Metadata", "TOPIC:secret"),  # librdkafka asks before producing
                         ("User:alice", "Produce", "TOPIC:team-locked"),
                         ("User:alice", "FindCoordinator", "GROUP:g-bad"),
                         ("User:alice", "DescribeAcls", "CLUSTER:kafka-cluster"),
                         ("User:ANONYMOUS", "Metadata", "TOPIC:orders")]:
                assert line in denied, (line, denied[-20:])
            # alice's refused CreateAcls is one line (the admin request's own), not one per check.
            assert [d for d in denied if d[:2] == ("User:alice", "CreateAcls")] == \
                [("User:alice", "CreateAcls", "TOPIC:secret")], denied
            # Listing all topics hides silently: no line for the topics alice was not shown.
            assert ("User:ANONYMOUS", "Metadata", "TOPIC:secret") not in denied, "the listing audited"
        except BaseException:
            print("".join(getattr(b, "log", []))[-4000:])
            raise
        finally:
            b.stop()

    @own
    def acl_allow_if_no_acl_allows_only_what_no_acl_names(_):
        from confluent_kafka import KafkaError
        from confluent_kafka.admin import (AclOperation as Op, AclPermissionType as Perm, AdminClient,
                                           NewTopic, ResourcePatternType as Pat, ResourceType as Ty)
        b = Sasl(extra_env={"BUSBAR_AUTH_ALLOW_IF_NO_ACL": "true"})
        try:
            b.user("alice", "alice-pw")
            admin = AdminClient(conf(b, "admin", ADMIN_PW))
            for f in admin.create_topics([NewTopic(t, 1) for t in ["free", "bobs"]]).values():
                f.result(20)
            alice = conf(b, "alice", "alice-pw")
            assert produce_error(alice, "free") is None, "no ACL names free"
            assert produce_error(alice, "bobs") is None
            for f in admin.create_acls([binding(Ty.TOPIC, "bobs", Pat.LITERAL, "bob", Op.WRITE,
                                                Perm.ALLOW)]).values():
                f.result(20)
            err = produce_error(alice, "bobs")
            assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, \
                f"an ACL names bobs now, none for alice: {err}"
            assert produce_error(alice, "free") is None
        finally:
            b.stop()

    @own
    def acl_subject_type_101_round_trips_with_kafka_python_and_guards_the_registry(_):
        """busbar's SUBJECT resource (code 101, issue 17) through kafka-python's raw CreateAcls,
        DescribeAcls and DeleteAcls (its ACL classes know only Kafka's types), then enforced by
        the schema registry under /schema-registry/: alice, with READ on the prefix `orders-`,
        lists and reads only those subjects, until the ACL is deleted over Kafka."""
        from kafka.admin import KafkaAdminClient
        from kafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest
        b = Sasl(extra_env={"BUSBAR_AUTH_ALLOW_IF_NO_ACL": "false", "BUSBAR_SCHEMA_REGISTRY_ADDR": ""})
        try:
            b.user("alice", "alice-pw")
            kadmin = KafkaAdminClient(bootstrap_servers=b.sasl, security_protocol="SASL_PLAINTEXT",
                                      sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="admin",
                                      sasl_plain_password=ADMIN_PW)
            send = lambda req: kadmin._manager.run(kadmin._manager.send, req)
            SUBJECT, PREFIXED, LITERAL, ANY, READ, ALLOW = 101, 4, 3, 1, 3, 3
            creation = CreateAclsRequest.AclCreation(
                resource_type=SUBJECT, resource_name="orders-", resource_pattern_type=PREFIXED,
                principal="User:alice", host="*", operation=READ, permission_type=ALLOW)
            created = send(CreateAclsRequest(creations=[creation]))
            assert [r.error_code for r in created.results] == [0], created
            described = send(DescribeAclsRequest(
                resource_type_filter=SUBJECT, resource_name_filter=None, pattern_type_filter=ANY,
                principal_filter=None, host_filter=None, operation=ANY, permission_type=ANY))
            assert described.error_code == 0, described
            got = [(r.resource_type, r.resource_name, r.pattern_type) for r in described.resources]
            assert got == [(SUBJECT, "orders-", PREFIXED)], got
            status, acls = b.call("GET", "/acls?resource_type=SUBJECT")
            assert status == 200 and [a["resource_name"] for a in acls["acls"]] == ["orders-"], acls
            for subject in ["orders-value", "payments-value"]:
                status, body = b.call("POST", f"/schema-registry/subjects/{subject}/versions",
                                      {"schema": '"string"'})
                assert status == 200, (status, body)
            alice = dict(user="alice", password="alice-pw")
            assert b.call("GET", "/schema-registry/subjects", **alice) == (200, ["orders-value"])
            assert b.call("GET", "/schema-registry/subjects/orders-value/versions", **alice) == (200, [1])
            status, body = b.call("GET", "/schema-registry/subjects/payments-value/versions", **alice)
            assert (status, body["error_code"]) == (403, 40301), (status, body)
            gone = send(DeleteAclsRequest(filters=[DeleteAclsRequest.DeleteAclsFilter(
                resource_type_filter=SUBJECT, resource_name_filter="orders-",
                pattern_type_filter=PREFIXED, principal_filter=None, host_filter=None,
                operation=ANY, permission_type=ANY)]))
            result = gone.filter_results[0]
            assert result.error_code == 0 and len(result.matching_acls) == 1, gone
            assert result.matching_acls[0].resource_type == SUBJECT, gone
            assert b.call("GET", "/schema-registry/subjects", **alice) == (200, [])
        except BaseException:
            print("".join(getattr(b, "log", []))[-4000:])
            raise
        finally:
            b.stop()
