#!/usr/bin/env bash
# Prints the path of a Prometheus Alertmanager binary (for the notifier's test against a real
# one), installing Debian's prometheus-alertmanager with apt-get when none is found.
# ALERTMANAGER_BIN=PATH uses that one. Everything else goes to stderr.
set -euo pipefail

works() { [ -n "$1" ] && [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }

for candidate in "${ALERTMANAGER_BIN:-}" /usr/bin/prometheus-alertmanager \
  "$(command -v prometheus-alertmanager || true)" "$(command -v alertmanager || true)"; do
  if works "$candidate"; then
    echo "$candidate"
    exit 0
  fi
done

echo "installing Debian's prometheus-alertmanager (apt-get)" >&2
sudo_="" ; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
$sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
  prometheus-alertmanager >&2 || {
  $sudo_ apt-get update -q >&2
  $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    prometheus-alertmanager >&2
}
# The package starts a system service on :9093 where systemd runs; the test starts its own.
works /usr/bin/prometheus-alertmanager || { echo "prometheus-alertmanager install failed" >&2; exit 1; }
echo /usr/bin/prometheus-alertmanager
