#!/usr/bin/env bash
# Runs frontend/nginx.conf (the dashboard container's config) with a local nginx in front of
# a real native gateway on spare ports, and checks what the compose `frontend` does:
# the page, /healthz, /config.json, /api proxied, the /ws WebSocket upgrade proxied (101 and
# the first snapshot frame; a foreign Origin still gets the gateway's 403), and nginx staying
# up while the gateway is down (502), serving again when it is back.
# Only the container-specific lines are rewritten: listen port, root, gateway address.
# Needs nginx (apt-get install nginx-light) and debug binaries (cargo build --bins).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
command -v nginx >/dev/null || { echo "nginx not installed" >&2; exit 2; }
tmp="$(mktemp -d)"
export VITALS_RUN_DIR="$tmp/run" VITALS_PROFILE="${VITALS_PROFILE:-debug}" VITALS_NO_BUILD=1
export NATS_PORT=24222 NATS_HTTP_PORT=28222 MONITOR_PORT=29100 GATEWAY_PORT=28080 SIM_PORT_BASE=23000 DASHBOARD_PORT=25173
export VITALS_PARTS="nats monitor gateway auth"
port="$DASHBOARD_PORT" # the gateway allows this origin (stack.sh)
stack="$root/scripts/stack.sh"
cleanup() {
  [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
  "$stack" down >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
passed=0
ok() { echo "ok:   nginx: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: nginx: $*" >&2; [ -f "$tmp/error.log" ] && tail -n 5 "$tmp/error.log" >&2; exit 1; }

html="$root/frontend/dist"
if [ ! -f "$html/index.html" ]; then # no build yet: any page will do for the proxy checks
  html="$tmp/html"; mkdir -p "$html"; echo '<!doctype html><html><body>vitals</body></html>' >"$html/index.html"
fi
sed -e "s#^\(\s*\)listen 5173;#\1listen 127.0.0.1:$port;#" \
    -e "s#^\(\s*\)root /usr/share/nginx/html;#\1root $html;#" \
    -e "s#http://gateway:8080#http://127.0.0.1:$GATEWAY_PORT#" \
    "$root/frontend/nginx.conf" >"$tmp/default.conf"
grep -q "listen 127.0.0.1:$port;" "$tmp/default.conf" && grep -q "127.0.0.1:$GATEWAY_PORT" "$tmp/default.conf" ||
  fail "could not adapt nginx.conf (listen/root/gateway lines changed?)"
user_line=""; [ "$(id -u)" = 0 ] && user_line="user root;"
cat >"$tmp/nginx.conf" <<EOF
$user_line
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/error.log warn;
events {}
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log off;
  client_body_temp_path $tmp/body;
  proxy_temp_path $tmp/proxy;
  fastcgi_temp_path $tmp/fastcgi;
  uwsgi_temp_path $tmp/uwsgi;
  scgi_temp_path $tmp/scgi;
  include $tmp/default.conf;
}
EOF
nginx -t -q -c "$tmp/nginx.conf" -p "$tmp" 2>"$tmp/t.err" || { cat "$tmp/t.err" >&2; fail "nginx -t refused the config"; }
ok "nginx -t accepts frontend/nginx.conf ($(nginx -v 2>&1 | sed 's/.*: //'))"

"$stack" up >/dev/null
nginx -c "$tmp/nginx.conf" -p "$tmp"
base="http://127.0.0.1:$port"
for _ in $(seq 1 50); do curl -fsS -m 1 "$base/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

[ "$(curl -fsS -m 2 "$base/healthz")" = ok ] || fail "/healthz"
ok "/healthz answers 200"
curl -fsS -m 2 "$base/" | grep -qi "<html" || fail "/ serves no page"
curl -fsS -m 2 "$base/some/client/route" | grep -qi "<html" || fail "unknown paths do not fall back to index.html"
ok "/ and client routes serve index.html"
curl -fsS -m 2 "$base/config.json" | jq -e '.health | length == 4' >/dev/null || fail "/config.json"
ok "/config.json lists the four health URLs"
for _ in $(seq 1 100); do
  curl -fsS -m 2 "$base/api/status" 2>/dev/null | jq -e '.services | length >= 1' >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS -m 2 "$base/api/status" | jq -e '.services | length >= 1' >/dev/null || fail "/api/status not proxied"
curl -fsS -m 2 "$base/api/history?limit=5" | jq -e '.events' >/dev/null || fail "/api/history not proxied"
ok "/api/status and /api/history proxied to the gateway"

ws() { # origin -> response head and first frame bytes (curl speaks the HTTP/1.1 upgrade)
  curl -sS -i -N -m 2 --http1.1 \
    -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \
    -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' -H "Origin: $1" "$base/ws" 2>/dev/null | tr -d '\0' || true
}
out="$(ws "http://localhost:$port")"
grep -q "^HTTP/1.1 101" <<<"$out" || fail "/ws upgrade not proxied: $(head -n 1 <<<"$out")"
grep -q '"type":"snapshot"' <<<"$out" || fail "/ws gave no snapshot frame"
ok "/ws upgrades (101) through nginx and the first frame is the snapshot"
out="$(ws http://evil.example)"
grep -q "^HTTP/1.1 403" <<<"$out" || fail "a foreign Origin was not refused: $(head -n 1 <<<"$out")"
ok "/ws from a foreign Origin gets the gateway's 403 through nginx"

"$stack" stop gateway >/dev/null
code="$(curl -s -o /dev/null -w '%{http_code}' -m 3 "$base/api/status")"
[ "$code" = 502 ] || fail "gateway down: /api/status gave $code, not 502"
[ "$(curl -fsS -m 2 "$base/healthz")" = ok ] || fail "nginx unhealthy while the gateway is down"
"$stack" start gateway >/dev/null
curl -fsS -m 2 "$base/api/status" >/dev/null || fail "/api/status not back after the gateway restarted"
ok "gateway down: 502 and nginx stays healthy; back: proxied again"
echo "nginx: $passed passed, 0 failed"
