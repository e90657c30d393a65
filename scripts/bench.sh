#!/usr/bin/env bash
# Reproduces BENCHMARKS.md: starts a release server on a fresh data dir and runs every
# `broodlink bench` scenario RUNS times, printing one JSON line per run.
#   bash scripts/bench.sh [RUNS] [full|normal|memory]
# `memory` keeps the database in memory (no disk at all): what the rest costs.
#   bash scripts/bench.sh cpu [full|normal|memory]
# instead prints the CPU the server and the load generator spend per operation in
# `roundtrip` and `send` (BENCHMARKS.md, "How close to the machine").
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
sync=${2:-full}
database=""
if [ "$sync" = memory ]; then
    sync=normal
    database='"database": ":memory:",'
fi
cargo build --release --locked --bin broodlink >&2
bin=target/release/broodlink
dir=$(mktemp -d)
port=18899
# Rate and per-agent connection limits off: the load is the point (100 agents × 100
# connections in `connections`, hundreds of sends per second per agent in `send`).
cat > "$dir/broodlink.json" <<JSON
{ "host": "127.0.0.1", "port": $port, "synchronous": "$sync", $database "maxRooms": 10000,
  "limits": { "callsPerSecond": 0, "sendsPerSecond": 0, "authFailuresPerMinute": 0,
              "maxConnectionsPerAgent": 1000 } }
JSON
key=$("$bin" --data-dir "$dir" serve | grep -o 'bl_k_ctrl_[0-9a-f]*' | head -1)
trap '"$bin" --data-dir "$dir" stop --force >/dev/null; rm -rf "$dir"' EXIT
bench() { "$bin" --data-dir "$dir" bench --url "ws://127.0.0.1:$port" --controller-key "$key" --json "$@"; }

# CPU seconds the server has used so far (user + system).
server_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$(cat "$dir/broodlink.pid")/stat"; }

# One run of a scenario, then µs of CPU per answered call / acked message for each side
# (the load generator's includes its set-up: inviting, connecting, cleaning up).
cpu_per_op() {
    local before after report seconds
    before=$(server_cpu)
    report=$(mktemp)
    seconds=$( { TIMEFORMAT='%U %S'; time bench "$@" > "$report"; } 2>&1 )
    after=$(server_cpu)
    python3 - "$report" "$before" "$after" "$seconds" "$*" <<'PY'
import json, sys
report, before, after, seconds, args = sys.argv[1:]
r = json.load(open(report))
ops = r.get("calls", r.get("acked")) or 1
rate = r.get("calls_per_s", r.get("acked_per_s"))
bench = sum(float(x) for x in seconds.split())
print(f"{args}: {rate:,.0f}/s; server {(float(after) - float(before)) * 1e6 / ops:.1f} µs/op, "
      f"load generator {bench * 1e6 / ops:.1f} µs/op; checks passed: {r['checks']['passed']}")
PY
    rm -f "$report"
}

if [ "$runs" = cpu ]; then
    cpu_per_op roundtrip --agents 64 --duration 8s
    cpu_per_op send --agents 64 --rooms 32 --duration 8s
    cpu_per_op send --agents 64 --duration 8s
    exit 0
fi
for _ in $(seq "$runs"); do
    echo "roundtrip $(bench roundtrip --agents 64 --duration 10s)"
    echo "send-1room $(bench send --agents 64 --duration 10s)"
    echo "send-32rooms $(bench send --agents 64 --rooms 32 --duration 10s)"
    echo "fanout-saturated $(bench fanout --members 100 --senders 4 --rate 9000 --duration 10s)"
    echo "fanout-half $(bench fanout --members 100 --senders 4 --rate 2000 --duration 10s)"
done
echo "connections $(bench connections --count 10000 --agents 100)"
echo "history $(bench history --messages "${HISTORY_MESSAGES:-1000000}" --senders 8 --window 32 --queries 200)"
