#!/usr/bin/env bash
# The dashboard's end-to-end test: the real native stack (scripts/stack.sh on spare ports) and
# the built page in headless chromium (Debian's, driven by playwright-core). Installs what it
# needs when missing (chromium via apt, the npm packages); builds the debug binaries when
# missing and frontend/dist when missing or older than frontend/src (scripts/test.sh has built
# both; after changing Rust code, run `cargo build` first).
# The stack includes the prober (with no file targets: the test adds one from the page), the
# host agent and the notifier (its receiver: the gateway's inbox). Screenshots and timings: target/e2e/. Exits non-zero when any step fails or
# does not run (a failed step fails every later one; none is skipped).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

CHROMIUM_BIN="$(scripts/ensure-chromium.sh)"
export CHROMIUM_BIN
scripts/ensure-frontend.sh
NATS_SERVER_BIN="$(scripts/ensure-nats.sh)"
export NATS_SERVER_BIN

for bin in simulator monitor gateway prober agent notifier; do
  if [ ! -x "target/debug/$bin" ]; then
    echo "building the binaries (target/debug/$bin missing)" >&2
    cargo build --bins --quiet
    break
  fi
done
if [ ! -f frontend/dist/index.html ] ||
  [ -n "$(find frontend/src frontend/public frontend/index.html -newer frontend/dist/index.html -print -quit)" ]; then
  echo "building frontend/dist" >&2
  (cd frontend && npm run --silent build >/dev/null)
fi

# The test brings the stack down itself; this is the safety net if it is killed hard.
export VITALS_RUN_DIR; VITALS_RUN_DIR="$(mktemp -d -t vitals-e2e-XXXXXX)"
cleanup() {
  scripts/stack.sh down >/dev/null 2>&1 || true
  rm -rf "$VITALS_RUN_DIR"
}
trap cleanup EXIT

# Run under a child subreaper: the stack's processes are orphans (stack.sh starts them in a
# subshell that exits), and where PID 1 reaps orphans only every few seconds (some VMs and
# containers), a killed part stays a zombie that `kill -0` (stack.sh's liveness check) still
# sees, so every stop would wait for the reaper. Here they are reaped at once.
reaper='
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
child = os.fork()
if child == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal sends it to the child as well
for s in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, lambda n, _f: os.kill(child, n))
code = 1
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        break
    if pid == child:
        code = os.waitstatus_to_exitcode(status)
        break
sys.exit(code if code >= 0 else 128 - code)
'
cd frontend
python3 -c "$reaper" npm run --silent e2e
