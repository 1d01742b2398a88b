#!/usr/bin/env bash
# Checks that the benchmark's quick mode runs and writes well-formed output (with the
# debug build the test command already made; the figures themselves are not judged).
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d)/results.json"
target/debug/bench --quick --out "$out" >/dev/null 2>"$out.log" || { cat "$out.log" >&2; exit 1; }
fields=(.raw.msgs_per_s .raw.hop_p50_ms .raw.hop_p99_ms .ingest.samples_per_s .ingest.lost
  .ingest.ratio_vs_raw .fanout.deliveries_per_s .detection.kill_p99_ms .detection.stop_p99_ms
  .detection.term_p99_ms .detection.timeout_ms .memory.monitor_bytes_per_service
  .memory.gateway_bytes_per_client .notify.baseline.p99_ms .notify.group_wait_0.p50_ms
  .notify.group_wait_0.p99_ms .notify.group_wait_1000.p99_ms .notify.ratio_p99_vs_baseline_gw0)
failed=0
for f in "${fields[@]}"; do
  if ! jq -e "$f | type == \"number\"" "$out" >/dev/null; then echo "FAIL: $f is not a number" >&2; failed=1; fi
done
jq -e '.e2e | length > 0 and all(.[]; (.clients|type=="number") and (.p50_ms|type=="number") and (.p99_ms|type=="number") and (.ratio_p99_vs_hop|type=="number"))' "$out" >/dev/null \
  || { echo "FAIL: e2e entries malformed" >&2; failed=1; }
jq -e '.ingest.lost == 0' "$out" >/dev/null || { echo "FAIL: the quick run lost samples" >&2; failed=1; }
jq -e '.notify.lost == 0' "$out" >/dev/null || { echo "FAIL: the quick run lost alert notifications" >&2; failed=1; }
[ "$failed" = 0 ] || exit 1
echo "bench-quick: $(( ${#fields[@]} + 3 )) passed, 0 failed"
