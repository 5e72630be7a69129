#!/usr/bin/env python3
"""Reliability D1/D2/D8/D9 (shared/spec/reliability.md §9.1): kill -9 loops against the real busbar
binary while real clients write and a consumer group commits, recorded as a Jepsen-style history
and checked by busbar's history checker.

Writers: two confluent-kafka producers (idempotent, acks=all) and one HTTP publisher, each value
unique. Reader: a confluent-kafka group member that commits synchronously after every poll. The
broker is killed with SIGKILL at random times (or stopped with SIGTERM for the clean-restart
variant) and restarted on the same ports. At the end every partition is drained from the start.

A send whose callback reports success is `ok` at its partition and offset; any error is `info`
(unknown: it may or may not have been stored). HTTP 2xx is `ok`, 4xx `fail`, anything else `info`.

Overload (L3/L4): `--overload SECONDS` runs no kills; six producers write 256-byte messages as fast as they can (well
past what the disk sustains) while the reader is slowed into a growing backlog, under a request
budget (`kafka.request_bytes_max` 16 MiB, frames 8 MiB, fetches 8 MiB); RSS is sampled every
100 ms and must stay under `--rss-budget-mib`, and the history must still be clean.

Usage: kill_loop.py BUSBAR CHECKER --policy batch|interval|never [--kills N] [--signal KILL|TERM]
                    [--seed S] [--history FILE] [--overload SECONDS --rss-budget-mib MIB]
Prints one JSON line: {"policy", "kills", "sends_ok", "polled", "anomalies": {...},
"restart_ms_max", "rss_peak_kib", "clean"}; exits 1 when the checker finds an anomaly.
"""
import argparse, json, os, random, re, signal, subprocess, sys, tempfile, threading, time, urllib.error, urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition

TOPIC = "jepsen"
PARTITIONS = 8


class Broker:
    def __init__(self, binary, data, policy, extra_env=None):
        self.binary, self.data, self.policy = binary, data, policy
        self.extra_env = extra_env or {}
        self.http = self.kafka = None
        self.restart_ms = []
        self.rss_peak_kib = 0

    def start(self):
        http_port = self.http.split(":")[1] if self.http else "0"
        kafka_port = self.kafka.split(":")[1] if self.kafka else "0"
        env = dict(os.environ, BUSBAR_TOPIC_SYNC_POLICY=self.policy,
                   BUSBAR_BROKER_GROUP_INITIAL_REBALANCE_DELAY_MS="300", **self.extra_env)
        if self.policy == "interval":
            env["BUSBAR_TOPIC_SYNC_INTERVAL_MS"] = "1000"
        t0 = time.time()
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--data-dir", self.data, "--http-addr", f"127.0.0.1:{http_port}",
             "--kafka-addr", f"127.0.0.1:{kafka_port}"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        while True:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError("busbar exited before it was ready")
            m = re.search(r"ready in (\d+) ms: http://(\S+) kafka (\S+) ", line)
            if m:
                self.restart_ms.append(int((time.time() - t0) * 1000))
                self.http, self.kafka = m.group(2), m.group(3)
                threading.Thread(target=self.proc.stderr.read, daemon=True).start()
                return

    def sample_rss(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:") or line.startswith("VmRSS:"):
                        self.rss_peak_kib = max(self.rss_peak_kib, int(line.split()[1]))
        except OSError:
            pass

    def stop(self, sig):
        self.sample_rss()
        self.proc.send_signal(sig)
        self.proc.wait(60)


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.ops = []

    def add(self, op):
        with self.lock:
            self.ops.append(op)


def kafka_writer(rec, broker, process, stop, counter, flood=False):
    p = Producer({"bootstrap.servers": broker.kafka, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 20 if flood else 2, "batch.size": 1000000 if flood else 16384,
                  "message.timeout.ms": 120000, "reconnect.backoff.max.ms": 200, "log_level": 0})
    pad = "x" * (250 if flood else 0)  # ~256 B: keeps a CI run under ~300 MB of disk

    def done(err, msg, value):
        if err is None:
            rec.add({"f": "send", "process": process, "topic": TOPIC, "partition": msg.partition(),
                     "value": value, "outcome": {"type": "ok", "offset": msg.offset()}})
        else:
            rec.add({"f": "send", "process": process, "topic": TOPIC, "partition": -1,
                     "value": value, "outcome": {"type": "info"}})

    while not stop.is_set():
        value = process * 1_000_000_000 + next(counter)
        try:
            p.produce(TOPIC, key=str(value).encode(), value=(str(value) + (" " + pad if pad else "")).encode(),
                      on_delivery=lambda err, msg, v=value: done(err, msg, v))
        except BufferError:
            p.poll(0.05)
            continue
        p.poll(0)
        if not flood:
            time.sleep(0.0005)
    p.flush(120)


def http_writer(rec, broker, process, stop, counter):
    while not stop.is_set():
        value = process * 1_000_000_000 + next(counter)
        body = json.dumps({"key": str(value), "value": value}).encode()
        req = urllib.request.Request(f"http://{broker.http}/topics/{TOPIC}/events", data=body,
                                     headers={"content-type": "application/json"})
        outcome, partition = {"type": "info"}, -1
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                at = json.loads(r.read())["offsets"][0]
                outcome, partition = {"type": "ok", "offset": at["offset"]}, at["partition"]
        except urllib.error.HTTPError as e:
            if 400 <= e.code < 500:
                outcome = {"type": "fail"}
        except OSError:
            time.sleep(0.05)
        rec.add({"f": "send", "process": process, "topic": TOPIC, "partition": partition,
                 "value": value, "outcome": outcome})


def reader(rec, broker, process, stop, slow=False):
    assigned = {"reset": True}

    def on_assign(c, parts):
        assigned["reset"] = True

    c = Consumer({"bootstrap.servers": broker.kafka, "group.id": "checker", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                  "reconnect.backoff.max.ms": 200, "log_level": 0})
    c.subscribe([TOPIC], on_assign=on_assign)
    while not stop.is_set():
        msgs = c.consume(200, 0.2)
        records = []
        for m in msgs:
            if m.error() is None:
                records.append([TOPIC, m.partition(), m.offset(), int(m.value().split()[0])])
        if slow:
            time.sleep(0.2)
        if not records:
            continue
        rec.add({"f": "poll", "process": process, "reset": assigned["reset"], "records": records})
        assigned["reset"] = False
        nxt = {}
        for _, p, o, _ in records:
            nxt[p] = max(nxt.get(p, 0), o + 1)
        offsets = [TopicPartition(TOPIC, p, o) for p, o in nxt.items()]
        try:
            c.commit(offsets=offsets, asynchronous=False)
            ok = True
        except Exception:
            ok = False
        for tp in offsets:
            rec.add({"f": "commit", "group": "checker", "topic": TOPIC, "partition": tp.partition,
                     "offset": tp.offset, "ok": ok, "reset": False})
    c.close()


def drain(broker):
    c = Consumer({"bootstrap.servers": broker.kafka, "group.id": "drain", "enable.auto.commit": False})
    out = []
    for p in range(PARTITIONS):
        lo, hi = c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=30)
        c.assign([TopicPartition(TOPIC, p, lo)])
        got = lo
        deadline = time.time() + 60
        while got < hi and time.time() < deadline:
            for m in c.consume(1000, 0.5):
                if m.error() is None:
                    out.append([TOPIC, p, m.offset(), int(m.value().split()[0])])
                    got = m.offset() + 1
        if got < hi:
            raise RuntimeError(f"drain of partition {p} stopped at {got} of {hi}")
    c.close()
    return out


def counter():
    n = 0
    while True:
        n += 1
        yield n


def main():
    a = argparse.ArgumentParser()
    a.add_argument("busbar")
    a.add_argument("checker")
    a.add_argument("--policy", default="batch")
    a.add_argument("--kills", type=int, default=10)
    a.add_argument("--signal", default="KILL")
    a.add_argument("--seed", type=int, default=int(time.time()))
    a.add_argument("--history")
    a.add_argument("--overload", type=float, default=0)
    a.add_argument("--rss-budget-mib", type=int, default=0)
    args = a.parse_args()
    if args.overload:
        args.kills = 0
    rnd = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as data:
        limits = {"BUSBAR_KAFKA_REQUEST_BYTES_MAX": str(16 << 20), "BUSBAR_KAFKA_FRAME_BYTES_MAX": str(8 << 20),
                  "BUSBAR_BROKER_FETCH_BYTES_MAX": str(8 << 20)} if args.overload else {}
        broker = Broker(args.busbar, data, args.policy, limits)
        broker.start()
        req = urllib.request.Request(f"http://{broker.http}/topics", headers={"content-type": "application/json"},
                                     data=json.dumps({"name": TOPIC, "partitions": PARTITIONS}).encode())
        urllib.request.urlopen(req, timeout=10).read()
        rec, stop, stop_reader = Recorder(), threading.Event(), threading.Event()
        flood = bool(args.overload)
        writers = (1, 2, 5, 6, 7, 8) if flood else (1, 2)
        threads = [threading.Thread(target=kafka_writer, args=(rec, broker, i, stop, counter(), flood)) for i in writers]
        threads.append(threading.Thread(target=http_writer, args=(rec, broker, 3, stop, counter())))
        reader_thread = threading.Thread(target=reader, args=(rec, broker, 4, stop_reader, flood))
        for t in threads + [reader_thread]:
            t.start()
        sig = signal.SIGKILL if args.signal == "KILL" else signal.SIGTERM
        for _ in range(args.kills):
            time.sleep(rnd.uniform(0.3, 1.5))
            broker.stop(sig)
            broker.start()
        end = time.time() + args.overload
        while time.time() < end:
            broker.sample_rss()
            time.sleep(0.1)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(120)
        time.sleep(2.0)
        stop_reader.set()
        reader_thread.join(60)
        final = drain(broker)
        broker.stop(signal.SIGTERM)
    lines = [json.dumps(op) for op in rec.ops]
    lines += [json.dumps({"f": "drain", "records": final})]
    path = args.history or tempfile.mktemp(suffix=".jsonl")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    out = subprocess.run([args.checker, path], capture_output=True, text=True)
    report = json.loads(out.stdout)
    blind = checker_is_blind(args.checker, rec.ops, final, path)
    sends_ok = sum(1 for op in rec.ops if op["f"] == "send" and op["outcome"]["type"] == "ok")
    polled = sum(len(op["records"]) for op in rec.ops if op["f"] == "poll")
    result = {"policy": args.policy, "signal": args.signal, "kills": args.kills, "seed": args.seed,
              "sends_ok": sends_ok, "polled": polled, "stored": len(final),
              "anomalies": report["counts"], "examples": report["examples"],
              "restart_ms_max": max(broker.restart_ms[1:] or [0]), "rss_peak_kib": broker.rss_peak_kib,
              "clean": report["clean"] and not blind, "checker_blind": blind, "history": path,
              "rss_budget_mib": args.rss_budget_mib,
              "rss_within_budget": not args.rss_budget_mib or broker.rss_peak_kib <= args.rss_budget_mib * 1024}
    result["clean"] = result["clean"] and result["rss_within_budget"]
    print(json.dumps(result))
    sys.exit(0 if result["clean"] else 1)


def checker_is_blind(checker, ops, final, path):
    """Plants a lost write in a copy of this run's history (one acknowledged value removed from every
    read) and answers whether the checker failed to notice it."""
    victim = next((op["value"] for op in ops if op["f"] == "send" and op["outcome"]["type"] == "ok"), None)
    if victim is None:
        return True
    planted = []
    for op in ops:
        if op["f"] == "poll":
            op = dict(op, records=[r for r in op["records"] if r[3] != victim])
        planted.append(json.dumps(op))
    planted.append(json.dumps({"f": "drain", "records": [r for r in final if r[3] != victim]}))
    with open(path + ".planted", "w") as f:
        f.write("\n".join(planted) + "\n")
    out = subprocess.run([checker, path + ".planted"], capture_output=True, text=True)
    counts = json.loads(out.stdout)["counts"]
    return counts.get("lost-write", 0) + counts.get("unseen", 0) == 0


if __name__ == "__main__":
    main()
