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


def tree_hash(loaded, node: str, path: str) -> str:
    """One sha256 over every file under PATH as NODE sees it: relative path, size and content
    hash, sorted. Written before a fault and compared after: equal means nothing was lost."""
    script = (f"cd {path} && find . -type f -print0 | sort -z | "
              "xargs -0 -r sh -c 'for f; do printf \"%s %s \" \"$f\" $(stat -c %s \"$f\"); "
              "sha256sum < \"$f\"; done' _ | sha256sum")
    out = sh(loaded, node, script).stdout.split()[0]
    assert len(out) == 64, out
    return out


def write_data(loaded, node: str, path: str, files: int = 8, mib: int = 8) -> None:
    """FILES files of MIB MiB of random data (and a nested directory) under PATH on NODE."""
    sh(loaded, node, f"mkdir -p {path}/nested && for i in $(seq 1 {files}); do "
       f"head -c {mib}M /dev/urandom > {path}/file$i; done && echo small > {path}/nested/note && sync")
