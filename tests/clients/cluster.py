"""Cluster mode (issue 20, first increment) with real Kafka clients: three busbar brokers on one
real PostgreSQL (Debian's initdb/pg_ctl under a temporary directory, as `nobody` when root).
confluent-kafka idempotent producers (acks=all) write through every broker at once, kafka-python
and aiokafka read everything back from one broker: each record once, each producer's records in
order, the same offsets on every broker; a consumer group whose members bootstrap on different
brokers is one group (one coordinator, by lease), its committed offsets survive the kill -9 of
its coordinator, and a kafka-python member on another broker resumes exactly there; the same with
the brokers' clocks an hour apart (libfaketime). Events published over HTTP on one broker are
read by kafka-python on another; a subscription made on one broker delivers what confluent-kafka
produces on a third to a real HTTP target, run by exactly one broker.
Registered into run.py's tests.
"""
import glob, os, shutil, socket, struct, subprocess, tempfile, time

# Debian's faketime package (scripts/clients.sh installs it).
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


class Postgres:
    """A throwaway PostgreSQL server on a free port of 127.0.0.1."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="busbar-pg-")
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        self.bin = bins[-1] if bins else ""
        self.root = os.geteuid() == 0
        if self.root:
            subprocess.run(["chown", "-R", "nobody", self.dir], check=True)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        data = os.path.join(self.dir, "data")
        self._run("initdb", "-A", "trust", "-U", "busbar", "--no-sync", "-E", "UTF8", "-D", data)
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir}"
        self._run("pg_ctl", "-w", "-t", "60", "-D", data, "-o", opts,
                  "-l", os.path.join(self.dir, "log"), "start")
        self.data = data
        subprocess.run(["psql", "-q", "-d", self.url("postgres"), "-c", "CREATE DATABASE busbar"],
                       check=True, capture_output=True)

    def _run(self, prog, *args):
        cmd = [os.path.join(self.bin, prog), *args]
        if self.root:
            cmd = ["runuser", "-u", "nobody", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, cwd=self.dir)

    def url(self, db="busbar"):
        return f"postgres://busbar@127.0.0.1:{self.port}/{db}"

    def stop(self):
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def kafka_call(addr, msg):
    """Sends one raw Kafka request (header and body, without the size) and answers the
    response (without the size)."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(struct.pack(">i", len(msg)) + msg)

        def exactly(n):
            out = b""
            while len(out) < n:
                chunk = s.recv(n - len(out))
                assert chunk, "the broker closed the connection"
                out += chunk
            return out
        return exactly(struct.unpack(">i", exactly(4))[0])


def metadata_brokers(addr):
    """The node ids a broker's Kafka Metadata (v0, raw) lists."""
    resp = kafka_call(addr, struct.pack(">hhih", 3, 0, 7, 1) + b"t" + struct.pack(">i", 0))
    (count,), at, ids = struct.unpack_from(">i", resp, 4), 8, set()
    for _ in range(count):
        node, hlen = struct.unpack_from(">ih", resp, at)
        ids.add(node)
        at += 6 + hlen + 4
    return ids


def kill_holder(pg, brokers, kind, name):
    """kill -9 of the broker holding lease `name` of `kind` (by the database); answers the
    survivors once their Metadata leaves the dead broker out (its heartbeat expires; Kafka's
    brokers too stay listed for a session): kafka-python 3 raises the refused connection of a
    metadata refresh it sends there out of the consumer's iterator."""
    holder = int(subprocess.run(
        ["psql", "-qAt", "-d", pg.url(), "-c",
         f"SELECT holder FROM leases WHERE kind = '{kind}' AND name = '{name}'"],
        capture_output=True, text=True, check=True).stdout.strip())
    brokers[holder - 1].proc.kill()
    brokers[holder - 1].proc.wait(10)
    survivors = [b for i, b in enumerate(brokers) if i != holder - 1]
    deadline = time.time() + 30
    while holder in metadata_brokers(survivors[0].kafka):
        assert time.time() < deadline, "the dead broker stays in Metadata"
        time.sleep(0.2)
    return survivors


def forged_transactional_produce(addr, topic, partition, pid=123456, txn=None):
    """Produce v3 of one transactional batch of producer `pid` (by default never issued, in no
    transaction) in the name of transactional id `txn`, raw: the partition's error code."""
    from kafka.record.default_records import DefaultRecordBatchBuilder
    b = DefaultRecordBatchBuilder(2, 0, True, pid, 0, 0, 1 << 20)
    b.append(0, int(time.time() * 1000), b"k", b"forged", [])
    records = bytes(b.build())
    name = topic.encode()
    tid = struct.pack(">h", -1) if txn is None else struct.pack(">h", len(txn)) + txn.encode()
    body = (tid + struct.pack(">hi", -1, 10000) + struct.pack(">i", 1)
            + struct.pack(">h", len(name)) + name + struct.pack(">i", 1)
            + struct.pack(">ii", partition, len(records)) + records)
    msg = struct.pack(">hhih", 0, 3, 9, 1) + b"t" + body
    resp = kafka_call(addr, msg)
    # correlation id, topics count, name, partitions count, partition, error code
    at = 4 + 4
    (nlen,) = struct.unpack_from(">h", resp, at)
    at += 2 + nlen + 4
    _, code = struct.unpack_from(">ih", resp, at)
    return code


def create_everywhere(brokers, topics, bootstrap=None):
    """Creates `topics` (name: partitions) through confluent-kafka's admin client and waits
    until every broker knows them."""
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap or ",".join(b.kafka for b in brokers)})
    for f in admin.create_topics([NewTopic(t, n, 1) for t, n in topics.items()]).values():
        f.result(15)

    def has(b, t):
        try:
            return b.get(f"/topics/{t}")["name"] == t
        except Exception:
            return False
    deadline = time.time() + 20
    while not all(has(b, t) for b in brokers for t in topics):
        assert time.time() < deadline, "the topics did not reach every broker"
        time.sleep(0.1)


def register(test, Busbar):
    def own(fn):
        fn.own_server = True
        return test(fn)

    def cluster(pg, n=3, skews=None, extra=None):
        """`skews`: a libfaketime offset per broker ("+1h", "-1h"; None: the real clock);
        `extra`: more environment for every broker."""
        out = []
        for i in range(n):
            env = {"BUSBAR_CLUSTER_POSTGRES_URL": pg.url(), "BUSBAR_CLUSTER_NODE_ID": str(i + 1)}
            env.update(extra or {})
            skew = (skews or [None] * n)[i]
            if skew:
                env.update(LD_PRELOAD=FAKETIME_LIB, FAKETIME=skew)
            out.append(Busbar(extra_env=env))
        return out

    @own
    def cluster_idempotent_producers_on_every_broker_one_log_read_back_by_every_client(_):
        from confluent_kafka import Producer
        pg = Postgres()
        brokers = []
        try:
            brokers = cluster(pg)
            create_everywhere(brokers, {"cl": 3}, brokers[0].kafka)
            producers = [Producer({"bootstrap.servers": b.kafka, "enable.idempotence": True,
                                   "acks": "all", "linger.ms": 2}) for b in brokers]
            acked = []
            def done(err, msg):
                assert err is None, err
                acked.append((msg.partition(), msg.offset(), msg.value().decode()))
            for n in range(300):
                for i, p in enumerate(producers):
                    p.produce("cl", key=f"k{n % 7}", value=f"b{i}-{n}", on_delivery=done)
                    p.poll(0)
            for p in producers:
                assert p.flush(30) == 0
            assert len(acked) == 900, len(acked)
            want = {(p, o): v for p, o, v in acked}
            assert len(want) == 900, "two records acked at the same offset"

            # kafka-python on broker 3 reads every partition from the start.
            from kafka import KafkaConsumer, TopicPartition
            c = KafkaConsumer(bootstrap_servers=brokers[2].kafka, auto_offset_reset="earliest",
                              enable_auto_commit=False, consumer_timeout_ms=3000)
            c.assign([TopicPartition("cl", p) for p in range(3)])
            got = {(m.partition, m.offset): m.value.decode() for m in c}
            c.close()
            assert got == want, f"{len(got)} read, {len(want)} acked"
            # Each producer's records of one key keep their order.
            for i in range(3):
                for k in range(7):
                    seq = [int(v.split("-")[1]) for (_, _), v in sorted(got.items())
                           if v.startswith(f"b{i}-") and int(v.split("-")[1]) % 7 == k]
                    assert seq == sorted(seq) and len(seq) > 0, (i, k, seq)

            # aiokafka on broker 2 sees the same log.
            import asyncio
            from aiokafka import AIOKafkaConsumer
            from aiokafka.structs import TopicPartition as ATP
            async def read():
                c = AIOKafkaConsumer(bootstrap_servers=brokers[1].kafka, enable_auto_commit=False,
                                     auto_offset_reset="earliest")
                await c.start()
                try:
                    c.assign([ATP("cl", p) for p in range(3)])
                    out = {}
                    deadline = time.time() + 20
                    while len(out) < 900 and time.time() < deadline:
                        batch = await c.getmany(timeout_ms=500)
                        for msgs in batch.values():
                            for m in msgs:
                                out[(m.partition, m.offset)] = m.value.decode()
                    return out
                finally:
                    await c.stop()
            assert asyncio.run(read()) == want
        finally:
            for b in brokers:
                b.stop()
            pg.stop()

    @own
    def cluster_one_consumer_group_across_brokers_survives_kill_9_of_its_coordinator(_):
        group_across_brokers_survives_its_coordinator(None)

    @own
    def cluster_group_leases_hold_with_broker_clocks_an_hour_apart(_):
        # Brokers 1 and 3 an hour ahead and behind (libfaketime, wall and monotonic clocks):
        # leases use only the database's clock and each broker's own elapsed time.
        group_across_brokers_survives_its_coordinator(["+1h", None, "-1h"])

    def group_across_brokers_survives_its_coordinator(skews):
        from confluent_kafka import Consumer, Producer
        pg = Postgres()
        brokers = []
        try:
            brokers = cluster(pg, skews=skews)
            everyone = ",".join(b.kafka for b in brokers)
            create_everywhere(brokers, {"cg": 6})
            p = Producer({"bootstrap.servers": everyone, "enable.idempotence": True})
            for n in range(600):
                p.produce("cg", key=str(n % 50), value=str(n))
            assert p.flush(30) == 0
            # Three members, each bootstrapped on a different broker: one group.
            consumers = [Consumer({"bootstrap.servers": b.kafka, "group.id": "g",
                                   "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                   "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
                         for b in brokers]
            for c in consumers:
                c.subscribe(["cg"])
            first = []
            # Until 300 are read and all three members share the partitions: a member whose
            # broker answered Metadata before it heard of the others (librdkafka then drops
            # the brokers left out, with the member's metadata request) never joined.
            def assignments():
                return [sorted(tp.partition for tp in c.assignment()) for c in consumers]
            deadline = time.time() + 60
            while (len(first) < 300 or sorted(map(len, assignments())) != [2, 2, 2]) \
                    and time.time() < deadline:
                for c in consumers:
                    m = c.poll(0.1)
                    if m is None or m.error():
                        continue
                    first.append((m.partition(), m.offset(), m.value().decode()))
                    c.commit(message=m, asynchronous=False)
            assert len(first) >= 300, len(first)
            assert sorted(sum(assignments(), [])) == list(range(6)), assignments()
            assert sorted(map(len, assignments())) == [2, 2, 2], assignments()
            for c in consumers:
                c.close()
            # Every broker's HTTP view is the cluster's: the group is listed everywhere, and
            # described with the same commits and coordinator (its lease holder); only the
            # coordinator knows its state, the others say Unknown.
            holder = int(subprocess.run(
                ["psql", "-qAt", "-d", pg.url(), "-c",
                 "SELECT holder FROM leases WHERE kind = 'group' AND name = 'g'"],
                capture_output=True, text=True, check=True).stdout.strip())
            views = []
            for i, b in enumerate(brokers):
                assert "g" in [g["group"] for g in b.get("/groups")["groups"]], i
                d = b.get("/groups/g")
                assert d["coordinator"] == holder, (i, d)
                assert (d["state"] == "Unknown") == (i + 1 != holder), (i, d)
                views.append(sorted((o["topic"], o["partition"], o["committed_offset"])
                                    for o in d["offsets"]))
            committed = {}
            for part, off, _ in first:
                committed[part] = max(committed.get(part, 0), off + 1)
            want = sorted(("cg", part, off) for part, off in committed.items())
            assert all(v == want for v in views), (want, views)
            # The group's coordinator holds its lease in the database: kill -9 that broker.
            survivors = kill_holder(pg, brokers, "group", "g")
            # kafka-python joins the same group on a surviving broker and resumes at the commits.
            from kafka import KafkaConsumer
            k = KafkaConsumer("cg", bootstrap_servers=survivors[0].kafka, group_id="g",
                              auto_offset_reset="earliest", enable_auto_commit=False,
                              consumer_timeout_ms=20000, request_timeout_ms=30000)
            rest = []
            deadline = time.time() + 60
            for m in k:
                rest.append((m.partition, m.offset, m.value.decode()))
                if len(first) + len(rest) >= 600 or time.time() > deadline:
                    break
            k.commit()
            k.close()
            seen = first + rest
            assert sorted(int(v) for _, _, v in seen) == list(range(600)), \
                f"{len(first)} + {len(rest)} read; duplicates or gaps after the coordinator's kill"
        finally:
            for b in brokers:
                b.stop()
            pg.stop()

    @own
    def cluster_http_publish_kafka_consume_and_a_subscription_across_brokers(_):
        """HTTP publish on broker 1, kafka-python reads on broker 3; a subscription made over HTTP
        on broker 2 delivers what a confluent-kafka producer writes on broker 3 to a real HTTP
        target, whichever broker runs it."""
        import http.server, json, threading, urllib.request
        from confluent_kafka import Producer
        from kafka import KafkaConsumer, TopicPartition
        pg = Postgres()
        brokers, got = [], []

        class Hook(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                got.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=hook.serve_forever, daemon=True).start()
        try:
            brokers = cluster(pg)
            brokers[0].post("/topics", {"name": "web", "partitions": 2})
            sent = [{"key": f"u{n % 5}", "value": {"n": n}} for n in range(100)]
            brokers[0].post("/topics/web/events", sent)
            c = KafkaConsumer(bootstrap_servers=brokers[2].kafka, auto_offset_reset="earliest",
                              enable_auto_commit=False, consumer_timeout_ms=5000)
            c.assign([TopicPartition("web", p) for p in range(2)])
            read = sorted((json.loads(m.value)["n"], m.key.decode()) for m in c)
            c.close()
            assert read == [(n, f"u{n % 5}") for n in range(100)], read[:5]

            target = f"http://127.0.0.1:{hook.server_address[1]}/in"
            brokers[1].post("/subscriptions", {"name": "fwd", "sources": ["web"],
                                               "target": {"url": target},
                                               "pattern": {"data": {"kind": ["order"]}}})
            deadline = time.time() + 20
            while not any(b.get("/subscriptions/fwd")["state"] == "running" for b in brokers):
                assert time.time() < deadline, "no broker runs the subscription"
                time.sleep(0.1)
            p = Producer({"bootstrap.servers": brokers[2].kafka, "enable.idempotence": True})
            for n in range(60):
                kind = "order" if n % 2 == 0 else "noise"
                p.produce("web", key=f"u{n % 5}", value=json.dumps({"kind": kind, "n": n}))
            assert p.flush(30) == 0
            deadline = time.time() + 30
            while len(got) < 30 and time.time() < deadline:
                time.sleep(0.05)
            assert sorted(e["n"] for e in got) == list(range(0, 60, 2)), got
            states = sorted(b.get("/subscriptions/fwd")["state"] for b in brokers)
            assert states == ["elsewhere", "elsewhere", "running"], states
        finally:
            hook.shutdown()
            for b in brokers:
                b.stop()
            pg.stop()

    @own
    def cluster_metadata_gives_each_broker_on_the_listener_the_client_came_through(_):
        """Two PLAINTEXT listeners per broker: a client bootstrapped on a broker's second
        listener is told every broker's second listener (Metadata, FindCoordinator), as Kafka
        answers the listener of the same name; it produces and consumes through them."""
        from confluent_kafka import Consumer, Producer
        from confluent_kafka.admin import AdminClient
        pg = Postgres()
        brokers = []
        try:
            two = "PLAINTEXT://127.0.0.1:0,PLAINTEXT://127.0.0.1:0"
            brokers = cluster(pg, n=2, extra={"BUSBAR_KAFKA_LISTENERS": two})
            assert all(len(b.listeners) == 2 for b in brokers), [b.listeners for b in brokers]
            for place in (0, 1):
                want = {i + 1: b.listeners[place] for i, b in enumerate(brokers)}
                admin = AdminClient({"bootstrap.servers": brokers[0].listeners[place]})
                deadline = time.time() + 20
                while True:
                    md = admin.list_topics(timeout=10)
                    got = {n: f"{b.host}:{b.port}" for n, b in md.brokers.items()}
                    if got == want or time.time() > deadline:
                        break
                    time.sleep(0.2)
                assert got == want, (place, got, want)
            create_everywhere(brokers, {"two": 2}, brokers[1].listeners[1])
            p = Producer({"bootstrap.servers": brokers[0].listeners[1], "acks": "all"})
            for n in range(20):
                p.produce("two", key=f"k{n}", value=f"v{n}")
            assert p.flush(30) == 0
            # A group: its coordinator is found on the second listeners too.
            c = Consumer({"bootstrap.servers": brokers[1].listeners[1], "group.id": "g2",
                          "auto.offset.reset": "earliest", "enable.auto.commit": False})
            c.subscribe(["two"])
            seen, deadline = set(), time.time() + 30
            while len(seen) < 20 and time.time() < deadline:
                m = c.poll(0.5)
                if m is not None and not m.error():
                    seen.add(m.value().decode())
            c.commit(asynchronous=False)
            c.close()
            assert seen == {f"v{n}" for n in range(20)}, sorted(seen)
        finally:
            for b in brokers:
                b.stop()
            pg.stop()

    @own
    def cluster_delete_records_through_either_admin_client_moves_every_brokers_start(_):
        """DeleteRecords through confluent-kafka's and kafka-python's admin clients on different
        brokers moves the partition's start for the whole cluster: every broker (and one started
        afterwards on an empty data directory) answers the new earliest offset and serves the
        records from it on; an offset past the end is OFFSET_OUT_OF_RANGE and a compact topic
        POLICY_VIOLATION, changing nothing; producing goes on after the end."""
        from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
        from confluent_kafka.admin import AdminClient, NewTopic
        from kafka import TopicPartition as KTP
        from kafka.admin import KafkaAdminClient
        pg = Postgres()
        brokers = []
        try:
            brokers = cluster(pg)
            everyone = ",".join(b.kafka for b in brokers)
            create_everywhere(brokers, {"dr": 2})
            p = Producer({"bootstrap.servers": everyone, "enable.idempotence": True,
                          "linger.ms": 5})
            acked = {}
            def done(err, msg):
                assert err is None, err
                acked[(msg.partition(), msg.offset())] = msg.value().decode()
            for n in range(200):
                p.produce("dr", value=f"v{n}", partition=0, on_delivery=done)
            for n in range(50):
                p.produce("dr", value=f"w{n}", partition=1, on_delivery=done)
            assert p.flush(30) == 0 and len(acked) == 250, len(acked)
            # Every broker reads partition 0 first (HTTP reads serve the broker's own copy):
            # their copies are current when its start moves.
            for b in brokers:
                assert [o for o, _ in http_events(b, "dr", 0)] == list(range(200)), b.http

            admin = AdminClient({"bootstrap.servers": brokers[1].kafka})
            [f] = admin.delete_records([TopicPartition("dr", 0, 120)]).values()
            assert f.result(15).low_watermark == 120
            kadmin = KafkaAdminClient(bootstrap_servers=brokers[2].kafka)
            try:
                got = kadmin.delete_records({KTP("dr", 1): -1})  # -1: the high watermark
                assert got[KTP("dr", 1)]["low_watermark"] == 50, got
            finally:
                kadmin.close()
            # Past the end: OFFSET_OUT_OF_RANGE, nothing changes.
            [f] = admin.delete_records([TopicPartition("dr", 0, 10_000)]).values()
            try:
                f.result(15)
                raise AssertionError("an offset past the end was accepted")
            except KafkaException as e:
                assert e.args[0].name() == "OFFSET_OUT_OF_RANGE", e
            # A lower offset than the start leaves it where it is.
            [f] = admin.delete_records([TopicPartition("dr", 0, 30)]).values()
            assert f.result(15).low_watermark == 120
            # A compact topic refuses it (its records go by key).
            futures = admin.create_topics([NewTopic("drc", 1, 1,
                                                    config={"cleanup.policy": "compact"})])
            futures["drc"].result(15)
            deadline = time.time() + 20
            while any(http_status(b, "/topics/drc") != 200 for b in brokers):
                assert time.time() < deadline, "drc did not reach every broker"
                time.sleep(0.1)
            [f] = admin.delete_records([TopicPartition("drc", 0, 0)]).values()
            try:
                f.result(15)
                raise AssertionError("a compact topic accepted DeleteRecords")
            except KafkaException as e:
                assert e.args[0].name() == "POLICY_VIOLATION", e

            # A fourth broker on an empty data directory.
            brokers.append(Busbar(extra_env={"BUSBAR_CLUSTER_POSTGRES_URL": pg.url(),
                                             "BUSBAR_CLUSTER_NODE_ID": "4"}))
            want0 = [(o, acked[(0, o)]) for o in range(120, 200)]
            for b in brokers:
                deadline = time.time() + 15
                while True:
                    starts = [q["log_start_offset"] for q in b.get("/topics/dr")["partitions"]]
                    if starts == [120, 50]:
                        break
                    assert time.time() < deadline, (b.http, starts)
                    time.sleep(0.2)
                assert http_events(b, "dr", 0) == want0, b.http
                # The copy itself dropped them: a read below the start is out of range.
                while http_status(b, "/topics/dr/partitions/0/events?offset=119") != 416:
                    assert time.time() < deadline, b.http
                    time.sleep(0.2)
            # Kafka clients (which fetch from the partition's leader) see the same.
            c = Consumer({"bootstrap.servers": brokers[3].kafka, "group.id": "unused"})
            marks = [c.get_watermark_offsets(TopicPartition("dr", q), timeout=10) for q in (0, 1)]
            c.close()
            assert marks == [(120, 200), (50, 50)], marks
            assert read_all(brokers[3], "dr", 0, 0, 80) == want0
            # Producing goes on after the end, everywhere.
            p.produce("dr", value="after", partition=0, on_delivery=done)
            assert p.flush(30) == 0 and acked[(0, 200)] == "after"
            for b in brokers:
                deadline = time.time() + 15
                while http_events(b, "dr", 0)[-1:] != [(200, "after")]:
                    assert time.time() < deadline, b.http
                    time.sleep(0.2)
        finally:
            for b in brokers:
                b.stop()
            pg.stop()

    def http_events(b, topic, partition):
        """A partition's records as broker `b` serves them over HTTP from its own copy, from
        the start, as (offset, value)."""
        got = b.get(f"/topics/{topic}/partitions/{partition}/events?limit=1000")
        return [(e["offset"], e["value"]) for e in got["events"]]

    def http_status(b, path):
        import urllib.error, urllib.request
        try:
            with urllib.request.urlopen(f"http://{b.http}{path}", timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def read_all(b, topic, partition, start, n):
        """The first `n` records of a partition read from offset `start` (or the earliest one
        after it) on broker `b`, as (offset, value)."""
        from confluent_kafka import Consumer, TopicPartition
        c = Consumer({"bootstrap.servers": b.kafka, "group.id": "unused",
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        c.assign([TopicPartition(topic, partition, start)])
        out = []
        deadline = time.time() + 20
        while len(out) < n and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                out.append((m.offset(), m.value().decode()))
        c.close()
        return out

    @own
    def cluster_transactional_ids_max_holds_for_ids_created_at_once_on_two_brokers(_):
        """`broker.transactional_ids_max` of 3 with 8 transactional producers initialising at
        once through two brokers: exactly 3 get their ids, the others are refused, and the
        database holds 3 ids (new ids are counted one at a time across the cluster)."""
        import threading
        from confluent_kafka import KafkaException, Producer
        pg = Postgres()
        brokers = []
        try:
            brokers = cluster(pg, 2, extra={"BUSBAR_BROKER_TRANSACTIONAL_IDS_MAX": "3"})
            results = {}
            def init(i):
                p = Producer({"bootstrap.servers": brokers[i % 2].kafka,
                              "transactional.id": f"cap-{i}"})
                # librdkafka retries a refused InitProducerId until its timeout, then
                # raises the refusal.
                try:
                    p.init_transactions(8)
                    results[i] = "ok"
                except KafkaException as e:
                    results[i] = e.args[0].name()
            threads = [threading.Thread(target=init, args=(i,)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert len(results) == 8, results
            assert sorted(results.values()).count("ok") == 3, results
            assert set(results.values()) == {"ok", "POLICY_VIOLATION"}, results
            ids = subprocess.run(["psql", "-qAt", "-d", pg.url(), "-c",
                                  "SELECT count(*) FROM txns"],
                                 capture_output=True, text=True, check=True).stdout.strip()
            assert ids == "3", ids
        finally:
            for b in brokers:
                b.stop()
            pg.stop()

    @own
    def cluster_transactions_commit_abort_fence_and_survive_their_coordinator(_):
        """confluent-kafka transactional producers against three brokers: committed transactions
        are read by read_committed consumers on other brokers, aborted ones never; a second
        producer with the same transactional.id fences the first and aborts its open
        transaction; the kill -9 of a transaction's coordinator leaves an open transaction that
        the id's next producer aborts on another broker, and no partition's last stable offset
        stays behind."""
        from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
        pg = Postgres()
        brokers = []

        def committed(b, parts=6, isolation="read_committed"):
            """Every value a consumer on `b` reads up to each partition's end."""
            c = Consumer({"bootstrap.servers": b.kafka, "group.id": f"rc-{time.time()}",
                          "isolation.level": isolation, "enable.partition.eof": True,
                          "auto.offset.reset": "earliest", "enable.auto.commit": False})
            c.assign([TopicPartition("tx", p, 0) for p in range(parts)])
            out, eof, deadline = [], set(), time.time() + 30
            while len(eof) < parts:
                assert time.time() < deadline, f"only partitions {sorted(eof)} reached their end"
                m = c.poll(0.5)
                if m is None:
                    continue
                if m.error():
                    if m.error().code() == -191:  # _PARTITION_EOF
                        eof.add(m.partition())
                        continue
                    raise KafkaException(m.error())
                eof.discard(m.partition())
                out.append(m.value().decode())
            c.close()
            return sorted(out)

        def txn_producer(b, tid):
            p = Producer({"bootstrap.servers": b.kafka, "transactional.id": tid,
                          "transaction.timeout.ms": 60000})
            p.init_transactions(30)
            return p

        try:
            brokers = cluster(pg)
            create_everywhere(brokers, {"tx": 6})
            p = txn_producer(brokers[0], "t1")
            for prefix, commit in [("c", True), ("a", False), ("d", True)]:
                p.begin_transaction()
                for n in range(30):
                    p.produce("tx", key=f"k{n}", value=f"{prefix}{n}")
                if commit:
                    p.commit_transaction(30)
                else:
                    p.flush(30)  # stored, then aborted (abort purges what is still queued)
                    p.abort_transaction(30)
            want = sorted([f"c{n}" for n in range(30)] + [f"d{n}" for n in range(30)])
            assert committed(brokers[1]) == want
            assert committed(brokers[2]) == want

            # A second producer with the same id fences the first and aborts its open
            # transaction; the first can no longer commit.
            p.begin_transaction()
            for n in range(20):
                p.produce("tx", key=f"k{n}", value=f"z{n}")
            p.flush(30)
            p2 = txn_producer(brokers[2], "t1")
            try:
                p.commit_transaction(30)
                raise AssertionError("a fenced producer committed")
            except KafkaException as e:
                assert e.args[0].fatal() or "fenced" in str(e).lower(), e
            p2.begin_transaction()
            for n in range(10):
                p2.produce("tx", key=f"k{n}", value=f"e{n}")
            p2.commit_transaction(30)
            want = sorted(want + [f"e{n}" for n in range(10)])
            assert committed(brokers[0]) == want

            # The coordinator of an open transaction dies: the id's next producer, on another
            # broker, aborts it and goes on.
            p3 = txn_producer(brokers[1], "t3")
            p3.begin_transaction()
            for n in range(20):
                p3.produce("tx", key=f"k{n}", value=f"x{n}")
            p3.flush(30)
            # Open: every broker's read_committed readers stop before it (last stable offset).
            for b in brokers:
                assert committed(b) == want
            survivors = kill_holder(pg, brokers, "txn", "t3")
            p4 = txn_producer(survivors[0], "t3")
            p4.begin_transaction()
            for n in range(10):
                p4.produce("tx", key=f"k{n}", value=f"y{n}")
            p4.commit_transaction(30)
            want = sorted(want + [f"y{n}" for n in range(10)])
            assert committed(survivors[1]) == want
            # A transactional batch outside any transaction (a forged producer id) is refused
            # by the commit, INVALID_TXN_STATE, and holds no partition's last stable offset.
            assert forged_transactional_produce(survivors[1].kafka, "tx", 0) == 48
            # Another transactional id's producer id, on a broker that does not coordinate it:
            # TRANSACTIONAL_ID_AUTHORIZATION_FAILED (the owner is the shared store's).
            victim = int(subprocess.run(
                ["psql", "-qAt", "-d", pg.url(), "-c",
                 "SELECT producer_id FROM txns WHERE transactional_id = 't3'"],
                capture_output=True, text=True, check=True).stdout.strip())
            for b in survivors:
                assert forged_transactional_produce(b.kafka, "tx", 0, victim, "evil") == 53
            assert committed(survivors[0]) == want
            # The aborted records are in the log: read_uncommitted reads them.
            aborted = [f"{x}{n}" for x, k in [("a", 30), ("z", 20), ("x", 20)] for n in range(k)]
            got = committed(survivors[0], isolation="read_uncommitted")
            assert got == sorted(want + aborted), (set(got) ^ set(want + aborted), len(got))
        finally:
            for b in brokers:
                b.stop()
            pg.stop()

    @own
    def cluster_consume_transform_produce_commits_offsets_in_the_transaction(_):
        """Exactly once across brokers: a read_committed consumer group bootstrapped on broker 2,
        a transactional producer on broker 3 (each transaction's coordinator wherever its lease
        falls). The first batch's transaction is aborted: its output is dropped and its offsets
        are not committed, so it is processed again; every later one commits output and offsets
        together. The output holds each input once; the group's committed offsets, read on
        broker 1, are the end of the input; a new member of the group finds nothing left."""
        from confluent_kafka import Consumer, Producer, TopicPartition
        pg = Postgres()
        brokers = []
        try:
            brokers = cluster(pg)
            create_everywhere(brokers, {"in": 3, "out": 3})
            everyone = ",".join(b.kafka for b in brokers)
            src = Producer({"bootstrap.servers": everyone, "enable.idempotence": True})
            for n in range(60):
                src.produce("in", key=f"k{n % 9}", value=f"e{n}")
            assert src.flush(30) == 0
            c = Consumer({"bootstrap.servers": brokers[1].kafka, "group.id": "ctp",
                          "auto.offset.reset": "earliest", "enable.auto.commit": False,
                          "isolation.level": "read_committed"})
            c.subscribe(["in"])
            p = Producer({"bootstrap.servers": brokers[2].kafka, "transactional.id": "ctp-1"})
            p.init_transactions(30)
            done, aborted_once, deadline = 0, False, time.time() + 90
            while done < 60 and time.time() < deadline:
                msgs = [m for m in c.consume(10, 1.0) if not m.error()]
                if not msgs:
                    continue
                p.begin_transaction()
                for m in msgs:
                    p.produce("out", key=m.key(), value=m.value().decode().upper())
                p.send_offsets_to_transaction(c.position(c.assignment()),
                                              c.consumer_group_metadata(), 30)
                if not aborted_once:
                    aborted_once = True
                    p.flush(30)
                    p.abort_transaction(30)
                    for tp in c.committed(c.assignment(), 10):
                        c.seek(TopicPartition("in", tp.partition, max(tp.offset, 0)))
                    continue
                p.commit_transaction(30)
                done += len(msgs)
            c.close()
            assert done == 60, done
            out = Consumer({"bootstrap.servers": brokers[0].kafka, "group.id": "check",
                            "isolation.level": "read_committed", "enable.partition.eof": True,
                            "auto.offset.reset": "earliest", "enable.auto.commit": False})
            out.assign([TopicPartition("out", q, 0) for q in range(3)])
            got, eof, deadline = [], set(), time.time() + 30
            while len(eof) < 3 and time.time() < deadline:
                m = out.poll(0.5)
                if m is None:
                    continue
                if m.error():
                    eof.add(m.partition())
                    continue
                eof.discard(m.partition())
                got.append(m.value().decode())
            out.close()
            assert sorted(got) == sorted(f"E{n}" for n in range(60)), sorted(got)
            chk = Consumer({"bootstrap.servers": brokers[0].kafka, "group.id": "ctp"})
            committed = chk.committed([TopicPartition("in", q) for q in range(3)], 10)
            lows_highs = [chk.get_watermark_offsets(TopicPartition("in", q), 10) for q in range(3)]
            chk.close()
            assert [tp.offset for tp in committed] == [h for _, h in lows_highs], \
                (committed, lows_highs)
        finally:
            for b in brokers:
                b.stop()
            pg.stop()
