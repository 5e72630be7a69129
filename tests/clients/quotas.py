"""Client quotas (issue 16) against the real binary: AlterClientQuotas / DescribeClientQuotas
(48/49) as raw frames (librdkafka has no client-quota admin call; kafka-python 3 only has the
message classes), kept across a restart and shown by GET /quotas; a confluent-kafka producer under
producer_byte_rate and a consumer under consumer_byte_rate, each measured within 20 % of its
quota (KIP-219: librdkafka waits out throttle_time_ms, the broker mutes the connection).
`producer_rate` measures a producer; tls.py uses it for a per-user quota over SASL_SSL.
Registered into run.py's tests.
"""
import socket, struct, time

QUOTA = 200_000  # bytes per second
# Short windows (11 x 100 ms) so a rate settles within the test's few seconds; Kafka's own
# windows (11 x 1 s) allow a 10 s burst first.
WINDOWS = {"BUSBAR_BROKER_QUOTA_WINDOW_MS": "100"}


def string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def nullable(s):
    return struct.pack(">h", -1) if s is None else string(s)


def call(addr, api_key, version, body, client_id=b"quota-admin"):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        msg = struct.pack(">hhih", api_key, version, 1, len(client_id)) + client_id + body
        s.sendall(struct.pack(">i", len(msg)) + msg)
        head = b""
        while len(head) < 4:
            head += s.recv(4 - len(head))
        (n,) = struct.unpack(">i", head)
        data = b""
        while len(data) < n:
            data += s.recv(n - len(data))
    return Reader(data[4:])  # after the correlation id


class Reader:
    def __init__(self, data):
        self.d, self.i = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.i)
        self.i += struct.calcsize(fmt)
        return v[0]

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.d[self.i:self.i + n].decode()
        self.i += n
        return s


def alter(addr, entries, validate_only=False):
    """entries: [([(type, name or None)], [(key, value, remove)])]; answers each entry's error code."""
    body = struct.pack(">i", len(entries))
    for entity, ops in entries:
        body += struct.pack(">i", len(entity)) + b"".join(string(t) + nullable(n) for t, n in entity)
        body += struct.pack(">i", len(ops)) + b"".join(string(k) + struct.pack(">d?", v, rm) for k, v, rm in ops)
    r = call(addr, 49, 0, body + struct.pack(">?", validate_only))
    r.take(">i")  # throttle_time_ms
    codes = []
    for _ in range(r.take(">i")):
        codes.append(r.take(">h"))
        r.string()
        for _ in range(r.take(">i")):
            r.string(), r.string()
    return codes


def describe(addr, components=(), strict=False):
    """components: [(type, match_type, match)]; answers (error code, {entity tuple: {key: value}})."""
    body = struct.pack(">i", len(components))
    body += b"".join(string(t) + struct.pack(">b", m) + nullable(x) for t, m, x in components)
    r = call(addr, 48, 0, body + struct.pack(">?", strict))
    r.take(">i")
    code = r.take(">h")
    r.string()
    n = r.take(">i")
    found = {}
    for _ in range(max(n, 0)):
        entity = tuple((r.string(), r.string()) for _ in range(r.take(">i")))
        found[entity] = {r.string(): r.take(">d") for _ in range(r.take(">i"))}
    return code, found


def rate_of(samples):
    """Bytes per second between the first and the last (time, cumulative bytes) sample."""
    (t0, b0), (t1, b1) = samples[0], samples[-1]
    return (b1 - b0) / (t1 - t0)


def producer_rate(conf, topic, seconds=6):
    """The steady rate (B/s, from the first second on) at which a confluent-kafka producer with
    `conf` has 1 KB values acknowledged while it produces as fast as it can for `seconds`."""
    from confluent_kafka import Producer
    p = Producer({**conf, "linger.ms": 5, "batch.size": 16384, "acks": "all",
                  "queue.buffering.max.messages": 1000})
    value, done, samples = b"v" * 1000, [0], []

    def delivered(err, msg):
        if err is not None:  # purged at the end
            return
        done[0] += len(msg.value())
        samples.append((time.time(), done[0]))

    start = time.time()
    while time.time() - start < seconds:
        try:
            p.produce(topic, value=value, on_delivery=delivered)
        except BufferError:
            p.poll(0.05)
        p.poll(0)
    measured = list(samples)
    p.purge()  # what is still queued is not measured
    p.flush(10)
    # From the first second on: the first sample is the burst a rate allows at once.
    steady = [s for s in measured if s[0] - start >= 1.0]
    assert len(steady) >= 2, f"{len(measured)} deliveries in {seconds} s"
    return rate_of(steady)


def register(test, Busbar):
    def own(fn):
        fn.own_server = True
        return test(fn)

    @test
    def quotas_alter_and_describe_round_trip_through_the_binary_and_survive_a_restart(b):
        codes = alter(b.kafka, [
            ([("user", "alice")], [("producer_byte_rate", 1024.0, False)]),
            ([("client-id", None)], [("consumer_byte_rate", 2048.0, False), ("request_percentage", 50.0, False)]),
            ([("ip", "10.1.2.3")], [("producer_byte_rate", 1.0, False)]),
            ([("user", "bob")], [("no_such_key", 1.0, False)]),
        ])
        assert codes == [0, 0, 42, 42], codes
        assert alter(b.kafka, [([("user", "carol")], [("producer_byte_rate", 5.0, False)])], True) == [0]
        want = {
            (("user", "alice"),): {"producer_byte_rate": 1024.0},
            (("client-id", None),): {"consumer_byte_rate": 2048.0, "request_percentage": 50.0},
        }
        assert describe(b.kafka) == (0, want), describe(b.kafka)
        assert describe(b.kafka, [("user", 0, "alice")], True) == (0, {(("user", "alice"),): {"producer_byte_rate": 1024.0}})
        assert describe(b.kafka, [("user", 0, None)])[0] == 42, "exact match without a name"
        b.restart()
        assert describe(b.kafka) == (0, want), "kept across a restart"
        listed = b.get("/quotas")["quotas"]
        assert {"entity": {"user": "alice"}, "values": {"producer_byte_rate": 1024.0}} in listed, listed
        assert alter(b.kafka, [([("user", "alice")], [("producer_byte_rate", 0.0, True)])]) == [0]
        assert (("user", "alice"),) not in describe(b.kafka)[1]

    @own
    def quotas_confluent_producer_is_held_to_its_byte_rate(_):
        b = Busbar(extra_env=WINDOWS)
        try:
            b.post("/topics", {"name": "qp", "partitions": 1})
            assert alter(b.kafka, [([("client-id", "quota-producer")], [("producer_byte_rate", float(QUOTA), False)])]) == [0]
            conf = {"bootstrap.servers": b.kafka, "client.id": "quota-producer"}
            rate = producer_rate(conf, "qp")
            print(f"        producer: {rate / 1000:.0f} KB/s under a {QUOTA / 1000:.0f} KB/s quota", flush=True)
            assert abs(rate - QUOTA) <= 0.2 * QUOTA, f"{rate:.0f} B/s for a quota of {QUOTA}"
        finally:
            b.stop()

    @own
    def quotas_confluent_consumer_is_held_to_its_byte_rate(_):
        from confluent_kafka import Consumer, Producer
        b = Busbar(extra_env=WINDOWS)
        try:
            b.post("/topics", {"name": "qc", "partitions": 1})
            p = Producer({"bootstrap.servers": b.kafka, "linger.ms": 20, "batch.size": 16384})
            for _ in range(3000):  # 3 MB, more than 6 s at the quota
                p.produce("qc", value=b"c" * 1000)
                p.poll(0)
            assert p.flush(30) == 0
            assert alter(b.kafka, [([("client-id", "quota-consumer")], [("consumer_byte_rate", float(QUOTA), False)])]) == [0]
            c = Consumer({"bootstrap.servers": b.kafka, "client.id": "quota-consumer", "group.id": "qg",
                          "auto.offset.reset": "earliest", "enable.auto.commit": False})
            c.subscribe(["qc"])
            got, samples, start, begun = 0, [], None, time.time()
            while start is None or time.time() - start < 7:
                assert start or time.time() - begun < 30, "nothing consumed in 30 s"
                for m in c.consume(100, 0.2):
                    assert not m.error(), m.error()
                    got += len(m.value())
                    now = time.time()
                    start = start or now
                    samples.append((now, got))
            c.close()
            steady = [s for s in samples if s[0] - start >= 1.0]
            rate = rate_of(steady)
            print(f"        consumer: {rate / 1000:.0f} KB/s under a {QUOTA / 1000:.0f} KB/s quota", flush=True)
            assert abs(rate - QUOTA) <= 0.2 * QUOTA, f"{rate:.0f} B/s for a quota of {QUOTA}"
            assert got < 3_000_000, "the consumer did not simply read everything"
        finally:
            b.stop()
