#!/usr/bin/env bash
# The cost of schema enforcement (issue 17): W1 (shared/spec/peers.md: one producer, 1,000,000 x
# 100 B, acks=all, about 1,000 unacknowledged) against one `busbar serve` with three topics,
# value.schema.validation = none, id and strict, runs interleaved (none, id, strict, none, ...)
# so the machine's noise falls on all three alike. Not part of CI. Prints per-run figures and the
# medians with their ratio to none; raw results: target/bench-schema.jsonl.
#
#   ./scripts/bench-schema.sh                     # builds busbar (release), 5 rounds
#   BUSBAR=/tmp/rel-target/release/busbar ./scripts/bench-schema.sh --reps 7 --count 200000
#
# Every payload carries the same framing (magic 0, the schema id, an Avro `bytes` value filling
# 100 B), `none` included, so the runs differ only in the broker's check. Each run deletes its
# topic first and the bench recreates it (--topic-config), so every run appends to an empty log.
# Server CPU per run: utime+stime of the server process from /proc/<pid>/stat.
set -euo pipefail
cd "$(dirname "$0")/.."

reps=5 count=1000000 size=100
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps="$2"; shift 2 ;;
    --count) count="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    *) echo "usage: $0 [--reps N] [--count N] [--size BYTES]" >&2; exit 2 ;;
  esac
done

if [ -z "${BUSBAR:-}" ]; then
  cargo build --release -q -p busbar
  BUSBAR="${CARGO_TARGET_DIR:-target}/release/busbar"
fi
http="127.0.0.1:${BENCH_HTTP_PORT:-18480}"
kafka="127.0.0.1:${BENCH_KAFKA_PORT:-19492}"
out="${CARGO_TARGET_DIR:-target}/bench-schema.jsonl"
mkdir -p "$(dirname "$out")"
data="$(mktemp -d)"
"$BUSBAR" serve --data-dir "$data" --http-addr "$http" --kafka-addr "$kafka" \
  --schema-registry-addr "" 2>"$data.log" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$data" "$data.log"' EXIT
for _ in $(seq 100); do grep -q " ready in " "$data.log" && break; sleep 0.1; done
grep -q " ready in " "$data.log" || { cat "$data.log" >&2; exit 1; }

cli() { "$BUSBAR" --server "http://$http" "$@"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
id=""
for mode in id strict; do
  id=$(echo '"bytes"' | cli --output json schema register "bench-$mode-value" -f - |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
done
echo "== schema \"bytes\" registered as id $id; $reps rounds of none, id, strict; $count x $size B"
: >"$out"
for rep in $(seq "$reps"); do
  for mode in none id strict; do
    cli topic delete "bench-$mode" >/dev/null 2>&1 || true
    before=$(cpu_ticks)
    r=$("$BUSBAR" --output json bench produce --kafka "$kafka" --count "$count" --size "$size" \
      --topic "bench-$mode" --topic-config "value.schema.validation=$mode" --schema-id "$id" 2>/dev/null)
    after=$(cpu_ticks)
    echo "$r" | python3 -c '
import json, sys, os
r = json.load(sys.stdin)
r.update(mode=sys.argv[1], rep=int(sys.argv[2]),
         server_cpu_s=(int(sys.argv[4]) - int(sys.argv[3])) / os.sysconf("SC_CLK_TCK"))
open(sys.argv[5], "a").write(json.dumps(r) + "\n")
print("round %d %6s: %7.1f k msg/s, p99 %d us, server CPU %.2f s" % (r["rep"], r["mode"],
      r["msgs_per_s"] / 1e3, r["latency"]["p99_us"], r["server_cpu_s"]))' \
      "$mode" "$rep" "$before" "$after" "$out"
  done
done
python3 - "$out" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
def med(mode, f):
    xs = [f(r) for r in runs if r["mode"] == mode]
    return statistics.median(xs), min(xs), max(xs), len(xs)
base = med("none", lambda r: r["msgs_per_s"])[0]
cpu_base = med("none", lambda r: r["server_cpu_s"] / r["messages"] * 1e6)[0]
print("\n| validation | msg/s, median (min..max, n) | vs none | server CPU per 1M messages, median (min..max) | vs none |")
print("|---|---|---|---|---|")
for mode in ["none", "id", "strict"]:
    m, lo, hi, n = med(mode, lambda r: r["msgs_per_s"])
    c, clo, chi, _ = med(mode, lambda r: r["server_cpu_s"] / r["messages"] * 1e6)
    print(f"| {mode} | {m/1e3:.1f} k ({lo/1e3:.1f} k..{hi/1e3:.1f} k, n={n}) | {m/base:.3f} "
          f"| {c:.2f} s ({clo:.2f}..{chi:.2f}) | {c/cpu_base:.3f} |")
EOF
