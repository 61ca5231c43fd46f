#!/usr/bin/env bash
# The whole test suite, in two parts (docs/performance.md, "The test suite"):
#  1. the emulated machines (tests/bootchain: qemu under TCG keeps both cores busy), alone;
#  2. everything else with two pytest-xdist workers: the labs of the shipped "lab" profile on one,
#     the labs with networks of their own and the quick tests on the other (tests/conftest.py).
# Both parts always run; the exit status is the first failing part's (5, no test collected, fails too).
# Arguments go to both pytest runs, e.g. `bash scripts/test.sh -x`.
set -uo pipefail
cd "$(dirname "$0")/.."

status=0
started=$SECONDS
.venv/bin/python -m pytest --durations=15 tests/bootchain "$@" || status=$?
echo "test.sh: part 1 (tests/bootchain) took $((SECONDS - started)) s" >&2
started=$SECONDS
.venv/bin/python -m pytest --durations=25 -n 2 --dist loadgroup --ignore=tests/bootchain "$@" \
    || { rc=$?; [ "$status" -ne 0 ] || status=$rc; }
echo "test.sh: part 2 (the rest, two workers) took $((SECONDS - started)) s" >&2
exit "$status"
