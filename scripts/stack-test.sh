#!/usr/bin/env bash
# Runs the README's stack command on spare ports, checks an outage end to end
# (stop billing -> DOWN, start -> HEALTHY) and that `down` leaves nothing running.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export VITALS_RUN_DIR; VITALS_RUN_DIR="$(mktemp -d)"
export VITALS_PROFILE="${VITALS_PROFILE:-debug}" VITALS_NO_BUILD=1
export NATS_PORT=14222 NATS_HTTP_PORT=18222 MONITOR_PORT=19100 SIM_PORT_BASE=13000
stack="$root/scripts/stack.sh"
cleanup() { "$stack" down >/dev/null 2>&1 || true; rm -rf "$VITALS_RUN_DIR"; }
trap cleanup EXIT

status_of() { # service -> its status in the monitor's snapshot
  curl -fsS -m 2 "http://127.0.0.1:$MONITOR_PORT/api/status" 2>/dev/null |
    jq -r --arg s "$1" '.services[] | select(.service == $s) | .status' 2>/dev/null || true
}
wait_status() { # service status
  local i
  for i in $(seq 1 150); do [ "$(status_of "$1")" = "$2" ] && return 0; sleep 0.1; done
  echo "FAIL: $1 did not become $2 (is $(status_of "$1"))" >&2; exit 1
}

"$stack" up >/dev/null
for s in auth billing notifications analytics; do wait_status "$s" HEALTHY; done
echo "ok: four services HEALTHY"
"$stack" stop billing >/dev/null
wait_status billing DOWN
[ "$(status_of auth)" = HEALTHY ] || { echo "FAIL: auth affected" >&2; exit 1; }
echo "ok: billing stopped -> DOWN"
"$stack" start billing >/dev/null
wait_status billing HEALTHY
echo "ok: billing started -> HEALTHY"
pids="$(cat "$VITALS_RUN_DIR"/*.pid)"
"$stack" down >/dev/null
for pid in $pids; do
  if kill -0 "$pid" 2>/dev/null; then echo "FAIL: pid $pid still running after down" >&2; exit 1; fi
done
echo "ok: down left nothing running"
echo "stack: 4 passed, 0 failed"
