#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test, benches compiled (not run).
# Does its own set-up; safe to run on a fresh clone. Extra args go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

if ! command -v cargo >/dev/null; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --workspace "$@"

step "benches compile"
cargo bench --workspace --no-run
