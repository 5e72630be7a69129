#!/usr/bin/env python3
"""Checks deploy/ (Prometheus rules and config, Grafana dashboards) against promtool, against
docs/metrics.md and, given a binary, against what a live busbar serves on /metrics:

  rules_valid         promtool check rules deploy/prometheus/rules.yml
  rules_unit_tests    promtool test rules deploy/prometheus/rules_test.yml
  prometheus_config   promtool check config deploy/prometheus/prometheus.yml
  dashboards_valid    deploy/grafana/*.json parse; datasource ${DS_PROMETHEUS} everywhere
  dashboard_promql    every dashboard query (Grafana variables filled in) is valid PromQL
  alerts_annotated    every alert has severity page|ticket, summary, description, runbook_url
  names_documented    every busbar_* name queried is in docs/metrics.md; any other name is `up`
                      or a recording rule of rules.yml
  names_served        (needs BIN) busbar serve, some activity, then every name queried is in the
                      scrape, at least as a `# TYPE` line (histograms: the _bucket/_sum/_count
                      series map to their family), with the type docs/metrics.md gives
  metrics_lint        (needs BIN) promtool check metrics on that scrape: a parse error fails;
                      lint findings (promtool's exit 3: naming and HELP style) are printed only

promtool: $PROMTOOL, else `promtool` on PATH, else extracted from Debian's `prometheus` package
(apt-get download, no install: installing it would start a Prometheus server) into
~/.cache/busbar-deploy/.

Prints one line per check and a closing 'N passed, N failed' line; exits non-zero on any failure.

Usage: check.py [PATH/TO/busbar]     (without a binary the two live checks are skipped)
"""
import glob, json, os, re, shutil, signal, subprocess, sys, tempfile, threading, time, traceback
import urllib.error, urllib.request

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROM = os.path.join(ROOT, "deploy", "prometheus")
RULES = os.path.join(PROM, "rules.yml")
DASHBOARDS = sorted(glob.glob(os.path.join(ROOT, "deploy", "grafana", "*.json")))
METRICS_DOC = os.path.join(ROOT, "docs", "metrics.md")
BIN = sys.argv[1] if len(sys.argv) > 1 else None

RUNBOOK_URL = "https://github.com/busbar/busbar/blob/main/docs/runbooks/"
RUNBOOKS = {"F1-consumer-lag.md", "F2-message-loss.md", "F3-duplicates.md", "F4-schema-break.md",
            "F5-hot-partition.md", "F6-broker-down.md", "F7-authorization-failure.md",
            "F8-backpressure.md", "F9-retention-overflow.md"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Names of PromQL that are not metric names, outside of function calls and grouping clauses.
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
            "bool", "offset", "inf", "nan", "atan2"}


# --- promtool ---------------------------------------------------------------------------------

def promtool():
    if os.environ.get("PROMTOOL"):
        return os.environ["PROMTOOL"]
    found = shutil.which("promtool")
    if found:
        return found
    cache = os.path.join(os.path.expanduser("~"), ".cache", "busbar-deploy")
    extracted = os.path.join(cache, "usr", "bin", "promtool")
    if os.path.exists(extracted):
        return extracted
    print("== promtool not found: extracting it from Debian's prometheus package", flush=True)
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if subprocess.run(["apt-get", "download", "prometheus"], cwd=tmp).returncode != 0:
            sudo = [] if os.geteuid() == 0 else ["sudo"]
            subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
            subprocess.run(["apt-get", "download", "prometheus"], cwd=tmp, check=True)
        deb = glob.glob(os.path.join(tmp, "prometheus_*.deb"))[0]
        subprocess.run(["dpkg-deb", "-x", deb, cache], check=True)
    return extracted


def run_promtool(*args, stdin=None):
    return subprocess.run([promtool(), *args], input=stdin, capture_output=True, text=True, timeout=300)


def promtool_ok(*args):
    r = run_promtool(*args)
    if r.returncode != 0:
        raise AssertionError(f"promtool {' '.join(args)} exited {r.returncode}:\n{r.stdout}{r.stderr}")


# --- what deploy/ queries ---------------------------------------------------------------------

def load_rules():
    with open(RULES) as f:
        return [rule for group in yaml.safe_load(f)["groups"] for rule in group["rules"]]


def recorded_names():
    return {r["record"] for r in load_rules() if "record" in r}


def load_dashboards():
    out = []
    for path in DASHBOARDS:
        with open(path) as f:
            out.append((os.path.basename(path), json.load(f)))
    return out


def panels(dashboard):
    """Every panel, including those inside (collapsed) rows."""
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])


def variable_query(var):
    q = var.get("query")
    return q.get("query", "") if isinstance(q, dict) else (q or "")


def label_values_expr(query):
    """The PromQL inside a Grafana variable query, or None (label_values(label) has none)."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query, re.S)
    if m:
        return m.group(1)
    m = re.fullmatch(r"\s*query_result\((.*)\)\s*", query, re.S)
    return m.group(1) if m else None


def queries():
    """(where, PromQL) of every rule and every dashboard query, Grafana variables unfilled."""
    out = [(f"rules.yml {r.get('record') or r.get('alert')}", r["expr"]) for r in load_rules()]
    for name, d in load_dashboards():
        for p in panels(d):
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((f"{name} panel {p.get('title')!r} {t.get('refId')}", t["expr"]))
        for var in d.get("templating", {}).get("list", []):
            if var.get("type") == "query":
                expr = label_values_expr(variable_query(var))
                if expr:
                    out.append((f"{name} variable ${var['name']}", expr))
    return out


def fill_grafana_variables(expr):
    expr = re.sub(r"\$__\w+|\$\{__\w+\}", "5m", expr)  # $__rate_interval, $__range, ...
    return re.sub(r"\$\{?\w+\}?", ".*", expr)  # template variables sit in =~ matchers


def metric_names(expr):
    """Metric names an expression selects: strings, label matchers, ranges and grouping clauses
    removed, what is left that is an identifier, not a function call and not a keyword."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", s):
        rest = s[m.end():].lstrip()
        if m.group(0) not in KEYWORDS and not rest.startswith("("):
            names.add(m.group(0))
    return names


def used_names():
    """{name: [where]} of every metric name queried."""
    used = {}
    for where, expr in queries():
        for n in metric_names(expr):
            used.setdefault(n, []).append(where)
    return used


def documented():
    """(names, prefixes, types) of docs/metrics.md: every `busbar_*` name it mentions, the
    `busbar_x_*` families it names by prefix, and the type column of its tables."""
    with open(METRICS_DOC) as f:
        text = f.read()
    names = set(re.findall(r"`(busbar_\w+)`", text))
    prefixes = set(re.findall(r"`(busbar_\w+_)\*`", text))
    types = {m.group(1): m.group(2) for m in
             re.finditer(r"^\|[^|]*\|\s*`(busbar_\w+)`\s*\|\s*(counter|gauge|histogram)\s*\|", text, re.M)}
    return names, prefixes, types


def family(name, histograms):
    """The family a series name belongs to (busbar_x_bucket -> busbar_x for a histogram)."""
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in histograms:
            return name[: -len(suffix)]
    return name


def busbar_families():
    """{family: [where]} of the busbar_* families deploy/ queries."""
    _, _, types = documented()
    histograms = {n for n, t in types.items() if t == "histogram"}
    out = {}
    for name, where in used_names().items():
        if name.startswith("busbar_"):
            out.setdefault(family(name, histograms), []).extend(where)
    return out


# --- checks without a binary -------------------------------------------------------------------

def rules_valid():
    promtool_ok("check", "rules", RULES)


def rules_unit_tests():
    promtool_ok("test", "rules", os.path.join(PROM, "rules_test.yml"))


def prometheus_config():
    promtool_ok("check", "config", os.path.join(PROM, "prometheus.yml"))


def dashboards_valid():
    assert len(DASHBOARDS) >= 3, f"expected the three dashboards, found {DASHBOARDS}"
    problems = []
    for name, d in load_dashboards():
        if not 36 <= d.get("schemaVersion", 0) <= 41:
            problems.append(f"{name}: schemaVersion {d.get('schemaVersion')}")
        variables = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
        ds = variables.get("DS_PROMETHEUS")
        if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
            problems.append(f"{name}: no datasource variable DS_PROMETHEUS of type prometheus")
        ids = [p.get("id") for p in panels(d)]
        if len(ids) != len(set(ids)):
            problems.append(f"{name}: panel ids repeat")
        for p in panels(d):
            if p.get("type") == "row":
                continue
            sources = [p.get("datasource")] + [t.get("datasource") for t in p.get("targets", [])]
            if any(s != {"type": "prometheus", "uid": "${DS_PROMETHEUS}"} for s in sources):
                problems.append(f"{name}: panel {p.get('title')!r} does not use ${{DS_PROMETHEUS}}")
            if not p.get("targets") or not all(t.get("expr") for t in p["targets"]):
                problems.append(f"{name}: panel {p.get('title')!r} has a target without a query")
        for v in variables.values():
            if v.get("type") == "query" and v.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
                problems.append(f"{name}: variable ${v['name']} does not use ${{DS_PROMETHEUS}}")
    assert not problems, "\n".join(problems)


def dashboard_promql():
    """promtool parses each dashboard query, written as a recording rule."""
    exprs = [(w, e) for w, e in queries() if not w.startswith("rules.yml")]
    doc = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query:{i}", "expr": fill_grafana_variables(e)} for i, (_, e) in enumerate(exprs)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
        yaml.safe_dump(doc, f)
        f.flush()
        r = run_promtool("check", "rules", f.name)
    if r.returncode != 0:
        out = r.stdout + r.stderr
        for i, (where, _) in enumerate(exprs):  # name the panels promtool's rule numbers point at
            out = out.replace(f"dashboard:query:{i}\"", f"dashboard:query:{i}\" ({where})")
        raise AssertionError(f"promtool rejects dashboard queries:\n{out}")
    print(f"        {len(exprs)} dashboard queries parse", flush=True)


def alerts_annotated():
    problems = []
    alerts = [r for r in load_rules() if "alert" in r]
    for r in alerts:
        a, ann = r["alert"], r.get("annotations", {})
        if r.get("labels", {}).get("severity") not in ("page", "ticket"):
            problems.append(f"{a}: severity {r.get('labels', {}).get('severity')!r}")
        for key in ("summary", "description", "runbook_url"):
            if not ann.get(key):
                problems.append(f"{a}: no annotation {key}")
        url = ann.get("runbook_url", "")
        if not url.startswith(RUNBOOK_URL) or url[len(RUNBOOK_URL):] not in RUNBOOKS:
            problems.append(f"{a}: runbook_url {url!r} is not one of docs/runbooks/{sorted(RUNBOOKS)}")
    assert not problems, "\n".join(problems)
    print(f"        {len(alerts)} alerts", flush=True)


def names_documented():
    names, prefixes, _ = documented()
    recorded = recorded_names()
    problems = []
    for name, where in sorted(used_names().items()):
        if name.startswith("busbar_"):
            if name not in names and family(name, names) not in names and not name.startswith(tuple(prefixes)):
                problems.append(f"{name}: not in docs/metrics.md (used by {where[0]})")
        elif name != "up" and name not in recorded:
            problems.append(f"{name}: neither `up` nor a recording rule of rules.yml (used by {where[0]})")
    assert not problems, "\n".join(problems)
    print("        busbar names used: " + " ".join(sorted(busbar_families())), flush=True)


# --- checks against a live busbar ---------------------------------------------------------------

class Busbar:
    """`busbar serve` on free loopback ports in a temporary data directory."""

    def __init__(self, binary):
        self.tmp = tempfile.TemporaryDirectory()
        args = [binary, "serve", "--data-dir", self.tmp.name, "--http-addr", "127.0.0.1:0",
                "--kafka-addr", "127.0.0.1:0"]
        help_text = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True).stdout
        if "--schema-registry-addr" in help_text:
            args += ["--schema-registry-addr", ""]
        env = dict(os.environ, BUSBAR_BROKER_GROUP_INITIAL_REBALANCE_DELAY_MS="500")
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        try:
            deadline = time.time() + 60
            while time.time() < deadline:
                line = self.proc.stderr.readline()
                if not line:
                    raise RuntimeError("busbar exited before it was ready")
                m = re.search(r"ready in .* http://(\S+) kafka (\S+) ", line)
                if m:
                    self.http, self.kafka = m.group(1), m.group(2)
                    threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
                    return
            raise RuntimeError("busbar did not become ready")
        except BaseException:
            self.stop()
            raise

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.tmp.cleanup()

    def request(self, path, body=None, method=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://{self.http}{path}", data=data, method=method,
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def post(self, path, body):
        status, text = self.request(path, body)
        assert status < 300, f"POST {path}: {status} {text}"
        return text


def activity(b):
    """Requests that make busbar's labelled series appear."""
    b.post("/topics", {"name": "t", "partitions": 2})
    b.post("/topics", {"name": "t-copy"})
    b.post("/topics", {"name": "dlq"})
    # A topic target, and an HTTP target that answers 404 (a publish to a topic that does not
    # exist): delivered, and dead-lettered at the first attempt.
    b.post("/subscriptions", {"name": "copy", "sources": ["t"], "target": {"topic": "t-copy"}})
    b.post("/subscriptions", {"name": "broken-hook", "sources": ["t"],
                              "target": {"url": f"http://{b.http}/topics/no-such-topic/events"},
                              "delivery": {"max_attempts": 1}, "dead_letter_topic": "dlq"})
    b.post("/topics/t/events", [{"key": "k1", "value": {"n": 1}}, {"key": "k2", "value": {"n": 2}}])
    b.request("/topics/no-such-topic/events", [{"value": 1}])  # a failed publish
    try:
        from confluent_kafka import Consumer, Producer, TopicPartition
    except ImportError:
        print("        confluent_kafka missing: no Kafka produce, fetch or group commit", flush=True)
        return
    p = Producer({"bootstrap.servers": b.kafka, "enable.idempotence": True})
    for i in range(10):
        p.produce("t", key=f"k{i}", value=b"x" * 100)
    assert p.flush(30) == 0, "Kafka produce did not complete"
    c = Consumer({"bootstrap.servers": b.kafka, "group.id": "g", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition("t", 0, 0), TopicPartition("t", 1, 0)])
        got, deadline = 0, time.time() + 20
        while got < 3 and time.time() < deadline:
            m = c.poll(1)
            if m is not None and not m.error():
                got += 1
        assert got, "the Kafka consumer read nothing"
        c.commit(asynchronous=False)  # group g is left behind with lag
    finally:
        c.close()


def parse_scrape(text):
    """({family: type} of the # TYPE lines, {sample names})."""
    types = {m.group(1): m.group(2) for m in re.finditer(r"^# TYPE (\S+) (\S+)", text, re.M)}
    samples = {m.group(1) for m in re.finditer(r"^([A-Za-z_:][\w:]*)", text, re.M)}
    return types, samples


def missing_from(text, wanted):
    """The families of `wanted` the scrape neither declares (# TYPE) nor has a series of."""
    types, samples = parse_scrape(text)
    histograms = {f for f, t in types.items() if t == "histogram"} | set(wanted)
    present = set(types) | {family(s, histograms) for s in samples}
    return sorted(f for f in wanted if f not in present)


SCRAPE = {}


def names_served():
    assert BIN, "needs a busbar binary"
    wanted = busbar_families()
    _, _, doc_types = documented()
    b = Busbar(BIN)
    try:
        activity(b)
        # Deliveries and dead letters happen in the background: scrape until nothing is missing.
        deadline = time.time() + 10
        while True:
            status, text = b.request("/metrics")
            assert status == 200, f"GET /metrics: {status}"
            missing = missing_from(text, wanted)
            if not missing or time.time() > deadline:
                break
            time.sleep(0.5)
    finally:
        b.stop()
    SCRAPE["text"] = text
    types, _ = parse_scrape(text)
    problems = [f"{f}: not served (used by {', '.join(sorted(set(wanted[f]))[:3])})" for f in missing]
    problems += [f"{f}: served as {types[f]}, docs/metrics.md says {doc_types[f]}"
                 for f in sorted(wanted) if f in types and f in doc_types and types[f] != doc_types[f]]
    print(f"        {len(wanted) - len(missing)} of {len(wanted)} busbar families queried are served", flush=True)
    assert not problems, f"{len(missing)} of {len(wanted)} names missing from /metrics:\n" + "\n".join(problems)


def metrics_lint():
    assert BIN, "needs a busbar binary"
    if "text" not in SCRAPE:
        raise AssertionError("no scrape (names_served failed before it scraped)")
    r = run_promtool("check", "metrics", stdin=SCRAPE["text"])
    findings = (r.stdout + r.stderr).strip()
    # promtool check metrics: 0 clean, 3 lint findings only, anything else could not parse.
    if r.returncode not in (0, 3):
        raise AssertionError(f"promtool check metrics exited {r.returncode}:\n{findings}")
    for line in findings.splitlines():
        print(f"        lint: {line}", flush=True)


CHECKS = [rules_valid, rules_unit_tests, prometheus_config, dashboards_valid, dashboard_promql,
          alerts_annotated, names_documented, names_served, metrics_lint]
LIVE = {names_served, metrics_lint}


def main():
    # A SIGTERM to the test still stops the busbar it started (the finally clauses run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    passed = failed = skipped = 0
    for check in CHECKS:
        if check in LIVE and not BIN:
            skipped += 1
            print(f"skipped {check.__name__} (no busbar binary given)", flush=True)
            continue
        start = time.time()
        try:
            check()
            passed += 1
            print(f"ok      {check.__name__} ({time.time() - start:.1f}s)", flush=True)
        except Exception as e:
            failed += 1
            detail = str(e) if isinstance(e, AssertionError) else traceback.format_exc()
            print(f"FAILED  {check.__name__}\n{detail}", flush=True)
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
