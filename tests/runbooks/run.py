#!/usr/bin/env python3
"""The on-call runbooks are tests: every ```sh block of docs/runbooks/F*.md runs as written against
a fresh busbar that holds the runbook's scenario, and the runbooks keep their shape.

Usage: run.py PATH/TO/busbar [-v] [RUNBOOK...]   (RUNBOOK: a file name such as F1-consumer-lag,
                                                  or its prefix F1; default: all nine)

For each runbook:
  1. `busbar serve` starts in a new temporary directory (data dir, busbar.toml with
     authentication on and the super user `admin`, HTTP and Kafka on free ports of 127.0.0.1 that
     the server picks (port 0, read back from its "ready in" line), no schema registry listener,
     no initial rebalance delay for new groups).
  2. The scenario the runbooks name is set up through the CLI (base_scenario below): topics `orders`
     (3 partitions, events on each, a hot key `customer-7`) and `orders-dlq`; the consumer group
     `billing` with committed offsets and lag (`busbar consume --group`); the subscription
     `orders-to-webhook` whose HTTP target (a webhook this script serves on 127.0.0.1) answered 503
     until every event was dead-lettered into `orders-dlq`. Then each runbook's own extras (EXTRAS).
  3. Each ```sh block runs in order, in `bash` with `set -eo pipefail`, in that directory, with
     `busbar` on PATH (a link to the given binary), BUSBAR_SERVER pointing at the server and
     BUSBAR_USER/BUSBAR_PASSWORD the super user's (as the runbooks' README tells on-call to set).
     A non-zero exit fails the runbook, naming the file's line, the command, and the output.
  4. The server gets SIGTERM and must stop cleanly (exit 0).

Blocks of other languages (text, promql, toml, json) are shown, not run: ```text holds what must
not run in a test (systemctl, journalctl, host paths). Checks besides running:
  - the nine files exist with exactly the names RUNBOOKS, plus README.md linking each of them;
  - each runbook has the sections Symptom, Dashboard, Diagnose, Fix, Prevent (## headings, in
    that order), its Dashboard section names a dashboard (DASHBOARDS) and holds a ```promql block;
  - every panel a runbook's Dashboard section names (`busbar-oncall` → **Title**: each **bold**
    title belongs to the dashboard named last before it), and every panel of the README's
    "## Dashboards" table, is the title of a panel or row of deploy/grafana/<dashboard>.json
    (nested rows' panels included);
  - every busbar_* metric named in a runbook is listed in docs/metrics.md or served by /metrics
    (histogram series may add _bucket, _sum, _count);
  - where deploy/prometheus/rules.yml exists: every alert's runbook_url names one of the runbooks
    and that runbook names the alert, and every `BusbarXxx` alert a runbook names is defined;
  - a shell fence is ```sh only (```bash/```shell/```console would look runnable and be skipped),
    and no block that is not run starts a line with `busbar ` other than `busbar serve`, so every
    busbar command a runbook shows runs here.

Prints "ok <runbook>" per runbook and a closing "runbooks: N passed, N failed" line; exits 1 if
any failed. Processes: the server and each block's bash get their own session (process group);
a block's group is killed when it ends, and on exit, including SIGINT/SIGTERM/SIGHUP of this
script, every group still alive gets SIGTERM, then SIGKILL after GRACE_SECONDS. The webhook is a
thread of this process.
"""
import http.server, json, os, re, shutil, signal, subprocess, sys, tempfile, threading, time

ROOT = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
RUNBOOK_DIR = os.path.join(ROOT, "docs", "runbooks")
RUNBOOKS = ["F1-consumer-lag", "F2-message-loss", "F3-duplicates", "F4-schema-break",
            "F5-hot-partition", "F6-broker-down", "F7-authorization-failure", "F8-backpressure",
            "F9-retention-overflow"]
SECTIONS = ["Symptom", "Dashboard", "Diagnose", "Fix", "Prevent"]
DASHBOARDS = ["busbar-executive", "busbar-oncall", "busbar-debug"]
GRAFANA_DIR = "deploy/grafana"
RULES = "deploy/prometheus/rules.yml"
SHELL_FENCES = {"bash", "shell", "console", "zsh"}  # refused: only ```sh runs
ADMIN_PASSWORD = "runbook-admin-secret"
BLOCK_TIMEOUT = 120
SETUP_TIMEOUT = 30
GRACE_SECONDS = 5
CONFIG = """\
[auth]
enabled = true
super_users = ["admin"]

[broker]
group_initial_rebalance_delay_ms = 0
"""

STARTED = []  # every process started, each the leader of its own process group
WORKDIRS = []  # temporary directories to remove once their processes are gone
PANEL_TITLES = {}  # dashboard name: its panel and row titles (panel_titles)


class Stopped(BaseException):
    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class Failed(Exception):
    """A runbook failed: the message says where and why."""


def on_signal(signum, _frame):
    raise Stopped(signum)


def spawn(args, **kwargs):
    proc = subprocess.Popen(args, start_new_session=True, **kwargs)
    STARTED.append(proc)
    return proc


def signal_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def end_group(proc, sig=signal.SIGKILL):
    """Sends `sig` to proc's group, waits up to GRACE_SECONDS, then kills what is left of it."""
    if proc.poll() is None:
        signal_group(proc, sig)
        try:
            proc.wait(GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            pass
    signal_group(proc, signal.SIGKILL)
    try:
        proc.wait(GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    if proc in STARTED:  # ended: its group id may be reused, so never signal it again
        STARTED.remove(proc)


def cleanup():
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the cleanup short
    while STARTED:
        end_group(STARTED.pop(), signal.SIGTERM)
    while WORKDIRS:
        shutil.rmtree(WORKDIRS.pop(), ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Reading and checking the runbooks


class Block:
    def __init__(self, line, info, text):
        self.line = line  # file line of the block's first line (the fence is the line before)
        self.lang = (info.split() or [""])[0]
        self.info = info
        self.text = text


def parse(path):
    """The fenced blocks of a Markdown file and its ## headings (title, line)."""
    blocks, headings, lines = [], [], open(path).read().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^(```+)(.*)$", lines[i])
        if not m:
            h = re.match(r"^## (.+?)\s*$", lines[i])
            if h:
                headings.append((h.group(1), i + 1))
            i += 1
            continue
        fence, info, start = m.group(1), m.group(2).strip(), i + 2
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise Failed(f"{os.path.basename(path)}:{start - 1}: unclosed code fence")
        i += 1
        blocks.append(Block(start, info, "\n".join(body) + "\n"))
    return blocks, headings


def documented_metrics():
    text = open(os.path.join(ROOT, "docs", "metrics.md")).read()
    return set(re.findall(r"`(busbar_[a-z0-9_]+)`", text))


def metric_known(name, known):
    if name in known:
        return True
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return base != name and base in known


def section(text, heading):
    """The text of a `## heading` section up to the next ## heading, or None."""
    m = re.search(rf"^## {re.escape(heading)}\s*$", text, re.M)
    if not m:
        return None
    nxt = text.find("\n## ", m.end())
    return text[m.start(): nxt if nxt >= 0 else len(text)]


def panel_titles(dashboard):
    """The panel and row titles of deploy/grafana/<dashboard>.json (panels of rows, collapsed
    or not, included), or None while that file does not exist."""
    if dashboard not in PANEL_TITLES:
        path = os.path.join(ROOT, GRAFANA_DIR, dashboard + ".json")
        titles = None
        if os.path.exists(path):
            titles, todo = set(), list(json.load(open(path)).get("panels", []))
            while todo:
                p = todo.pop()
                titles.add(" ".join(str(p.get("title", "")).split()))
                todo.extend(p.get("panels", []))
        PANEL_TITLES[dashboard] = titles
    return PANEL_TITLES[dashboard]


def panel_references(text):
    """(dashboard, title) of each **bold** title in `text` (code blocks left out): the title
    belongs to the `busbar-...` dashboard named last before it (None if none is)."""
    text = re.sub(r"^(```+).*?^\1", "", text, flags=re.M | re.S)
    refs, dashboard = [], None
    for m in re.finditer(r"`(busbar-[a-z-]+)`|\*\*(.+?)\*\*", text, re.S):
        if m.group(1):
            dashboard = m.group(1)
        else:
            refs.append((dashboard, " ".join(m.group(2).split())))
    return refs


def lint_panels(where, text):
    """Each panel `text` names is a panel (or row) title of the dashboard it is named under."""
    errors = []
    for dashboard, title in panel_references(text):
        if dashboard is None:
            errors.append(f"{where}: panel **{title}** follows no `busbar-...` dashboard name")
        elif dashboard not in DASHBOARDS:
            errors.append(f"{where}: panel **{title}**: `{dashboard}` is not one of {DASHBOARDS}")
        elif panel_titles(dashboard) is None:
            errors.append(f"{where}: panel **{title}**: {GRAFANA_DIR}/{dashboard}.json is missing")
        elif title not in panel_titles(dashboard):
            errors.append(f"{where}: `{dashboard}` → **{title}**: no panel or row of "
                          f"{GRAFANA_DIR}/{dashboard}.json has that title")
    return errors


def lint(name, known_metrics):
    """Shape errors of one runbook (empty list: fine)."""
    path = os.path.join(RUNBOOK_DIR, name + ".md")
    if not os.path.exists(path):
        return [f"{name}.md is missing"]
    blocks, headings = parse(path)
    errors = []
    titles = [t for t, _ in headings]
    found = [t for t in titles if t in SECTIONS]
    if found != SECTIONS:
        errors.append(f"{name}.md: sections {found}, expected the ## headings {SECTIONS} in order")
    text = open(path).read()
    dashboard = section(text, "Dashboard")
    if dashboard is not None:
        if not any(d in dashboard for d in DASHBOARDS):
            errors.append(f"{name}.md: the Dashboard section names none of {DASHBOARDS}")
        if "```promql" not in dashboard:
            errors.append(f"{name}.md: the Dashboard section has no ```promql block")
        errors += lint_panels(f"{name}.md, Dashboard", dashboard)
    for metric in sorted(set(re.findall(r"\bbusbar_[a-z0-9_]+", text))):
        if not metric_known(metric, known_metrics):
            errors.append(f"{name}.md: metric {metric} is neither in docs/metrics.md nor served")
    for b in blocks:
        where = f"{name}.md:{b.line - 1}"
        if b.lang in SHELL_FENCES:
            errors.append(f"{where}: ```{b.lang} is not run; use ```sh (runs) or ```text (shown only)")
        elif b.lang == "sh" and b.info != "sh":
            errors.append(f"{where}: ```{b.info}: a runbook's sh block takes no tags")
        elif b.lang != "sh":
            for line in b.text.split("\n"):
                s = line.strip()
                if s.startswith("busbar ") and not s.startswith("busbar serve"):
                    errors.append(f"{where}: `{s}` is in a ```{b.lang or 'plain'} block, so it is "
                                  "never run; put busbar commands in ```sh blocks")
    return errors


def alert_rules():
    """{alert name: the runbook file its runbook_url names} of deploy/prometheus/rules.yml, or
    None while that file does not exist."""
    path = os.path.join(ROOT, RULES)
    if not os.path.exists(path):
        return None
    rules, current = {}, None
    for line in open(path):
        m = re.match(r"^\s*- alert:\s*(\S+)", line)
        if m:
            current = m.group(1)
            rules[current] = None
            continue
        m = re.match(r"^\s*runbook_url:.*/docs/runbooks/([^\"'#\s]+)", line)
        if m and current:
            rules[current] = m.group(1)
    return rules


def lint_alerts(rules):
    """Each alert's runbook_url names a runbook that names the alert; each alert a runbook names
    exists."""
    if rules is None:
        return []
    errors = []
    for alert, target in sorted(rules.items()):
        if target is None:
            errors.append(f"{RULES}: alert {alert} has no runbook_url into docs/runbooks/")
        elif target[:-3] not in RUNBOOKS or not target.endswith(".md"):
            errors.append(f"{RULES}: alert {alert}: runbook_url names {target}, not a runbook")
        elif alert not in open(os.path.join(RUNBOOK_DIR, target)).read():
            errors.append(f"{target} does not name alert {alert}, whose runbook_url points to it")
    for name in RUNBOOKS + ["README"]:
        path = os.path.join(RUNBOOK_DIR, name + ".md")
        if os.path.exists(path):
            for alert in sorted(set(re.findall(r"`(Busbar[A-Z][A-Za-z0-9]+)`", open(path).read()))):
                if alert not in rules:
                    errors.append(f"{name}.md: alert {alert} is not defined in {RULES}")
    return errors


def lint_readme():
    path = os.path.join(RUNBOOK_DIR, "README.md")
    if not os.path.exists(path):
        return ["docs/runbooks/README.md is missing"]
    text = open(path).read()
    errors = [f"README.md does not link {n}.md" for n in RUNBOOKS if f"]({n}.md)" not in text]
    extra = sorted(f for f in os.listdir(RUNBOOK_DIR)
                   if f.endswith(".md") and f != "README.md" and f[:-3] not in RUNBOOKS)
    errors += [f"docs/runbooks/{f}: not one of the runbook names {RUNBOOKS}" for f in extra]
    dashboards = section(text, "Dashboards")
    if dashboards is None:
        errors.append("README.md has no ## Dashboards section (the panels the runbooks name)")
    elif not panel_references(dashboards):
        errors.append("README.md, Dashboards: names no **panel**")
    else:
        errors += lint_panels("README.md, Dashboards", dashboards)
    return errors


# ---------------------------------------------------------------------------------------------
# The scenario


class Webhook:
    """The HTTP target of `orders-to-webhook` on 127.0.0.1: 503 while `failing`, else 204."""

    def __init__(self):
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                hook.received += 1
                self.send_response(503 if hook.failing else 204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.failing, self.received = True, 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/orders"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Server:
    def __init__(self, binary, work):
        with open(os.path.join(work, "busbar.toml"), "w") as f:
            f.write(CONFIG)
        self.log = open(os.path.join(work, "busbar.log"), "w+")
        env = dict(clean_env(), BUSBAR_ADMIN_PASSWORD=ADMIN_PASSWORD)
        self.proc = spawn([binary, "serve", "--config", "busbar.toml", "--data-dir", "busbar-data",
                           "--http-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0",
                           "--schema-registry-addr", ""],
                          cwd=work, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.fail("busbar exited before it was ready")
            self.log.seek(0)
            m = re.search(r"ready in .*?(http://127\.0\.0\.1:\d+)", self.log.read())
            if m:
                self.url = m.group(1)
                return
            time.sleep(0.05)
        self.fail("busbar did not become ready in 60 s")

    def output(self):
        self.log.seek(0)
        return self.log.read()[-3000:]

    def fail(self, why):
        end_group(self.proc)
        raise Failed(f"{why}; its output:\n{self.output()}")

    def check(self):
        if self.proc.poll() is not None:
            raise Failed(f"busbar exited ({self.proc.returncode}); its output:\n{self.output()}")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.fail("busbar did not stop within 30 s of SIGTERM")
        end_group(self.proc)
        if rc != 0:
            raise Failed(f"busbar exited {rc} on SIGTERM; its output:\n{self.output()}")


def clean_env():
    """The caller's environment without BUSBAR_* (they would point commands elsewhere)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BUSBAR_")}


class Cli:
    def __init__(self, env, cwd):
        self.env, self.cwd = env, cwd

    def run(self, *args, ok=True, stdin=None):
        p = subprocess.run(["busbar", *args], env=self.env, cwd=self.cwd, capture_output=True,
                           text=True, input=stdin, timeout=SETUP_TIMEOUT)
        if ok and p.returncode != 0:
            raise Failed(f"setup: busbar {' '.join(args)}: exit {p.returncode}\n{p.stdout}{p.stderr}")
        return p

    def json(self, *args):
        return json.loads(self.run("--output", "json", *args).stdout)

    def wait_for(self, what, check):
        deadline = time.time() + SETUP_TIMEOUT
        while time.time() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise Failed(f"setup: {what} did not happen within {SETUP_TIMEOUT} s")


def produce(cli, topic, partition, key, values):
    cli.run("produce", topic, "-p", str(partition), "-k", key, *values)


def base_scenario(cli, hook):
    cli.run("topic", "create", "orders", "--partitions", "3")
    cli.run("topic", "create", "orders-dlq")
    for p in range(3):  # every partition holds events, so offsets named in runbooks exist
        produce(cli, "orders", p, f"customer-{p}",
                [json.dumps({"id": f"o-{p}-{i}", "total": 10 * i}) for i in range(20)])
    produce(cli, "orders", 1, "customer-7",  # the hot key of F5
            [json.dumps({"id": f"o-7-{i}", "total": i}) for i in range(40)])
    cli.run("consume", "orders", "--group", "billing", "-n", "30")  # commits 30, leaves lag
    total = 100
    cli.run("subscription", "create", "orders-to-webhook", "--source", "orders",
            "--start", "earliest", "--to-url", hook.url, "--max-attempts", "2",
            "--backoff-initial-ms", "50", "--backoff-max-ms", "100",
            "--dead-letter-topic", "orders-dlq")
    sub = lambda: cli.json("subscription", "get", "orders-to-webhook")
    cli.wait_for("every event of orders dead-lettered by orders-to-webhook",
                 lambda: sub()["counters"]["dead_lettered"] >= total)
    hook.failing = False  # the target is back: a redrive in a runbook delivers


def f3_extras(cli, hook):
    # Someone's replay is re-delivering the last hour, slowly: F3 finds and cancels it.
    cli.run("subscription", "replay", "orders-to-webhook", "--run", "loss-fix-1",
            "--from", "1h", "--to", "0s", "--rate", "1")


def f4_extras(cli, hook):
    files = {
        # registered as version 1 of orders-value
        "order.avsc": {"type": "record", "name": "Order", "namespace": "shop",
                       "fields": [{"name": "id", "type": "string"}]},
        # the producer's new schema: a field without a default (not BACKWARD compatible)
        "order-new.avsc": {"type": "record", "name": "Order", "namespace": "shop",
                           "fields": [{"name": "id", "type": "string"},
                                      {"name": "customer", "type": "string"}]},
        # the same change, compatible
        "order-v2.avsc": {"type": "record", "name": "Order", "namespace": "shop",
                          "fields": [{"name": "id", "type": "string"},
                                     {"name": "customer", "type": "string", "default": ""}]},
    }
    for name, schema in files.items():
        with open(os.path.join(cli.cwd, name), "w") as f:
            json.dump(schema, f, indent=1)
    cli.run("schema", "register", "orders-value", "--file", "order.avsc")
    cli.run("topic", "alter", "orders", "-c", "value.schema.validation=strict")
    p = cli.run("produce", "orders", '{"id": "plain JSON, not framed"}', ok=False)
    if p.returncode != 1:
        raise Failed(f"setup: an unframed event was not refused (exit {p.returncode})")


def f7_extras(cli, hook):
    cli.run("user", "create", "alice", "--new-password", "alice-secret")
    with open(os.path.join(cli.cwd, "alice.password"), "w") as f:
        f.write("alice-new-secret\n")  # the runbook resets alice's password from this file
    cli.run("topic", "create", "orders-audit")
    cli.run("acl", "create", "--principal", "User:alice", "--operation", "READ",
            "--operation", "DESCRIBE", "--topic", "orders")
    cli.run("acl", "create", "--principal", "User:alice", "--operation", "WRITE",
            "--topic", "orders-audit")
    cli.run("acl", "create", "--principal", "User:alice", "--operation", "CREATE",
            "--operation", "ALTER", "--operation", "DESCRIBE", "--subscription", "orders-audit")
    alice = Cli(dict(cli.env, BUSBAR_USER="alice", BUSBAR_PASSWORD="alice-secret"), cli.cwd)
    alice.run("subscription", "create", "orders-audit", "--source", "orders",
              "--to-topic", "orders-audit")
    # The incident: alice's READ on orders is revoked (a cleanup of ACLs went too far).
    cli.run("acl", "delete", "--principal", "User:alice", "--topic", "orders", "--operation", "READ")
    cli.wait_for("orders-audit unauthorized", lambda: cli.json(
        "subscription", "get", "orders-audit")["state"] == "unauthorized")
    p = alice.run("consume", "orders", "-n", "1", ok=False)
    if p.returncode != 1:
        raise Failed(f"setup: alice's read of orders was not refused (exit {p.returncode})")


def f8_extras(cli, hook):
    # The target fails again and retries wait long: the waiting events fill delivery.waiting_max.
    hook.failing = True
    cli.run("subscription", "update", "orders-to-webhook", "--max-attempts", "20",
            "--backoff-initial-ms", "60000", "--backoff-max-ms", "60000",
            "--file", '{"delivery": {"waiting_max": 5}}')
    for p in range(3):
        produce(cli, "orders", p, f"late-{p}", [json.dumps({"id": f"late-{p}-{i}"}) for i in range(5)])
    cli.wait_for("orders-to-webhook in backpressure", lambda: cli.json(
        "subscription", "get", "orders-to-webhook")["state"].startswith("backpressure"))


def f9_extras(cli, hook):
    cli.run("topic", "create", "clickstream-tmp", "--partitions", "2")
    produce(cli, "clickstream-tmp", 0, "page", ["/", "/cart", "/checkout"])


EXTRAS = {"F3-duplicates": f3_extras, "F4-schema-break": f4_extras,
          "F7-authorization-failure": f7_extras, "F8-backpressure": f8_extras,
          "F9-retention-overflow": f9_extras}


# ---------------------------------------------------------------------------------------------
# Running a runbook


def script(name, block):
    # The ERR trap names the runbook's line: LINENO counts this header's two lines.
    return ("set -eo pipefail\n"
            f"trap 'rc=$?; echo \"{name}.md:$(({block.line - 3} + LINENO)): exit $rc: $BASH_COMMAND\" >&2' ERR\n"
            + block.text)


def run_block(name, block, cwd, env, verbose):
    with tempfile.TemporaryFile("w+") as out:
        proc = spawn(["bash", "-c", script(name, block)], cwd=cwd, env=env,
                     stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired:
            rc = None
        end_group(proc)  # what the block left in the background ends with it
        out.seek(0)
        output = out.read()
    if verbose:
        print(f"--- {name}.md:{block.line}\n{output}", end="", flush=True)
    if rc == 0:
        return
    why = f"still running after {BLOCK_TIMEOUT} s" if rc is None else f"exit {rc}"
    raise Failed(f"{name}.md:{block.line}: block {why}\n"
                 f"  block:\n{indent(block.text)}\n  output:\n{indent(output[-4000:])}")


def indent(text):
    return "\n".join("    " + line for line in text.rstrip("\n").split("\n"))


def run_runbook(name, binary, bin_dir, verbose, known_metrics):
    blocks = [b for b in parse(os.path.join(RUNBOOK_DIR, name + ".md"))[0] if b.lang == "sh"]
    hook, work = None, tempfile.mkdtemp(prefix=f"busbar-runbook-{name[:2]}-")
    WORKDIRS.append(work)
    try:
        hook = Webhook()
        server = Server(binary, work)
        env = dict(clean_env(), PATH=bin_dir + os.pathsep + os.environ["PATH"],
                   BUSBAR_SERVER=server.url, BUSBAR_USER="admin", BUSBAR_PASSWORD=ADMIN_PASSWORD)
        cli = Cli(env, work)
        base_scenario(cli, hook)
        if name in EXTRAS:
            EXTRAS[name](cli, hook)
        served = subprocess.run(["curl", "-fsS", server.url + "/metrics"], capture_output=True,
                                text=True, timeout=SETUP_TIMEOUT).stdout
        known_metrics |= set(re.findall(r"^# TYPE (busbar_[a-z0-9_]+)", served, re.M))
        for b in blocks:
            run_block(name, b, work, env, verbose)
            server.check()
        server.stop()
    finally:
        # Not cut short by a signal (it is handled once this is done): the server must be gone
        # before its data directory is removed.
        stops = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        signal.pthread_sigmask(signal.SIG_BLOCK, stops)
        try:
            if hook:
                hook.close()
            for proc in list(STARTED):  # this runbook's server (blocks end their own)
                end_group(proc)
            shutil.rmtree(work, ignore_errors=True)
            WORKDIRS.remove(work)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
    return len(blocks)


def main():
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        sys.exit(run())
    except Stopped as e:
        cleanup()
        print(f"stopped by signal {e.signum}; every process started was ended", file=sys.stderr)
        sys.exit(128 + e.signum)
    finally:
        cleanup()


def run():
    args = sys.argv[1:]
    verbose = "-v" in args
    args = [a for a in args if a != "-v"]
    if not args:
        sys.exit(__doc__)
    binary = os.path.abspath(args[0])
    if not os.access(binary, os.X_OK):
        sys.exit(f"{binary}: not an executable")
    missing = [t for t in ("bash", "curl", "jq") if not shutil.which(t)]
    if missing:
        sys.exit(f"the runbooks' commands need {', '.join(missing)}")
    wanted = args[1:]
    names = [n for n in RUNBOOKS if not wanted or any(n == w or n.startswith(w + "-") for w in wanted)]
    if wanted and not names:
        sys.exit(f"no runbook named {wanted}; the runbooks: {RUNBOOKS}")

    passed, failed = 0, []
    known = documented_metrics()
    errors = lint_readme() + lint_alerts(alert_rules())
    bin_dir = tempfile.mkdtemp(prefix="busbar-runbooks-bin-")
    WORKDIRS.append(bin_dir)
    os.symlink(binary, os.path.join(bin_dir, "busbar"))
    for name in names:
        start = time.time()
        try:
            n = run_runbook(name, binary, bin_dir, verbose, known) \
                if os.path.exists(os.path.join(RUNBOOK_DIR, name + ".md")) else 0
            problems = lint(name, known)  # after a run: the served metrics are known
            if problems:
                raise Failed("\n  ".join(problems))
            print(f"ok {name} ({n} blocks, {time.time() - start:.1f} s)", flush=True)
            passed += 1
        except Failed as e:
            print(f"FAILED {name}: {e}", flush=True)
            failed.append(name)
        except subprocess.TimeoutExpired as e:
            print(f"FAILED {name}: setup command timed out: {e}", flush=True)
            failed.append(name)
    if errors:
        print("FAILED the runbooks' index and alerts:\n  " + "\n  ".join(errors))
        failed.append("index")
    print(f"\nrunbooks: {passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    main()
