#!/usr/bin/env bash
# Builds release binaries and runs the benchmark: scripts/bench.sh [--quick] [--out FILE]
# (alert delivery alone: scripts/bench.sh --notify-only [--notify-events N --notify-rate R])
set -euo pipefail
cd "$(dirname "$0")/.."
NATS_SERVER_BIN="$(scripts/ensure-nats.sh)"
export NATS_SERVER_BIN
cargo build --release --bins --quiet
exec target/release/bench "$@"
