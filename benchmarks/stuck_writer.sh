#!/bin/bash
# A 1,000-reactor fleet in real time whose historian writer stops reading 20 s in (kill -STOP,
# as a process waiting on a disk that no longer answers), then waits up to 150 s for the run to
# end. Prints how it ended; read OUT/summary.json (tick_lateness_s per reactor) and OUT/run.sqlite.
# Usage: benchmarks/stuck_writer.sh [OUT] [TREE]   (TREE: another checkout's sources, for A/B)
# Not in `make bench`: a fault's cost, measured by hand (docs/benchmarks.md, "A writer stuck").
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-/tmp/stuck-writer}
tree=${2:-$repo}
rm -rf "$out" && mkdir -p "$out" && cd "$out" || exit 1
start=$(date +%s.%N)
PYTHONPATH=$tree "$repo/.venv/bin/python" -m controller.cli.main run \
    "$repo/configs/hsc_expansion.toml" --reactors 1000 --speed 1 --duration 75s --quiet \
    --db "$out/run.sqlite" --summary-json "$out/summary.json" > "$out/out.txt" 2> "$out/err.txt" &
pid=$!
sleep 20  # the scenario's moment, not a wait for a condition
writer=$(for p in /proc/[0-9]*; do
    [ "$(awk '{print $4}' "$p/stat" 2>/dev/null)" = "$pid" ] \
        && grep -q record_writer "$p/cmdline" 2>/dev/null && basename "$p"; done | head -1)
echo "controller $pid, writer $writer stopped at $(echo "$(date +%s.%N) - $start" | bc) s"
kill -STOP "$writer"
for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
if kill -0 "$pid" 2>/dev/null; then
    echo "still running after $(echo "$(date +%s.%N) - $start" | bc) s: killed"
    kill -9 "$pid"
else
    wait "$pid"
    echo "exit $? after $(echo "$(date +%s.%N) - $start" | bc) s"
fi
kill -9 "$writer" 2>/dev/null
exit 0
