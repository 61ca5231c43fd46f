"""`onehci rebuild` of a live node and of a dead one on the 3-node lab (stand-in OpenNebula), and
`onehci add-node` of a fourth node: time from the command to status green, the OS reinstall
(`lab reinstall`, the journal's reinstall step) shown apart.
Run as root: .venv/bin/python bench/rebuild.py (about 12 minutes; tears the lab down and up, on a
private copy of the lab profile, so not beside the lab tests)."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from installer import lab, sitefile  # noqa: E402
from installer.siteinit import profile_site  # noqa: E402
from tests.lab.test_rebuild import LAB4  # noqa: E402


def onehci(site: Path, *args: str) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "installer", *args, str(site)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        sys.exit(f"onehci {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return time.monotonic() - start, proc.stdout


def seconds(step: dict) -> float:
    start, end = (datetime.datetime.fromisoformat(step[k]) for k in ("started", "ended"))
    return (end - start).total_seconds()


def measured(site: Path, *args: str) -> str:
    total, out = onehci(site, *args, "--json")
    steps = {s["name"]: s for s in json.loads(out)["steps"]}
    install = seconds(steps.get("reinstall") or steps["install"])
    slowest = sorted(((seconds(s), n) for n, s in steps.items()), reverse=True)[:3]
    return (f"{total:.0f} s in all, {total - install:.0f} s without the OS install ({install:.0f} s); "
            f"slowest steps: {', '.join(f'{n} {t:.0f} s' for t, n in slowest)}")


def main() -> None:
    site = Path(tempfile.mkdtemp(prefix="onehci-bench-")) / "site.yml"
    site.write_text(profile_site("lab").read_text())
    loaded = sitefile.load(site)
    lab.down(loaded)
    lab.up(loaded, standin=True)
    onehci(site, "deploy")
    alive = measured(site, "rebuild", "lab3", "--yes")
    lab.kill_node(loaded, "lab2")
    dead = measured(site, "rebuild", "lab2", "--yes")
    site.write_text(site.read_text() + LAB4)
    added = measured(site, "add-node", "lab4")
    lab.down(sitefile.load(site))
    print(f"rebuild of a live node (lab3): {alive}")
    print(f"rebuild of a dead node (lab2): {dead}")
    print(f"add-node lab4: {added}")


if __name__ == "__main__":
    main()
