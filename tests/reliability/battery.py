#!/usr/bin/env python3
"""The reliability battery (shared/spec/reliability.md §9, single-node tiers): runs every check and
prints one table: test, runs, anomalies by kind, pass/fail, figures. The quick tier runs in CI (the
README test command); `--long` runs the long tier (more kills, more seeds, more cases).

Usage: battery.py BUSBAR CHECK-HISTORY [--long] [--fuzz]
`--fuzz` adds libFuzzer runs of every target in fuzz/ (scripts/fuzz.sh, 60 s each).
Exit status 1 when any row fails.
"""
import json, os, subprocess, sys, time

BIN, CHECKER = sys.argv[1], sys.argv[2]
LONG = "--long" in sys.argv[3:]
FUZZ = "--fuzz" in sys.argv[3:]
HERE = os.path.dirname(os.path.abspath(__file__))
ROWS = []


def row(test, runs, anomalies, ok, figures):
    ROWS.append((test, str(runs), anomalies, "pass" if ok else "FAIL", figures))
    print(f"  {'pass' if ok else 'FAIL'}  {test}", flush=True)


def kill_loop(test, policy, kills, signal="KILL", seed=1, extra=()):
    out = subprocess.run([sys.executable, os.path.join(HERE, "kill_loop.py"), BIN, CHECKER,
                          "--policy", policy, "--kills", str(kills), "--signal", signal,
                          "--seed", str(seed), *extra], capture_output=True, text=True, timeout=1800)
    try:
        r = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        row(test, kills, "driver failed: " + out.stderr.strip()[-300:], False, "")
        return
    bad = {k: v for k, v in r["anomalies"].items() if v}
    anomalies = ", ".join(f"{k}={v}" for k, v in bad.items()) or "none"
    if r.get("checker_blind"):
        anomalies += " (checker missed a planted lost write)"
    if not r.get("rss_within_budget", True):
        anomalies += f" (RSS over the {r['rss_budget_mib']} MiB budget)"
    restarts = f"restart-to-ready max {r['restart_ms_max']} ms; " if kills else ""
    figures = (f"{r['sends_ok']} acked, {r['stored']} stored; {restarts}"
               f"RSS peak {r['rss_peak_kib'] // 1024} MiB")
    row(test, kills or 1, anomalies, r["clean"], figures)


_EXES = None


def txn_loop(test, cycles, values):
    start = time.time()
    out = subprocess.run([sys.executable, os.path.join(HERE, "txn_loop.py"), BIN, "--cycles", str(cycles),
                          "--values", str(values), "--checker", CHECKER],
                         capture_output=True, text=True, timeout=1800)
    try:
        r = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        row(test, cycles, "driver failed: " + (out.stdout + out.stderr).strip()[-300:], False, "")
        return
    bad = {k: v for k, v in r["anomalies"].items() if v}
    anomalies = ", ".join(f"{k}={v}" for k, v in bad.items()) or "none"
    figures = (f"{r['values']} inputs, {r['attempts']} transactions ({r['committed']} committed), "
               f"kills {r['kills']}, {r['aborted_records_skipped']} aborted records skipped; "
               f"txn_loop's checker found every planted anomaly, check-history also checked; "
               f"{time.time() - start:.0f} s")
    row(test, cycles, anomalies, out.returncode == 0 and not bad, figures)


def bus_eos_loop(test, cycles):
    start = time.time()
    out = subprocess.run([sys.executable, os.path.join(HERE, "bus_eos_loop.py"), BIN, "--cycles", str(cycles)],
                         capture_output=True, text=True, timeout=1800)
    try:
        r = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        row(test, cycles, "driver failed: " + (out.stdout + out.stderr).strip()[-300:], False, "")
        return
    bad = {k: v for k, v in r["anomalies"].items() if v}
    anomalies = ", ".join(f"{k}={v}" for k, v in bad.items()) or "none"
    figures = (f"{r['src']} source events, {r['dst']} in the target, {r['aborted_records_skipped']} "
               f"aborted records skipped; checker found every planted anomaly; {time.time() - start:.0f} s")
    row(test, cycles, anomalies, out.returncode == 0 and not bad, figures)


def test_executables():
    """(package, kind, target) -> (executable, package dir) of every test binary, from one
    `cargo test --workspace --no-run`: the build `cargo test --workspace` already made (nothing is
    rebuilt). Running `cargo test -p X` per row instead would rebuild: a single package resolves
    its dependencies' features differently from the workspace (tokio's test-util, signal)."""
    global _EXES
    if _EXES is None:
        out = subprocess.run(["cargo", "test", "--workspace", "--no-run", "-q", "--message-format=json"],
                             capture_output=True, text=True, check=True, timeout=3600)
        _EXES = {}
        for line in out.stdout.splitlines():
            m = json.loads(line)
            if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
                pkg_dir = os.path.dirname(m["manifest_path"])
                kind = "lib" if "lib" in m["target"]["kind"] else m["target"]["kind"][0]
                _EXES[(os.path.basename(pkg_dir), kind, m["target"]["name"])] = (m["executable"], pkg_dir)
    return _EXES


def cargo(test, args, env=None, runs=""):
    """One row from a test binary: args are `-p PKG --test NAME [FILTER...]` or `-p PKG --lib [FILTER...]`."""
    start = time.time()
    pkg = args[1]
    if args[2] == "--lib":
        key, filters = (pkg, "lib", pkg.replace("-", "_")), args[3:]
    else:
        key, filters = (pkg, "test", args[3]), args[4:]
    exe, pkg_dir = test_executables()[key]
    out = subprocess.run([exe, *filters], capture_output=True, text=True, cwd=pkg_dir,
                         env=dict(os.environ, CARGO_MANIFEST_DIR=pkg_dir, **(env or {})), timeout=3600)
    passed = sum(int(w) for w in __import__("re").findall(r"(\d+) passed", out.stdout))
    failed = sum(int(w) for w in __import__("re").findall(r"(\d+) failed", out.stdout))
    ok = out.returncode == 0 and passed > 0
    anomalies = "none" if ok else (f"{failed} failing tests" if failed else out.stderr.strip()[-300:])
    row(test, runs or passed, anomalies, ok, f"{passed} tests, {time.time() - start:.0f} s")


def fuzz(target):
    start = time.time()
    out = subprocess.run([os.path.join(HERE, "../../scripts/fuzz.sh"), target], capture_output=True,
                         text=True, timeout=1800)
    runs = __import__("re").findall(r"Done (\d+) runs", out.stdout + out.stderr)
    ok = out.returncode == 0 and bool(runs)
    row(f"I1 cargo fuzz {target} (libFuzzer, -rss_limit_mb=256 -timeout=1)", runs[0] if runs else 0,
        "none" if ok else "crash: see fuzz/artifacts/" + target, ok, f"{time.time() - start:.0f} s")


def main():
    kills = 50 if LONG else 10
    seeds = "100000" if LONG else "1000"
    cases = "20000" if LONG else "200"
    print("reliability battery, " + ("long" if LONG else "quick") + " tier", flush=True)
    kill_loop("D1 kill -9 loop, sync=batch (2 idempotent producers, HTTP, group)", "batch", kills)
    kill_loop("D2 kill -9 loop, sync=interval(1s)", "interval", kills // 2)
    kill_loop("D2 kill -9 loop, sync=never", "never", kills // 2)
    kill_loop("D9 clean restart (SIGTERM) under load", "batch", kills // 3, signal="TERM")
    secs = "120" if LONG else "15"
    kill_loop(f"L3/L4 overload {secs} s: 6 flooding producers, slow consumer, RSS budget 128 MiB",
              "batch", 0, extra=("--overload", secs, "--rss-budget-mib", "128"))
    txn_loop("T1 exactly-once consume-transform-produce (transactions), kill -9 of broker and client",
             50 if LONG else 10, 4000 if LONG else 1000)
    bus_eos_loop("T2 exactly-once topic target of a subscription, kill -9 of busbar while publishing",
                 50 if LONG else 10)
    cargo(f"D3 simulated power loss, log ({seeds} seeds)", ["-p", "busbar-log", "--test", "it", "crash_sim::"],
          {"BUSBAR_SEEDS": seeds}, runs=seeds)
    cargo(f"D3 simulated power loss, whole broker: topics, metadata, offsets, ids, subscriptions ({seeds} seeds)",
          ["-p", "busbar-bus", "--test", "power_loss"], {"BUSBAR_SEEDS": seeds}, runs=seeds)
    cargo("D3 log vs model under random ops and crashes (proptest)", ["-p", "busbar-log", "--test", "it", "model::"],
          {"PROPTEST_CASES": cases}, runs=cases)
    cargo("D6 on-disk corruption (bit flips, truncation, zeroed blocks)", ["-p", "busbar-log", "--test", "it", "recovery::"])
    cargo("D6 corruption in the real binary's data dir (segment, index, metadata, offsets)",
          ["-p", "busbar", "--test", "corruption"])
    cargo("D7 I/O errors, failed fsync, disk full (fault-injecting disk)", ["-p", "busbar-log", "--test", "it", "append_read::"])
    cargo("D7 real full file system (tmpfs): HTTP 507, reads work, resumes, kill -9 keeps acked",
          ["-p", "busbar", "--test", "disk_full"])
    cargo("D7 real full file system (tmpfs): Kafka produce answers 56, resumes",
          ["-p", "busbar-kafka", "--test", "raw_socket", "full_disk"])
    cargo("D1 kill -9 of a writer process, every sync policy (log)", ["-p", "busbar-log", "--test", "it", "kill9::"])
    cargo("D8 group offsets and events across broker crashes (history)", ["-p", "busbar-broker", "--test", "history"])
    cargo("I1 hostile record batches into validator and log (proptest)", ["-p", "busbar-log", "--test", "it", "hostile_batches::"],
          {"PROPTEST_CASES": cases})
    cargo("I3 Kafka frames declaring 2^31 array elements in 19 bytes (real binary)",
          ["-p", "busbar", "--test", "hostile_frames", "huge"])
    cargo("I1 Kafka request decoder on random and damaged frames (fuzz entry point)",
          ["-p", "busbar-kafka", "--test", "decode_random"])
    cargo("I1 event patterns on random input",
          ["-p", "busbar-rules", "--test", "vectors", "random"])
    cargo("I1 subscription bodies on random and damaged JSON", ["-p", "busbar-bus", "--test", "spec_fuzz"])
    cargo("I1 config files on random and damaged TOML", ["-p", "busbar", "--lib", "random"])
    if FUZZ:
        for target in ["kafka_request", "record_batch", "event_pattern", "subscription", "http_publish", "config_file"]:
            fuzz(target)
    cargo("I4 300 slowloris/garbage connections beside a normal client; idle timeout frees fds",
          ["-p", "busbar", "--test", "hostile_frames", "slow"])
    cargo("I4 header-only and trickling frames as large as the request budget beside a normal client; "
          "read timeout frees them", ["-p", "busbar", "--test", "hostile_clients", "header_only"])
    cargo("L4 stalled readers of 8 MiB fetches: RSS within the response budget, write timeout cuts them",
          ["-p", "busbar", "--test", "hostile_clients", "stalled_readers"])
    cargo("I4 file descriptors exhausted: Kafka accept backs off (no spin) and recovers",
          ["-p", "busbar", "--test", "hostile_clients", "descriptor"])
    cargo("I2 malformed Kafka frames, limits, random frames (raw sockets)", ["-p", "busbar-kafka", "--test", "raw_socket"])
    cargo("bus: kill -9 during delivery, retry state durable", ["-p", "busbar", "--test", "bus", "kill9"])
    widths = [max(len(r[i]) for r in ROWS + [("test", "runs", "anomalies", "result", "figures")]) for i in range(5)]
    print()
    for r in [("test", "runs", "anomalies", "result", "figures")] + ROWS:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    failed = [r for r in ROWS if r[3] != "pass"]
    print(f"\n{len(ROWS) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
