#!/usr/bin/env bash
# Reliability I1: coverage-guided fuzzing of the input decoders with cargo fuzz (libFuzzer) on the
# stable toolchain (`-s none`: no sanitizer). Installs cargo-fuzz when missing. Each target runs
# SECONDS_PER_TARGET seconds (default 60) with -rss_limit_mb=256 and -timeout=1; a crash leaves its
# input under fuzz/artifacts/<target>/. Usage: scripts/fuzz.sh [target ...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(kafka_request record_batch event_pattern subscription http_publish config_file)
for t in "${targets[@]}"; do
  echo "== fuzz $t (${SECONDS_PER_TARGET:-60} s)"
  cargo fuzz run -s none "$t" -- -max_total_time="${SECONDS_PER_TARGET:-60}" -rss_limit_mb=256 -timeout=1
done
