#!/usr/bin/env bash
# Reproduces BENCHMARKS.md: starts a release server on a fresh data dir and runs every
# `broodlink bench` scenario RUNS times, printing one JSON line per run.
#   bash scripts/bench.sh [RUNS] [full|normal|memory]
# `memory` keeps the database in memory (no disk at all): what the rest costs.
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
for _ in $(seq "$runs"); do
    echo "roundtrip $(bench roundtrip --agents 64 --duration 10s)"
    echo "send-1room $(bench send --agents 64 --duration 10s)"
    echo "send-32rooms $(bench send --agents 64 --rooms 32 --duration 10s)"
    echo "fanout-saturated $(bench fanout --members 100 --senders 4 --rate 9000 --duration 10s)"
    echo "fanout-half $(bench fanout --members 100 --senders 4 --rate 2000 --duration 10s)"
done
echo "connections $(bench connections --count 10000 --agents 100)"
echo "history $(bench history --messages "${HISTORY_MESSAGES:-1000000}" --senders 8 --window 32 --queries 200)"
