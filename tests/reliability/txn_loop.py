#!/usr/bin/env python3
"""Reliability: exactly-once consume-transform-produce through Kafka transactions (issue 18),
under kill -9 of the broker and SIGKILL of the client at random points.

An input topic holds N unique values (written before the loop, idempotent). A transformer
process (this file with `--transform`) reads it read_committed in group "eos" and, per batch,
begins a transaction, writes `value@attempt` to the output topic for each input value, sends the
batch's offsets to the transaction and commits; it journals each attempt's values and its outcome
(`commit`: acknowledged, `abort`: aborted by the client, no line: unknown) to a file, fsynced
before the outcome is acted on. The controller kills the broker (SIGKILL, restart on the same
ports) or the transformer (SIGKILL, start another with the same transactional id, which fences
the dead one's) at random moments, `--cycles` times, then lets the transformer finish.

Checks, on the output read from the start at read_committed (and read_uncommitted for the
aborted count):
- exactly-once: each input value appears exactly once (none lost, none twice);
- lost-committed-write: every value of an acknowledged commit is there;
- aborted-read: no value of an attempt the client aborted is there;
- torn-transaction: each attempt is there whole or not at all;
- no output value that no attempt wrote.
`--self-test` runs the checker on planted histories, one per anomaly, and fails if it misses any.

With `--checker CHECK_HISTORY` the run is also written as a Jepsen-style history and checked by
busbar's Rust checker (`crates/busbar-testkit`, the same lost-committed-write, aborted-read,
torn-transaction and exactly-once checks, planted-anomaly tested there); its counts join the
anomalies as `check-history:<kind>`.

Usage: txn_loop.py BUSBAR [--cycles N] [--values N] [--seed S] [--checker CHECK_HISTORY]
Prints one JSON line: {"cycles", "values", "attempts", "committed", "aborted", "anomalies": {...}};
exits 1 on any anomaly.
"""
import argparse, json, os, random, re, signal, subprocess, sys, tempfile, threading, time

IN, OUT = "eos-in", "eos-out"


def check(values, journal, committed_out):
    """Anomaly counts: `values` the inputs; `journal` {attempt: (values, outcome or None)};
    `committed_out` the output records ("value@attempt") read at read_committed."""
    seen = {}
    by_attempt = {}
    anomalies = {"lost": 0, "duplicate": 0, "lost-committed-write": 0, "aborted-read": 0,
                 "torn-transaction": 0, "phantom": 0}
    for rec in committed_out:
        value, _, attempt = rec.partition("@")
        if attempt not in journal or value not in journal[attempt][0]:
            anomalies["phantom"] += 1
            continue
        seen[value] = seen.get(value, 0) + 1
        by_attempt.setdefault(attempt, set()).add(value)
    for v in values:
        n = seen.get(v, 0)
        if n == 0:
            anomalies["lost"] += 1
        elif n > 1:
            anomalies["duplicate"] += n - 1
    for attempt, (vals, outcome) in journal.items():
        got = by_attempt.get(attempt, set())
        if outcome == "commit" and got != set(vals):
            anomalies["lost-committed-write"] += 1
        if outcome == "abort" and got:
            anomalies["aborted-read"] += 1
        if got and got != set(vals):
            anomalies["torn-transaction"] += 1
    return anomalies


def self_test():
    values = ["1", "2", "3", "4"]
    good = {"a": (["1", "2"], "commit"), "b": (["3", "4"], "abort"), "c": (["3", "4"], None)}
    clean = ["1@a", "2@a", "3@c", "4@c"]
    assert not any(check(values, good, clean).values()), check(values, good, clean)
    planted = {
        "lost": clean[:3] + [],
        "duplicate": clean + ["1@a"],
        "lost-committed-write": ["1@a", "3@c", "4@c"],
        "aborted-read": ["1@a", "2@a", "3@b", "4@b"],
        "torn-transaction": ["1@a", "2@a", "3@c"],
        "phantom": clean + ["9@z"],
    }
    for kind, out in planted.items():
        got = check(values, good, out)
        assert got[kind] > 0, f"the checker missed a planted {kind}: {got}"
    print("self-test: every planted anomaly found")


def transform(kafka, journal_path, txn_id):
    from confluent_kafka import Consumer, KafkaException, Producer
    # A short session: a killed transformer's partitions go to the next one within seconds.
    c = Consumer({"bootstrap.servers": kafka, "group.id": "eos", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "isolation.level": "read_committed", "log_level": 0,
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    c.subscribe([IN])
    p = Producer({"bootstrap.servers": kafka, "transactional.id": txn_id, "log_level": 0,
                  "transaction.timeout.ms": 10000, "message.timeout.ms": 10000})
    p.init_transactions(60)
    journal = open(journal_path, "a")

    def note(obj):
        journal.write(json.dumps(obj) + "\n")
        journal.flush()
        os.fsync(journal.fileno())

    while True:
        msgs = [m for m in c.consume(20, 1.0) if not m.error()]
        if not msgs:
            continue
        attempt = f"{os.getpid()}-{time.time_ns()}"
        vals = [m.value().decode() for m in msgs]
        note({"attempt": attempt, "values": vals})
        try:
            p.begin_transaction()
            for v in vals:
                p.produce(OUT, value=f"{v}@{attempt}".encode())
            p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
            p.commit_transaction(30)
            note({"attempt": attempt, "outcome": "commit"})
        except KafkaException as e:
            err = e.args[0]
            if err.txn_requires_abort():
                try:
                    p.abort_transaction(30)
                    note({"attempt": attempt, "outcome": "abort"})
                except KafkaException:
                    os._exit(3)  # outcome unknown; the controller starts another transformer
            else:
                os._exit(3)
            # Go back to the last committed position and process again.
            parts = c.committed(c.assignment(), 30)
            for tp in parts:
                tp.offset = tp.offset if tp.offset >= 0 else 0
                c.seek(tp)


def read_journal(path):
    journal = {}
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by SIGKILL: its attempt has no outcome
            if "values" in r:
                journal[r["attempt"]] = (r["values"], None)
            elif r["attempt"] in journal:
                journal[r["attempt"]] = (journal[r["attempt"]][0], r["outcome"])
    return journal


class Broker:
    def __init__(self, binary, data):
        self.binary, self.data, self.http, self.kafka = binary, data, None, None

    def start(self):
        hp = self.http.split(":")[1] if self.http else "0"
        kp = self.kafka.split(":")[1] if self.kafka else "0"
        env = dict(os.environ, BUSBAR_BROKER_GROUP_INITIAL_REBALANCE_DELAY_MS="300")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--data-dir", self.data, "--http-addr", f"127.0.0.1:{hp}",
             "--kafka-addr", f"127.0.0.1:{kp}"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        while True:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError("busbar exited before it was ready")
            m = re.search(r"ready in \d+ ms: http://(\S+) kafka (\S+) ", line)
            if m:
                self.http, self.kafka = m.group(1), m.group(2)
                threading.Thread(target=self.proc.stderr.read, daemon=True).start()
                return

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(60)


def history_check(checker, values, journal, out_records, path):
    """Runs busbar's Rust history checker (`check-history`) on the run, written as a Jepsen-style
    history: the inputs, each attempt as a transaction of (input, output) writes with its outcome,
    and the read_committed drain of the output. Output values `v@attempt` are numbered (they must
    be integers there). Answers the checker's anomaly counts."""
    ids = {}

    def number(rec):
        return ids.setdefault(rec, 1_000_000_000 + len(ids))

    lines = [{"f": "inputs", "values": [int(v) for v in values]}]
    for attempt, (vals, outcome) in journal.items():
        writes = [[int(v), number(f"{v}@{attempt}")] for v in vals]
        end = {"commit": "commit", "abort": "abort"}.get(outcome, "info")
        lines.append({"f": "txn", "process": 0, "writes": writes, "end": end})
    lines.append({"f": "drain", "records": [[OUT, p, o, number(v)] for p, o, v in out_records]})
    with open(path, "w") as f:
        f.writelines(json.dumps(l) + "\n" for l in lines)
    r = subprocess.run([checker, path], capture_output=True, text=True)
    if r.returncode not in (0, 1):
        raise RuntimeError(f"check-history failed: {r.stderr.strip()}")
    return json.loads(r.stdout)["counts"]


def drain(kafka, topic, isolation, expect_at_least, timeout=90, positions=False):
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": kafka, "group.id": f"drain-{time.time_ns()}", "log_level": 0,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": isolation})
    c.subscribe([topic])
    got, deadline, idle = [], time.time() + timeout, None
    while time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            if len(got) >= expect_at_least and idle and time.time() - idle > 3:
                break
            idle = idle or time.time()
            continue
        idle = None
        if not m.error():
            v = m.value().decode()
            got.append((m.partition(), m.offset(), v) if positions else v)
    c.close()
    return got


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--values", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--checker", help="busbar's check-history binary: also check the run with it")
    ap.add_argument("--transform", nargs=3, metavar=("KAFKA", "JOURNAL", "TXN_ID"))
    a = ap.parse_args()
    if a.transform:
        transform(*a.transform)
        return
    self_test()
    if a.self_test:
        return
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    rnd = random.Random(a.seed)
    with tempfile.TemporaryDirectory() as data:
        b = Broker(a.binary, data)
        b.start()
        admin = AdminClient({"bootstrap.servers": b.kafka, "log_level": 0})
        for t in (IN, OUT):
            admin.create_topics([NewTopic(t, 3, 1)])[t].result(30)
        src = Producer({"bootstrap.servers": b.kafka, "enable.idempotence": True, "log_level": 0})
        values = [str(i) for i in range(a.values)]
        for v in values:
            src.produce(IN, value=v.encode(), partition=int(v) % 3)
            src.poll(0)
        assert src.flush(60) == 0, "inputs not all written"
        journal = os.path.join(data, "journal.jsonl")
        me = os.path.abspath(__file__)

        def transformer():
            return subprocess.Popen([sys.executable, me, a.binary, "--transform", b.kafka, journal, "eos-1"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        t = transformer()
        kills = {"broker": 0, "client": 0}
        for _ in range(a.cycles):
            time.sleep(rnd.uniform(0.3, 1.5))
            if rnd.random() < 0.5:
                b.kill()
                kills["broker"] += 1
                b.start()
            else:
                t.send_signal(signal.SIGKILL)
                t.wait(30)
                kills["client"] += 1
            if t.poll() is not None:
                t = transformer()
        # Let the last transformer finish the input (restarting it if it gave up).
        deadline = time.time() + 240
        while time.time() < deadline:
            done = sum(len(v) for v, o in read_journal(journal).values() if o == "commit")
            if done >= a.values and len(drain(b.kafka, OUT, "read_committed", a.values, 20)) >= a.values:
                break
            if t.poll() is not None:
                t = transformer()
            time.sleep(2)
        t.send_signal(signal.SIGKILL)
        t.wait(30)
        records = drain(b.kafka, OUT, "read_committed", a.values, positions=True)
        out = [v for _, _, v in records]
        everything = drain(b.kafka, OUT, "read_uncommitted", len(out))
        j = read_journal(journal)
        anomalies = check(values, j, out)
        if a.checker:
            counts = history_check(a.checker, values, j, records, os.path.join(data, "history.jsonl"))
            anomalies.update({f"check-history:{k}": n for k, n in counts.items()})
        b.kill()
    result = {"cycles": a.cycles, "kills": kills, "values": a.values, "attempts": len(j),
              "committed": sum(1 for _, o in j.values() if o == "commit"),
              "aborted_records_skipped": len(everything) - len(out), "anomalies": anomalies}
    print(json.dumps(result))
    sys.exit(1 if any(anomalies.values()) else 0)


if __name__ == "__main__":
    main()
