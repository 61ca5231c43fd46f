"""What the lab tests share: a shell command in a node, and waiting for a condition."""

from __future__ import annotations

import subprocess
import time

from installer import lab


def sh(loaded, node: str, script: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = lab.node_exec(loaded, node, ["sh", "-c", script], capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, f"{node}: {script}: {proc.stdout}{proc.stderr}"
    return proc


def wait_for(what: str, condition, timeout: float, every: float = 1.0):
    """condition() until it returns something true; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(every)
    return result
