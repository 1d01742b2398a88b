#!/usr/bin/env bash
# Installs Debian's chromium (for the dashboard's end-to-end test) when /usr/bin/chromium is
# missing. Idempotent and quiet when it is already there; prints the browser's path on stdout.
# Never downloads a browser from anywhere else (no `npx playwright install`).
set -euo pipefail
bin=/usr/bin/chromium
if [ ! -x "$bin" ]; then
  command -v apt-get >/dev/null || { echo "no $bin and no apt-get: install chromium yourself" >&2; exit 1; }
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing Debian's chromium (apt-get)" >&2
  log="$(mktemp)"
  trap 'rm -f "$log"' EXIT
  export DEBIAN_FRONTEND=noninteractive
  if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "apt-get could not install chromium" >&2
    exit 1
  fi
  [ -x "$bin" ] || { echo "chromium install did not provide $bin" >&2; exit 1; }
fi
echo "$bin"
