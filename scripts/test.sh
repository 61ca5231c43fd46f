#!/usr/bin/env bash
# The whole test suite, one test after the other, with the slowest tests at the end of the log
# (docs/performance.md, "The test suite"). Arguments go to pytest, e.g. `bash scripts/test.sh -x`.
#
# Not yet side by side: running the labs of the shipped "lab" profile beside the other labs (tried on
# 2026-12-06) saved about 10 minutes but showed two things to settle first: two labs publishing their
# OpenNebula repository at once cut each other's gpg signature (now serialised in
# installer/lab/onerepo.py), and the rebuild test's interrupted runs did not reach their step within
# 60 s with both cores shared.
set -uo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest --durations=25 "$@"
