#!/usr/bin/env bash
# The whole test suite: formatting, lints, every Rust test, benches compiled (not run), and the
# real-client tests (kcat, confluent-kafka, kafka-python, aiokafka) against the real binary, and
# every shell block of the README (tests/readme/run.py), deploy/ (promtool), the runbooks' commands
# and the web console in headless Chromium.
# Does its own set-up on a fresh machine: installs kcat, jq and chromium (Debian), the Python clients,
# PyYAML and Playwright (PyPI) when missing; promtool comes from Debian's prometheus package. Ends with the quick tier of the reliability battery. Extra args go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step prints the seconds the previous ones took, so a slow step shows in the CI log.
# It also prints the free space left where the build goes: a full disk fails a link.
step() {
  printf '\n== [%ds] %s (free: %s)\n' "$SECONDS" "$*" \
    "$(df -h --output=avail . 2>/dev/null | tail -1 | tr -d " ")"
}

if ! command -v cargo >/dev/null; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# shellcheck source=scripts/clients.sh
source scripts/clients.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "bench/peers (not built in CI): rustfmt, and the results table of docs/benchmarks.md"
rustfmt --check --edition 2021 bench/peers/src/main.rs
table=$(python3 bench/peers/run.py --table bench/peers/results/2026-11-27.jsonl)
grep -q "busbar / best peer (rabbitmq): 1.23x" <<<"$table"

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test (cluster mode's tests start PostgreSQL and SeaweedFS: installed when missing)"
install_postgres
install_seaweedfs
cargo test --workspace "$@"

# In the test profile, on the dependencies the tests already built: a release build of the whole
# dependency tree only for this check cost CI minutes. `cargo bench` builds them optimised.
step "benches compile (test profile)"
cargo test --workspace --benches --no-run

install_clients
step "real Kafka clients against the real binary"
cargo test -q --workspace --no-run  # the binary the tests built (-p busbar would rebuild: features)
python3 tests/clients/run.py "${CARGO_TARGET_DIR:-target}/debug/busbar"

step "the README's shell blocks, in order, against a fresh server on 8080/9092; its links"
if ! command -v jq >/dev/null; then
  printf '\n== installing jq (Debian), which the README uses\n'
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq jq >/dev/null
fi
python3 tests/readme/run.py "${CARGO_TARGET_DIR:-target}/debug/busbar"
# The runner's own tests: flags checked for real, no process outlives it (even on SIGTERM).
BUSBAR_BIN="${CARGO_TARGET_DIR:-target}/debug/busbar" python3 tests/readme/test_run.py

step "the served /openapi.json is valid OpenAPI (openapi-spec-validator)"
if ! python3 -c 'import openapi_spec_validator' 2>/dev/null; then
  printf '\n== installing openapi-spec-validator (PyPI)\n'
  python3 -m pip install -q --disable-pip-version-check openapi-spec-validator
fi
python3 tests/openapi/validate.py "${CARGO_TARGET_DIR:-target}/debug/busbar"

step "deploy/: promtool checks the rules and their tests; every metric the dashboards and rules use is served"
python3 tests/deploy/check.py "${CARGO_TARGET_DIR:-target}/debug/busbar"

step "docs/runbooks/: every shell command of every runbook runs against a live busbar"
python3 tests/runbooks/run.py "${CARGO_TARGET_DIR:-target}/debug/busbar"

step "the web console in headless Chromium (Debian) driven by Playwright (PyPI)"
python3 tests/console/run.py "${CARGO_TARGET_DIR:-target}/debug/busbar"

step "reliability battery, quick tier"
./scripts/reliability.sh
step "done"
