#!/usr/bin/env python3
"""The cost of exactly-once topic targets (issue 18): how fast a subscription copies a backlog
of N events from `src` to `dst`, for each given busbar binary, runs interleaved (A, B, A, B, ...)
so the machine's noise falls on all alike. Not part of CI. Prints per-run figures and the
medians, with each binary's ratio to the first.

    python3 scripts/bench-bus-copy.py BUSBAR [OTHER_BUSBAR ...] [--reps 5] [--count 100000]

Each run starts its own `busbar serve` on a new data directory, publishes the backlog over HTTP
(batches of 1,000 events of ~100 B), then creates subscription `copy` (start earliest, topic
target `dst`) and times from its creation until its `delivered` counter reaches N.
"""
import argparse, json, re, statistics, subprocess, sys, tempfile, time, urllib.request


def serve(binary, data):
    p = subprocess.Popen([binary, "serve", "--data-dir", data, "--http-addr", "127.0.0.1:0",
                          "--kafka-addr", "127.0.0.1:0"], stderr=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, text=True)
    while True:
        line = p.stderr.readline()
        if not line:
            sys.exit("busbar exited before it was ready")
        m = re.search(r"ready in \d+ ms: http://(\S+) ", line)
        if m:
            return p, m.group(1)


def call(http, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{http}{path}", data=data, method="POST" if data else "GET",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


def run(binary, count):
    with tempfile.TemporaryDirectory() as data:
        p, http = serve(binary, data)
        try:
            for t in ("src", "dst"):
                call(http, "/topics", {"name": t, "partitions": 3})
            pad = "x" * 80
            for i in range(0, count, 1000):
                call(http, "/topics/src/events", [{"value": {"n": n, "pad": pad}}
                                                  for n in range(i, min(count, i + 1000))])
            start = time.time()
            call(http, "/subscriptions", {"name": "copy", "sources": ["src"], "start": "earliest",
                                          "target": {"topic": "dst"}})
            while call(http, "/subscriptions/copy")["counters"]["delivered"] < count:
                time.sleep(0.05)
            return count / (time.time() - start)
        finally:
            p.kill()
            p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--count", type=int, default=100_000)
    a = ap.parse_args()
    rates = {b: [] for b in a.binaries}
    for rep in range(a.reps):
        for b in a.binaries:
            r = run(b, a.count)
            rates[b].append(r)
            print(f"run {rep + 1} {b}: {r:,.0f} events/s", flush=True)
    base = statistics.median(rates[a.binaries[0]])
    for b in a.binaries:
        m = statistics.median(rates[b])
        print(f"median {b}: {m:,.0f} events/s ({m / base:.2f} x the first)")


if __name__ == "__main__":
    main()
