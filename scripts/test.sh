#!/usr/bin/env bash
# Runs every test BroodLink has. This is the README's test command, and what CI runs.
# It installs what the client tests need (a Python venv, npm packages) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo is not installed; install Rust from https://rustup.rs and re-run" >&2
    exit 1
fi

# Generated files (openrpc.json, PROTOCOL.md, the clients) must match the protocol crate.
cargo xtask codegen --check

# Everything compiles, the criterion benches included (tests do not build them).
cargo check --workspace --all-targets --locked

# Unit tests, and the end-to-end tests that drive a real server over real WebSockets.
cargo test --workspace --locked

# The generated clients, against the real binary.
cargo build --locked --bin broodlink
for suite in tests/python/run.sh tests/typescript/run.sh; do
    if [ -f "$suite" ]; then
        bash "$suite"
    fi
done

# The libFuzzer targets build on stable and run briefly (docs/FUZZING.md for longer runs).
bash scripts/fuzz.sh "${FUZZ_SECONDS:-15}"
