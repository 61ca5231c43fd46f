#!/usr/bin/env bash
# The whole test suite, with the slowest tests listed at the end (docs/performance.md, "The test suite").
#
# Without arguments it runs as two pytest runs side by side, each failing on its own (exit 5, no test
# collected, fails too):
#   - the labs, after the quick tests: a long chain of waits (packages, chunk loops, monitoring rounds)
#     that leaves about half of the two cores idle;
#   - the boot chain's emulated machines (tests/bootchain), in those idle cycles, once OpenNebula's
#     build is in the cache (the labs' run starts it; emulated machines beside the build were starved
#     and their boot tests timed out). Its log goes to $BOOT_LOG and is printed when both are done.
# With arguments, one pytest run with them, e.g. `bash scripts/test.sh -x tests/unit`.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTEST=(.venv/bin/python -m pytest --durations=25)
if [ $# -gt 0 ]; then
    exec "${PYTEST[@]}" "$@"
fi

BOOT_LOG=${BOOT_LOG:-/var/tmp/onehci-test-bootchain.log}
# its own session, so that Ctrl-C stops all of it; the build call waits on the build's lock
setsid -w bash -c '"$1" -c "from installer.lab import core; core.opennebula_build(say=print)" || exit 1
                   shift; exec "$@"' boot .venv/bin/python "${PYTEST[@]}" tests/bootchain \
    > "$BOOT_LOG" 2>&1 < /dev/null &
boot=$!
trap 'kill -TERM -- -$boot 2>/dev/null; wait $boot; exit 130' INT TERM
echo "tests/bootchain runs beside, its output in $BOOT_LOG (printed at the end)"

"${PYTEST[@]}" tests/unit tests/roles tests/project tests/lab
labs=$?
wait $boot
boot_rc=$?
trap - INT TERM
echo
echo "==================== tests/bootchain (ran beside the tests above) ===================="
cat "$BOOT_LOG"
echo "the labs and quick tests: pytest exit $labs; tests/bootchain: pytest exit $boot_rc"
[ "$labs" -eq 0 ] && [ "$boot_rc" -eq 0 ]
