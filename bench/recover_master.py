"""`onehci recover-master` on the recover lab (tests/lab/recover-site.yml, copied to a temporary
directory): the time from the command to a healthy master, for a master process killed (in place)
and for a master node destroyed (metalogger on rec3 promoted). "Healthy" is what the command
itself waits for: the master answers, its metadata version is not lower than before, no chunk is
missing; the promotion includes its deploy of the new layout.
Run as root: .venv/bin/python bench/recover_master.py (about 12 minutes; builds and removes the
recover lab, so not beside tests/lab/test_recover_master.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from installer import lab, mfs, sitefile  # noqa: E402

SITE = Path(__file__).resolve().parent.parent / "tests" / "lab" / "recover-site.yml"


def onehci(*args: str) -> tuple[float, dict]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "installer", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"onehci {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return seconds, (json.loads(proc.stdout) if "--json" in args else {})


def stopped(ip: str) -> None:
    deadline = time.monotonic() + 30
    while mfs.health(ip, timeout=3).reachable:
        if time.monotonic() > deadline:
            sys.exit(f"the master at {ip} still answers")
        time.sleep(0.5)


def main() -> None:
    site = Path(tempfile.mkdtemp(prefix="onehci-bench-recover-")) / "site.yml"
    shutil.copy(SITE, site)
    loaded = sitefile.load(site)
    lab.down(loaded)
    try:
        onehci("lab", "up", str(site))
        onehci("deploy", str(site))
        lab.node_exec(loaded, "rec1", ["sh", "-c", "mkdir -p /var/lib/one/datastores/bench && for i in 1 2 3 4; do "
                                       "head -c 8M /dev/urandom > /var/lib/one/datastores/bench/f$i; done; sync"])
        lab.node_exec(loaded, "rec2", ["pkill", "-9", "-x", "mfsmaster"])
        stopped("10.77.0.12")
        in_place, first = onehci("recover-master", "--json", str(site))
        lab.kill_node(loaded, "rec2")
        stopped("10.77.0.12")
        promotion, second = onehci("recover-master", "--json", str(site), "--from", "rec3", "--yes")
        steps = {s["name"]: s for s in second["steps"]}
        print(f"in place (kill -9 of mfsmaster): {in_place:.1f} s, metadata version "
              f"{first['summary']['metadata_version_before']} -> {first['summary']['metadata_version_after']}")
        print(f"promotion of rec3 (master node destroyed): {promotion:.1f} s, metadata version "
              f"{second['summary']['metadata_version_before']} -> {second['summary']['metadata_version_after']}; "
              f"steps: " + ", ".join(f"{n} {s['started']}..{s['ended']}" for n, s in steps.items()))
    finally:
        lab.down(loaded)
        shutil.rmtree(site.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
