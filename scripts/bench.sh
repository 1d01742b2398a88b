#!/usr/bin/env bash
# Builds release binaries and runs the benchmark: scripts/bench.sh [--quick] [--out FILE] [--svg FILE]
# (full: target/bench/results.json and the latency-versus-throughput plot target/bench/latency.svg;
# alert delivery alone: scripts/bench.sh --notify-only [--notify-events N --notify-rate R])
set -euo pipefail
cd "$(dirname "$0")/.."
NATS_SERVER_BIN="$(scripts/ensure-nats.sh)"
export NATS_SERVER_BIN
cargo build --release --bins --quiet
args=("$@")
if [ "$#" = 0 ] || [ "$*" = "--quick" ]; then
  mkdir -p target/bench
  args+=(--svg target/bench/latency.svg)
fi
exec target/release/bench "${args[@]}"
