"""TLS (issue 16) with real clients against the real binary, one server for most cases (fast):
confluent-kafka, kafka-python, aiokafka and kcat over SASL_SSL with SCRAM-SHA-256, SCRAM-SHA-512
and PLAIN and over SSL with a client certificate (produce, consume in a group, admin: list and
create topics); the same SSL runs under tls.client_auth "required" (the default) and
auth.allow_if_no_acl off with ACLs for the certificate's User:<CN> only, and a certificate no ACL
names refused; without a certificate, "required" refuses SSL, SASL_SSL and HTTPS clients; wrong
password and unknown user over SASL_SSL with all four clients and mechanisms; a per-user
producer_byte_rate holding a SCRAM producer over SASL_SSL within 20 %; a client that does not
trust the server's CA fails; HTTPS with curl, Python's urllib and requests (401 without or with
bad credentials, 403 from an ACL, 429 over a quota, Basic, client certificates, tokens created,
used, revoked and expired); hostile: garbage as a ClientHello, a stalled handshake closed after
kafka.tls_handshake_timeout_ms, a plaintext Kafka frame on a TLS port, slowloris HTTP closed after
http.header_read_timeout_ms, and connections over limits.connections_per_ip refused. Certificates
come from `busbar tls dev-certs`. Registered into run.py's tests.
"""
import asyncio, atexit, base64, json, os, re, socket, ssl, struct, subprocess, tempfile, threading, time
import urllib.error, urllib.request

import quotas  # tests/clients/quotas.py: producer_rate, WINDOWS
from sasl import Captured

ADMIN_PW = "admin-secret-tls"
MECHS = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]
BIN = [None]


class TlsBusbar:
    """busbar with SASL_SSL, SSL (client certificates requested) and PLAINTEXT listeners, HTTPS,
    auth on (admin a super user, what no ACL names allowed: ACLs are acl.py's) and short
    handshake and header timeouts."""

    def __init__(self, extra_env=None, client_auth="requested", http_cert=None):
        """`client_auth` None leaves tls.client_auth at its default ("required"); `http_cert` is the
        client certificate `call` presents when it is given none (needed under "required")."""
        self.tmp = tempfile.TemporaryDirectory()
        self.certs = os.path.join(self.tmp.name, "certs")
        self.http_cert = http_cert
        subprocess.run([BIN[0], "tls", "dev-certs", self.certs, "--client", "admin", "--client", "alice",
                        "--client", "mallory"], check=True, capture_output=True)
        c = lambda f: os.path.join(self.certs, f)
        env = dict(os.environ, BUSBAR_BROKER_GROUP_INITIAL_REBALANCE_DELAY_MS="500",
                   BUSBAR_AUTH_ENABLED="true", BUSBAR_AUTH_SUPER_USERS="admin", BUSBAR_ADMIN_PASSWORD=ADMIN_PW,
                   BUSBAR_AUTH_ALLOW_IF_NO_ACL="true",
                   BUSBAR_KAFKA_LISTENERS="SASL_SSL://127.0.0.1:0,SSL://127.0.0.1:0,PLAINTEXT://127.0.0.1:0",
                   BUSBAR_TLS_CERT_FILE=c("server.pem"), BUSBAR_TLS_KEY_FILE=c("server.key"),
                   BUSBAR_TLS_CLIENT_CA_FILE=c("ca.pem"),
                   BUSBAR_HTTP_TLS="true", BUSBAR_KAFKA_TLS_HANDSHAKE_TIMEOUT_MS="1000",
                   BUSBAR_HTTP_HEADER_READ_TIMEOUT_MS="1000")
        env.update(extra_env or {})
        env.pop("BUSBAR_SERVER", None)
        env.pop("BUSBAR_TLS_CLIENT_AUTH", None)
        if client_auth:
            env["BUSBAR_TLS_CLIENT_AUTH"] = client_auth
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
        cert = cert or self.http_cert
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


STRICT, FAST = [], []


def strict():
    """busbar with tls.client_auth at its default ("required") and auth.allow_if_no_acl off: only
    what an ACL grants is allowed; every TLS client (HTTPS too) presents a certificate."""
    if not STRICT:
        STRICT.append(TlsBusbar({"BUSBAR_AUTH_ALLOW_IF_NO_ACL": "false"}, client_auth=None, http_cert="admin"))
        atexit.register(STRICT[0].stop)
    return STRICT[0]


def fast():
    """The shared server's settings with a 200 ms failed-login backoff and 100 ms quota windows."""
    if not FAST:
        FAST.append(TlsBusbar({"BUSBAR_AUTH_BACKOFF_MAX_MS": "200", **quotas.WINDOWS}))
        atexit.register(FAST[0].stop)
    return FAST[0]


def tls_refused(addr, ca, cert=None):
    """True when `addr` refuses a TLS client (with `cert`, a (pem, key) pair, or none): the
    handshake fails, or (TLS 1.3: the server checks the client's certificate after the client has
    finished) the first read after an ApiVersions request gets an alert or a close."""
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(*cert)
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname=host) as t:
                t.sendall(struct.pack(">ihhih", 11, 18, 0, 1, 1) + b"x")
                return t.recv(4) == b""
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return True


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


def confluent_flow(b, label, mech, cert):
    """confluent-kafka: create and list a topic (AdminClient), produce 10, consume them in a group."""
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic
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


def kafka_python_conf(b, mech, cert, user="alice", password="alice-pw"):
    if mech:
        return dict(bootstrap_servers=b.sasl_ssl, security_protocol="SASL_SSL", ssl_cafile=b.ca,
                    sasl_mechanism=mech, sasl_plain_username=user, sasl_plain_password=password)
    return dict(bootstrap_servers=b.ssl, security_protocol="SSL", ssl_cafile=b.ca,
                ssl_certfile=b.cert(cert)[0], ssl_keyfile=b.cert(cert)[1])


def kafka_python_flow(b, label, mech, cert):
    """kafka-python: the same with KafkaAdminClient, KafkaProducer and KafkaConsumer."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic
    conf = kafka_python_conf(b, mech, cert)
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
    c = KafkaConsumer(topic, group_id="kg-" + label, auto_offset_reset="earliest", consumer_timeout_ms=15000, **conf)
    got = []
    for m in c:
        got.append(m.value.decode())
        if len(got) == 10:
            break
    c.commit()
    c.close()
    assert got == [f"{label}-{i}" for i in range(10)], (label, got)


def aiokafka_conf(b, mech, cert, user="alice", password="alice-pw"):
    from aiokafka.helpers import create_ssl_context
    ctx = create_ssl_context(cafile=b.ca, **({"certfile": b.cert(cert)[0], "keyfile": b.cert(cert)[1]}
                                             if cert else {}))
    if mech:
        return dict(bootstrap_servers=b.sasl_ssl, security_protocol="SASL_SSL", ssl_context=ctx,
                    sasl_mechanism=mech, sasl_plain_username=user, sasl_plain_password=password)
    return dict(bootstrap_servers=b.ssl, security_protocol="SSL", ssl_context=ctx)


def aiokafka_flow(b, label, mech, cert):
    """aiokafka: the same with AIOKafkaAdminClient, AIOKafkaProducer and AIOKafkaConsumer."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def one():
        conf = aiokafka_conf(b, mech, cert)
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

    asyncio.run(one())


def kcat_args(b, mech, cert, **extra):
    """kcat's command line for `confluent(b, mech, cert)` with `extra` settings over it."""
    conf = {**confluent(b, mech, cert), **extra}
    args = ["kcat", "-b", conf.pop("bootstrap.servers")]
    for k, v in conf.items():
        args += ["-X", f"{k}={v}"]
    return args


def kcat_flow(b, label, mech, cert):
    """kcat: produce (-P), metadata (-L, kcat has no admin) and a group consume (-G)."""
    args = kcat_args(b, mech, cert)
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


FLOWS = {"confluent-kafka": confluent_flow, "kafka-python": kafka_python_flow, "aiokafka": aiokafka_flow,
         "kcat": kcat_flow}


def confluent_refused(b, mech, user, pw):
    """confluent-kafka reports _AUTHENTICATION through error_cb."""
    from confluent_kafka import KafkaError, Producer
    errors = []
    conf = confluent(b, mech, None, error_cb=errors.append)
    conf.update({"sasl.username": user, "sasl.password": pw})
    p = Producer(conf)
    p.produce("never", value=b"x")
    deadline = time.time() + 10
    while not errors and time.time() < deadline:
        p.poll(0.2)
    p.purge()
    assert KafkaError._AUTHENTICATION in [e.code() for e in errors], errors


def kafka_python_refused(b, mech, user, pw):
    """kafka-python logs SaslAuthenticationFailedError from its network thread and then fails to
    bootstrap."""
    import logging
    import kafka.errors
    from kafka import KafkaProducer
    seen = Captured()
    logging.getLogger("kafka").addHandler(seen)
    try:
        KafkaProducer(**kafka_python_conf(b, mech, None, user, pw), bootstrap_timeout_ms=1500).close()
        raise AssertionError("the login was accepted")
    except kafka.errors.KafkaError:
        pass
    finally:
        logging.getLogger("kafka").removeHandler(seen)
    assert any(isinstance(e, kafka.errors.SaslAuthenticationFailedError) for e in seen.errors), seen.messages[:5]


def aiokafka_refused(b, mech, user, pw):
    """aiokafka logs SaslAuthenticationFailedError (error 58) and its start() fails to bootstrap."""
    import logging
    import aiokafka.errors
    from aiokafka import AIOKafkaProducer

    async def one():
        p = AIOKafkaProducer(**aiokafka_conf(b, mech, None, user, pw))
        try:
            await asyncio.wait_for(p.start(), 15)
            raise AssertionError("the login was accepted")
        except aiokafka.errors.KafkaConnectionError:
            pass
        finally:
            await p.stop()

    seen = Captured()
    logging.getLogger("aiokafka").addHandler(seen)
    try:
        asyncio.run(one())
    finally:
        logging.getLogger("aiokafka").removeHandler(seen)
    assert any(isinstance(e, aiokafka.errors.SaslAuthenticationFailed) for e in seen.errors) or \
        any("SaslAuthenticationFailed" in m for m in seen.messages), seen.messages[:5]


def kcat_refused(b, mech, user, pw):
    """kcat -L gives up with librdkafka's authentication failure."""
    args = kcat_args(b, mech, None, **{"sasl.username": user, "sasl.password": pw})
    r = subprocess.run(args + ["-L", "-m", "3"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0, r.stdout
    assert "authenticat" in r.stderr.lower(), r.stderr[-800:]


# kcat waits out its metadata timeout (-m 3) however early the login failed: its cases run at once.
BAD_LOGINS = {"confluent-kafka": confluent_refused, "kafka-python": kafka_python_refused,
              "aiokafka": aiokafka_refused}


def register(test, Busbar, bin_path):
    BIN[0] = bin_path

    def own(fn):
        fn.own_server = True
        return test(fn)

    @own
    def tls_confluent_sasl_ssl_every_mechanism_and_ssl_with_a_client_certificate(_):
        b = server()
        for label, mech, cert in ways(b):
            confluent_flow(b, label, mech, cert)

    @own
    def tls_kafka_python_sasl_ssl_every_mechanism_and_ssl_with_a_client_certificate(_):
        b = server()
        for label, mech, cert in ways(b):
            kafka_python_flow(b, label, mech, cert)

    @own
    def tls_aiokafka_sasl_ssl_every_mechanism_and_ssl_with_a_client_certificate(_):
        b = server()
        for label, mech, cert in ways(b):
            aiokafka_flow(b, label, mech, cert)

    @own
    def tls_kcat_sasl_ssl_scram_plain_and_ssl_with_a_client_certificate(_):
        # Debian's kcat links librdkafka 2.0.2, whose SCRAM client-final repeats its nonce (busbar
        # accepts that form, as Kafka does): every way, SCRAM included.
        b = server()
        for label, mech, cert in ways(b):
            kcat_flow(b, label, mech, cert)

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

    @own
    def tls_client_certificates_are_the_principal_with_every_client_under_acls(_):
        # allow_if_no_acl off and ACLs for User:alice only: a client whose certificate were ignored
        # (User:ANONYMOUS) would be refused. Each client connects over SSL with alice's certificate.
        b = strict()
        acls = [{"resource_type": t, "resource_name": "*", "principal": "User:alice", "operation": "ALL",
                 "permission": "ALLOW"} for t in ("TOPIC", "GROUP")]
        status, body = b.call("POST", "/acls", acls)
        assert status in (200, 201), (status, body)
        for name, flow in FLOWS.items():
            try:
                flow(b, "mtls", None, "alice")
            except Exception as e:
                raise AssertionError(f"{name} with alice's certificate: {e!r}") from e
        # mallory's certificate is valid (the same CA) but no ACL names User:mallory.
        from confluent_kafka import KafkaError, Producer
        results = []
        p = Producer(confluent(b, None, "mallory"))
        p.produce("ck-mtls", value=b"x", on_delivery=lambda err, msg: results.append(err))
        p.flush(20)
        assert [e and e.code() for e in results] == [KafkaError.TOPIC_AUTHORIZATION_FAILED], results
        r = subprocess.run(kcat_args(b, None, "mallory") + ["-C", "-t", "ck-mtls", "-o", "beginning", "-e"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and "mtls-" not in r.stdout, (r.stdout, r.stderr[-500:])
        assert "authoriz" in r.stderr.lower(), r.stderr[-500:]

    @own
    def tls_required_client_auth_refuses_clients_without_a_certificate_on_every_tls_way_in(_):
        # tls.client_auth = "required" (the default) applies to SSL and HTTPS; SASL_SSL asks for a
        # certificate but does not need one, as in Kafka (KIP-684): see docs/decisions.md,
        # "tls.client_auth = required and SASL_SSL".
        import requests
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient
        b = strict()
        alice = b.cert("alice")
        for addr in (b.ssl, b.http):
            assert tls_refused(addr, b.ca), f"{addr}: a client without a certificate was served"
        assert not tls_refused(b.sasl_ssl, b.ca), "SASL_SSL needs no certificate (KIP-684)"
        for addr in (b.ssl, b.sasl_ssl):
            assert not tls_refused(addr, b.ca, alice), f"{addr}: alice's certificate was refused"
        # A SASL_SSL client without a certificate authenticates with SCRAM, and with one too.
        md = AdminClient(confluent(b, "SCRAM-SHA-256")).list_topics(timeout=20)
        assert [f"{x.host}:{x.port}" for x in md.brokers.values()] == [b.sasl_ssl], md.brokers
        with_cert = confluent(b, "SCRAM-SHA-256", None, **{"ssl.certificate.location": alice[0],
                                                           "ssl.key.location": alice[1]})
        md = AdminClient(with_cert).list_topics(timeout=20)
        assert [f"{x.host}:{x.port}" for x in md.brokers.values()] == [b.sasl_ssl], md.brokers
        # HTTPS: curl and requests without a certificate fail in the handshake; with one, they are
        # served (Basic credentials, when sent, name the user).
        curl = lambda *a: subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", b.ca,
                                          *a, f"https://{b.http}/healthz"], capture_output=True, text=True)
        r = curl("-u", "alice:alice-pw")
        assert r.returncode != 0 and r.stdout in ("", "000"), (r.returncode, r.stdout)
        assert curl("--cert", alice[0], "--key", alice[1]).stdout == "200"
        try:
            requests.get(f"https://{b.http}/healthz", verify=b.ca, auth=("alice", "alice-pw"), timeout=10)
            raise AssertionError("requests without a certificate was served over HTTPS")
        except requests.exceptions.ConnectionError:  # SSLError is one
            pass
        r = requests.get(f"https://{b.http}/users", verify=b.ca, cert=alice, auth=("admin", ADMIN_PW), timeout=10)
        assert r.status_code == 200 and "alice" in r.text, (r.status_code, r.text)
        r = requests.get(f"https://{b.http}/users", verify=b.ca, cert=alice, timeout=10)
        assert r.status_code == 403 and "User:alice" in r.json()["error"]["message"], (r.status_code, r.text)

    @own
    def tls_https_with_requests_401_403_429_and_tokens_created_used_revoked_and_expired(_):
        import requests
        b = server()
        url = f"https://{b.http}"
        s = requests.Session()
        s.trust_env = False  # else REQUESTS_CA_BUNDLE, when set, overrides s.verify
        s.verify = b.ca
        # No keep-alive: this server closes connections idle for http.header_read_timeout_ms (1 s),
        # which may race a pooled connection's next request.
        s.headers["connection"] = "close"
        bob = ("rq-bob", "bob-pw")
        assert b.call("POST", "/users", {"name": bob[0], "password": bob[1]})[0] in (200, 201)
        for auth in (None, (bob[0], "wrong"), ("rq-nobody", "pw")):
            r = s.get(f"{url}/topics", auth=auth, timeout=10)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", (auth, r.status_code, r.text)
        # 403: an ACL names rq-locked (for admin only), so allow_if_no_acl no longer lets bob.
        for t in ("rq-locked", "rq-open"):
            assert b.call("POST", "/topics", {"name": t, "partitions": 1})[0] in (200, 201)
        acl = {"resource_type": "TOPIC", "resource_name": "rq-locked", "principal": "User:admin",
               "operation": "ALL", "permission": "ALLOW"}
        assert b.call("POST", "/acls", acl)[0] in (200, 201)
        r = s.post(f"{url}/topics/rq-locked/events", json={"value": 1}, auth=bob, timeout=10)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (r.status_code, r.text)
        assert "User:rq-bob" in r.json()["error"]["message"], r.text
        # 429: bob's producer_byte_rate (1,000 B/s; about 10 s of it pass at once) is soon used up.
        quota = {"entity": {"user": bob[0]}, "values": {"producer_byte_rate": 1000}}
        assert b.call("PUT", "/quotas", quota)[0] in (200, 201, 204)
        statuses = []
        for _ in range(20):
            r = s.post(f"{url}/topics/rq-open/events", json={"value": "x" * 4000}, auth=bob, timeout=10)
            statuses.append(r.status_code)
            if r.status_code == 429:
                break
        assert statuses[0] < 300 and statuses[-1] == 429, statuses
        assert r.json()["error"]["code"] == "throttled" and int(r.headers["Retry-After"]) >= 1, (r.headers, r.text)
        # Tokens: created, used, revoked (then 401); one expiring after 1 s (then 401).
        r = s.post(f"{url}/tokens", json={"name": "rq-ci"}, auth=bob, timeout=10)
        assert r.status_code == 201, (r.status_code, r.text)
        bearer = {"authorization": f"Bearer {r.json()['token']}"}
        assert s.get(f"{url}/topics", headers=bearer, timeout=10).status_code == 200
        r = s.delete(f"{url}/tokens/rq-ci", auth=bob, timeout=10)
        assert r.status_code in (200, 204), (r.status_code, r.text)
        r = s.get(f"{url}/topics", headers=bearer, timeout=10)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", (r.status_code, r.text)
        r = s.post(f"{url}/tokens", json={"name": "rq-short", "expires_in_s": 1}, auth=bob, timeout=10)
        assert r.status_code == 201, (r.status_code, r.text)
        short = {"authorization": f"Bearer {r.json()['token']}"}
        assert s.get(f"{url}/topics", headers=short, timeout=10).status_code == 200
        time.sleep(1.2)
        r = s.get(f"{url}/topics", headers=short, timeout=10)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", (r.status_code, r.text)

    @own
    def tls_wrong_password_and_unknown_user_over_sasl_ssl_fail_in_every_client(_):
        from concurrent.futures import ThreadPoolExecutor
        b = fast()
        bad = [(mech, user, pw) for mech in MECHS for user, pw in [("alice", "wrong"), ("nobody", "alice-pw")]]
        with ThreadPoolExecutor(len(bad)) as pool:
            start = time.time()
            for case, f in [(c, pool.submit(kcat_refused, b, *c)) for c in bad]:
                try:
                    f.result(60)
                except Exception as e:
                    raise AssertionError(f"kcat {case[0]} as {case[1]}: {e!r}") from e
            assert time.time() - start < 15, f"kcat took {time.time() - start:.1f}s to report the failures"
        for mech, user, pw in bad:
            for name, refused in BAD_LOGINS.items():
                start = time.time()
                try:
                    refused(b, mech, user, pw)
                except Exception as e:
                    raise AssertionError(f"{name} {mech} as {user}: {e!r}") from e
                took = time.time() - start
                assert took < 15, f"{name} {mech} as {user}: {took:.1f}s to report the failure"
                time.sleep(0.1)  # (user, address) backs off 200 ms at most: no need to wait it out

    @own
    def tls_a_user_quota_holds_a_scram_producer_over_sasl_ssl_to_its_byte_rate(_):
        # producer_byte_rate for User:alice (HTTP PUT /quotas), a confluent-kafka producer logged in
        # as alice with SCRAM-SHA-256 over SASL_SSL and a client id no quota names.
        b = fast()
        quota = {"entity": {"user": "alice"}, "values": {"producer_byte_rate": quotas.QUOTA}}
        assert b.call("PUT", "/quotas", quota)[0] in (200, 201, 204)
        conf = confluent(b, "SCRAM-SHA-256", None, **{"client.id": "any-client"})
        rate = quotas.producer_rate(conf, "user-quota")
        print(f"        alice over SASL_SSL: {rate / 1000:.0f} KB/s under a {quotas.QUOTA / 1000:.0f} KB/s quota",
              flush=True)
        assert abs(rate - quotas.QUOTA) <= 0.2 * quotas.QUOTA, f"{rate:.0f} B/s for a quota of {quotas.QUOTA}"
