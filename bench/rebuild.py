"""`onehci rebuild` of a live node (without a VM, then running a smoke guest that writes its disk) and
of a dead one on the 3-node lab (OpenNebula built from its source), and `onehci add-node` of a fourth
node: time from the command to status green, the OS reinstall (`lab reinstall`, the journal's
reinstall step) shown apart; for the guest, how long it went without a heartbeat.
Run as root: .venv/bin/python bench/rebuild.py (about 20 minutes; a lab of its own, "rbench", made
from the lab profile, so it may run beside the lab tests, which then slow it down)."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from installer import lab, one, sitefile  # noqa: E402
from installer.plan import make_plan  # noqa: E402
from installer.siteinit import profile_site  # noqa: E402
from tests.lab.helpers import assert_guest_lived, guest_watch, smoke_guest, write_data  # noqa: E402
from tests.lab.test_rebuild import LAB4, longest_silence  # noqa: E402


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


def bench_site(text: str) -> str:
    """The lab profile as a lab of its own (names, bridge, subnets, MACs), so the bench runs
    beside the lab tests' "lab"."""
    for old, new in (("\n  name: lab\n", "\n  name: rbench\n"), ("onehci-lab0", "onehci-rbn0"), ("10.71.", "10.81."),
                     ("10.72.", "10.82."), ("52:54:00:71:", "52:54:00:81:"), ("lab.onehci.test", "rbn.onehci.test"),
                     ("lab1", "rbn1"), ("lab2", "rbn2"), ("lab3", "rbn3"), ("lab4", "rbn4")):
        text = text.replace(old, new)
    return text


def main() -> None:
    site = Path(tempfile.mkdtemp(prefix="onehci-bench-")) / "site.yml"
    site.write_text(bench_site(profile_site("lab").read_text()))
    loaded = sitefile.load(site)
    lab.down(loaded)
    lab.up(loaded)
    onehci(site, "deploy")
    write_data(loaded, "rbn1", "/var/lib/one/datastores/bench", files=16, mib=16)  # 256 MiB: the drain copies chunks
    print(f"rebuild of a live node (rbn3): {measured(site, 'rebuild', 'rbn3', '--yes')}", flush=True)
    client = one.client_for(loaded, make_plan(loaded.site))
    with smoke_guest(loaded, site, client, on="rbn3") as guest, guest_watch(loaded, client, guest) as heard:
        with_vm = measured(site, "rebuild", "rbn3", "--yes")
    assert_guest_lived(heard)
    print(f"rebuild of a live node running a guest (rbn3): {with_vm}; the guest moved live, its longest silence "
          f"{longest_silence(heard):.0f} s, {heard[-1].disk_round - heard[0].disk_round} disk rounds read back "
          "unchanged meanwhile", flush=True)
    lab.kill_node(loaded, "rbn2")
    print(f"rebuild of a dead node (rbn2): {measured(site, 'rebuild', 'rbn2', '--yes')}", flush=True)
    site.write_text(site.read_text() + bench_site(LAB4))
    print(f"add-node rbn4: {measured(site, 'add-node', 'rbn4')}", flush=True)
    lab.down(sitefile.load(site))


if __name__ == "__main__":
    main()
