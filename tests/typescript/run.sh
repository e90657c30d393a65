#!/usr/bin/env bash
# The TypeScript client's tests: installs the client's and the tests' npm packages (npm ci,
# from the committed lockfiles, only when missing or stale), builds the client with tsc
# (strict), builds the server binary unless BROODLINK_BIN names one, and runs the suites
# with node's built-in test runner against the real `broodlink` binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "error: $tool is not installed; install Node.js 18 or later (with npm) and re-run" >&2
        exit 1
    fi
done

# `npm ci` in $1 unless its node_modules was installed from the current lockfile.
install() {
    local dir="$1" stamp="$1/node_modules/.broodlink-lock-stamp" want
    want="$(cat "$dir/package.json" "$dir/package-lock.json" | sha256sum | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return
    fi
    echo "npm ci in ${dir#"$root"/}"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
}

install "$root/clients/typescript"
echo "building clients/typescript (tsc, strict)"
(cd "$root/clients/typescript" && npm run --silent build)
install "$root/tests/typescript"

if [ -z "${BROODLINK_BIN:-}" ]; then
    cargo build --locked --quiet --bin broodlink
fi

cd "$root/tests/typescript"
exec node --test ./*.test.mjs
