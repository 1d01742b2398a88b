#!/usr/bin/env bash
# Measures the dashboard with 1,000 services updating every second: starts the native
# stack on spare ports (release build), one simulator process for 1,000 services, and
# records 10 s of frame times in headless chromium. Prints JSON; screenshot in target/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export VITALS_RUN_DIR; VITALS_RUN_DIR="$(mktemp -d)"
export NATS_PORT=34222 NATS_HTTP_PORT=38222 MONITOR_PORT=39100 GATEWAY_PORT=38080 DASHBOARD_PORT=35173 SIM_PORT_BASE=33000
export VITALS_PARTS="nats monitor gateway dashboard"
scripts/ensure-chromium.sh
scripts/stack.sh up >/dev/null
sim=""
cleanup() { [ -n "$sim" ] && kill "$sim" 2>/dev/null; scripts/stack.sh down >/dev/null 2>&1 || true; rm -rf "$VITALS_RUN_DIR"; }
trap cleanup EXIT
NATS_USER=simulator NATS_PASSWORD="${VITALS_SIMULATOR_PASSWORD:-simulator-dev}" \
  target/release/simulator --count 1000 --prefix load- --nats-url "nats://127.0.0.1:$NATS_PORT" \
  --http-addr 127.0.0.1:0 >"$VITALS_RUN_DIR/load.log" 2>&1 &
sim=$!
mkdir -p target
cd frontend
DASHBOARD_URL="http://localhost:$DASHBOARD_PORT/" SCREENSHOT="$root/target/dashboard-1000.png" node perf/frames.mjs
