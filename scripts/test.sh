#!/usr/bin/env bash
# The whole test suite, one test after the other, with the slowest tests at the end of the log
# (docs/performance.md, "The test suite"). Arguments go to pytest, e.g. `bash scripts/test.sh -x`.
#
# Not side by side: running the labs of the shipped "lab" profile beside the other labs (tried on
# 2026-12-06) took as long in all on 2 cores (each half slowed the other) and broke two tests, and the
# boot chain's emulated machines beside the labs (2026-12-07) failed the labs' waits for OpenNebula
# (docs/performance.md, "The test suite").
set -uo pipefail
cd "$(dirname "$0")/.."
# every test's time, setup and teardown included, is kept in tests/artifacts/junit.xml
exec .venv/bin/python -m pytest --durations=25 --junitxml=tests/artifacts/junit.xml "$@"
