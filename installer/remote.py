"""Commands on a site's nodes over SSH, as root, with the site's key and known_hosts
(installer/environment.py `ssh_identity`): one argv builder for every verb that reaches a node."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from installer import environment
from installer.errors import OnehciError
from installer.i18n import _


def ssh_argv(ip: str, ssh_key: str | None, known_hosts: str, timeout: float = 10,
             host_keys: str = "yes") -> list[str]:
    """`ssh ... root@IP`, ready for a command. HOST_KEYS is StrictHostKeyChecking: "yes" (a key
    never seen is refused: only deploy learns keys) or "accept-new" (trust on first use)."""
    return ["ssh", "-o", "BatchMode=yes", "-o", f"StrictHostKeyChecking={host_keys}",
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", f"ConnectTimeout={max(1, int(timeout))}",
            *(["-i", ssh_key, "-o", "IdentitiesOnly=yes"] if ssh_key else []), f"root@{ip}"]


def run(loaded, ip: str, script: str, *, timeout: float = 60) -> subprocess.CompletedProcess:
    """SCRIPT (sh) on the node at IP; a node that does not answer within TIMEOUT seconds gives
    returncode 255 and says so in stderr, like ssh itself."""
    ssh_key, known_hosts = environment.ssh_identity(loaded.path)
    argv = [*ssh_argv(ip, ssh_key, str(known_hosts), min(timeout, 10)), script]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 255, "", _("no answer within {seconds} s").format(seconds=f"{timeout:g}"))


def check(loaded, ip: str, script: str, what: str, *, timeout: float = 60) -> str:
    """Like run(), raising a one-line OnehciError naming WHAT when the script fails; its stdout."""
    done = run(loaded, ip, script, timeout=timeout)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise OnehciError(_("{what} on {ip} failed: {error}").format(what=what, ip=ip, error=last))
    return done.stdout


def alive(loaded, ip: str, timeout: float = 15) -> bool:
    """Does the node answer over SSH now?"""
    return run(loaded, ip, "true", timeout=timeout).returncode == 0


def put(loaded, ip: str, source: Path, target: str, *, what: str, timeout: float = 300) -> None:
    """SOURCE copied to TARGET on the node at IP (root's, mode 0644), whole or not at all."""
    ssh_key, known_hosts = environment.ssh_identity(loaded.path)
    quoted, partial = shlex.quote(target), shlex.quote(f"{target}.part")
    argv = [*ssh_argv(ip, ssh_key, str(known_hosts), 10), f"cat > {partial} && chmod 0644 {partial} && mv {partial} {quoted}"]
    with open(source, "rb") as data:
        try:
            done = subprocess.run(argv, stdin=data, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise OnehciError(_("{what} on {ip}: no end within {seconds} s").format(what=what, ip=ip,
                                                                                   seconds=f"{timeout:g}")) from None
    if done.returncode != 0:
        raise OnehciError(_("{what} on {ip} failed: {error}").format(
            what=what, ip=ip, error=(done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]))
