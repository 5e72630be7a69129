#!/usr/bin/env python3
"""Real Kafka clients against the real busbar binary: kcat (librdkafka 2.0.x from Debian),
confluent-kafka (librdkafka from PyPI), kafka-python, aiokafka and kafkajs (npm, tests/clients/kafkajs). Each test starts its own busbar on free
loopback ports in a fresh data directory. Prints one line per test and a closing
'N passed, N failed' line; exits non-zero on any failure.

Usage: run.py PATH/TO/busbar [test-name-substring]
"""
import json, os, re, signal, socket, subprocess, sys, tempfile, threading, time, traceback, urllib.error, urllib.request

BIN = sys.argv[1]
ONLY = sys.argv[2] if len(sys.argv) > 2 else ""


class Busbar:
    def __init__(self, data=None, extra_env=None, kafka_port=0):
        self.tmp = None if data else tempfile.TemporaryDirectory()
        self.data = data or self.tmp.name
        self.extra_env = extra_env or {}
        self.start(kafka_port=kafka_port)

    def start(self, kafka_port=0, http_port=0):
        # A short first-rebalance delay keeps group tests quick; everything else is the default.
        env = dict(os.environ, BUSBAR_BROKER_GROUP_INITIAL_REBALANCE_DELAY_MS="500", **self.extra_env)
        # BUSBAR_KAFKA_LISTENERS in `extra_env` sets the Kafka listeners (a flag would win).
        kafka = [] if "BUSBAR_KAFKA_LISTENERS" in env else ["--kafka-addr", f"127.0.0.1:{kafka_port}"]
        self.proc = subprocess.Popen(
            [BIN, "serve", "--data-dir", self.data, "--http-addr", f"127.0.0.1:{http_port}",
             *kafka],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError("busbar exited before it was ready")
            m = re.search(r"ready in .* http://(\S+) kafka (\S+) ", line)
            if m:
                self.ready_line = line
                self.http, self.kafka = m.group(1), m.group(2)
                # Every Kafka listener's address (several: " listeners PROTO://IP:PORT,...").
                more = re.search(r" listeners (\S+)", line)
                self.listeners = ([l.split("://", 1)[1] for l in more.group(1).split(",")]
                                  if more else [self.kafka])
                self.log = []  # what busbar writes to stderr once ready, line by line
                threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()
                return
        raise RuntimeError("busbar did not become ready")

    def wait_log(self, pattern, timeout=10):
        """The first stderr line (since ready) matching `pattern`; fails after `timeout` s."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for line in list(self.log):
                if re.search(pattern, line):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no busbar log line matches {pattern!r}; got: {''.join(self.log)[-2000:]}")

    def restart(self, hard=False):
        port = int(self.kafka.split(":")[1])
        http_port = int(self.http.split(":")[1])
        self.proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
        self.proc.wait(30)
        self.start(port, http_port)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        if self.tmp:
            self.tmp.cleanup()

    def get(self, path):
        with urllib.request.urlopen(f"http://{self.http}{path}", timeout=30) as r:
            return json.loads(r.read())

    def post_raw(self, path, body, content_type):
        req = urllib.request.Request(f"http://{self.http}{path}", data=body, headers={"content-type": content_type})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def post(self, path, body):
        req = urllib.request.Request(f"http://{self.http}{path}", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())


def kcat(b, *args, stdin=None):
    out = subprocess.run(["kcat", "-b", b.kafka, *args], input=stdin, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"kcat {args} failed: {out.stderr}")
    return out.stdout


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


@test
def kcat_metadata_produce_consume_with_keys_and_headers(b):
    kcat(b, "-P", "-t", "kc", "-K", ":", "-H", "source=kcat", stdin="k1:v1\nk2:v2\nk1:v3\n")
    meta = kcat(b, "-L")
    assert "broker 0 at " + b.kafka in meta and "(controller)" in meta, meta
    assert 'topic "kc" with 1 partitions' in meta, meta
    out = kcat(b, "-C", "-t", "kc", "-e", "-o", "beginning", "-f", "%k=%s %h\n")
    assert out.splitlines() == ["k1=v1 source=kcat", "k2=v2 source=kcat", "k1=v3 source=kcat"], out
    assert kcat(b, "-C", "-t", "kc", "-e", "-o", "-1", "-f", "%o\n").strip() == "2"


@test
def kcat_every_codec_is_stored_as_received_and_read_back(b):
    payload = "x" * 2000  # compressible, so librdkafka really compresses
    for codec in ["gzip", "snappy", "lz4", "zstd"]:
        lines = "".join(f"{codec}-{i}-{payload}\n" for i in range(20))
        kcat(b, "-P", "-t", f"z-{codec}", "-z", codec, stdin=lines)
        out = kcat(b, "-C", "-t", f"z-{codec}", "-e", "-o", "beginning")
        assert out == lines, f"{codec}: {out[:200]}"
        evs = b.get(f"/topics/z-{codec}/partitions/0/events?limit=100")["events"]
        assert len(evs) == 20, (codec, evs[:1])
        size = b.get(f"/topics/z-{codec}")["partitions"][0]["size_bytes"]
        assert size < 10_000, f"{codec}: {size} bytes stored for 40 KB of text: the batch was not stored compressed"
        assert evs[3]["value"] == f"{codec}-3-{payload}", "decompressed for HTTP readers"


def batch_attributes(data_dir, topic, at=None):
    """The attributes of every batch in the segment files of `topic`'s partition 0 (of the batch
    based at offset `at` only, when given)."""
    import glob, struct
    attributes = []
    for path in sorted(glob.glob(f"{data_dir}/**/{topic}/**/*.log", recursive=True)):
        with open(path, "rb") as f:
            seg = f.read()
        pos = 16  # the segment header
        while pos + 61 <= len(seg):
            base, length = struct.unpack(">qi", seg[pos:pos + 12])
            if at is None or base == at:
                attributes.append(struct.unpack(">h", seg[pos + 21:pos + 23])[0])
            pos += 12 + length
    return attributes


def batch_codecs(data_dir, topic):
    """The codec of every batch in the segment files of `topic`'s partition 0."""
    return [a & 7 for a in batch_attributes(data_dir, topic)]


@test
def kcat_compacted_topics_of_every_codec_keep_the_latest_value_per_key(_):
    # Compaction inflates compressed batches, keeps each key's latest record, compresses what it
    # keeps again with the batch's codec, and an expired tombstone deletes its key for good.
    b = Busbar(extra_env={"BUSBAR_BROKER_MAINTENANCE_INTERVAL_MS": "200"})
    try:
        for bad in ["1.5", "-0.1", "NaN", "half"]:
            try:
                b.post("/topics", {"name": "bad-ratio", "configs": {"min.cleanable.dirty.ratio": bad}})
                raise AssertionError(f"ratio {bad} accepted")
            except urllib.error.HTTPError as e:
                body = e.read().decode()
                assert e.code == 400 and "min.cleanable.dirty.ratio" in body, (e.code, body)
        pad = os.urandom(100).hex()  # half as compressible as hex is: batches of about 1 KB
        for codec in ["gzip", "snappy", "lz4", "zstd"]:
            t = f"cz-{codec}"
            made = b.post("/topics", {"name": t, "partitions": 1, "configs": {
                "cleanup.policy": "compact", "segment.bytes": "2048", "delete.retention.ms": "0",
                "min.cleanable.dirty.ratio": "0.01"}})
            assert made["configs"]["min.cleanable.dirty.ratio"] == "0.01", made["configs"]
            for r in range(4):
                kcat(b, "-P", "-t", t, "-z", codec, "-K", ":",
                     stdin="".join(f"k{i}:{codec}-r{r}-k{i}-{pad}\n" for i in range(10)))
            kcat(b, "-P", "-t", t, "-z", codec, "-K", ":", "-Z", stdin="k9:\n")
            # Later batches roll the segments above, so compaction may take them.
            for r in range(6):
                kcat(b, "-P", "-t", t, "-z", codec, "-K", ":",
                     stdin="".join(f"f{i}:{r}-{pad}\n" for i in range(10)))
            # (librdkafka sends a batch that compression would not shrink as is)
            codecs = batch_codecs(b.data, t)
            c = ["gzip", "snappy", "lz4", "zstd"].index(codec) + 1
            assert c in codecs and set(codecs) <= {0, c}, codecs
        for codec in ["gzip", "snappy", "lz4", "zstd"]:
            t = f"cz-{codec}"
            want = [f"k{i}={codec}-r3-k{i}-{pad}" for i in range(9)]
            deadline = time.time() + 30
            while True:
                # check.crcs: librdkafka verifies every batch's CRC, rebuilt ones included
                out = kcat(b, "-C", "-t", t, "-e", "-o", "beginning", "-X", "check.crcs=true",
                           "-f", "%k=%s\n")
                got = [l for l in out.splitlines() if l.startswith("k")]
                if got == want:
                    break
                assert time.time() < deadline, f"{codec}: not compacted: {got[:12]} ({len(got)} records)"
                time.sleep(0.2)
            # Round 3's batch (offsets 30-39) lost k9's value to the tombstone: rebuilt, and
            # compressed again with its codec.
            rebuilt = batch_attributes(b.data, t, at=30)
            assert [a & 7 for a in rebuilt] == [["gzip", "snappy", "lz4", "zstd"].index(codec) + 1], \
                f"{codec}: the rebuilt batch must stay compressed: {rebuilt}"
    finally:
        b.stop()


kcat_compacted_topics_of_every_codec_keep_the_latest_value_per_key.own_server = True


@test
def confluent_a_tombstone_with_an_old_timestamp_stays_delete_retention_after_compaction_kept_it(_):
    # Kafka's KIP-534: a tombstone expires delete.retention.ms after compaction first kept it,
    # not by its record's timestamp, so a consumer reading within that time sees the delete.
    from confluent_kafka import Consumer, Producer
    b = Busbar(extra_env={"BUSBAR_BROKER_MAINTENANCE_INTERVAL_MS": "200"})
    try:
        b.post("/topics", {"name": "kip534", "partitions": 1, "configs": {
            "cleanup.policy": "compact", "segment.bytes": "2048", "delete.retention.ms": "3600000"}})
        p = Producer({"bootstrap.servers": b.kafka, "linger.ms": 0})
        p.produce("kip534", key="k", value="old value", partition=0)
        p.flush(10)
        # The tombstone says 1970: by its own timestamp it is 56 years past its retention.
        p.produce("kip534", key="k", value=None, partition=0, timestamp=1000)
        p.flush(10)
        for i in range(40):  # rolls the segments above, so compaction takes them
            p.produce("kip534", key=f"f{i % 4}", value="x" * 200, partition=0)
            p.flush(10)
        deadline = time.time() + 30
        while not any(a & 0x40 for a in batch_attributes(b.data, "kip534")):
            assert time.time() < deadline, "compaction never kept the tombstone"
            time.sleep(0.2)
        c = Consumer({"bootstrap.servers": b.kafka, "group.id": "kip534", "auto.offset.reset": "earliest",
                      "enable.auto.commit": False})
        c.assign([__import__("confluent_kafka").TopicPartition("kip534", 0, 0)])
        got, deadline = [], time.time() + 30
        while time.time() < deadline and len([m for m in got if m.key() == b"k"]) < 1:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m)
        c.close()
        ks = [m for m in got if m.key() == b"k"]
        assert len(ks) == 1 and ks[0].value() is None, [(m.offset(), m.value()) for m in ks]
        assert ks[0].timestamp()[1] == 1000, ks[0].timestamp()
        assert ks[0].offset() == 1, "the old value went, the tombstone stays at its offset"
    finally:
        b.stop()


confluent_a_tombstone_with_an_old_timestamp_stays_delete_retention_after_compaction_kept_it.own_server = True


@test
def confluent_creates_topics_with_the_configs_kafka_tools_set(b):
    # Kafka Streams creates its internal topics with message.timestamp.type=CreateTime; tools
    # set min.insync.replicas and the like. Values busbar behaves as are taken and described;
    # others are refused naming the key and why.
    from confluent_kafka.admin import AdminClient, NewTopic, ConfigResource, ResourceType
    from confluent_kafka import KafkaException
    a = AdminClient({"bootstrap.servers": b.kafka})
    streams = {"cleanup.policy": "compact", "message.timestamp.type": "CreateTime",
               "min.insync.replicas": "1", "compression.type": "producer",
               "unclean.leader.election.enable": "false", "min.compaction.lag.ms": "0"}
    a.create_topics([NewTopic("app-store-changelog", 2, 1, config=streams)])["app-store-changelog"].result()
    res = ConfigResource(ResourceType.TOPIC, "app-store-changelog")
    cfg = a.describe_configs([res])[res].result()
    got = {k: cfg[k].value for k in streams}
    assert got == streams, got
    for key, value, why in [("message.timestamp.type", "LogAppendTime", "LogAppendTime is not supported"),
                            ("min.insync.replicas", "2", "one copy"),
                            ("compression.type", "zstd", "as their producer compressed them")]:
        try:
            a.create_topics([NewTopic("refused", 1, 1, config={key: value})])["refused"].result()
            raise AssertionError(f"{key}={value} accepted")
        except KafkaException as e:
            assert key in str(e) and why in str(e), e
    assert "refused" not in a.list_topics(timeout=10).topics


@test
def confluent_admin_creates_lists_and_deletes_topics(b):
    from confluent_kafka.admin import AdminClient, NewTopic
    from confluent_kafka import KafkaException
    a = AdminClient({"bootstrap.servers": b.kafka})
    fs = a.create_topics([NewTopic("adm", num_partitions=4, replication_factor=1, config={"retention.ms": "3600000"})])
    fs["adm"].result()
    assert len(a.list_topics(timeout=10).topics["adm"].partitions) == 4
    assert b.get("/topics/adm")["configs"]["retention.ms"] == "3600000"
    for bad, expect in [(NewTopic("adm", 1, 1), "TOPIC_ALREADY_EXISTS"), (NewTopic("bad name", 1, 1), "TOPIC_EXCEPTION"),
                        (NewTopic("rf", 1, 3), "INVALID_REPLICATION_FACTOR")]:
        try:
            a.create_topics([bad])[bad.topic].result()
            raise AssertionError(f"{bad.topic} should fail")
        except KafkaException as e:
            assert expect in str(e), e
    from confluent_kafka.admin import ConfigResource, ResourceType, ConfigEntry, AlterConfigOpType, NewPartitions
    from confluent_kafka import TopicPartition
    res = ConfigResource(ResourceType.TOPIC, "adm")
    cfg = a.describe_configs([res])[res].result()
    assert cfg["retention.ms"].value == "3600000" and cfg["segment.bytes"].value == "1073741824", cfg
    inc = ConfigResource(ResourceType.TOPIC, "adm", incremental_configs=[
        ConfigEntry("retention.bytes", "1000000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    a.incremental_alter_configs([inc])[inc].result()
    cfg = a.describe_configs([res])[res].result()
    assert cfg["retention.bytes"].value == "1000000" and cfg["retention.ms"].value == "604800000", cfg
    try:
        bad = ConfigResource(ResourceType.TOPIC, "adm", incremental_configs=[ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)])
        fs = a.incremental_alter_configs([bad])
        fs[bad].result(30)
        raise AssertionError("a bad config value must be refused")
    except KafkaException as e:
        assert "retention.ms" in str(e), e
    assert b.get("/topics/adm")["configs"]["retention.bytes"] == "1000000", "a refused change changes nothing"
    a.create_partitions([NewPartitions("adm", 6)])["adm"].result()
    assert len(a.list_topics(timeout=10).topics["adm"].partitions) == 6
    b.post("/topics/adm/events", [{"value": i, "partition": 0} for i in range(10)])
    done = a.delete_records([TopicPartition("adm", 0, 4)])
    assert list(done.values())[0].result().low_watermark == 4
    assert b.get("/topics/adm")["partitions"][0]["log_start_offset"] == 4
    from confluent_kafka import ConsumerGroupTopicPartitions
    a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions("og", [TopicPartition("adm", 0, 7), TopicPartition("adm", 1, 0)])])["og"].result()
    listed = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions("og")])["og"].result()
    assert sorted((tp.partition, tp.offset) for tp in listed.topic_partitions) == [(0, 7), (1, 0)], listed
    groups = a.list_consumer_groups().result()
    assert "og" in [g.group_id for g in groups.valid], groups.valid
    desc = a.describe_consumer_groups(["og"])["og"].result()
    assert str(desc.state).endswith("EMPTY"), desc.state
    a.delete_consumer_groups(["og"])["og"].result()
    assert "og" not in [g.group_id for g in a.list_consumer_groups().result().valid]
    cluster = a.describe_cluster().result()
    assert cluster.controller.id == 0 and len(cluster.nodes) == 1, cluster
    a.delete_topics(["adm"])["adm"].result()
    assert "adm" not in a.list_topics(timeout=10).topics


@test
def refused_requests_are_named_in_the_broker_log(b):
    # kafkajs and the Java tools tell their user to "see the broker logs": the log names the API,
    # the reason, the client id and the peer of each refused request.
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": b.kafka, "client.id": "refusal-test"})
    try:
        a.create_topics([NewTopic("bad name", 1, 1)])["bad name"].result()
        raise AssertionError("an invalid topic name was accepted")
    except Exception as e:
        assert "TOPIC_EXCEPTION" in str(e), e
    line = b.wait_log(r"refused CreateTopics v\d+ from 127\.0\.0\.1:\d+ \(client \"refusal-test\"\)")
    assert "InvalidTopicException (17)" in line and "bad name" in line, line
    # A request busbar cannot serve at all (an API key it does not know) is named too.
    with socket.create_connection(tuple(b.kafka.rsplit(":", 1)), timeout=10) as s:
        body = (999).to_bytes(2, "big", signed=True) + (0).to_bytes(2, "big") + (1).to_bytes(4, "big") \
            + (6).to_bytes(2, "big") + b"probe1"
        s.sendall(len(body).to_bytes(4, "big") + body)
        assert s.recv(1) == b"", "the connection is closed"
    line = b.wait_log(r"refused a request .*\(client \"probe1\"\): unknown api key 999")
    assert "connection closed" in line, line


KAFKAJS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kafkajs")


@test
def kafkajs_admin_idempotent_producer_group_and_out_of_range_recovery(b):
    # kafkajs 2.2.4 (npm), installed into tests/clients/kafkajs on first use.
    kafkajs_ready()
    out = subprocess.run(["node", "suite.js", b.kafka], cwd=KAFKAJS, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr + "".join(b.log)[-3000:]


def kafkajs_ready():
    if not os.path.isdir(os.path.join(KAFKAJS, "node_modules", "kafkajs")):
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=KAFKAJS, check=True,
                       capture_output=True, timeout=300)


class KjsMember:
    """One kafkajs group consumer in its own node process (tests/clients/kafkajs/group3.js)."""

    def __init__(self, b, topic, group, name):
        self.name = name
        self.lines = []
        self.proc = subprocess.Popen(["node", "group3.js", "member", b.kafka, topic, group, name], cwd=KAFKAJS,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()

    def assignment(self):
        """The partitions of the latest rebalance, or None before the first."""
        got = [json.loads(line.split(" ", 1)[1]) for line in list(self.lines) if line.startswith("assigned ")]
        return got[-1] if got else None

    def values(self):
        return {line.split()[3] for line in list(self.lines) if line.startswith("msg ")}


def wait_for(what, check, members, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.1)
    logs = {m.name: "".join(m.lines)[-1500:] for m in members}
    raise AssertionError(f"timed out waiting for {what}; members said: {logs}")


@test
def kafkajs_group_of_3_survives_a_member_leaving_and_one_killed(b):
    # Three kafkajs consumers (one node process each) share a 6-partition topic. One leaves cleanly
    # (disconnect: LeaveGroup), one is killed with SIGKILL (its session expires); the last ends up
    # owning all 6 partitions and every produced message is consumed at least once.
    kafkajs_ready()
    b.post("/topics", {"name": "kjs3", "partitions": 6})
    members = [KjsMember(b, "kjs3", "kjs3-g", n) for n in ("leaver", "killed", "survivor")]
    leaver, killed, survivor = members
    produced = set()

    def produce(prefix, n):
        out = subprocess.run(["node", "group3.js", "produce", b.kafka, "kjs3", prefix, str(n)], cwd=KAFKAJS,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        produced.update(f"{prefix}-{i}" for i in range(n))

    def owned(ms):
        return sorted(p for m in ms for p in (m.assignment() or []))

    def consumed():
        return produced <= set().union(*(m.values() for m in members))

    try:
        wait_for("three members sharing 6 partitions",
                 lambda: all(m.assignment() for m in members) and owned(members) == list(range(6)), members)
        produce("one", 300)
        wait_for("every message of the first batch", consumed, members)
        leaver.proc.send_signal(signal.SIGTERM)
        assert leaver.proc.wait(30) == 0 and "left\n" in leaver.lines, "".join(leaver.lines)[-1500:]
        wait_for("two members sharing 6 partitions after the leave",
                 lambda: owned([killed, survivor]) == list(range(6)) and len(killed.assignment()) > 0
                 and len(survivor.assignment()) > 0 and len(killed.assignment()) + len(survivor.assignment()) == 6,
                 members)
        produce("two", 300)
        wait_for("every message of the second batch", consumed, members)
        killed.proc.send_signal(signal.SIGKILL)
        killed.proc.wait(30)
        produce("three", 300)
        wait_for("the survivor owning all 6 partitions", lambda: survivor.assignment() == list(range(6)), members)
        wait_for("every message consumed at least once", consumed, members)
        assert {v for v in produced if v.startswith("three-")} <= survivor.values(), "the survivor read the rest"
        assert not any(line.startswith("crash") for line in survivor.lines), "".join(survivor.lines)[-1500:]
        # Its commits reach the end of every partition (kafkajs commits after each batch).
        wait_for("commits at the end of every partition", lambda: b.get("/groups/kjs3-g")["lag"] == 0, members, 30)
        g = b.get("/groups/kjs3-g")
        assert len(g["members"]) == 1 and len(g["offsets"]) == 6, g
    finally:
        for m in members:
            if m.proc.poll() is None:
                m.proc.kill()
                m.proc.wait(10)


def produce_keyed(b, topic, n, partitions):
    from confluent_kafka.admin import AdminClient, NewTopic
    from confluent_kafka import Producer
    admin = AdminClient({"bootstrap.servers": b.kafka})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result()
    p = Producer({"bootstrap.servers": b.kafka, "acks": "all", "linger.ms": 5, "compression.type": "none"})
    acked = []
    for i in range(n):
        p.produce(topic, key=f"key-{i % 101}", value=f"{i}", on_delivery=lambda err, m: acked.append(err))
        if i % 5000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    assert len(acked) == n and all(e is None for e in acked), "every produce acknowledged"


def group_member(b, topic, group, stop, seen, lock):
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": b.kafka, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 10000})
    c.subscribe([topic])
    while not stop.is_set():
        msgs = c.consume(500, 0.5)
        for m in msgs:
            if m.error():
                raise AssertionError(m.error())
            with lock:
                seen.append((m.partition(), m.offset(), m.key().decode(), int(m.value())))
        if msgs:
            c.commit(asynchronous=False)
    c.close()


@test
def confluent_group_of_three_shares_100k_keyed_events_in_order(b):
    n = 100_000
    produce_keyed(b, "orders", n, 6)
    seen, lock, stop = [], threading.Lock(), threading.Event()
    members = [threading.Thread(target=group_member, args=(b, "orders", "g3", stop, seen, lock)) for _ in range(3)]
    for t in members:
        t.start()
        time.sleep(0.5)
    deadline = time.time() + 120
    while time.time() < deadline:
        with lock:
            if len({(p, o) for p, o, _, _ in seen}) >= n:
                break
        time.sleep(0.5)
    stop.set()
    for t in members:
        t.join(30)
    distinct = {(p, o) for p, o, _, _ in seen}
    assert len(distinct) == n, f"consumed {len(distinct)} of {n}"
    values = sorted({v for _, _, _, v in seen})
    assert values == list(range(n)), "no event lost"
    # Per key, in the order the partition holds them, values only grow (a key lives in one
    # partition and one producer sent them in order); redeliveries after a rebalance are dropped.
    last = {}
    for p, o, k, v in sorted(set(seen), key=lambda s: (s[0], s[1])):
        assert last.get(k, -1) < v, f"per-key order broken for {k} at partition {p} offset {o}"
        last[k] = v
    g = b.get("/groups/g3")
    assert g["lag"] == 0, g


@test
def rebalance_when_a_member_leaves_and_when_one_is_killed(b):
    produce_keyed(b, "rb", 3000, 4)
    code = f"""
import sys, time
from confluent_kafka import Consumer
c = Consumer({{"bootstrap.servers": "{b.kafka}", "group.id": "rbg", "auto.offset.reset": "earliest",
               "enable.auto.commit": False, "session.timeout.ms": 6000}})
c.subscribe(["rb"])
t = time.time()
while time.time() - t < 8:
    for m in c.consume(100, 0.5):
        c.commit(message=m, asynchronous=False)
print(len(c.assignment()), flush=True)
time.sleep(60)
"""
    victim = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    seen, lock, stop = [], threading.Lock(), threading.Event()
    t = threading.Thread(target=group_member, args=(b, "rb", "rbg", stop, seen, lock))
    t.start()
    victim.stdout.readline()
    victim.kill()  # no LeaveGroup: the session times out and the survivor takes over
    deadline = time.time() + 60
    while time.time() < deadline:
        g = b.get("/groups/rbg")
        if len(g["members"]) == 1 and g["lag"] == 0:
            break
        time.sleep(0.5)
    stop.set()
    t.join(30)
    g = b.get("/groups/rbg")
    assert len(g["members"]) == 0 and g["lag"] == 0, g


@test
def librdkafka_2_0_turns_on_every_feature_and_kcat_balanced_consumer_works(b):
    out = subprocess.run(["kcat", "-b", b.kafka, "-L", "-d", "feature"], capture_output=True, text=True, timeout=60).stderr
    for feature in ["MsgVer2", "BrokerBalancedConsumer", "IdempotentProducer", "ZSTD", "LZ4", "OffsetTime"]:
        assert feature in out, f"librdkafka did not enable {feature}: {out[-2000:]}"
    kcat(b, "-P", "-t", "d9", stdin="".join(f"m{i}\n" for i in range(100)))
    out = kcat(b, "-G", "g-kcat", "d9", "-o", "beginning", "-e")
    assert sorted(out.split()) == sorted(f"m{i}" for i in range(100)), out[:200]
    assert b.get("/groups/g-kcat")["lag"] == 0


@test
def a_member_that_leaves_hands_its_partitions_over_at_once(b):
    from confluent_kafka import Consumer
    produce_keyed(b, "lv", 600, 6)
    # The remaining member learns of the rebalance at its next heartbeat (librdkafka's default
    # interval is 3 s, which a loaded CI machine overshoots); a LeaveGroup that were ignored would
    # only show after the 45 s session timeout, which is what the bound below tells apart.
    conf = {"bootstrap.servers": b.kafka, "group.id": "lvg", "auto.offset.reset": "earliest", "enable.auto.commit": False,
            "heartbeat.interval.ms": 500, "session.timeout.ms": 45000}
    c1, c2 = Consumer(conf), Consumer(conf)
    c1.subscribe(["lv"]); c2.subscribe(["lv"])
    deadline = time.time() + 30
    while time.time() < deadline and (len(c1.assignment()) + len(c2.assignment()) < 6 or not c1.assignment() or not c2.assignment()):
        c1.poll(0.2); c2.poll(0.2)
    assert sorted(p.partition for p in c1.assignment() + c2.assignment()) == list(range(6)), "disjoint and complete"
    c2.close()  # LeaveGroup
    start = time.time()
    while time.time() - start < 20 and len(c1.assignment()) < 6:
        c1.poll(0.2)
    took = time.time() - start
    assert len(c1.assignment()) == 6 and took < 15, f"reassigned in {took:.1f}s"
    c1.close()


@test
def idempotent_producer_survives_a_broker_kill_mid_stream(b):
    from confluent_kafka import Producer
    b.post("/topics", {"name": "c4", "partitions": 3})
    p = Producer({"bootstrap.servers": b.kafka, "enable.idempotence": True, "acks": "all", "linger.ms": 5,
                  "message.timeout.ms": 120000, "retry.backoff.ms": 100, "reconnect.backoff.max.ms": 500})
    n, errors = 20_000, []
    for i in range(n):
        p.produce("c4", key=f"k{i % 13}", value=str(i), on_delivery=lambda e, m: e and errors.append(e))
        p.poll(0)
        if i == n // 2:
            b.restart(hard=True)  # SIGKILL mid-stream, then restart on the same port and data
    assert p.flush(120) == 0 and not errors, errors[:3]
    got = []
    for part in range(3):
        off = 0
        while True:
            evs = b.get(f"/topics/c4/partitions/{part}/events?offset={off}&limit=10000")["events"]
            if not evs:
                break
            got.extend(e["value"] for e in evs)
            off = evs[-1]["offset"] + 1
    assert len(got) == n and sorted(got) == list(range(n)), f"{len(got)} stored for {n}: loss or duplicates"


@test
def positioning_by_offset_time_and_mid_batch(b):
    from confluent_kafka import Producer, Consumer, TopicPartition
    b.post("/topics", {"name": "pos", "partitions": 1})
    p = Producer({"bootstrap.servers": b.kafka, "linger.ms": 100, "batch.num.messages": 100})
    base = 1_700_000_000_000
    for i in range(1000):
        p.produce("pos", value=str(i), timestamp=base + i * 10)
    p.flush(30)
    # Batches hold about 100 records; every start offset returns that record first (KIP-74 style).
    for o in [0, 1, 50, 99, 999]:
        c = Consumer({"bootstrap.servers": b.kafka, "group.id": f"pos-{o}", "enable.auto.commit": False})
        c.assign([TopicPartition("pos", 0, o)])
        m = None
        deadline = time.time() + 10
        while m is None and time.time() < deadline:
            m = c.poll(0.5)
        c.close()
        assert m is not None and m.offset() == o and m.value() == str(o).encode(), (o, m and m.offset())
    assert kcat(b, "-C", "-t", "pos", "-o", "-10", "-e", "-f", "%o\n").split() == [str(i) for i in range(990, 1000)]
    out = kcat(b, "-C", "-t", "pos", "-o", f"s@{base + 5000}", "-e", "-c", "1", "-f", "%o\n")
    assert out.strip() == "500", out
    q = kcat(b, "-Q", "-t", f"pos:0:{base + 5005}")
    assert "offset 501" in q, q
    c = Consumer({"bootstrap.servers": b.kafka, "group.id": "pos-q"})
    low, high = c.get_watermark_offsets(TopicPartition("pos", 0), timeout=10)
    got = c.offsets_for_times([TopicPartition("pos", 0, base + 9999)], timeout=10)
    c.close()
    assert (low, high) == (0, 1000), (low, high)
    assert got[0].offset == -1, f"no record at or after that time: Kafka answers -1, got {got[0].offset}"


@test
def kafka_python_fetch_sessions_over_twenty_partitions(b):
    from kafka import KafkaProducer, KafkaConsumer
    b.post("/topics", {"name": "fs", "partitions": 20})
    p = KafkaProducer(bootstrap_servers=b.kafka)
    for i in range(200):
        p.send("fs", value=str(i).encode(), partition=3 if i % 2 else 17)
    p.flush(30)
    p.close()
    c = KafkaConsumer("fs", bootstrap_servers=b.kafka, group_id="fsg", auto_offset_reset="earliest", consumer_timeout_ms=8000)
    got = sorted(int(m.value) for m in c)
    c.close()
    assert got == list(range(200)), len(got)


@test
def one_group_shared_by_three_client_libraries(b):
    import asyncio
    from confluent_kafka import Consumer
    from kafka import KafkaConsumer
    from aiokafka import AIOKafkaConsumer
    produce_keyed(b, "mix", 3000, 6)
    seen, lock, stop = set(), threading.Lock(), threading.Event()

    def confluent():
        c = Consumer({"bootstrap.servers": b.kafka, "group.id": "mixg", "auto.offset.reset": "earliest",
                      "enable.auto.commit": False, "partition.assignment.strategy": "range"})
        c.subscribe(["mix"])
        while not stop.is_set():
            msgs = [m for m in c.consume(200, 0.3) if not m.error()]
            with lock:
                seen.update((m.partition(), m.offset()) for m in msgs)
            if msgs:
                c.commit(asynchronous=False)
        c.close()

    def kpython():
        c = KafkaConsumer("mix", bootstrap_servers=b.kafka, group_id="mixg", auto_offset_reset="earliest", enable_auto_commit=False)
        while not stop.is_set():
            batch = c.poll(timeout_ms=300)
            for tp, msgs in batch.items():
                with lock:
                    seen.update((m.partition, m.offset) for m in msgs)
            if batch:
                c.commit()
        c.close()

    def aio():
        async def run():
            from aiokafka.coordinator.assignors.range import RangePartitionAssignor
            c = AIOKafkaConsumer("mix", bootstrap_servers=b.kafka, group_id="mixg", auto_offset_reset="earliest", enable_auto_commit=False,
                                 partition_assignment_strategy=(RangePartitionAssignor,))
            await c.start()
            while not stop.is_set():
                batch = await c.getmany(timeout_ms=300)
                for msgs in batch.values():
                    with lock:
                        seen.update((m.partition, m.offset) for m in msgs)
                if batch:
                    await c.commit()
            await c.stop()
        asyncio.run(run())

    threads = [threading.Thread(target=f) for f in (confluent, kpython, aio)]
    for t in threads:
        t.start()
    deadline = time.time() + 90
    members = 0
    while time.time() < deadline:
        try:
            g = b.get("/groups/mixg")
        except urllib.error.HTTPError:
            time.sleep(0.5)  # the group does not exist until the first member joins
            continue
        members = max(members, len(g["members"]))
        with lock:
            done = len(seen) >= 3000
        if done and g["lag"] == 0 and members == 3:
            break
        time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(60)
    assert members == 3, f"only {members} members joined together"
    assert len(seen) == 3000, f"consumed {len(seen)} of 3000"


@test
def kafka_python_produces_and_consumes_in_a_group(b):
    from kafka import KafkaProducer, KafkaConsumer
    p = KafkaProducer(bootstrap_servers=b.kafka, enable_idempotence=False, acks="all")
    for i in range(500):
        p.send("kp", key=f"k{i % 7}".encode(), value=f"{i}".encode(), headers=[("h", b"1")])
    p.flush(30)
    c = KafkaConsumer("kp", bootstrap_servers=b.kafka, group_id="kpg", auto_offset_reset="earliest",
                      enable_auto_commit=False, consumer_timeout_ms=15000)
    got = [m for m in c]
    c.commit()
    c.close()
    assert sorted(int(m.value) for m in got) == list(range(500)), len(got)
    assert got[0].headers == [("h", b"1")]
    assert b.get("/groups/kpg")["lag"] == 0


@test
def aiokafka_idempotent_gzip_producer_and_group_consumer(b):
    import asyncio
    from aiokafka import AIOKafkaProducer, AIOKafkaConsumer

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=b.kafka, enable_idempotence=True, compression_type="gzip")
        await p.start()
        for i in range(300):
            await p.send("aio", key=f"k{i % 5}".encode(), value=str(i).encode(), headers=[("h", b"v")])
        await p.flush()
        await p.stop()
        c = AIOKafkaConsumer("aio", bootstrap_servers=b.kafka, group_id="aiog", auto_offset_reset="earliest", enable_auto_commit=False)
        await c.start()
        got = []
        try:
            deadline = time.time() + 30
            while len(got) < 300 and time.time() < deadline:
                for msgs in (await c.getmany(timeout_ms=1000)).values():
                    got.extend(m for m in msgs)
            await c.commit()
        finally:
            await c.stop()
        return got

    got = asyncio.run(run())
    assert sorted(int(m.value) for m in got) == list(range(300)), len(got)
    assert got[0].headers == (("h", b"v"),) or list(got[0].headers) == [("h", b"v")], got[0].headers
    assert b.get("/groups/aiog")["lag"] == 0


@test
def record_edge_cases_round_trip_exactly(b):
    from confluent_kafka import Producer, Consumer, TopicPartition, KafkaError
    b.post("/topics", {"name": "edge", "partitions": 1, "configs": {"max.message.bytes": "1100000"}})
    p = Producer({"bootstrap.servers": b.kafka, "acks": "all", "message.max.bytes": 5_000_000})
    big = b"b" * (1 << 20)
    cases = [
        dict(key=None, value=b"no key"),
        dict(key=b"tomb", value=None),
        dict(key=b"empty", value=b""),
        dict(key=b"dup", value=b"h", headers=[("x", b"1"), ("x", b"2"), ("n", None)]),
        dict(key=b"big", value=big),
    ]
    errors = []
    for c in cases:
        p.produce("edge", on_delivery=lambda e, m: e and errors.append(e), **c)
    p.produce("edge", value=b"z" * 1_200_000, on_delivery=lambda e, m: errors.append(e))
    p.flush(30)
    assert len(errors) == 1 and errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, errors
    c = Consumer({"bootstrap.servers": b.kafka, "group.id": "edge", "fetch.message.max.bytes": 5_000_000})
    c.assign([TopicPartition("edge", 0, 0)])
    got = []
    deadline = time.time() + 20
    while len(got) < len(cases) and time.time() < deadline:
        m = c.poll(1.0)
        if m is not None and not m.error():
            got.append(m)
    c.close()
    assert [(m.key(), m.value()) for m in got] == [(c["key"], c["value"]) for c in cases]
    assert got[3].headers() == [("x", b"1"), ("x", b"2"), ("n", None)], got[3].headers()
    evs = b.get("/topics/edge/partitions/0/events?limit=10")["events"]
    assert evs[1]["value"] is None and evs[2]["value"] == "" and [h["key"] for h in evs[3]["headers"]] == ["x", "x", "n"], evs[:4]


@test
def committed_offsets_survive_clean_and_kill_9_restarts(b):
    from confluent_kafka import Consumer, TopicPartition
    produce_keyed(b, "dur", 1000, 2)
    c = Consumer({"bootstrap.servers": b.kafka, "group.id": "dg", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition("dur", 0, 123, metadata="m-123"), TopicPartition("dur", 1, 45)], asynchronous=False)
    c.close()
    for hard in (False, True):
        b.restart(hard=hard)
        c = Consumer({"bootstrap.servers": b.kafka, "group.id": "dg"})
        got = c.committed([TopicPartition("dur", 0), TopicPartition("dur", 1)], timeout=10)
        c.close()
        assert [tp.offset for tp in got] == [123, 45], (hard, got)
        assert got[0].metadata == "m-123", (hard, got[0].metadata)
        total = sum(p["high_watermark"] for p in b.get("/topics/dur")["partitions"])
        assert total == 1000, (hard, total)


@test
def http_and_kafka_see_the_same_events(b):
    b.post("/topics", {"name": "x", "partitions": 1})
    b.post("/topics/x/events", {"key": "hk", "value": {"a": 1}, "headers": {"trace": "t1"}, "timestamp": 1700000000123})
    out = kcat(b, "-C", "-t", "x", "-e", "-o", "beginning", "-f", "%k|%s|%h|%T\n")
    assert out.strip() == 'hk|{"a": 1}|trace=t1|1700000000123', out  # the JSON text as sent
    kcat(b, "-P", "-t", "x", "-K", ":", stdin="kk:from-kafka\n")
    evs = b.get("/topics/x/partitions/0/events?offset=1")["events"]
    assert evs[0]["key"] == "kk" and evs[0]["value"] == "from-kafka", evs
    # One namespace for groups: an offset committed over Kafka is visible over HTTP.
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": b.kafka, "group.id": "shared"})
    c.commit(offsets=[TopicPartition("x", 0, 2)], asynchronous=False)
    c.close()
    assert b.get("/groups/shared")["offsets"][0]["committed_offset"] == 2


@test
def http_json_and_cloudevents_reach_kafka_as_sent(b):
    """Issue 15 items 1-2: JSON keys and values, structured CloudEvents and text/plain bodies
    published over HTTP are the bytes a Kafka consumer reads."""
    b.post("/topics", {"name": "sent", "partitions": 1})
    body = '[{"key": {"id": 7}, "value": {"b": 1,  "a": 2}}, {"key": "k", "value": 1e3}, {"value": 12345678901234567890123}]'
    b.post_raw("/topics/sent/events", body.encode(), "application/json")
    ce = '{"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": {"z": 1.50}}'
    b.post_raw("/topics/sent/events", ce.encode(), "application/cloudevents+json")
    b.post_raw("/topics/sent/events?key=pk", b"plain  text", "text/plain")
    out = kcat(b, "-C", "-t", "sent", "-e", "-o", "beginning", "-f", "%k|%s\n")
    assert out.splitlines() == ['{"id": 7}|{"b": 1,  "a": 2}', "k|1e3", "|12345678901234567890123", "|" + ce,
                               "pk|plain  text"], out


class FaultProxy:
    """A TCP proxy for the Kafka protocol that, after forwarding a Produce request, drops the
    connection instead of forwarding its response, every `every`-th time: the batch is stored but
    the client never hears so, and retries it."""

    def __init__(self, upstream, every, port=0):
        self.upstream, self.every, self.count, self.dropped = upstream, every, 0, 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            u = socket.create_connection(self.upstream)
            pending = []
            lock = threading.Lock()
            threading.Thread(target=self.pump, args=(c, u, pending, lock, True), daemon=True).start()
            threading.Thread(target=self.pump, args=(u, c, pending, lock, False), daemon=True).start()

    @staticmethod
    def read_frame(s):
        head = b""
        while len(head) < 4:
            chunk = s.recv(4 - len(head))
            if not chunk:
                return None
            head += chunk
        n = int.from_bytes(head, "big")
        body = b""
        while len(body) < n:
            chunk = s.recv(n - len(body))
            if not chunk:
                return None
            body += chunk
        return head + body

    def pump(self, src, dst, pending, lock, requests):
        try:
            while True:
                f = self.read_frame(src)
                if f is None:
                    break
                if requests:
                    key = int.from_bytes(f[4:6], "big")
                    with lock:
                        pending.append(key)
                else:
                    with lock:
                        key = pending.pop(0) if pending else -1
                    if key == 0:
                        self.count += 1
                        if self.count % self.every == 0:
                            self.dropped += 1
                            break
                dst.sendall(f)
        except OSError:
            pass
        for s_ in (src, dst):
            try:
                s_.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s_.close()


class HookServer:
    """An HTTP target recording every POST (path, headers, body); answers 200."""

    def __init__(self):
        import http.server
        self.requests = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n, timeout=30):
        end = time.time() + timeout
        while len(self.requests) < n and time.time() < end:
            time.sleep(0.02)
        assert len(self.requests) >= n, self.requests
        return self.requests


@test
def cloudevents_cross_between_kafka_and_http_through_subscriptions(b):
    """A binary-mode CloudEvent produced by a Kafka client and a structured one published over HTTP
    both reach an HTTP target as CloudEvents (trace id kept) and a topic target that a Kafka
    consumer reads with the CloudEvents Kafka binding intact."""
    from confluent_kafka import Consumer, Producer
    for t in ("ce-in", "ce-out"):
        b.post("/topics", {"name": t, "partitions": 1})
    hook = HookServer()
    b.post("/subscriptions", {"name": "to-http", "sources": ["ce-in"], "target": {"url": hook.url + "/h"}})
    b.post("/subscriptions", {"name": "to-topic", "sources": ["ce-in"], "target": {"topic": "ce-out"},
                              "pattern": {"type": [{"suffix": ".made"}]}})
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    p = Producer({"bootstrap.servers": b.kafka})
    p.produce("ce-in", key=b"acct-9", value=b'{"amount": 3}', headers=[
        ("ce_specversion", b"1.0"), ("ce_id", b"k-1"), ("ce_source", b"/kafka"),
        ("ce_type", b"payment.made"), ("content-type", b"application/json"), ("traceparent", trace.encode())])
    assert p.flush(10) == 0
    req = urllib.request.Request(f"http://{b.http}/topics/ce-in/events", method="POST", data=json.dumps({
        "specversion": "1.0", "id": "h-1", "source": "/web", "type": "refund.made",
        "partitionkey": "acct-9", "data": {"amount": -1}}).encode(),
        headers={"content-type": "application/cloudevents+json"})
    urllib.request.urlopen(req, timeout=10).read()
    got = {h["ce-id"]: (h, body) for _, h, body in hook.wait(2)}
    h, body = got["k-1"]
    assert h["ce-type"] == "payment.made" and h["ce-source"] == "/kafka", h
    assert h["content-type"] == "application/json" and json.loads(body) == {"amount": 3}, (h, body)
    assert h["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-"), h
    h, body = got["h-1"]
    assert h["ce-type"] == "refund.made" and h["ce-partitionkey"] == "acct-9", h
    assert json.loads(body) == {"amount": -1}, body
    c = Consumer({"bootstrap.servers": b.kafka, "group.id": "ce-reader", "auto.offset.reset": "earliest"})
    c.subscribe(["ce-out", "ce-in"])
    seen = {}
    end = time.time() + 30
    while len(seen) < 4 and time.time() < end:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        seen[(m.topic(), m.offset())] = (m.key(), dict(m.headers() or []), m.value())
    c.close()
    assert len(seen) == 4, seen
    key, hdrs, value = seen[("ce-out", 0)]
    assert key == b"acct-9" and hdrs["ce_id"] == b"k-1" and hdrs["traceparent"] == trace.encode(), hdrs
    key, hdrs, value = seen[("ce-out", 1)]
    assert key == b"acct-9", key
    assert hdrs["content-type"].startswith(b"application/cloudevents+json"), hdrs
    assert json.loads(value)["id"] == "h-1", value
    # The event published over HTTP reads as a structured CloudEvent from Kafka, keyed by partitionkey.
    key, hdrs, value = seen[("ce-in", 1)]
    assert key == b"acct-9" and json.loads(value)["type"] == "refund.made", (key, value)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@test
def idempotent_producer_retries_through_a_fault_proxy_without_duplicates_or_gaps(b):
    b.stop()  # this test needs its own busbar, advertising the proxy's port
    proxy_port, kafka_port = free_port(), free_port()
    b2 = Busbar(extra_env={"BUSBAR_KAFKA_ADVERTISED_PORT": str(proxy_port)}, kafka_port=kafka_port)
    proxy = FaultProxy(("127.0.0.1", kafka_port), every=7, port=proxy_port)
    try:
        from confluent_kafka import Producer, Consumer
        b2.post("/topics", {"name": "idem", "partitions": 3})
        p = Producer({"bootstrap.servers": f"127.0.0.1:{proxy_port}", "enable.idempotence": True, "acks": "all",
                      "linger.ms": 2, "batch.num.messages": 200, "message.timeout.ms": 120000, "retry.backoff.ms": 50})
        n = 20_000
        errors = []
        for i in range(n):
            p.produce("idem", key=f"k{i % 11}", value=str(i), on_delivery=lambda e, m: e and errors.append(e))
            if i % 1000 == 0:
                p.poll(0)
        assert p.flush(120) == 0 and not errors, errors[:3]
        assert proxy.dropped > 0, "the proxy forced retries"
        c = Consumer({"bootstrap.servers": f"127.0.0.1:{kafka_port}", "group.id": "idem-check", "auto.offset.reset": "earliest"})
        c.subscribe(["idem"])
        got, deadline = [], time.time() + 60
        while time.time() < deadline:
            ms = c.consume(1000, 1.0)
            if not ms and len(got) >= n:
                break
            got.extend(int(m.value()) for m in ms if not m.error())
        c.close()
        assert len(got) == n, f"{len(got)} events for {n} produced ({proxy.dropped} responses dropped)"
        assert sorted(got) == list(range(n)), "no gaps"
        print(f"        {proxy.dropped} produce responses dropped; every retry was deduplicated", flush=True)
    finally:
        proxy.sock.close()
        b2.stop()


@test
def kafka_python_idempotent_by_default(b):
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=b.kafka)  # kafka-python 3 enables idempotence by default
    for i in range(200):
        p.send("kpi", value=str(i).encode())
    p.flush(30)
    p.close()
    evs = b.get("/topics/kpi/partitions/0/events?limit=1000")["events"]
    assert sorted(int(json.dumps(e["value"])) for e in evs) == list(range(200)), len(evs)


import sasl  # tests/clients/sasl.py: SASL_PLAINTEXT with real clients (issue 16)
sasl.register(test, Busbar, BIN)
import quotas  # tests/clients/quotas.py: client quotas with real clients (issue 16)
quotas.register(test, Busbar)
import acl  # tests/clients/acl.py: ACLs on the Kafka protocol with real clients (issue 16)
acl.register(test, Busbar)
import audit  # tests/clients/audit.py: the audit log on the Kafka protocol (issue 16)
audit.register(test, Busbar)
import tls  # tests/clients/tls.py: SSL/SASL_SSL listeners and HTTPS with real clients (issue 16)
tls.register(test, Busbar, BIN)
import security_guide  # tests/clients/security_guide.py: every example of docs/security.md (issue 16)
security_guide.register(test, BIN)
import schema_registry  # tests/clients/schema_registry.py: Confluent's Avro serializers (issue 17)
schema_registry.register(test, Busbar, free_port)
import schema_registry_protobuf  # tests/clients/schema_registry_protobuf.py: Confluent's Protobuf serializers (issue 17)
schema_registry_protobuf.register(test, Busbar, free_port)
import schema_enforcement  # tests/clients/schema_enforcement.py: id/strict checks on every way in (issue 17)
schema_enforcement.register(test, Busbar, free_port)
import schema_bus  # tests/clients/schema_bus.py: the bus matches decoded Avro and JSON Schema events (issue 17)
schema_bus.register(test, Busbar, free_port, HookServer)
import transactions  # tests/clients/transactions.py: transactional producers, read_committed, fencing (issue 18)
transactions.register(test, Busbar)
import metrics  # tests/clients/metrics.py: the SLI metrics counted from real clients (issue 19)
metrics.register(test, Busbar, HookServer)
import cluster  # tests/clients/cluster.py: three brokers on PostgreSQL with real clients (issue 20)
cluster.register(test, Busbar)


def main():
    passed = failed = 0
    for fn in TESTS:
        if ONLY and ONLY not in fn.__name__:
            continue
        # A test marked own_server starts the busbar it needs (sasl.py: auth and SASL listeners).
        b = None if getattr(fn, "own_server", False) else Busbar()
        start = time.time()
        try:
            fn(b)
            passed += 1
            print(f"ok      {fn.__name__} ({time.time() - start:.1f}s)", flush=True)
        except Exception:
            failed += 1
            print(f"FAILED  {fn.__name__}\n{traceback.format_exc()}", flush=True)
        finally:
            if b:
                b.stop()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
