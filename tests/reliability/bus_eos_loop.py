#!/usr/bin/env python3
"""Reliability: a subscription's topic target is exactly-once under kill -9 (issue 18).

A publisher thread writes integers to topic `src` (3 partitions) over HTTP, in batches, for the
whole run; a batch whose answer is lost to a kill is sent again, so `src` itself may hold a value
twice: what counts is what `src` holds. Subscription `copy` copies `src` to topic `dst`
(3 partitions). The controller kills busbar with SIGKILL at random moments, `--cycles` times,
restarting it on the same ports, then lets the subscription catch up.

Checks, on `src` and `dst` read from the start at read_committed:
- exactly-once: each value is in `dst` as many times as in `src` (`lost`: fewer, `duplicate`: more);
- phantom: no value in `dst` that is not in `src`.
The read_uncommitted count of `dst` shows the aborted deliveries the kills left behind (records of
transactions that never committed, which no read_committed reader sees).
`--self-test` runs the checker on planted histories, one per anomaly, and fails if it misses any.

Usage: bus_eos_loop.py BUSBAR [--cycles N] [--seed S]
Prints one JSON line: {"cycles", "published", "src", "dst", "aborted_records_skipped",
"anomalies": {...}}; exits 1 on any anomaly.
"""
import argparse, json, os, random, sys, tempfile, threading, time, urllib.error, urllib.request
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from txn_loop import Broker, drain  # noqa: E402


def check(src, dst):
    """Anomaly counts for the values of `src` and `dst` (lists, any order)."""
    want, got = Counter(src), Counter(dst)
    anomalies = {"lost": 0, "duplicate": 0, "phantom": 0}
    for v, n in got.items():
        if v not in want:
            anomalies["phantom"] += n
        elif n > want[v]:
            anomalies["duplicate"] += n - want[v]
    for v, n in want.items():
        if got.get(v, 0) < n:
            anomalies["lost"] += n - got.get(v, 0)
    return anomalies


def self_test():
    src = ["1", "2", "2", "3"]
    assert not any(check(src, ["3", "2", "1", "2"]).values())
    planted = {"lost": ["1", "2", "3"], "duplicate": src + ["3"], "phantom": src + ["9"]}
    for kind, dst in planted.items():
        got = check(src, dst)
        assert got[kind] > 0, f"the checker missed a planted {kind}: {got}"
    print("self-test: every planted anomaly found")


def post(http, path, body, timeout=10):
    req = urllib.request.Request(f"http://{http}{path}", method="POST", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def get(http, path):
    with urllib.request.urlopen(f"http://{http}{path}", timeout=10) as r:
        return json.loads(r.read())


class Publisher(threading.Thread):
    """Publishes batches of 20 increasing integers until stopped; a batch is sent again until
    it is acknowledged (busbar may be down)."""

    def __init__(self, broker):
        super().__init__(daemon=True)
        self.broker, self.next, self.stop, self.acked = broker, 0, threading.Event(), 0

    def run(self):
        while not self.stop.is_set():
            batch = [{"value": i} for i in range(self.next, self.next + 20)]
            try:
                post(self.broker.http, "/topics/src/events", batch)
                self.next += 20
                self.acked += 20
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.05)
            time.sleep(0.01)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    self_test()
    if a.self_test:
        return
    rnd = random.Random(a.seed)
    with tempfile.TemporaryDirectory() as data:
        b = Broker(a.binary, data)
        b.start()
        for t in ("src", "dst"):
            post(b.http, "/topics", {"name": t, "partitions": 3})
        post(b.http, "/subscriptions", {"name": "copy", "sources": ["src"], "target": {"topic": "dst"}})
        guarantee = get(b.http, "/subscriptions/copy")["guarantee"]
        assert guarantee == "exactly_once", guarantee
        pub = Publisher(b)
        pub.start()
        for _ in range(a.cycles):
            time.sleep(rnd.uniform(0.3, 1.2))
            b.kill()
            b.start()
        pub.stop.set()
        pub.join(30)
        # Let the subscription catch up: its lag reaches 0 and stays there.
        deadline = time.time() + 120
        while time.time() < deadline and get(b.http, "/subscriptions/copy")["lag"] > 0:
            time.sleep(0.5)
        src = drain(b.kafka, "src", "read_committed", pub.acked)
        dst = drain(b.kafka, "dst", "read_committed", len(src))
        everything = drain(b.kafka, "dst", "read_uncommitted", len(dst))
        anomalies = check(src, dst)
        b.kill()
    result = {"cycles": a.cycles, "published": pub.acked, "src": len(src), "dst": len(dst),
              "aborted_records_skipped": len(everything) - len(dst), "anomalies": anomalies}
    print(json.dumps(result))
    sys.exit(1 if any(anomalies.values()) else 0)


if __name__ == "__main__":
    main()
