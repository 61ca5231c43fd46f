"""The whole cloud on the 3-node lab with OpenNebula built from its source: first deploy (MooseFS,
OpenNebula, registration, hosts monitored), second deploy, and `onehci status`.
Run as root: .venv/bin/python bench/cloud_deploy.py (about 6 minutes; tears the lab down and up,
so not beside the lab tests)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from installer import lab, sitefile  # noqa: E402
from installer.siteinit import profile_site  # noqa: E402

SITE = profile_site("lab")


def timed(*args: str, ok=(0,)) -> float:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "installer", *args, str(SITE)], capture_output=True, text=True)
    if proc.returncode not in ok:
        sys.exit(f"onehci {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return time.monotonic() - start


def main() -> None:
    loaded = sitefile.load(SITE)
    lab.down(loaded)
    lab.up(loaded)
    first = timed("deploy")
    second = timed("deploy")
    status = [timed("status") for _ in range(5)]
    lab.down(loaded)
    print(f"first deploy: {first:.0f} s; second deploy: {second:.0f} s ({100 * second / first:.0f} %); "
          f"status: median {statistics.median(status):.1f} s, max {max(status):.1f} s (5 runs, healthy cloud)")


if __name__ == "__main__":
    main()
