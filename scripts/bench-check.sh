#!/usr/bin/env bash
# Runs the benchmark's quick mode (with the debug build the test command already made) and
# checks its invariants: counts equal what was sent, deliveries = clients x messages,
# detections = trials, no resyncs, no drops, no false DOWN. Timings are never judged.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$(mktemp -d)"
out="$dir/results.json"
target/debug/bench --quick --out "$out" --svg "$dir/curve.svg" >"$dir/table.txt" 2>"$dir/log" \
  || { cat "$dir/log" "$dir/table.txt" >&2; exit 1; }
failed=0
ok() { # jq expression, what it checks
  if ! jq -e "$1" "$out" >/dev/null; then echo "FAIL: $2 ($1)" >&2; failed=1; fi
}
# Every invariant the bench computed holds (and there are some).
ok '(.invariants | length) > 20 and all(.invariants[]; .ok)' "the bench's own invariants"
# The same, independently from the raw figures.
ok 'all(.ingest.runs[]; .lost == 0 and .lost_in_all_trials == 0 and (.trials | length) >= 1 and .ratio_vs_raw > 0 and .counters.samples == .samples and .status_changes == .services
    and .counters.refused == 0 and .counters.slow_consumer_drops == 0 and .counters.samples_missed == 0
    and .counters.publish_drops == 0 and .counters.kv_write_errors == 0)' "ingest: every sample accepted, nothing dropped"
ok 'all(.memory.sizes[]; .losses == 0)' "memory runs: nothing lost"
ok '.sustain.max_zero_loss_per_s > 0 and .sustain.false_downs == 0' "sustained rate: the quick rate passes, no false DOWN"
ok 'all(.sustain.curve[]; .probes.monitor_missing == 0 and .probes.client_deliveries == .probes.clients * .probes.probes)' "curve probes all delivered"
ok 'all(.e2e[]; .probes.client_deliveries == .clients * .runs and .probes.resyncs == 0 and .probes.monitor_missing == 0)' "e2e: deliveries = clients x probes, no resyncs"
ok '.fanout.deliveries == .fanout.clients * .fanout.messages and .fanout.resyncs == 0' "fan-out: deliveries = clients x messages"
ok '(.detection | length) == 3 and all(.detection[]; .detected_at_monitor == .trials and .detected_at_client == .trials)' "detection: one DOWN per trial, at the monitor and the client"
ok '.false_downs == 0 and .pipeline_counters.publish_drops == 0 and .pipeline_counters.kv_write_errors == 0' "pipeline: no false DOWN, no drops"
ok '.notify.lost == 0' "alert delivery: nothing lost"
ok '(.machine.git_revision | length) == 40 and (.machine.rustc | startswith("rustc")) and .machine.cores > 0 and (.machine.cpu_model | length) > 0' "results record the machine"
grep -q '<polyline' "$dir/curve.svg" || { echo "FAIL: no curve in the SVG" >&2; failed=1; }
[ "$failed" = 0 ] || { cat "$dir/table.txt" >&2; exit 1; }
echo "bench-quick: $(jq '.invariants | length' "$out") invariants hold"
