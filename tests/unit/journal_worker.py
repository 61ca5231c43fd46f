"""A journaled operation in a process of its own, for tests/unit/test_journal.py to kill.

Every step appends `begin NAME` then `end NAME` to EFFECTS (fsynced, so a SIGKILL cannot
lose it); the step named by --block waits after its `begin` until the test kills or
interrupts the process. Exit 0 finished, 1 refused or stopped (message on stderr), 130 Ctrl-C.

    python -m tests.unit.journal_worker SITE EFFECTS [--block STEP] [--check STEP=yes|no]
                                                [--confirm STEP=done|redo]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from installer.errors import OnehciError
from installer.journal import Journal, Step

STEPS = [
    Step("prepare"),
    Step("drain", destructive=True, verify="that lab3's chunk disks are marked for removal"),
    Step("reinstall", destructive=True, verify="that lab3 was reinstalled (onehci pxe state)"),
    Step("deploy"),
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("site")
    parser.add_argument("effects")
    parser.add_argument("--block", default="")
    parser.add_argument("--check", action="append", default=[])
    parser.add_argument("--confirm", action="append", default=[])
    args = parser.parse_args()

    def effect(line: str) -> None:
        with open(args.effects, "a") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def body(name: str):
        def fn():
            effect(f"begin {name}")
            while name == args.block:
                time.sleep(0.05)
            effect(f"end {name}")
            return f"{name} result"
        return fn

    def check(name: str, answer: str):
        def check_done() -> bool:
            effect(f"check {name}")
            return answer == "yes"
        return check_done

    checks = dict(c.split("=") for c in args.check)
    try:
        with Journal.open(args.site, "rebuild", "lab3", STEPS, command="onehci rebuild lab3 site.yml") as journal:
            for name, answer in (c.split("=") for c in args.confirm):
                journal.confirm(name, answer == "done")
            for step in STEPS:
                journal.run(step.name, body(step.name),
                            check(step.name, checks[step.name]) if step.name in checks else None)
            journal.finish()
    except OnehciError as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
