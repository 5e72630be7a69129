"""SASL (issue 16) with real clients against the real binary: confluent-kafka and kafka-python over
SASL_PLAINTEXT with SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN (produce, consume in a group), the
AdminClient's SCRAM credential calls, wrong and unknown credentials, and hostile raw sockets
(a request before authentication, garbage SaslAuthenticate bytes, an oversized SASL frame,
1,000 failed logins while the server stays responsive). Registered into run.py's tests.
"""
import base64, hashlib, hmac, json, logging, os, re, socket, struct, subprocess, threading, time, urllib.error, urllib.request

ADMIN_PW = "admin-secret-1"
MECHS = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]


def sasl_server(Busbar):
    class SaslBusbar(Busbar):
        """busbar with auth on, a SASL_PLAINTEXT and a PLAINTEXT listener, `admin` a super user,
        `auth.allow_if_no_acl` on unless `extra_env` says otherwise."""

        def start(self, kafka_port=0, http_port=0):
            env = dict(os.environ, BUSBAR_BROKER_GROUP_INITIAL_REBALANCE_DELAY_MS="500",
                       BUSBAR_AUTH_ENABLED="true", BUSBAR_AUTH_SUPER_USERS="admin",
                       BUSBAR_ADMIN_PASSWORD=ADMIN_PW, BUSBAR_AUTH_BACKOFF_MAX_MS="200",
                       # These tests are about authentication: what no ACL names is allowed
                       # (acl.py tests ACLs with allow_if_no_acl off).
                       BUSBAR_AUTH_ALLOW_IF_NO_ACL="true",
                       BUSBAR_KAFKA_LISTENERS="SASL_PLAINTEXT://127.0.0.1:0,PLAINTEXT://127.0.0.1:0")
            env.update(self.extra_env)
            self.proc = subprocess.Popen([BIN_PATH[0], "serve", "--data-dir", self.data, "--http-addr",
                                          f"127.0.0.1:{http_port}"],
                                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
            deadline = time.time() + 60
            while time.time() < deadline:
                line = self.proc.stderr.readline()
                if not line:
                    raise RuntimeError("busbar exited before it was ready")
                m = re.search(r"ready in .* http://(\S+) kafka (\S+) listeners (\S+) ", line)
                if m:
                    self.ready_line = line
                    self.http, self.kafka = m.group(1), m.group(2)
                    urls = dict(u.split("://") for u in m.group(3).split(","))
                    self.sasl, self.plain = urls["SASL_PLAINTEXT"], urls["PLAINTEXT"]
                    self.log = []
                    threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()
                    return
            raise RuntimeError("busbar did not become ready")

        def call(self, method, path, body=None, user="admin", password=ADMIN_PW):
            headers = {"content-type": "application/json"}
            if user is not None:
                token = base64.b64encode(f"{user}:{password}".encode()).decode()
                headers["authorization"] = f"Basic {token}"
            data = json.dumps(body).encode() if body is not None else None
            req = urllib.request.Request(f"http://{self.http}{path}", data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    text = r.read()
                    return r.status, json.loads(text) if text else None
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read() or b"null")

        def user(self, name, password):
            status, body = self.call("POST", "/users", {"name": name, "password": password})
            assert status in (200, 201), (status, body)

    return SaslBusbar


BIN_PATH = [None]


class Captured(logging.Handler):
    """Keeps the exceptions (and messages) a library logs."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.errors, self.messages = [], []

    def emit(self, record):
        self.messages.append(record.getMessage())
        self.errors.extend(a for a in record.args or () if isinstance(a, Exception))
        if record.exc_info and record.exc_info[1]:
            self.errors.append(record.exc_info[1])


def confluent_conf(b, mech, user, password, **extra):
    return {"bootstrap.servers": b.sasl, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": mech,
            "sasl.username": user, "sasl.password": password, **extra}


def frame(api_key, version, corr, body, client_id=b"raw"):
    msg = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id + body
    return struct.pack(">i", len(msg)) + msg


def read_frame(sock):
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (n,) = struct.unpack(">i", head)
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def closed(sock, timeout=5):
    """True when the server closes `sock` (EOF or reset) within `timeout` s without a reply."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def handshake(sock, mech, corr=1):
    m = mech.encode()
    sock.sendall(frame(17, 1, corr, struct.pack(">h", len(m)) + m))
    data = read_frame(sock)
    (error,) = struct.unpack(">h", data[4:6])
    return error


def authenticate(sock, token, corr=2):
    """SaslAuthenticate v1: (error code, message, auth bytes), or None when the server closed."""
    sock.sendall(frame(36, 1, corr, struct.pack(">i", len(token)) + token))
    data = read_frame(sock)
    if data is None:
        return None
    (error, mlen) = struct.unpack(">hh", data[4:8])
    pos = 8 + max(mlen, 0)
    message = data[8:pos].decode() if mlen >= 0 else None
    (blen,) = struct.unpack(">i", data[pos:pos + 4])
    return error, message, data[pos + 4:pos + 4 + blen]


def plain_login(addr, user, password):
    """One PLAIN login over a raw socket: the SaslAuthenticate error code (0 ok), None if closed."""
    host, port = addr.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        assert handshake(s, "PLAIN") == 0
        r = authenticate(s, b"\0" + user.encode() + b"\0" + password.encode())
        return None if r is None else r[0]


def scram_first(addr, user, nonce, mech="SCRAM-SHA-256"):
    """Opens a SCRAM exchange: (socket, client-first-bare, error code, server-first)."""
    host, port = addr.split(":")
    s = socket.create_connection((host, int(port)), timeout=30)
    assert handshake(s, mech) == 0
    bare = f"n={user},r={nonce}"
    error, _, server_first = authenticate(s, ("n,," + bare).encode())
    return s, bare, error, server_first.decode()


def scram_final(opened, password, corr=3):
    """Sends client-final with `password`'s proof on an exchange scram_first opened: the error code."""
    s, bare, _, server_first = opened
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    without_proof = f"c=biws,r={attrs['r']}"
    message = f"{bare},{server_first},{without_proof}".encode()
    signature = hmac.new(stored_key, message, hashlib.sha256).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
    r = authenticate(s, f"{without_proof},p={proof}".encode(), corr)
    return None if r is None else r[0]


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS"))


def register(test, Busbar, bin_path):
    BIN_PATH[0] = bin_path
    Sasl = sasl_server(Busbar)

    def own(fn):
        fn.own_server = True
        return test(fn)

    @own
    def sasl_confluent_produce_and_consume_in_a_group_with_every_mechanism(_):
        from confluent_kafka import Consumer, Producer
        from confluent_kafka.admin import AdminClient
        b = Sasl()
        try:
            b.user("alice", "alice-pw")
            md = AdminClient(confluent_conf(b, "SCRAM-SHA-256", "alice", "alice-pw")).list_topics(timeout=20)
            advertised = [f"{x.host}:{x.port}" for x in md.brokers.values()]
            assert advertised == [b.sasl], f"Metadata gives the SASL listener: {advertised} vs {b.sasl}"
            md = AdminClient({"bootstrap.servers": b.plain}).list_topics(timeout=20)
            advertised = [f"{x.host}:{x.port}" for x in md.brokers.values()]
            assert advertised == [b.plain], f"and the PLAINTEXT one there: {advertised} vs {b.plain}"
            for mech in MECHS:
                topic = "t-" + mech.lower()
                p = Producer(confluent_conf(b, mech, "alice", "alice-pw"))
                for i in range(10):
                    p.produce(topic, value=f"{mech}-{i}".encode())
                assert p.flush(30) == 0, mech
                c = Consumer(confluent_conf(b, mech, "alice", "alice-pw", **{
                    "group.id": "g-" + mech, "auto.offset.reset": "earliest"}))
                c.subscribe([topic])
                got, deadline = [], time.time() + 30
                while len(got) < 10 and time.time() < deadline:
                    m = c.poll(1.0)
                    if m is not None and not m.error():
                        got.append(m.value().decode())
                c.commit(asynchronous=False)
                c.close()
                assert got == [f"{mech}-{i}" for i in range(10)], (mech, got)
        finally:
            b.stop()

    @own
    def sasl_kafka_python_produce_and_consume_in_a_group_with_every_mechanism(_):
        from kafka import KafkaConsumer, KafkaProducer
        b = Sasl()
        try:
            b.user("alice", "alice-pw")
            for mech in MECHS:
                conf = dict(bootstrap_servers=b.sasl, security_protocol="SASL_PLAINTEXT", sasl_mechanism=mech,
                            sasl_plain_username="alice", sasl_plain_password="alice-pw")
                topic = "kp-" + mech.lower()
                p = KafkaProducer(**conf)
                for i in range(10):
                    p.send(topic, value=f"{mech}-{i}".encode())
                p.flush(30)
                p.close()
                c = KafkaConsumer(topic, group_id="kg-" + mech, auto_offset_reset="earliest",
                                  consumer_timeout_ms=15000, **conf)
                got = []
                for m in c:
                    got.append(m.value.decode())
                    if len(got) == 10:
                        break
                c.commit()
                c.close()
                assert got == [f"{mech}-{i}" for i in range(10)], (mech, got)
        finally:
            b.stop()

    @own
    def sasl_wrong_password_and_unknown_user_fail_with_the_clients_authentication_error(_):
        from confluent_kafka import KafkaError, Producer
        from kafka import KafkaProducer
        import kafka.errors
        b = Sasl()
        try:
            b.user("alice", "alice-pw")
            for mech in MECHS:
                for user, pw in [("alice", "wrong"), ("nobody", "alice-pw")]:
                    errors = []
                    p = Producer(confluent_conf(b, mech, user, pw, error_cb=errors.append))
                    p.produce("never", value=b"x")
                    deadline = time.time() + 20
                    while not errors and time.time() < deadline:
                        p.poll(0.2)
                    codes = [e.code() for e in errors]
                    assert KafkaError._AUTHENTICATION in codes, (mech, user, errors)
                    p.purge()
                    time.sleep(0.25)  # past the (user, address) backoff of 200 ms at most
                # kafka-python raises its authentication error inside its network thread and logs it;
                # the constructor then fails to bootstrap.
                seen = Captured()
                logging.getLogger("kafka").addHandler(seen)
                try:
                    KafkaProducer(bootstrap_servers=b.sasl, security_protocol="SASL_PLAINTEXT", sasl_mechanism=mech,
                                  sasl_plain_username="alice", sasl_plain_password="wrong",
                                  bootstrap_timeout_ms=3000).close()
                    raise AssertionError(f"kafka-python {mech}: a wrong password was accepted")
                except kafka.errors.KafkaError:
                    pass
                finally:
                    logging.getLogger("kafka").removeHandler(seen)
                assert any(isinstance(e, kafka.errors.SaslAuthenticationFailedError) for e in seen.errors), \
                    (mech, seen.messages[:3])
                time.sleep(0.25)
            status, _ = b.call("GET", "/topics", user="alice", password="wrong")
            assert status == 401
            assert "never" not in json.dumps(b.call("GET", "/topics")[1]), "nothing was produced"
        finally:
            b.stop()

    @own
    def sasl_admin_client_alters_and_describes_scram_credentials(_):
        from confluent_kafka import KafkaException, Producer
        from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                           ResourcePatternType, ResourceType, ScramCredentialInfo, ScramMechanism,
                                           UserScramCredentialDeletion, UserScramCredentialUpsertion)
        b = Sasl()
        try:
            admin = AdminClient(confluent_conf(b, "SCRAM-SHA-512", "admin", ADMIN_PW))
            up = UserScramCredentialUpsertion("dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192),
                                              b"dave-pw")
            for f in admin.alter_user_scram_credentials([up]).values():
                f.result(timeout=20)
            desc = admin.describe_user_scram_credentials(["dave"])["dave"].result(timeout=20)
            infos = [(i.mechanism, i.iterations) for i in desc.scram_credential_infos]
            assert infos == [(ScramMechanism.SCRAM_SHA_256, 8192)], infos
            status, users = b.call("GET", "/users")
            assert [u["name"] for u in users["users"]] == ["admin", "dave"], users
            p = Producer(confluent_conf(b, "SCRAM-SHA-256", "dave", "dave-pw"))
            p.produce("dave-t", value=b"hi")
            assert p.flush(30) == 0, "dave logs in with the credential the AdminClient set"
            bad = UserScramCredentialUpsertion("erin", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 100), b"pw")
            try:
                admin.alter_user_scram_credentials([bad])["erin"].result(timeout=20)
                raise AssertionError("100 iterations were accepted")
            except KafkaException as e:
                assert e.args[0].code() == 93, e  # UNACCEPTABLE_CREDENTIAL
            b.user("alice", "alice-pw")
            alice = AdminClient(confluent_conf(b, "PLAIN", "alice", "alice-pw"))
            # Managing users needs ALTER on the cluster. An ACL names the cluster, so
            # auth.allow_if_no_acl (on in these tests) does not grant it.
            cluster = lambda who, op: AclBinding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL,
                                                 f"User:{who}", "*", op, AclPermissionType.ALLOW)
            for f in admin.create_acls([cluster("dave", AclOperation.DESCRIBE)]).values():
                f.result(20)
            zed = UserScramCredentialUpsertion("zed", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"pw")
            try:
                alice.alter_user_scram_credentials([zed])["zed"].result(timeout=20)
                raise AssertionError("a user without ALTER on the cluster altered credentials")
            except KafkaException as e:
                assert e.args[0].code() == 31, e  # CLUSTER_AUTHORIZATION_FAILED
            # (Not describe_user_scram_credentials as alice: confluent-kafka 2.16 crashes the process
            # on that API's top-level error code, which busbar sends as Kafka does.)
            assert "zed" not in json.dumps(b.call("GET", "/users")[1])
            for f in admin.create_acls([cluster("alice", AclOperation.ALTER)]).values():
                f.result(20)
            alice.alter_user_scram_credentials([zed])["zed"].result(timeout=20)
            assert "zed" in json.dumps(b.call("GET", "/users")[1]), "ALTER on the cluster lets alice"
            gone = UserScramCredentialDeletion("dave", ScramMechanism.SCRAM_SHA_256)
            admin.alter_user_scram_credentials([gone])["dave"].result(timeout=20)
            try:
                admin.describe_user_scram_credentials(["dave"])["dave"].result(timeout=20)
                raise AssertionError("dave is still described")
            except KafkaException as e:
                assert e.args[0].code() == 91, e  # RESOURCE_NOT_FOUND
        finally:
            b.stop()

    @own
    def sasl_hostile_clients_cost_only_their_connection(_):
        b = Sasl()
        try:
            b.user("alice", "alice-pw")
            host, port = b.sasl.split(":")
            addr = (host, int(port))
            # A request before authentication (Metadata v1, all topics): closed without an answer.
            with socket.create_connection(addr, timeout=10) as s:
                s.sendall(frame(3, 1, 7, struct.pack(">i", -1)))
                assert closed(s), "Metadata before authentication was answered"
            b.wait_log(r"Metadata.*before SASL authentication; connection closed")
            # Garbage SaslAuthenticate bytes: SASL_AUTHENTICATION_FAILED, then closed.
            for mech in MECHS:
                with socket.create_connection(addr, timeout=10) as s:
                    assert handshake(s, mech) == 0
                    r = authenticate(s, os.urandom(300))
                    assert r is not None and r[0] == 58, (mech, r)
                    answered = time.time()
                    assert closed(s), mech
                    # As Kafka (connection.failed.authentication.delay.ms), the close comes 100 ms
                    # after the answer, so clients read the error before they see the close.
                    assert time.time() - answered >= 0.08, f"{mech}: closed right after the answer"
                time.sleep(0.25)
            # SaslAuthenticate before a handshake: ILLEGAL_SASL_STATE, then closed.
            with socket.create_connection(addr, timeout=10) as s:
                r = authenticate(s, b"\0alice\0alice-pw")
                assert r is not None and r[0] == 34, r
                assert closed(s)
            # A v0 handshake: raw size-prefixed tokens follow (no Kafka header), then requests.
            with socket.create_connection(addr, timeout=10) as s:
                m = b"PLAIN"
                s.sendall(frame(17, 0, 1, struct.pack(">h", len(m)) + m))
                assert struct.unpack(">h", read_frame(s)[4:6])[0] == 0
                token = b"\0alice\0alice-pw"
                s.sendall(struct.pack(">i", len(token)) + token)
                assert read_frame(s) == b"", "PLAIN answers an empty token"
                s.sendall(frame(3, 1, 9, struct.pack(">i", -1)))
                assert struct.unpack(">i", read_frame(s)[:4])[0] == 9, "Metadata answered once authenticated"
            with socket.create_connection(addr, timeout=10) as s:
                m = b"PLAIN"
                s.sendall(frame(17, 0, 1, struct.pack(">h", len(m)) + m))
                read_frame(s)
                token = b"\0alice\0wrong"
                s.sendall(struct.pack(">i", len(token)) + token)
                assert closed(s), "a failed v0 login closes"
            time.sleep(0.25)
            # An unknown mechanism: UNSUPPORTED_SASL_MECHANISM with the list.
            with socket.create_connection(addr, timeout=10) as s:
                assert handshake(s, "GSSAPI") == 33
            # An oversized SASL frame (over kafka.sasl_bytes_max, 512 KiB): closed before it is read.
            with socket.create_connection(addr, timeout=10) as s:
                s.sendall(struct.pack(">i", 600_000))
                assert closed(s), "an oversized SASL frame was read"
            # 1,000 failed logins from 50 connections at a time: all refused, backoff applies, and a
            # good login and the HTTP API stay quick meanwhile.
            results, lock = [], threading.Lock()

            def attack(n):
                for i in range(20):
                    code = plain_login(b.sasl, f"victim{n % 5}", f"guess{i}")
                    with lock:
                        results.append(code)

            start = time.time()
            threads = [threading.Thread(target=attack, args=(n,)) for n in range(50)]
            for t in threads:
                t.start()
            time.sleep(0.5)
            t0 = time.time()
            assert plain_login(b.sasl, "alice", "alice-pw") == 0
            good = time.time() - t0
            t0 = time.time()
            assert b.call("GET", "/healthz", user=None)[0] == 200
            health = time.time() - t0
            for t in threads:
                t.join(120)
            took = time.time() - start
            assert len(results) == 1000 and set(results) == {58}, set(results)
            assert good < 2 and health < 1, (good, health)
            # Backoff: 200 logins per (user, address), each held back 100-200 ms, 10 at a time each.
            assert took > 1.5, f"1,000 failed logins took {took:.1f}s: no backoff"
            print(f"        1,000 failed logins in {took:.1f}s; a good login took {good * 1000:.0f} ms meanwhile",
                  flush=True)
        finally:
            b.stop()

    @own
    def sasl_scram_exchange_opened_before_a_backoff_fails_unchecked_while_it_lasts(_):
        # Exchanges opened before (admin, address) began backing off must not check proofs while it
        # backs off: else pre-opened exchanges give an attacker parallel guesses.
        b = Sasl(extra_env={"BUSBAR_AUTH_BACKOFF_MAX_MS": "5000"})
        try:
            opened = [scram_first(b.sasl, "admin", f"n{i}") for i in range(10)]
            assert all(o[2] == 0 for o in opened), [o[2] for o in opened]
            wrong = []
            threads = [threading.Thread(target=lambda o=o: wrong.append(scram_final(o, "guess")))
                       for o in opened[:9]]
            for t in threads:
                t.start()
            time.sleep(0.3)  # the nine guesses are checked; their answers are held back (up to 5 s)
            right = scram_final(opened[9], ADMIN_PW)
            assert right == 58, f"the right password on a pre-opened exchange while backing off: {right}"
            for t in threads:
                t.join(30)
            assert wrong == [58] * 9, wrong
            # The refused right password was held back as long as the backoff it extended lasts.
            time.sleep(0.5)
            again = scram_first(b.sasl, "admin", "later")
            assert scram_final(again, ADMIN_PW) == 0, "once the backoff is over the password works"
        finally:
            b.stop()

    @own
    def sasl_failed_logins_with_huge_user_names_are_not_remembered_in_full(_):
        # 600 PLAIN logins with distinct 400 KiB user names (under kafka.sasl_bytes_max): the backoff
        # table must not keep the names (~240 MiB).
        b = Sasl()
        try:
            host, port = b.sasl.split(":")

            def attempt(i):
                with socket.create_connection((host, int(port)), timeout=30) as s:
                    assert handshake(s, "PLAIN") == 0
                    name = (b"%06d" % i) + b"u" * (400 << 10)
                    r = authenticate(s, b"\0" + name + b"\0wrong")
                    assert r is None or r[0] == 58, r[:2]

            def worker(k):
                for i in range(k, 600, 16):
                    attempt(i)

            time.sleep(0.5)
            before = rss_mib(b.proc.pid)
            threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            time.sleep(1)
            after = rss_mib(b.proc.pid)
            assert after - before < 50, f"RSS {before} MiB before, {after} MiB after 600 huge failed logins"
            assert plain_login(b.sasl, "admin", ADMIN_PW) == 0
        finally:
            b.stop()

    @own
    def sasl_admin_client_refused_alteration_changes_nothing_of_that_user(_):
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                           UserScramCredentialDeletion, UserScramCredentialUpsertion)
        b = Sasl()
        try:
            admin = AdminClient(confluent_conf(b, "SCRAM-SHA-512", "admin", ADMIN_PW))
            up = UserScramCredentialUpsertion("alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096),
                                              b"alice-pw", b"salt1234")
            admin.alter_user_scram_credentials([up])["alice"].result(timeout=20)
            # One request: delete alice's SHA-256 (exists) and her SHA-512 (does not): refused whole.
            req = [UserScramCredentialDeletion("alice", ScramMechanism.SCRAM_SHA_256),
                   UserScramCredentialDeletion("alice", ScramMechanism.SCRAM_SHA_512)]
            try:
                admin.alter_user_scram_credentials(req)["alice"].result(timeout=20)
                raise AssertionError("deleting a missing credential was accepted")
            except KafkaException as e:
                assert e.args[0].code() == 91, e  # RESOURCE_NOT_FOUND
            desc = admin.describe_user_scram_credentials(["alice"])["alice"].result(timeout=20)
            infos = [(i.mechanism, i.iterations) for i in desc.scram_credential_infos]
            assert infos == [(ScramMechanism.SCRAM_SHA_256, 4096)], f"the refused request changed alice: {infos}"
        finally:
            b.stop()

    @own
    def sasl_connections_that_do_not_authenticate_in_time_are_closed(_):
        # kafka.sasl_timeout_ms: a SASL listener's connection not authenticated by then is closed
        # (silent, or stuck after the handshake); an authenticated one stays open past it.
        b = Sasl(extra_env={"BUSBAR_KAFKA_SASL_TIMEOUT_MS": "1000"})
        try:
            host, port = b.sasl.split(":")
            addr = (host, int(port))
            with socket.create_connection(addr, timeout=10) as silent, \
                    socket.create_connection(addr, timeout=10) as stuck, \
                    socket.create_connection(addr, timeout=10) as good:
                t0 = time.time()
                assert handshake(stuck, "PLAIN") == 0
                assert handshake(good, "PLAIN") == 0
                assert authenticate(good, b"\0admin\0" + ADMIN_PW.encode())[0] == 0
                assert closed(silent, 5), "a silent connection outlived kafka.sasl_timeout_ms"
                assert closed(stuck, 5), "a connection stuck after SaslHandshake outlived it"
                took = time.time() - t0
                assert 0.8 < took < 8, f"closed after {took:.1f}s, kafka.sasl_timeout_ms is 1 s"
                time.sleep(0.5)
                good.sendall(frame(3, 1, 9, struct.pack(">i", -1)))
                reply = read_frame(good)
                assert reply is not None and struct.unpack(">i", reply[:4])[0] == 9, "authenticated one closed"
            b.wait_log(r"not authenticated within kafka.sasl_timeout_ms")
        finally:
            b.stop()
