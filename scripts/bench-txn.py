#!/usr/bin/env python3
"""The cost of transactions (issue 18): confluent-kafka producing N x 100 B events to one
partition of one `busbar serve`, idempotent (acks=all) against transactional (the same, in
transactions of --per-txn events, each committed), runs interleaved (idempotent, transactional,
idempotent, ...) so the machine's noise falls on both alike. Not part of CI. Prints per-run
figures and the medians with the transactional/idempotent ratio.

    python3 scripts/bench-txn.py BUSBAR [--reps 5] [--count 200000] [--per-txn 1000]

Each run writes to its own new topic. Throughput counts from the first produce to the last
acknowledgement (idempotent: flush; transactional: the last commit).
"""
import argparse, os, re, statistics, subprocess, sys, tempfile, time


def serve(binary, data):
    p = subprocess.Popen([binary, "serve", "--data-dir", data, "--http-addr", "127.0.0.1:0",
                          "--kafka-addr", "127.0.0.1:0"], stderr=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, text=True)
    while True:
        line = p.stderr.readline()
        if not line:
            sys.exit("busbar exited before it was ready")
        m = re.search(r"ready in \d+ ms: http://\S+ kafka (\S+) ", line)
        if m:
            return p, m.group(1)


def run(kafka, topic, count, per_txn, transactional, run_id):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": kafka})  # kept alive until its answer is in
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    conf = {"bootstrap.servers": kafka, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "batch.size": 1 << 20}
    if transactional:
        conf["transactional.id"] = f"bench-{run_id}"
    p = Producer(conf)
    if transactional:
        p.init_transactions(30)
    value = b"x" * 100

    def send(n):
        for _ in range(n):
            while True:
                try:
                    p.produce(topic, value=value, partition=0)
                    break
                except BufferError:
                    p.poll(0.01)

    start = time.perf_counter()
    if transactional:
        for first in range(0, count, per_txn):
            p.begin_transaction()
            send(min(per_txn, count - first))
            p.commit_transaction(60)
    else:
        send(count)
        p.flush(60)
    return count / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--count", type=int, default=200_000)
    ap.add_argument("--per-txn", type=int, default=1000)
    a = ap.parse_args()
    figures = {False: [], True: []}
    with tempfile.TemporaryDirectory() as data:
        proc, kafka = serve(a.binary, data)
        try:
            for rep in range(a.reps):
                for txn in (False, True):
                    rate = run(kafka, f"bench-{rep}-{int(txn)}", a.count, a.per_txn, txn, rep)
                    figures[txn].append(rate)
                    kind = f"transactional ({a.per_txn}/txn)" if txn else "idempotent"
                    print(f"run {rep + 1}: {kind}: {rate:,.0f} msg/s", flush=True)
        finally:
            proc.kill()
    idem, txn = statistics.median(figures[False]), statistics.median(figures[True])
    print(f"median: idempotent {idem:,.0f} msg/s, transactional {txn:,.0f} msg/s, "
          f"ratio {txn / idem:.3f}")


if __name__ == "__main__":
    main()
