#!/usr/bin/env bash
# The reliability battery (shared/spec/reliability.md §9): kill -9 loops of the real binary under
# real clients checked by the history checker, simulated power loss, corruption, I/O errors,
# hostile input. Prints a table. Quick tier by default (CI runs it); `--long` for the long tier
# (50 kills, 100,000 crash seeds, 20,000 proptest cases).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/clients.sh
source scripts/clients.sh
install_clients
# The workspace's test build (what `cargo test --workspace` made; also target/debug/busbar and
# check-history): a `cargo build -p ...` would resolve features differently and rebuild.
cargo test -q --workspace --no-run
T="${CARGO_TARGET_DIR:-target}/debug"
python3 tests/reliability/battery.py "$T/busbar" "$T/check-history" "$@"
