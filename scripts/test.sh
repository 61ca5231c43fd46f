#!/usr/bin/env bash
# The whole test suite, in two parts (docs/performance.md, "The test suite"):
#  1. the emulated machines (tests/bootchain: qemu under TCG keeps both cores busy), alone;
#  2. the rest as two pytest runs side by side, each lab keeping a core about half busy: the labs of the
#     shipped "lab" profile (they share its bridge and addresses, so one after the other), and beside
#     them the labs with networks of their own and the quick tests. Their lines are prefixed
#     [lab] and [beside].
# Every part always runs; the exit status is the first failing one's (5, no test collected, fails too).
# Arguments go to every pytest run, e.g. `bash scripts/test.sh -x`.
set -uo pipefail
cd "$(dirname "$0")/.."

ON_THE_LAB_PROFILE=(tests/lab/test_lab.py tests/lab/test_opennebula.py tests/lab/test_rebuild.py)
pytest=(.venv/bin/python -m pytest)
status=0
keep() { [ "$status" -ne 0 ] || status=$1; }

started=$SECONDS
"${pytest[@]}" --durations=15 tests/bootchain "$@" || keep $?
echo "test.sh: part 1 (tests/bootchain) took $((SECONDS - started)) s" >&2

started=$SECONDS
ignore=(--ignore=tests/bootchain)
for f in "${ON_THE_LAB_PROFILE[@]}"; do ignore+=(--ignore="$f"); done
( "${pytest[@]}" --durations=15 --basetemp=/tmp/onehci-tests-lab "${ON_THE_LAB_PROFILE[@]}" "$@" 2>&1 \
    | sed -u 's/^/[lab] /' ) &
lab=$!
trap 'echo "test.sh: interrupted; waiting for both runs to take their labs down" >&2; wait; exit 130' INT
( "${pytest[@]}" --durations=15 --basetemp=/tmp/onehci-tests-beside "${ignore[@]}" "$@" 2>&1 \
    | sed -u 's/^/[beside] /' ) &
beside=$!
wait "$lab" || keep $?
wait "$beside" || keep $?
echo "test.sh: part 2 (two runs side by side) took $((SECONDS - started)) s" >&2
exit "$status"
