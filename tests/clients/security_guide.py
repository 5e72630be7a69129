"""docs/security.md is a test (issue 16, "every example in it runs in a test"): every fenced block of
the guide is run here, run by a named Rust test, or marked as not run, and the test fails on a
block that is none of these. Registered into run.py's tests; `python3 security_guide.py BIN`
runs it alone.

How a block is accounted for:
  - run here: the runner below looks it up by its section and place (`guide.take(section, lang)`)
    and runs it as written, on free ports: the guide's addresses (127.0.0.1:8080, :9092, :9093,
    :9094, :8443, localhost:8080) are replaced by the ones the server bound. Shell blocks run in
    `bash` with `set -eo pipefail`, `busbar` on PATH and `curl` failing on HTTP errors
    (`--fail-with-body`), so any failing command fails the test naming the guide's line. Python
    blocks are executed, then the objects they made are used (a Producer produces, an
    AdminClient's answers are checked). The JSON block of "Audit log" must have the fields of the
    lines the server really wrote.
  - run by a Rust test: an HTML comment `<!-- run by PATH FUNCTION -->` on the line before the
    fence; PATH must define `fn FUNCTION` and read docs/security.md.
  - not run: `<!-- not run: REASON -->` on the line before the fence.
"""
import base64, json, os, re, shutil, signal, subprocess, sys, tempfile, threading, time, urllib.error, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.realpath(os.path.join(HERE, "..", ".."))
GUIDE = os.path.join(ROOT, "docs", "security.md")
MARK = re.compile(r"^\s*<!--\s*(run by (\S+) (\S+)|not run: .+?)\s*-->\s*$")


class Block:
    def __init__(self, line, lang, text, section, mark):
        self.line, self.lang, self.text, self.section, self.mark = line, lang, text, section, mark

    def where(self):
        return f"docs/security.md:{self.line}"


class Guide:
    """The fenced blocks of docs/security.md, each with its section and the marker before it."""

    def __init__(self, path=GUIDE):
        self.blocks, self.taken = [], set()
        lines = open(path).read().split("\n")
        section, i = "", 0
        while i < len(lines):
            if lines[i].startswith("## "):
                section = lines[i][3:].strip()
            m = re.match(r"^(\s*)(```+)(\S*)\s*$", lines[i])
            if not m:
                i += 1
                continue
            indent, fence, lang, start = len(m.group(1)), m.group(2), m.group(3), i + 1
            prev = next((l for l in reversed(lines[:i]) if l.strip()), "")
            body = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(fence):
                body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
                i += 1
            assert i < len(lines), f"docs/security.md:{start}: unclosed code fence"
            i += 1
            mark = MARK.match(prev)
            self.blocks.append(Block(start + 1, lang, "\n".join(body) + "\n", section,
                                     mark.group(1) if mark else None))

    def take(self, section, lang):
        """The next block of `lang` in `section` not yet taken (and not marked)."""
        for b in self.blocks:
            if b.section.startswith(section) and b.lang == lang and b.line not in self.taken and not b.mark:
                self.taken.add(b.line)
                return b
        raise AssertionError(f"docs/security.md has no further ```{lang} block in '{section}'")

    def unaccounted(self):
        """Errors for blocks neither run here nor marked, and markers naming no such test."""
        errors = []
        for b in self.blocks:
            if b.mark and b.mark.startswith("run by "):
                path, fn = b.mark.split(" ")[2:4]
                full = os.path.join(ROOT, path)
                src = open(full).read() if os.path.isfile(full) else ""
                if f"fn {fn}(" not in src or "docs/security.md" not in src:
                    errors.append(f"{b.where()}: {path} has no fn {fn} reading docs/security.md")
            elif not b.mark and b.line not in self.taken:
                errors.append(f"{b.where()}: ```{b.lang} block in '{b.section}' is not run by any "
                              "test; run it or mark it <!-- not run: reason -->")
        return errors


class Server:
    """`busbar serve` started by the guide's own command line, in `cwd`, on free ports."""

    def __init__(self, command, cwd, env):
        self.proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, text=True,
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise AssertionError(f"`{command}` exited before it was ready: {self.proc.stderr.read()}")
            m = re.search(r"ready in .* (https?)://(\S+) kafka (\S+) listeners (\S+) ", line)
            if m:
                self.scheme, self.http = m.group(1), m.group(2)
                self.ca = os.path.join(cwd, "certs", "ca.pem")
                self.listeners = dict(u.split("://") for u in m.group(4).split(","))
                self.log = []
                threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()
                return
        raise AssertionError(f"`{command}` did not become ready")

    def stop(self):
        """SIGTERM to the command's process group (bash and busbar)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)


class Run:
    """One temporary directory with `busbar` and a failing `curl` on PATH."""

    def __init__(self, binary):
        self.tmp = tempfile.TemporaryDirectory()
        self.cwd = self.tmp.name
        bin_dir = os.path.join(self.cwd, ".bin")
        os.mkdir(bin_dir)
        os.symlink(os.path.abspath(binary), os.path.join(bin_dir, "busbar"))
        with open(os.path.join(bin_dir, "curl"), "w") as f:
            f.write(f'#!/bin/sh\nexec {shutil.which("curl")} --fail-with-body -sS "$@"\n')
        os.chmod(os.path.join(bin_dir, "curl"), 0o755)
        clean = {k: v for k, v in os.environ.items() if not k.startswith("BUSBAR_")}
        self.env = dict(clean, PATH=bin_dir + os.pathsep + os.environ["PATH"])
        self.addrs = {}  # the guide's address -> the bound one

    def real(self, text):
        for guide, real in self.addrs.items():
            text = text.replace(guide, real)
        return text

    def sh(self, block, env=None):
        """Runs a shell block as written (addresses replaced); its output."""
        script = ("set -eo pipefail\n"
                  f"trap 'echo \"docs/security.md:$(({block.line - 3} + LINENO)): exit $?: $BASH_COMMAND\" >&2' ERR\n"
                  + self.real(block.text))
        out = subprocess.run(["bash", "-c", script], cwd=self.cwd, env=dict(self.env, **(env or {})),
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"{block.where()} failed:\n{out.stdout}\n{out.stderr}"
        return out.stdout

    def python(self, block):
        """Executes a Python block as written (addresses replaced, in the run's directory); its names."""
        names = {}
        here = os.getcwd()
        os.chdir(self.cwd)
        try:
            exec(compile(self.real(block.text), block.where(), "exec"), names)
        finally:
            os.chdir(here)
        return names

    def serve(self, block, extra_env):
        lines = [l for l in block.text.split("\n") if l.strip()]
        assert "busbar serve" in lines[0], f"{block.where()}: the first line starts busbar: {lines[0]}"
        server = Server(lines[0], self.cwd, dict(self.env, **extra_env))
        return server, lines[1:]


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def http(server, method, path, body=None, auth=("admin", "change-me")):
    import ssl
    ctx = ssl.create_default_context(cafile=server.ca) if server.scheme == "https" else None
    req = urllib.request.Request(f"{server.scheme}://{server.http}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"content-type": "application/json", "authorization": basic(*auth)})
    with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
        text = r.read()
        return json.loads(text) if text else None


def five_minutes(guide, run, binary):
    """'Set up in five minutes' as written, then 'Kafka ACLs', 'Quotas' and the audit example
    against the same server."""
    config = guide.take("Set up in five minutes", "toml")
    with open(os.path.join(run.cwd, "busbar.toml"), "w") as f:
        f.write(re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:0", config.text))
    serve = guide.take("Set up in five minutes", "sh")
    server, rest = run.serve(serve, {"BUSBAR_HTTP_ADDR": "127.0.0.1:0"})
    try:
        assert not rest, f"{serve.where()}: only the serve command"
        run.addrs = {"127.0.0.1:8080": server.http, "localhost:8080": server.http,
                     "127.0.0.1:9094": server.listeners["SASL_PLAINTEXT"],
                     "127.0.0.1:9092": server.listeners["PLAINTEXT"]}
        url = {"BUSBAR_SERVER": f"http://{server.http}"}
        # Users: alice is created over HTTP; bob by the CLI, listed, deleted.
        out = run.sh(guide.take("Set up in five minutes", "sh"), url)
        assert "bob" in out, f"`busbar user list` listed bob: {out}"
        users = [u["name"] for u in http(server, "GET", "/users")["users"]]
        assert sorted(users) == ["admin", "alice"], users
        # Tokens: made, used, listed and revoked.
        out = run.sh(guide.take("Set up in five minutes", "sh"), url)
        assert '"name":"ci"' in out.replace(" ", ""), out
        assert http(server, "GET", "/tokens?user=alice")["tokens"] == [], "revoked"
        # Clients: the Producer of step 5 logs in as alice with SCRAM-SHA-512.
        names = run.python(guide.take("Set up in five minutes", "python"))
        meta = names["p"].list_topics(timeout=20)
        assert meta.brokers, meta
        kafka_acls(guide, run, server)
        quotas(guide, run, server, url)
        audit_example(guide, run, server)
        names.clear()
    finally:
        server.stop()


def kafka_acls(guide, run, server):
    """'Kafka ACLs': the AdminClient block creates alice's prefixed WRITE and describes it by MATCH;
    then alice (step 5's Producer settings) may write orders-eu."""
    names = run.python(guide.take("Kafka ACLs", "python"))
    found = names["described"]
    assert [(a.name, a.principal, str(a.operation)) for a in found] == \
        [("orders-", "User:alice", "AclOperation.WRITE")], found
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": server.listeners["SASL_PLAINTEXT"], "security.protocol": "SASL_PLAINTEXT",
                  "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "alice", "sasl.password": "alice-secret",
                  "allow.auto.create.topics": False})
    from confluent_kafka.admin import NewTopic
    for topic, done in names["admin"].create_topics([NewTopic("orders", 1), NewTopic("orders-eu", 1)]).items():
        done.result(20)
    errors = []
    p.produce("orders-eu", b"1", on_delivery=lambda e, m: errors.append(e))
    assert p.flush(20) == 0 and errors == [None], errors


def quotas(guide, run, server, url):
    """'Quotas': the curl block sets, lists and removes alice's quota."""
    out = run.sh(guide.take("Quotas", "sh"), url)
    assert '"producer_byte_rate":1048576' in out.replace(" ", ""), out
    assert http(server, "GET", "/quotas")["quotas"] == [], "deleted"


def audit_example(guide, run, server):
    """'Audit log': each example line is JSON with the fields of a line the server wrote for the
    same operation (a failed Basic login by mallory made here, the admin's changes above)."""
    try:
        http(server, "GET", "/topics", auth=("mallory", "guess"))
        raise AssertionError("mallory was let in")
    except urllib.error.HTTPError as e:
        assert e.code == 401, e
    block = guide.take("Audit log", "json")
    examples = [json.loads(line) for line in block.text.strip().split("\n")]
    # The same line but for its time and port; the guide's listener is the one bound.
    def kinds(line):
        rest = {k: v for k, v in line.items() if k not in ("time", "peer")}
        return (json.dumps(rest, sort_keys=True), line["peer"].split(":")[0],
                re.sub(r"\d", "0", line["time"]))
    examples = [dict(e, listener=run.real(e["listener"])) for e in examples]
    deadline = time.time() + 10
    while True:
        written = [json.loads(l) for l in open(os.path.join(run.cwd, "busbar-data", "audit.log"))]
        missing = [e for e in examples if kinds(e) not in {kinds(l) for l in written}]
        if not missing or time.time() > deadline:
            break
        time.sleep(0.05)
    assert not missing, f"{block.where()}: no line written like {missing}; written: {written}"


def tls_clients(guide, run):
    """'TLS' step 4: the two Producers of the guide, on the guide's certificates and configuration
    (steps 1-3 run in crates/busbar/tests/tls.rs). alice's certificate is her principal: with a
    WRITE ACL for User:alice only, the SSL Producer may write."""
    run.sh(next(b for b in guide.blocks if b.section.startswith("TLS") and b.lang == "sh"))
    config = next(b for b in guide.blocks if b.section.startswith("TLS") and b.lang == "toml")
    with open(os.path.join(run.cwd, "busbar.toml"), "w") as f:
        f.write(re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:0", config.text))
    server = Server("busbar serve --config busbar.toml", run.cwd,
                    dict(run.env, BUSBAR_ADMIN_PASSWORD="change-me"))
    try:
        run.addrs = {"127.0.0.1:9093": server.listeners["SASL_SSL"], "127.0.0.1:9094": server.listeners["SSL"]}
        http(server, "POST", "/topics", {"name": "guide", "partitions": 1})
        http(server, "POST", "/acls", {"resource_type": "TOPIC", "resource_name": "guide",
                                       "principal": "User:alice", "operation": "WRITE", "permission": "ALLOW"})
        names = run.python(guide.take("TLS", "python"))
        for producer in ("sasl_ssl", "ssl"):
            errors = []
            names[producer].produce("guide", producer.encode(), on_delivery=lambda e, m: errors.append(e))
            assert names[producer].flush(20) == 0 and errors == [None], (producer, errors)
        audit = os.path.join(run.cwd, "busbar-data", "audit.log")
        lines = [json.loads(l) for l in open(audit)] if os.path.exists(audit) else []
        assert not [l for l in lines if l["outcome"] == "denied"], lines
    finally:
        server.stop()


def check(binary):
    guide = Guide()
    for step in (five_minutes, lambda g, r, _b: tls_clients(g, r)):
        run = Run(binary)
        try:
            step(guide, run, binary)
        finally:
            run.tmp.cleanup()
    errors = guide.unaccounted()
    assert not errors, "docs/security.md:\n  " + "\n  ".join(errors)


def register(test, binary):
    def security_guide_every_example_runs(_):
        check(binary)
    security_guide_every_example_runs.own_server = True
    test(security_guide_every_example_runs)


if __name__ == "__main__":
    check(sys.argv[1])
    print("docs/security.md: every block runs or is marked")
