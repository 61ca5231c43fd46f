"""OpenNebula's build for the labs, started in the background when the run begins, at the lowest CPU
and disk priority: it takes the cycles the boot chain's emulated machines leave (one VM alone keeps one
core of two busy), so the first `lab up` finds it in the cache instead of building it then (about 7
minutes on 2 cores, docs/performance.md "The test suite"). It is the product's own build
(installer/lab/core.py, under its build lock): a `lab up` that comes first waits for it, and one that
finds it failed builds again and says why."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

LOG = Path("/var/tmp/onehci-test-prebuild.log")
_BUILD = ("from installer.lab import core\n"
          "print(core.opennebula_build(say=print).directory, flush=True)\n")


def needed(paths: list[str]) -> bool:
    """Whether a lab test is selected and the lab's build is not in the cache yet."""
    if os.geteuid() != 0 or not any("/tests/lab/" in p for p in paths):
        return False
    from installer.lab import core, onebuild
    return onebuild.cached(core.FIREEDGE) is None and not onebuild.missing_build_depends()


def _lowest_priority() -> None:
    # its own session, hence its own scheduler autogroup: the group's nice is what counts against
    # the tests' processes, not the processes' own nice
    os.setsid()
    with open("/proc/self/autogroup", "w") as group:
        group.write("19")
    os.nice(19)


def start() -> subprocess.Popen:
    with open(LOG, "w") as log:
        return subprocess.Popen(["ionice", "-c", "3", sys.executable, "-c", _BUILD], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, preexec_fn=_lowest_priority,
                                cwd=Path(__file__).resolve().parent.parent)


def stop(proc: subprocess.Popen) -> None:
    """At the end of the run: a build still going (the run was cut short) is stopped with its children."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
