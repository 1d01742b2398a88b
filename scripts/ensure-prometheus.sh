#!/usr/bin/env bash
# Prints the paths of a Prometheus server and a blackbox exporter, one a line (for
# scripts/compare.sh), installing Debian's prometheus and prometheus-blackbox-exporter with
# apt-get when either is missing. PROMETHEUS_BIN=PATH and BLACKBOX_BIN=PATH use those.
# Everything else goes to stderr.
set -euo pipefail

works() { [ -n "$1" ] && [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }

find_bin() { # find_bin OVERRIDE NAME...
  local candidate override="$1"
  shift
  for candidate in "$override" "${@/#//usr/bin/}"; do
    if works "$candidate"; then echo "$candidate"; return 0; fi
  done
  for candidate in "$@"; do
    candidate="$(command -v "$candidate" || true)"
    if works "$candidate"; then echo "$candidate"; return 0; fi
  done
  return 1
}

prom() { find_bin "${PROMETHEUS_BIN:-}" prometheus; }
blackbox() { find_bin "${BLACKBOX_BIN:-}" prometheus-blackbox-exporter blackbox_exporter; }

missing=()
prom >/dev/null || missing+=(prometheus)
blackbox >/dev/null || missing+=(prometheus-blackbox-exporter)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian's ${missing[*]} (apt-get)" >&2
  sudo_="" ; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    "${missing[@]}" >&2 || {
    $sudo_ apt-get update -q >&2
    $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      "${missing[@]}" >&2
  }
fi
# The packages start system services (:9090, :9115) where systemd runs; compare starts its own.
prom || { echo "prometheus install failed" >&2; exit 1; }
blackbox || { echo "prometheus-blackbox-exporter install failed" >&2; exit 1; }
