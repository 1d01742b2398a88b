#!/usr/bin/env bash
# The native Vitals stack: the same binaries, config and ports as docker-compose.yml.
#   stack.sh up | down | status | stop NAME | start NAME | restart NAME | logs NAME
# Logs and PIDs live in one run directory (.run/ by default).
# Each part logs in to NATS as its role (nats.conf); the passwords default to the same
# development passwords as docker-compose.yml and can be overridden by env:
#   VITALS_MONITOR_PASSWORD, VITALS_GATEWAY_PASSWORD, VITALS_SIM_<SERVICE>_PASSWORD (one
#   user per simulated service: VITALS_SIM_AUTH_PASSWORD, ..._BILLING_, ..._NOTIFICATIONS_,
#   ..._ANALYTICS_), VITALS_PROBER_PASSWORD, VITALS_AGENT_PASSWORD, VITALS_NOTIFIER_PASSWORD,
#   and VITALS_NATS_CONF
#   (another nats.conf, e.g. with your own passwords).
# VITALS_OPERATOR_TOKEN is the gateway's operator token (writes: /api/targets, retiring);
# its default is a development token, like the passwords.
# The prober's targets file is written to the run directory from the ports in use (the four
# simulators' /health and NATS's /healthz); VITALS_TARGETS=FILE uses your own instead.
# The notifier's receivers file likewise (the gateway's inbox; VITALS_NOTIFIER_CONFIG=FILE),
# and the monitor's rules are config/rules.toml (VITALS_RULES=FILE).
# VITALS_PARTS="nats monitor ..." limits what `up` starts (default: all of PARTS below).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
RUN_DIR="${VITALS_RUN_DIR:-$root/.run}"
PROFILE="${VITALS_PROFILE:-release}"
NATS_PORT="${NATS_PORT:-4222}"
NATS_HTTP_PORT="${NATS_HTTP_PORT:-8222}"
MONITOR_PORT="${MONITOR_PORT:-9100}"
PROBER_PORT="${PROBER_PORT:-9101}"
AGENT_PORT="${AGENT_PORT:-9102}"
NOTIFIER_PORT="${NOTIFIER_PORT:-9103}"
GATEWAY_PORT="${GATEWAY_PORT:-8080}"
DASHBOARD_PORT="${DASHBOARD_PORT:-5173}"
SIM_PORT_BASE="${SIM_PORT_BASE:-3000}"
NATS_CONF="${VITALS_NATS_CONF:-$root/nats.conf}"
MONITOR_PASSWORD="${VITALS_MONITOR_PASSWORD:-monitor-dev}"
GATEWAY_PASSWORD="${VITALS_GATEWAY_PASSWORD:-gateway-dev}"
PROBER_PASSWORD="${VITALS_PROBER_PASSWORD:-prober-dev}"
AGENT_PASSWORD="${VITALS_AGENT_PASSWORD:-agent-dev}"
NOTIFIER_PASSWORD="${VITALS_NOTIFIER_PASSWORD:-notifier-dev}"
OPERATOR_TOKEN="${VITALS_OPERATOR_TOKEN:-vitals-operator-dev}"
# Each simulator may publish and answer only for its own service (nats.conf).
SIM_AUTH_PASSWORD="${VITALS_SIM_AUTH_PASSWORD:-sim-auth-dev}"
SIM_BILLING_PASSWORD="${VITALS_SIM_BILLING_PASSWORD:-sim-billing-dev}"
SIM_NOTIFICATIONS_PASSWORD="${VITALS_SIM_NOTIFICATIONS_PASSWORD:-sim-notifications-dev}"
SIM_ANALYTICS_PASSWORD="${VITALS_SIM_ANALYTICS_PASSWORD:-sim-analytics-dev}"
SIMS=(auth billing notifications analytics)
PARTS=(nats monitor gateway "${SIMS[@]}" prober agent notifier dashboard)
read -r -a UP_PARTS <<<"${VITALS_PARTS:-${PARTS[*]}}"

case "$PROFILE" in debug) bin_dir="$root/target/debug" ;; *) bin_dir="$root/target/$PROFILE" ;; esac
nats_url="nats://127.0.0.1:$NATS_PORT"

sim_password() {
  case "$1" in
    auth) echo "$SIM_AUTH_PASSWORD" ;;
    billing) echo "$SIM_BILLING_PASSWORD" ;;
    notifications) echo "$SIM_NOTIFICATIONS_PASSWORD" ;;
    analytics) echo "$SIM_ANALYTICS_PASSWORD" ;;
    *) return 1 ;;
  esac
}

# The simulators' own origins: the only health URLs the dashboard may poll.
health_origins() {
  local out="" s
  for s in "${SIMS[@]}"; do
    out+="http://127.0.0.1:$(sim_port "$s"),http://localhost:$(sim_port "$s"),"
  done
  echo "${out%,}"
}
sim_port() { # auth 3001, billing 3002, notifications 3003, analytics 3004
  local i
  for i in "${!SIMS[@]}"; do [ "${SIMS[$i]}" = "$1" ] && { echo $((SIM_PORT_BASE + i + 1)); return; }; done
  return 1
}

health_url() {
  case "$1" in
    nats) echo "http://127.0.0.1:$NATS_HTTP_PORT/healthz" ;;
    monitor) echo "http://127.0.0.1:$MONITOR_PORT/healthz" ;;
    gateway) echo "http://127.0.0.1:$GATEWAY_PORT/healthz" ;;
    prober) echo "http://127.0.0.1:$PROBER_PORT/healthz" ;;
    agent) echo "http://127.0.0.1:$AGENT_PORT/healthz" ;;
    notifier) echo "http://127.0.0.1:$NOTIFIER_PORT/healthz" ;;
    dashboard) echo "http://127.0.0.1:$DASHBOARD_PORT/" ;;
    *) echo "http://127.0.0.1:$(sim_port "$1")/healthz" ;;
  esac
}

known() { local p; for p in "${PARTS[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }
wanted() { local p; for p in "${UP_PARTS[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }
pid_of() { cat "$RUN_DIR/$1.pid" 2>/dev/null || true; }
# Alive and not a zombie (a killed process can linger as one until PID 1 reaps it).
alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null; }
running() { local pid; pid="$(pid_of "$1")"; [ -n "$pid" ] && alive "$pid"; }

# The default targets: each simulator's /health as <name>-http (its own service name is
# the simulator's), and NATS's monitoring endpoint as nats.
write_targets() {
  local s file="$RUN_DIR/targets.toml"
  {
    echo "# Written by scripts/stack.sh from the ports in use; VITALS_TARGETS=FILE to use your own."
    for s in "${SIMS[@]}"; do
      printf '\n[[target]]\nservice = "%s-http"\nkind = "http"\nurl = "http://127.0.0.1:%s/health"\ninterval_ms = 1000\n' \
        "$s" "$(sim_port "$s")"
    done
    printf '\n[[target]]\nservice = "nats"\nkind = "http"\nurl = "http://127.0.0.1:%s/healthz"\ninterval_ms = 1000\n' "$NATS_HTTP_PORT"
  } >"$file"
  echo "$file"
}

# The notifier's receivers: the gateway's local inbox (docs/ALERTING.md has Slack and
# Alertmanager examples: config/notifier.compose.toml).
write_receivers() {
  local file="$RUN_DIR/notifier.toml"
  {
    echo "# Written by scripts/stack.sh from the ports in use; VITALS_NOTIFIER_CONFIG=FILE to use your own."
    printf '\n[[receiver]]\nname = "inbox"\nkind = "webhook"\nurl = "http://127.0.0.1:%s/api/inbox"\n' "$GATEWAY_PORT"
    printf '\n[[route]]\nreceivers = ["inbox"]\n'
  } >"$file"
  echo "$file"
}

# Credentials go through the environment (NATS_USER/NATS_PASSWORD), not argv, so `ps`
# does not show them.
login() { export NATS_USER="$1" NATS_PASSWORD="$2"; }

launch() {
  local name="$1"
  unset NATS_USER NATS_PASSWORD # a developer's own `nats` CLI settings must not leak in
  case "$name" in
    nats)
      exec "$NATS_SERVER_BIN" -c "$NATS_CONF" -a 127.0.0.1 -p "$NATS_PORT" -m "$NATS_HTTP_PORT" \
        -sd "$RUN_DIR/jetstream" ;;
    monitor)
      login monitor "$MONITOR_PASSWORD"
      exec "$bin_dir/monitor" --nats-url "$nats_url" --http-addr "127.0.0.1:$MONITOR_PORT" \
        --rules "${VITALS_RULES:-$root/config/rules.toml}" ;;
    gateway)
      login gateway "$GATEWAY_PASSWORD"
      export VITALS_OPERATOR_TOKEN="$OPERATOR_TOKEN"
      exec "$bin_dir/gateway" --nats-url "$nats_url" --http-addr "127.0.0.1:$GATEWAY_PORT" \
        --static-dir "$root/frontend/dist" \
        --allowed-origins "http://localhost:$DASHBOARD_PORT,http://127.0.0.1:$DASHBOARD_PORT,http://localhost:$GATEWAY_PORT,http://127.0.0.1:$GATEWAY_PORT" \
        --health-origins "$(health_origins)" ;;
    prober)
      login prober "$PROBER_PASSWORD"
      exec "$bin_dir/prober" --nats-url "$nats_url" --http-addr "127.0.0.1:$PROBER_PORT" \
        --targets "${VITALS_TARGETS:-$(write_targets)}" ;;
    agent)
      login agent "$AGENT_PASSWORD"
      exec "$bin_dir/agent" --nats-url "$nats_url" --http-addr "127.0.0.1:$AGENT_PORT" ;;
    notifier)
      login notifier "$NOTIFIER_PASSWORD"
      exec "$bin_dir/notifier" --nats-url "$nats_url" --http-addr "127.0.0.1:$NOTIFIER_PORT" \
        --config "${VITALS_NOTIFIER_CONFIG:-$(write_receivers)}" \
        --external-url "http://localhost:$DASHBOARD_PORT" ;;
    dashboard)
      cd "$root/frontend"
      GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT" exec node_modules/.bin/vite preview \
        --host 127.0.0.1 --port "$DASHBOARD_PORT" --strictPort ;;
    *)
      login "sim-$name" "$(sim_password "$name")"
      exec "$bin_dir/simulator" --service "$name" --instance "$name-local-$$" --nats-url "$nats_url" \
        --http-addr "127.0.0.1:$(sim_port "$name")" ;;
  esac
}

wait_healthy() {
  local name="$1" url i
  url="$(health_url "$name")"
  for i in $(seq 1 100); do
    if curl -fsS -m 1 "$url" >/dev/null 2>&1; then return 0; fi
    running "$name" || { echo "$name exited; last log lines:" >&2; tail -n 20 "$RUN_DIR/$name.log" >&2; return 1; }
    sleep 0.1
  done
  echo "$name did not become healthy at $url" >&2
  return 1
}

start_part() {
  local name="$1"
  known "$name" || { echo "unknown part: $name (one of: ${PARTS[*]})" >&2; exit 2; }
  if running "$name"; then echo "$name already running (pid $(pid_of "$name"))"; return 0; fi
  mkdir -p "$RUN_DIR"
  (launch "$name" >>"$RUN_DIR/$name.log" 2>&1 & echo $! >"$RUN_DIR/$name.pid")
  wait_healthy "$name"
  echo "started $name (pid $(pid_of "$name"))"
}

stop_part() {
  local name="$1" pid i
  known "$name" || { echo "unknown part: $name (one of: ${PARTS[*]})" >&2; exit 2; }
  pid="$(pid_of "$name")"
  if [ -z "$pid" ] || ! alive "$pid"; then rm -f "$RUN_DIR/$name.pid"; return 0; fi
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
  alive "$pid" && { echo "$name did not stop in 10 s; killing" >&2; kill -KILL "$pid" 2>/dev/null || true; }
  rm -f "$RUN_DIR/$name.pid"
  echo "stopped $name"
}

prepare() {
  NATS_SERVER_BIN="$("$root/scripts/ensure-nats.sh")"
  export NATS_SERVER_BIN
  if [ -z "${VITALS_NO_BUILD:-}" ]; then
    local flag="--profile=$PROFILE"
    [ "$PROFILE" = debug ] && flag=""
    (cd "$root" && cargo build $flag --bins --quiet)
    if wanted dashboard; then
      (cd "$root/frontend" && { [ -d node_modules ] || npm ci --no-audit --no-fund --silent; } && npm run --silent build >/dev/null)
    fi
  fi
}

status() {
  local name
  for name in "${PARTS[@]}"; do
    if running "$name"; then
      if curl -fsS -m 1 "$(health_url "$name")" >/dev/null 2>&1; then h=healthy; else h=unhealthy; fi
      printf '%-14s running  pid %-8s %s\n' "$name" "$(pid_of "$name")" "$h"
    else
      printf '%-14s stopped\n' "$name"
    fi
  done
}

cmd="${1:-}"
case "$cmd" in
  up)
    for p in "${UP_PARTS[@]}"; do known "$p" || { echo "unknown part in VITALS_PARTS: $p (one of: ${PARTS[*]})" >&2; exit 2; }; done
    prepare
    for p in "${PARTS[@]}"; do if wanted "$p"; then start_part "$p"; fi; done
    dashboard_line="Dashboard       http://localhost:$DASHBOARD_PORT      <- open this"
    wanted dashboard || dashboard_line="Dashboard       not started (VITALS_PARTS); the gateway serves frontend/dist"
    cat <<MSG

Vitals is up (logs and pids in $RUN_DIR):
  $dashboard_line
  gateway         http://127.0.0.1:$GATEWAY_PORT  (/ws /api/status /api/history /metrics; also serves the dashboard)
  NATS            $nats_url   (monitoring http://127.0.0.1:$NATS_HTTP_PORT)
  monitor         http://127.0.0.1:$MONITOR_PORT/api/status   /metrics
  simulators      auth :$(sim_port auth)  billing :$(sim_port billing)  notifications :$(sim_port notifications)  analytics :$(sim_port analytics)
  prober          http://127.0.0.1:$PROBER_PORT/metrics   (targets: KV vitals_targets; default file $RUN_DIR/targets.toml)
  agent           http://127.0.0.1:$AGENT_PORT/metrics    (this host, as service "$(hostname | tr 'A-Z' 'a-z')")
  notifier        http://127.0.0.1:$NOTIFIER_PORT/metrics   (receivers: $RUN_DIR/notifier.toml -> the dashboard's Inbox)
Watch:            nats sub 'health.>'       Snapshot: nats req health.snapshot ''   (no login: read-only viewer)
Chaos:            nats req chaos.billing '{"mode":"latency","for_s":30}' --user operator --password ${VITALS_OPERATOR_PASSWORD:-operator-dev}
Outage:           make stop S=billing   then   make start S=billing     (walk-through: docs/STACK.md)
Silence:          nats req health.silence.create '{"matchers":{"service":"billing"},"for_s":3600,"created_by":"me"}' --user operator --password ${VITALS_OPERATOR_PASSWORD:-operator-dev}
Watch a URL:      nats kv put vitals_targets payments '{"kind":"http","url":"https://example.com/"}' --user operator --password ${VITALS_OPERATOR_PASSWORD:-operator-dev}
                  or on the page: Operator -> token $OPERATOR_TOKEN -> "Add a service to watch"
Stop everything:  make down
MSG
    ;;
  down)
    for ((i=${#PARTS[@]}-1; i>=0; i--)); do stop_part "${PARTS[$i]}"; done ;;
  stop) stop_part "${2:?usage: stack.sh stop NAME}" ;;
  start)
    NATS_SERVER_BIN="$("$root/scripts/ensure-nats.sh")"; export NATS_SERVER_BIN
    start_part "${2:?usage: stack.sh start NAME}" ;;
  restart) stop_part "${2:?}"; NATS_SERVER_BIN="$("$root/scripts/ensure-nats.sh")"; export NATS_SERVER_BIN; start_part "$2" ;;
  status) status ;;
  logs) tail -n "${LINES:-50}" -f "$RUN_DIR/${2:?usage: stack.sh logs NAME}.log" ;;
  *) echo "usage: $0 up|down|status|stop NAME|start NAME|restart NAME|logs NAME" >&2; exit 2 ;;
esac
