#!/usr/bin/env bash
# Starts a local busbar cluster on this machine: one PostgreSQL (Debian's postgresql, installed
# when missing) under ./busbar-cluster/pg, and N brokers (default 3) with data directories
# ./busbar-cluster/b1..bN, Kafka on 127.0.0.1:19092, 29092, ... and HTTP on 127.0.0.1:18080,
# 28080, ... (docs/cluster.md). Builds busbar first. Stops everything on Ctrl-C or TERM.
#
# Usage: scripts/cluster.sh [brokers] [directory]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-3}
dir=$(realpath -m "${2:-busbar-cluster}")
mkdir -p "$dir"

# shellcheck source=scripts/clients.sh
source scripts/clients.sh
install_postgres
cargo build -q -p busbar
bin="${CARGO_TARGET_DIR:-target}/debug/busbar"

pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg=()
if [ "$(id -u)" = 0 ]; then
  # PostgreSQL refuses to run as root.
  as_pg=(runuser -u nobody --)
  chown nobody "$dir"
fi
port=15432
if [ ! -d "$dir/pg" ]; then
  mkdir -p "$dir/pg"
  [ "$(id -u)" = 0 ] && chown nobody "$dir/pg"
  "${as_pg[@]}" "$pgbin/initdb" -A trust -U busbar -E UTF8 -D "$dir/pg" >/dev/null
fi
"${as_pg[@]}" "$pgbin/pg_ctl" -w -D "$dir/pg" -l "$dir/pg.log" \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/pg" start >/dev/null
url="postgres://busbar@127.0.0.1:$port/postgres"

pids=()
stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "${as_pg[@]}" "$pgbin/pg_ctl" -w -D "$dir/pg" -m fast stop >/dev/null || true
}
trap stop EXIT INT TERM

for i in $(seq 1 "$n"); do
  "$bin" serve --cluster "$url" --node-id "$i" --data-dir "$dir/b$i" \
    --http-addr "127.0.0.1:${i}8080" --kafka-addr "127.0.0.1:${i}9092" \
    --schema-registry-addr "" 2>"$dir/b$i.log" &
  pids+=($!)
done
for i in $(seq 1 "$n"); do
  until grep -q " ready in " "$dir/b$i.log" 2>/dev/null; do
    if ! kill -0 "${pids[$((i - 1))]}" 2>/dev/null; then
      echo "broker $i did not start:" >&2
      cat "$dir/b$i.log" >&2
      exit 1
    fi
    sleep 0.2
  done
done
echo "busbar cluster: $n brokers on $url"
for i in $(seq 1 "$n"); do
  echo "  broker $i: kafka 127.0.0.1:${i}9092  http http://127.0.0.1:${i}8080  log $dir/b$i.log"
done
echo "Ctrl-C stops the brokers and PostgreSQL."
wait
