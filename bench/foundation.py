"""Figures for the foundation: `onehci --help` wall time, and validate + plan of a
generated 1,000-node site. Run: .venv/bin/python bench/foundation.py"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINiF4oTcjawy7G+g8RyAK7x1JuWR6hHSoqSMJjVk51pU bench@example"


def big_site(nodes: int) -> str:
    lines = [
        "format: 1",
        "cluster: {name: big, domain: example.org}",
        "networks:",
        "  management: {cidr: 10.0.0.0/16, gateway: 10.0.0.1, dns: [10.0.0.1]}",
        "  vms: {bridge: br0, cidr: 10.1.0.0/16, first: 10.1.0.10, size: 1000}",
        "bootstrap: {address: 10.0.0.5, interface: eno1}",
        f"access: {{ssh_authorized_keys: ['{KEY}']}}",
        "storage: {goal: 2}",
        "nodes:",
    ]
    for i in range(nodes):
        roles = "[frontend, mfs_master, kvm, mfs_chunkserver]" if i == 0 else (
            "[kvm, mfs_chunkserver, mfs_metalogger]" if i < 3 else "[kvm, mfs_chunkserver]")
        ip = f"\n    ip: 10.0.{4 + i // 250}.{1 + i % 250}" if i % 2 else ""  # half explicit, half allocated
        lines.append(f"  - hostname: node{i:04d}\n    mac: 52:54:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:"
                     f"{i & 255:02x}:01{ip}\n    boot: uefi\n    roles: {roles}\n"
                     f"    os_disk: {{serial: OS{i:04d}}}\n    chunk_disks: [{{serial: CH{i:04d}a}}, {{serial: CH{i:04d}b}}]")
    return "\n".join(lines) + "\n"


def wall(cmd: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, cwd=REPO)
        times.append(time.perf_counter() - start)
        assert proc.returncode == 0, proc.stderr.decode()
    return times


def main() -> None:
    onehci = str(Path(sys.executable).parent / "onehci")
    help_times = wall([onehci, "--help"], 15)
    print(f"onehci --help: median {statistics.median(help_times):.3f} s, max {max(help_times):.3f} s (15 runs)")
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site.yml"
        site.write_text(big_site(1000))
        for verb in (["validate"], ["plan", "--json"], ["plan"]):
            t = wall([onehci, *verb, str(site)], 5)
            print(f"onehci {' '.join(verb)} (1,000 nodes): median {statistics.median(t):.3f} s, max {max(t):.3f} s (5 runs)")
        # in-process: the same work without interpreter start-up
        from installer import sitefile
        from installer.plan import make_plan

        start = time.perf_counter()
        make_plan(sitefile.load(site).site)
        print(f"load + validate + plan in process (1,000 nodes): {time.perf_counter() - start:.3f} s")


if __name__ == "__main__":
    main()
