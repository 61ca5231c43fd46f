"""Where a lab's nodes get OpenNebula from: OpenNebula's own repository when this machine
reaches it, otherwise (or with `lab up --standin`) the stand-in repository of
installer/lab/standin (docs/standin.md), built into the lab's directory and served over HTTP
on the bootstrap address by a small server that the lab records and `lab down` stops.

The choice is kept in the lab's record; `onehci deploy` hands it to the roles as
`onehci_opennebula_repo` (docs/roles/opennebula_repo.md).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from installer.errors import OnehciError
from installer.lab import procs

# what the roles install from by default (roles/opennebula_repo/defaults/main.yml)
OFFICIAL = "https://downloads.opennebula.io/repo/7.0/Debian/12"
PORT = 8633  # the stand-in repository's HTTP port on the bootstrap address
PROBE_TIMEOUT = 3.0  # seconds: an unreachable repository must not hold `lab up` up
START_TIMEOUT = 10.0


def official_reachable(url: str = OFFICIAL, timeout: float = PROBE_TIMEOUT) -> bool:
    """True when OpenNebula's repository answers for Debian 12 (its Release file)."""
    request = urllib.request.Request(f"{url}/dists/stable/Release", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status == 200
    except (OSError, ValueError, urllib.error.URLError):
        return False


def choose(standin: bool, probe: Callable[[], bool] = official_reachable) -> tuple[str, str]:
    """("standin" | "official", a line saying why)."""
    if standin:
        return "standin", "OpenNebula packages: the lab's stand-in repository (--standin)"
    if probe():
        return "official", f"OpenNebula packages: OpenNebula's repository {OFFICIAL} (reachable)"
    return "standin", (f"OpenNebula packages: the lab's stand-in repository ({OFFICIAL} did not answer "
                       f"within {PROBE_TIMEOUT:.0f} s)")


def standin_record(address: str, port: int = PORT) -> dict:
    """What the roles get as onehci_opennebula_repo for the stand-in: a flat, unsigned
    repository, fetched directly (apt-cacher-ng passes only port 80 and would keep stand-in
    packages rebuilt under the same version)."""
    return {"url": f"http://{address}:{port}/", "suite": "./", "components": [], "trusted": True, "direct": True}


def _listening(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex((address, port)) == 0


def serve(repo: Path, address: str, log: Path, port: int = PORT) -> procs.Proc:
    """Start an HTTP server for REPO on address:port in a session of its own (it outlives
    this command); return it once it answers."""
    if _listening(address, port):
        raise OnehciError(f"something already listens on {address}:{port}, where the lab serves the stand-in "
                          "OpenNebula repository: stop it, or run the lab without --standin")
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", address, "--directory", str(repo),
                                 str(port)], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while not _listening(address, port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise OnehciError(f"the stand-in repository server did not start on {address}:{port}: "
                              f"{tail[0] if tail else 'no output'} (log: {log})")
        time.sleep(0.1)
    found = procs.identify(proc.pid)
    if found is None:
        raise OnehciError("the stand-in repository server exited right after starting")
    return found
