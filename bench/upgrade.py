"""Rolling upgrade time per node on the 2-node upgrade lab (tests/lab/upgrade-site.yml) with the
OpenNebula built from its source: a newer build of its packages is published in the lab's repository, then
`onehci upgrade --json` runs and each node's time (simulate, disable and flush, apt-get upgrade,
restarts, MooseFS copies, host monitored, status green) is read from its journal step, with whether
it waited for a MooseFS chunk loop (only when the node's master or chunkserver started again). 24 MiB
are written through the MooseFS mount first, so that the master has chunks to count. Also times `onehci upgrade --check` and a second `onehci upgrade` with nothing left to upgrade.

Run as root: .venv/bin/python bench/upgrade.py (about 4 minutes: lab up, deploy, then the
upgrades; its own lab, so it can run beside the "lab" profile but not beside
tests/lab/test_upgrade.py, which uses the same site)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from installer import lab, sitefile  # noqa: E402
from tests.lab.helpers import repack, write_data  # noqa: E402

SOURCE = Path(__file__).resolve().parent.parent / "tests" / "lab" / "upgrade-site.yml"


def timed(site: Path, *args: str) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "installer", *args, str(site)], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"onehci {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return time.monotonic() - start, proc.stdout


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="onehci-bench-upgrade-") as work:
        site = Path(work) / "site.yml"
        shutil.copy(SOURCE, site)
        loaded = sitefile.load(site)
        lab.down(loaded)
        try:
            timed(site, "lab", "up")
            timed(site, "deploy")
            write_data(loaded, "upg2", "/var/lib/one/datastores/bench-upgrade", files=6, mib=4)
            lab.publish_opennebula(loaded, repack(lab.opennebula_build().paths(), "1~onehci2", Path(work) / "newer"))
            check, _ = timed(site, "upgrade", "--check")
            total, out = timed(site, "upgrade", "--json")
            again, out2 = timed(site, "upgrade", "--json")
        finally:
            lab.down(loaded)
    nodes = json.loads(out)["nodes"]
    per_node = "; ".join(f"{n['node']} {n['seconds']:.0f} s ({len(n['packages'])} package(s), chunk loop "
                         f"{'awaited' if n['chunk_loop_awaited'] else 'not awaited'})" for n in nodes)
    idle = "; ".join(f"{n['node']} {n['seconds']:.0f} s" for n in json.loads(out2)["nodes"])
    print(f"upgrade --check: {check:.1f} s; upgrade: {total:.0f} s in all, per node: {per_node}; "
          f"second upgrade, nothing to upgrade: {again:.0f} s ({idle})")


if __name__ == "__main__":
    main()
