"""The SLI metrics of docs/metrics.md (issue 19) counted from what real clients do against the real
binary: confluent-kafka produce, consume and commit, HTTP publish (to a topic and to topics that do
not exist), a failing HTTP target with retries and dead letters, failed logins over HTTP and SASL,
and ACL denials. Each value is checked exactly where the clients' actions fix it. Registered into
run.py's tests.
"""
import base64, json, re, threading, time, urllib.error, urllib.request

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(http, auth=None):
    """/metrics as {(name, ((label, value), ...)): float}, labels sorted."""
    req = urllib.request.Request(f"http://{http}/metrics")
    if auth:
        req.add_header("authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers["content-type"]
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = tuple(sorted(LABEL.findall(m.group(3) or "")))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def value(samples, name, **labels):
    """The sample of `name` with exactly `labels` (0 when absent)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples, name, **labels):
    """The sum of every sample of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def wait_for(what, check, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def register(test, Busbar, HookServer):
    import sasl
    Sasl = sasl.sasl_server(Busbar)

    def own(fn):
        fn.own_server = True
        return test(fn)

    @test
    def metrics_count_produce_consume_and_lag_of_real_clients(b):
        from confluent_kafka import Consumer, Producer, TopicPartition
        b.post("/topics", {"name": "m", "partitions": 2})
        p = Producer({"bootstrap.servers": b.kafka, "enable.idempotence": True, "linger.ms": 5})
        for i in range(20):
            p.produce("m", key=f"k{i % 4}", value=f"v{i}")
        assert p.flush(30) == 0
        b.post("/topics/m/events", [{"value": {"n": i}} for i in range(3)])
        for missing in ["nope-1", "nope-2"]:
            try:
                b.post(f"/topics/{missing}/events", {"value": 1})
                raise AssertionError("published to a topic that does not exist")
            except urllib.error.HTTPError as e:
                assert e.code == 404, e.code
        # A group that consumed and committed 10 of the 23 events, then stopped.
        c = Consumer({"bootstrap.servers": b.kafka, "group.id": "mg", "auto.offset.reset": "earliest",
                      "enable.auto.commit": False})
        c.assign([TopicPartition("m", 0, 0), TopicPartition("m", 1, 0)])
        got = []
        end = time.time() + 30
        while len(got) < 23 and time.time() < end:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m)
        assert len(got) == 23, len(got)
        first = {}
        for m in got[:10]:
            first[m.partition()] = max(first.get(m.partition(), -1), m.offset())
        c.commit(offsets=[TopicPartition("m", part, off + 1) for part, off in first.items()], asynchronous=False)
        c.close()

        s = scrape(b.http)
        assert value(s, "busbar_up") == 1
        assert value(s, "busbar_produce_events_total", topic="m") == 23, total(s, "busbar_produce_events_total")
        assert value(s, "busbar_produce_requests_total", topic="m", api="http", outcome="ok") == 1
        assert value(s, "busbar_produce_requests_total", topic="", api="http", outcome="unknown_topic") == 2, \
            [k for k in s if k[0] == "busbar_produce_requests_total"]
        assert not [k for k in s if ("topic", "nope-1") in k[1]], "a missing topic's name became a label"
        assert value(s, "busbar_produce_requests_total", topic="m", api="kafka", outcome="ok") >= 1
        assert value(s, "busbar_produce_bytes_total", topic="m") > 20 * 2
        assert value(s, "busbar_request_latency_seconds_count", api="kafka", request="Produce") >= 1
        assert value(s, "busbar_request_latency_seconds_count", api="http",
                     request="POST /topics/{topic}/events") == 3
        assert value(s, "busbar_request_latency_seconds_bucket", api="kafka", request="Fetch", le="+Inf") >= 1
        assert value(s, "busbar_fetch_delivery_age_seconds_count") >= 1
        assert value(s, "busbar_fsync_latency_seconds_count") >= 1
        assert total(s, "busbar_consumer_group_lag", group="mg", topic="m") == 13
        assert total(s, "busbar_consumer_group_lag_seconds", group="mg") > 0
        assert value(s, "busbar_consumer_group_status", group="mg", status="OK") == 1
        assert total(s, "busbar_consumer_group_status", group="mg") == 1, "one status at a time"
        assert total(s, "busbar_storage_bytes", topic="m") > 0
        assert value(s, "busbar_partition_offline", topic="m", partition="0") == 0
        free = value(s, "busbar_disk_free_bytes")
        assert free > 0 and value(s, "busbar_storage_quota_bytes") >= free
        assert [k for k in s if k[0] == "busbar_build_info"], "no build info"

    @test
    def metrics_count_failed_attempts_and_dead_letters_by_kind(b):
        import http.server

        class Failing(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length", 0)))
                self.send_response(503)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try:
            for t in ["src", "dlq"]:
                b.post("/topics", {"name": t})
            b.post("/subscriptions", {
                "name": "failing", "sources": ["src"], "start": "earliest",
                "target": {"url": f"http://127.0.0.1:{srv.server_address[1]}/x"},
                "delivery": {"max_attempts": 2, "backoff_initial_ms": 10, "backoff_max_ms": 20},
                "dead_letter_topic": "dlq"})
            b.post("/topics/src/events", [{"value": i} for i in range(3)])
            s = wait_for("3 dead letters", lambda: (lambda s: s if value(
                s, "busbar_deliveries_total", subscription="failing", outcome="dead_lettered") == 3 else None)(
                scrape(b.http)))
            assert value(s, "busbar_dead_letters_total", subscription="failing", reason="http_status") == 3
            assert value(s, "busbar_delivery_errors_total", subscription="failing", kind="http_5xx") == 6
            assert value(s, "busbar_deliveries_total", subscription="failing", outcome="retried") == 3
            assert value(s, "busbar_deliveries_total", subscription="failing", outcome="delivered") == 0
            assert value(s, "busbar_delivery_latency_seconds_count", subscription="failing") == 0
        finally:
            srv.shutdown()

    @own
    def metrics_count_failed_logins_and_acl_denials(_):
        b = Sasl(extra_env={"BUSBAR_AUTH_ALLOW_IF_NO_ACL": "false"})
        try:
            admin = ("admin", sasl.ADMIN_PW)
            assert b.call("POST", "/topics", {"name": "secure"})[0] in (200, 201)
            b.user("bob", "bob-secret-1")
            assert b.call("GET", "/topics", user="bob", password="wrong")[0] == 401
            assert b.call("GET", "/topics", user="bob", password="wrong")[0] == 401
            status, _ = b.call("POST", "/topics/secure/events", {"value": 1}, user="bob", password="bob-secret-1")
            assert status == 403, status
            from confluent_kafka import Producer
            p = Producer(sasl.confluent_conf(b, "SCRAM-SHA-256", "bob", "wrong", **{"message.timeout.ms": 3000}))
            p.produce("secure", value=b"x")
            p.flush(5)
            s = wait_for("a failed SASL login", lambda: (lambda s: s if value(
                s, "busbar_auth_failures_total", listener="kafka", mechanism="SCRAM-SHA-256") >= 1 else None)(
                scrape(b.http, admin)))
            assert value(s, "busbar_auth_failures_total", listener="http", mechanism="Basic") == 2
            assert value(s, "busbar_acl_denials_total", resource_type="TOPIC", operation="WRITE") == 1
        finally:
            b.stop()
