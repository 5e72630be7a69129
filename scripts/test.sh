#!/usr/bin/env bash
# The whole test suite: formatting, lints, every Rust test, benches compiled (not run), and the
# real-client tests (kcat, confluent-kafka, kafka-python, aiokafka) against the real binary.
# Does its own set-up on a fresh machine: installs kcat (Debian) and the Python clients (PyPI) when
# missing. Extra args go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

if ! command -v cargo >/dev/null; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

install_clients() {
  if ! command -v kcat >/dev/null; then
    step "installing kcat (Debian)"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq kcat >/dev/null
  fi
  if ! python3 -c 'import confluent_kafka, kafka, aiokafka' 2>/dev/null; then
    step "installing confluent-kafka, kafka-python and aiokafka (PyPI)"
    python3 -m pip install -q --disable-pip-version-check confluent-kafka kafka-python aiokafka
  fi
}

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --workspace "$@"

step "benches compile"
cargo bench --workspace --no-run

install_clients
step "real Kafka clients against the real binary"
cargo build -q -p busbar
python3 tests/clients/run.py "${CARGO_TARGET_DIR:-target}/debug/busbar"
