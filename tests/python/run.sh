#!/usr/bin/env bash
# The Python client's tests: type-check the package with `mypy --strict`, then run the
# pytest suite against the real `broodlink` binary. Creates `.venv/` at the repository
# root on first use and (re)installs what tests/python/requirements.txt pins, plus the
# client in editable mode, whenever that file or the client's pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=.venv
if ! "$venv/bin/python" -c "import sys; assert sys.version_info >= (3, 11)" 2>/dev/null; then
    if ! python3 -c "import sys; assert sys.version_info >= (3, 11)" 2>/dev/null; then
        echo "error: the Python client needs python3 >= 3.11" >&2
        exit 1
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
fi

stamp="$venv/.broodlink-python-tests"
wanted="$(cat tests/python/requirements.txt clients/python/pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    pip=("$venv/bin/python" -m pip --quiet --disable-pip-version-check)
    "${pip[@]}" install -r tests/python/requirements.txt
    "${pip[@]}" install -e clients/python
    echo "$wanted" > "$stamp"
fi

# The server binary the tests start (scripts/test.sh has built it already; this is quick).
if [ -z "${BROODLINK_BIN:-}" ]; then
    cargo build --locked --quiet --bin broodlink
fi

"$venv/bin/python" -m mypy --strict clients/python/broodlink_client tests/python/typecheck_usage.py
"$venv/bin/python" -m pytest tests/python
