#!/usr/bin/env bash
# Installs the dashboard's npm packages when missing or out of date with package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/../frontend"
stamp=node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
  echo "installing npm packages (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
