#!/usr/bin/env bash
# The native Vitals stack: the same binaries, config and ports as docker-compose.yml.
#   stack.sh up | down | status | stop NAME | start NAME | restart NAME | logs NAME
# Logs and PIDs live in one run directory (.run/ by default).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
RUN_DIR="${VITALS_RUN_DIR:-$root/.run}"
PROFILE="${VITALS_PROFILE:-release}"
NATS_PORT="${NATS_PORT:-4222}"
NATS_HTTP_PORT="${NATS_HTTP_PORT:-8222}"
MONITOR_PORT="${MONITOR_PORT:-9100}"
SIM_PORT_BASE="${SIM_PORT_BASE:-3000}"
SIMS=(auth billing notifications analytics)
PARTS=(nats monitor "${SIMS[@]}")

case "$PROFILE" in debug) bin_dir="$root/target/debug" ;; *) bin_dir="$root/target/$PROFILE" ;; esac
nats_url="nats://127.0.0.1:$NATS_PORT"

sim_port() { # auth 3001, billing 3002, notifications 3003, analytics 3004
  local i
  for i in "${!SIMS[@]}"; do [ "${SIMS[$i]}" = "$1" ] && { echo $((SIM_PORT_BASE + i + 1)); return; }; done
  return 1
}

health_url() {
  case "$1" in
    nats) echo "http://127.0.0.1:$NATS_HTTP_PORT/healthz" ;;
    monitor) echo "http://127.0.0.1:$MONITOR_PORT/healthz" ;;
    *) echo "http://127.0.0.1:$(sim_port "$1")/healthz" ;;
  esac
}

known() { local p; for p in "${PARTS[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }
pid_of() { cat "$RUN_DIR/$1.pid" 2>/dev/null || true; }
running() { local pid; pid="$(pid_of "$1")"; [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

launch() {
  local name="$1"
  case "$name" in
    nats)
      exec "$NATS_SERVER_BIN" -c "$root/nats.conf" -a 127.0.0.1 -p "$NATS_PORT" -m "$NATS_HTTP_PORT" \
        -sd "$RUN_DIR/jetstream" ;;
    monitor)
      exec "$bin_dir/monitor" --nats-url "$nats_url" --http-addr "127.0.0.1:$MONITOR_PORT" ;;
    *)
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
  if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then rm -f "$RUN_DIR/$name.pid"; return 0; fi
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { echo "$name did not stop in 10 s; killing" >&2; kill -KILL "$pid" 2>/dev/null || true; }
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
    prepare
    for p in "${PARTS[@]}"; do start_part "$p"; done
    cat <<MSG

Vitals is up (logs and pids in $RUN_DIR):
  NATS            $nats_url   (monitoring http://127.0.0.1:$NATS_HTTP_PORT)
  monitor         http://127.0.0.1:$MONITOR_PORT/api/status   /metrics
  simulators      auth :$(sim_port auth)  billing :$(sim_port billing)  notifications :$(sim_port notifications)  analytics :$(sim_port analytics)
Watch:            nats sub 'health.>'       Snapshot: nats req health.snapshot ''
Outage:           make stop S=billing   then   make start S=billing
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
