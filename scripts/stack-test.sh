#!/usr/bin/env bash
# Runs the README's stack command on spare ports, checks an outage end to end
# (stop billing -> DOWN, start -> HEALTHY, both in the monitor's snapshot and as
# health.status.billing on NATS, read as the anonymous viewer), that every part logged in
# as its own NATS user, that the notifier tells the gateway's inbox, that the prober probes the simulators (billing-http DOWN when billing
# stops, from the probe alone) and the agent reports this host, and that `down` leaves nothing
# running.
# The dashboard part runs when frontend/dist and frontend/node_modules exist
# (`npm ci && npm run build` in frontend/); otherwise it is skipped, and said so.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export VITALS_RUN_DIR; VITALS_RUN_DIR="$(mktemp -d)"
export VITALS_PROFILE="${VITALS_PROFILE:-debug}" VITALS_NO_BUILD=1
export NATS_PORT=14222 NATS_HTTP_PORT=18222 MONITOR_PORT=19100 SIM_PORT_BASE=13000 GATEWAY_PORT=18080 DASHBOARD_PORT=15173
export PROBER_PORT=19101 AGENT_PORT=19102 NOTIFIER_PORT=19103
stack="$root/scripts/stack.sh"
tail_pid=""
cleanup() {
  [ -n "$tail_pid" ] && kill "$tail_pid" 2>/dev/null || true
  "$stack" down >/dev/null 2>&1 || true
  rm -rf "$VITALS_RUN_DIR"
}
trap cleanup EXIT
passed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*" >&2; exit 1; }

with_dashboard=1
if [ ! -f "$root/frontend/dist/index.html" ] || [ ! -x "$root/frontend/node_modules/.bin/vite" ]; then
  with_dashboard=0
  export VITALS_PARTS="nats monitor gateway auth billing notifications analytics prober agent notifier"
  echo "note: frontend/dist or frontend/node_modules missing; the dashboard part is skipped"
fi

status_of() { # service -> its status in the monitor's snapshot
  curl -fsS -m 2 "http://127.0.0.1:$MONITOR_PORT/api/status" 2>/dev/null |
    jq -r --arg s "$1" '.services[] | select(.service == $s) | .status' 2>/dev/null || true
}
wait_status() { # service status
  local i
  for i in $(seq 1 150); do [ "$(status_of "$1")" = "$2" ] && return 0; sleep 0.1; done
  fail "$1 did not become $2 (is $(status_of "$1"))"
}
feed="$VITALS_RUN_DIR/health-status.feed"
wait_feed() { # service status: a health.status.<service> message with that status
  local i
  for i in $(seq 1 150); do
    grep -q "^health.status.$1 .*\"status\":\"$2\"" "$feed" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "no health.status.$1 with status $2 on NATS; got: $(cat "$feed" 2>/dev/null)"
}

"$stack" up >/dev/null
for s in auth billing notifications analytics; do wait_status "$s" HEALTHY; done
ok "four services HEALTHY"
for s in auth-http billing-http notifications-http analytics-http nats; do wait_status "$s" HEALTHY; done
ok "the prober's default targets (each simulator's /health, NATS /healthz) HEALTHY"
agent_service="$(hostname | tr 'A-Z' 'a-z' | sed 's/[^a-z0-9_-]/-/g; s/^[^a-z0-9]*//' | cut -c1-63)"
source_of() { curl -fsS -m 2 "http://127.0.0.1:$MONITOR_PORT/api/status" |
  jq -r --arg s "$1" '.services[] | select(.service == $s) | .source // "simulator"'; }
for i in $(seq 1 100); do [ "$(source_of "$agent_service" 2>/dev/null)" = agent ] && break; sleep 0.1; done
[ "$(source_of "$agent_service")" = agent ] || fail "no agent sample for $agent_service"
ok "the agent reports this host as $agent_service"

# Each part is connected as its role (the server's own view of the connections).
connz="$(curl -fsS -m 2 "http://127.0.0.1:$NATS_HTTP_PORT/connz?auth=true&limit=1024")"
# A name or, ending in ':', a prefix (sources name theirs vitals:<source>:<service>:<instance>).
user_of() { jq -r --arg n "$1" '[.connections[] | select(.name == $n or (($n | endswith(":")) and (.name // "" | startswith($n)))) | .authorized_user] | unique | join(",")' <<<"$connz"; }
[ "$(user_of vitals-monitor)" = monitor ] || fail "monitor logged in as '$(user_of vitals-monitor)'"
[ "$(user_of vitals-gateway)" = gateway ] || fail "gateway logged in as '$(user_of vitals-gateway)'"
[ "$(user_of 'vitals:prober:*:')" = prober ] || fail "prober logged in as '$(user_of 'vitals:prober:*:')'"
[ "$(user_of "vitals:agent:$agent_service:")" = agent ] || fail "agent logged in as '$(user_of "vitals:agent:$agent_service:")'"
[ "$(user_of vitals-notifier)" = notifier ] || fail "notifier logged in as '$(user_of vitals-notifier)'"
for s in auth billing notifications analytics; do
  [ "$(user_of "vitals:simulator:$s:")" = "sim-$s" ] || fail "simulator $s logged in as '$(user_of "vitals:simulator:$s:")', not sim-$s"
done
ok "monitor, gateway, prober, agent, notifier and each simulator logged in as its own NATS user"

if [ "$with_dashboard" = 1 ]; then
  curl -fsS -m 2 "http://127.0.0.1:$DASHBOARD_PORT/" | grep -qi "<html" || fail "dashboard serves no page"
  curl -fsS -m 2 "http://127.0.0.1:$DASHBOARD_PORT/api/status" | jq -e '[.services[].service] | contains(["auth","billing","notifications","analytics"])' >/dev/null ||
    fail "dashboard does not proxy /api/status to the gateway"
  ok "dashboard serves the page and proxies /api to the gateway"
fi

# Watch health.status.> as the anonymous viewer, the way `nats sub 'health.>'` does.
python3 "$root/scripts/nats_tail.py" "nats://127.0.0.1:$NATS_PORT" 'health.status.>' \
  --ready "$VITALS_RUN_DIR/tail.ready" >"$feed" 2>"$VITALS_RUN_DIR/tail.err" &
tail_pid=$!
for i in $(seq 1 100); do [ -f "$VITALS_RUN_DIR/tail.ready" ] && break; sleep 0.05; done
[ -f "$VITALS_RUN_DIR/tail.ready" ] || fail "anonymous subscriber did not connect: $(cat "$VITALS_RUN_DIR/tail.err")"

stopped_ms=$(date +%s%3N)
"$stack" stop billing >/dev/null
wait_status billing DOWN
wait_feed billing DOWN
[ "$(status_of auth)" = HEALTHY ] || fail "auth affected"
ok "billing stopped -> DOWN (snapshot and health.status.billing)"
# The notifier tells the gateway's inbox (the stack's default receiver): billing's SERVICE_DOWN.
inbox_has() { # service alertname status
  curl -fsS -m 2 "http://127.0.0.1:$GATEWAY_PORT/api/inbox" 2>/dev/null | jq -e --arg s "$1" --arg a "$2" --arg st "$3" \
    '[.notifications[].alerts[] | select(.service == $s and .alertname == $a and .status == $st)] | length > 0' >/dev/null 2>&1
}
for i in $(seq 1 150); do inbox_has billing SERVICE_DOWN firing && break; sleep 0.1; done
inbox_has billing SERVICE_DOWN firing || fail "no billing SERVICE_DOWN in the inbox: $(curl -fsS -m 2 "http://127.0.0.1:$GATEWAY_PORT/api/inbox")"
ok "the notifier delivered billing's SERVICE_DOWN to the gateway's inbox"
# The probe of billing's /health sees the same outage on its own: connection refused twice.
wait_status billing-http DOWN
echo "note: billing-http DOWN $(( $(date +%s%3N) - stopped_ms )) ms after billing was told to stop (interval 1 s, down_after 2)"
reason="$(curl -fsS -m 2 "http://127.0.0.1:$MONITOR_PORT/api/status" | jq -r '.services[] | select(.service == "billing-http") | .reasons[0]')"
[[ "$reason" == "probe failed: "*" (2 in a row)" ]] || fail "billing-http DOWN for '$reason'"
wait_feed billing-http DOWN
ok "billing's probe -> DOWN ($reason)"
"$stack" start billing >/dev/null
wait_status billing HEALTHY
wait_feed billing HEALTHY
wait_status billing-http HEALTHY
ok "billing started -> HEALTHY (snapshot and health.status.billing), its probe too"
for i in $(seq 1 150); do inbox_has billing SERVICE_DOWN resolved && break; sleep 0.1; done
inbox_has billing SERVICE_DOWN resolved || fail "no resolved billing SERVICE_DOWN in the inbox"
ok "and its resolve"
[ ! -s "$VITALS_RUN_DIR/tail.err" ] || fail "the anonymous subscriber got errors: $(cat "$VITALS_RUN_DIR/tail.err")"
kill "$tail_pid" 2>/dev/null || true
wait "$tail_pid" 2>/dev/null || true
tail_pid=""

pids="$(cat "$VITALS_RUN_DIR"/*.pid)"
"$stack" down >/dev/null
for pid in $pids; do
  if kill -0 "$pid" 2>/dev/null && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$pid/stat" 2>/dev/null; then fail "pid $pid still running after down"; fi
done
ok "down left nothing running"
echo "stack: $passed passed, 0 failed"
