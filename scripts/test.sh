#!/usr/bin/env bash
# The whole test suite, with the slowest tests listed at the end (docs/performance.md, "The test suite").
#
# Without arguments it runs as two pytest runs side by side, each failing on its own (exit 5, no test
# collected, fails too):
#   - the labs, after the quick tests: the long chain of waits (packages, chunk loops, monitoring rounds)
#     that leaves about half of the two cores idle;
#   - the boot chain's emulated machines (tests/bootchain), at a lower CPU priority, in those idle
#     cycles. Its log goes to $BOOT_LOG and is printed when both are done.
# With arguments, one pytest run with them, e.g. `bash scripts/test.sh -x tests/unit`.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTEST=(.venv/bin/python -m pytest --durations=25)
if [ $# -gt 0 ]; then
    exec "${PYTEST[@]}" "$@"
fi

BOOT_LOG=${BOOT_LOG:-/var/tmp/onehci-test-bootchain.log}
# its own session, hence its own scheduler autogroup, whose nice is what counts against the labs
setsid -w bash -c 'echo 5 > /proc/self/autogroup; exec "$@"' boot "${PYTEST[@]}" tests/bootchain \
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
