#!/usr/bin/env python3
"""The web console (issue 19) in a real browser: headless Chromium from Debian driven by Playwright
for Python, against the real binary. Every page loads without a console error (a CSP violation or a
script error is one), and the flows work end to end, each checked through the HTTP API afterwards:
browse a partition newest first, search with an EventBridge pattern evaluated by busbar, export as
JSON, produce and re-produce, per-topic rates, edit a topic's configs, preview then apply a
consumer-group offset reset, pause and resume a subscription, create one with its pattern tested
against recent events, edit and delete it, start a replay and see it listed, redrive one dead letter
and then all, and sign in on a busbar with authentication. Screenshots of each page go to --screenshots DIR (docs/console/ for the
README; a temporary directory otherwise).

Usage: run.py BIN [--screenshots DIR]
Set-up: installs chromium (Debian) and playwright (PyPI) when missing; Playwright's own browser
download is never used (executable_path points at the Debian browser).
"""
import base64, http.server, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, threading, time
import traceback, urllib.error, urllib.request

BIN = sys.argv[1]
SHOTS = sys.argv[sys.argv.index("--screenshots") + 1] if "--screenshots" in sys.argv else None
ADMIN_PW = "console-admin-1"


def install():
    if not shutil.which("chromium"):
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        print("== installing chromium (Debian)", flush=True)
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "chromium"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), stdout=subprocess.DEVNULL)
    try:
        import playwright  # noqa: F401
    except ImportError:
        print("== installing playwright (PyPI)", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "playwright"],
                       check=True)


class Busbar:
    def __init__(self, env=None):
        self.tmp = tempfile.TemporaryDirectory()
        e = dict(os.environ, BUSBAR_BROKER_GROUP_INITIAL_REBALANCE_DELAY_MS="0", **(env or {}))
        self.proc = subprocess.Popen([BIN, "serve", "--data-dir", self.tmp.name, "--http-addr", "127.0.0.1:0",
                                      "--kafka-addr", "127.0.0.1:0", "--schema-registry-addr", ""],
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=e)
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError("busbar exited before it was ready")
            m = re.search(r"ready in .* http://(\S+) kafka (\S+) ", line)
            if m:
                self.http, self.kafka = m.group(1), m.group(2)
                threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
                self.url = f"http://{self.http}"
                self.auth = None
                return
        raise RuntimeError("busbar did not become ready")

    def call(self, method, path, body=None):
        headers = {"content-type": "application/json"}
        if self.auth:
            headers["authorization"] = "Basic " + base64.b64encode(self.auth.encode()).decode()
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read()
            return json.loads(text) if text else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.tmp.cleanup()


class Failing(http.server.BaseHTTPRequestHandler):
    """An HTTP target that answers 503 until `healthy` is set."""
    healthy = False
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204 if Failing.healthy else 503)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def wait_for(what, check, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def setup(b, hook_url):
    b.call("POST", "/topics", {"name": "orders", "partitions": 2})
    b.call("POST", "/topics", {"name": "orders-dlq"})
    b.call("POST", "/topics", {"name": "audit"})
    # Bytes that are not text, repeated headers, a number past 2^53, a spreadsheet formula.
    b.call("POST", "/topics", {"name": "raw"})
    b.call("POST", "/topics/raw/events", [
        {"key_base64": "/w==", "value_base64": "AAEC", "headers": [{"key": "h", "value": "a"}, {"key": "h", "value": "b"}]},
        {"key": "big", "value": 12345678901234567891},
        {"value": "=HYPERLINK(\"http://x\")"}])
    schema = {"type": "record", "name": "Order", "fields": [{"name": "n", "type": "int"}]}
    b.call("POST", "/schema-registry/subjects/orders-value/versions", {"schema": json.dumps(schema)})
    events = [{"key": f"customer-{i % 5}", "value": {"n": i, "level": "error" if i % 10 == 0 else "info"}}
              for i in range(40)]
    b.call("POST", "/topics/orders/events", events)
    b.call("POST", "/subscriptions", {
        "name": "orders-to-webhook", "sources": ["orders"], "start": "earliest",
        "pattern": {"data": {"level": ["error"]}}, "target": {"url": hook_url},
        "delivery": {"max_attempts": 1}, "dead_letter_topic": "orders-dlq"})
    b.call("POST", "/subscriptions", {"name": "orders-audit", "sources": ["orders"], "start": "earliest",
                                      "target": {"topic": "audit"}})
    wait_for("4 dead letters", lambda: len(b.call("GET", "/dead-letters/orders-dlq")["dead_letters"]) == 4)
    # A consumer group with committed offsets and no members (its offsets can be reset).
    c = b.call("POST", "/groups/billing/consumers", {"topics": ["orders"], "start": "earliest"})
    cid = c["consumer_id"]
    got = 0
    end = time.time() + 20
    while got < 25 and time.time() < end:
        got += len(b.call("GET", f"/groups/billing/consumers/{cid}/events?max=25&wait_ms=500")["events"])
    b.call("POST", f"/groups/billing/consumers/{cid}/commit", {})
    b.call("DELETE", f"/groups/billing/consumers/{cid}")


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


# Conditions are polled from Python: the page's CSP forbids the eval Playwright's
# wait_for_function would need.
class Page:
    """A Playwright page that records console errors and failed requests."""

    last = None

    def __init__(self, browser, base):
        Page.last = self
        self.ctx = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 900})
        self.page = self.ctx.new_page()
        self.base = base
        self.errors = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def visit(self, hash_, wait_for_selector):
        self.page.goto(f"{self.base}/ui/#{hash_}")
        self.page.wait_for_selector(wait_for_selector, timeout=15000)
        assert not self.errors, f"console errors on #{hash_}: {self.errors}"

    def shot(self, name):
        if SHOTS:
            self.page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


@test
def every_page_loads_without_console_errors_and_the_flows_work(browser, b):
    p = Page(browser, b.url)
    pg = p.page
    # Confirmations (deletes, redrives, retention changes) are accepted.
    pg.on("dialog", lambda dlg: dlg.accept())
    # GET / redirects to the console.
    pg.goto(b.url + "/")
    assert pg.url.endswith("/ui/"), pg.url
    pg.wait_for_selector("[data-metric=topics]")
    assert pg.text_content("[data-metric=topics]") == "4"
    wait_for("the rate", lambda: pg.text_content("[data-metric=rate]") != "…")
    p.shot("overview")

    p.visit("/topics", "#topics")
    assert "orders" in pg.text_content("#topics")
    # Per-topic rates from two samples of the produce counters: events produced between them.
    b.call("POST", "/topics/orders/events", [{"value": {"n": 100 + i, "level": "info"}} for i in range(20)])
    wait_for("a topic's rate", lambda: re.fullmatch(r"\d+\.\d", pg.text_content("[data-rate=orders]") or ""))
    assert float(pg.text_content("[data-rate=orders]")) > 0, pg.text_content("[data-rate=orders]")
    assert pg.text_content("[data-rate=audit]") in ("0.0", "…") or float(pg.text_content("[data-rate=audit]")) >= 0
    p.shot("topics")

    # Topic configs: set one, then back to its default, each checked through the API.
    p.visit("/topics/audit", "#configs")
    pg.fill("#configs input[name='config-retention.ms']", "3600000")
    pg.click("#configs button[type=submit]")
    wait_for("retention.ms set", lambda: b.call("GET", "/topics/audit")["overrides"].get("retention.ms") == "3600000")
    pg.wait_for_selector("#configs tr:has-text('retention.ms') button:has-text('Default')")
    pg.fill("#configs input[name='config-retention.ms']", "bad")
    pg.click("#configs button[type=submit]")
    wait_for("the refusal", lambda: "Not changed" in (pg.text_content("#toast") or ""))
    # The browser logs the expected 400 as a console error: only it.
    assert p.errors and all("400" in e for e in p.errors), p.errors
    p.errors.clear()
    assert b.call("GET", "/topics/audit")["overrides"].get("retention.ms") == "3600000"
    p.visit("/topics/audit", "#configs")
    pg.click("#configs tr:has-text('retention.ms') button:has-text('Default')")
    wait_for("retention.ms back to its default", lambda: "retention.ms" not in b.call("GET", "/topics/audit")["overrides"])

    # Browse newest first: the last offset of partition 0 comes first.
    p.visit("/topics/orders", "h1:has-text('Topic orders')")
    pg.wait_for_selector("#events")
    hw = b.call("GET", "/topics/orders")["partitions"][0]["high_watermark"]
    first_offset = pg.text_content("#events tbody tr:first-child td:first-child")
    assert first_offset == str(hw - 1), (first_offset, hw)
    p.shot("topic")

    # Search with a pattern, on the server: only the error events of the partition holding them
    # (all keyed customer-0).
    part = next(p for p in (0, 1) if any(e["value"]["level"] == "error" for e in b.call(
        "GET", f"/topics/orders/partitions/{p}/events?limit=1000")["events"]))
    pg.select_option("select[name=partition]", str(part))
    pg.fill("textarea[name=pattern]", '{"data": {"level": ["error"]}}')
    pg.select_option("select[name=from]", "offset")
    pg.fill("input[name=at]", "0")
    pg.click("#browse button[type=submit]")
    wait_for("a search's page", lambda: "scanned" in (pg.text_content("#messages p") or ""))
    page = b.call("GET", f"/topics/orders/partitions/{part}/events?limit=1000")
    want = [e["offset"] for e in page["events"] if e["value"]["level"] == "error"]
    got = [int(td.text_content()) for td in pg.query_selector_all("#events tbody tr td:first-child")]
    assert got == want and want, (got, want)

    # Export what is shown as JSON.
    with pg.expect_download() as d:
        pg.click("text=Export JSON")
    exported = json.loads(open(d.value.path()).read())
    assert [e["offset"] for e in exported] == want

    # Produce text from the form: stored as typed (not as a JSON string).
    pg.fill("textarea[name=value]", "plain words")
    pg.click("#produce button[type=submit]")
    pg.wait_for_selector("#toast.show")
    wait_for("the produced text", lambda: any(
        e["value"] == "plain words" for p_ in (0, 1)
        for e in b.call("GET", f"/topics/orders/partitions/{p_}/events?limit=1000&encoding=utf8")["events"]))

    # The raw topic: bytes shown as hex, exact re-produce of bytes, repeated headers and big numbers,
    # CSV cells that cannot run as formulas, and paging forward.
    p.visit("/topics/raw", "h1:has-text('Topic raw')")
    pg.wait_for_selector("#events")
    pg.select_option("select[name=as]", "hex")
    pg.click("#browse button[type=submit]")
    wait_for("bytes as hex", lambda: "00 01 02" in (pg.text_content("#events") or ""))
    def stored(offset):
        return b.call("GET", f"/topics/raw/partitions/0/events?offset={offset}&limit=1&encoding=base64")["events"][0]
    for row, original in [(3, 0), (2, 1)]:  # newest first: offset 0 is the 3rd row, offset 1 the 2nd
        hw = b.call("GET", "/topics/raw")["partitions"][0]["high_watermark"]
        pg.click(f"#events tbody tr:nth-child({row}) button")
        wait_for("the copy", lambda: b.call("GET", "/topics/raw")["partitions"][0]["high_watermark"] == hw + 1)
        copy, orig = stored(hw), stored(original)
        for k in ("key", "key_base64", "value_base64", "headers"):
            assert copy.get(k) == orig.get(k), (k, copy, orig)
        p.visit("/topics/raw", "#events")
    pg.select_option("select[name=as]", "json")
    pg.click("#browse button[type=submit]")
    wait_for("values as JSON", lambda: "HYPERLINK" in (pg.text_content("#events") or ""))
    with pg.expect_download() as d:
        pg.click("text=Export CSV")
    text = open(d.value.path()).read()
    assert "\"'=HYPERLINK(" in text and "\"=HYPERLINK" not in text, text
    pg.select_option("select[name=from]", "offset")
    pg.fill("input[name=at]", "0")
    pg.fill("input[name=limit]", "2")
    pg.click("#browse button[type=submit]")
    pg.wait_for_selector("#next-page")
    pg.click("#next-page")
    wait_for("the next page", lambda: pg.text_content("#events tbody tr td") == "2")

    # Consumer groups: reset with a preview that changes nothing, then apply.
    p.visit("/groups", "#groups")
    assert "billing" in pg.text_content("#groups")
    p.shot("groups")
    p.visit("/groups/billing", "#offsets")
    committed = {o["partition"]: o["committed_offset"] for o in b.call("GET", "/groups/billing")["offsets"]}
    pg.select_option("#reset select[name=to]", "earliest")
    pg.click("#reset button[type=submit]")
    pg.wait_for_selector("text=Apply reset")
    assert {o["partition"]: o["committed_offset"] for o in b.call("GET", "/groups/billing")["offsets"]} == committed, \
        "the preview moved offsets"
    p.shot("group")
    pg.click("text=Apply reset")
    wait_for("offsets at 0", lambda: all(o["committed_offset"] == 0 for o in b.call("GET", "/groups/billing")["offsets"]))

    # Subscriptions: pause and resume.
    p.visit("/subscriptions", "#subscriptions")
    p.shot("subscriptions")
    pg.click("#subscriptions tr:has-text('orders-audit') button")
    wait_for("paused", lambda: str(b.call("GET", "/subscriptions/orders-audit")["state"]).startswith("paused"))
    pg.wait_for_selector("#subscriptions tr:has-text('orders-audit') button:has-text('Resume')")
    pg.click("#subscriptions tr:has-text('orders-audit') button")
    wait_for("running", lambda: b.call("GET", "/subscriptions/orders-audit")["state"] == "running")
    # The list is drawn again after the resume: wait for it before filling a form on it.
    pg.wait_for_selector("#subscriptions tr:has-text('orders-audit') button:has-text('Pause')")

    # Create a subscription, its pattern tested first against recent events; edit it; delete it.
    pg.fill("#create-subscription input[name=name]", "errors-to-audit")
    pg.fill("#create-subscription input[name=sources]", "orders")
    # A blank pattern tests as every event.
    pg.click("#create-subscription button:has-text('Test pattern')")
    pg.wait_for_selector("#create-tested p")
    assert re.match(r"\d+ of the recent events", pg.text_content("#create-tested p")), pg.text_content("#create-tested p")
    assert not pg.query_selector("#create-tested p.error")
    pg.fill("#create-subscription textarea[name=pattern]", '{"data": {"level": ["error"]}}')
    pg.fill("#create-subscription input[name=target]", "topic:audit")
    pg.click("#create-subscription button:has-text('Test pattern')")
    wait_for("the pattern's matches", lambda: (pg.text_content("#create-tested p") or "").startswith("4 of the recent events"))
    pg.click("#create-subscription button[type=submit]")
    pg.wait_for_selector("#edit-subscription")
    created = b.call("GET", "/subscriptions/errors-to-audit")
    assert created["pattern"] == {"data": {"level": ["error"]}} and created["target"] == {"topic": "audit"}, created
    spec = json.loads(pg.input_value("#edit-subscription textarea[name=spec]"))
    spec["pattern"] = {"data": {"level": ["warn"]}}
    spec["dead_letter_topic"] = "orders-dlq"
    pg.fill("#edit-subscription textarea[name=spec]", json.dumps(spec))
    pg.click("#edit-subscription button[type=submit]")
    wait_for("the edit", lambda: b.call("GET", "/subscriptions/errors-to-audit").get("dead_letter_topic") == "orders-dlq")
    assert b.call("GET", "/subscriptions/errors-to-audit")["pattern"] == {"data": {"level": ["warn"]}}
    # The page is drawn again after the save: wait for the new spec before editing it.
    # (drawn pretty-printed; the text the test typed was one line)
    wait_for("the page with the saved spec",
             lambda: '\n  "dead_letter_topic": "orders-dlq"' in pg.input_value("#edit-subscription textarea[name=spec]"))
    # A bad spec is refused and changes nothing.
    pg.fill("#edit-subscription textarea[name=spec]", json.dumps({**spec, "sources": []}))
    pg.click("#edit-subscription button[type=submit]")
    wait_for("the refusal", lambda: "Not saved" in (pg.text_content("#toast") or ""))
    assert p.errors and all("400" in e for e in p.errors), p.errors
    p.errors.clear()
    assert b.call("GET", "/subscriptions/errors-to-audit")["sources"] == ["orders"]
    pg.click("#edit-subscription button:has-text('Delete subscription')")
    wait_for("deleted", lambda: "errors-to-audit" not in [x["name"] for x in b.call("GET", "/subscriptions")["subscriptions"]])
    # The page goes back to the list once the answer came: wait for that before going on.
    pg.wait_for_selector("h1:text-is('Subscriptions')")

    # The pattern tester and a replay.
    p.visit("/subscriptions/orders-to-webhook", "h1:has-text('Subscription orders-to-webhook')")
    pg.click("#pattern-test button")
    pg.wait_for_selector("#tested p")
    errors = sum(1 for p in (0, 1) for e in b.call("GET", f"/topics/orders/partitions/{p}/events?limit=1000")["events"]
                 if isinstance(e["value"], dict) and e["value"]["level"] == "error")
    assert errors == 4, errors
    assert pg.text_content("#tested p").startswith(f"{errors} of the recent events"), pg.text_content("#tested p")
    pg.fill("#replay input[name=from]", "2020-01-01T00:00:00Z")
    pg.click("#replay button[type=submit]")
    wait_for("a replay", lambda: b.call("GET", "/subscriptions/orders-to-webhook/replays")["replays"])
    pg.wait_for_selector("#replays")
    p.shot("subscription")

    # Dead letters: redrive one (the target is healthy now). The replay's failed deliveries are
    # dead letters too: wait for it to end first.
    wait_for("the replay's end", lambda: all(r["state"] != "RUNNING" for r in b.call(
        "GET", "/subscriptions/orders-to-webhook/replays")["replays"]), timeout=60)
    total = len(b.call("GET", "/dead-letters/orders-dlq")["dead_letters"])
    Failing.healthy = True
    p.visit("/dead-letters/orders-dlq", "#dead-letters")
    p.shot("dead-letters")
    before = b.call("GET", "/subscriptions/orders-to-webhook")["counters"]["delivered"]
    pg.click("#dead-letters tbody tr:first-child button")
    wait_for("one redriven", lambda: (pg.text_content("#toast") or "").startswith("Redrove 1 "))
    wait_for("a redriven delivery", lambda: b.call(
        "GET", "/subscriptions/orders-to-webhook")["counters"]["delivered"] == before + 1)
    # Redrive all: every other letter (the one redriven is skipped).
    p.visit("/dead-letters/orders-dlq", "#dead-letters")
    pg.click("#redrive-all")
    wait_for("redrive all", lambda: (pg.text_content("#toast") or "").startswith(f"Redrove {total - 1} letters (1 "))
    wait_for("the other deliveries", lambda: b.call(
        "GET", "/subscriptions/orders-to-webhook")["counters"]["delivered"] == before + total)
    # Schemas (read-only): the subject, then its versions with the schema text.
    p.visit("/schemas", "#subjects")
    assert "orders-value" in pg.text_content("#subjects")
    p.shot("schemas")
    p.visit("/schemas/orders-value", "#versions")
    assert '"name": "Order"' in pg.text_content("#versions")
    assert not p.errors, p.errors
    p.ctx.close()


@test
def a_busbar_with_authentication_asks_to_sign_in(browser, _):
    # A short failed-login backoff: the wrong password's must be over before the right one.
    b = Busbar({"BUSBAR_AUTH_ENABLED": "true", "BUSBAR_AUTH_SUPER_USERS": "admin", "BUSBAR_ADMIN_PASSWORD": ADMIN_PW,
                "BUSBAR_AUTH_BACKOFF_MAX_MS": "200"})
    try:
        p = Page(browser, b.url)
        pg = p.page
        pg.goto(b.url + "/ui/")
        pg.wait_for_selector(".login")
        pg.fill("input[name=user]", "admin")
        pg.fill("input[name=password]", "wrong")
        pg.click(".login button")
        pg.wait_for_selector("#login-message.error")
        assert "refused" in pg.text_content("#login-message")
        time.sleep(0.5)
        pg.fill("input[name=user]", "admin")
        pg.fill("input[name=password]", ADMIN_PW)
        pg.click(".login button")
        pg.wait_for_selector("[data-metric=topics]")
        assert "admin" in pg.text_content("#who")
        # Browsers log a 401 answer as a console error: only the expected ones.
        assert all("401" in e for e in p.errors), p.errors
        p.errors.clear()
        # Users, ACLs and tokens (read-only); a token's value is never shown.
        b.auth = f"admin:{ADMIN_PW}"
        b.call("POST", "/users", {"name": "bob", "password": "bob-secret-1"})
        b.call("POST", "/acls", {"principal": "User:bob", "resource_type": "TOPIC", "resource_name": "orders",
                                 "pattern_type": "LITERAL", "operation": "READ", "permission": "ALLOW", "host": "*"})
        secret = b.call("POST", "/tokens", {"name": "ci"})["token"]
        p.visit("/security", "#tokens")
        assert "bob" in pg.text_content("#users") and "User:bob" in pg.text_content("#acls")
        assert "ci" in pg.text_content("#tokens") and secret not in pg.content()
        p.shot("security")
        pg.click("#sign-out")
        pg.wait_for_selector(".login")
        p.ctx.close()
    finally:
        b.stop()


def main():
    install()
    from playwright.sync_api import sync_playwright
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{srv.server_address[1]}/hook"
    passed = failed = 0
    b = Busbar()
    try:
        setup(b, hook)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium"),
                                         args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            for fn in TESTS:
                start = time.time()
                try:
                    fn(browser, b)
                    passed += 1
                    print(f"ok      {fn.__name__} ({time.time() - start:.1f}s)", flush=True)
                except Exception:
                    failed += 1
                    print(f"FAILED  {fn.__name__}\n{traceback.format_exc()}", flush=True)
                    if Page.last:
                        try:
                            print("page:", Page.last.page.url, Page.last.errors,
                                  Page.last.page.inner_text("main")[:1500], flush=True)
                        except Exception as e:
                            print("no page text:", e)
            browser.close()
    finally:
        b.stop()
        srv.shutdown()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
