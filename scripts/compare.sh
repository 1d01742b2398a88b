#!/usr/bin/env bash
# `make compare`: Vitals side by side with Prometheus + blackbox exporter + Alertmanager
# (scripts/compare.py says how). Installs what is missing (nats-server, Debian's prometheus,
# prometheus-blackbox-exporter, prometheus-alertmanager), builds the release binaries, runs.
#   compare.sh [--kills N] [--quick] [--seed S] [--group-wait-ms MS]
# Full mode writes docs/BENCHMARKS.md's compare region and target/compare/results.json;
# --quick (2 kills, asserts every alert arrives) writes target/compare/results-quick.json only.
# VITALS_PROFILE=debug uses (and builds) the debug binaries: fine for --quick, which asserts
# no timing (the test command's build is reused); figures come from release builds.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

nats_server="$(scripts/ensure-nats.sh)"
alertmanager="$(scripts/ensure-alertmanager.sh)"
bins="$(scripts/ensure-prometheus.sh)"
prometheus="$(sed -n 1p <<<"$bins")"
blackbox="$(sed -n 2p <<<"$bins")"
profile="${VITALS_PROFILE:-release}"
if [ "$profile" = debug ]; then
  cargo build --quiet -p monitor -p notifier -p simulator
else
  cargo build --profile="$profile" --quiet -p monitor -p notifier -p simulator
fi

exec python3 scripts/compare.py --nats-server "$nats_server" --alertmanager "$alertmanager" \
  --prometheus "$prometheus" --blackbox "$blackbox" --bin-dir "$root/target/$profile" \
  --command "scripts/compare.sh${*:+ $*}" "$@"
