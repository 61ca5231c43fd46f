"""What the rehearsals to a running cloud (bench/image_deploy.py, bench/vagrant_deploy.py) share: onehci run
on their site, and how they end. The local sources their nodes install from are the tests' own
(tests/bootchain/local_sources.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path


def end_on_signals() -> None:
    """SIGINT (ignored in a background job) and SIGTERM end the run through its cleanups."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def onehci(site: Path, *args: str) -> subprocess.CompletedProcess:
    """`onehci ARGS SITE`, its state beside SITE, stdout and stderr together."""
    return subprocess.run([sys.executable, "-m", "installer", *args, str(site)], timeout=5400,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
