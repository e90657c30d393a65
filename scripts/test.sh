#!/usr/bin/env bash
# Runs every test BroodLink has. This is the README's test command, and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo is not installed; install Rust from https://rustup.rs and re-run" >&2
    exit 1
fi

# Unit tests, and the end-to-end tests that drive a real server over real WebSockets.
cargo test --workspace --locked
