#!/usr/bin/env bash
# Set up onehci in ./.venv: Debian packages (when root), then the Python package with its test tools.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

want=$(grep -v '^\s*#' scripts/apt-packages.txt | xargs)
missing=$(for p in $want; do dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"; done | xargs)
if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing Debian packages: $missing (run: sudo apt-get install $missing)" >&2
        exit 1
    fi
    echo "setup: installing $missing" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q -e '.[test]' 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c 'import installer, pyone, ansible_runner' || { echo "setup: the install failed" >&2; exit 1; }
echo "setup: ready; run .venv/bin/onehci --help" >&2
