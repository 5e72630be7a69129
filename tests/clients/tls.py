"""TLS (issue 16) with real clients against the real binary, one server for most cases (fast):
confluent-kafka, kafka-python, aiokafka and kcat over SASL_SSL with SCRAM-SHA-256, SCRAM-SHA-512
and PLAIN and over SSL with a client certificate (produce, consume in a group, admin: list and
create topics); a client that does not trust the server's CA fails; HTTPS with curl and Python's
urllib (401 without credentials, 200 with Basic, a token, a client certificate); hostile: garbage
as a ClientHello, a stalled handshake closed after kafka.tls_handshake_timeout_ms, a plaintext
Kafka frame on a TLS port, slowloris HTTP closed after http.header_read_timeout_ms, and
connections over limits.connections_per_ip refused. Certificates come from `busbar tls
dev-certs`. Registered into run.py's tests.
"""
import asyncio, atexit, base64, json, os, re, socket, ssl, struct, subprocess, tempfile, threading, time
import urllib.error, urllib.request

ADMIN_PW = "admin-secret-tls"
MECHS = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]
BIN = [None]


class TlsBusbar:
    """busbar with SASL_SSL, SSL (client certificates requested) and PLAINTEXT listeners, HTTPS,
    auth on (admin a super user, what no ACL names allowed: ACLs are acl.py's) and short
    handshake and header timeouts."""

    def __init__(self, extra_env=None):
        self.tmp = tempfile.TemporaryDirectory()
        self.certs = os.path.join(self.tmp.name, "certs")
        subprocess.run([BIN[0], "tls", "dev-certs", self.certs, "--client", "admin", "--client", "alice"],
                       check=True, capture_output=True)
        c = lambda f: os.path.join(self.certs, f)
        env = dict(os.environ, BUSBAR_BROKER_GROUP_INITIAL_REBALANCE_DELAY_MS="500",
                   BUSBAR_AUTH_ENABLED="true", BUSBAR_AUTH_SUPER_USERS="admin", BUSBAR_ADMIN_PASSWORD=ADMIN_PW,
                   BUSBAR_AUTH_ALLOW_IF_NO_ACL="true",
                   BUSBAR_KAFKA_LISTENERS="SASL_SSL://127.0.0.1:0,SSL://127.0.0.1:0,PLAINTEXT://127.0.0.1:0",
                   BUSBAR_TLS_CERT_FILE=c("server.pem"), BUSBAR_TLS_KEY_FILE=c("server.key"),
                   BUSBAR_TLS_CLIENT_CA_FILE=c("ca.pem"), BUSBAR_TLS_CLIENT_AUTH="requested",
                   BUSBAR_HTTP_TLS="true", BUSBAR_KAFKA_TLS_HANDSHAKE_TIMEOUT_MS="1000",
                   BUSBAR_HTTP_HEADER_READ_TIMEOUT_MS="1000", **(extra_env or {}))
        env.pop("BUSBAR_SERVER", None)
        self.proc = subprocess.Popen([BIN[0], "serve", "--data-dir", os.path.join(self.tmp.name, "data"),
                                      "--http-addr", "127.0.0.1:0"],
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError("busbar exited before it was ready")
            m = re.search(r"ready in .* https://(\S+) kafka (\S+) listeners (\S+) ", line)
            if m:
                self.http = m.group(1)
                urls = dict(u.split("://") for u in m.group(3).split(","))
                self.sasl_ssl, self.ssl, self.plain = urls["SASL_SSL"], urls["SSL"], urls["PLAINTEXT"]
                self.log = []
                threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()
                break
        else:
            raise RuntimeError("busbar did not become ready")
        self.ca = c("ca.pem")
        self.call("POST", "/users", {"name": "alice", "password": "alice-pw"})

    def cert(self, name):
        return os.path.join(self.certs, f"{name}.pem"), os.path.join(self.certs, f"{name}.key")

    def call(self, method, path, body=None, user="admin", password=ADMIN_PW, token=None, cert=None):
        """An HTTPS request with Python's urllib: (status, JSON body)."""
        ctx = ssl.create_default_context(cafile=self.ca)
        if cert:
            ctx.load_cert_chain(*self.cert(cert))
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        elif user is not None:
            headers["authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"https://{self.http}{path}", data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
                text = r.read()
                return r.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        self.tmp.cleanup()


SHARED = []


def server():
    if not SHARED:
        SHARED.append(TlsBusbar())
        atexit.register(SHARED[0].stop)
    return SHARED[0]


def confluent(b, mech=None, cert=None, **extra):
    """confluent-kafka settings: SASL_SSL with `mech` as alice, or SSL with client certificate `cert`."""
    conf = {"ssl.ca.location": b.ca, **extra}
    if mech:
        conf.update({"bootstrap.servers": b.sasl_ssl, "security.protocol": "SASL_SSL", "sasl.mechanisms": mech,
                     "sasl.username": "alice", "sasl.password": "alice-pw"})
    else:
        conf.update({"bootstrap.servers": b.ssl, "security.protocol": "SSL"})
        if cert:
            conf.update({"ssl.certificate.location": b.cert(cert)[0], "ssl.key.location": b.cert(cert)[1]})
    return conf


def ways(b):
    """(label, mechanism or None, client certificate or None) of every way in tested."""
    return [(m, m, None) for m in MECHS] + [("SSL-cert", None, "alice")]


def raw_closed(addr, payload, within):
    """Sends `payload` (or nothing) to `addr`; True when the peer closes within `within` seconds
    without answering (a TLS alert record, type 21, may come first)."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=within + 5)
    start = time.time()
    try:
        if payload:
            s.sendall(payload)
        first = True
        while True:
            try:
                data = s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                return time.time() - start <= within
            if not data:
                return time.time() - start <= within
            if first and data[0] == 21:
                first = False
                continue
            if first:
                return False
    finally:
        s.close()


def register(test, Busbar, bin_path):
    BIN[0] = bin_path

    def own(fn):
        fn.own_server = True
        return test(fn)

    @own
    def tls_confluent_sasl_ssl_every_mechanism_and_ssl_with_a_client_certificate(_):
        from confluent_kafka import Consumer, Producer
        from confluent_kafka.admin import AdminClient, NewTopic
        b = server()
        for label, mech, cert in ways(b):
            topic = "ck-" + label.lower()
            admin = AdminClient(confluent(b, mech, cert))
            admin.create_topics([NewTopic(topic, 2)])[topic].result(30)
            md = admin.list_topics(timeout=20)
            assert topic in md.topics, (label, list(md.topics))
            listener = b.sasl_ssl if mech else b.ssl
            assert [f"{x.host}:{x.port}" for x in md.brokers.values()] == [listener], label
            p = Producer(confluent(b, mech, cert))
            for i in range(10):
                p.produce(topic, value=f"{label}-{i}".encode())
            assert p.flush(30) == 0, label
            c = Consumer(confluent(b, mech, cert, **{"group.id": "g-" + label, "auto.offset.reset": "earliest"}))
            c.subscribe([topic])
            got, deadline = [], time.time() + 30
            while len(got) < 10 and time.time() < deadline:
                m = c.poll(1.0)
                if m is not None and not m.error():
                    got.append(m.value().decode())
            c.commit(asynchronous=False)
            c.close()
            assert sorted(got) == sorted(f"{label}-{i}" for i in range(10)), (label, got)

    @own
    def tls_kafka_python_sasl_ssl_every_mechanism_and_ssl_with_a_client_certificate(_):
        from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
        from kafka.admin import NewTopic
        b = server()
        for label, mech, cert in ways(b):
            if mech:
                conf = dict(bootstrap_servers=b.sasl_ssl, security_protocol="SASL_SSL", ssl_cafile=b.ca,
                            sasl_mechanism=mech, sasl_plain_username="alice", sasl_plain_password="alice-pw")
            else:
                conf = dict(bootstrap_servers=b.ssl, security_protocol="SSL", ssl_cafile=b.ca,
                            ssl_certfile=b.cert(cert)[0], ssl_keyfile=b.cert(cert)[1])
            topic = "kp-" + label.lower()
            admin = KafkaAdminClient(**conf)
            admin.create_topics([NewTopic(topic, 1, 1)])
            assert topic in admin.list_topics(), label
            admin.close()
            p = KafkaProducer(**conf)
            for i in range(10):
                p.send(topic, value=f"{label}-{i}".encode())
            p.flush(30)
            p.close()
            c = KafkaConsumer(topic, group_id="kg-" + label, auto_offset_reset="earliest",
                              consumer_timeout_ms=15000, **conf)
            got = []
            for m in c:
                got.append(m.value.decode())
                if len(got) == 10:
                    break
            c.commit()
            c.close()
            assert got == [f"{label}-{i}" for i in range(10)], (label, got)

    @own
    def tls_aiokafka_sasl_ssl_every_mechanism_and_ssl_with_a_client_certificate(_):
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.helpers import create_ssl_context
        b = server()

        async def one(label, mech, cert):
            ctx = create_ssl_context(cafile=b.ca, **({} if mech else
                                     {"certfile": b.cert(cert)[0], "keyfile": b.cert(cert)[1]}))
            if mech:
                conf = dict(bootstrap_servers=b.sasl_ssl, security_protocol="SASL_SSL", ssl_context=ctx,
                            sasl_mechanism=mech, sasl_plain_username="alice", sasl_plain_password="alice-pw")
            else:
                conf = dict(bootstrap_servers=b.ssl, security_protocol="SSL", ssl_context=ctx)
            topic = "ak-" + label.lower()
            admin = AIOKafkaAdminClient(**conf)
            await admin.start()
            await admin.create_topics([NewTopic(topic, 1, 1)])
            assert topic in await admin.list_topics(), label
            await admin.close()
            p = AIOKafkaProducer(**conf)
            await p.start()
            for i in range(10):
                await p.send_and_wait(topic, f"{label}-{i}".encode())
            await p.stop()
            c = AIOKafkaConsumer(topic, group_id="ag-" + label, auto_offset_reset="earliest", **conf)
            await c.start()
            got = []
            try:
                async with asyncio.timeout(30):
                    async for m in c:
                        got.append(m.value.decode())
                        if len(got) == 10:
                            break
                await c.commit()
            finally:
                await c.stop()
            assert got == [f"{label}-{i}" for i in range(10)], (label, got)

        for label, mech, cert in ways(b):
            asyncio.run(one(label, mech, cert))

    @own
    def tls_kcat_sasl_ssl_scram_plain_and_ssl_with_a_client_certificate(_):
        # Debian's kcat links librdkafka 2.0.2, whose SCRAM client-final repeats its nonce (busbar
        # accepts that form, as Kafka does): every way, SCRAM included.
        b = server()
        for label, mech, cert in ways(b):
            conf = confluent(b, mech, cert)
            args = ["kcat", "-b", conf.pop("bootstrap.servers")]
            for k, v in conf.items():
                args += ["-X", f"{k}={v}"]
            topic = "kc-" + label.lower()
            run = lambda *a, stdin=None: subprocess.run(args + list(a), input=stdin, capture_output=True,
                                                        text=True, timeout=60)
            r = run("-P", "-t", topic, stdin="".join(f"{label}-{i}\n" for i in range(5)))
            assert r.returncode == 0, (label, r.stderr)
            r = run("-L", "-t", topic)
            assert r.returncode == 0 and topic in r.stdout, (label, r.stdout, r.stderr)
            r = run("-G", "kc-" + label, "-X", "auto.offset.reset=earliest", "-c", "5", "-e", topic)
            got = [l for l in r.stdout.splitlines() if l]
            assert sorted(got) == sorted(f"{label}-{i}" for i in range(5)), (label, r.stdout, r.stderr)

    @own
    def tls_a_client_that_does_not_trust_the_server_certificate_fails(_):
        from confluent_kafka.admin import AdminClient
        from confluent_kafka import KafkaException
        b = server()
        other = os.path.join(b.tmp.name, "other")
        subprocess.run([BIN[0], "tls", "dev-certs", other], check=True, capture_output=True)
        conf = confluent(b, "SCRAM-SHA-256", None)
        conf["ssl.ca.location"] = os.path.join(other, "ca.pem")
        try:
            AdminClient(conf).list_topics(timeout=5)
            raise AssertionError("metadata over an untrusted certificate")
        except KafkaException:
            pass
        r = subprocess.run(["curl", "-s", "--cacert", os.path.join(other, "ca.pem"), f"https://{b.http}/healthz"],
                           capture_output=True, text=True)
        assert r.returncode != 0, r.stdout

    @own
    def tls_https_with_curl_and_urllib_401_basic_token_and_client_certificate(_):
        b = server()
        curl = lambda *a: subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", b.ca,
                                          *a], capture_output=True, text=True, timeout=30).stdout
        url = f"https://{b.http}/topics"
        assert curl(url) == "401"
        assert curl("-u", "alice:wrong", url) == "401"
        assert curl("-u", "alice:alice-pw", url) == "200"
        assert curl("--cert", b.cert("alice")[0], "--key", b.cert("alice")[1], url) == "200"
        assert b.call("GET", "/topics", user=None)[0] == 401
        assert b.call("GET", "/topics", user="alice", password="alice-pw")[0] == 200
        status, tok = b.call("POST", "/tokens", {"name": "ci"}, user="alice", password="alice-pw")
        assert status == 201, (status, tok)
        assert b.call("GET", "/topics", token=tok["token"])[0] == 200
        assert curl("-H", f"authorization: Bearer {tok['token']}", url) == "200"
        status, users = b.call("GET", "/users", user=None, cert="admin")
        assert status == 200 and "alice" in json.dumps(users), (status, users)

    @own
    def tls_hostile_garbage_stalled_and_plaintext_handshakes_and_slowloris(_):
        b = server()
        assert raw_closed(b.ssl, b"\x42" * 300, 3), "garbage ClientHello closed"
        kafka_frame = struct.pack(">ihhih", 11, 18, 0, 1, 1) + b"x"
        assert raw_closed(b.sasl_ssl, kafka_frame, 3), "plaintext Kafka frame on a TLS port closed"
        start = time.time()
        stalled = [socket.create_connection(tuple(b.ssl.rsplit(":", 1)), timeout=10) for _ in range(10)]
        from confluent_kafka.admin import AdminClient
        AdminClient(confluent(b, "SCRAM-SHA-256")).list_topics(timeout=10)
        assert time.time() - start < 1.0, "served while 10 handshakes stall"
        for s in stalled:
            assert s.recv(16) == b"", "stalled handshake closed"
        assert 0.9 <= time.time() - start < 5, time.time() - start
        # Slowloris: one header byte every 200 ms is closed after http.header_read_timeout_ms (1 s).
        host, port = b.http.rsplit(":", 1)
        raw = socket.create_connection((host, int(port)), timeout=10)
        tls = ssl.create_default_context(cafile=b.ca).wrap_socket(raw, server_hostname="127.0.0.1")
        start = time.time()
        closed = False
        for ch in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
            try:
                tls.sendall(bytes([ch]))
            except OSError:
                closed = True
                break
            time.sleep(0.2)
            if time.time() - start > 5:
                break
        if not closed:
            tls.settimeout(3)
            try:
                closed = tls.recv(4096) in (b"",) or True  # an answer or close: no longer held
            except (OSError, ssl.SSLError):
                closed = True
        assert closed and time.time() - start < 5, time.time() - start
        assert b.call("GET", "/healthz", user=None)[0] == 200

    @own
    def tls_connections_over_the_per_ip_limit_are_refused(_):
        from confluent_kafka.admin import AdminClient
        b = TlsBusbar({"BUSBAR_LIMITS_CONNECTIONS_PER_IP": "4"})
        try:
            held = [socket.create_connection(tuple(b.plain.rsplit(":", 1)), timeout=10) for _ in range(4)]
            time.sleep(0.2)
            assert raw_closed(b.plain, struct.pack(">ihhih", 11, 18, 0, 1, 1) + b"x", 2), "5th connection closed"
            deadline = time.time() + 5
            while not any("connections_per_ip" in l for l in b.log) and time.time() < deadline:
                time.sleep(0.1)
            assert any("connections_per_ip" in l for l in b.log), "logged"
            for s in held:
                s.close()
            time.sleep(0.2)
            AdminClient({"bootstrap.servers": b.plain}).list_topics(timeout=10)
        finally:
            b.stop()
