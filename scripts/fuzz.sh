#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ on the stable toolchain (no cargo-fuzz, no
# nightly: the same instrumentation `cargo fuzz build -s none` asks rustc for) and runs
# each for SECONDS_PER_TARGET seconds over a fresh copy of its seeds.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 30)
#   FUZZ_TARGETS="config" bash scripts/fuzz.sh 60   (only some targets)
#
# Needs a C++ compiler (libfuzzer-sys builds libFuzzer). Exits non-zero if a target
# crashed, panicked, hung or ran out of memory; the input that did it is left in
# fuzz/artifacts/<target>/ and can be replayed with
#   fuzz/target/<host>/fuzz/<target> fuzz/artifacts/<target>/crash-…
# See docs/FUZZING.md.
set -euo pipefail

seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
targets="${FUZZ_TARGETS:-dispatch config}"
host="$(rustc -vV | sed -n 's/^host: //p')"

# cargo-fuzz's flags for a build without a sanitizer. `--target` keeps them away from
# build scripts and proc macros, which must not be instrumented.
flags="--cfg fuzzing -Cpasses=sancov-module"
flags+=" -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
flags+=" -Cllvm-args=-sanitizer-coverage-pc-table"
flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares"
flags+=" -Cllvm-args=-sanitizer-coverage-stack-depth"
flags+=" -Cllvm-args=-simplifycfg-branch-fold-threshold=0"
flags+=" -Cdebug-assertions -Coverflow-checks"

echo "building fuzz targets (profile fuzz, $host)..."
start=$(date +%s)
RUSTFLAGS="$flags ${RUSTFLAGS:-}" cargo build --quiet --profile fuzz --bins \
    --manifest-path fuzz/Cargo.toml --target-dir fuzz/target --target "$host"
echo "built in $(($(date +%s) - start)) s"

bin_dir="fuzz/target/$host/fuzz"
failed=0
for target in $targets; do
    corpus="fuzz/corpus/$target"
    artifacts="fuzz/artifacts/$target"
    log="fuzz/target/logs/$target.log"
    rm -rf "$corpus"
    mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
    cp fuzz/seeds/"$target"/* "$corpus"/
    args=(
        "-max_total_time=$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192
        -print_final_stats=1 "-artifact_prefix=$artifacts/"
    )
    if [[ -f "fuzz/dicts/$target.dict" ]]; then
        args+=("-dict=fuzz/dicts/$target.dict")
    fi
    status=0
    "$bin_dir/$target" "${args[@]}" "$corpus" >"$log" 2>&1 || status=$?
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    took="$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)"
    if [[ $status -eq 0 ]]; then
        echo "$target: ${execs:-?} execs in ${took:-$seconds} s, no crash"
    else
        failed=1
        echo "$target: CRASH (exit $status) after ${execs:-?} execs; log: $log"
        # The panic message or libFuzzer's report, and the input it saved.
        grep -E -A 12 "panicked at|ERROR: libFuzzer|==ERROR|SUMMARY" "$log" | head -n 40 || true
        grep -E "Test unit written to" "$log" || true
    fi
done
exit "$failed"
